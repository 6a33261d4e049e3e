"""The indicators and the shortage board as computed for continent scale (aggregated in SQL, per
member in the analytics cache) give exactly what the previous implementation gave (kept as the
reference in `bench.continent`), and the cache is never stale past a committed change.

A random but valid stock history (lots expired, near expiry, without expiry, on the boundaries;
issues before, inside and after the window; reservations, write-offs, transfers received, lost
and still on their way, one to a facility that never held the product) and outstanding needs
are committed into a database of their own, so the cache (which reads committed data) serves.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from bench.continent import (
    board_key,
    reference_facility_positions,
    reference_indicator_rows,
    reference_shortage_board,
)
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from healthmesh import migrate
from healthmesh.accounts.access import Principal, Role
from healthmesh.db import make_engine, make_sessionmaker
from healthmesh.needs import service as needs_service
from healthmesh.needs.models import Need
from healthmesh.needs.schemas import NeedIn
from healthmesh.needs.workflow import OUTSTANDING, NeedStatus, Urgency
from healthmesh.registry.enums import FacilityKind, IncomeGroup, ProductCategory, StorageCondition
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import analytics, ledger, rules, snapshots, summary, warmer
from healthmesh.supply import indicators as ind
from healthmesh.supply.analytics import Level, Window
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import StockSnapshot
from tests.conftest import PG_ADMIN_URL

TODAY = date(2026, 11, 30)
MEMBERS = ("THA", "LAO", "SGP")
WINDOWS = (
    Window(TODAY),
    Window(TODAY, window_days=7, near_expiry_days=30, period_days=10),
    Window(TODAY + timedelta(days=5)),
    Window(TODAY - timedelta(days=20), window_days=14),
)


@dataclass
class Scaled:
    factory: sessionmaker[Session]
    engine: Engine
    backend: str
    members: dict[str, int]
    facilities: dict[str, tuple[int, int]]  # code -> (id, member id)
    products: dict[str, int]


def _at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _seed_registry(db: Session) -> tuple[dict[str, int], dict[str, tuple[int, int]], dict[str, int]]:
    members = {}
    for n, iso3 in enumerate(MEMBERS):
        member = Jurisdiction(
            iso3=iso3,
            name=f"Member {iso3}",
            income_group=IncomeGroup.LOWER_MIDDLE,
            population=1_000_000 * (n + 1),
            data_protection_regime="",
            time_zones=["UTC"],
            capital="Capital",
        )
        db.add(member)
        db.flush()
        members[iso3] = member.id
    kinds = (
        FacilityKind.NATIONAL_WAREHOUSE,
        FacilityKind.HOSPITAL,
        FacilityKind.PRIMARY_CARE,
        FacilityKind.LABORATORY,
    )
    facilities = {}
    for iso3 in MEMBERS:
        for n, kind in enumerate(kinds):
            facilities[f"{iso3}-{n}"] = kind
    facilities["THA-DEPOT"] = FacilityKind.REGIONAL_RESERVE_DEPOT
    ids = {}
    for code, kind in facilities.items():
        facility = Facility(
            code=code,
            jurisdiction_id=members[code[:3]],
            kind=kind,
            name=f"Facility {code}",
            latitude=10.0,
            longitude=100.0,
            time_zone="UTC",
        )
        db.add(facility)
        db.flush()
        ids[code] = (facility.id, members[code[:3]])
    products = {}
    for n in range(4):
        product = Product(
            code=f"PPE-{n:03d}",
            name=f"Product {n}",
            category=ProductCategory.PPE,
            unit_of_issue="box",
            pack_size=1,
            storage_condition=StorageCondition.AMBIENT,
            min_temp_c=2,
            max_temp_c=30,
            excursion_tolerance_minutes=1440,
            shelf_life_days=730,
        )
        db.add(product)
        db.flush()
        products[product.code] = product.id
    return members, ids, products


class History:
    """Valid events in order: each is checked against the running balance of its lot first."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.events: list[ledger.EventInput] = []
        self.balances: dict[tuple[int, int, str], rules.Balance] = {}
        self.expiry: dict[tuple[int, int, str], date | None] = {}

    def add(
        self,
        facility: tuple[int, int],
        product: int,
        lot: str,
        kind: EventKind,
        quantity: int,
        day: date,
        *,
        expiry: date | None = None,
        reference: str = "",
        counterpart: int | None = None,
    ) -> bool:
        key = (facility[0], product, lot)
        before = self.balances.get(key, rules.Balance())
        if key not in self.balances and kind not in (EventKind.RECEIPT, EventKind.TRANSFER_IN):
            return False
        try:
            after = rules.apply(before, kind, quantity)
        except rules.RefusedMovement:
            return False
        self.balances[key] = after
        self.expiry.setdefault(key, expiry)
        self.events.append(
            ledger.EventInput(
                len(self.events) + 1,
                facility[0],
                facility[1],
                product,
                lot,
                self.expiry[key] if kind in (EventKind.RECEIPT, EventKind.TRANSFER_IN) else None,
                kind,
                quantity,
                _at(day, self.rng.randrange(6, 20)),
                reference=reference,
                counterpart_facility_id=counterpart,
            )
        )
        return True


