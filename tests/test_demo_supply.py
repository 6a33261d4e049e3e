"""The demo region's supply history: a ledger whose balances are the sum of its events, an outbreak
the shortage board sees, the regional reserve, pledges and about a thousand outstanding needs.

Seeding is large (some 145,000 events), so the region is seeded once per backend for the whole
module, in a transaction rolled back at the end, and once more in a fresh SQLite file to check
that the same seed gives the same ledger.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, aliased

from healthmesh import migrate
from healthmesh.accounts.access import Principal, Role
from healthmesh.accounts.models import User
from healthmesh.db import make_engine, make_sessionmaker
from healthmesh.demo.seed import seed_demo
from healthmesh.demo.supply_seed import OUTBREAK_MEMBERS, SupplySummary, seed_supply
from healthmesh.needs.models import Need, NeedTransition
from healthmesh.needs.workflow import OUTSTANDING, NeedStatus, Urgency
from healthmesh.registry.enums import FacilityKind, StorageCondition
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply.analytics import Level, ShortageRow, Window, indicator_rows, shortage_board
from healthmesh.supply.enums import EventKind, PledgeStatus
from healthmesh.supply.models import Lot, LotBalance, Pledge, StockBalance, StockEvent

SEED = 2026
TODAY = date(2026, 11, 30)
WINDOW = Window(today=TODAY)
ADMIN = Principal(user_id=0, username="admin", role=Role.ADMIN)
GROUP_PREFIXES = ("DX-", "OXY-", "PPE-")  # tests, oxygen and PPE: what the outbreak consumes


@dataclass(frozen=True)
class Seeded:
    db: Session
    summary: SupplySummary


@pytest.fixture(scope="module")
def seeded(engine: Engine) -> Iterator[Seeded]:
    """The full demo on this backend, in one transaction rolled back after the module (as the
    `db` fixture does per test)."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        seed_demo(session, seed=SEED)
        yield Seeded(session, seed_supply(session, seed=SEED, today=TODAY))
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture(scope="module")
def board(seeded: Seeded) -> list[ShortageRow]:
    return shortage_board(seeded.db, ADMIN, window=WINDOW)


@pytest.fixture(scope="session")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[SupplySummary, str]:
    """The same seed in a new SQLite file: its summary and the digest of everything it wrote
    (session-scoped: pytest runs this module's tests per backend, apart, and this is backend-free)."""
    path: Path = tmp_path_factory.mktemp("supply") / "fresh.sqlite3"
    url = f"sqlite+pysqlite:///{path}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as db:
            seed_demo(db, seed=SEED)
            summary = seed_supply(db, seed=SEED, today=TODAY)
            return summary, _digest(db)
    finally:
        engine.dispose()


def _digest(db: Session) -> str:
    """A fingerprint of the events, needs (with their history) and pledges, by codes, not ids."""
    counterpart = aliased(Facility)
    out = hashlib.sha256()
    events = db.execute(
        select(
            Facility.code,
            Product.code,
            Lot.lot_number,
            Lot.expiry_date,
            StockEvent.kind,
            StockEvent.quantity,
            StockEvent.on_hand_delta,
            StockEvent.occurred_at,
            StockEvent.reason,
            StockEvent.reference,
            counterpart.code,
        )
        .join(Facility, Facility.id == StockEvent.facility_id)
        .join(Product, Product.id == StockEvent.product_id)
        .join(Lot, Lot.id == StockEvent.lot_id)
        .outerjoin(counterpart, counterpart.id == StockEvent.counterpart_facility_id)
        .order_by(StockEvent.id)
    )
    for row in events:
        out.update(repr(tuple(row)).encode())
    for need in db.scalars(select(Need).order_by(Need.id)):
        out.update(
            repr(
                (
                    need.jurisdiction.iso3,
                    need.facility.code if need.facility else None,
                    need.product.code,
                    need.quantity,
                    need.urgency,
                    need.needed_by,
                    need.population_served,
                    need.status,
                    need.justification,
                    [(t.from_status, t.to_status, t.at, t.note) for t in need.history],
                )
            ).encode()
        )
    for pledge in db.scalars(select(Pledge).order_by(Pledge.id)):
        out.update(repr((pledge.facility.code, pledge.product.code, pledge.quantity)).encode())
    return out.hexdigest()


def _outbreak_product(code: str) -> bool:
    return code.startswith(GROUP_PREFIXES)


# --- the ledger ------------------------------------------------------------------------------------


