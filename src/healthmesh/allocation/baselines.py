"""The rules HealthMesh is compared with, on the same round and the same hard rules: pro-rata to
request, proportional to population, and first come, first served. Each decides how much every
need should get, then takes it from the need's candidate lots, earliest expiry first, nearest
next, in whole packs. None of them knows about fairness; that is the point of comparing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from healthmesh.allocation import candidates as cand
from healthmesh.allocation.model import NeedResult, Plan, PlanLine, Policy, Reason, Round


def _unit(round_: Round, policy: Policy, product: str) -> int:
    info = round_.products[product]
    return max(info.pack_size if policy.whole_units and not info.discrete else 1, 1)


def _reachable_supply(round_: Round, pairs: list[cand.Pair]) -> dict[str, int]:
    lots = {pair.lot for pair in pairs}
    out: dict[str, int] = defaultdict(int)
    for lot in lots:
        out[round_.lots[lot].product] += round_.lots[lot].quantity
    return out


def _fill(
    round_: Round,
    policy: Policy,
    name: str,
    found: cand.Candidates,
    targets: dict[int, float],
    order: list[int],
) -> Plan:
    """Take each need's target from its candidate lots, in `order`."""
    by_need: dict[int, list[cand.Pair]] = defaultdict(list)
    for pair in found.pairs:
        by_need[pair.need].append(pair)
    remaining = {index: lot.quantity for index, lot in enumerate(round_.lots)}
    lines: list[PlanLine] = []
    allocated: dict[int, int] = defaultdict(int)
    for n in order:
        need = round_.needs[n]
        unit = _unit(round_, policy, need.product)
        wanted = int(targets.get(n, 0) // unit) * unit
        for pair in sorted(
            by_need[n], key=lambda p: (round_.lots[p.lot].expiry or p.arrival.max, p.distance_km)
        ):
            if wanted <= 0:
                break
            take = min(wanted, remaining[pair.lot] // unit * unit)
            if take <= 0:
                continue
            remaining[pair.lot] -= take
            wanted -= take
            allocated[n] += take
            lines.append(
                PlanLine(round_.lots[pair.lot].id, need.id, take, round(pair.distance_km, 1), pair.arrival)
            )
    results = []
    for n, need in enumerate(round_.needs):
        got = allocated.get(n, 0)
        if n in found.refused:
            reason, text = found.refused[n]
            results.append(
                NeedResult(need.id, need.member, need.product, need.quantity, 0, reason, text + ".")
            )
        elif need.quantity - got < _unit(round_, policy, need.product):
            results.append(
                NeedResult(
                    need.id,
                    need.member,
                    need.product,
                    need.quantity,
                    got,
                    Reason.FULLY_ALLOCATED,
                    f"Fully allocated ({name}).",
                )
            )
        else:
            results.append(
                NeedResult(
                    need.id,
                    need.member,
                    need.product,
                    need.quantity,
                    got,
                    Reason.SUPPLY_EXHAUSTED,
                    f"Supply exhausted under the {name} rule.",
                )
            )
    lines.sort(key=lambda line: (line.need_id, line.lot_id))
    return Plan(name, tuple(lines), tuple(results))


def pro_rata(round_: Round, policy: Policy) -> Plan:
    """Every servable need gets the same share of its request: reachable supply / total request."""
    found = cand.build(round_, policy)
    servable = sorted({pair.need for pair in found.pairs})
    demand: dict[str, int] = defaultdict(int)
    for n in servable:
        demand[round_.needs[n].product] += round_.needs[n].quantity
    supply = _reachable_supply(round_, found.pairs)
    targets = {
        n: round_.needs[n].quantity
        * min(1.0, supply[round_.needs[n].product] / demand[round_.needs[n].product])
        for n in servable
    }
    return _fill(round_, policy, "pro-rata", found, targets, servable)


def by_population(round_: Round, policy: Policy) -> Plan:
    """Each member gets a share of the supply proportional to its population, pro-rata inside it."""
    found = cand.build(round_, policy)
    servable = sorted({pair.need for pair in found.pairs})
    supply = _reachable_supply(round_, found.pairs)
    demand: dict[tuple[str, str], int] = defaultdict(int)
    for n in servable:
        need = round_.needs[n]
        demand[(need.product, need.member)] += need.quantity
    population: dict[str, int] = defaultdict(int)
    for product, member in demand:
        population[product] += round_.members[member].population if member in round_.members else 0
    targets = {}
    for n in servable:
        need = round_.needs[n]
        people = round_.members[need.member].population if need.member in round_.members else 0
        member_share = supply[need.product] * people / max(population[need.product], 1)
        member_demand = demand[(need.product, need.member)]
        targets[n] = need.quantity * min(1.0, member_share / member_demand)
    return _fill(round_, policy, "population-proportional", found, targets, servable)


def first_come_first_served(round_: Round, policy: Policy) -> Plan:
    """Needs in submission order, each served in full while stock lasts."""
    found = cand.build(round_, policy)
    servable = sorted({pair.need for pair in found.pairs}, key=lambda n: (round_.needs[n].order, n))
    targets = {n: float(round_.needs[n].quantity) for n in servable}
    return _fill(round_, policy, "first-come-first-served", found, targets, servable)


BASELINES: dict[str, Callable[[Round, Policy], Plan]] = {
    "pro_rata": pro_rata,
    "population": by_population,
    "fcfs": first_come_first_served,
}
