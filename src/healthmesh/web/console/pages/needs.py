"""The needs queue: needs in the viewer's scope, filtered by status, urgency, product (and member,
for region-wide viewers). A member's focal point endorses or rejects its submitted needs here,
through the REST API; the queue refreshes live when needs change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Permission, ScopeKind
from healthmesh.needs import service as needs
from healthmesh.needs.models import Need
from healthmesh.needs.workflow import OUTSTANDING, NeedStatus, Urgency
from healthmesh.registry.models import Jurisdiction, Product
from healthmesh.web.console.base import Viewer, render, viewer_with
from healthmesh.web.deps import DbSession

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
OUTSTANDING_KEY, ANY_KEY = "outstanding", "all"
STATUS_CHOICES: list[tuple[str, str]] = [
    (OUTSTANDING_KEY, "Outstanding"),
    (NeedStatus.SUBMITTED.value, "Submitted: awaiting endorsement"),
    *((s.value, s.value.replace("_", " ").capitalize()) for s in NeedStatus if s is not NeedStatus.SUBMITTED),
    (ANY_KEY, "Any status"),
]


def may_decide(viewer: Viewer, need: Need) -> bool:
    """Endorse and Reject are offered where the API would accept them."""
    principal = viewer.principal
    return (
        need.status is NeedStatus.SUBMITTED
        and principal.has(Permission.NEED_ENDORSE)
        and principal.covers_jurisdiction(need.jurisdiction_id)
    )


def _queue(
    db: Session,
    viewer: Viewer,
    status: str | None,
    urgency: str | None,
    product: str | None,
    member: str | None,
    page: int,
) -> dict[str, Any]:
    """The queue's rows and filters; unknown filter values fall back to their default."""
    principal = viewer.principal
    status_key = status if status in {key for key, _ in STATUS_CHOICES} else OUTSTANDING_KEY
    statuses = (
        sorted(OUTSTANDING)
        if status_key == OUTSTANDING_KEY
        else None
        if status_key == ANY_KEY
        else [NeedStatus(status_key)]
    )
    urgency_value = Urgency(urgency) if urgency in {u.value for u in Urgency} else None
    products = list(db.execute(select(Product.code, Product.name).order_by(Product.code)))
    product = product if product in {code for code, _ in products} else None
    members = list(db.execute(select(Jurisdiction.iso3, Jurisdiction.name).order_by(Jurisdiction.name)))
    member = member.upper() if member and member.upper() in {iso3 for iso3, _ in members} else None
    rows, total = needs.list_needs(
        db,
        principal,
        status=statuses,
        jurisdiction=member,
        facility=None,
        product=product,
        urgency=urgency_value,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    endorser = principal.has(Permission.NEED_ENDORSE)
    awaiting = 0
    if endorser:
        _, awaiting = needs.list_needs(
            db,
            principal,
            status=[NeedStatus.SUBMITTED],
            jurisdiction=member,
            facility=None,
            product=None,
            urgency=None,
            limit=1,
            offset=0,
        )
    filters = {
        "status": status_key if status_key != OUTSTANDING_KEY else None,
        "urgency": urgency_value.value if urgency_value else None,
        "product": product,
        "member": member,
    }

    def url(path: str, **extra: Any) -> str:
        query = urlencode({k: v for k, v in {**filters, **extra}.items() if v})
        return path + (f"?{query}" if query else "")

    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return {
        "rows": rows,
        "total": total,
        "decidable": {need.id for need in rows if may_decide(viewer, need)},
        "endorser": endorser,
        "awaiting": awaiting,
        "status_choices": STATUS_CHOICES,
        "status": status_key,
        "urgencies": [u.value for u in Urgency],
        "urgency": urgency_value.value if urgency_value else "",
        "products": products,
        "product": product or "",
        "members": members if principal.scope is ScopeKind.REGION else [],
        "member": member or "",
        "filtered": any(filters.values()),
        "page": page,
        "pages": pages,
        "first": (page - 1) * PAGE_SIZE + 1,
        "last": min(page * PAGE_SIZE, total),
        "previous_url": url("/console/needs", page=page - 1 if page > 2 else None) if page > 1 else None,
        "next_url": url("/console/needs", page=page + 1) if page < pages else None,
        "awaiting_url": "/console/needs?"
        + urlencode({k: v for k, v in {"status": NeedStatus.SUBMITTED.value, "member": member}.items() if v}),
        "fragment_url": url("/console/needs/table", page=page if page > 1 else None),
    }


PageNumber = Annotated[int, Query(ge=1, le=100_000)]


@dataclass(frozen=True)
class QueueQuery:
    """The queue's filters and page, from the query string (shared by the page and its fragment)."""

    status: str | None = None
    urgency: str | None = None
    product: str | None = None
    member: str | None = None
    page: PageNumber = 1


Query_ = Annotated[QueueQuery, Depends()]


@router.get("/console/needs", response_class=HTMLResponse)
def needs_page(
    request: Request, db: DbSession, query: Query_, viewer: Viewer = viewer_with(Permission.NEED_READ)
) -> HTMLResponse:
    return render(request, viewer, "console/needs.html", **_queue_of(db, viewer, query))


@router.get("/console/needs/table", response_class=HTMLResponse)
def needs_table(
    request: Request, db: DbSession, query: Query_, viewer: Viewer = viewer_with(Permission.NEED_READ)
) -> HTMLResponse:
    """The queue alone, for the page's live refresh and after a decision."""
    return render(request, viewer, "console/_needs_queue.html", **_queue_of(db, viewer, query))


def _queue_of(db: Session, viewer: Viewer, query: QueueQuery) -> dict[str, Any]:
    return _queue(db, viewer, query.status, query.urgency, query.product, query.member, query.page)