def test_balances_are_the_sum_of_their_events_and_never_negative(seeded: Seeded) -> None:
    db = seeded.db
    sums = {
        (f, p): (int(on_hand), int(reserved))
        for f, p, on_hand, reserved in db.execute(
            select(
                StockEvent.facility_id,
                StockEvent.product_id,
                func.sum(StockEvent.on_hand_delta),
                func.sum(StockEvent.reserved_delta),
            ).group_by(StockEvent.facility_id, StockEvent.product_id)
        )
    }
    balances = {
        (f, p): (on_hand, reserved)
        for f, p, on_hand, reserved in db.execute(
            select(
                StockBalance.facility_id, StockBalance.product_id, StockBalance.on_hand, StockBalance.reserved
            )
        )
    }
    assert balances == sums
    assert min(on_hand for on_hand, _ in balances.values()) >= 0
    lot_sums = {
        lot: int(total)
        for lot, total in db.execute(
            select(StockEvent.lot_id, func.sum(StockEvent.on_hand_delta)).group_by(StockEvent.lot_id)
        )
    }
    lot_balances = {
        lot: on_hand for lot, on_hand in db.execute(select(LotBalance.lot_id, LotBalance.on_hand))
    }
    assert lot_balances == lot_sums
    assert min(lot_balances.values()) >= 0
    assert db.scalar(select(func.count()).select_from(StockEvent)) == seeded.summary.events
    assert db.scalar(select(func.count()).select_from(Lot)) == seeded.summary.lots
    assert 100_000 <= seeded.summary.events <= 200_000  # the budget that keeps `healthmesh demo` quick


def test_replaying_the_events_in_order_never_takes_more_than_a_lot_holds(seeded: Seeded) -> None:
    running: defaultdict[int, int] = defaultdict(int)
    lowest = 0
    rows = seeded.db.execute(select(StockEvent.lot_id, StockEvent.on_hand_delta).order_by(StockEvent.id))
    for lot_id, delta in rows:
        running[lot_id] += delta
        lowest = min(lowest, running[lot_id])
    assert lowest == 0


def test_history_is_twelve_weeks_of_weekly_reports_resupply_and_counts(seeded: Seeded) -> None:
    db = seeded.db
    kinds = {
        kind: n for kind, n in db.execute(select(StockEvent.kind, func.count()).group_by(StockEvent.kind))
    }
    assert kinds[EventKind.ISSUE] > 50_000
    assert kinds[EventKind.RECEIPT] > 5_000
    assert kinds[EventKind.TRANSFER_OUT] > 5_000
    assert kinds[EventKind.ADJUSTMENT] > 50
    assert kinds[EventKind.EXPIRY_WRITEOFF] > 0
    first, last = db.execute(select(func.min(StockEvent.occurred_at), func.max(StockEvent.occurred_at))).one()
    assert first.date() == TODAY - timedelta(weeks=12)
    assert last.date() == TODAY
    reasons = db.scalars(select(StockEvent.reason).where(StockEvent.kind == EventKind.ADJUSTMENT)).all()
    assert all(reason for reason in reasons)
    numbers = db.scalars(select(Lot.lot_number).limit(200)).all()
    assert all(len(n) == 11 and n[6] == "-" and n[2:6].isdigit() for n in numbers)  # like AG2609-0412


def test_every_receipt_of_a_transfer_matches_a_dispatch_and_some_are_in_transit(seeded: Seeded) -> None:
    db = seeded.db

    def by_reference(kind: EventKind) -> dict[tuple[str, int], int]:
        return {
            (reference, product): int(quantity)
            for reference, product, quantity in db.execute(
                select(StockEvent.reference, StockEvent.product_id, func.sum(StockEvent.quantity))
                .where(StockEvent.kind == kind)
                .group_by(StockEvent.reference, StockEvent.product_id)
            )
        }

    sent, received = by_reference(EventKind.TRANSFER_OUT), by_reference(EventKind.TRANSFER_IN)
    assert all(key in sent and quantity == sent[key] for key, quantity in received.items())
    in_transit = {key for key in sent if key not in received}
    assert len(in_transit) > 50
    assert any(reference.startswith("DELSA-REL-VNM") for reference, _ in in_transit)
    regional = indicator_rows(db, ADMIN, level=Level.REGION, window=WINDOW)
    assert sum(row.position.pipeline for row in regional) == sum(sent[key] for key in in_transit)


# --- the assortment ------------------------------------------------------------------------------


