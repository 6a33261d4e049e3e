"""Mutual-aid plans for the command line, the API and the console: CSV or rows in, plan JSON out.
Plans are computed, not stored (no database)."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any

from healthmesh.errors import FieldError, InvalidInput
from healthmesh.mutual_aid import planner, transfer
from healthmesh.mutual_aid.model import Plan, Policy, Problem

MAX_ARCS = 2_000_000  # members^2 x periods: about 20 s of HiGHS; refuse larger requests


def check_policy(policy: Policy) -> None:
    """Refuse settings that make no sense (raises `InvalidInput` listing them)."""
    errors = []
    if not 0.0 <= policy.min_stock_fraction <= 1.0:
        errors.append(FieldError("min_stock_fraction", "must be between 0 and 1"))
    for name in ("max_send_per_period", "reserve_release_limit", "distance_per_period"):
        value = getattr(policy, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            errors.append(FieldError(name, "must be a number >= 0"))
    if policy.delay_periods < 0 or policy.no_resend_periods < 0:
        errors.append(
            FieldError("delay_periods" if policy.delay_periods < 0 else "no_resend_periods", "must be >= 0")
        )
    if policy.objective not in ("shortfall", "equity"):
        errors.append(FieldError("objective", "shortfall or equity"))
    if not 0 < policy.time_limit_seconds <= 3600:
        errors.append(FieldError("time_limit_seconds", "must be in (0, 3600]"))
    if errors:
        raise InvalidInput("invalid mutual-aid policy", errors)


def plan_problem(problem: Problem, policy: Policy) -> Plan:
    check_policy(policy)
    arcs = len(problem.members) ** 2 * len(problem.periods)
    if arcs > MAX_ARCS:
        raise InvalidInput.on("demand", f"too large: {arcs:,} member pairs x periods (at most {MAX_ARCS:,})")
    return planner.plan(problem, policy)


def plan_from_inputs(inputs: transfer.Inputs, policy: Policy) -> Plan:
    return plan_problem(transfer.to_problem(inputs), policy)


def plan_from_csv(demand_csv: str, supply_csv: str, distances_csv: str, policy: Policy | None = None) -> Plan:
    """Parse the three CSV files (see `transfer`) and plan; raises `InvalidInput` on bad input."""
    return plan_from_inputs(transfer.from_csv(demand_csv, supply_csv, distances_csv), policy or Policy())


def policy_from_dict(values: dict[str, Any]) -> Policy:
    known = {f.name for f in fields(Policy)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInput(
            "unknown policy settings", [FieldError(name, "unknown setting") for name in unknown]
        )
    return Policy(**values)


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)


def plan_to_json(plan: Plan, *, rows: bool = True) -> dict[str, Any]:
    """The plan as JSON-ready data: policy, totals, solver, transfers and (optionally) the rows
    per member and period."""
    out: dict[str, Any] = {
        "members": list(plan.members),
        "periods": list(plan.periods),
        "policy": asdict(plan.policy),
        "totals": {k: _clean(v) if isinstance(v, float) else v for k, v in asdict(plan.totals).items()},
        "solver": {k: _clean(v) if isinstance(v, float) else v for k, v in asdict(plan.solver).items()},
        "stages": [
            {k: _clean(v) if isinstance(v, float) else v for k, v in asdict(s).items()} for s in plan.stages
        ],
        "transfers": [
            {**asdict(t), "units": _clean(t.units), "distance": _clean(t.distance)} for t in plan.transfers
        ],
    }
    if rows:
        out["rows"] = [
            {k: _clean(v) if isinstance(v, float) else v for k, v in asdict(row).items()} for row in plan.rows
        ]
    return out
