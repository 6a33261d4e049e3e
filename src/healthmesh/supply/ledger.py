"""The stock ledger: applies a batch of events to the event log and the balance projections in
the caller's transaction, all or nothing.

Built for throughput (bulk statements, no per-event ORM objects) and for concurrency: the
balances a batch touches are locked (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite has one
writer at a time) before they are checked, and projections move by relative increments, so
two writers can never drive a lot negative or lose each other's update.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Insert, Table, bindparam, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healthmesh.changes.service import Change, publish
from healthmesh.db import utcnow
from healthmesh.errors import Conflict, FieldError, InvalidInput
from healthmesh.supply import rules
from healthmesh.supply.enums import INBOUND, EventKind
from healthmesh.supply.models import IngestBatch, Lot, LotBalance, StockBalance, StockEvent

CHUNK = 500
#: The projection tables for Core executemany updates (the ORM's bulk update wants whole rows by key).
LOT_BALANCES = cast(Table, LotBalance.__table__)
STOCK_EVENTS = cast(Table, StockEvent.__table__)

STOCK_BALANCES = cast(Table, StockBalance.__table__)


class EventInput(NamedTuple):
    """One validated event with its references resolved to ids; `line` locates it in its source.
    A tuple: the ledger takes 100k of them at a time."""

    line: int
    facility_id: int
    jurisdiction_id: int
    product_id: int
    lot_number: str
    expiry_date: date | None
    kind: EventKind
    quantity: int
    occurred_at: datetime
    from_reservation: bool = False
    reason: str = ""
    reference: str = ""
    counterpart_facility_id: int | None = None


@dataclass
class BatchResult:
    batch_id: int
    events: int
    replayed: bool = False
    balances: dict[tuple[int, int], rules.Balance] = field(default_factory=dict)


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _insert_ignoring_duplicates(db: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, on either backend."""
    if not rows:
        return
    dialect = db.get_bind().dialect.name
    stmt: Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    for start in range(0, len(rows), CHUNK):
        db.execute(stmt, list(rows[start : start + CHUNK]))


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def earlier_batch(db: Session, idempotency_key: str | None, request_digest: str) -> IngestBatch | None:
    """The batch already recorded under this key (a retry), or None. A key reused for a different
    request is a conflict."""
    if idempotency_key is None:
        return None
    earlier = db.scalar(select(IngestBatch).where(IngestBatch.idempotency_key == idempotency_key))
    if earlier is not None and earlier.request_digest != request_digest:
        raise Conflict(
            "this idempotency key was used for a different request",
            [FieldError("Idempotency-Key", "already used for a different request")],
        )
    return earlier


def _open_batch(
    db: Session, idempotency_key: str | None, request_digest: str, source: str, user_id: int | None
) -> tuple[IngestBatch, bool]:
    """The batch row, or the earlier one when this is a retry (True)."""
    earlier = earlier_batch(db, idempotency_key, request_digest)
    if earlier is not None:
        return earlier, True
    batch = IngestBatch(
        idempotency_key=idempotency_key,
        request_digest=request_digest,
        source=source,
        events=0,
        recorded_by=user_id,
    )
    savepoint = db.begin_nested()
    try:
        db.add(batch)
        db.flush()
    except IntegrityError:
        savepoint.rollback()
        raise Conflict(
            "a request with this idempotency key is being applied; retry shortly",
            [FieldError("Idempotency-Key", "in progress")],
        ) from None
    savepoint.commit()
    return batch, False


LotKey = tuple[int, int, str]


def _existing_lots(db: Session, keys: set[LotKey]) -> dict[LotKey, tuple[int, date | None]]:
    found: dict[LotKey, tuple[int, date | None]] = {}
    for chunk in _chunks(sorted(keys)):
        stmt = select(Lot.id, Lot.facility_id, Lot.product_id, Lot.lot_number, Lot.expiry_date).where(
            tuple_(Lot.facility_id, Lot.product_id, Lot.lot_number).in_(list(chunk))
        )
        for lot_id, facility_id, product_id, number, expiry in db.execute(stmt):
            found[(facility_id, product_id, number)] = (lot_id, expiry)
    return found


