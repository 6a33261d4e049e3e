"""Mutual-aid benchmark on real data: US ventilators, IHME projection of 2020-04-01 (126 days).

50 states, base supply VentCalc_2019 x (1 - u), u in {0.1, 0.3, 0.5}; minimum stock fraction in
{0.1, 0.8}; a 3-day delay; at most 3,000 sent per state per day. Per scenario: shortfall without
sharing, with sharing (LP; MIP with "no sending while short"), transfers, units moved, solve time.

    .venv/bin/python -m bench.mutual_aid [--data DIR] [--no-mip] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from bench.common import machine
from healthmesh.mutual_aid import planner
from healthmesh.mutual_aid.model import Plan, Policy, Problem

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "us-ventilators-2020"
CHECK_U01 = 118_403.6  # no-sharing shortfall for u = 0.1 (ventilator-days), from the issue
LP_TARGET_SECONDS = 10.0


def load(data: Path, u: float) -> Problem:
    """The 50 states, 126 days of IHME 2020-04-01 demand, VentCalc_2019 x (1 - u) on hand at the start."""
    states = [row["State"] for row in csv.DictReader((data / "states.csv").open())]
    index = {s: i for i, s in enumerate(states)}
    rows = [r for r in csv.DictReader((data / "demand_ihme_2020-04-01.csv").open()) if r["State"] in index]
    days = sorted({r["Day"] for r in rows})
    day = {d: t for t, d in enumerate(days)}
    demand = np.zeros((len(states), len(days)))
    for r in rows:
        demand[index[r["State"]], day[r["Day"]]] = float(r["Ventilators"])
    base = {r["STNAME"]: float(r["VentCalc_2019"]) for r in csv.DictReader((data / "supply.csv").open())}
    stock = np.zeros_like(demand)
    stock[:, 0] = [base[s] * (1 - u) for s in states]
    reader = csv.reader((data / "distances.csv").open())
    header = next(reader)[1:]
    matrix = {row[0]: dict(zip(header, map(float, row[1:]), strict=True)) for row in reader}
    distance = np.array([[matrix[a][b] if a != b else np.inf for b in states] for a in states])
    return Problem(tuple(states), tuple(days), demand, stock, np.zeros(len(days)), distance)


def summary(plan: Plan) -> dict[str, object]:
    s = plan.solver
    return {
        "shortfall": round(plan.totals.shortfall, 1),
        "transfers": plan.totals.transfers,
        "units_moved": round(plan.totals.units_moved, 1),
        "unit_distance": round(plan.totals.unit_distance, 1),
        "status": s.status,
        "solve_s": round(s.solve_seconds, 2),
        "build_s": round(s.build_seconds, 2),
        "lp_bound": round(s.lp_bound, 1),
        "mip_gap": s.mip_gap,
        "columns": s.columns,
        "rows": s.rows,
        "nonzeros": s.nonzeros,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--no-mip", action="store_true", help="LP scenarios only")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per HiGHS run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results = []
    for u in (0.1, 0.3, 0.5):
        problem = load(args.data, u)
        alone = float(planner.without_sharing(problem).sum())
        if u == 0.1:
            assert abs(alone - CHECK_U01) < 0.05, f"data misread: {alone} != {CHECK_U01}"
        for fraction in (0.1, 0.8):
            base = Policy(
                delay_periods=3,
                min_stock_fraction=fraction,
                max_send_per_period=3000,
                time_limit_seconds=args.time_limit,
            )
            started = time.perf_counter()
            lp = planner.plan(problem, base)
            row: dict[str, object] = {
                "u": u,
                "min_stock_fraction": fraction,
                "without_sharing": round(alone, 1),
                "lp": {**summary(lp), "wall_s": round(time.perf_counter() - started, 2)},
            }
            if not args.no_mip:
                started = time.perf_counter()
                mip = planner.plan(problem, Policy(**{**base.__dict__, "no_send_while_short": True}))
                row["mip_no_send_while_short"] = {
                    **summary(mip),
                    "wall_s": round(time.perf_counter() - started, 2),
                }
            results.append(row)
            if not args.json:
                _print(row)
    if args.json:
        print(json.dumps({"machine": machine(), "scenarios": results}, indent=1))
        return
    slow = [r for r in results if r["lp"]["solve_s"] >= LP_TARGET_SECONDS]  # type: ignore[index]
    print(f"machine: {machine()}; LP target < {LP_TARGET_SECONDS:.0f} s: {'met' if not slow else 'MISSED'}")


def _print(row: dict[str, object]) -> None:
    lp = row["lp"]
    assert isinstance(lp, dict)
    line = (
        f"u={row['u']:.1f} f={row['min_stock_fraction']:.1f}  alone {row['without_sharing']:>11,.1f}  "
        f"LP {lp['shortfall']:>11,.1f} ({lp['status']}, {lp['solve_s']:.2f} s, {lp['transfers']} transfers, "
        f"{lp['units_moved']:,.1f} units)"
    )
    mip = row.get("mip_no_send_while_short")
    if isinstance(mip, dict):
        line += (
            f"  MIP {mip['shortfall']:>11,.1f} ({mip['status']}, {mip['solve_s']:.2f} s, "
            f"gap {mip['mip_gap']:.1e}, LP bound {mip['lp_bound']:,.1f}, {mip['transfers']} transfers, "
            f"{mip['units_moved']:,.1f} units)"
        )
    print(line, flush=True)


if __name__ == "__main__":
    main()
