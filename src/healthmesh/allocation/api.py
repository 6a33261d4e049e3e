"""REST routes of allocation rounds: run, compare, read (with explanations), approve or reject."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from healthmesh.accounts.access import Permission, Principal, ScopeKind
from healthmesh.allocation import builder, policies, service
from healthmesh.allocation.models import AllocationPlan, AllocationResult, PlanStatus
from healthmesh.errors import InvalidInput
from healthmesh.needs import service as needs_service
from healthmesh.registry.schemas import Day, RowId
from healthmesh.web.deps import DbSession, require

router = APIRouter(prefix="/api/v1/allocation", tags=["allocation"])

Reader = Annotated[Principal, Depends(require(Permission.ALLOCATION_READ))]
Runner = Annotated[Principal, Depends(require(Permission.ALLOCATION_RUN))]
Approver = Annotated[Principal, Depends(require(Permission.ALLOCATION_APPROVE))]


class RunIn(BaseModel):
    policy: str = Field(
        default="equity", description=", ".join([*policies.POLICIES, *policies.BASELINE_NAMES])
    )
    day: Day | None = Field(default=None, description="The round's date (default today)")


class CompareIn(BaseModel):
    policies: list[str] = Field(
        default_factory=lambda: ["equity", "covax", "efficiency", *policies.BASELINE_NAMES],
        min_length=1,
        max_length=10,
    )
    day: Day | None = None


class DecisionIn(BaseModel):
    note: str = Field(default="", max_length=500)


class ResultOut(BaseModel):
    need_id: int
    jurisdiction_id: int
    requested: int
    allocated: int
    reason: str
    explanation: str


class LineOut(BaseModel):
    lot_id: int
    need_id: int
    quantity: int
    distance_km: float
    arrival: date
    origin: str


class PlanOut(BaseModel):
    id: int
    policy_name: str
    day: date
    status: PlanStatus
    snapshot_digest: str
    emergency_waiver: bool
    allocated_units: int
    fairness: dict[str, Any]
    solver: dict[str, Any]
    created_at: datetime
    decided_at: datetime | None
    decision_note: str


class PlanDetailOut(PlanOut):
    lines: list[LineOut]
    results: list[ResultOut]


def _out(plan: AllocationPlan) -> PlanOut:
    return PlanOut.model_validate(plan, from_attributes=True)


def _detail(plan: AllocationPlan, actor: Principal) -> PlanDetailOut:
    results = service.visible_results(plan, actor)
    need_ids = {r.need_id for r in results}
    lines = [line for line in plan.lines if actor.scope is ScopeKind.REGION or line.need_id in need_ids]
    # Members see the plan's regional figures (they are what makes it fair), not other members' lines.
    fairness = plan.fairness
    return PlanDetailOut(
        **{**_out(plan).model_dump(), "fairness": fairness},
        lines=[LineOut.model_validate(line, from_attributes=True) for line in lines],
        results=[ResultOut.model_validate(r, from_attributes=True) for r in results],
    )


@router.get("/policies")
def list_policies(db: DbSession, _: Reader) -> dict[str, Any]:
    """The named policies as the region set them (every parameter, and the version: 0 is the
    built-in default), and the baselines they can be compared with."""
    return {
        "policies": {
            policy.name: {
                **policies.to_dict(policy),
                "version": version,
                "note": setting.note if setting else "",
            }
            for policy, version, setting in service.list_policies(db)
        },
        "baselines": list(policies.BASELINE_NAMES),
    }


Weight = Annotated[float, Field(gt=0, le=100)]


class PolicyChangeIn(BaseModel):
    """The parameters a region may set; what is left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    floor_share: float | None = Field(default=None, ge=0, le=1)
    cap_share: float | None = Field(default=None, gt=0, le=1)
    min_shelf_life_days: int | None = Field(default=None, ge=0, le=3650)
    severity_weight: float | None = Field(default=None, ge=0, le=10)
    urgency_weights: dict[Literal["routine", "urgent", "emergency"], Weight] | None = None
    income_weights: dict[Literal["low", "lower_middle", "upper_middle", "high"], Weight] | None = None
    emergency_waiver: bool | None = None
    note: str = Field(min_length=10, max_length=500, description="Why: the decision that agreed it")