def _history(rng: random.Random, facilities: dict[str, tuple[int, int]], products: dict[str, int]) -> History:
    history = History(rng)
    expiries = [
        None,
        TODAY - timedelta(days=10),
        TODAY - timedelta(days=1),
        TODAY,
        TODAY + timedelta(days=7),
        TODAY + timedelta(days=30),
        TODAY + timedelta(days=90),
        TODAY + timedelta(days=91),
        TODAY + timedelta(days=400),
    ]
    product_ids = list(products.values())
    skip = (facilities["SGP-3"][0], product_ids[3])  # kept empty: the pipeline-only destination
    for facility in facilities.values():
        for product in rng.sample(product_ids, 3):
            if (facility[0], product) == skip:
                continue
            for n in range(rng.randrange(1, 4)):
                history.add(
                    facility,
                    product,
                    f"L{n}",
                    EventKind.RECEIPT,
                    rng.randrange(20, 300),
                    TODAY - timedelta(days=60 + n),
                    expiry=rng.choice(expiries),
                )
            lots = [key[2] for key in history.balances if key[:2] == (facility[0], product)]
            for _ in range(rng.randrange(4, 16)):
                day = TODAY - timedelta(days=rng.randrange(0, 50))
                quantity = rng.randrange(1, 40)
                history.add(facility, product, rng.choice(lots), EventKind.ISSUE, quantity, day)
            if rng.random() < 0.3:  # after "today": counted as a later change
                history.add(facility, product, lots[0], EventKind.ISSUE, 3, TODAY + timedelta(days=2))
            if rng.random() < 0.3:  # empty a lot: a stock-out somewhere
                key = (facility[0], product, lots[-1])
                left = history.balances[key].available
                if left:
                    day = TODAY - timedelta(days=3)
                    history.add(facility, product, lots[-1], EventKind.ISSUE, left, day)
            first = lots[0]
            if rng.random() < 0.4:
                history.add(facility, product, first, EventKind.RESERVATION, 10, TODAY - timedelta(days=5))
                history.add(facility, product, first, EventKind.RELEASE, 4, TODAY - timedelta(days=4))
            if rng.random() < 0.3:
                history.add(facility, product, first, EventKind.ADJUSTMENT, -5, TODAY - timedelta(days=8))
                history.add(facility, product, first, EventKind.WRITE_OFF, 2, TODAY - timedelta(days=2))
    # transfers: received in part and partly lost; one still wholly on its way; one to a facility
    # that never held the product (a position made by the pipeline alone)
    source = facilities["THA-0"]
    sources = [
        key for key, balance in history.balances.items() if key[0] == source[0] and balance.available >= 60
    ]
    assert len(sources) >= 2, "the seed must leave the warehouse stock to send"
    (_, p1, l1), (_, p2, l2) = sources[:2]
    lao, sgp = facilities["LAO-1"], facilities["SGP-3"]
    day = TODAY - timedelta(days=6)
    history.add(source, p1, l1, EventKind.TRANSFER_OUT, 30, day, reference="T-1", counterpart=lao[0])
    history.add(lao, p1, l1, EventKind.TRANSFER_IN, 20, day + timedelta(days=2), reference="T-1")
    lost = day + timedelta(days=2)
    history.add(source, p1, l1, EventKind.TRANSIT_LOSS, 4, lost, reference="T-1", counterpart=lao[0])
    history.add(source, p2, l2, EventKind.TRANSFER_OUT, 25, day, reference="T-2", counterpart=lao[0])
    p3 = product_ids[3]
    l3 = history_lot(history, source, p3)
    history.add(source, p3, l3, EventKind.TRANSFER_OUT, 5, day, reference="T-3", counterpart=sgp[0])
    return history


