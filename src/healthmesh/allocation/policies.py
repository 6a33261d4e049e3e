"""The named policies a region can choose from, and their serialisation for stored plans."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from healthmesh.allocation.model import Fairness, Policy
from healthmesh.errors import InvalidInput

POLICIES: dict[str, Policy] = {
    policy.name: policy
    for policy in (
        Policy("equity"),
        # COVAX's first phase: a population-proportional floor while supply is scarce, and a cap.
        Policy("covax", floor_share=0.5, cap_share=0.35),
        Policy("efficiency", fairness=Fairness.EFFICIENCY),
        Policy("emergency", emergency_waiver=True),
    )
}
BASELINE_NAMES = ("pro_rata", "population", "fcfs")


def named(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise InvalidInput.on("policy", f"one of {', '.join(POLICIES)}") from None


def to_dict(policy: Policy) -> dict[str, Any]:
    data = asdict(policy)
    data["fairness"] = policy.fairness.value
    return data


def from_dict(data: dict[str, Any]) -> Policy:
    known = {field.name for field in fields(Policy)}
    values = {key: value for key, value in data.items() if key in known}
    values["fairness"] = Fairness(values.get("fairness", Fairness.MAXMIN_THEN_EFFICIENCY))
    return Policy(**values)