@router.put("/policies/{name}")
def change_policy(name: str, data: PolicyChangeIn, db: DbSession, actor: Approver) -> dict[str, Any]:
    """Change a policy's parameters for the region (recorded in the transparency log)."""
    changes = data.model_dump(exclude_none=True, exclude={"note"})
    if not changes:
        raise InvalidInput.on("policy", "give at least one parameter to change")
    current = policies.to_dict(service.effective_policy(db, name))
    for key in ("urgency_weights", "income_weights"):
        if key in changes:
            changes[key] = {**current[key], **changes[key]}
    policy, version = service.change_policy(db, actor, name, changes, data.note)
    return {**policies.to_dict(policy), "version": version, "note": data.note}


@router.get("/snapshot")
def snapshot(db: DbSession, _: Runner, day: Day | None = None) -> JSONResponse:
    """The current round's input in the documented snapshot format (what `allocate snapshot` writes)."""
    built = builder.build_snapshot(db, day or date.today())
    return JSONResponse(built.model_dump(mode="json", by_alias=True), headers={"ETag": built.digest()})


@router.post("/plans", response_model=PlanDetailOut, status_code=status.HTTP_201_CREATED)
def run_round(data: RunIn, db: DbSession, actor: Runner) -> PlanDetailOut:
    """Run a round under a policy on the current snapshot and store the proposed plan."""
    plan = service.create_plan(db, actor, data.policy, data.day or date.today())
    return _detail(plan, actor)


@router.post("/compare")
def compare(data: CompareIn, db: DbSession, _: Runner) -> list[dict[str, Any]]:
    """What-if: policies and baselines side by side on the same snapshot (nothing is stored)."""
    return service.compare(db, data.policies, data.day or date.today())


@router.get("/plans", response_model=list[PlanOut])
def list_plans(
    db: DbSession,
    actor: Reader,
    status_: Annotated[PlanStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[PlanOut]:
    stmt = select(AllocationPlan).order_by(AllocationPlan.id.desc()).limit(limit)
    if status_ is not None:
        stmt = stmt.where(AllocationPlan.status == status_)
    return [_out(plan) for plan in db.scalars(stmt)]


@router.get("/plans/{plan_id}", response_model=PlanDetailOut)
def get_plan(plan_id: RowId, db: DbSession, actor: Reader) -> PlanDetailOut:
    """A plan with its lines and each need's result and explanation (a member sees its own)."""
    return _detail(service.get_plan(db, plan_id), actor)


@router.post("/plans/{plan_id}/approve", response_model=PlanOut)
def approve(plan_id: RowId, db: DbSession, actor: Approver) -> PlanOut:
    """Approve: reserve every line's stock and move the needs on; fails cleanly if stock is gone."""
    return _out(service.approve(db, actor, plan_id))


@router.post("/plans/{plan_id}/reject", response_model=PlanOut)
def reject(plan_id: RowId, data: DecisionIn, db: DbSession, actor: Approver) -> PlanOut:
    return _out(service.reject(db, actor, plan_id, data.note))


@router.get("/needs/{need_id}/explanations", response_model=list[ResultOut])
def need_explanations(need_id: RowId, db: DbSession, actor: Reader) -> list[ResultOut]:
    """Why a need got what it got, in every plan that considered it."""
    needs_service.get(db, actor, need_id)  # out of scope: 404
    rows = db.scalars(
        select(AllocationResult).where(AllocationResult.need_id == need_id).order_by(AllocationResult.plan_id)
    )
    return [ResultOut.model_validate(row, from_attributes=True) for row in rows]
