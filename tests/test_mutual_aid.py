"""Mutual aid over a horizon: hand-checkable cases, property tests, CSV, command and API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from healthmesh.cli import app
from healthmesh.errors import InvalidInput
from healthmesh.mutual_aid import planner, service, transfer
from healthmesh.mutual_aid.model import Plan, Policy, Problem
from tests.conftest import Actor

PERIODS = tuple(f"2020-04-0{d}" for d in range(1, 7))


def two_members(demand_a: list[float], demand_b: list[float], stock: float = 5.0) -> Problem:
    """A and B, `stock` each at the start, 10 apart."""
    stock_in = np.zeros((2, len(demand_a)))
    stock_in[:, 0] = stock
    return Problem(
        ("A", "B"),
        PERIODS[: len(demand_a)],
        np.array([demand_a, demand_b], dtype=float),
        stock_in,
        np.zeros(len(demand_a)),
        np.array([[np.inf, 10.0], [10.0, np.inf]]),
    )


# A peaks in period 1, B in period 4: 8 needed each, 5 held each; 3 + 3 short alone.
STAGGERED = two_members([0, 8, 0, 0, 0, 0], [0, 0, 0, 0, 8, 0])


def test_staggered_peaks_sharing_removes_the_shortfall() -> None:
    plan = planner.plan(STAGGERED, Policy(delay_periods=1))
    assert plan.totals.shortfall_without_sharing == pytest.approx(6.0)
    assert plan.totals.shortfall == pytest.approx(0.0, abs=1e-6)
    assert plan.totals.units_moved == pytest.approx(9.0)  # 3 to A before its peak, 6 back to B
    first, back = sorted(plan.transfers, key=lambda t: t.period)
    assert (first.source, first.target, first.period, first.arrives) == ("B", "A", PERIODS[0], PERIODS[1])
    assert (back.source, back.target) == ("A", "B")
    assert back.arrives <= PERIODS[4]
    assert plan.solver.kind == "LP"
    assert plan.solver.status == "optimal"
    assert plan.totals.unit_distance == pytest.approx(90.0)


def test_a_delay_longer_than_the_gap_between_peaks_cannot_help() -> None:
    plan = planner.plan(STAGGERED, Policy(delay_periods=4))
    assert plan.totals.shortfall == pytest.approx(6.0)
    assert plan.transfers == []


def test_a_binding_minimum_stock_fraction() -> None:
    # Each keeps 4 of its 5: B lends only 1 (A short 2), A returns 2 (B short 2).
    plan = planner.plan(STAGGERED, Policy(delay_periods=1, min_stock_fraction=0.8))
    assert plan.totals.shortfall == pytest.approx(4.0)
    assert all(row.supply >= 4.0 - 1e-6 for row in plan.rows)


def test_delay_from_distance() -> None:
    # 10 apart at 10 per period: 1 + 1 = 2 periods, more than B's lead of 1 before A's peak.
    plan = planner.plan(STAGGERED, Policy(delay_periods=1, distance_per_period=10.0))
    assert plan.transfers
    assert all(PERIODS.index(t.arrives) - PERIODS.index(t.period) == 2 for t in plan.transfers)
    assert plan.totals.shortfall == pytest.approx(3.0)  # A's peak cannot be served; B's can


def test_max_send_per_period_spreads_the_loan() -> None:
    plan = planner.plan(STAGGERED, Policy(delay_periods=1, max_send_per_period=1.0))
    assert max(row.sent for row in plan.rows) <= 1.0 + 1e-9
    # B lends 1 before A's peak (A short 2); A returns 1 a period in periods 2-3 (B short 2).
    assert plan.totals.shortfall == pytest.approx(4.0)


def test_no_sending_while_short_needs_the_mip() -> None:
    # A holds 10 and needs 11 in period 0; C needs 10 from period 1; at most 5 a period, delay 1.
    # Without the rule A sends 5 while short (5 more short for A, 10 less for C): 11 in all.
    demand = np.array([[11, 0, 0, 0, 0, 0], [0, 10, 10, 10, 10, 10]], dtype=float)
    stock = np.zeros((2, 6))
    stock[0, 0] = 10
    problem = Problem(
        ("A", "C"), PERIODS, demand, stock, np.zeros(6), np.array([[np.inf, 1.0], [1.0, np.inf]])
    )
    lp = planner.plan(problem, Policy(max_send_per_period=5))
    assert lp.totals.shortfall == pytest.approx(11.0)
    mip = planner.plan(problem, Policy(max_send_per_period=5, no_send_while_short=True))
    assert mip.solver.kind == "MIP"
    assert mip.solver.status == "optimal"
    assert mip.totals.shortfall == pytest.approx(16.0)
    assert mip.solver.lp_bound <= mip.totals.shortfall + 1e-6
    assert mip.solver.mip_gap is not None
    assert mip.solver.mip_gap <= 1e-4
    assert all(row.sent == 0 or row.shortfall <= 1e-6 for row in mip.rows)


def test_no_resend_keeps_received_units() -> None:
    # A may not send on what B lent within 5 periods, only its own 5: B lends 2 (A short 1) and
    # gets A's 5 back for its peak (3 + 5 = 8), or lends 3 and gets 5 (2 + 5, short 1): 1 either way.
    plan = planner.plan(STAGGERED, Policy(delay_periods=1, no_resend_periods=5))
    assert plan.totals.shortfall == pytest.approx(1.0)
    for member in ("A", "B"):
        rows = [row for row in plan.rows if row.member == member]
        for t, row in enumerate(rows):
            assert row.supply >= sum(r.received for r in rows[max(0, t - 4) : t + 1]) - 1e-6
    loose = planner.plan(STAGGERED, Policy(delay_periods=1, no_resend_periods=1))
    assert loose.totals.shortfall == pytest.approx(0.0, abs=1e-6)


def test_whole_units_and_the_reserve() -> None:
    reserve = np.zeros(6)
    reserve[0] = 10
    problem = Problem(
        STAGGERED.members, PERIODS, STAGGERED.demand + 0.5, STAGGERED.stock, reserve, STAGGERED.distance
    )
    plan = planner.plan(problem, Policy(delay_periods=1, whole_units=True, reserve_release_limit=2))
    assert all(float(t.units).is_integer() for t in plan.transfers)
    assert all(row.released <= 2 + 1e-9 and float(row.released).is_integer() for row in plan.rows)
    assert plan.totals.reserve_released <= 10
    assert plan.solver.kind == "MIP"


def test_no_worse_off_and_equity() -> None:
    # A is short either way; B could lend everything. Equity evens out the unmet shares.
    problem = two_members([10, 10, 10, 10, 10, 10], [2, 2, 2, 2, 2, 2])
    plain = planner.plan(problem, Policy(delay_periods=1))
    fair = planner.plan(problem, Policy(delay_periods=1, objective="equity"))
    assert fair.totals.largest_unmet_share <= plain.totals.largest_unmet_share + 1e-9
    assert len(fair.stages) == 2
    guarded = planner.plan(problem, Policy(delay_periods=1, no_worse_off=True))
    for member in ("A", "B"):
        rows = [r for r in guarded.rows if r.member == member]
        assert sum(r.shortfall for r in rows) <= sum(r.shortfall_without_sharing for r in rows) + 1e-6


# --- properties ----------------------------------------------------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> tuple[Problem, Policy]:
    n = draw(st.integers(2, 4))
    t = draw(st.integers(2, 6))
    ints = st.integers(0, 12)
    demand = np.array(draw(st.lists(ints, min_size=n * t, max_size=n * t)), dtype=float).reshape(n, t)
    stock = np.zeros((n, t))
    stock[:, 0] = draw(st.lists(ints, min_size=n, max_size=n))
    stock[:, -1] += draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    distance = np.array(draw(st.lists(st.floats(1, 100), min_size=n * n, max_size=n * n))).reshape(n, n)
    distance[
        draw(
            st.lists(st.booleans(), min_size=n * n, max_size=n * n)
            .map(np.array)
            .map(lambda a: a.reshape(n, n))
        )
    ] = np.inf
    reserve = np.zeros(t)
    reserve[0] = draw(st.integers(0, 5))
    policy = Policy(
        delay_periods=draw(st.integers(0, 2)),
        min_stock_fraction=draw(st.sampled_from([0.0, 0.3, 1.0])),
        max_send_per_period=draw(st.sampled_from([None, 2.0, 5.0])),
        no_resend_periods=draw(st.integers(0, 2)),
        reserve_release_limit=draw(st.sampled_from([None, 1.0])),
    )
    members = tuple(f"M{i}" for i in range(n))
    return Problem(members, PERIODS[:t], demand, stock, reserve, distance), policy


def _flows(problem: Problem, plan: Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sent and received per member and period, recomputed from the transfer list."""
    index = {m: i for i, m in enumerate(problem.members)}
    n, t = problem.demand.shape
    sent, received = np.zeros((n, t)), np.zeros((n, t))
    for move in plan.transfers:
        sent[index[move.source], plan.periods.index(move.period)] += move.units
        received[index[move.target], plan.periods.index(move.arrives)] += move.units
    released = np.array([r.released for r in plan.rows]).reshape(n, t)
    return sent, received, released


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_a_member_never_sends_what_it_does_not_hold(case: tuple[Problem, Policy]) -> None:
    problem, policy = case
    plan = planner.plan(problem, policy)
    sent, received, released = _flows(problem, plan)
    before_sending = np.cumsum(problem.stock + received + released - sent, axis=1) + sent
    assert (sent <= before_sending + 1e-6).all()
    held = np.array([r.supply for r in plan.rows]).reshape(sent.shape)
    floor = policy.min_stock_fraction * np.cumsum(problem.stock, axis=1)
    assert (held >= floor - 1e-6).all()
    assert plan.totals.shortfall <= plan.totals.shortfall_without_sharing + 1e-6


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_units_are_conserved_across_transfers_in_transit(case: tuple[Problem, Policy]) -> None:
    problem, policy = case
    plan = planner.plan(problem, policy)
    n, t = problem.demand.shape
    held = np.array([r.supply for r in plan.rows]).reshape(n, t)
    in_transit = np.zeros(t)
    for move in plan.transfers:
        sent_at, arrives_at = plan.periods.index(move.period), plan.periods.index(move.arrives)
        assert arrives_at - sent_at >= policy.delay_periods
        in_transit[sent_at:arrives_at] += move.units
    _, _, released = _flows(problem, plan)
    owned = np.cumsum(problem.stock.sum(axis=0) + released.sum(axis=0))
    assert np.allclose(held.sum(axis=0) + in_transit, owned, atol=1e-6)
    assert released.sum() <= problem.reserve.sum() + 1e-6


