"""A member's page: headline figures, stock and indicators by product, trends of the most-used
products over the last twelve weeks, its open needs, and the regional reserve it hosts.

National stock only, as on the shortage board: a regional reserve depot's stock belongs to the
region, so it is shown apart. A facility-scoped viewer sees their own facility's part of their
member (coverage is member-wide, so it is left out for them); other members are a 403 page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Permission, ScopeKind
from healthmesh.needs import service as needs
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import analytics, snapshots
from healthmesh.supply import indicators as ind
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import StockEvent
from healthmesh.supply.service import scoped
from healthmesh.web.console.base import PageForbidden, Viewer, render, viewer_with
from healthmesh.web.deps import DbSession

router = APIRouter(include_in_schema=False)

HORIZON_DAYS = 30  # the shortage board's horizon
NEEDS_SHOWN = 15
ROWS_SHOWN = 100  # product lines, the least covered first (a continent member holds 300 products)
STOCKOUTS_SHOWN = 200  # facility x product stock-outs listed (Nigeria has thousands)


@dataclass
class ProductLine:
    """One product's national position in the member, with its indicators."""

    code: str
    name: str
    position: ind.Position
    adc: float
    days_of_stock: float | None
    demand: float
    coverage: float | None


@dataclass(frozen=True)
class Trend:
    days: list[date]
    products: list[tuple[str, str]]  # code, name
    on_hand: list[list[int]]  # one row per day, one value per product
    rebuilt: int  # past points without a snapshot, rebuilt from the stock ledger


def _start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _check_scope(db: Session, viewer: Viewer, member: Jurisdiction) -> None:
    principal = viewer.principal
    if principal.scope is ScopeKind.FACILITY:
        home = db.scalar(select(Facility.jurisdiction_id).where(Facility.id == principal.facility_id))
        if home == member.id:
            return
    elif principal.covers_jurisdiction(member.id):
        return
    raise PageForbidden(f"{member.name} is outside your scope: you may open your own member's page only")


def _facilities(db: Session, viewer: Viewer, member: Jurisdiction) -> dict[int, tuple[str, FacilityKind]]:
    stmt = scoped(
        select(Facility.id, Facility.code, Facility.kind).where(Facility.jurisdiction_id == member.id),
        viewer.principal,
        Facility.id,
    )
    return {f: (code, kind) for f, code, kind in db.execute(stmt)}


def _product_lines(
    positions: dict[int, ind.Position],
    requests: dict[int, int],
    names: dict[int, tuple[str, str]],
    window: analytics.Window,
) -> list[ProductLine]:
    """Per product: indicators, demand over the horizon and coverage, as the shortage board
    computes them; the most severe first, products without demand after them."""
    lines = []
    for p in set(positions) | set(requests):
        position = positions.get(p) or ind.Position()
        position.outstanding_requests = requests.get(p, 0)
        adc = ind.average_daily_consumption(position.issued_in_window, window.window_days)
        demand = ind.demand_over_horizon(adc, HORIZON_DAYS, position.outstanding_requests)
        code, name = names[p]
        lines.append(
            ProductLine(
                code,
                name,
                position,
                adc,
                ind.days_of_stock(position.usable, adc),
                demand,
                ind.coverage(position.usable, position.pipeline, demand),
            )
        )
    lines.sort(key=lambda line: (*ind.severity_key(line.coverage, line.demand), line.code))
    return lines


def _trend(
    db: Session,
    facility_ids: list[int],
    products: list[tuple[int, str, str]],
    today: date,
    on_hand_now: dict[int, int],
) -> Trend:
    """Weekly closing stock on hand of `products` over the facilities (`on_hand_now`: their
    current sums), from the daily snapshots; a day without a snapshot (and today, which is live)
    is rebuilt from the stock ledger the way a snapshot is taken: the current balance less what
    happened after that day."""
    days = snapshots.trend_days(today)
    product_ids = [p for p, _, _ in products]
    if not product_ids or not facility_ids:
        return Trend(days, [(c, n) for _, c, n in products], [[] for _ in days], 0)
    taken, past = snapshots.on_hand_by_day(db, facility_ids, product_ids, days[:-1])
    values = dict(past)
    missing = [day for day in days if day not in taken]
    after = [_start_of(day + timedelta(days=1)) for day in missing]
    later = select(
        StockEvent.product_id,
        *(
            func.sum(case((StockEvent.occurred_at >= start, StockEvent.on_hand_delta), else_=0))
            for start in after
        ),
    ).where(
        StockEvent.product_id.in_(product_ids),
        StockEvent.facility_id.in_(facility_ids),
        StockEvent.occurred_at >= after[0],
    )
    if missing == [today]:  # only events dated after today, rare: found by the (kind, time) index
        later = later.where(StockEvent.kind.in_(list(EventKind)))
    for p, *changes in db.execute(later.group_by(StockEvent.product_id)):
        for day, change in zip(missing, changes, strict=True):
            values[(p, day)] = on_hand_now.get(p, 0) - int(change or 0)
    for p in product_ids:
        for day in missing:
            values.setdefault((p, day), on_hand_now.get(p, 0))
    return Trend(
        days,
        [(c, n) for _, c, n in products],
        [[values.get((p, day), 0) for p in product_ids] for day in days],
        len([day for day in missing if day != today]),
    )