def history_lot(history: History, facility: tuple[int, int], product: int) -> str:
    """A lot of this product at the facility with stock to send (received for the purpose if none)."""
    for (f, p, lot), balance in history.balances.items():
        if (f, p) == (facility[0], product) and balance.available >= 5:
            return lot
    history.add(facility, product, "X1", EventKind.RECEIPT, 50, TODAY - timedelta(days=30), expiry=None)
    return "X1"


def _needs(rng: random.Random, members: dict[str, int], products: dict[str, int]) -> list[Need]:
    statuses = [*NeedStatus]
    out = []
    for iso3, member in members.items():
        for code, product in products.items():
            for _ in range(rng.randrange(0, 3)):
                quantity = rng.randrange(10, 400)
                status = rng.choice(statuses)
                out.append(
                    Need(
                        jurisdiction_id=member,
                        product_id=product,
                        quantity=quantity,
                        urgency=Urgency.ROUTINE,
                        needed_by=TODAY + timedelta(days=rng.choice([-3, 0, 10, 30, 31, 90])),
                        status=status,
                        quantity_allocated=rng.randrange(0, quantity // 2)
                        if status is NeedStatus.PARTIALLY_ALLOCATED
                        else 0,
                        justification=f"{iso3} {code}",
                    )
                )
    return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scaled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaled]:
    """A committed region with a random history, in a database of its own (per backend)."""
    admin = None
    name = ""
    if request.param == "sqlite":
        url = f"sqlite+pysqlite:///{tmp_path_factory.mktemp('scale') / 'scale.sqlite3'}"
    else:
        name = f"healthmesh_scale_{os.getpid()}_{secrets.token_hex(3)}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            admin.dispose()
            pytest.skip(f"PostgreSQL unreachable: {exc.__class__.__name__}")
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        rng = random.Random(2026)
        with factory() as db:
            members, facilities, products = _seed_registry(db)
            history = _history(rng, facilities, products)
            ledger.record_events(db, history.events, user_id=None, source="test", request_digest="seed")
            db.add_all(_needs(rng, members, products))
            db.commit()
        yield Scaled(factory, engine, engine.dialect.name, members, facilities, products)
        summary.clear()
        engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def _principals(scaled: Scaled) -> dict[str, Principal]:
    return {
        "admin": Principal(0, "admin", Role.ADMIN),
        "fp_tha": Principal(0, "fp.tha", Role.NATIONAL_FOCAL_POINT, jurisdiction_id=scaled.members["THA"]),
        "fp_lao": Principal(0, "fp.lao", Role.NATIONAL_FOCAL_POINT, jurisdiction_id=scaled.members["LAO"]),
        "manager": Principal(
            0,
            "manager",
            Role.FACILITY_MANAGER,
            jurisdiction_id=scaled.members["LAO"],
            facility_id=scaled.facilities["LAO-1"][0],
        ),
    }


def _assert_lazy_board_reads_like_its_rows(board: analytics.ShortageBoard) -> None:
    """The board builds rows only when read: every way the pages read it gives the rows in full."""
    rows = list(board)
    assert len(board) == len(rows)
    assert board[:5] == rows[:5]
    assert board[-2:] == rows[-2:]
    if rows:
        assert board[0] == rows[0]
        assert board[-1] == rows[-1]
    for member in {row.jurisdiction for row in rows} | {"NONE"}:
        assert list(board.of_member(member)) == [row for row in rows if row.jurisdiction == member]
    for product in {row.product for row in rows}:
        assert list(board.of_product(product)) == [row for row in rows if row.product == product]
    assert board.coverage_counts() == (
        sum(1 for row in rows if row.coverage is not None and row.coverage < 0.5),
        sum(1 for row in rows if row.coverage is not None and 0.5 <= row.coverage < 1),
        len({row.jurisdiction for row in rows if row.coverage is not None and row.coverage < 1}),
    )


