"""Properties of the ledger over random event sequences (refused ones included), and of
concurrent writers on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal, Role
from healthmesh.db import begin_write, make_sessionmaker
from healthmesh.errors import InvalidInput
from healthmesh.supply import rules, service
from healthmesh.supply.enums import SYSTEM_ONLY, EventKind
from healthmesh.supply.models import IngestBatch, Lot, LotBalance, StockBalance, StockEvent
from healthmesh.supply.schemas import StockEventIn
from tests.conftest import Region

OPERATOR = Principal(user_id=0, username="operator", role=Role.ADMIN)
LOTS = ("L1", "L2", "L3")
KINDS = [kind for kind in EventKind if kind not in SYSTEM_ONLY]  # transit losses: shipments only


@st.composite
def event_sequences(draw: st.DrawFn) -> list[tuple[EventKind, str, int, bool]]:
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(KINDS),
                st.sampled_from(LOTS),
                st.integers(min_value=1, max_value=60),
                st.booleans(),
            ),
            min_size=1,
            max_size=25,
        )
    )
    out = []
    for kind, lot, quantity, flag in steps:
        if kind is EventKind.ADJUSTMENT and flag:
            quantity = -quantity
        out.append((kind, lot, quantity, flag and kind in {EventKind.ISSUE, EventKind.TRANSFER_OUT}))
    return out


def oracle(balance: rules.Balance, kind: EventKind, q: int, from_reservation: bool) -> rules.Balance | None:
    """An independent statement of the rules (not `rules.apply`): the balance after, or None if refused."""
    on_hand, reserved = balance
    if kind in (EventKind.RECEIPT, EventKind.TRANSFER_IN):
        after = (on_hand + q, reserved) if q > 0 else None
    elif kind in (EventKind.ISSUE, EventKind.TRANSFER_OUT, EventKind.EXPIRY_WRITEOFF, EventKind.WRITE_OFF):
        if from_reservation:
            after = (on_hand - q, reserved - q) if 0 < q <= reserved else None
        else:
            after = (on_hand - q, reserved) if 0 < q <= on_hand - reserved else None
    elif kind is EventKind.ADJUSTMENT:
        after = (on_hand + q, reserved) if q != 0 and on_hand + q >= reserved else None
    elif kind is EventKind.RESERVATION:
        after = (on_hand, reserved + q) if 0 < q <= on_hand - reserved else None
    else:
        after = (on_hand, reserved - q) if 0 < q <= reserved else None
    return rules.Balance(*after) if after is not None else None


def _body(kind: EventKind, lot: str, quantity: int, from_reservation: bool) -> StockEventIn:
    return StockEventIn(
        facility="THA-HO-0001",
        product="DX-AGRDT-25",
        lot_number=lot,
        expiry_date=None,
        kind=kind,
        quantity=quantity,
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        reason="test",
        counterpart_facility="THA-HO-0002"
        if kind in {EventKind.TRANSFER_OUT, EventKind.TRANSFER_IN}
        else None,
        from_reservation=from_reservation,
    )


def _clear(db: Session) -> None:
    for model in (StockEvent, LotBalance, StockBalance, IngestBatch, Lot):
        db.execute(delete(model))
    db.execute(text("DELETE FROM change_events"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=event_sequences())
def test_balances_equal_the_sum_of_events_and_never_go_negative(
    db: Session, region: Region, sequence: list[tuple[EventKind, str, int, bool]]
) -> None:
    savepoint = db.begin_nested()
    try:
        model: dict[str, rules.Balance] = {}
        for step, (kind, lot, quantity, from_reservation) in enumerate(sequence):
            expected = oracle(model.get(lot, rules.Balance()), kind, quantity, from_reservation)
            if lot not in model and kind not in {EventKind.RECEIPT, EventKind.TRANSFER_IN}:
                expected = None  # a lot that was never received cannot be touched
            inner = db.begin_nested()
            try:
                service.record(
                    db,
                    OPERATOR,
                    [(step, _body(kind, lot, quantity, from_reservation))],
                    source="test",
                    request_digest=f"{step}",
                )
                inner.commit()
                assert expected is not None, f"accepted a refused {kind} of {quantity} on {lot}"
                model[lot] = expected
            except InvalidInput:
                inner.rollback()
                assert expected is None, f"refused a valid {kind} of {quantity} on {lot}"
        sums = dict(
            db.execute(
                select(Lot.lot_number, func.sum(StockEvent.on_hand_delta))
                .join(Lot, Lot.id == StockEvent.lot_id)
                .group_by(Lot.lot_number)
            ).all()
        )
        for lot_number, on_hand, reserved in db.execute(
            select(Lot.lot_number, LotBalance.on_hand, LotBalance.reserved).join(
                Lot, Lot.id == LotBalance.lot_id
            )
        ):
            assert on_hand == sums.get(lot_number, 0) == model[lot_number].on_hand
            assert reserved == model[lot_number].reserved
            assert 0 <= reserved <= on_hand
        total = db.scalar(select(func.coalesce(func.sum(StockBalance.on_hand), 0)))
        assert total == sum(b.on_hand for b in model.values())
    finally:
        savepoint.rollback()


# --- concurrency on PostgreSQL -------------------------------------------------------------------


@pytest.fixture
def committed_region(engine: Engine) -> Iterator[Engine]:
    """The small region committed for real (concurrent connections cannot see an open transaction).
    On PostgreSQL writers lock the lot's balance row; on SQLite they take the single write lock."""
    from tests.conftest import region as region_fixture

    factory = make_sessionmaker(engine)
    with factory() as db:
        region_fixture.__wrapped__(db)  # type: ignore[attr-defined]
        db.commit()
    yield engine
    with factory() as db:
        _clear(db)
        for table in (
            "recognition_agreements",
            "authorisations",
            "facilities",
            "products",
            "jurisdiction_blocs",
            "jurisdictions",
        ):
            db.execute(text(f"DELETE FROM {table}"))
        db.commit()


def test_concurrent_issues_from_one_lot_cannot_drive_it_negative(committed_region: Engine) -> None:
    factory = make_sessionmaker(committed_region)
    with factory() as db:
        begin_write(db)
        service.record(
            db,
            OPERATOR,
            [(1, _body(EventKind.RECEIPT, "L1", 100, False))],
            source="test",
            request_digest="open",
        )
        db.commit()
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def issue(worker: int) -> None:
        with factory() as db:
            barrier.wait()
            begin_write(db)
            try:
                service.record(
                    db,
                    OPERATOR,
                    [(1, _body(EventKind.ISSUE, "L1", 30, False))],
                    source="test",
                    request_digest=f"issue-{worker}",
                )
                db.commit()
                outcomes.append("ok")
            except InvalidInput:
                db.rollback()
                outcomes.append("refused")

    threads = [threading.Thread(target=issue, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 5
    with factory() as db:
        assert db.scalar(select(LotBalance.on_hand)) == 10
        assert db.scalar(select(StockBalance.on_hand)) == 10
        assert db.scalar(select(func.sum(StockEvent.on_hand_delta))) == 10