def _needs(db: Session, viewer: Viewer, member: Jurisdiction) -> dict[str, Any]:
    if not viewer.principal.has(Permission.NEED_READ):
        return {"can_read_needs": False, "open_needs": [], "open_total": 0, "emergency_total": 0}
    rows = needs.first_outstanding(
        db, viewer.principal, jurisdiction_id=member.id, urgency=None, limit=NEEDS_SHOWN
    )
    counts = needs.outstanding_counts(db, viewer.principal, member.id)
    return {
        "can_read_needs": True,
        "open_needs": rows,
        "open_total": counts.total,
        "emergency_total": counts.emergency,
    }


@router.get("/console/members/{iso3}", response_class=HTMLResponse)
def member_page(
    request: Request,
    iso3: str,
    db: DbSession,
    viewer: Viewer = viewer_with(Permission.STOCK_READ),
    show_all: Annotated[bool, Query(alias="all", description="Every product, not the first 100")] = False,
) -> HTMLResponse:
    member = db.scalar(select(Jurisdiction).where(Jurisdiction.iso3 == iso3.upper()))
    if member is None:
        response = render(request, viewer, "console/member.html", missing=iso3.upper()[:3])
        response.status_code = 404
        return response
    _check_scope(db, viewer, member)
    today = date.today()
    window = analytics.Window(today)
    facilities = _facilities(db, viewer, member)
    folded = analytics.member_positions(  # summed in SQL: no position per facility and product
        db, {f: kind is FacilityKind.REGIONAL_RESERVE_DEPOT for f, (_, kind) in facilities.items()}, window
    )
    national, reserve = folded.national, folded.reserve
    stockouts = [(facilities[f][0], p) for f, p in folded.stocked_out]
    names = {p: (code, name) for p, code, name in db.execute(select(Product.id, Product.code, Product.name))}
    facility_view = viewer.principal.scope is ScopeKind.FACILITY
    requests = (
        {}
        if facility_view
        else analytics.member_outstanding_requests(db, member.id, today + timedelta(days=HORIZON_DAYS))
    )
    lines = _product_lines(national, requests, names, window)
    used = snapshots.trend_products(
        {p: position.issued_in_window for p, position in national.items()}, {p: names[p][0] for p in national}
    )
    national_ids = sorted(
        f for f, (_, kind) in facilities.items() if kind is not FacilityKind.REGIONAL_RESERVE_DEPOT
    )
    trend = _trend(
        db, national_ids, [(p, *names[p]) for p in used], today, {p: national[p].on_hand for p in used}
    )
    reserve_lines = sorted(
        ((names[p][0], names[p][1], position) for p, position in reserve.items() if position.on_hand),
        key=lambda line: (-line[2].usable, line[0]),
    )
    return render(
        request,
        viewer,
        "console/member.html",
        member=member,
        today=today,
        window=window,
        horizon_days=HORIZON_DAYS,
        facility_view=facility_view,
        facility_code=facilities[viewer.principal.facility_id][0]
        if facility_view and viewer.principal.facility_id in facilities
        else None,
        facilities_count=len(national_ids),
        lines=lines if show_all else lines[:ROWS_SHOWN],
        lines_total=len(lines),
        show_all=show_all,
        short_lines=[line for line in lines if line.coverage is not None and line.coverage < 1],
        demand_lines=[line for line in lines if line.demand > 0],
        stockouts=sorted((code, names[p][0]) for code, p in stockouts)[:STOCKOUTS_SHOWN],
        stockouts_total=len(stockouts),
        trend=trend,
        reserve_lines=reserve_lines,
        **_needs(db, viewer, member),
    )
