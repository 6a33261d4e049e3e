"""REST routes of shipments: plan from an approved allocation, list and track (with a map),
move through the workflow, upload a temperature log, receive with proof of delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, UploadFile, status
from fastapi.responses import JSONResponse, Response

from healthmesh.accounts.access import Permission, Principal
from healthmesh.db import utcnow
from healthmesh.logistics import service
from healthmesh.logistics.models import Shipment, TemperatureLog
from healthmesh.logistics.schemas import (
    FindingOut,
    LineOut,
    MoveIn,
    PlanShipmentsIn,
    QuarantineIn,
    ReceiptIn,
    ShipmentDetailOut,
    ShipmentOut,
    TemperatureLogOut,
    TransitionOut,
)
from healthmesh.logistics.workflow import ShipmentStatus
from healthmesh.registry.schemas import RowId
from healthmesh.web.deps import DbSession, IdempotencyKey, Page, require
from healthmesh.web.pagination import PageOut

router = APIRouter(prefix="/api/v1/logistics", tags=["logistics"])

Reader = Annotated[Principal, Depends(require(Permission.SHIPMENT_READ))]
Planner = Annotated[Principal, Depends(require(Permission.SHIPMENT_PLAN))]
Sender = Annotated[Principal, Depends(require(Permission.SHIPMENT_SEND))]
Receiver = Annotated[Principal, Depends(require(Permission.SHIPMENT_RECEIVE))]
LOG_MAX_BYTES = 5 * 1024 * 1024


def shipment_out(shipment: Shipment, now: datetime) -> ShipmentOut:
    return ShipmentOut(**_summary(shipment, now))


def _summary(shipment: Shipment, now: datetime) -> dict[str, Any]:
    return {
        "id": shipment.id,
        "code": shipment.code,
        "plan_id": shipment.plan_id,
        "mutual_aid_plan_id": shipment.mutual_aid_plan_id,
        "source": shipment.source.code,
        "source_member": shipment.source.jurisdiction.iso3,
        "destination": shipment.destination.code,
        "destination_member": shipment.destination.jurisdiction.iso3,
        "mode": shipment.mode,
        "great_circle_km": shipment.great_circle_km,
        "distance_km": shipment.distance_km,
        "transit_hours": shipment.transit_hours,
        "status": shipment.status,
        "eta": shipment.eta,
        "overdue": service.is_overdue(shipment, now),
        "units": sum(line.quantity for line in shipment.lines),
        "dispatched_at": shipment.dispatched_at,
        "delivered_at": shipment.delivered_at,
        "received_at": shipment.received_at,
        "receiver_name": shipment.receiver_name,
        "signature_sha256": shipment.signature_sha256,
        "excursion_flagged": service.excursion_flagged(shipment),
        "excursion_decision": shipment.excursion_decision,
        "quarantine_open": shipment.quarantine_open,
    }


def _log_out(log: TemperatureLog) -> TemperatureLogOut:
    return TemperatureLogOut(
        id=log.id,
        sha256=log.sha256,
        readings=log.readings,
        first_at=log.first_at,
        last_at=log.last_at,
        min_c=log.min_c,
        max_c=log.max_c,
        breach=log.breach,
        findings=[FindingOut.model_validate(finding) for finding in log.findings],
        uploaded_at=log.uploaded_at,
    )


def detail_out(shipment: Shipment, now: datetime) -> ShipmentDetailOut:
    return ShipmentDetailOut(
        **_summary(shipment, now),
        lines=[
            LineOut(
                id=line.id,
                need_id=line.need_id,
                product=line.product.code,
                lot_number=line.lot.lot_number,
                expiry_date=line.lot.expiry_date.isoformat() if line.lot.expiry_date else None,
                quantity=line.quantity,
                accepted=line.accepted,
                rejected=line.rejected,
                rejections=line.rejections,
                lost=line.lost,
                quarantined=line.quarantined,
            )
            for line in shipment.lines
        ],
        history=[
            TransitionOut(
                from_status=step.from_status,
                to_status=step.to_status,
                by=step.actor.username if step.actor else None,
                at=step.at,
                place=step.place,
                latitude=step.latitude,
                longitude=step.longitude,
                note=step.note,
            )
            for step in shipment.history
        ],
        temperature_logs=[_log_out(log) for log in shipment.logs],
    )


@router.post(
    "/plans/{plan_id}/shipments", response_model=list[ShipmentDetailOut], status_code=status.HTTP_201_CREATED
)
def plan_shipments(
    plan_id: RowId, data: PlanShipmentsIn, db: DbSession, actor: Planner
) -> list[ShipmentDetailOut]:
    """Turn an approved plan's lines into shipments, one per source and destination."""
    now = utcnow()
    return [detail_out(s, now) for s in service.plan_shipments(db, actor, plan_id, data.mode)]


