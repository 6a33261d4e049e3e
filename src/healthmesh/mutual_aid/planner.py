"""Mutual aid over a horizon: who lends how many units to whom, period by period, as one linear
(or, for whole units and "no sending while short", mixed-integer) programme solved with HiGHS.

Columns (all >= 0):
  x[k]    units sent on arc k = (source, target, period sent); they arrive `delay` periods later
          (arcs arriving after the horizon are not built: they could not help);
  s[i,t]  units member i holds at the end of period t (after sending, arrivals included);
  u[i,t]  shortfall, in [0, demand];
  r[i,t]  reserve units released to i in period t, and p[t] what stays in the reserve;
  a[i,t]  cumulative arrivals at i (only with the no-resend rule);
  z[i,t]  1 if i may send in t (binary; only with "no sending while short");
  e       the largest member's unmet share of its demand (equity objective).
Rows:
  balance  s[i,t] - s[i,t-1] - r[i,t] - arrivals[i,t] + sent[i,t] = own stock in[i,t];
  unmet    u[i,t] + s[i,t] >= demand[i,t];
  floor    s[i,t] >= f * own stock so far (a bound) or, with no-resend N,
           s[i,t] - (a[i,t] - a[i,t-N]) >= the same (recent arrivals stay: fungible units);
  send cap sent[i,t] <= cap * z[i,t] (or <= cap); with z: u[i,t] <= demand[i,t] * (1 - z[i,t]);
  reserve  p[t] - p[t-1] + sum_i r[i,t] = reserve in[t], sum_i r[i,t] <= release limit;
  no worse sum_t u[i,t] <= member i's shortfall without sharing (own stock only);
  equity   sum_t u[i,t] <= e * sum_t demand[i,t].
Objective: shortfall (unit-periods) plus a tie-breaker of TIE x (1 + distance / longest) per unit
sent, so shorter and fewer moves win among plans of equal shortfall. The equity objective first
minimises e, then, with e held, the same objective.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix, csr_array

from healthmesh.mutual_aid.model import (
    MemberPeriod,
    Plan,
    Policy,
    Problem,
    SolverReport,
    Totals,
    Transfer,
)

TIE = 1e-5  # per unit sent (up to twice that for the longest link): far below one unit-period
RELEASE_TIE = 5e-6  # per unit released from the reserve: do not release what nobody needs
EPS = 1e-7  # values below this are zero in the reported plan
_STDOUT_LOCK = threading.Lock()


@contextmanager
def _native_stdout_to_stderr() -> Iterator[None]:
    """HiGHS (as bundled with SciPy) can print on C stdout even with output off; keep stdout clean."""
    with _STDOUT_LOCK:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def pair_delays(problem: Problem, policy: Policy) -> NDArray[np.int64]:
    """Delay in periods per (source, target); -1 where no transfer is possible."""
    n = len(problem.members)
    linked = np.isfinite(problem.distance) & ~np.eye(n, dtype=bool)
    delay = np.full((n, n), max(policy.delay_periods, 0), dtype=np.int64)
    if policy.distance_per_period:
        travel = np.where(linked, problem.distance, 0.0) / policy.distance_per_period
        delay += np.ceil(travel - 1e-9).astype(np.int64)
    if problem.delay is not None:
        delay = np.where(problem.delay >= 0, problem.delay, delay).astype(np.int64)
    delay[~linked] = -1
    return delay


def without_sharing(problem: Problem) -> NDArray[np.float64]:
    """Shortfall per member and period with own stock only (no transfers, no reserve)."""
    return np.maximum(problem.demand - np.cumsum(problem.stock, axis=1), 0.0)


@dataclass
class _Programme:
    """The matrix and bounds of one plan, with the column offsets needed to read a solution."""

    cost: NDArray[np.float64]
    matrix: csr_array
    row_lower: NDArray[np.float64]
    row_upper: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    integrality: NDArray[np.int8]
    arc_src: NDArray[np.int64]
    arc_dst: NDArray[np.int64]
    arc_t: NDArray[np.int64]
    arc_arrive: NDArray[np.int64]
    arc_km: NDArray[np.float64]
    s0: int
    u0: int
    r0: int | None
    e_col: int | None
    shortfall_cost: NDArray[np.float64]  # the objective without tie-breakers


class _Builder:
    """Collects COO blocks and row bounds."""

    def __init__(self) -> None:
        self.rows: list[NDArray[np.int64]] = []
        self.cols: list[NDArray[np.int64]] = []
        self.vals: list[NDArray[np.float64]] = []
        self.lower: list[NDArray[np.float64]] = []
        self.upper: list[NDArray[np.float64]] = []
        self.n_rows = 0

    def block(
        self, n_rows: int, lower: NDArray[np.float64] | float, upper: NDArray[np.float64] | float
    ) -> int:
        """Reserve `n_rows` rows with these bounds; returns the first row's index."""
        first = self.n_rows
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (n_rows,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (n_rows,)).copy())
        self.n_rows += n_rows
        return first

    def add(
        self, rows: NDArray[np.int64], cols: NDArray[np.int64], vals: NDArray[np.float64] | float
    ) -> None:
        self.rows.append(np.asarray(rows, dtype=np.int64))
        self.cols.append(np.asarray(cols, dtype=np.int64))
        self.vals.append(np.broadcast_to(np.asarray(vals, dtype=float), (len(self.rows[-1]),)).copy())

    def matrix(self, n_cols: int) -> csr_array:
        return csr_array(
            coo_matrix(
                (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
                shape=(self.n_rows, n_cols),
            )
        )


def build(problem: Problem, policy: Policy) -> _Programme:
    """The programme of `problem` under `policy`, as sparse matrices (no per-variable loops)."""
    n, n_t = problem.demand.shape
    demand = np.maximum(problem.demand, 0.0)
    own_cum = np.cumsum(problem.stock, axis=1)
    delay = pair_delays(problem, policy)
    src, dst = np.nonzero(delay >= 0)
    d = delay[src, dst]
    # Arcs: every linked pair in every period whose arrival falls inside the horizon.
    keep = np.arange(n_t)[None, :] + d[:, None] < n_t
    pair_of, arc_t = np.nonzero(keep)
    arc_src, arc_dst = src[pair_of], dst[pair_of]
    arc_arrive = arc_t + d[pair_of]
    arc_km = problem.distance[arc_src, arc_dst].astype(float)
    nx, n_cells = len(arc_t), n * n_t
    with_reserve = bool(problem.reserve.sum() > 0)
    s0, u0 = nx, nx + n_cells
    col = u0 + n_cells
    r0 = p0 = a0 = z0 = e_col = None
    if with_reserve:
        r0, p0 = col, col + n_cells
        col += n_cells + n_t
    resend = policy.no_resend_periods > 0
    if resend:
        a0 = col
        col += n_cells
    cell = np.arange(n_cells)  # i * n_t + t
    cell_i, cell_t = cell // n_t, cell % n_t
    sends_cell = arc_src * n_t + arc_t
    arrive_cell = arc_dst * n_t + arc_arrive
    can_send = np.bincount(sends_cell, minlength=n_cells) > 0
    z_cells = (
        np.nonzero(can_send & (demand.ravel() > 0))[0] if policy.no_send_while_short else np.array([], int)
    )
    if len(z_cells):
        z0 = col
        col += len(z_cells)
    if policy.objective == "equity":
        e_col = col
        col += 1
    n_cols = col

    lower = np.zeros(n_cols)
    upper = np.full(n_cols, np.inf)
    floor = policy.min_stock_fraction * own_cum.ravel()
    lower[s0 : s0 + n_cells] = floor
    upper[u0 : u0 + n_cells] = demand.ravel()
    if policy.max_send_per_period is not None:
        upper[:nx] = policy.max_send_per_period
    if r0 is not None and policy.reserve_release_limit is not None:
        upper[r0 : r0 + n_cells] = policy.reserve_release_limit
    integrality = np.zeros(n_cols, dtype=np.int8)
    if policy.whole_units:
        integrality[:nx] = 1
        if r0 is not None:
            integrality[r0 : r0 + n_cells] = 1
    if z0 is not None:
        integrality[z0 : z0 + len(z_cells)] = 1
        upper[z0 : z0 + len(z_cells)] = 1.0
    if e_col is not None:
        upper[e_col] = 1.0

    b = _Builder()
    arcs = np.arange(nx)
    has_prev = cell_t > 0
    # Balance per member and period.
    first = b.block(n_cells, problem.stock.ravel(), problem.stock.ravel())
    b.add(first + cell, s0 + cell, 1.0)
    b.add(first + cell[has_prev], s0 + cell[has_prev] - 1, -1.0)
    b.add(first + arrive_cell, arcs, -1.0)
    b.add(first + sends_cell, arcs, 1.0)
    if r0 is not None:
        b.add(first + cell, r0 + cell, -1.0)
    # Unmet demand.
    short = np.nonzero(demand.ravel() > 0)[0]
    first = b.block(len(short), demand.ravel()[short], np.inf)
    b.add(first + np.arange(len(short)), u0 + short, 1.0)
    b.add(first + np.arange(len(short)), s0 + short, 1.0)
    # Send cap, and the link to z (no sending while short).
    big = float(problem.stock.sum() + problem.reserve.sum())
    cap = policy.max_send_per_period
    if cap is not None or len(z_cells):
        cap_cells = np.nonzero(can_send)[0] if cap is not None else z_cells
        row_of = np.full(n_cells, -1)
        row_of[cap_cells] = np.arange(len(cap_cells))
        row_upper = np.full(len(cap_cells), np.inf if cap is None else float(cap))
        z_rows = row_of[z_cells]
        row_upper[z_rows] = 0.0
        first = b.block(len(cap_cells), -np.inf, row_upper)
        mask = row_of[sends_cell] >= 0
        b.add(first + row_of[sends_cell][mask], arcs[mask], 1.0)
        if z0 is not None:
            zs = np.arange(len(z_cells))
            b.add(first + z_rows, z0 + zs, -min(big, cap if cap is not None else big))
            dz = demand.ravel()[z_cells]
            first = b.block(len(z_cells), -np.inf, dz)
            b.add(first + zs, u0 + z_cells, 1.0)
            b.add(first + zs, z0 + zs, dz)
    # No resend within N periods: arrivals of the last N periods stay on top of the floor.
    if a0 is not None:
        first = b.block(n_cells, 0.0, 0.0)
        b.add(first + cell, a0 + cell, 1.0)
        b.add(first + cell[has_prev], a0 + cell[has_prev] - 1, -1.0)
        b.add(first + arrive_cell, arcs, -1.0)
        first = b.block(n_cells, floor, np.inf)
        back = cell_t >= policy.no_resend_periods
        b.add(first + cell, s0 + cell, 1.0)
        b.add(first + cell, a0 + cell, -1.0)
        b.add(first + cell[back], a0 + cell[back] - policy.no_resend_periods, 1.0)
    # The reserve: a pool that fills per period and releases at most the limit per period.
    if r0 is not None and p0 is not None:
        first = b.block(n_t, problem.reserve, problem.reserve)
        b.add(first + np.arange(n_t), p0 + np.arange(n_t), 1.0)
        b.add(first + np.arange(1, n_t), p0 + np.arange(n_t - 1), -1.0)
        b.add(first + cell_t, r0 + cell, 1.0)
        if policy.reserve_release_limit is not None:
            first = b.block(n_t, -np.inf, policy.reserve_release_limit)
            b.add(first + cell_t, r0 + cell, 1.0)
    # No member worse off than on its own stock.
    if policy.no_worse_off:
        first = b.block(n, -np.inf, without_sharing(problem).sum(axis=1) + 1e-6)
        b.add(first + cell_i, u0 + cell, 1.0)
    if e_col is not None:
        total = demand.sum(axis=1)
        served = np.nonzero(total > 0)[0]
        row_of_member = np.full(n, -1)
        row_of_member[served] = np.arange(len(served))
        first = b.block(len(served), -np.inf, 0.0)
        mask = row_of_member[cell_i] >= 0
        b.add(first + row_of_member[cell_i][mask], u0 + cell[mask], 1.0)
        b.add(first + np.arange(len(served)), np.full(len(served), e_col), -total[served])

    shortfall_cost = np.zeros(n_cols)
    shortfall_cost[u0 : u0 + n_cells] = 1.0
    cost = shortfall_cost.copy()
    longest = float(arc_km.max()) if nx else 1.0
    cost[:nx] = TIE * (1.0 + arc_km / max(longest, 1e-12))
    if r0 is not None:
        cost[r0 : r0 + n_cells] = RELEASE_TIE
    return _Programme(
        cost=cost,
        matrix=b.matrix(n_cols),
        row_lower=np.concatenate(b.lower),
        row_upper=np.concatenate(b.upper),
        lower=lower,
        upper=upper,
        integrality=integrality,
        arc_src=arc_src,
        arc_dst=arc_dst,
        arc_t=arc_t,
        arc_arrive=arc_arrive,
        arc_km=arc_km,
        s0=s0,
        u0=u0,
        r0=r0,
        e_col=e_col,
        shortfall_cost=shortfall_cost,
    )


_STATUS = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded", 4: "error"}


def _solve(
    prog: _Programme, cost: NDArray[np.float64], upper: NDArray[np.float64], integral: bool, policy: Policy
) -> tuple[NDArray[np.float64] | None, str, float, float | None, float | None, float]:
    """One HiGHS run: (x, status, objective, MIP dual bound, MIP gap, seconds)."""
    started = time.perf_counter()
    with _native_stdout_to_stderr():
        result = milp(
            cost,
            integrality=prog.integrality if integral else None,
            bounds=Bounds(prog.lower, upper),
            constraints=LinearConstraint(prog.matrix, prog.row_lower, prog.row_upper),
            options={
                "time_limit": policy.time_limit_seconds,
                "mip_rel_gap": policy.mip_rel_gap,
                "disp": False,
            },
        )
    seconds = time.perf_counter() - started
    fun = float(result.fun) if result.fun is not None else math.nan
    bound = getattr(result, "mip_dual_bound", None) if integral else None
    gap = getattr(result, "mip_gap", None) if integral else None
    x = np.asarray(result.x, dtype=float) if result.x is not None else None
    status = _STATUS.get(int(result.status), str(result.status))
    return (
        x,
        status,
        fun,
        (float(bound) if bound is not None else None),
        (float(gap) if gap is not None else None),
        seconds,
    )


def _stage(
    prog: _Programme,
    cost: NDArray[np.float64],
    upper: NDArray[np.float64],
    policy: Policy,
    build_seconds: float,
) -> tuple[NDArray[np.float64] | None, SolverReport]:
    """Solve the LP; for a MIP policy also the MIP, reporting the LP bound and the gap."""
    nnz = int(prog.matrix.nnz)
    shape = prog.matrix.shape
    x, status, fun, _, _, seconds = _solve(prog, cost, upper, False, policy)
    lp_bound = float(prog.shortfall_cost @ x) if x is not None else math.nan
    if not policy.needs_mip() or x is None:
        report = SolverReport("LP", status, build_seconds, seconds, shape[1], shape[0], nnz, fun, lp_bound)
        return x, report
    mx, mstatus, mfun, bound, gap, mseconds = _solve(prog, cost, upper, True, policy)
    report = SolverReport(
        "MIP", mstatus, build_seconds, seconds + mseconds, shape[1], shape[0], nnz, mfun, lp_bound, bound, gap
    )
    return mx, report


def plan(problem: Problem, policy: Policy | None = None) -> Plan:
    """The mutual-aid plan of `problem` under `policy` (default: `Policy()`)."""
    policy = policy or Policy()
    started = time.perf_counter()
    prog = build(problem, policy)
    build_seconds = time.perf_counter() - started
    stages: list[SolverReport] = []
    upper = prog.upper
    if prog.e_col is not None:
        equity_cost = np.zeros_like(prog.cost)
        equity_cost[prog.e_col] = 1.0
        x, report = _stage(prog, equity_cost, upper, policy, build_seconds)
        stages.append(report)
        if x is not None:
            upper = upper.copy()
            upper[prog.e_col] = min(1.0, float(x[prog.e_col]) + 1e-7)
    x, report = _stage(prog, prog.cost, upper, policy, build_seconds)
    stages.append(report)
    if x is None:
        raise RuntimeError(f"HiGHS found no plan ({report.status})")
    return _read(problem, policy, prog, x, report, stages)


def _read(
    problem: Problem,
    policy: Policy,
    prog: _Programme,
    x: NDArray[np.float64],
    report: SolverReport,
    stages: list[SolverReport],
) -> Plan:
    n, n_t = problem.demand.shape
    n_cells = n * n_t
    units = np.where(x[: len(prog.arc_t)] > EPS, x[: len(prog.arc_t)], 0.0)
    sent = np.bincount(prog.arc_src * n_t + prog.arc_t, weights=units, minlength=n_cells)
    received = np.bincount(prog.arc_dst * n_t + prog.arc_arrive, weights=units, minlength=n_cells)
    released = x[prog.r0 : prog.r0 + n_cells] if prog.r0 is not None else np.zeros(n_cells)
    released = np.where(released > EPS, released, 0.0)
    held = np.cumsum((problem.stock.ravel() + released + received - sent).reshape(n, n_t), axis=1).ravel()
    demand = np.maximum(problem.demand, 0.0).ravel()
    shortfall = np.maximum(demand - held, 0.0)
    base = without_sharing(problem).ravel()
    rows = [
        MemberPeriod(
            problem.members[c // n_t],
            problem.periods[c % n_t],
            float(held[c]),
            float(demand[c]),
            float(shortfall[c]),
            float(base[c]),
            float(received[c]),
            float(sent[c]),
            float(released[c]),
        )
        for c in range(n_cells)
    ]
    moved = np.nonzero(units)[0]
    transfers = [
        Transfer(
            problem.members[prog.arc_src[k]],
            problem.members[prog.arc_dst[k]],
            problem.periods[prog.arc_t[k]],
            problem.periods[prog.arc_arrive[k]],
            float(units[k]),
            float(prog.arc_km[k]),
        )
        for k in moved
    ]
    member_demand = demand.reshape(n, n_t).sum(axis=1)
    positive = member_demand > 0
    share = shortfall.reshape(n, n_t).sum(axis=1)[positive] / member_demand[positive]
    share_base = base.reshape(n, n_t).sum(axis=1)[positive] / member_demand[positive]
    totals = Totals(
        demand=float(demand.sum()),
        shortfall=float(shortfall.sum()),
        shortfall_without_sharing=float(base.sum()),
        transfers=len(moved),
        units_moved=float(units.sum()),
        unit_distance=float(units @ prog.arc_km),
        reserve_released=float(released.sum()),
        largest_unmet_share=float(share.max()) if share.size else 0.0,
        largest_unmet_share_without_sharing=float(share_base.max()) if share_base.size else 0.0,
    )
    return Plan(problem.members, problem.periods, policy, rows, transfers, totals, report, stages)