def _resolve_lots(db: Session, events: Sequence[EventInput], errors: list[FieldError]) -> dict[LotKey, int]:
    """Lot ids for every event; inbound events create lots they bring, others must find theirs."""
    keys = {(e.facility_id, e.product_id, e.lot_number) for e in events}
    found = _existing_lots(db, keys)
    new_lots: dict[LotKey, date | None] = {}
    for event in events:
        key = (event.facility_id, event.product_id, event.lot_number)
        known = found.get(key)
        expiry = known[1] if known else new_lots.get(key, event.expiry_date)
        if known is None and key not in new_lots:
            if event.kind in INBOUND:
                new_lots[key] = event.expiry_date
                continue
            errors.append(
                FieldError("lot_number", f"no lot {event.lot_number!r} of this product here", event.line)
            )
        elif event.expiry_date is not None and expiry is not None and event.expiry_date != expiry:
            errors.append(
                FieldError(
                    "expiry_date", f"lot {event.lot_number!r} expires on {expiry.isoformat()}", event.line
                )
            )
    if new_lots:  # even when errors were found: the caller rolls back, and later checks still run
        now = utcnow()
        _insert_ignoring_duplicates(
            db,
            Lot,
            [
                {"facility_id": f, "product_id": p, "lot_number": n, "expiry_date": x, "created_at": now}
                for (f, p, n), x in new_lots.items()
            ],
        )
        found.update(_existing_lots(db, set(new_lots)))
    return {key: value[0] for key, value in found.items()}


def _lock_balances(db: Session, lot_ids: Sequence[int]) -> dict[int, rules.Balance]:
    """Current balances of these lots, locked until the transaction ends (in id order: no deadlocks)."""
    ordered = sorted(set(lot_ids))
    balances: dict[int, rules.Balance] = {}
    for chunk in _chunks(ordered):
        stmt = (
            select(LotBalance.lot_id, LotBalance.on_hand, LotBalance.reserved)
            .where(LotBalance.lot_id.in_(list(chunk)))
            .order_by(LotBalance.lot_id)
            .with_for_update()
        )
        for lot_id, on_hand, reserved in db.execute(stmt):
            balances[lot_id] = rules.Balance(on_hand, reserved)
    return balances


EVENT_COLUMNS = (
    "lot_id",
    "facility_id",
    "product_id",
    "kind",
    "quantity",
    "on_hand_delta",
    "reserved_delta",
    "reason",
    "reference",
    "counterpart_facility_id",
    "occurred_at",
    "recorded_at",
    "recorded_by",
    "batch_id",
)
assert set(EVENT_COLUMNS) == {c.name for c in STOCK_EVENTS.columns} - {"id"}, "stock_events changed"


def _insert_events(db: Session, rows: list[tuple[Any, ...]]) -> None:
    """Write event rows already in storage form: COPY on PostgreSQL, a driver-level executemany on
    SQLite. At 100k rows SQLAlchemy's per-row parameter handling costs more than the insert."""
    connection = db.connection()
    columns = ", ".join(EVENT_COLUMNS)
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY stock_events ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    sql = (
        f"INSERT INTO stock_events ({columns}) "  # noqa: S608 - our own column names
        f"VALUES ({', '.join(['?'] * len(EVENT_COLUMNS))})"
    )
    for start in range(0, len(rows), 5000):
        connection.exec_driver_sql(sql, rows[start : start + 5000])


def _row_converter(db: Session) -> Callable[[datetime], Any]:
    """How `UTCDateTime` stores an aware datetime on this backend (see healthmesh.db)."""
    if db.get_bind().dialect.name == "sqlite":
        return lambda value: value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return lambda value: value.astimezone(UTC).replace(tzinfo=None)


