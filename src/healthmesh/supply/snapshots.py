"""Daily snapshots: each facility x product's closing position on a day, kept for trend charts.

A snapshot is derived from the event log (today's balance minus what happened after the day),
so it can be taken late or re-taken for any past day and always gives the same answer; taking
the same day twice replaces it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal
from healthmesh.changes.service import Change, publish
from healthmesh.registry.models import Facility
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import Lot, LotBalance, StockEvent, StockSnapshot
from healthmesh.supply.service import scoped


def _start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def take_snapshot(db: Session, day: date, window_days: int = 30) -> int:
    """Write the closing position of every facility x product on `day`; returns the row count."""
    after = _start_of(day + timedelta(days=1))
    later = {
        lot_id: (int(on_hand), int(reserved))
        for lot_id, on_hand, reserved in db.execute(
            select(StockEvent.lot_id, func.sum(StockEvent.on_hand_delta), func.sum(StockEvent.reserved_delta))
            .where(StockEvent.occurred_at >= after)
            .group_by(StockEvent.lot_id)
        )
    }
    positions: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])  # on hand, reserved, expired
    for lot_id, facility_id, product_id, expiry, on_hand, reserved in db.execute(
        select(
            LotBalance.lot_id,
            LotBalance.facility_id,
            LotBalance.product_id,
            Lot.expiry_date,
            LotBalance.on_hand,
            LotBalance.reserved,
        ).join(Lot, Lot.id == LotBalance.lot_id)
    ):
        then_on_hand = on_hand - later.get(lot_id, (0, 0))[0]
        then_reserved = reserved - later.get(lot_id, (0, 0))[1]
        if then_on_hand == 0 and (facility_id, product_id) not in positions:
            continue
        position = positions[(facility_id, product_id)]
        position[0] += then_on_hand
        position[1] += then_reserved
        if expiry is not None and expiry < day:
            position[2] += then_on_hand
    issued = {
        (f, p): int(q)
        for f, p, q in db.execute(
            select(StockEvent.facility_id, StockEvent.product_id, func.sum(StockEvent.quantity))
            .where(
                StockEvent.kind == EventKind.ISSUE,
                StockEvent.occurred_at >= _start_of(day - timedelta(days=window_days - 1)),
                StockEvent.occurred_at < after,
            )
            .group_by(StockEvent.facility_id, StockEvent.product_id)
        )
    }
    db.execute(delete(StockSnapshot).where(StockSnapshot.day == day))
    rows = [
        {
            "day": day,
            "facility_id": f,
            "product_id": p,
            "on_hand": on_hand,
            "reserved": reserved,
            "expired": expired,
            "issued_in_window": issued.get((f, p), 0),
            "stocked_out": on_hand - reserved - expired <= 0,
        }
        for (f, p), (on_hand, reserved, expired) in sorted(positions.items())
        if on_hand or issued.get((f, p))
    ]
    for start in range(0, len(rows), 2000):
        db.execute(insert(StockSnapshot), rows[start : start + 2000])
    # on the change feed: what was computed from the snapshots (a member page's trend) is redone
    publish(db, [Change("snapshot", None, None, {"day": day.isoformat(), "rows": len(rows)})])
    return len(rows)


@dataclass(frozen=True)
class TrendPoint:
    day: date
    on_hand: int
    usable: int
    expired: int
    issued_in_window: int
    facilities: int
    facilities_stocked_out: int


def trend(
    db: Session,
    actor: Principal,
    *,
    product_id: int,
    since: date,
    jurisdiction_id: int | None = None,
    facility_id: int | None = None,
) -> list[TrendPoint]:
    """Snapshots of one product summed over the actor's scope (narrowed to a member or facility)."""
    stmt = (
        select(
            StockSnapshot.day,
            func.sum(StockSnapshot.on_hand),
            func.sum(StockSnapshot.reserved),
            func.sum(StockSnapshot.expired),
            func.sum(StockSnapshot.issued_in_window),
            func.count(),
            func.sum(case((StockSnapshot.stocked_out.is_(True), 1), else_=0)),
        )
        .where(StockSnapshot.product_id == product_id, StockSnapshot.day >= since)
        .group_by(StockSnapshot.day)
        .order_by(StockSnapshot.day)
    )
    stmt = scoped(stmt, actor, StockSnapshot.facility_id)
    if jurisdiction_id is not None:
        stmt = stmt.where(
            StockSnapshot.facility_id.in_(
                select(Facility.id).where(Facility.jurisdiction_id == jurisdiction_id)
            )
        )
    if facility_id is not None:
        stmt = stmt.where(StockSnapshot.facility_id == facility_id)
    return [
        TrendPoint(
            day,
            int(on_hand),
            int(on_hand - reserved - expired),
            int(expired),
            int(issued),
            int(count),
            int(out or 0),
        )
        for day, on_hand, reserved, expired, issued, count, out in db.execute(stmt)
    ]
