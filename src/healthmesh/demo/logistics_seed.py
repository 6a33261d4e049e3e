"""The demo region's logistics: last week's allocation round, approved and shipped, with its
shipments at every stage a coordinator sees on a Monday morning — received (a few with damaged
or short-shipped units), on the road (some past their ETA), at the gate, still in the depot, one
lost, and one whose logger shows a heat excursion and whose stock sits in quarantine.

Everything goes through the same services as a user's requests (allocation, shipments, the
stock ledger), so the demo's stock is exactly what those steps leave behind.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal
from healthmesh.accounts.models import User
from healthmesh.allocation import service as allocation
from healthmesh.logistics import service as logistics
from healthmesh.logistics.models import Shipment
from healthmesh.logistics.schemas import MoveIn, ReceiptIn
from healthmesh.logistics.workflow import ShipmentStatus
from healthmesh.registry.enums import FacilityKind

ROUND_AGE = timedelta(days=6)
FATES = (  # (fate, weight)
    ("received", 40),
    ("received_with_losses", 8),
    ("in_transit", 22),
    ("delivered", 6),
    ("picked", 8),
    ("planned", 12),
    ("lost", 2),
    ("excursion", 2),
)


@dataclass(frozen=True)
class LogisticsSummary:
    plan_id: int
    shipments: int
    by_status: dict[str, int]
    overdue: int


def _principals(db: Session) -> tuple[Principal, dict[int, Principal]]:
    """The coordinator, and each member's focal point (who receives for its facilities)."""
    coordinator = db.scalar(select(User).where(User.username == "coordinator"))
    assert coordinator is not None, "seed the region first"
    focal = {
        user.jurisdiction_id: user.principal()
        for user in db.scalars(select(User).where(User.username.like("fp.%")).order_by(User.username))
        if user.jurisdiction_id is not None
    }
    return coordinator.principal(), focal


def _heat_log(start: datetime, hours: float, limit_c: float) -> bytes:
    """A logger file, one reading every 30 minutes, with a long spell 6 °C above the limit."""
    lines = ["logger_id,timestamp,temperature_c"]
    steps = max(int(hours * 2), 8)
    for step in range(steps + 1):
        at = start + timedelta(minutes=30 * step)
        hot = steps // 4 <= step <= 3 * steps // 4
        lines.append(f"LG-DEMO-7,{at.isoformat()},{limit_c + 6.0 if hot else limit_c - 3.0:.1f}")
    return ("\n".join(lines) + "\n").encode()


def _receive(
    db: Session,
    receiver: Principal,
    shipment: Shipment,
    at: datetime,
    rng: random.Random,
    *,
    losses: bool,
    decision: str | None = None,
) -> None:
    lines = []
    for line in shipment.lines:
        short = max(1, line.quantity // 20) if losses and line.quantity >= 10 else 0
        reason = rng.choice(["damaged", "short_shipped"])
        lines.append(
            {
                "line_id": line.id,
                "accepted": line.quantity - short,
                "rejected": [{"reason": reason, "quantity": short}] if short else [],
            }
        )
    data = ReceiptIn.model_validate(
        {
            "lines": lines,
            "receiver": f"Store keeper, {shipment.destination.name}"[:200],
            "received_at": at,
            "place": shipment.destination.name[:200],
            "excursion_decision": decision,
        }
    )
    logistics.receive(db, receiver, shipment.id, data, now=at + timedelta(minutes=1))


def _play(
    db: Session,
    shipment: Shipment,
    fate: str,
    sender: Principal,
    receiver: Principal,
    start: datetime,
    now: datetime,
    rng: random.Random,
) -> None:
    """Move one shipment to its fate with plausible times between the round and now."""

    def step(status: ShipmentStatus, at: datetime, **where: object) -> None:
        logistics.move(
            db, sender, shipment.id, MoveIn.model_validate({"status": status, "at": at, **where}), now=now
        )

    if fate == "planned":
        return
    picked = start + timedelta(hours=rng.uniform(6, 30))
    step(ShipmentStatus.PICKED, picked, place=shipment.source.name[:200])
    if fate == "picked":
        return
    hours = shipment.transit_hours
    if fate in ("in_transit", "lost"):  # most on time, about one in five past its ETA
        departure = max(picked + timedelta(hours=1), now - timedelta(hours=hours * rng.uniform(0.2, 1.25)))
    else:
        latest = now - timedelta(hours=hours * 1.05 + 2)
        departure = min(
            picked + timedelta(hours=rng.uniform(2, 20)), max(latest, picked + timedelta(hours=1))
        )
    step(ShipmentStatus.DISPATCHED, departure)
    middle = departure + (min(now, departure + timedelta(hours=hours)) - departure) / 2
    lat = (shipment.source.latitude + shipment.destination.latitude) / 2
    lon = (shipment.source.longitude + shipment.destination.longitude) / 2
    step(ShipmentStatus.IN_TRANSIT, middle, latitude=round(lat, 4), longitude=round(lon, 4), place="en route")
    if fate == "in_transit":
        return
    if fate == "lost":
        step(ShipmentStatus.LOST, min(now, middle + timedelta(hours=1)), note="vehicle and cargo missing")
        return
    arrival = min(now - timedelta(minutes=30), departure + timedelta(hours=hours * rng.uniform(0.8, 1.05)))
    arrival = max(arrival, middle + timedelta(minutes=5))
    step(ShipmentStatus.DELIVERED, arrival, place=shipment.destination.name[:200])
    if fate == "delivered":
        return
    decision = None
    if fate == "excursion":
        product = shipment.lines[0].product
        log = _heat_log(departure, (arrival - departure).total_seconds() / 3600, product.max_temp_c)
        logistics.upload_log(db, receiver, shipment.id, log, now=arrival + timedelta(minutes=5))
        decision = "quarantine" if shipment.logs[-1].breach else None
    _receive(
        db,
        receiver,
        shipment,
        arrival + timedelta(minutes=20),
        rng,
        losses=fate == "received_with_losses",
        decision=decision,
    )


def seed_logistics(
    db: Session, *, seed: int, today: date, progress: Callable[[str], None] | None = None
) -> LogisticsSummary:
    """Run last week's equity round, approve it, ship it, and move each shipment to a stage."""
    rng = random.Random(seed + 5)
    coordinator, focal = _principals(db)
    plan = allocation.create_plan(db, coordinator, "equity", today)
    allocation.approve(db, coordinator, plan.id)
    now = datetime.now(UTC)
    start = now - ROUND_AGE
    shipments = logistics.plan_shipments(db, coordinator, plan.id, now=start)
    fates = [fate for fate, _ in FATES]
    weights = [weight for _, weight in FATES]
    for shipment in shipments:
        fate = rng.choices(fates, weights)[0]
        depot = shipment.source.kind is FacilityKind.REGIONAL_RESERVE_DEPOT
        sender = coordinator if depot else focal[shipment.source.jurisdiction_id]
        receiver = focal[shipment.destination.jurisdiction_id]
        _play(db, shipment, fate, sender, receiver, start, now, rng)
    by_status = Counter(s.status.value for s in shipments)
    overdue = sum(1 for s in shipments if logistics.is_overdue(s, now))
    if progress is not None:
        progress(
            f"shipped allocation plan {plan.id}: {len(shipments)} shipments "
            f"({', '.join(f'{n} {status}' for status, n in sorted(by_status.items()))}; {overdue} overdue)"
        )
    return LogisticsSummary(plan.id, len(shipments), dict(by_status), overdue)
