"""Shipment use cases: plan from an approved allocation, move through the workflow, receive with
proof of delivery, judge temperature logs, resolve quarantine.

Stock moves only through the ledger, in the caller's transaction: dispatch is a transfer-out of
the reserved units at the source; receipt a transfer-in of what arrived at the destination
(same lot number and expiry), then a write-off of what was rejected there; units that never
arrived (lost, short-shipped) are a `transit_loss` event at the source lot. So for every line,
shipped = accepted + rejected + lost, and the event log says the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Permission, Principal, ScopeKind
from healthmesh.allocation import builder
from healthmesh.allocation.models import AllocationLine, AllocationPlan, PlanStatus
from healthmesh.db import SelectT, utcnow
from healthmesh.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from healthmesh.ledger import service as transparency
from healthmesh.logistics import coldchain, routing
from healthmesh.logistics.models import Blob, Shipment, ShipmentLine, ShipmentTransition, TemperatureLog
from healthmesh.logistics.schemas import (
    ExcursionDecision,
    MoveIn,
    QuarantineIn,
    ReceiptIn,
    RejectionReason,
)
from healthmesh.logistics.workflow import ON_THE_ROAD, InvalidTransition, ShipmentStatus, Side, check
from healthmesh.needs import service as needs_service
from healthmesh.needs.models import Need
from healthmesh.needs.workflow import Urgency
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import ledger
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import Lot

S = ShipmentStatus
CLOCK_SKEW = timedelta(minutes=5)  # a device clock a little ahead is not "the future"
SIGNATURE_MAX_BYTES = 2_000_000
SIGNATURE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
LOG_STATUSES = frozenset({S.DISPATCHED, S.IN_TRANSIT, S.DELIVERED})


# -- access -----------------------------------------------------------------------------------


def sides_of(actor: Principal, shipment: Shipment) -> frozenset[Side]:
    """Which ends of the shipment the actor acts for (a region-wide role covers both)."""
    sides = set()
    for side, place in ((Side.SOURCE, shipment.source), (Side.DESTINATION, shipment.destination)):
        depot = place.kind is FacilityKind.REGIONAL_RESERVE_DEPOT  # the region's, not its host's
        if actor.manages_facility(place.id, place.jurisdiction_id, regional_depot=depot):
            sides.add(side)
    return frozenset(sides)


def _acting_sides(actor: Principal, shipment: Shipment) -> frozenset[Side]:
    """The sides the actor may act for: the ones in scope that its permissions allow."""
    sides = set()
    for side in sides_of(actor, shipment):
        permission = Permission.SHIPMENT_SEND if side is Side.SOURCE else Permission.SHIPMENT_RECEIVE
        if actor.has(permission):
            sides.add(side)
    return frozenset(sides)


def _visible(stmt: SelectT, actor: Principal) -> SelectT:
    """Shipments that leave from or arrive at a facility in the actor's scope."""
    if actor.scope is ScopeKind.REGION:
        return stmt
    if actor.scope is ScopeKind.FACILITY:
        return stmt.where(
            or_(
                Shipment.source_facility_id == actor.facility_id,
                Shipment.destination_facility_id == actor.facility_id,
            )
        )
    in_member = select(Facility.id).where(Facility.jurisdiction_id == actor.jurisdiction_id)
    return stmt.where(
        or_(Shipment.source_facility_id.in_(in_member), Shipment.destination_facility_id.in_(in_member))
    )


def get(db: Session, actor: Principal, shipment_id: int, *, lock: bool = False) -> Shipment:
    """A shipment the actor may see (one it may not see does not exist for it)."""
    stmt = _visible(select(Shipment).where(Shipment.id == shipment_id), actor)
    if lock:
        stmt = stmt.with_for_update(of=Shipment, key_share=True)
    shipment = db.scalar(stmt)
    if shipment is None:
        raise NotFound(f"no shipment {shipment_id}")
    return shipment


def is_overdue(shipment: Shipment, now: datetime) -> bool:
    return shipment.status in (S.DISPATCHED, S.IN_TRANSIT) and shipment.eta < now


