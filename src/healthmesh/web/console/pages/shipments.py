"""Console pages of shipments: the list with its filters and routes on the map, and one shipment
with its lines, history and temperature logs, and the forms its viewer's side may use: the
sending side moves it (pick, dispatch, report in transit, delivered, cancel, lost); the receiving
side uploads the logger file, confirms receipt with discrepancies, and decides on quarantine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from healthmesh.accounts.access import Permission
from healthmesh.accounts.models import User
from healthmesh.db import utcnow
from healthmesh.errors import NotFound
from healthmesh.logistics import service as logistics
from healthmesh.logistics.models import Shipment
from healthmesh.logistics.schemas import ExcursionDecision, RejectionReason
from healthmesh.logistics.workflow import TRANSITIONS, ShipmentStatus, Side
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Jurisdiction, Product
from healthmesh.web.console.base import Viewer, render, viewer_with
from healthmesh.web.deps import DbSession

router = APIRouter(include_in_schema=False)

S = ShipmentStatus
PAGE_SIZE = 50
MAP_LIMIT = 1000  # routes drawn at most (the demo region has about 300 shipments)
RECEIVABLE = frozenset({S.DISPATCHED, S.IN_TRANSIT, S.DELIVERED})

STATUS_BADGE = {
    S.PLANNED: "",
    S.PICKED: "",
    S.DISPATCHED: "amber",
    S.IN_TRANSIT: "amber",
    S.DELIVERED: "amber",
    S.RECEIVED: "green",
    S.CANCELLED: "",
    S.LOST: "red",
}
REASON_LABELS = {
    RejectionReason.DAMAGED: "Damaged",
    RejectionReason.EXPIRED: "Expired",
    RejectionReason.TEMPERATURE_EXCURSION: "Temperature excursion",
    RejectionReason.SHORT_SHIPPED: "Short-shipped (never arrived)",
}
DECISION_LABELS = {
    ExcursionDecision.ACCEPT: "Accept: the stock is usable",
    ExcursionDecision.QUARANTINE: "Quarantine: receive it and hold it until released or discarded",
    ExcursionDecision.DISCARD: "Discard: receive it and write it off",
}


@dataclass(frozen=True)
class MoveAction:
    """One move the viewer's side may make now, as a form on the page."""

    status: str
    label: str
    help: str
    fields: tuple[str, ...]  # among place, latitude, longitude, note
    danger: bool = False


MOVES: dict[ShipmentStatus, tuple[str, str, tuple[str, ...], bool]] = {
    S.PICKED: ("Mark picked", "The units are picked and packed at the source.", ("place",), False),
    S.DISPATCHED: (
        "Dispatch",
        "The units leave the source: they are taken out of its stock and counted as pipeline.",
        ("place",),
        False,
    ),
    S.IN_TRANSIT: (
        "Report in transit",
        "Where the consignment is now: the position is drawn on the map.",
        ("place", "latitude", "longitude"),
        False,
    ),
    S.DELIVERED: ("Mark delivered", "The consignment is at the destination's gate.", ("place",), False),
    S.CANCELLED: (
        "Cancel shipment",
        "Before dispatch: the reservations are released and the needs return to allocation.",
        ("note",),
        True,
    ),
    S.LOST: (
        "Declare lost",
        "Every unit on board is written off at the source; the needs return to allocation.",
        ("note",),
        True,
    ),
}


def moves_for(status: ShipmentStatus, sides: frozenset[Side]) -> list[MoveAction]:
    """The moves the workflow allows from `status` to one of `sides` (receipt has its own form)."""
    out = []
    for (current, target), allowed in TRANSITIONS.items():
        if current is status and allowed & sides and target in MOVES:
            label, help_text, fields, danger = MOVES[target]
            out.append(MoveAction(target.value, label, help_text, fields, danger))
    return out


def acting_sides(viewer: Viewer, shipment: Shipment) -> frozenset[Side]:
    """The sides of the shipment the viewer covers and may act for."""
    principal = viewer.principal
    sides = logistics.sides_of(principal, shipment)
    out = set()
    if Side.SOURCE in sides and principal.has(Permission.SHIPMENT_SEND):
        out.add(Side.SOURCE)
    if Side.DESTINATION in sides and principal.has(Permission.SHIPMENT_RECEIVE):
        out.add(Side.DESTINATION)
    return frozenset(out)


def _status(raw: str) -> ShipmentStatus | None:
    try:
        return ShipmentStatus(raw) if raw else None
    except ValueError:
        return None


def _overdue(raw: str) -> bool | None:
    return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(raw.lower())


def route_of(feature: dict[str, Any]) -> dict[str, Any]:
    """What map.js draws for one GeoJSON route feature, with a label for its title."""
    props = feature["properties"]
    late = " — OVERDUE" if props["overdue"] else ""
    return {
        "id": props["id"],
        "coordinates": feature["geometry"]["coordinates"],
        "status": props["status"],
        "overdue": props["overdue"],
        "label": f"{props['code']} {props['source']} → {props['destination']}: "
        f"{props['status'].replace('_', ' ')}, {props['units']:,} units{late}",
    }