def record_events(
    db: Session,
    events: Sequence[EventInput],
    *,
    user_id: int | None,
    source: str,
    request_digest: str,
    idempotency_key: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> BatchResult:
    """Apply events in order, all or nothing. Every refused event is reported with its line."""
    batch, replayed = _open_batch(db, idempotency_key, request_digest, source, user_id)
    if replayed:
        return BatchResult(batch.id, batch.events, replayed=True)
    errors: list[FieldError] = []
    lot_ids = _resolve_lots(db, events, errors)
    refused_lines = {error.line for error in errors}
    events = [e for e in events if e.line not in refused_lines]
    facility_lots = [
        (e.facility_id, e.product_id, lot_ids[(e.facility_id, e.product_id, e.lot_number)]) for e in events
    ]
    _insert_ignoring_duplicates(
        db,
        LotBalance,
        [
            {"lot_id": lot, "facility_id": f, "product_id": p, "on_hand": 0, "reserved": 0}
            for f, p, lot in set(facility_lots)
        ],
    )
    balances = _lock_balances(db, [lot for _, _, lot in facility_lots])
    start = dict(balances)
    rows: list[tuple[Any, ...]] = []
    stamp = _row_converter(db)
    stamps: dict[datetime, Any] = {}  # many events share a time (a day's report): convert each once
    now = stamp(utcnow())
    batch_id = batch.id
    for index, (event, (_, _, lot_id)) in enumerate(zip(events, facility_lots, strict=True)):
        try:
            after = rules.apply(balances[lot_id], event.kind, event.quantity, event.from_reservation)
        except rules.RefusedMovement as exc:
            errors.append(FieldError("quantity", str(exc), event.line))
            continue
        on_hand_delta = after.on_hand - balances[lot_id].on_hand
        reserved_delta = after.reserved - balances[lot_id].reserved
        balances[lot_id] = after
        occurred = stamps.get(event.occurred_at)
        if occurred is None:
            occurred = stamps[event.occurred_at] = stamp(event.occurred_at)
        rows.append(
            (
                lot_id,
                event.facility_id,
                event.product_id,
                event.kind.value,
                event.quantity,
                on_hand_delta,
                reserved_delta,
                event.reason,
                event.reference,
                event.counterpart_facility_id,
                occurred,
                now,
                user_id,
                batch_id,
            )
        )  # in EVENT_COLUMNS order
        if progress is not None and index % 1000 == 0:
            progress(index)
    if errors:
        errors.sort(key=lambda error: (error.line or 0, error.field))
        raise InvalidInput(f"{len(errors)} event(s) refused; nothing was recorded", errors)
    _insert_events(db, rows)
    totals = _write_projections(db, facility_lots, start, balances)
    batch.events = len(rows)
    publish(db, _changes(events, totals))
    if progress is not None:
        progress(len(events))
    return BatchResult(batch.id, len(rows), balances=totals)


def _write_projections(
    db: Session,
    facility_lots: Sequence[tuple[int, int, int]],
    start: dict[int, rules.Balance],
    end: dict[int, rules.Balance],
) -> dict[tuple[int, int], rules.Balance]:
    """Move lot and facility x product balances by the batch's net change (relative increments)."""
    lot_rows = [
        {
            "b_lot": lot,
            "b_on_hand": end[lot].on_hand - start[lot].on_hand,
            "b_reserved": end[lot].reserved - start[lot].reserved,
        }
        for lot in sorted(end)
        if end[lot] != start[lot]
    ]
    if lot_rows:
        db.execute(
            update(LOT_BALANCES)
            .where(LOT_BALANCES.c.lot_id == bindparam("b_lot"))
            .values(
                on_hand=LOT_BALANCES.c.on_hand + bindparam("b_on_hand"),
                reserved=LOT_BALANCES.c.reserved + bindparam("b_reserved"),
            ),
            lot_rows,
        )
    net: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    lot_owner = {lot: (f, p) for f, p, lot in facility_lots}
    for lot, (f, p) in lot_owner.items():
        net[(f, p)][0] += end[lot].on_hand - start[lot].on_hand
        net[(f, p)][1] += end[lot].reserved - start[lot].reserved
    if not net:
        return {}
    now = utcnow()
    _insert_ignoring_duplicates(
        db,
        StockBalance,
        [
            {"facility_id": f, "product_id": p, "on_hand": 0, "reserved": 0, "updated_at": now}
            for f, p in sorted(net)
        ],
    )
    db.execute(
        update(STOCK_BALANCES)
        .where(
            STOCK_BALANCES.c.facility_id == bindparam("b_facility"),
            STOCK_BALANCES.c.product_id == bindparam("b_product"),
        )
        .values(
            on_hand=STOCK_BALANCES.c.on_hand + bindparam("b_on_hand"),
            reserved=STOCK_BALANCES.c.reserved + bindparam("b_reserved"),
            updated_at=bindparam("b_now"),
        ),
        [
            {"b_facility": f, "b_product": p, "b_on_hand": d[0], "b_reserved": d[1], "b_now": now}
            for (f, p), d in sorted(net.items())
        ],
        execution_options={"synchronize_session": None},
    )
    totals: dict[tuple[int, int], rules.Balance] = {}
    keys = sorted(net)
    for chunk in _chunks(keys):
        stmt = select(
            StockBalance.facility_id, StockBalance.product_id, StockBalance.on_hand, StockBalance.reserved
        ).where(tuple_(StockBalance.facility_id, StockBalance.product_id).in_(list(chunk)))
        for f, p, on_hand, reserved in db.execute(stmt):
            totals[(f, p)] = rules.Balance(on_hand, reserved)
    return totals


def _changes(events: Sequence[EventInput], totals: dict[tuple[int, int], rules.Balance]) -> list[Change]:
    jurisdiction_of = {e.facility_id: e.jurisdiction_id for e in events}
    return [
        Change(
            "stock",
            jurisdiction_of[f],
            f,
            {"facility_id": f, "product_id": p, "on_hand": b.on_hand, "reserved": b.reserved},
        )
        for (f, p), b in sorted(totals.items())
    ]


@dataclass(frozen=True)
class Decision:
    """What a reservation serves: an approved allocation or mutual-aid plan, as the stock ledger
    records it (source, reason and reference of its events, and the key that makes it once)."""

    source: str
    reason: str
    reference: str
    idempotency_key: str
    request_digest: str
    refused: str  # the 409's message when a lot no longer holds the units


def reserve(
    db: Session, picks: Sequence[tuple[Lot, int]], decision: Decision, *, user_id: int | None, at: datetime
) -> None:
    """Reserve `units` of each lot for a decision: one RESERVATION event per lot, all or nothing,
    recorded once under the decision's idempotency key. Stock that moved meanwhile (a lot no
    longer holds the units) is a 409 naming the lots."""
    events = [
        EventInput(
            line=index,
            facility_id=lot.facility_id,
            jurisdiction_id=lot.facility.jurisdiction_id,
            product_id=lot.product_id,
            lot_number=lot.lot_number,
            expiry_date=None,
            kind=EventKind.RESERVATION,
            quantity=units,
            occurred_at=at,
            reason=decision.reason,
            reference=decision.reference,
        )
        for index, (lot, units) in enumerate(picks, start=1)
    ]
    if not events:
        return
    try:
        record_events(
            db,
            events,
            user_id=user_id,
            source=decision.source,
            request_digest=decision.request_digest,
            idempotency_key=decision.idempotency_key,
        )
    except InvalidInput as exc:
        raise Conflict(decision.refused, exc.errors) from None
