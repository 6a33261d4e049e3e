"""The allocation engine: a linear (or, for whole units and packs, mixed-integer) programme per
product, built as sparse matrices and solved with HiGHS through SciPy's `milp`.

Lexicographic objectives, as the policy says:
1. fairness: maximise the smallest fill rate t among the needs that can be served at all;
2. efficiency: with every such need at least t filled, maximise weighted allocated units
   (urgency x shortage severity x vulnerability), then prefer the earliest-expiring lots and the
   shortest distance as tie-breakers.
A population floor (when supply is scarce) and a member cap enter both stages as constraints; a
floor that eligibility makes impossible is relaxed by a heavily penalised slack, never by making
the round infeasible. Products are independent, so each is its own small programme: time grows
with the number of needs, not with its square.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix, csr_array
from scipy.sparse.csgraph import maximum_flow

from healthmesh.allocation import candidates as cand
from healthmesh.allocation.model import (
    Fairness,
    NeedLine,
    NeedResult,
    Plan,
    PlanLine,
    Policy,
    Reason,
    Round,
    SolverReport,
)

SLACK_COST = 10.0  # per unit of unmet floor: more than the whole fill-rate or efficiency gain of a unit
EXPIRY_TIE = 1e-3
DISTANCE_TIE = 1e-4
FILL_TOLERANCE = 1e-6
MAX_LEVEL_CHECKS = 40  # binary search over fill levels (a max flow each): exact for any product
INTEGRAL_TOLERANCE = 1e-7  # an LP value this close to a whole pack is one
PACK_TOLERANCE = 1e-3  # LP values such as 4.99999 packs mean 5 (a stage-2 failure steps down anyway)


_STDOUT_LOCK = threading.Lock()


@contextmanager
def _native_stdout_to_stderr() -> Iterator[None]:
    """HiGHS (as bundled with SciPy 1.17) prints a stray debug line on C stdout even with output
    off; send C-level stdout to stderr while it runs, so JSON written on stdout stays clean."""
    with _STDOUT_LOCK:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def need_weight(need: NeedLine, round_: Round, policy: Policy) -> float:
    """Weighted need: urgency x shortage severity x vulnerability (income group)."""
    urgency = policy.urgency_weights.get(need.urgency, 1.0)
    coverage = need.coverage if need.coverage is not None else 1.0
    severity = 1.0 + policy.severity_weight * max(0.0, 1.0 - min(coverage, 1.0))
    member = round_.members.get(need.member)
    vulnerability = policy.income_weights.get(member.income_group, 1.0) if member else 1.0
    return urgency * severity * vulnerability


@dataclass
class ProductContext:
    """What explanations need to know about a product's programme after solving."""

    code: str
    unit: int
    supply: int
    t: float
    floors: dict[str, float] = field(default_factory=dict)
    caps: dict[str, float] = field(default_factory=dict)
    member_totals: dict[str, int] = field(default_factory=dict)
    below_pack: set[int] = field(default_factory=set)  # round need indices that cannot get a whole pack


@dataclass
class _Solution:
    units: NDArray[np.int64]
    t: float
    report: SolverReport