@router.get("/console/shipments", response_class=HTMLResponse)
def shipments_list(
    request: Request,
    db: DbSession,
    viewer: Viewer = viewer_with(Permission.SHIPMENT_READ),
    status: str = "",
    member: str = "",
    product: str = "",
    overdue: str = "",
    offset: int = Query(default=0, ge=0),
) -> HTMLResponse:
    now = utcnow()
    filters: dict[str, Any] = {
        "status": _status(status),
        "member": member.upper() or None,
        "product": product or None,
        "overdue": _overdue(overdue),
    }
    on_map, total = logistics.list_shipments(db, viewer.principal, now=now, page=(MAP_LIMIT, 0), **filters)
    if offset + PAGE_SIZE <= MAP_LIMIT:
        rows = on_map[offset : offset + PAGE_SIZE]
    else:  # beyond what the map shows: the page on its own
        rows, _ = logistics.list_shipments(db, viewer.principal, now=now, page=(PAGE_SIZE, offset), **filters)
    mapped = len(on_map)
    members = list(db.scalars(select(Jurisdiction).order_by(Jurisdiction.name)))
    routes = [route_of(logistics.route_feature(s, now)) for s in on_map]
    touched: dict[str, int] = {}
    for shipment in on_map:
        for iso3 in {shipment.source.jurisdiction.iso3, shipment.destination.jurisdiction.iso3}:
            touched[iso3] = touched.get(iso3, 0) + 1
    map_data = {
        m.iso3: {
            "value": None,
            "label": f"{m.name}: {touched.get(m.iso3, 0)} shipment(s) from or to it in this list",
            "href": f"/console/shipments?member={m.iso3}",
        }
        for m in members
    }
    query = {k: v for k, v in (("status", status), ("member", member), ("product", product)) if v}
    if filters["overdue"] is not None:
        query["overdue"] = "1" if filters["overdue"] else "0"
    return render(
        request,
        viewer,
        "console/shipments.html",
        shipments=rows,
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        now=now,
        is_overdue=logistics.is_overdue,
        routes=routes,
        mapped=mapped,
        map_data=map_data,
        members=members,
        products=list(db.execute(select(Product.code, Product.name).order_by(Product.code))),
        statuses=list(ShipmentStatus),
        badge=STATUS_BADGE,
        chosen={
            "status": filters["status"].value if filters["status"] else "",
            "member": filters["member"] or "",
            "product": product,
            "overdue": query.get("overdue", ""),
        },
        query=query,
        depot=FacilityKind.REGIONAL_RESERVE_DEPOT,
        when=_when,
    )


def _minutes(value: float) -> str:
    hours, minutes = divmod(round(value), 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if minutes or not parts:
        parts.append(f"{minutes} min")
    return " ".join(parts)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


@router.get("/console/shipments/{shipment_id}", response_class=HTMLResponse)
def shipment_detail(
    request: Request,
    shipment_id: int,
    db: DbSession,
    viewer: Viewer = viewer_with(Permission.SHIPMENT_READ),
) -> HTMLResponse:
    try:
        shipment = logistics.get(db, viewer.principal, shipment_id)
    except NotFound:
        response = render(request, viewer, "console/shipment_missing.html", shipment_id=shipment_id)
        response.status_code = 404
        return response
    now = utcnow()
    sides = acting_sides(viewer, shipment)
    ends = {shipment.source.jurisdiction, shipment.destination.jurisdiction}
    map_data = {
        m.iso3: {"value": None, "label": m.name, "href": f"/console/shipments?member={m.iso3}"} for m in ends
    }
    flagged = logistics.excursion_flagged(shipment)
    receiving = Side.DESTINATION in sides
    uploader_ids = {log.uploaded_by for log in shipment.logs if log.uploaded_by is not None}
    uploaders = (
        {
            uid: name
            for uid, name in db.execute(select(User.id, User.username).where(User.id.in_(uploader_ids)))
        }
        if uploader_ids
        else {}
    )
    positions = any(step.latitude is not None for step in shipment.history)
    return render(
        request,
        viewer,
        "console/shipment_detail.html",
        s=shipment,
        now=now,
        overdue=logistics.is_overdue(shipment, now),
        badge=STATUS_BADGE,
        sides=sides,
        source_moves=moves_for(shipment.status, frozenset({Side.SOURCE}) & sides),
        destination_moves=[
            m
            for m in moves_for(shipment.status, frozenset({Side.DESTINATION}) & sides)
            if Side.SOURCE not in sides  # one form per move: the sending side's already offers it
        ],
        can_upload_log=receiving and shipment.status in logistics.LOG_STATUSES,
        can_receive=receiving and shipment.status in RECEIVABLE,
        can_resolve_quarantine=receiving and shipment.quarantine_open,
        flagged=flagged,
        reasons=[(r.value, REASON_LABELS[r]) for r in RejectionReason],
        decisions=[(d.value, DECISION_LABELS[d]) for d in ExcursionDecision],
        uploaders=uploaders,
        reaches_destination=shipment.status in (S.DELIVERED, S.RECEIVED) or not positions,
        route=[route_of(logistics.route_feature(shipment, now))],
        map_data=map_data,
        depot=FacilityKind.REGIONAL_RESERVE_DEPOT,
        minutes=_minutes,
        celsius=lambda value: f"{value:g} °C",
        when=_when,
    )
