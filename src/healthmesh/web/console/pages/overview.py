"""The regional overview: a map coloured by one product's coverage, the worst shortages, open
needs, and shipments on the road."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Permission, ScopeKind
from healthmesh.db import utcnow
from healthmesh.logistics import service as logistics
from healthmesh.logistics.workflow import ShipmentStatus
from healthmesh.needs import service as needs
from healthmesh.needs.workflow import Urgency
from healthmesh.registry.models import Jurisdiction, Product
from healthmesh.supply import analytics
from healthmesh.web.console.base import Viewer, render, viewer_with
from healthmesh.web.deps import DbSession

router = APIRouter(include_in_schema=False)


def coverage_map(board: analytics.ShortageBoard, product: str, members: list[Jurisdiction]) -> dict[str, Any]:
    """Member -> colour value and label for the chosen product (no row: no demand there)."""
    by_member = {row.jurisdiction: row for row in board.of_product(product)}
    out: dict[str, Any] = {}
    for member in members:
        row = by_member.get(member.iso3)
        if row is None:
            out[member.iso3] = {"value": None, "label": f"{member.name}: no open demand for {product}"}
        else:
            share = "no stock or pipeline" if row.coverage is None else f"{row.coverage:.0%} covered"
            out[member.iso3] = {"value": row.coverage, "label": f"{member.name}: {share}"}
        out[member.iso3]["href"] = f"/console/members/{member.iso3}"
    return out


def _board(db: Session, viewer: Viewer) -> analytics.ShortageBoard:
    if viewer.principal.scope is ScopeKind.FACILITY:
        return analytics.ShortageBoard.empty()  # the board is member- and region-wide
    return analytics.shortage_board(db, viewer.principal, window=analytics.Window(date.today()))


@router.get("/console", response_class=HTMLResponse)
def overview(
    request: Request,
    db: DbSession,
    viewer: Viewer = viewer_with(Permission.STOCK_READ),
    product: str | None = None,
) -> HTMLResponse:
    board = _board(db, viewer)
    products = list(db.execute(select(Product.code, Product.name).order_by(Product.code)))
    chosen = product or (board[0].product if board else (products[0][0] if products else ""))
    members = list(db.scalars(select(Jurisdiction).order_by(Jurisdiction.name)))
    counts = needs.outstanding_counts(db, viewer.principal)
    open_needs = needs.first_outstanding(
        db, viewer.principal, jurisdiction_id=None, urgency=Urgency.EMERGENCY, limit=8
    )
    moving, on_road = logistics.list_shipments(
        db, viewer.principal, status=ShipmentStatus.IN_TRANSIT, page=(500, 0)
    )
    _, overdue = logistics.list_shipments(db, viewer.principal, overdue=True, page=(1, 0))
    now = utcnow()
    routes = [
        {
            "coordinates": feature["geometry"]["coordinates"],
            "status": feature["properties"]["status"],
            "overdue": feature["properties"]["overdue"],
            "label": f"{feature['properties']['code']} {feature['properties']['source']} → "
            f"{feature['properties']['destination']} ({feature['properties']['units']} units)",
        }
        for feature in (logistics.route_feature(s, now) for s in moving)
    ]
    return render(
        request,
        viewer,
        "console/overview.html",
        products=products,
        chosen=chosen,
        map_data=coverage_map(board, chosen, members),
        routes=routes,
        headline=board[:10],
        emergencies=open_needs,
        emergency_total=counts.emergency,
        outstanding=counts.total,
        in_transit=on_road,
        overdue=overdue,
    )