# --- CSV, command line, API ----------------------------------------------------------------------

DEMAND_CSV = "member,date,units\n" + "".join(
    f"{m},{p},{v}\n"
    for m, row in zip("AB", STAGGERED.demand, strict=True)
    for p, v in zip(PERIODS, row, strict=True)
)
SUPPLY_CSV = "member,units,date\nA,5,\nB,5,\nreserve,2,2020-04-03\n"
DISTANCES_CSV = "from,to,distance\nA,B,10\n"
MATRIX_CSV = '"","A","B","Z"\n"A",0,10,3\n"B",10,0,4\n"Z",3,4,0\n'


def test_csv_to_problem() -> None:
    problem = transfer.to_problem(transfer.from_csv(DEMAND_CSV, SUPPLY_CSV, DISTANCES_CSV))
    assert problem.members == ("A", "B")
    assert problem.periods == PERIODS
    assert problem.reserve[2] == 2
    assert problem.stock[:, 0].tolist() == [5, 5]
    assert problem.distance[1, 0] == 10  # one row serves both directions
    matrix = transfer.to_problem(transfer.from_csv(DEMAND_CSV, SUPPLY_CSV, MATRIX_CSV))
    assert matrix.distance.tolist() == problem.distance.tolist()  # Z is no member: ignored


