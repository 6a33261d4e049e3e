"""The shortage board: product x member, the least covered first, filtered by product (and member,
for region-wide viewers), refreshed live when stock or needs change. Member- and region-wide: a
facility-scoped viewer gets a short explanation instead."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Permission, ScopeKind
from healthmesh.registry.models import Jurisdiction, Product
from healthmesh.supply import analytics
from healthmesh.web.console.base import Viewer, render, viewer_with
from healthmesh.web.deps import DbSession

router = APIRouter(include_in_schema=False)

HORIZON_DAYS = 30
ROWS_SHOWN = 100


def _board(
    db: Session, viewer: Viewer, product: str | None, member: str | None, show_all: bool
) -> dict[str, Any]:
    """What the board and its fragment show, from the query's filters (unknown values are ignored
    and named, so a stale bookmark still opens)."""
    principal = viewer.principal
    products = list(db.execute(select(Product.id, Product.code, Product.name).order_by(Product.code)))
    region_wide = principal.scope is ScopeKind.REGION
    members = list(db.execute(select(Jurisdiction.iso3, Jurisdiction.name).order_by(Jurisdiction.name)))
    notes = []
    product_id = next((p for p, code, _ in products if code == product), None) if product else None
    if product and product_id is None:
        notes.append(f"No product {product}: showing every product.")
        product = None
    member = member.upper() if member else None
    if member and (not region_wide or member not in {iso3 for iso3, _ in members}):
        notes.append(f"No member {member} on your board: showing every member.")
        member = None
    rows = analytics.shortage_board(
        db,
        principal,
        window=analytics.Window(date.today()),
        horizon_days=HORIZON_DAYS,
        product_id=product_id,
    )
    if member:
        rows = rows.of_member(member)
    critical, short, members_short = rows.coverage_counts()
    filters = {"product": product, "member": member}
    live_query = urlencode({k: v for k, v in {**filters, "all": "1" if show_all else None}.items() if v})
    return {
        "products": [(code, name) for _, code, name in products],
        "members": members if region_wide else [],
        "product": product or "",
        "member": member or "",
        "notes": notes,
        "rows": list(rows) if show_all else rows[:ROWS_SHOWN],
        "total": len(rows),
        "critical": critical,
        "short": short,
        "members_short": members_short,
        "show_all": show_all,
        "all_url": "/console/shortages?" + urlencode({**{k: v for k, v in filters.items() if v}, "all": "1"}),
        "fragment_url": "/console/shortages/table" + (f"?{live_query}" if live_query else ""),
        "horizon_days": HORIZON_DAYS,
    }


@router.get("/console/shortages", response_class=HTMLResponse)
def shortages_page(
    request: Request,
    db: DbSession,
    viewer: Viewer = viewer_with(Permission.STOCK_READ),
    product: str | None = None,
    member: str | None = None,
    show_all: Annotated[bool, Query(alias="all", description="Every row, not the first 100")] = False,
) -> HTMLResponse:
    if viewer.principal.scope is ScopeKind.FACILITY:
        return render(request, viewer, "console/shortages.html", facility_view=True)
    return render(
        request,
        viewer,
        "console/shortages.html",
        facility_view=False,
        **_board(db, viewer, product, member, show_all),
    )


@router.get("/console/shortages/table", response_class=HTMLResponse)
def shortages_table(
    request: Request,
    db: DbSession,
    viewer: Viewer = viewer_with(Permission.STOCK_READ),
    product: str | None = None,
    member: str | None = None,
    show_all: Annotated[bool, Query(alias="all", description="Every row, not the first 100")] = False,
) -> HTMLResponse:
    """The board alone, for the page's live refresh."""
    if viewer.principal.scope is ScopeKind.FACILITY:
        return HTMLResponse("")
    return render(
        request, viewer, "console/_shortages_board.html", **_board(db, viewer, product, member, show_all)
    )
