"""Allocation rounds in the console: the stored plans, running a round, comparing policies side
by side (tables and charts), and one plan's fairness report, lines and per-need explanations,
with approval for those who may give it.

Runs, comparisons and decisions go through the REST API from the browser (`allocation.js`,
`console.js`); these pages only read. A member's focal point sees its own needs' results and
lines, as the API's `visible_results` decides, and the plan's regional fairness figures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Permission, ScopeKind
from healthmesh.allocation import policies, service
from healthmesh.allocation.model import Reason
from healthmesh.allocation.models import AllocationLine, AllocationPlan, AllocationResult, PlanStatus
from healthmesh.errors import NotFound
from healthmesh.needs.models import Need
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply.models import Lot
from healthmesh.web.console.base import Viewer, render, viewer_with
from healthmesh.web.deps import DbSession

router = APIRouter(include_in_schema=False)

PLANS_SHOWN = 50
RESULTS_PER_PAGE = 100

#: Each binding reason in plain words, and the badge colour it gets.
REASONS: dict[str, tuple[str, str]] = {
    Reason.FULLY_ALLOCATED.value: ("fully allocated", "green"),
    Reason.FLOOR_APPLIED.value: ("raised to the fairness floor", "green"),
    Reason.SUPPLY_EXHAUSTED.value: ("shareable supply ran out", "amber"),
    Reason.MEMBER_CAP.value: ("member's cap reached", "amber"),
    Reason.NOT_AUTHORISED.value: ("not authorised in the member", "red"),
    Reason.NO_COLD_CHAIN.value: ("no cold chain to hold it", "red"),
    Reason.SHELF_LIFE.value: ("too little shelf life left", "red"),
    Reason.NO_SUPPLY.value: ("no shareable supply", "red"),
    Reason.BELOW_PACK.value: ("less than a whole pack", "red"),
}

POLICY_NOTES: dict[str, str] = {
    "equity": "max-min fairness first, then efficiency",
    "covax": "population-proportional floor while supply is scarce, with a cap",
    "efficiency": "most weighted need served, fairness second",
    "emergency": "equity, with the emergency waiver on authorisation",
    "pro_rata": "baseline: everyone gets the same share of what they asked",
    "population": "baseline: shares by population",
    "fcfs": "baseline: first come, first served",
}


@dataclass(frozen=True)
class PlanRow:
    id: int
    policy_name: str
    day: date
    status: PlanStatus
    allocated_units: int
    min_fill_rate: float | None
    gini: float | None
    created_at: datetime
    decided_at: datetime | None


def _plan_rows(db: Session) -> tuple[list[PlanRow], int]:
    """The newest plans, read column by column (a plan's lines and results stay unread)."""
    stmt = (
        select(
            AllocationPlan.id,
            AllocationPlan.policy_name,
            AllocationPlan.day,
            AllocationPlan.status,
            AllocationPlan.allocated_units,
            AllocationPlan.fairness,
            AllocationPlan.created_at,
            AllocationPlan.decided_at,
        )
        .order_by(AllocationPlan.id.desc())
        .limit(PLANS_SHOWN)
    )
    rows = [
        PlanRow(
            id=row.id,
            policy_name=row.policy_name,
            day=row.day,
            status=row.status,
            allocated_units=row.allocated_units,
            min_fill_rate=(row.fairness or {}).get("min_fill_rate"),
            gini=(row.fairness or {}).get("gini_of_member_fill_rates"),
            created_at=row.created_at,
            decided_at=row.decided_at,
        )
        for row in db.execute(stmt)
    ]
    total = db.scalar(select(func.count()).select_from(AllocationPlan)) or 0
    return rows, total


def _members(db: Session) -> dict[str, dict[str, str]]:
    """iso3 -> name and income group, for labelling the fairness figures."""
    return {
        iso3: {"name": name, "income_group": group.value}
        for iso3, name, group in db.execute(
            select(Jurisdiction.iso3, Jurisdiction.name, Jurisdiction.income_group).order_by(
                Jurisdiction.iso3
            )
        )
    }


@router.get("/console/allocation", response_class=HTMLResponse)
def allocation_page(
    request: Request, db: DbSession, viewer: Viewer = viewer_with(Permission.ALLOCATION_READ)
) -> HTMLResponse:
    plans, total = _plan_rows(db)
    return render(
        request,
        viewer,
        "console/allocation.html",
        plans=plans,
        plan_total=total,
        policy_names=list(policies.POLICIES),
        baseline_names=list(policies.BASELINE_NAMES),
        default_compare={"equity", "covax", "efficiency", "pro_rata"},
        policy_notes=POLICY_NOTES,
        may_run=viewer.principal.has(Permission.ALLOCATION_RUN),
        today=date.today().isoformat(),
        members=_members(db),
    )


@dataclass(frozen=True)
class ResultRow:
    need_id: int
    member: str
    facility: str | None
    product: str
    urgency: str
    needed_by: date
    requested: int
    allocated: int
    reason: str
    reason_label: str
    badge: str
    explanation: str

    @property
    def fill(self) -> float:
        return self.allocated / self.requested if self.requested else 1.0


@dataclass(frozen=True)
class LineRow:
    need_id: int
    member: str
    source: str
    lot: str
    product: str
    quantity: int
    distance_km: float
    arrival: date
    origin: str


def _results(db: Session, plan: AllocationPlan, viewer: Viewer, isos: dict[int, str]) -> list[ResultRow]:
    visible = {r.need_id: r for r in service.visible_results(plan, viewer.principal)}
    stmt = (
        select(Need.id, Product.code, Facility.code, Need.urgency, Need.needed_by)
        .join(AllocationResult, AllocationResult.need_id == Need.id)
        .join(Product, Product.id == Need.product_id)
        .outerjoin(Facility, Facility.id == Need.facility_id)
        .where(AllocationResult.plan_id == plan.id)
    )
    details = {row[0]: row for row in db.execute(stmt)}
    out = []
    for need_id, result in sorted(visible.items()):
        _, product, facility, urgency, needed_by = details[need_id]
        label, badge = REASONS.get(result.reason, (result.reason.replace("_", " "), ""))
        out.append(
            ResultRow(
                need_id=need_id,
                member=isos.get(result.jurisdiction_id, "?"),
                facility=facility,
                product=product,
                urgency=urgency.value,
                needed_by=needed_by,
                requested=result.requested,
                allocated=result.allocated,
                reason=result.reason,
                reason_label=label,
                badge=badge,
                explanation=result.explanation,
            )
        )
    return out


def _lines(db: Session, plan: AllocationPlan, results: list[ResultRow], region_wide: bool) -> list[LineRow]:
    """The plan's lines with their lot and source; a member sees the lines to its own needs."""
    members = {r.need_id: r.member for r in results}
    stmt = (
        select(AllocationLine, Lot.lot_number, Facility.code, Product.code)
        .join(Lot, Lot.id == AllocationLine.lot_id)
        .join(Facility, Facility.id == Lot.facility_id)
        .join(Product, Product.id == Lot.product_id)
        .where(AllocationLine.plan_id == plan.id)
        .order_by(AllocationLine.id)
    )
    return [
        LineRow(
            need_id=line.need_id,
            member=members.get(line.need_id, ""),
            source=source,
            lot=lot_number,
            product=product,
            quantity=line.quantity,
            distance_km=line.distance_km,
            arrival=line.arrival,
            origin=line.origin,
        )
        for line, lot_number, source, product in db.execute(stmt)
        if region_wide or line.need_id in members
    ]


@router.get("/console/allocation/{plan_id}", response_class=HTMLResponse)
def plan_page(
    plan_id: int,
    request: Request,
    db: DbSession,
    viewer: Viewer = viewer_with(Permission.ALLOCATION_READ),
    member: str | None = Query(default=None, max_length=3),
    reason: str | None = Query(default=None, max_length=32),
    page: int = Query(default=1, ge=1, le=100_000),
) -> HTMLResponse:
    try:
        plan = service.get_plan(db, plan_id)
    except NotFound as exc:
        response = render(request, viewer, "console/allocation_missing.html", message=str(exc))
        response.status_code = 404
        return response
    isos = {jid: iso3 for jid, iso3 in db.execute(select(Jurisdiction.id, Jurisdiction.iso3))}
    region_wide = viewer.principal.scope is ScopeKind.REGION
    results = _results(db, plan, viewer, isos)
    lines = _lines(db, plan, results, region_wide)
    reasons = Counter(r.reason for r in results)
    matching = [
        r for r in results if (not member or r.member == member) and (not reason or r.reason == reason)
    ]
    pages = max(1, -(-len(matching) // RESULTS_PER_PAGE))
    first = (min(page, pages) - 1) * RESULTS_PER_PAGE
    return render(
        request,
        viewer,
        "console/allocation_plan.html",
        plan=plan,
        fairness=plan.fairness or {},
        members=_members(db),
        results=matching[first : first + RESULTS_PER_PAGE],
        first=first,
        matching=len(matching),
        page=min(page, pages),
        pages=pages,
        result_total=len(results),
        reason_counts=[(key, REASONS.get(key, (key, ""))[0], count) for key, count in reasons.most_common()],
        result_members=sorted({r.member for r in results}),
        chosen_member=member or "",
        chosen_reason=reason or "",
        lines=lines,
        region_wide=region_wide,
        may_decide=viewer.principal.has(Permission.ALLOCATION_APPROVE) and plan.status is PlanStatus.PROPOSED,
        policy_note=POLICY_NOTES.get(plan.policy_name, ""),
        chart_data=_chart_data(plan.fairness or {}),
    )


def _chart_data(fairness: dict[str, Any]) -> dict[str, Any]:
    return {
        "policy": fairness.get("policy", ""),
        "by_member": fairness.get("fill_rate_by_member", {}),
        "by_income_group": fairness.get("fill_rate_by_income_group", {}),
    }
