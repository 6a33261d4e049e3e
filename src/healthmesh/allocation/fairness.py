"""How fair and how efficient a plan is: the figures a region compares policies by."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from healthmesh.allocation.engine import need_weight
from healthmesh.allocation.model import Plan, Policy, Reason, Round

UNSERVABLE = frozenset(
    {Reason.NOT_AUTHORISED, Reason.NO_COLD_CHAIN, Reason.SHELF_LIFE, Reason.NO_SUPPLY, Reason.BELOW_PACK}
)


@dataclass(frozen=True)
class FairnessReport:
    policy: str
    allocated: int
    requested: int
    fill_rate_by_member: dict[str, float]
    fill_rate_by_income_group: dict[str, float]
    min_fill_rate: float  # over needs that some lot could serve
    gini_of_member_fill_rates: float
    weighted_unmet_need: float
    units_expiring_unused: int  # unallocated units of lots expiring within 90 days
    total_distance_km: float  # one shipment per source x destination


def gini(values: list[float]) -> float:
    """Gini coefficient (0 = equal, 1 = all to one)."""
    if not values or sum(values) == 0:
        return 0.0
    ordered = sorted(values)
    n = len(ordered)
    cumulative = sum((index + 1) * value for index, value in enumerate(ordered))
    return (2 * cumulative) / (n * sum(ordered)) - (n + 1) / n


def report(round_: Round, plan: Plan, policy: Policy) -> FairnessReport:
    by_id = {need.id: need for need in round_.needs}
    member_got: dict[str, int] = defaultdict(int)
    member_asked: dict[str, int] = defaultdict(int)
    group_got: dict[str, int] = defaultdict(int)
    group_asked: dict[str, int] = defaultdict(int)
    unmet = 0.0
    servable_fills = []
    for result in plan.needs:
        need = by_id[result.need_id]
        group = round_.members[need.member].income_group if need.member in round_.members else "unknown"
        member_got[need.member] += result.allocated
        member_asked[need.member] += result.requested
        group_got[group] += result.allocated
        group_asked[group] += result.requested
        unmet += need_weight(need, round_, policy) * result.unmet
        if result.reason not in UNSERVABLE:
            servable_fills.append(result.fill_rate)
    used: dict[str, int] = defaultdict(int)
    routes: dict[tuple[str, str], float] = {}
    lots = {lot.id: lot for lot in round_.lots}
    for line in plan.lines:
        used[line.lot_id] += line.quantity
        need = by_id[line.need_id]
        routes[(lots[line.lot_id].source, need.facility or need.member)] = line.distance_km
    soon = round_.day + timedelta(days=90)
    expiring = sum(
        lot.quantity - used.get(lot.id, 0)
        for lot in round_.lots
        if lot.expiry is not None and lot.expiry <= soon
    )
    member_fill = {m: member_got[m] / member_asked[m] for m in sorted(member_asked) if member_asked[m]}
    return FairnessReport(
        policy=plan.policy,
        allocated=sum(member_got.values()),
        requested=sum(member_asked.values()),
        fill_rate_by_member=member_fill,
        fill_rate_by_income_group={
            g: group_got[g] / group_asked[g] for g in sorted(group_asked) if group_asked[g]
        },
        min_fill_rate=min(servable_fills, default=1.0),
        gini_of_member_fill_rates=gini(list(member_fill.values())),
        weighted_unmet_need=round(unmet, 3),
        units_expiring_unused=expiring,
        total_distance_km=round(sum(routes.values()), 1),
    )