def test_assortments_follow_the_kind_of_facility_and_its_cold_chain(seeded: Seeded) -> None:
    db = seeded.db
    held: defaultdict[str, set[str]] = defaultdict(set)
    for facility, product in db.execute(
        select(Facility.code, Product.code)
        .join(StockBalance, StockBalance.facility_id == Facility.id)
        .join(Product, Product.id == StockBalance.product_id)
    ):
        held[facility].add(product)
    facilities = {f.code: f for f in db.scalars(select(Facility))}
    sizes = {
        FacilityKind.HOSPITAL: (25, 35),
        FacilityKind.PRIMARY_CARE: (12, 18),
        FacilityKind.LABORATORY: (6, 10),
        FacilityKind.NATIONAL_WAREHOUSE: (45, 59),
        FacilityKind.REGIONAL_RESERVE_DEPOT: (40, 59),
    }
    for code, site in facilities.items():
        low, high = sizes[site.kind]
        assert low <= len(held[code]) <= high, (code, len(held[code]))
        if site.kind is FacilityKind.HOSPITAL:
            assert {"OXY-CYL-J", "PPE-MASK-MED", "DX-AGRDT-25", "MED-DEXA-4"} <= held[code]
            assert ("BME-VENT-ICU" in held[code]) == (site.icu_beds > 0)
    capable = {
        StorageCondition.COLD_2_8: lambda f: f.cold_chain_2_8,
        StorageCondition.FROZEN_MINUS20: lambda f: f.cold_chain_minus20,
        StorageCondition.ULTRA_COLD_MINUS70: lambda f: f.cold_chain_minus70,
    }
    storage = {
        code: condition for code, condition in db.execute(select(Product.code, Product.storage_condition))
    }
    for code, products in held.items():
        for product in products:
            needs = capable.get(storage[product])
            assert needs is None or needs(facilities[code]), (code, product)
    vaccinating = [code for code, products in held.items() if any(p.startswith("VAC-") for p in products)]
    assert len(vaccinating) > 100


# --- the outbreak on the shortage board ----------------------------------------------------------


def test_outbreak_members_have_the_lowest_coverage_for_tests_oxygen_and_ppe(board: list[ShortageRow]) -> None:
    rows = [row for row in board if _outbreak_product(row.product) and row.coverage is not None]
    coverage: defaultdict[str, list[float]] = defaultdict(list)
    for row in rows:
        assert row.coverage is not None
        coverage[row.jurisdiction].append(row.coverage)
    medians = {iso3: statistics.median(values) for iso3, values in coverage.items()}
    for iso3 in OUTBREAK_MEMBERS:
        assert medians[iso3] < 1.0, (iso3, medians[iso3])
    assert min(m for iso3, m in medians.items() if iso3 not in OUTBREAK_MEMBERS) > 2.0, medians
    assert {row.jurisdiction for row in rows[:30]} <= set(OUTBREAK_MEMBERS)  # the most severe first
    by_product: defaultdict[str, list[ShortageRow]] = defaultdict(list)
    for row in rows:
        by_product[row.product].append(row)
    for product, product_rows in by_product.items():
        lowest = min(product_rows, key=lambda row: row.coverage or 0.0)
        assert lowest.jurisdiction in OUTBREAK_MEMBERS, product


def test_outbreak_members_have_the_stock_outs(board: list[ShortageRow]) -> None:
    stocked_out = Counter[str]()
    for row in board:
        if _outbreak_product(row.product):
            stocked_out[row.jurisdiction] += row.facilities_stocked_out
    for iso3 in OUTBREAK_MEMBERS:
        assert stocked_out[iso3] >= 40, stocked_out
    assert stocked_out["SGP"] <= 3
    assert max(count for iso3, count in stocked_out.items() if iso3 not in OUTBREAK_MEMBERS) < 20


def test_near_expiry_and_expired_stock_show_up(seeded: Seeded) -> None:
    regional = indicator_rows(seeded.db, ADMIN, level=Level.REGION, window=WINDOW)
    assert sum(row.position.near_expiry for row in regional) > 1_000
    assert sum(row.position.expired for row in regional) > 100
    expired_lots = seeded.db.scalar(
        select(func.count())
        .select_from(LotBalance)
        .join(Lot, Lot.id == LotBalance.lot_id)
        .where(Lot.expiry_date < TODAY, LotBalance.on_hand > 0)
    )
    assert expired_lots
    assert expired_lots >= 3


# --- the regional reserve and pledges ------------------------------------------------------------