def list_shipments(
    db: Session,
    actor: Principal,
    *,
    status: ShipmentStatus | None = None,
    member: str | None = None,
    product: str | None = None,
    plan_id: int | None = None,
    overdue: bool | None = None,
    now: datetime | None = None,
    page: tuple[int, int] = (50, 0),
) -> tuple[list[Shipment], int]:
    """Shipments in scope, newest first, filtered; `overdue` means on the road past its ETA."""
    now = now or utcnow()
    stmt = _visible(select(Shipment), actor)
    if status is not None:
        stmt = stmt.where(Shipment.status == status)
    if plan_id is not None:
        stmt = stmt.where(Shipment.plan_id == plan_id)
    if member is not None:
        in_member = select(Facility.id).join(Jurisdiction).where(Jurisdiction.iso3 == member.upper())
        stmt = stmt.where(
            or_(Shipment.source_facility_id.in_(in_member), Shipment.destination_facility_id.in_(in_member))
        )
    if product is not None:
        carrying = (
            select(ShipmentLine.shipment_id).join(Product).where(Product.code == product).scalar_subquery()
        )
        stmt = stmt.where(Shipment.id.in_(carrying))
    if overdue is not None:
        late = Shipment.status.in_([S.DISPATCHED, S.IN_TRANSIT]) & (Shipment.eta < now)
        stmt = stmt.where(late if overdue else ~late)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    limit, offset = page
    rows = db.scalars(stmt.order_by(Shipment.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total


# -- planning -----------------------------------------------------------------------------------


def plan_shipments(
    db: Session,
    actor: Principal,
    plan_id: int,
    mode: routing.Mode | None = None,
    *,
    now: datetime | None = None,
) -> list[Shipment]:
    """One shipment per (source, destination) for the approved plan's lines not yet shipped.
    The reserved units stay reserved until dispatch takes them out."""
    plan = db.scalar(
        select(AllocationPlan).where(AllocationPlan.id == plan_id).with_for_update(key_share=True)
    )
    if plan is None:
        raise NotFound(f"no allocation plan {plan_id}")
    if plan.status is not PlanStatus.APPROVED:
        raise Conflict(
            f"plan {plan_id} is {plan.status.value}: only an approved plan is shipped",
            [FieldError("plan", plan.status.value)],
        )
    shipped = set(
        db.scalars(
            select(ShipmentLine.allocation_line_id).where(
                ShipmentLine.allocation_line_id.in_([line.id for line in plan.lines])
            )
        )
    )
    pending = [line for line in plan.lines if line.id not in shipped]
    if not pending:
        raise Conflict(
            f"every line of plan {plan_id} is already on a shipment", [FieldError("plan", "already shipped")]
        )
    groups = _group_by_route(db, pending)
    now = now or utcnow()
    shipments = []
    for (source, destination), lines in groups.items():
        emergency = any(need.urgency is Urgency.EMERGENCY for _, need, _ in lines)
        shipment = _new_shipment(
            actor,
            source,
            destination,
            mode,
            emergency=emergency,
            now=now,
            note=f"from allocation plan {plan.id}",
        )
        shipment.plan_id = plan.id
        shipment.lines = [
            ShipmentLine(
                allocation_line_id=line.id,
                from_reservation=True,
                need_id=need.id,
                lot_id=line.lot_id,
                product_id=lot_product,
                quantity=line.quantity,
                rejections={},
            )
            for line, need, lot_product in lines
        ]
        db.add(shipment)
        shipments.append(shipment)
    db.flush()
    return shipments


def plan_reserved_shipment(
    db: Session,
    actor: Principal,
    source: Facility,
    destination: Facility,
    lots: Sequence[tuple[Lot, int]],
    *,
    note: str,
    now: datetime | None = None,
) -> Shipment:
    """A planned shipment of units already reserved on these lots at `source` (a mutual-aid
    transfer or reserve release): dispatch takes them from the reservation, cancelling releases
    them. The caller reserves and sets what the shipment comes from."""
    shipment = _new_shipment(
        actor, source, destination, None, emergency=False, now=now or utcnow(), note=note
    )
    shipment.lines = [
        ShipmentLine(lot=lot, product_id=lot.product_id, quantity=units, from_reservation=True, rejections={})
        for lot, units in lots
    ]
    db.add(shipment)
    return shipment


def _new_shipment(
    actor: Principal,
    source: Facility,
    destination: Facility,
    mode: routing.Mode | None,
    *,
    emergency: bool,
    now: datetime,
    note: str,
) -> Shipment:
    """A planned shipment between two facilities: mode (given, or by distance and urgency),
    distance, transit time and ETA, and its first transition."""
    great_circle = routing.route(
        source.latitude, source.longitude, destination.latitude, destination.longitude, routing.Mode.ROAD
    ).great_circle_km
    chosen = mode or routing.default_mode(great_circle, emergency)
    way = routing.route(
        source.latitude, source.longitude, destination.latitude, destination.longitude, chosen
    )
    shipment = Shipment(
        source_facility_id=source.id,
        destination_facility_id=destination.id,
        mode=chosen,
        great_circle_km=way.great_circle_km,
        distance_km=way.distance_km,
        transit_hours=way.hours,
        status=S.PLANNED,
        eta=way.eta(now),
        created_by=actor.user_id or None,
    )
    shipment.source, shipment.destination = source, destination
    shipment.history = [
        ShipmentTransition(
            from_status=None, to_status=S.PLANNED, actor_id=actor.user_id or None, at=now, note=note
        )
    ]
    return shipment


def _group_by_route(
    db: Session, lines: Sequence[AllocationLine]
) -> dict[tuple[Facility, Facility], list[tuple[AllocationLine, Need, int]]]:
    lots = {lot.id: lot for lot in db.scalars(select(Lot).where(Lot.id.in_({line.lot_id for line in lines})))}
    needs = {n.id: n for n in db.scalars(select(Need).where(Need.id.in_({line.need_id for line in lines})))}
    warehouses = builder.national_warehouses(db)
    groups: dict[tuple[Facility, Facility], list[tuple[AllocationLine, Need, int]]] = defaultdict(list)
    for line in sorted(lines, key=lambda item: item.id):
        need = needs[line.need_id]
        destination = builder.destination(need, warehouses)
        if destination is None:
            raise Conflict(
                f"need {need.id} has no facility and {need.jurisdiction.iso3} has no national warehouse "
                "to deliver to",
                [FieldError("need", str(need.id))],
            )
        lot = lots[line.lot_id]
        groups[(lot.facility, destination)].append((line, need, lot.product_id))
    return groups


# -- moves ------------------------------------------------------------------------------------


def _when(at: datetime | None, shipment: Shipment, now: datetime) -> datetime:
    """The time a step happened: not in the future, not before the shipment's last step."""
    at = at or now
    if at > now + CLOCK_SKEW:
        raise InvalidInput.on("at", "is in the future")
    last = shipment.history[-1].at if shipment.history else None
    if last is not None and at < last:
        raise InvalidInput.on("at", f"is before the shipment's last step ({last.isoformat()})")
    return at


def _step(
    db: Session,
    actor: Principal,
    shipment: Shipment,
    target: ShipmentStatus,
    at: datetime,
    *,
    place: str = "",
    latitude: float | None = None,
    longitude: float | None = None,
    note: str = "",
) -> None:
    """Check and record one transition (the caller does the stock side)."""
    try:
        check(shipment.status, target, _acting_sides(actor, shipment))
    except InvalidTransition as exc:
        raise Conflict(str(exc), [FieldError("status", str(exc))]) from None
    except PermissionError as exc:
        raise PermissionDenied(str(exc)) from None
    shipment.history.append(
        ShipmentTransition(
            from_status=shipment.status,
            to_status=target,
            actor_id=actor.user_id or None,
            at=at,
            place=place,
            latitude=latitude,
            longitude=longitude,
            note=note,
        )
    )
    shipment.status = target


def move(
    db: Session, actor: Principal, shipment_id: int, data: MoveIn, now: datetime | None = None
) -> Shipment:
    """Any step but receipt (which needs its proof of delivery: `receive`)."""
    shipment = get(db, actor, shipment_id, lock=True)
    now = now or utcnow()  # once the lock is ours: the step before may have committed meanwhile
    if data.status in (S.CANCELLED, S.LOST):
        _needs_of(db, shipment)  # needs before lots, in the order approvals lock them
    if data.status is S.RECEIVED:
        raise InvalidInput.on("status", "record a receipt with its lines and receiver (POST .../receipt)")
    at = _when(data.at, shipment, now)
    _step(
        db,
        actor,
        shipment,
        data.status,
        at,
        place=data.place,
        latitude=data.latitude,
        longitude=data.longitude,
        note=data.note,
    )
    if data.status is S.DISPATCHED:
        _dispatch(db, actor, shipment, at)
    elif data.status is S.DELIVERED:
        shipment.delivered_at = at
    elif data.status is S.CANCELLED:
        _cancel(db, actor, shipment, at)
    elif data.status is S.LOST:
        _lose(db, actor, shipment, at, data.note)
    db.flush()
    return shipment


def _event(
    shipment: Shipment,
    line: ShipmentLine,
    kind: EventKind,
    quantity: int,
    at: datetime,
    *,
    at_destination: bool,
    reason: str,
    from_reservation: bool = False,
    reference: str | None = None,
) -> ledger.EventInput:
    here, there = (
        (shipment.destination, shipment.source) if at_destination else (shipment.source, shipment.destination)
    )
    return ledger.EventInput(
        line=line.id,
        facility_id=here.id,
        jurisdiction_id=here.jurisdiction_id,
        product_id=line.product_id,
        lot_number=line.lot.lot_number,
        expiry_date=line.lot.expiry_date if kind is EventKind.TRANSFER_IN else None,
        kind=kind,
        quantity=quantity,
        occurred_at=at,
        from_reservation=from_reservation,
        reason=reason,
        reference=reference or shipment.reference,
        counterpart_facility_id=there.id,
    )


def _record(
    db: Session, actor: Principal, events: list[ledger.EventInput], key: str, digest: str | None = None
) -> None:
    """Apply the events through the ledger, under `key` (and the request's digest, when a client's
    retry is to be recognised); a refusal means the stock moved under us: a 409."""
    if not events:
        return
    digest = digest or ledger.digest(
        json.dumps([e._asdict() for e in events], default=str, sort_keys=True).encode()
    )
    try:
        ledger.record_events(
            db,
            events,
            user_id=actor.user_id or None,
            source="logistics",
            request_digest=digest,
            idempotency_key=key,
        )
    except InvalidInput as exc:
        raise Conflict("the stock this shipment needs is not there: " + exc.detail, exc.errors) from None


def _dispatch(db: Session, actor: Principal, shipment: Shipment, at: datetime) -> None:
    """The reserved units leave the source; the ETA runs from now."""
    events = [
        _event(
            shipment,
            line,
            EventKind.TRANSFER_OUT,
            line.quantity,
            at,
            at_destination=False,
            reason=f"dispatched on {shipment.code}",
            from_reservation=line.from_reservation,
        )
        for line in shipment.lines
    ]
    _record(db, actor, events, f"{shipment.reference}:dispatch")
    shipment.dispatched_at = at
    shipment.eta = at + timedelta(hours=shipment.transit_hours)
    transparency.append(
        db,
        "shipment.dispatched",
        {
            **_route_entry(shipment),
            "dispatched_at": at.astimezone(UTC).isoformat(),
            "lines": [
                {"product": line.product.code, "lot": line.lot.lot_number, "quantity": line.quantity}
                for line in shipment.lines
            ],
        },
    )


def _route_entry(shipment: Shipment) -> dict[str, Any]:
    return {
        "shipment": shipment.code,
        "plan": shipment.plan_id,
        **({"mutual_aid_plan": shipment.mutual_aid_plan_id} if shipment.mutual_aid_plan_id else {}),
        "from": shipment.source.code,
        "to": shipment.destination.code,
        "mode": shipment.mode.value,
    }


def _cancel(db: Session, actor: Principal, shipment: Shipment, at: datetime) -> None:
    """Nothing left: the reservations go back to the pool and the needs ask again."""
    events = [
        _event(
            shipment,
            line,
            EventKind.RELEASE,
            line.quantity,
            at,
            at_destination=False,
            reason=f"{shipment.code} cancelled",
        )
        for line in shipment.lines
        if line.from_reservation
    ]
    _record(db, actor, events, f"{shipment.reference}:cancel")
    _return_to_demand(db, actor, shipment, {line.id: line.quantity for line in shipment.lines}, "cancelled")


def _lose(db: Session, actor: Principal, shipment: Shipment, at: datetime, note: str) -> None:
    """Everything on the road is lost: recorded at the source lots, and the needs ask again."""
    events = [
        _event(
            shipment,
            line,
            EventKind.TRANSIT_LOSS,
            line.quantity,
            at,
            at_destination=False,
            reason=f"{shipment.code} lost" + (f": {note}" if note else ""),
        )
        for line in shipment.lines
    ]
    _record(db, actor, events, f"{shipment.reference}:lost")
    for line in shipment.lines:
        line.lost = line.quantity
    _return_to_demand(db, actor, shipment, {line.id: line.quantity for line in shipment.lines}, "lost")


def _needs_of(db: Session, shipment: Shipment) -> dict[int, Need]:
    ids = sorted({line.need_id for line in shipment.lines if line.need_id is not None})
    if not ids:
        return {}
    stmt = select(Need).where(Need.id.in_(ids)).order_by(Need.id).with_for_update(of=Need, key_share=True)
    return {need.id: need for need in db.scalars(stmt)}


def _return_to_demand(
    db: Session, actor: Principal, shipment: Shipment, units_by_line: dict[int, int], why: str
) -> None:
    """Units that will not arrive leave their needs' allocated quantity."""
    needs = _needs_of(db, shipment)
    touched: dict[int, int] = defaultdict(int)
    for line in shipment.lines:
        units = units_by_line.get(line.id, 0)
        if units and line.need_id is not None:
            touched[line.need_id] += units
    for need_id, units in touched.items():
        need = needs[need_id]
        need.quantity_allocated = max(need.quantity_allocated - units, need.quantity_fulfilled)
        needs_service.follow_progress(
            db, need, actor, f"{shipment.code} {why}: {units} units to allocate again"
        )


def _fulfil(db: Session, actor: Principal, shipment: Shipment, units_by_line: dict[int, int]) -> None:
    needs = _needs_of(db, shipment)
    touched: dict[int, int] = defaultdict(int)
    for line in shipment.lines:
        units = units_by_line.get(line.id, 0)
        if units and line.need_id is not None:
            touched[line.need_id] += units
    for need_id, units in touched.items():
        need = needs[need_id]
        need.quantity_fulfilled += units
        needs_service.follow_progress(db, need, actor, f"{shipment.code} received: {units} units")


# -- receipt ----------------------------------------------------------------------------------


def excursion_flagged(shipment: Shipment) -> bool:
    return any(log.breach for log in shipment.logs)


def receive(
    db: Session,
    actor: Principal,
    shipment_id: int,
    data: ReceiptIn,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> tuple[Shipment, bool]:
    """Confirm receipt with proof of delivery, all or nothing. A retry under the same key returns
    the shipment as it is (True); a second receipt without it is refused."""
    shipment = get(db, actor, shipment_id, lock=True)
    now = now or utcnow()  # once the lock is ours: the step before may have committed meanwhile
    request_digest = ledger.digest(data.model_dump_json().encode())
    key = f"receipt:{shipment.id}:{idempotency_key}" if idempotency_key else None
    if key and ledger.earlier_batch(db, key, request_digest) is not None:
        return shipment, True
    _needs_of(db, shipment)  # needs before lots and the log head, in the order approvals lock them
    at = _when(data.received_at, shipment, now)
    accepted, rejections = _check_lines(shipment, data)
    decision = _check_excursion(shipment, data.excursion_decision)
    if shipment.status in (S.DISPATCHED, S.IN_TRANSIT):  # the receiver saw it arrive: one step less
        _step(
            db,
            actor,
            shipment,
            S.DELIVERED,
            at,
            place=data.place,
            note="delivered (recorded with the receipt)",
        )
        shipment.delivered_at = at
    _step(db, actor, shipment, S.RECEIVED, at, place=data.place, note=data.note)
    signature = _store_signature(db, data) if data.signature else None
    if decision is ExcursionDecision.DISCARD:
        for line_id, units in accepted.items():
            if units:
                rejections[line_id][RejectionReason.TEMPERATURE_EXCURSION.value] = (
                    rejections[line_id].get(RejectionReason.TEMPERATURE_EXCURSION.value, 0) + units
                )
                accepted[line_id] = 0
    events = _receipt_events(shipment, accepted, rejections, decision, at)
    _record(db, actor, events, key or f"{shipment.reference}:receipt", request_digest)
    quarantine = decision is ExcursionDecision.QUARANTINE
    for line in shipment.lines:
        line.accepted = accepted[line.id]
        line.rejections = dict(rejections[line.id])
        line.rejected = sum(rejections[line.id].values())
        line.quarantined = line.accepted if quarantine else 0
    shipment.received_at, shipment.receiver_name = at, data.receiver
    shipment.signature_sha256 = signature
    shipment.excursion_decision = decision.value if decision else None
    shipment.quarantine_open = quarantine and any(line.quarantined for line in shipment.lines)
    transparency.append(
        db,
        "shipment.received",
        {  # no receiver's name: the log is public
            **_route_entry(shipment),
            "received_at": at.astimezone(UTC).isoformat(),
            "excursion_decision": shipment.excursion_decision,
            "signature_sha256": signature,
            "lines": [
                {
                    "product": line.product.code,
                    "lot": line.lot.lot_number,
                    "shipped": line.quantity,
                    "accepted": line.accepted,
                    "rejected": dict(sorted(line.rejections.items())),
                }
                for line in shipment.lines
            ],
        },
    )
    if not quarantine:
        _fulfil(db, actor, shipment, {line.id: line.accepted for line in shipment.lines})
    _return_to_demand(
        db, actor, shipment, {line.id: line.rejected for line in shipment.lines}, "rejected in part"
    )
    db.flush()
    return shipment, False


def _check_lines(shipment: Shipment, data: ReceiptIn) -> tuple[dict[int, int], dict[int, dict[str, int]]]:
    """Every line once, and accepted + rejected = shipped for each; all problems at once."""
    lines = {line.id: line for line in shipment.lines}
    errors: list[FieldError] = []
    accepted: dict[int, int] = {}
    rejections: dict[int, dict[str, int]] = {}
    for index, entry in enumerate(data.lines):
        where = f"lines[{index}]"
        line = lines.get(entry.line_id)
        if line is None:
            errors.append(FieldError(f"{where}.line_id", f"{entry.line_id} is not a line of {shipment.code}"))
            continue
        if line.id in accepted:
            errors.append(FieldError(f"{where}.line_id", f"line {line.id} is given twice"))
            continue
        counted = entry.accepted + entry.rejected_total
        if counted > line.quantity:
            errors.append(
                FieldError(
                    f"{where}.accepted",
                    f"{entry.accepted} accepted + {entry.rejected_total} rejected is more than the "
                    f"{line.quantity} shipped on line {line.id}",
                )
            )
        elif counted < line.quantity:
            errors.append(
                FieldError(
                    f"{where}.rejected",
                    f"{line.quantity - counted} of the {line.quantity} shipped on line {line.id} are not "
                    "accounted for: record them as rejected (short_shipped if they never arrived)",
                )
            )
        accepted[line.id] = entry.accepted
        rejections[line.id] = {r.reason.value: r.quantity for r in entry.rejected}
    for line_id, line in lines.items():
        if line_id not in accepted and not any(e.field.endswith("line_id") for e in errors):
            errors.append(
                FieldError(
                    "lines", f"line {line_id} ({line.product.code} lot {line.lot.lot_number}) is missing"
                )
            )
    if errors:
        raise InvalidInput(f"the receipt of {shipment.code} does not add up", errors)
    return accepted, rejections


def _check_excursion(shipment: Shipment, decision: ExcursionDecision | None) -> ExcursionDecision | None:
    if decision is None and excursion_flagged(shipment):
        raise InvalidInput.on(
            "excursion_decision",
            "the temperature log shows an excursion beyond the product's tolerance: accept, quarantine "
            "or discard the stock",
        )
    return decision


def _receipt_events(
    shipment: Shipment,
    accepted: dict[int, int],
    rejections: dict[int, dict[str, int]],
    decision: ExcursionDecision | None,
    at: datetime,
) -> list[ledger.EventInput]:
    """Per line: what arrived comes in, the rejected part is written off, what never arrived is a
    loss at the source, and under quarantine the accepted part is held (reserved)."""
    events = []
    for line in shipment.lines:
        lost = rejections[line.id].get(RejectionReason.SHORT_SHIPPED.value, 0)
        arrived = line.quantity - lost
        if arrived:
            events.append(
                _event(
                    shipment,
                    line,
                    EventKind.TRANSFER_IN,
                    arrived,
                    at,
                    at_destination=True,
                    reason=f"received from {shipment.code}",
                )
            )
        for reason, units in sorted(rejections[line.id].items()):
            if reason != RejectionReason.SHORT_SHIPPED.value:
                events.append(
                    _event(
                        shipment,
                        line,
                        EventKind.WRITE_OFF,
                        units,
                        at,
                        at_destination=True,
                        reason=f"rejected at receipt: {reason.replace('_', ' ')}",
                    )
                )
        if lost:
            events.append(
                _event(
                    shipment,
                    line,
                    EventKind.TRANSIT_LOSS,
                    lost,
                    at,
                    at_destination=False,
                    reason=f"short-shipped on {shipment.code}",
                )
            )
        if decision is ExcursionDecision.QUARANTINE and accepted[line.id]:
            events.append(
                _event(
                    shipment,
                    line,
                    EventKind.RESERVATION,
                    accepted[line.id],
                    at,
                    at_destination=True,
                    reason="quarantine after a temperature excursion",
                    reference=f"quarantine:{shipment.id}",
                )
            )
    return events


def _store_signature(db: Session, data: ReceiptIn) -> str:
    assert data.signature is not None
    try:
        raw = base64.b64decode(data.signature.data_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput.on("signature.data_base64", "is not valid base64") from None
    if len(raw) > SIGNATURE_MAX_BYTES:
        raise InvalidInput.on("signature.data_base64", f"is over {SIGNATURE_MAX_BYTES // 1_000_000} MB")
    if not raw.startswith(SIGNATURE_MAGIC[data.signature.media_type]):
        raise InvalidInput.on("signature.data_base64", f"is not a {data.signature.media_type} image")
    digest = hashlib.sha256(raw).hexdigest()
    if db.get(Blob, digest) is None:
        db.add(Blob(sha256=digest, media_type=data.signature.media_type, size=len(raw), data=raw))
        db.flush()
    return digest


def signature(db: Session, actor: Principal, shipment_id: int) -> Blob:
    shipment = get(db, actor, shipment_id)
    blob = db.get(Blob, shipment.signature_sha256) if shipment.signature_sha256 else None
    if blob is None:
        raise NotFound(f"{shipment.code} has no signature")
    return blob


# -- cold chain -------------------------------------------------------------------------------


def upload_log(
    db: Session, actor: Principal, shipment_id: int, data: bytes, now: datetime | None = None
) -> TemperatureLog:
    """Judge a logger file against every product on the shipment (each has its range and
    tolerance); a breach makes the receiver decide at receipt."""
    shipment = get(db, actor, shipment_id, lock=True)
    if Side.DESTINATION not in _acting_sides(actor, shipment):
        raise PermissionDenied("the receiving side uploads the temperature log")
    if shipment.status not in LOG_STATUSES:
        raise Conflict(
            f"{shipment.code} is {shipment.status.value}: a log is uploaded between dispatch and receipt",
            [FieldError("status", shipment.status.value)],
        )
    readings = coldchain.parse_logger_csv(data)
    findings = []
    breach = False
    for product in sorted({line.product for line in shipment.lines}, key=lambda p: p.code):
        everything, flagged = coldchain.detect(
            readings, product.min_temp_c, product.max_temp_c, product.excursion_tolerance_minutes
        )
        breach = breach or bool(flagged)
        findings.append(
            {
                "product": product.code,
                "min_c": product.min_temp_c,
                "max_c": product.max_temp_c,
                "tolerance_minutes": product.excursion_tolerance_minutes,
                "excursions": [_excursion_json(e) for e in everything],
                "flagged": [_excursion_json(e) for e in flagged],
            }
        )
    temperatures = [r.celsius for r in readings]
    log = TemperatureLog(
        shipment_id=shipment.id,
        sha256=hashlib.sha256(data).hexdigest(),
        readings=len(readings),
        first_at=readings[0].at,
        last_at=readings[-1].at,
        min_c=min(temperatures),
        max_c=max(temperatures),
        breach=breach,
        findings=findings,
        uploaded_by=actor.user_id or None,
        uploaded_at=now or utcnow(),
    )
    shipment.logs.append(log)
    db.flush()
    return log


def _excursion_json(excursion: coldchain.Excursion) -> dict[str, Any]:
    return {
        "start": excursion.start.isoformat(),
        "end": excursion.end.isoformat(),
        "minutes": round(excursion.minutes, 2),
        "extreme_c": excursion.extreme_c,
        "direction": excursion.direction,
    }


def resolve_quarantine(
    db: Session, actor: Principal, shipment_id: int, data: QuarantineIn, now: datetime | None = None
) -> Shipment:
    """Release quarantined stock for use, or write it off with the excursion as the reason."""
    now = now or utcnow()
    shipment = get(db, actor, shipment_id, lock=True)
    if Side.DESTINATION not in _acting_sides(actor, shipment):
        raise PermissionDenied("the receiving side decides on quarantined stock")
    _needs_of(db, shipment)  # needs before lots, in the order approvals lock them
    if not shipment.quarantine_open:
        raise Conflict(f"{shipment.code} has no stock in quarantine", [FieldError("quarantine", "none")])
    held = {line.id: line.quarantined for line in shipment.lines if line.quarantined}
    kind = EventKind.RELEASE if data.release else EventKind.WRITE_OFF
    reason = "released from quarantine" if data.release else "discarded after a temperature excursion"
    events = [
        _event(
            shipment,
            line,
            kind,
            held[line.id],
            now,
            at_destination=True,
            reason=reason + (f": {data.note}" if data.note else ""),
            from_reservation=not data.release,
            reference=f"quarantine:{shipment.id}",
        )
        for line in shipment.lines
        if line.id in held
    ]
    _record(db, actor, events, f"quarantine:{shipment.id}:{'release' if data.release else 'discard'}")
    for line in shipment.lines:
        if line.id in held:
            line.quarantined = 0
            if not data.release:
                key = RejectionReason.TEMPERATURE_EXCURSION.value
                line.accepted -= held[line.id]
                line.rejected += held[line.id]
                line.rejections = {**line.rejections, key: line.rejections.get(key, 0) + held[line.id]}
    shipment.quarantine_open = False
    shipment.excursion_decision = (
        f"{ExcursionDecision.QUARANTINE.value}:{'released' if data.release else 'discarded'}"
    )
    if data.release:
        _fulfil(db, actor, shipment, held)
    else:
        _return_to_demand(db, actor, shipment, held, "discarded from quarantine")
    db.flush()
    return shipment


# -- views ------------------------------------------------------------------------------------


def units_on_the_road(shipment: Shipment) -> int:
    return sum(line.quantity for line in shipment.lines) if shipment.status in ON_THE_ROAD else 0


def route_feature(shipment: Shipment, now: datetime) -> dict[str, Any]:
    """A GeoJSON feature for the map: from source through every reported position to the
    destination (or the last position while on the road)."""
    points = [[shipment.source.longitude, shipment.source.latitude]]
    points += [
        [step.longitude, step.latitude]
        for step in shipment.history
        if step.latitude is not None and step.longitude is not None
    ]
    if shipment.status in (S.DELIVERED, S.RECEIVED) or len(points) == 1:
        points.append([shipment.destination.longitude, shipment.destination.latitude])
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": points},
        "properties": {
            "id": shipment.id,
            "code": shipment.code,
            "status": shipment.status.value,
            "mode": shipment.mode.value,
            "source": shipment.source.code,
            "destination": shipment.destination.code,
            "eta": shipment.eta.isoformat(),
            "overdue": is_overdue(shipment, now),
            "units": sum(line.quantity for line in shipment.lines),
        },
    }