@router.get("/shipments", response_model=PageOut[ShipmentOut])
def list_shipments(
    db: DbSession,
    actor: Reader,
    page: Page,
    status_: Annotated[ShipmentStatus | None, Query(alias="status")] = None,
    member: Annotated[str | None, Query(description="ISO3 of the sending or receiving member")] = None,
    product: str | None = None,
    plan_id: RowId | None = None,
    overdue: Annotated[bool | None, Query(description="On the road past its ETA")] = None,
) -> PageOut[ShipmentOut]:
    """Shipments leaving from or arriving at a facility in your scope, newest first."""
    now = utcnow()
    rows, total = service.list_shipments(
        db,
        actor,
        status=status_,
        member=member,
        product=product,
        plan_id=plan_id,
        overdue=overdue,
        now=now,
        page=page,
    )
    return PageOut[ShipmentOut](
        items=[shipment_out(s, now) for s in rows], total=total, limit=page[0], offset=page[1]
    )


@router.get("/shipments/map")
def shipments_map(
    db: DbSession,
    actor: Reader,
    status_: Annotated[ShipmentStatus | None, Query(alias="status")] = None,
    overdue: bool | None = None,
) -> JSONResponse:
    """Routes as GeoJSON (a FeatureCollection of LineStrings) for the map."""
    now = utcnow()
    rows, _ = service.list_shipments(db, actor, status=status_, overdue=overdue, now=now, page=(5000, 0))
    body = {"type": "FeatureCollection", "features": [service.route_feature(s, now) for s in rows]}
    return JSONResponse(body, media_type="application/geo+json")


@router.get("/shipments/{shipment_id}", response_model=ShipmentDetailOut)
def get_shipment(shipment_id: RowId, db: DbSession, actor: Reader) -> ShipmentDetailOut:
    return detail_out(service.get(db, actor, shipment_id), utcnow())


@router.post("/shipments/{shipment_id}/moves", response_model=ShipmentDetailOut)
def move_shipment(shipment_id: RowId, data: MoveIn, db: DbSession, actor: Sender) -> ShipmentDetailOut:
    """Pick, dispatch, mark in transit, cancel or declare lost (the source side); mark delivered
    (either side: the carrier reports to the sender, the gate to the receiver)."""
    return detail_out(service.move(db, actor, shipment_id, data), utcnow())


@router.post("/shipments/{shipment_id}/temperature-logs", response_model=TemperatureLogOut, status_code=201)
def upload_temperature_log(
    shipment_id: RowId, db: DbSession, actor: Receiver, file: Annotated[UploadFile, File()]
) -> TemperatureLogOut:
    """Upload the logger's CSV (columns `timestamp`, `temperature_c`); excursions beyond a product's
    tolerance are flagged and the receipt then needs a decision."""
    data = file.file.read(LOG_MAX_BYTES + 1)
    return _log_out(service.upload_log(db, actor, shipment_id, data))


@router.post("/shipments/{shipment_id}/receipt", response_model=ShipmentDetailOut)
def receive_shipment(
    shipment_id: RowId, data: ReceiptIn, db: DbSession, actor: Receiver, key: IdempotencyKey = None
) -> ShipmentDetailOut:
    """Confirm receipt: accepted and rejected units per line, receiver, time, optional signature."""
    shipment, _ = service.receive(db, actor, shipment_id, data, idempotency_key=key)
    return detail_out(shipment, utcnow())


@router.post("/shipments/{shipment_id}/quarantine", response_model=ShipmentDetailOut)
def resolve_quarantine(
    shipment_id: RowId, data: QuarantineIn, db: DbSession, actor: Receiver
) -> ShipmentDetailOut:
    """Release quarantined stock for use, or write it off."""
    return detail_out(service.resolve_quarantine(db, actor, shipment_id, data), utcnow())


@router.get("/shipments/{shipment_id}/signature")
def get_signature(shipment_id: RowId, db: DbSession, actor: Reader) -> Response:
    """The receiver's signature image, as stored (its SHA-256 is on the shipment)."""
    blob = service.signature(db, actor, shipment_id)
    return Response(blob.data, media_type=blob.media_type, headers={"ETag": f'"{blob.sha256}"'})