def test_the_reserve_depots_hold_shared_stock_and_members_pledge(seeded: Seeded) -> None:
    db = seeded.db
    depots = db.execute(
        select(Facility.code, func.sum(StockBalance.on_hand))
        .join(StockBalance, StockBalance.facility_id == Facility.id)
        .where(Facility.kind == FacilityKind.REGIONAL_RESERVE_DEPOT)
        .group_by(Facility.code)
    ).all()
    assert len(depots) == 3
    assert all(units > 10_000 for _, units in depots)
    pledges = db.scalars(select(Pledge)).all()
    assert 10 <= len(pledges) == seeded.summary.pledges <= 30
    pledging = set()
    for pledge in pledges:
        assert pledge.status is PledgeStatus.ACTIVE
        assert pledge.valid_from <= TODAY <= pledge.valid_to
        balance = db.get(StockBalance, (pledge.facility_id, pledge.product_id))
        assert balance is not None
        assert pledge.quantity <= balance.on_hand - balance.reserved
        pledging.add(pledge.jurisdiction.iso3)
    assert len(pledging) >= 3
    assert not pledging & set(OUTBREAK_MEMBERS)


# --- needs ---------------------------------------------------------------------------------------


def test_about_a_thousand_outstanding_needs_mostly_from_the_outbreak(seeded: Seeded) -> None:
    db = seeded.db
    needs = db.scalars(select(Need)).all()
    statuses = Counter(need.status for need in needs)
    outstanding = [need for need in needs if need.status in OUTSTANDING]
    assert 950 <= len(outstanding) <= 1_050
    assert len(outstanding) == seeded.summary.outstanding_needs
    assert 0.12 <= statuses[NeedStatus.SUBMITTED] / len(needs) <= 0.18
    assert 0.65 <= statuses[NeedStatus.OPEN] / len(needs) <= 0.75
    for status in (NeedStatus.DRAFT, NeedStatus.REJECTED, NeedStatus.CANCELLED):
        assert 0 < statuses[status] <= 0.08 * len(needs)
    from_outbreak = [need for need in outstanding if need.jurisdiction.iso3 in OUTBREAK_MEMBERS]
    assert len(from_outbreak) >= 0.75 * len(outstanding)
    assert all(_outbreak_product(need.product.code) for need in from_outbreak)
    pressing = sum(need.urgency in (Urgency.URGENT, Urgency.EMERGENCY) for need in from_outbreak)
    assert pressing >= 0.8 * len(from_outbreak)
    for need in needs:
        assert TODAY + timedelta(weeks=2) <= need.needed_by <= TODAY + timedelta(weeks=6)
        assert need.quantity > 0
        assert need.population_served > 0
        assert need.justification


def test_needs_carry_their_history_and_the_focal_point_endorses(seeded: Seeded) -> None:
    db = seeded.db
    focal = {
        iso3: user_id
        for user_id, iso3 in db.execute(
            select(User.id, Jurisdiction.iso3)
            .join(Jurisdiction, Jurisdiction.id == User.jurisdiction_id)
            .where(User.username.like("fp.%"))
        )
    }
    now = datetime(TODAY.year, TODAY.month, TODAY.day, 23, 59, tzinfo=UTC)
    for need in db.scalars(select(Need)):
        steps = [(t.from_status, t.to_status) for t in need.history]
        assert steps[0] == (None, NeedStatus.DRAFT)
        assert steps[-1][1] is need.status
        times = [t.at for t in need.history]
        assert times == sorted(times)
        assert times[-1] <= now
        if need.status is NeedStatus.OPEN:
            assert steps == [
                (None, NeedStatus.DRAFT),
                (NeedStatus.DRAFT, NeedStatus.SUBMITTED),
                (NeedStatus.SUBMITTED, NeedStatus.ENDORSED),
                (NeedStatus.ENDORSED, NeedStatus.OPEN),
            ]
            fp = focal[need.jurisdiction.iso3]
            assert [t.actor_id for t in need.history[2:]] == [fp, fp]
            assert need.endorsed_by == fp
            assert need.submitted_at is not None
        if need.status is NeedStatus.REJECTED:
            assert need.rejection_reason
            assert need.history[-1].note == need.rejection_reason
    transitions = db.scalar(select(func.count()).select_from(NeedTransition)) or 0
    assert transitions > 3 * seeded.summary.needs


# --- determinism ---------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_ledger(seeded: Seeded, fresh: tuple[SupplySummary, str]) -> None:
    """A fresh SQLite file seeded alike matches, event for event, on either backend."""
    summary, digest = fresh
    assert summary == seeded.summary
    assert _digest(seeded.db) == digest
