"""Stored mutual-aid plans and their approval: the first period's moves become shipments.

A plan to be approved names members as the registry does (ISO3 codes) and the shared reserve as
`reserve`, for one product. Approval, all or nothing, for each move of the first period:

* a transfer from member A to member B: whole units (the plan's units rounded down) reserved at
  A's national warehouse, earliest expiry first, and a shipment from there to B's national
  warehouse;
* a reserve release to member B: units reserved at the regional reserve depots, earliest expiry
  first, and a shipment from each depot used.

If a sender does not hold the units (the plan was made on imported figures; stock may have moved
since), nothing is reserved or planned and the refusal names each sender and what it holds. The
approval is written to the transparency log with its moves and shipments. Later periods are
planned again as the crisis unfolds: a new plan from the new figures.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal
from healthmesh.allocation import builder
from healthmesh.allocation.models import PlanStatus
from healthmesh.db import utcnow
from healthmesh.errors import Conflict, FieldError, InvalidInput, NotFound
from healthmesh.ledger import service as transparency
from healthmesh.logistics import service as logistics
from healthmesh.logistics.models import Shipment
from healthmesh.mutual_aid import transfer
from healthmesh.mutual_aid.model import Plan, Policy
from healthmesh.mutual_aid.models import MutualAidPlan
from healthmesh.mutual_aid.service import plan_to_json
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import ledger
from healthmesh.supply.models import Lot, LotBalance


@dataclass(frozen=True)
class Move:
    """Whole units from a member (or the reserve) to a member in the first period."""

    source: str
    target: str
    units: int


def inputs_json(inputs: transfer.Inputs, policy: Policy) -> dict[str, Any]:
    return {
        "demand": [list(row) for row in inputs.demand],
        "supply": [list(row) for row in inputs.supply],
        "distances": [list(row) for row in inputs.distances],
        "policy": {name: getattr(policy, name) for name in policy.__dataclass_fields__},
    }


def digest(data: dict[str, Any]) -> str:
    """SHA-256 of canonical JSON: the same inputs and policy always give the same digest."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save(
    db: Session, actor: Principal, product_code: str, inputs: transfer.Inputs, policy: Policy, plan: Plan
) -> MutualAidPlan:
    """Store a computed plan for approval; its members must be registry members."""
    product = db.scalar(select(Product).where(Product.code == product_code))
    errors = [] if product is not None else [FieldError("product", f"no product {product_code}")]
    known = set(db.scalars(select(Jurisdiction.iso3)))
    unknown = sorted(set(plan.members) - known)
    if unknown:
        errors.append(
            FieldError("demand", f"not members of the registry: {', '.join(unknown[:10])} (use ISO3 codes)")
        )
    if errors or product is None:
        raise InvalidInput("this plan cannot be stored for approval", errors)
    data = inputs_json(inputs, policy)
    row = MutualAidPlan(
        product_id=product.id,
        first_period=date.fromisoformat(plan.periods[0]),
        status=PlanStatus.PROPOSED,
        inputs_digest=digest(data),
        inputs=data,
        plan=plan_to_json(plan),
        created_by=actor.user_id or None,
    )
    row.product = product
    db.add(row)
    db.flush()
    return row


def get(db: Session, plan_id: int, *, lock: bool = False) -> MutualAidPlan:
    stmt = select(MutualAidPlan).where(MutualAidPlan.id == plan_id)
    row = db.scalar(stmt.with_for_update(of=MutualAidPlan, key_share=True) if lock else stmt)
    if row is None:
        raise NotFound(f"no mutual-aid plan {plan_id}")
    return row


def first_moves(plan: dict[str, Any]) -> list[Move]:
    """The first period's transfers and reserve releases in whole units (rounded down)."""
    first = plan["periods"][0]
    moves = [
        Move(t["source"], t["target"], math.floor(t["units"] + 1e-6))
        for t in plan["transfers"]
        if t["period"] == first
    ]
    moves += [
        Move(transfer.RESERVE, row["member"], math.floor(row["released"] + 1e-6))
        for row in plan.get("rows", [])
        if row["period"] == first and row["released"]
    ]
    return [move for move in moves if move.units >= 1]


def _available_lots(
    db: Session, facility_ids: Sequence[int], product_id: int, day: date
) -> list[tuple[Lot, int]]:
    """Lots with free units at these facilities, earliest expiry first (undated last)."""
    rows = db.execute(
        select(Lot, LotBalance.on_hand - LotBalance.reserved)
        .join(LotBalance, LotBalance.lot_id == Lot.id)
        .where(
            Lot.facility_id.in_(facility_ids),
            Lot.product_id == product_id,
            LotBalance.on_hand > LotBalance.reserved,
            (Lot.expiry_date.is_(None)) | (Lot.expiry_date > day),
        )
        .order_by(Lot.expiry_date.is_(None), Lot.expiry_date, Lot.id)
    ).all()
    return [(lot, int(free)) for lot, free in rows]


