"""Allocation use cases: run a round under a policy and store the plan, compare policies and
baselines, approve (reserving the stock) or reject, and re-run a stored plan on its snapshot."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal, ScopeKind
from healthmesh.allocation import baselines, builder, fairness, policies
from healthmesh.allocation.engine import allocate
from healthmesh.allocation.model import Plan, Policy, Round
from healthmesh.allocation.models import (
    AllocationLine,
    AllocationPlan,
    AllocationResult,
    PlanStatus,
    PolicySetting,
)
from healthmesh.allocation.snapshot import Snapshot, parse
from healthmesh.db import utcnow
from healthmesh.errors import Conflict, FieldError, InvalidInput, NotFound
from healthmesh.ledger import service as transparency
from healthmesh.needs import service as needs_service
from healthmesh.needs.models import Need
from healthmesh.needs.workflow import ALLOCATABLE, Action
from healthmesh.registry.models import Jurisdiction
from healthmesh.supply import ledger
from healthmesh.supply.enums import PledgeStatus
from healthmesh.supply.models import Lot, Pledge


def _id(prefixed: str) -> int:
    return int(prefixed.split(":", 1)[1])


def run_policy(round_: Round, policy_name: str, policy: Policy | None = None) -> tuple[Plan, Policy]:
    """A named policy or baseline on a round, with the policy it ran under (the built-in one
    unless the region's setting is given)."""
    if policy_name in baselines.BASELINES:
        base = policy or policies.POLICIES["equity"]
        return baselines.BASELINES[policy_name](round_, base), base
    used = policy or policies.named(policy_name)
    return allocate(round_, used), used


def effective_policy(db: Session, name: str) -> Policy:
    """The named policy as the region set it (its stored parameters), or the built-in default."""
    base_name = "equity" if name in baselines.BASELINES else name
    setting = db.get(PolicySetting, base_name)
    if setting is not None:
        return policies.from_dict(setting.parameters)
    return policies.named(base_name)


def list_policies(db: Session) -> list[tuple[Policy, int, PolicySetting | None]]:
    """Every named policy with its version (0: the built-in default)."""
    out = []
    for name in policies.POLICIES:
        setting = db.get(PolicySetting, name)
        out.append((effective_policy(db, name), setting.version if setting else 0, setting))
    return out


def change_policy(
    db: Session, actor: Principal, name: str, changes: dict[str, Any], note: str
) -> tuple[Policy, int]:
    """Set some of a policy's parameters for the region; logged with the old and new values."""
    if name not in policies.POLICIES:
        raise NotFound(f"no policy {name!r}; the policies are {', '.join(policies.POLICIES)}")
    current = effective_policy(db, name)
    before = policies.to_dict(current)
    after = {**before, **changes}
    try:
        updated = policies.from_dict(after)
    except (TypeError, ValueError) as exc:
        raise InvalidInput.on("policy", str(exc)) from None
    diff = {
        key: {"from": before[key], "to": after[key]} for key in sorted(changes) if before[key] != after[key]
    }
    if not diff:
        raise InvalidInput.on("policy", "these values are already in force: nothing to change")
    setting = db.scalar(select(PolicySetting).where(PolicySetting.name == name).with_for_update())
    if setting is None:
        setting = PolicySetting(name=name, parameters=policies.to_dict(updated), version=1)
        db.add(setting)
    else:
        setting.parameters, setting.version = policies.to_dict(updated), setting.version + 1
    setting.note, setting.updated_by, setting.updated_at = note, actor.user_id or None, utcnow()
    db.flush()
    transparency.append(
        db,
        "allocation.policy_changed",
        {"policy": name, "version": setting.version, "changes": _log_safe(diff), "note": note},
    )
    return updated, setting.version


def _log_safe(value: Any) -> Any:
    """Floats as decimal strings: the log's canonical JSON carries no floats."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {key: _log_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_log_safe(item) for item in value]
    return value


def plan_json(round_: Round, plan: Plan, policy: Policy) -> dict[str, Any]:
    """The plan and its fairness report as plain JSON (the CLI's `--format json`)."""
    report = fairness.report(round_, plan, policy)
    return {
        "policy": plan.policy,
        "lines": [
            {
                "lot": line.lot_id,
                "need": line.need_id,
                "quantity": line.quantity,
                "distance_km": line.distance_km,
                "arrival": line.arrival.isoformat(),
            }
            for line in plan.lines
        ],
        "needs": [
            {
                "need": r.need_id,
                "member": r.member,
                "product": r.product,
                "requested": r.requested,
                "allocated": r.allocated,
                "unmet": r.unmet,
                "reason": r.reason.value,
                "explanation": r.explanation,
            }
            for r in plan.needs
        ],
        "fairness": asdict(report),
        "solver": asdict(plan.solver) if plan.solver else None,
    }


def create_plan(db: Session, actor: Principal, policy_name: str, day: date) -> AllocationPlan:
    """Snapshot the current round, solve it under the policy and store the proposed plan."""
    snapshot = builder.build_snapshot(db, day)
    round_ = snapshot.to_round()
    plan, policy = run_policy(round_, policy_name, effective_policy(db, policy_name))
    report = fairness.report(round_, plan, policy)
    jurisdiction_ids = {iso3: jid for iso3, jid in db.execute(select(Jurisdiction.iso3, Jurisdiction.id))}
    lots = {lot.id: lot for lot in round_.lots}
    stored = AllocationPlan(
        policy_name=policy_name,
        policy=policies.to_dict(policy),
        day=day,
        snapshot_digest=snapshot.digest(),
        snapshot=snapshot.canonical(),
        status=PlanStatus.PROPOSED,
        emergency_waiver=policy.emergency_waiver,
        fairness=asdict(report),
        solver=asdict(plan.solver) if plan.solver else {},
        allocated_units=sum(line.quantity for line in plan.lines),
        created_by=actor.user_id or None,
    )
    stored.lines = [
        AllocationLine(
            lot_id=_id(line.lot_id),
            need_id=_id(line.need_id),
            quantity=line.quantity,
            distance_km=line.distance_km,
            arrival=line.arrival,
            origin=lots[line.lot_id].origin,
        )
        for line in plan.lines
    ]
    stored.results = [
        AllocationResult(
            need_id=_id(r.need_id),
            jurisdiction_id=jurisdiction_ids[r.member],
            requested=r.requested,
            allocated=r.allocated,
            reason=r.reason.value,
            explanation=r.explanation,
        )
        for r in plan.needs
    ]
    db.add(stored)
    db.flush()
    return stored


def compare(db: Session, names: list[str], day: date) -> list[dict[str, Any]]:
    """Several policies and baselines side by side on the same snapshot (nothing stored)."""
    round_ = builder.build_snapshot(db, day).to_round()
    out = []
    for name in names:
        plan, policy = run_policy(round_, name, effective_policy(db, name))
        out.append(
            {
                **asdict(fairness.report(round_, plan, policy)),
                "policy": name,
                "solver_seconds": plan.solver.seconds_solve if plan.solver else None,
            }
        )
    return out


def get_plan(db: Session, plan_id: int) -> AllocationPlan:
    plan = db.get(AllocationPlan, plan_id)
    if plan is None:
        raise NotFound(f"no allocation plan {plan_id}")
    return plan


def visible_results(plan: AllocationPlan, actor: Principal) -> list[AllocationResult]:
    """A member sees its own needs' results; region-wide roles see all."""
    if actor.scope is ScopeKind.REGION:
        return list(plan.results)
    return [r for r in plan.results if r.jurisdiction_id == actor.jurisdiction_id]


def rerun(plan: AllocationPlan) -> tuple[Plan, Snapshot]:
    """The engine again on the plan's own snapshot and policy (reproducibility)."""
    snapshot = parse(plan.snapshot)
    policy = policies.from_dict(plan.policy)
    round_ = snapshot.to_round()
    if plan.policy_name in baselines.BASELINES:
        return baselines.BASELINES[plan.policy_name](round_, policy), snapshot
    return allocate(round_, policy), snapshot


def approve(db: Session, actor: Principal, plan_id: int) -> AllocationPlan:
    """Reserve every line's units on its lot and move the needs forward, all or nothing.

    Reservations go through the stock ledger, which locks the lots' balances: if another plan
    already promised the same units, this approval fails cleanly and changes nothing.
    """
    plan = db.scalar(
        select(AllocationPlan).where(AllocationPlan.id == plan_id).with_for_update(key_share=True)
    )
    if plan is None:
        raise NotFound(f"no allocation plan {plan_id}")
    if plan.status is not PlanStatus.PROPOSED:
        raise Conflict(f"plan {plan_id} is {plan.status.value}", [FieldError("status", plan.status.value)])
    need_ids = sorted({line.need_id for line in plan.lines})
    needs = {
        n.id: n
        for n in db.scalars(
            select(Need)
            .where(Need.id.in_(need_ids))
            .order_by(Need.id)
            .with_for_update(of=Need, key_share=True)
        )
    }
    per_need: dict[int, int] = defaultdict(int)
    for line in plan.lines:
        per_need[line.need_id] += line.quantity
    stale = [
        f"need {nid}"
        for nid, units in per_need.items()
        if needs[nid].status not in ALLOCATABLE or needs[nid].quantity - needs[nid].quantity_allocated < units
    ]
    if stale:
        raise Conflict(
            "the plan is out of date: " + ", ".join(stale[:10]) + " changed since it was made; run a "
            "new round",
            [FieldError("plan", "out of date")],
        )
    lots = {
        lot.id: lot for lot in db.scalars(select(Lot).where(Lot.id.in_({line.lot_id for line in plan.lines})))
    }
    now = utcnow()
    decision = ledger.Decision(
        source="allocation",
        reason=f"allocation plan {plan.id}",
        reference=f"plan:{plan.id}",
        idempotency_key=f"allocation-plan:{plan.id}",
        request_digest=plan.snapshot_digest,
        refused=f"plan {plan.id} promises stock that is no longer available "
        "(another plan or a stock movement took it)",
    )
    picks = [(lots[line.lot_id], line.quantity) for line in plan.lines]
    ledger.reserve(db, picks, decision, user_id=actor.user_id or None, at=now)
    for need_id, units in per_need.items():
        need = needs[need_id]
        need.quantity_allocated += units
        action = Action.ALLOCATE_ALL if need.quantity_allocated >= need.quantity else Action.ALLOCATE_PART
        needs_service.transition(db, need, action, actor, f"allocation plan {plan.id}: {units} units")
    _consume_pledges(db, plan, lots)
    plan.status, plan.decided_by, plan.decided_at = PlanStatus.APPROVED, actor.user_id or None, now
    db.flush()
    transparency.append(db, "allocation.plan_approved", _approval_entry(plan, lots))
    return plan


def _approval_entry(plan: AllocationPlan, lots: dict[int, Lot]) -> dict[str, Any]:
    """What the log keeps of an approval: enough to check any member's share against the plan."""
    lines = sorted(
        (lots[line.lot_id].facility.code, lots[line.lot_id].lot_number, line.need_id, line.quantity)
        for line in plan.lines
    )
    return {
        "plan": plan.id,
        "policy": plan.policy_name,
        "day": plan.day.isoformat(),
        "snapshot_digest": plan.snapshot_digest,
        "emergency_waiver": plan.emergency_waiver,
        "units": plan.allocated_units,
        "lines": [
            {"source": source, "lot": lot, "need": need, "quantity": quantity}
            for source, lot, need, quantity in lines
        ],
    }


def _consume_pledges(db: Session, plan: AllocationPlan, lots: dict[int, Lot]) -> None:
    """Allocated pledged units leave the pledge: it offers only what is still unpromised."""
    taken: dict[tuple[int, int], int] = defaultdict(int)
    for line in plan.lines:
        if line.origin == "pledge":
            lot = lots[line.lot_id]
            taken[(lot.facility_id, lot.product_id)] += line.quantity
    for (facility_id, product_id), units in taken.items():
        for pledge in db.scalars(
            select(Pledge)
            .where(
                Pledge.facility_id == facility_id,
                Pledge.product_id == product_id,
                Pledge.status == PledgeStatus.ACTIVE,
            )
            .order_by(Pledge.valid_to, Pledge.id)
        ):
            used = min(units, pledge.quantity)
            units -= used
            if used == pledge.quantity:
                pledge.status = PledgeStatus.WITHDRAWN
                pledge.note = (pledge.note + f" [fully allocated by plan {plan.id}]").strip()
            else:
                pledge.quantity -= used
            if units <= 0:
                break


def reject(db: Session, actor: Principal, plan_id: int, note: str) -> AllocationPlan:
    plan = get_plan(db, plan_id)
    if plan.status is not PlanStatus.PROPOSED:
        raise Conflict(f"plan {plan_id} is {plan.status.value}", [FieldError("status", plan.status.value)])
    plan.status, plan.decided_by, plan.decided_at, plan.decision_note = (
        PlanStatus.REJECTED,
        actor.user_id or None,
        utcnow(),
        note,
    )
    db.flush()
    return plan