class ProductProgramme:
    """Columns: one per candidate pair (packs shipped), then t, then one floor slack per member."""

    def __init__(self, round_: Round, policy: Policy, code: str, found: cand.Candidates) -> None:
        started = time.perf_counter()
        self.round, self.policy, self.code = round_, policy, code
        part = found.products[code]
        self.pair_lot, self.pair_need = found.lot[part], found.need[part]
        self.pair_km, self.pair_day = found.distance_km[part], found.arrival_day[part]
        info = round_.products[code]
        self.unit = max(info.pack_size if policy.whole_units and not info.discrete else 1, 1)
        self.lot_ids, lot_row = np.unique(self.pair_lot, return_inverse=True)
        self.need_ids, need_row = np.unique(self.pair_need, return_inverse=True)
        member_names = [round_.needs[n].member for n in self.need_ids]
        self.members = sorted(set(member_names))
        position = {member: i for i, member in enumerate(self.members)}
        member_of_need = np.array([position[m] for m in member_names], dtype=np.int64)
        member_row = member_of_need[need_row]
        self.available = np.array([round_.lots[i].quantity for i in self.lot_ids], dtype=np.int64)
        self.requested = np.array([round_.needs[n].quantity for n in self.need_ids], dtype=np.int64)
        self.supply = int(self.available.sum())
        p, n_needs, n_members = len(self.pair_lot), len(self.need_ids), len(self.members)
        n_lots = len(self.lot_ids)
        self.t_col, self.slack0 = p, p + 1
        self.n_cols = p + 1 + n_members
        self.floors, self.caps = self._floors_and_caps(member_of_need)
        columns = np.arange(p)
        rows: list[NDArray[np.int64]] = []
        cols: list[NDArray[np.int64]] = []
        vals: list[NDArray[np.float64]] = []
        lower: list[float] = []
        upper: list[float] = []

        def add(r: NDArray[np.int64], c: NDArray[np.int64], v: NDArray[np.float64]) -> None:
            rows.append(r)
            cols.append(c)
            vals.append(v)

        base = 0
        add(base + lot_row, columns, np.ones(p))  # a lot ships at most what it has
        lower += [0.0] * n_lots
        upper += list((self.available // self.unit).astype(float))
        base += n_lots
        add(base + need_row, columns, np.ones(p))  # a need gets at most what it asked for
        lower += [0.0] * n_needs
        upper += list((self.requested // self.unit).astype(float))
        base += n_needs
        # Fill rate >= t, for every need that can receive at least one whole pack from its candidates;
        # one that cannot (asks for less than a pack, or its lots hold less) must not pin t at zero.
        lot_packs = self.available // self.unit
        reachable = np.bincount(need_row, weights=lot_packs[lot_row], minlength=n_needs)
        self.servable = np.minimum(reachable, self.requested // self.unit) >= 1
        fair_rows = np.cumsum(self.servable) - 1
        pair_fair = self.servable[need_row]
        n_fair = int(self.servable.sum())
        add(
            base + fair_rows[need_row][pair_fair],
            columns[pair_fair],
            np.full(int(pair_fair.sum()), float(self.unit)),
        )
        add(
            base + np.arange(n_fair),
            np.full(n_fair, self.t_col),
            -self.requested[self.servable].astype(float),
        )
        lower += [0.0] * n_fair
        upper += [np.inf] * n_fair
        base += n_fair
        for m, member in enumerate(self.members):
            mask = member_row == m
            if member in self.caps:
                add(np.full(int(mask.sum()), base), columns[mask], np.full(int(mask.sum()), float(self.unit)))
                lower.append(0.0)
                upper.append(self.caps[member])
                base += 1
            if member in self.floors:
                add(np.full(int(mask.sum()), base), columns[mask], np.full(int(mask.sum()), float(self.unit)))
                add(np.array([base]), np.array([self.slack0 + m]), np.array([1.0]))
                lower.append(self.floors[member])
                upper.append(np.inf)
                base += 1
        matrix = coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(base, self.n_cols)
        ).tocsr()
        self.matrix = matrix
        self.row_lower, self.row_upper = np.array(lower), np.array(upper)
        self.need_rows = np.arange(n_lots, n_lots + n_needs)
        self.n_rows = base
        ub_pairs = np.minimum(self.available[lot_row] // self.unit, self.requested[need_row] // self.unit)
        self.upper_bounds = np.concatenate([ub_pairs.astype(float), [1.0], np.full(n_members, np.inf)])
        self.integrality = np.concatenate(
            [np.ones(p) if policy.whole_units else np.zeros(p), np.zeros(1 + n_members)]
        )
        weights = np.array([need_weight(round_.needs[n], round_, policy) for n in self.need_ids])
        expiry = np.array([_expiry_day(round_, i) for i in self.lot_ids], dtype=np.int64)
        days_left = (expiry[lot_row] - self.pair_day).astype(np.float64)
        distance = self.pair_km
        self.efficiency = np.zeros(self.n_cols)
        scale = float(self.unit)
        self.efficiency[:p] = (
            -(weights[need_row] / weights.max()) * scale
            + (EXPIRY_TIE * scale / max(float(days_left.max()), 1.0)) * days_left
            + (DISTANCE_TIE * scale / max(float(distance.max()), 1.0)) * distance
        )
        self.efficiency[self.slack0 :] = SLACK_COST
        self._flow_edges = self._flow_network(lot_row, need_row, member_of_need, ub_pairs)
        self.build_seconds = time.perf_counter() - started

    def _flow_network(
        self,
        lot_row: NDArray[np.int64],
        need_row: NDArray[np.int64],
        member_of_need: NDArray[np.int64],
        pair_packs: NDArray[np.int64],
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]:
        """The round as a flow network in packs: source -> lot -> need -> member -> sink, with the
        lots' packs, the pairs' bounds and the members' caps as capacities. The need -> member arcs
        come last: their capacity is the packs a fill level asks of each need."""
        n_lots, n_needs, n_members = len(self.lot_ids), len(self.need_ids), len(self.members)
        source, lot0, need0 = 0, 1, 1 + n_lots
        member0 = need0 + n_needs
        sink = member0 + n_members
        supply_packs = self.supply // self.unit
        member_caps = np.array(
            [int(self.caps[m]) // self.unit if m in self.caps else supply_packs for m in self.members],
            dtype=np.int64,
        )
        tails = np.concatenate(
            [
                np.full(n_lots, source),
                lot0 + lot_row,
                member0 + np.arange(n_members),
                need0 + np.arange(n_needs),
            ]
        )
        heads = np.concatenate(
            [lot0 + np.arange(n_lots), need0 + need_row, np.full(n_members, sink), member0 + member_of_need]
        )
        capacity = np.concatenate(
            [self.available // self.unit, pair_packs, member_caps, np.zeros(n_needs, dtype=np.int64)]
        )
        return tails, heads, capacity, sink

    def _floors_and_caps(
        self, member_of_need: NDArray[np.int64]
    ) -> tuple[dict[str, float], dict[str, float]]:
        demand = {m: float(self.requested[member_of_need == i].sum()) for i, m in enumerate(self.members)}
        caps = {}
        if self.policy.cap_share < 1.0:
            # in whole packs, so the cap row keeps the programme's vertices integral
            cap = np.floor(self.policy.cap_share * self.supply / self.unit) * self.unit
            caps = {m: float(cap) for m in self.members}
        floors = {}
        scarce = self.supply < sum(demand.values())
        if self.policy.floor_share > 0 and scarce:
            population = {
                m: self.round.members[m].population if m in self.round.members else 0 for m in self.members
            }
            total = sum(population.values()) or 1
            for m in self.members:
                share = self.policy.floor_share * self.supply * population[m] / total
                floor = float(np.floor(min(share, demand[m], caps.get(m, np.inf)) / self.unit) * self.unit)
                if floor > 0:
                    floors[m] = floor
        return floors, caps

    def _run(
        self,
        objective: NDArray[np.float64],
        *,
        t_bounds: tuple[float, float],
        integral: bool,
        need_packs_at_least: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.float64] | None, SolverReport]:
        lower = np.zeros(self.n_cols)
        upper = self.upper_bounds.copy()
        lower[self.t_col], upper[self.t_col] = t_bounds
        row_lower = self.row_lower.copy()
        if need_packs_at_least is not None:
            row_lower[self.need_rows] = need_packs_at_least
        started = time.perf_counter()
        result = milp(
            objective,
            integrality=self.integrality if integral else np.zeros(self.n_cols),
            bounds=Bounds(lower, upper),
            constraints=LinearConstraint(self.matrix, row_lower, self.row_upper),
            options={
                "time_limit": self.policy.time_limit_seconds,
                "mip_rel_gap": 1e-6,
                "disp": False,
                "presolve": integral,  # these LPs are small and sparse: presolve costs more than it saves
            },
        )
        seconds = time.perf_counter() - started
        fun = float(result.fun) if result.fun is not None else float("nan")
        bound = float(getattr(result, "mip_dual_bound", None) or fun)
        gap = float(getattr(result, "mip_gap", 0.0) or 0.0)
        status = {0: "optimal", 1: "time_limit", 2: "infeasible"}.get(result.status, str(result.status))
        report = SolverReport(status, self.build_seconds, seconds, self.n_cols, self.n_rows, fun, bound, gap)
        return (np.asarray(result.x, dtype=float) if result.x is not None else None), report

    def _feasible(self, packs: NDArray[np.float64]) -> bool:
        """Can every need get at least `packs` whole packs at once? Floors have slack, so only the
        lots, the pairs and the caps decide: a maximum flow in whole packs answers exactly, in
        microseconds, where an LP per level would cost milliseconds (a product may need a dozen)."""
        tails, heads, capacity, sink = self._flow_edges
        wanted = packs.astype(np.int64)
        capacity = capacity.copy()
        capacity[-len(wanted) :] = wanted
        graph = csr_array(
            (capacity.astype(np.int32), (tails.astype(np.int32), heads.astype(np.int32))),
            shape=(sink + 1, sink + 1),
        )
        return int(maximum_flow(graph, 0, sink).flow_value) >= int(wanted.sum())

    def _integer_max_min(self, t_lp: float) -> tuple[NDArray[np.float64], float]:
        """The highest fill level every servable need can reach in whole packs, and the packs each
        needs for it. Levels are the fills k packs give a need; feasibility at a level is a maximum
        flow (`_feasible`), so a binary search over the levels between the LP's rounded-down fills
        and t_lp finds the integer max-min."""
        if not self.policy.whole_units:
            return np.where(
                self.servable, t_lp * (1 - FILL_TOLERANCE) * self.requested / self.unit, 0.0
            ), t_lp
        q = self.requested[self.servable].astype(float)
        best = np.floor(t_lp * q / self.unit + PACK_TOLERANCE)
        t_floor = float((best * self.unit / q).min())
        low_packs = np.ceil(t_floor * q / self.unit - 1e-9)
        levels = np.unique(
            np.concatenate(
                [
                    np.arange(lo, hi + 1) * self.unit / qi
                    for lo, hi, qi in zip(low_packs, best, q, strict=True)
                ]
            )
        )

        def packs_for(level: float) -> NDArray[np.float64]:
            out = np.zeros(len(self.requested))
            out[self.servable] = np.ceil(level * q / self.unit - 1e-9)
            return out

        lo, hi = 0, len(levels) - 1
        if hi > 0 and self._feasible(packs_for(float(levels[hi]))):
            return packs_for(float(levels[hi])), float(levels[hi])
        hi -= 1
        for _ in range(MAX_LEVEL_CHECKS):
            if lo >= hi:
                break
            mid = (lo + hi + 1) // 2
            if self._feasible(packs_for(float(levels[mid]))):
                lo = mid
            else:
                hi = mid - 1
        return packs_for(float(levels[lo])), float(levels[lo])

    def _efficient(
        self, packs: NDArray[np.float64] | None, reports: list[SolverReport]
    ) -> NDArray[np.float64] | None:
        """Stage 2. Lot rows, need rows and member rows are two laminar families over the pairs, so
        the constraint matrix is totally unimodular and, with whole-pack bounds, the simplex
        vertex HiGHS returns is already in whole packs: the MIP runs only if it is not."""
        x, report = self._run(self.efficiency, t_bounds=(0.0, 0.0), integral=False, need_packs_at_least=packs)
        reports.append(report)
        if x is None or not self.policy.whole_units:
            return x
        shipped = x[: len(self.pair_lot)]
        if np.abs(shipped - np.rint(shipped)).max(initial=0.0) <= INTEGRAL_TOLERANCE:
            return x
        x, report = self._run(self.efficiency, t_bounds=(0.0, 0.0), integral=True, need_packs_at_least=packs)
        reports.append(report)
        return x

    def solve(self) -> _Solution:
        """Stage 1: the best common fill rate on the LP relaxation, then the best level reachable in
        whole packs (`_integer_max_min`); max-min is slow for branch and bound but easy this way.
        Stage 2: every servable need gets at least its packs for that level, and weighted need
        served is maximised (`_efficient`)."""
        reports = []
        floor_packs: NDArray[np.float64] | None = None
        t = 0.0
        if self.policy.fairness is Fairness.MAXMIN_THEN_EFFICIENCY and self.servable.any():
            fairness = np.zeros(self.n_cols)
            fairness[self.t_col] = -1.0
            fairness[self.slack0 :] = SLACK_COST
            x, report = self._run(fairness, t_bounds=(0.0, 1.0), integral=False)
            reports.append(report)
            t_lp = float(x[self.t_col]) if x is not None else 0.0
            floor_packs, t = self._integer_max_min(t_lp)
        x = None
        for relax in (1.0, 0.9, 0.75, 0.5, 0.0):  # caps and floors can break integrality; step down
            packs = None if floor_packs is None else np.floor(floor_packs * relax)
            x = self._efficient(packs, reports)
            if x is not None:
                break
        assert x is not None, f"HiGHS found no plan for {self.code}"
        packs = np.rint(x[: len(self.pair_lot)]) if self.policy.whole_units else x[: len(self.pair_lot)]
        units = (packs * self.unit).astype(np.int64)
        merged = SolverReport(
            "optimal" if reports[-1].status == "optimal" else reports[-1].status,
            self.build_seconds,
            sum(r.seconds_solve for r in reports),
            self.n_cols,
            self.n_rows,
            reports[-1].objective,
            reports[-1].bound,
            max(r.gap for r in reports),
        )
        return _Solution(units, t, merged)


def _expiry_day(round_: Round, lot: int) -> int:
    """A lot's expiry as an ordinal; lots without expiry count as expiring in ten years."""
    expiry = round_.lots[lot].expiry
    return expiry.toordinal() if expiry is not None else round_.day.toordinal() + 3650


def solver_threads(products: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(products, cores))


def _solve_products(
    round_: Round, policy: Policy, found: cand.Candidates
) -> list[tuple[ProductProgramme, _Solution]]:
    """Every product's programme, built and solved on a thread per core: HiGHS releases the GIL
    while it solves, and products are independent, so the plan does not depend on the order."""

    def solve(code: str) -> tuple[ProductProgramme, _Solution]:
        programme = ProductProgramme(round_, policy, code, found)
        return programme, programme.solve()

    codes = sorted(found.products)
    with _native_stdout_to_stderr(), ThreadPoolExecutor(max_workers=solver_threads(len(codes))) as pool:
        return list(pool.map(solve, codes))


def allocate(round_: Round, policy: Policy) -> Plan:
    """Solve the round under the policy and explain every need's result."""
    found = cand.build(round_, policy)
    lines: list[PlanLine] = []
    allocated: dict[int, int] = defaultdict(int)
    contexts: dict[str, ProductContext] = {}
    reports: list[SolverReport] = []
    for programme, solution in _solve_products(round_, policy, found):
        code = programme.code
        reports.append(solution.report)
        context = ProductContext(
            code, programme.unit, programme.supply, solution.t, programme.floors, programme.caps
        )
        for k in np.nonzero(solution.units > 0)[0]:
            n, units = int(programme.pair_need[k]), int(solution.units[k])
            need = round_.needs[n]
            lot = round_.lots[int(programme.pair_lot[k])]
            arrives = date.fromordinal(int(programme.pair_day[k]))
            lines.append(PlanLine(lot.id, need.id, units, round(float(programme.pair_km[k]), 1), arrives))
            allocated[n] += units
            context.member_totals[need.member] = context.member_totals.get(need.member, 0) + units
        fills = [
            allocated.get(int(n), 0) / round_.needs[int(n)].quantity
            for n, ok in zip(programme.need_ids, programme.servable, strict=True)
            if ok
        ]
        context.t = min(fills, default=0.0)  # the fill every servable need reached, in whole packs
        context.below_pack = {
            int(n) for n, ok in zip(programme.need_ids, programme.servable, strict=True) if not ok
        }
        contexts[code] = context
    results = tuple(
        _explain(n, need, allocated.get(n, 0), found.refused.get(n), contexts.get(need.product), policy)
        for n, need in enumerate(round_.needs)
    )
    lines.sort(key=lambda line: (line.need_id, line.lot_id))
    return Plan(policy.name, tuple(lines), results, _merge(reports))


def _explain(
    index: int,
    need: NeedLine,
    allocated: int,
    refused: tuple[Reason, str] | None,
    context: ProductContext | None,
    policy: Policy,
) -> NeedResult:
    """The binding reason for one need, in plain words."""

    def result(reason: Reason, text: str) -> NeedResult:
        return NeedResult(need.id, need.member, need.product, need.quantity, allocated, reason, text)

    if refused is not None:
        return result(refused[0], refused[1][0].upper() + refused[1][1:] + ".")
    assert context is not None, index
    if index in context.below_pack and allocated == 0:
        return result(
            Reason.BELOW_PACK,
            f"{need.product} moves in whole packs of {context.unit}: this need asks for less than a pack, "
            "or no lot that could reach it holds a whole pack.",
        )
    if need.quantity - allocated < context.unit:
        return result(Reason.FULLY_ALLOCATED, f"Fully allocated: {allocated} of {need.quantity} units.")
    total = context.member_totals.get(need.member, 0)
    cap = context.caps.get(need.member)
    if cap is not None and total >= cap - context.unit + 1:
        return result(
            Reason.MEMBER_CAP,
            f"{need.member} reached the cap of {policy.cap_share:.0%} of this "
            f"round's {need.product} ({int(cap)} units); {allocated} of {need.quantity} allocated.",
        )
    floor = context.floors.get(need.member)
    if floor is not None and total <= floor + context.unit - 1 and allocated > 0:
        return result(
            Reason.FLOOR_APPLIED,
            f"Supply is scarce: {need.member} received its population floor of "
            f"{int(floor)} units of {need.product}; {allocated} of {need.quantity} allocated here.",
        )
    if policy.fairness is Fairness.MAXMIN_THEN_EFFICIENCY and context.t > 0:
        text = (
            f"Supply exhausted: {context.supply} units of {need.product} could reach this need and "
            f"were shared so that every need they could serve got at least {context.t:.0%}; "
            f"{allocated} of {need.quantity} allocated."
        )
    else:
        text = (
            f"Supply exhausted: {context.supply} units of {need.product} could reach this need; in whole "
            f"packs they went to the most heavily weighted needs first; {allocated} of {need.quantity} "
            "allocated."
        )
    return result(Reason.SUPPLY_EXHAUSTED, text)


def _merge(reports: list[SolverReport]) -> SolverReport | None:
    if not reports:
        return None
    return SolverReport(
        "optimal" if all(r.status == "optimal" for r in reports) else "time_limit",
        sum(r.seconds_build for r in reports),
        sum(r.seconds_solve for r in reports),
        sum(r.variables for r in reports),
        sum(r.constraints for r in reports),
        sum(r.objective for r in reports),
        sum(r.bound for r in reports),
        max(r.gap for r in reports),
    )