def _pick(free: list[tuple[Lot, int]], taken: dict[int, int], units: int) -> list[tuple[Lot, int]]:
    """Units from the lots in order, skipping what earlier moves took; short if it runs out."""
    picked = []
    for lot, available in free:
        if units <= 0:
            break
        left = available - taken.get(lot.id, 0)
        if left <= 0:
            continue
        take = min(left, units)
        taken[lot.id] = taken.get(lot.id, 0) + take
        picked.append((lot, take))
        units -= take
    return picked


def approve(
    db: Session, actor: Principal, plan_id: int, *, now: datetime | None = None
) -> tuple[MutualAidPlan, list[Shipment]]:
    """Reserve the first period's units and plan their shipments, all or nothing."""
    row = get(db, plan_id, lock=True)
    if row.status is not PlanStatus.PROPOSED:
        raise Conflict(
            f"mutual-aid plan {plan_id} is {row.status.value}", [FieldError("status", row.status.value)]
        )
    now = now or utcnow()
    moves = first_moves(row.plan)
    members = {j.iso3: j for j in db.scalars(select(Jurisdiction))}
    warehouses = builder.national_warehouses(db)
    depots = list(db.scalars(select(Facility).where(Facility.kind == FacilityKind.REGIONAL_RESERVE_DEPOT)))
    taken: dict[int, int] = {}
    errors: list[FieldError] = []
    routes: list[tuple[Move, Facility, list[tuple[Lot, int]]]] = []
    for move in moves:
        destination = warehouses.get(members[move.target].id)
        if move.source == transfer.RESERVE:
            sources = depots
        else:
            sender = warehouses.get(members[move.source].id)
            sources = [sender] if sender is not None else []
        if destination is None or not sources:
            missing = move.target if destination is None else move.source
            errors.append(FieldError(f"moves.{missing}", f"{missing} has no national warehouse"))
            continue
        free = _available_lots(db, [f.id for f in sources], row.product_id, now.date())
        picked = _pick(free, taken, move.units)
        held = sum(units for _, units in picked)
        if held < move.units:
            where = "the reserve depots" if move.source == transfer.RESERVE else sources[0].code
            errors.append(
                FieldError(
                    f"moves.{move.source}",
                    f"{move.source} must send {move.units} units of {row.product.code} to {move.target} "
                    f"but holds {held} free at {where}",
                )
            )
        routes.append((move, destination, picked))
    if errors:
        raise Conflict(
            f"mutual-aid plan {plan_id} cannot be approved: the first period's senders do not hold the units",
            errors,
        )
    _reserve(db, actor, row, [pick for _, _, picked in routes for pick in picked], now)
    shipments = _plan_shipments(db, actor, row, routes, now)
    row.status, row.decided_by, row.decided_at = PlanStatus.APPROVED, actor.user_id or None, now
    db.flush()
    transparency.append(db, "mutual_aid.plan_approved", _approval_entry(row, moves, shipments))
    return row, shipments


def _reserve(
    db: Session, actor: Principal, row: MutualAidPlan, picks: list[tuple[Lot, int]], now: datetime
) -> None:
    decision = ledger.Decision(
        source="mutual_aid",
        reason=f"mutual-aid plan {row.id}",
        reference=f"mutual-aid:{row.id}",
        idempotency_key=f"mutual-aid-plan:{row.id}",
        request_digest=row.inputs_digest,
        refused=f"mutual-aid plan {row.id}: the stock moved while it was approved",
    )
    ledger.reserve(db, picks, decision, user_id=actor.user_id or None, at=now)


def _plan_shipments(
    db: Session,
    actor: Principal,
    row: MutualAidPlan,
    routes: list[tuple[Move, Facility, list[tuple[Lot, int]]]],
    now: datetime,
) -> list[Shipment]:
    """One shipment per move and source facility (a reserve release may draw on several depots)."""
    shipments = []
    for move, destination, picked in routes:
        by_source: dict[int, list[tuple[Lot, int]]] = {}
        for lot, units in picked:
            by_source.setdefault(lot.facility_id, []).append((lot, units))
        for lots in by_source.values():
            shipment = logistics.plan_reserved_shipment(
                db,
                actor,
                lots[0][0].facility,
                destination,
                lots,
                note=f"from mutual-aid plan {row.id}: {move.source} to {move.target}",
                now=now,
            )
            shipment.mutual_aid_plan_id = row.id
            shipments.append(shipment)
    db.flush()
    return shipments


def _approval_entry(row: MutualAidPlan, moves: list[Move], shipments: list[Shipment]) -> dict[str, Any]:
    """What the log keeps: the plan's inputs digest, its first period's moves and their shipments."""
    return {
        "plan": row.id,
        "product": row.product.code,
        "first_period": row.first_period.isoformat(),
        "inputs_digest": row.inputs_digest,
        "shortfall": row.plan["totals"]["shortfall"],
        "shortfall_without_sharing": row.plan["totals"]["shortfall_without_sharing"],
        "moves": [{"from": m.source, "to": m.target, "units": m.units} for m in moves],
        "shipments": [
            {
                "shipment": s.code,
                "from": s.source.code,
                "to": s.destination.code,
                "lines": [{"lot": line.lot.lot_number, "quantity": line.quantity} for line in s.lines],
            }
            for s in shipments
        ],
    }