def _assert_same_as_reference(scaled: Scaled, db: Session, window: Window) -> None:
    """Every question the pages and the API ask, new against the reference, on this session."""
    actors = _principals(scaled)
    product = scaled.products["PPE-001"]
    for name in ("admin", "fp_tha", "fp_lao"):
        actor = actors[name]
        for product_id in (None, product):
            new = analytics.shortage_board(db, actor, window=window, product_id=product_id)
            old = reference_shortage_board(db, actor, window=window, product_id=product_id)
            assert board_key(new) == board_key(old), (name, product_id)
        longer = analytics.shortage_board(db, actor, window=window, horizon_days=90)
        assert board_key(longer) == board_key(
            reference_shortage_board(db, actor, window=window, horizon_days=90)
        )
        severity = [ind.severity_key(row.coverage, row.demand) for row in longer]
        assert severity == sorted(severity)
        _assert_lazy_board_reads_like_its_rows(longer)
    cases = [
        ("admin", Level.REGION, {}),
        ("admin", Level.JURISDICTION, {}),
        ("admin", Level.JURISDICTION, {"jurisdiction_id": scaled.members["LAO"]}),
        ("admin", Level.FACILITY, {"jurisdiction_id": scaled.members["THA"]}),
        ("admin", Level.REGION, {"facility_id": scaled.facilities["THA-DEPOT"][0]}),
        ("admin", Level.JURISDICTION, {"product_id": product}),
        ("fp_tha", Level.JURISDICTION, {}),
        ("fp_tha", Level.JURISDICTION, {"jurisdiction_id": scaled.members["LAO"]}),  # not theirs: nothing
        ("fp_lao", Level.FACILITY, {}),
        ("fp_lao", Level.JURISDICTION, {"facility_id": scaled.facilities["LAO-1"][0]}),
        ("manager", Level.FACILITY, {}),
    ]
    for name, level, filters in cases:
        new_rows = analytics.indicator_rows(db, actors[name], level=level, window=window, **filters)
        old_rows = reference_indicator_rows(db, actors[name], level=level, window=window, **filters)
        assert new_rows == old_rows, (name, level, filters)
    everyone = {f: member for f, member in scaled.facilities.values()}
    tha = {f: member for f, member in scaled.facilities.values() if member == scaled.members["THA"]}
    for facilities in (everyone, tha, {}):
        for product_id in (None, product):
            for history in (True, False):
                new_positions = analytics.facility_positions(
                    db, facilities, window, product_id, stockout_history=history
                )
                old_positions = reference_facility_positions(
                    db, facilities, window, product_id, stockout_history=history
                )
                assert new_positions == old_positions
    for iso3 in MEMBERS:  # a member's page: folded by product, national apart from the reserve
        depots = {
            f: code.endswith("DEPOT") for code, (f, member) in scaled.facilities.items() if code[:3] == iso3
        }
        for history in (True, False):
            folded = analytics.member_positions(db, depots, window, stockout_history=history)
            national: dict[int, ind.Position] = {}
            reserve: dict[int, ind.Position] = {}
            stocked_out = []
            old_positions = reference_facility_positions(
                db, {f: scaled.members[iso3] for f in depots}, window, stockout_history=history
            )
            for (f, p), position in old_positions.items():
                (reserve if depots[f] else national).setdefault(p, ind.Position()).add(position)
                if not depots[f] and position.stocked_out:
                    stocked_out.append((f, p))
            assert (folded.national, folded.reserve) == (national, reserve)
            assert folded.stocked_out == sorted(stocked_out)


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"{w.today}-{w.window_days}-{w.near_expiry_days}")
@pytest.mark.parametrize("cached", [True, False], ids=["cache", "sql"])
def test_same_numbers_as_the_reference(
    scaled: Scaled, window: Window, cached: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(summary, "ENABLED", cached)
    with scaled.factory() as db:
        _assert_same_as_reference(scaled, db, window)
        cache = summary.cache_for(db)
    if cached:
        assert cache is not None
        assert cache.loads >= 1  # it did serve


def _issue(scaled: Scaled, code: str, quantity: int = 1, *, commit: bool = True) -> Session:
    """A committed (or pending) issue from the first lot with stock at facility `code`."""
    facility = scaled.facilities[code]
    db = scaled.factory()
    found = db.execute(
        text(
            "SELECT lb.product_id, l.lot_number FROM lot_balances lb JOIN lots l ON l.id = lb.lot_id "
            "WHERE lb.facility_id = :f AND lb.on_hand - lb.reserved >= :q ORDER BY lb.lot_id LIMIT 1"
        ),
        {"f": facility[0], "q": quantity},
    ).one()
    event = ledger.EventInput(
        1, facility[0], facility[1], found[0], found[1], None, EventKind.ISSUE, quantity, _at(TODAY)
    )
    ledger.record_events(db, [event], user_id=None, source="test", request_digest=secrets.token_hex(4))
    if commit:
        db.commit()
        db.close()
    return db


def test_a_committed_change_is_seen_by_the_next_request(scaled: Scaled) -> None:
    window = WINDOWS[0]
    admin = _principals(scaled)["admin"]
    with scaled.factory() as db:
        before = analytics.shortage_board(db, admin, window=window)
        cache = summary.cache_for(db)
        assert cache is not None
        loads, refreshed = cache.loads, cache.refreshed
    _issue(scaled, "THA-1", 7)
    with scaled.factory() as db:
        after = analytics.shortage_board(db, admin, window=window)
        assert board_key(after) == board_key(reference_shortage_board(db, admin, window=window))
        assert list(after) != list(before)
        member = analytics.indicator_rows(db, admin, level=Level.JURISDICTION, window=window)
        assert member == reference_indicator_rows(db, admin, level=Level.JURISDICTION, window=window)
    assert cache.loads == loads  # nothing reloaded in full:
    assert cache.refreshed == refreshed + 1  # the one facility named by the change


def test_a_warmed_cache_answers_without_loading_and_reloads_ahead(scaled: Scaled) -> None:
    summary.clear()
    assert warmer.warm_now(scaled.engine, TODAY) == len(MEMBERS)  # every member, in one load
    cache = summary.cache_for_engine(scaled.engine)
    assert cache is not None
    assert cache.loads == 1
    admin = _principals(scaled)["admin"]
    with scaled.factory() as db:
        board = analytics.shortage_board(db, admin, window=Window(TODAY))
        assert board_key(board) == board_key(reference_shortage_board(db, admin, window=Window(TODAY)))
    assert cache.loads == 1  # the request found it warm
    state = cache.windows[Window(TODAY)]
    due = min(state.deadline, key=state.deadline.__getitem__)
    state.deadline[due] = time.monotonic() + 1  # falls due within the warmer's lead
    assert warmer.warm_now(scaled.engine, TODAY) == 1
    assert cache.loads == 2
    assert state.deadline[due] > time.monotonic() + summary.TTL_SECONDS - 5
    assert warmer.warm_now(scaled.engine, TODAY) == 0  # nothing due: no load


def test_the_warmer_thread_loads_then_ticks_until_stopped(scaled: Scaled) -> None:
    summary.clear()
    running = warmer.Warmer(scaled.engine, tick_seconds=0.01).start()
    try:
        cache = summary.cache_for_engine(scaled.engine)
        assert cache is not None
        assert cache.loads == 1
        _issue(scaled, "THA-1", 1)
        deadline = time.monotonic() + 10
        while cache.refreshed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.refreshed == 1  # the tick applied the committed change, not a request
    finally:
        running.stop()


def test_uncommitted_writes_are_answered_but_never_cached(scaled: Scaled) -> None:
    window = WINDOWS[0]
    admin = _principals(scaled)["admin"]
    with scaled.factory() as db:
        committed = analytics.shortage_board(db, admin, window=window)
    pending = _issue(scaled, "LAO-2", 5, commit=False)
    try:
        mine = analytics.shortage_board(pending, admin, window=window)  # sees its own write
        assert board_key(mine) == board_key(reference_shortage_board(pending, admin, window=window))
        positions = analytics.facility_positions(
            pending, {f: j for f, j in scaled.facilities.values()}, window
        )
        assert positions == reference_facility_positions(
            pending, {f: j for f, j in scaled.facilities.values()}, window
        )
    finally:
        pending.rollback()
        pending.close()
    with scaled.factory() as db:
        assert board_key(analytics.shortage_board(db, admin, window=window)) == board_key(committed)


def test_a_registry_change_empties_the_cache(scaled: Scaled) -> None:
    window = WINDOWS[0]
    admin = _principals(scaled)["admin"]
    with scaled.factory() as db:
        analytics.shortage_board(db, admin, window=window)
    moved, _ = scaled.facilities["SGP-2"]
    with scaled.factory() as db:
        facility = db.get(Facility, moved)
        assert facility is not None
        facility.jurisdiction_id = scaled.members["LAO"]
        db.commit()
    try:
        with scaled.factory() as db:
            _assert_same_as_reference(scaled, db, window)
    finally:
        with scaled.factory() as db:
            db.execute(
                update(Facility)
                .where(Facility.id == moved)
                .values(jurisdiction_id=scaled.members["SGP"], updated_at=datetime.now(UTC))
            )
            db.commit()


def _raise_need(db: Session, actor: Principal, quantity: int) -> None:
    needs_service.create(
        db,
        actor,
        NeedIn(
            jurisdiction="SGP",
            product="PPE-002",
            quantity=quantity,
            urgency=Urgency.EMERGENCY,
            needed_by=TODAY + timedelta(days=3),
            submit=True,
        ),
        today=TODAY,
    )


def test_a_committed_need_is_seen_by_the_next_request(scaled: Scaled) -> None:
    """Outstanding needs are kept in the cache (per member and product, and their counts) until
    a need changes: the next request after a committed need counts it."""
    window = WINDOWS[0]
    admin = _principals(scaled)["admin"]
    with scaled.factory() as db:
        analytics.shortage_board(db, admin, window=window)
        before = needs_service.outstanding_counts(db, admin)
        cache = summary.cache_for(db)
        assert cache is not None
    with scaled.factory() as db:
        _raise_need(db, admin, 12345)
        db.commit()
    with scaled.factory() as db:  # a member's board first: its part read alone, not the region's
        fp_sgp = Principal(0, "fp.sgp", Role.NATIONAL_FOCAL_POINT, jurisdiction_id=scaled.members["SGP"])
        national = analytics.shortage_board(db, fp_sgp, window=window)
        assert board_key(national) == board_key(reference_shortage_board(db, fp_sgp, window=window))
        assert any(r.outstanding_requests >= 12345 for r in national)
        emergencies = [
            need
            for need in db.scalars(select(Need).where(Need.jurisdiction_id == scaled.members["SGP"]))
            if need.status in OUTSTANDING and need.urgency is Urgency.EMERGENCY
        ]
        assert any(need.quantity == 12345 for need in emergencies)
        assert needs_service.outstanding_counts(db, fp_sgp).emergency == len(emergencies)
        rows = analytics.shortage_board(db, admin, window=window)
        assert board_key(rows) == board_key(reference_shortage_board(db, admin, window=window))
        assert any(r.jurisdiction == "SGP" and r.outstanding_requests >= 12345 for r in rows)
        after = needs_service.outstanding_counts(db, admin)
        assert (after.total, after.emergency) == (before.total + 1, before.emergency + 1)
        assert needs_service.outstanding_counts(db, _principals(scaled)["fp_lao"]).total == sum(
            1
            for need in db.scalars(select(Need))
            if need.status in OUTSTANDING and need.jurisdiction_id == scaled.members["LAO"]
        )
        hits = cache.derived_hits
        again = analytics.shortage_board(db, admin, window=window)
        assert board_key(again) == board_key(rows)
        assert cache.derived_hits == hits + 1  # nothing changed since: served from the cache


def test_an_uncommitted_need_is_counted_for_its_writer_only(scaled: Scaled) -> None:
    admin = _principals(scaled)["admin"]
    with scaled.factory() as db:
        before = needs_service.outstanding_counts(db, admin)
    with scaled.factory() as pending:
        _raise_need(pending, admin, 5)
        assert needs_service.outstanding_counts(pending, admin).total == before.total + 1
        pending.rollback()
    with scaled.factory() as db:
        assert needs_service.outstanding_counts(db, admin) == before


def test_a_snapshot_taken_is_seen_by_the_next_trend(scaled: Scaled) -> None:
    """A trend's past weeks are kept until a snapshot is taken (announced on the change feed)."""
    facilities = sorted(f for code, (f, _) in scaled.facilities.items() if code.startswith("THA"))
    products = sorted(scaled.products.values())
    days = [TODAY - timedelta(weeks=2), TODAY - timedelta(weeks=1)]
    with scaled.factory() as db:
        assert snapshots.on_hand_by_day(db, facilities, products, days) == (frozenset(), {})
        cache = summary.cache_for(db)
        assert cache is not None
        hits = cache.derived_hits
        assert snapshots.on_hand_by_day(db, facilities, products, days) == (frozenset(), {})
        assert cache.derived_hits == hits + 1
    with scaled.factory() as db:
        snapshots.take_snapshot(db, days[1])
        db.commit()
    with scaled.factory() as db:
        taken, on_hand = snapshots.on_hand_by_day(db, facilities, products, days)
        assert taken == {days[1]}
        expected = {
            (p, days[1]): int(total)
            for p, total in db.execute(
                select(StockSnapshot.product_id, func.sum(StockSnapshot.on_hand))
                .where(StockSnapshot.day == days[1], StockSnapshot.facility_id.in_(facilities))
                .group_by(StockSnapshot.product_id)
            )
        }
        assert on_hand == expected
        assert sum(on_hand.values()) > 0


def test_the_warmer_sums_each_members_trend_before_its_page_asks(scaled: Scaled) -> None:
    with scaled.factory() as db:
        snapshots.take_snapshot(db, TODAY - timedelta(weeks=3))
        db.commit()
    summary.clear()
    assert warmer.warm_now(scaled.engine, TODAY) == len(MEMBERS)
    assert warmer.warm_trends(scaled.engine, TODAY) == len(MEMBERS)
    cache = summary.cache_for_engine(scaled.engine)
    assert cache is not None
    days = snapshots.trend_days(TODAY)[:-1]
    with scaled.factory() as db:
        codes = {p: code for code, p in scaled.products.items()}
        for iso3 in MEMBERS:  # what the member page asks for, from its own positions
            national = sorted(
                f
                for code, (f, _) in scaled.facilities.items()
                if code[:3] == iso3 and not code.endswith("DEPOT")
            )
            folded = analytics.member_positions(db, dict.fromkeys(national, False), Window(TODAY))
            used = snapshots.trend_products(
                {p: position.issued_in_window for p, position in folded.national.items()}, codes
            )
            assert used
            hits = cache.derived_hits
            taken, _ = snapshots.on_hand_by_day(db, national, used, days)
            assert cache.derived_hits == hits + 1  # summed already, by the warmer
            assert TODAY - timedelta(weeks=3) in taken


def test_a_need_locked_for_a_decision_leaves_references_to_it_free(scaled: Scaled) -> None:
    """A decision locks needs FOR NO KEY UPDATE: a round inserting results that reference them
    (the foreign key check takes FOR KEY SHARE) goes on instead of waiting, as it did behind FOR
    UPDATE, where an approval and a round deadlocked."""
    if scaled.backend != "postgresql":
        pytest.skip("SQLite has no row locks")
    with scaled.factory() as deciding, scaled.factory() as referencing:
        need = deciding.scalars(select(Need).order_by(Need.id).limit(1)).one()
        needs_service._locked(deciding, need)
        referencing.execute(text("SET LOCAL lock_timeout = '2s'"))
        found = referencing.execute(
            text("SELECT id FROM needs WHERE id = :id FOR KEY SHARE"), {"id": need.id}
        ).scalar_one()
        assert found == need.id
        deciding.rollback()
        referencing.rollback()


def test_a_change_committed_after_a_later_one_is_still_seen(scaled: Scaled) -> None:
    """A writer takes its change id, a second writer commits a later id, the cache catches up to
    it, then the first commits: its earlier id is above the floor, so it is not missed."""
    if scaled.backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: commits cannot cross")
    window = WINDOWS[0]
    admin = _principals(scaled)["admin"]
    first = _issue(scaled, "SGP-1", 2, commit=False)
    try:
        _issue(scaled, "THA-2", 3)
        with scaled.factory() as db:
            board = analytics.shortage_board(db, admin, window=window)
            assert board_key(board) == board_key(reference_shortage_board(db, admin, window=window))
        first.commit()
    finally:
        first.close()
    with scaled.factory() as db:
        assert board_key(analytics.shortage_board(db, admin, window=window)) == board_key(
            reference_shortage_board(db, admin, window=window)
        )


def test_in_memory_sqlite_is_never_cached(tmp_path: Path) -> None:
    engine = make_engine("sqlite://")
    try:
        with Session(engine) as db:
            assert summary.cache_for(db) is None
    finally:
        engine.dispose()