def test_csv_errors_name_the_line() -> None:
    with pytest.raises(InvalidInput) as caught:
        transfer.from_csv("member,date,units\nA,2020-13-01,x\n", "member\nA\n", DISTANCES_CSV)
    found = {(e.field, e.line) for e in caught.value.errors}
    assert {("demand.date", 2), ("demand.units", 2), ("supply.units", 1)} <= found


def test_plan_from_csv_and_json() -> None:
    plan = service.plan_from_csv(DEMAND_CSV, SUPPLY_CSV, DISTANCES_CSV, Policy(delay_periods=1))
    out = service.plan_to_json(plan)
    assert out["totals"]["shortfall"] == pytest.approx(0.0, abs=1e-6)
    assert len(out["rows"]) == 12
    assert out["solver"]["kind"] == "LP"
    json.dumps(out)


def test_cli_plan_json(tmp_path: Path) -> None:
    for name, text in (("d.csv", DEMAND_CSV), ("s.csv", SUPPLY_CSV), ("x.csv", DISTANCES_CSV)):
        (tmp_path / name).write_text(text)
    args = ["mutual-aid", "plan", "--demand", str(tmp_path / "d.csv"), "--supply", str(tmp_path / "s.csv")]
    args += ["--distances", str(tmp_path / "x.csv"), "--delay", "4", "--format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["shortfall_without_sharing"] == pytest.approx(6.0)


def test_api_plans_from_json_and_files(client: TestClient, actors: dict[str, Actor]) -> None:
    body = {
        "demand": [
            {"member": m, "date": p, "units": v}
            for m, row in zip("AB", STAGGERED.demand, strict=True)
            for p, v in zip(PERIODS, row, strict=True)
        ],
        "supply": [{"member": "A", "units": 5}, {"member": "B", "units": 5}],
        "distances": [{"from": "A", "to": "B", "distance": 10}],
        "policy": {"delay_periods": 1, "min_stock_fraction": 0.8},
    }
    headers = actors["coordinator"].headers
    response = client.post("/api/v1/mutual-aid/plans", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["shortfall"] == pytest.approx(4.0)
    files = {
        "demand": ("d.csv", DEMAND_CSV, "text/csv"),
        "supply": ("s.csv", SUPPLY_CSV, "text/csv"),
        "distances": ("x.csv", DISTANCES_CSV, "text/csv"),
    }
    response = client.post(
        "/api/v1/mutual-aid/plans?rows=false",
        files=files,
        data={"policy": '{"delay_periods": 4}'},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["shortfall"] == pytest.approx(4.0)  # no lending; the reserve gives 2
    assert "rows" not in response.json()
    bad = client.post(
        "/api/v1/mutual-aid/plans", json={**body, "policy": {"min_stock_fraction": 2}}, headers=headers
    )
    assert bad.status_code == 422
    denied = client.post("/api/v1/mutual-aid/plans", json=body, headers=actors["clinician_tha"].headers)
    assert denied.status_code == 403
