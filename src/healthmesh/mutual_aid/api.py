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
from healthmesh.errors import InvalidInput
from healthmesh.mutual_aid import service, transfer
from healthmesh.mutual_aid.model import Policy
from healthmesh.web.deps import require

router = APIRouter(prefix="/api/v1/mutual-aid", tags=["mutual aid"])

Runner = Annotated[Principal, Depends(require(Permission.ALLOCATION_RUN))]
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
async def create_plan(request: Request, _: Runner, rows: bool = True) -> dict[str, Any]:
    """Plan lending between members over the demand's periods (not stored). JSON body as `PlanIn`,
    or multipart with CSV files `demand`, `supply`, `distances` and an optional `policy` (JSON)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        demand, supply, distances = [await _text(form, name) for name in ("demand", "supply", "distances")]
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
    plan = await run_in_threadpool(service.plan_from_inputs, inputs, policy)
    return service.plan_to_json(plan, rows=rows)
