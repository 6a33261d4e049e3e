"""REST route of mutual-aid plans: the same data as JSON, or as three CSV files (multipart)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from healthmesh.accounts.access import Permission, Principal
from healthmesh.csvio import validation_errors
from healthmesh.db import utcnow
from healthmesh.errors import InvalidInput
from healthmesh.logistics.api import shipment_out
from healthmesh.mutual_aid import approval, service, transfer
from healthmesh.mutual_aid.model import Policy
from healthmesh.mutual_aid.models import MutualAidPlan
from healthmesh.registry.schemas import RowId
from healthmesh.web.deps import DbSession, require

router = APIRouter(prefix="/api/v1/mutual-aid", tags=["mutual aid"])

Runner = Annotated[Principal, Depends(require(Permission.ALLOCATION_RUN))]
Reader = Annotated[Principal, Depends(require(Permission.ALLOCATION_READ))]
Approver = Annotated[Principal, Depends(require(Permission.ALLOCATION_APPROVE))]
Units = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_periods: int = Field(default=1, ge=0, le=365)
    distance_per_period: float | None = Field(default=None, gt=0)
    min_stock_fraction: float = Field(default=0.0, ge=0, le=1)
    max_send_per_period: Units | None = None
    no_send_while_short: bool = False
    no_resend_periods: int = Field(default=0, ge=0, le=365)
    no_worse_off: bool = False
    reserve_release_limit: Units | None = None
    whole_units: bool = False
    objective: Literal["shortfall", "equity"] = "shortfall"
    time_limit_seconds: float = Field(default=60.0, gt=0, le=300)

    def policy(self) -> Policy:
        return Policy(**self.model_dump())


class DemandIn(BaseModel):
    member: str = Field(min_length=1, max_length=200)
    date: dt.date
    units: Units


class SupplyIn(BaseModel):
    member: str = Field(
        min_length=1, max_length=200, description=f"'{transfer.RESERVE}' is the shared reserve"
    )
    units: Units
    date: dt.date | None = None


class DistanceIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    source: str = Field(alias="from", min_length=1, max_length=200)
    target: str = Field(alias="to", min_length=1, max_length=200)
    distance: Units
    delay: int | None = Field(default=None, ge=0, le=365)


class PlanIn(BaseModel):
    demand: list[DemandIn] = Field(min_length=1, max_length=200_000)
    supply: list[SupplyIn] = Field(max_length=200_000)
    distances: list[DistanceIn] = Field(max_length=200_000)
    policy: PolicyIn = Field(default_factory=PolicyIn)
    save: bool = Field(
        default=False, description="Store the plan for approval (members as ISO3 codes; `product` required)"
    )
    product: str | None = Field(default=None, max_length=40, description="The product it moves, to store it")

    def inputs(self) -> transfer.Inputs:
        return transfer.Inputs(
            demand=[(d.member, d.date.isoformat(), d.units) for d in self.demand],
            supply=[(s.member, s.units, s.date.isoformat() if s.date else None) for s in self.supply],
            distances=[(d.source, d.target, d.distance, d.delay) for d in self.distances],
        )


async def _text(form: Any, name: str) -> str:
    part = form.get(name)
    if not isinstance(part, UploadFile):
        raise InvalidInput.on(name, "a CSV file is required")
    try:
        return (await part.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput.on(name, "not UTF-8 text") from None


def _policy(raw: Any) -> PolicyIn:
    try:
        return PolicyIn.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput("invalid mutual-aid policy", validation_errors(exc)) from None


@router.post(
    "/plans",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["demand", "supply", "distances"],
                        "description": "demand [{member, date, units}], supply [{member, units, date?}], "
                        "distances [{from, to, distance, delay?}], policy {...}",
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["demand", "supply", "distances"],
                        "properties": {
                            "demand": {"type": "string", "format": "binary"},
                            "supply": {"type": "string", "format": "binary"},
                            "distances": {"type": "string", "format": "binary"},
                            "policy": {"type": "string", "description": "the policy as JSON"},
                        },
                    }
                },
            }
        }
    },
)
async def create_plan(request: Request, actor: Runner, db: DbSession, rows: bool = True) -> dict[str, Any]:
    """Plan lending between members over the demand's periods. JSON body as `PlanIn`, or multipart
    with CSV files `demand`, `supply`, `distances` and optional fields `policy` (JSON), `save` and
    `product`. With `save`, the plan is stored for approval and the answer carries its `id`."""
    save, product = False, None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        demand, supply, distances = [await _text(form, name) for name in ("demand", "supply", "distances")]
        save = str(form.get("save", "")).lower() in ("1", "true", "yes", "on")
        product = str(form["product"]) if isinstance(form.get("product"), str) else None
        raw_policy = form.get("policy")
        try:
            policy_values = (
                json.loads(raw_policy) if isinstance(raw_policy, str) and raw_policy.strip() else {}
            )
        except json.JSONDecodeError:
            raise InvalidInput.on("policy", "not JSON") from None
        policy = _policy(policy_values).policy()
        inputs = transfer.from_csv(demand, supply, distances)
    else:
        try:
            body = PlanIn.model_validate(await request.json())
        except ValidationError as exc:
            raise InvalidInput("invalid mutual-aid request", validation_errors(exc)) from None
        except ValueError:
            raise InvalidInput.on("body", "not JSON") from None
        policy, inputs = body.policy.policy(), body.inputs()
        save, product = body.save, body.product
    if save and not product:
        raise InvalidInput.on("product", "required to store the plan: the product it moves")
    plan = await run_in_threadpool(service.plan_from_inputs, inputs, policy)
    out = service.plan_to_json(plan, rows=rows)
    if save and product:
        stored = await run_in_threadpool(approval.save, db, actor, product, inputs, policy, plan)
        out = {
            "id": stored.id,
            "status": stored.status.value,
            "product": product,
            "first_period_moves": _moves_out(stored),
            **out,
        }
    return out


@router.get("/plans/{plan_id}")
def get_plan(plan_id: RowId, db: DbSession, _: Reader) -> dict[str, Any]:
    """A stored plan: its status, who decided, and the plan as it was computed."""
    return _stored_out(approval.get(db, plan_id))


@router.post("/plans/{plan_id}/approve")
def approve_plan(plan_id: RowId, db: DbSession, actor: Approver) -> dict[str, Any]:
    """Approve a stored plan: its first period's transfers and reserve releases are reserved at
    the senders (national warehouses, reserve depots; earliest expiry first) and planned as
    shipments to the receivers' national warehouses, all or nothing (409 naming any sender
    short of units). Logged in the transparency log."""
    stored, shipments = approval.approve(db, actor, plan_id)
    now = utcnow()
    return {
        **_stored_out(stored, plan=False),
        "shipments": [shipment_out(s, now).model_dump(mode="json") for s in shipments],
    }


def _stored_out(stored: MutualAidPlan, *, plan: bool = True) -> dict[str, Any]:
    return {
        "id": stored.id,
        "status": stored.status.value,
        "product": stored.product.code,
        "first_period": stored.first_period.isoformat(),
        "inputs_digest": stored.inputs_digest,
        "created_at": stored.created_at.isoformat(),
        "decided_at": stored.decided_at.isoformat() if stored.decided_at else None,
        "first_period_moves": _moves_out(stored),
        **({"plan": stored.plan} if plan else {}),
    }


def _moves_out(stored: MutualAidPlan) -> list[dict[str, Any]]:
    return [{"from": m.source, "to": m.target, "units": m.units} for m in approval.first_moves(stored.plan)]
