"""The allocation engine on hand-checkable rounds, one rule at a time, and properties over
generated rounds. Pure: no database."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from healthmesh.allocation import baselines, fairness
from healthmesh.allocation.engine import allocate
from healthmesh.allocation.model import (
    Eligibility,
    MemberInfo,
    NeedLine,
    Policy,
    ProductInfo,
    Reason,
    Round,
    SupplyLot,
)

DAY = date(2026, 11, 30)
MEMBERS = {
    "IDN": MemberInfo("IDN", 90_000_000, "upper_middle"),
    "LAO": MemberInfo("LAO", 10_000_000, "lower_middle"),
    "SGP": MemberInfo("SGP", 6_000_000, "high"),
}
PRODUCTS = {
    "VENT": ProductInfo("VENT", "ambient", 1, discrete=True),
    "MASK": ProductInfo("MASK", "ambient", 50),
    "VAC": ProductInfo("VAC", "cold_2_8", 10),
}
ALLOWED = {(p, m): Eligibility.always() for p in PRODUCTS for m in MEMBERS}
# Kuala Lumpur depot; Jakarta, Vientiane and Singapore hospitals.
DEPOT = (3.14, 101.69)
PLACES = {"IDN": (-6.2, 106.8), "LAO": (17.97, 102.6), "SGP": (1.35, 103.82)}
EQUITY = Policy("equity")


def lot(
    lot_id: str, product: str, quantity: int, expiry: date | None = None, at: tuple[float, float] = DEPOT
) -> SupplyLot:
    return SupplyLot(lot_id, product, f"SRC-{at[0]}", "MYS", quantity, expiry, at[0], at[1])


def need(need_id: str, product: str, member: str, quantity: int, **extra: object) -> NeedLine:
    lat, lon = PLACES[member]
    storage = frozenset({"cold_chain_2_8"})
    return NeedLine(need_id, product, member, f"{member}-HO-1", lat, lon, quantity, storage=storage, **extra)  # type: ignore[arg-type]


def round_of(
    lots: list[SupplyLot],
    needs: list[NeedLine],
    eligibility: dict[tuple[str, str], tuple[bool, str]] | None = None,
) -> Round:
    return Round(DAY, tuple(lots), tuple(needs), PRODUCTS, MEMBERS, eligibility or ALLOWED)


def allocated(plan_needs: tuple[object, ...], need_id: str) -> int:
    return next(r.allocated for r in plan_needs if r.need_id == need_id)  # type: ignore[attr-defined]


def test_scarce_supply_is_shared_to_the_same_fill_rate() -> None:
    plan = allocate(
        round_of([lot("L1", "VENT", 10)], [need("A", "VENT", "IDN", 10), need("B", "VENT", "LAO", 10)]),
        EQUITY,
    )
    assert [r.allocated for r in plan.needs] == [5, 5]
    assert all(r.reason is Reason.SUPPLY_EXHAUSTED for r in plan.needs)
    assert "at least 50%" in plan.needs[0].explanation
    assert plan.solver is not None
    assert plan.solver.status == "optimal"


def test_an_unauthorised_destination_gets_nothing_and_is_told_why() -> None:
    eligibility = {**ALLOWED, ("VENT", "SGP"): Eligibility.never("refused by the national regulator")}
    plan = allocate(
        round_of(
            [lot("L1", "VENT", 10)], [need("A", "VENT", "IDN", 4), need("S", "VENT", "SGP", 4)], eligibility
        ),
        EQUITY,
    )
    sgp = plan.needs[1]
    assert (sgp.allocated, sgp.reason) == (0, Reason.NOT_AUTHORISED)
    assert "refused by the national regulator" in sgp.explanation
    assert allocated(plan.needs, "A") == 4
    waived = allocate(
        round_of([lot("L1", "VENT", 10)], [need("S", "VENT", "SGP", 4)], eligibility),
        Policy("emergency", emergency_waiver=True),
    )
    assert allocated(waived.needs, "S") == 4


def test_no_cold_chain_at_destination() -> None:
    cold = need("V", "VAC", "LAO", 100)
    warm = NeedLine("W", "VAC", "LAO", "LAO-HC-9", 17.9, 102.6, 100, storage=frozenset())
    plan = allocate(round_of([lot("L1", "VAC", 500, DAY + timedelta(days=300))], [cold, warm]), EQUITY)
    assert allocated(plan.needs, "V") == 100
    refused = plan.needs[1]
    assert (refused.allocated, refused.reason) == (0, Reason.NO_COLD_CHAIN)
    assert "cold 2 8 storage" in refused.explanation


def test_a_lot_that_would_expire_in_transit_is_never_used() -> None:
    # Kuala Lumpur to Vientiane is ~1,650 km: 2 handling days + 4 on the road = arrival on day 6.
    short = lot("SHORT", "VENT", 50, DAY + timedelta(days=20))
    good = lot("GOOD", "VENT", 3, DAY + timedelta(days=400))
    plan = allocate(
        round_of([short, good], [need("L", "VENT", "LAO", 10)]), Policy("p", min_shelf_life_days=30)
    )
    assert {line.lot_id for line in plan.lines} == {"GOOD"}
    only_short = allocate(
        round_of([short], [need("L", "VENT", "LAO", 10)]), Policy("p", min_shelf_life_days=30)
    )
    assert only_short.needs[0].reason is Reason.SHELF_LIFE


def test_earliest_expiry_first_among_equal_choices() -> None:
    early = lot("EARLY", "MASK", 500, DAY + timedelta(days=200))
    late = lot("LATE", "MASK", 500, DAY + timedelta(days=700))
    plan = allocate(round_of([late, early], [need("A", "MASK", "IDN", 300)]), EQUITY)
    assert [(line.lot_id, line.quantity) for line in plan.lines] == [("EARLY", 300)]


def test_whole_packs_only() -> None:
    plan = allocate(
        round_of([lot("L1", "MASK", 120)], [need("A", "MASK", "IDN", 100), need("B", "MASK", "LAO", 90)]),
        EQUITY,
    )
    assert all(line.quantity % 50 == 0 for line in plan.lines)
    assert sum(line.quantity for line in plan.lines) <= 120


def test_the_floor_binds_for_a_populous_member_when_supply_is_scarce() -> None:
    supply = [lot("L1", "VENT", 100)]
    needs = [need("I", "VENT", "IDN", 50), need("L", "VENT", "LAO", 200)]
    plain = allocate(round_of(supply, needs), EQUITY)
    assert allocated(plain.needs, "I") == 20  # max-min alone: both 40% filled
    floored = allocate(round_of(supply, needs), Policy("covax", floor_share=0.5))
    indonesia = floored.needs[0]
    assert indonesia.allocated == 45  # 0.5 x 100 x 90/100
    assert indonesia.reason is Reason.FLOOR_APPLIED
    assert "population floor of 45" in indonesia.explanation


def test_the_cap_binds_and_says_so() -> None:
    plan = allocate(
        round_of([lot("L1", "VENT", 100)], [need("I", "VENT", "IDN", 100), need("L", "VENT", "LAO", 10)]),
        Policy("capped", cap_share=0.4),
    )
    indonesia = plan.needs[0]
    assert (indonesia.allocated, indonesia.reason) == (40, Reason.MEMBER_CAP)
    assert "cap of 40%" in indonesia.explanation
    assert allocated(plan.needs, "L") == 10


def test_the_same_round_gives_the_same_plan() -> None:
    round_ = round_of(
        [lot("L1", "MASK", 1000), lot("L2", "MASK", 700, DAY + timedelta(days=300), (1.3, 103.8))],
        [need("A", "MASK", "IDN", 800), need("B", "MASK", "LAO", 600), need("C", "MASK", "SGP", 500)],
    )
    assert allocate(round_, EQUITY).lines == allocate(round_, EQUITY).lines


# --- properties ----------------------------------------------------------------------------------


@st.composite
def rounds(draw: st.DrawFn) -> Round:
    lots = [
        lot(
            f"L{i}",
            draw(st.sampled_from(["VENT", "MASK"])),
            draw(st.integers(0, 400)),
            DAY + timedelta(days=draw(st.integers(5, 900))),
            draw(st.sampled_from([DEPOT, (13.75, 100.5), (14.6, 121.0)])),
        )
        for i in range(draw(st.integers(1, 6)))
    ]
    needs = [
        need(
            f"N{i}",
            draw(st.sampled_from(["VENT", "MASK"])),
            draw(st.sampled_from(sorted(MEMBERS))),
            draw(st.integers(1, 300)),
            urgency=draw(st.sampled_from(["routine", "urgent", "emergency"])),
            order=i,
        )
        for i in range(draw(st.integers(1, 8)))
    ]
    refused = draw(st.sets(st.sampled_from(sorted(ALLOWED)), max_size=2))
    eligibility = {
        key: (Eligibility.never("not authorised") if key in refused else value)
        for key, value in ALLOWED.items()
    }
    return round_of(lots, needs, eligibility)


@settings(max_examples=60, deadline=None)
@given(round_=rounds())
def test_plans_respect_supply_demand_and_eligibility(round_: Round) -> None:
    lots = {item.id: item for item in round_.lots}
    needs = {item.id: item for item in round_.needs}
    for plan in (
        allocate(round_, EQUITY),
        baselines.pro_rata(round_, EQUITY),
        baselines.first_come_first_served(round_, EQUITY),
    ):
        shipped: dict[str, int] = {}
        received: dict[str, int] = {}
        for line in plan.lines:
            shipped[line.lot_id] = shipped.get(line.lot_id, 0) + line.quantity
            received[line.need_id] = received.get(line.need_id, 0) + line.quantity
            target = needs[line.need_id]
            assert round_.eligibility[(target.product, target.member)].on(line.arrival), (
                "sent where not allowed"
            )
            assert lots[line.lot_id].product == target.product
        assert all(shipped[key] <= lots[key].quantity for key in shipped)
        assert all(received[key] <= needs[key].quantity for key in received)


@settings(max_examples=60, deadline=None)
@given(round_=rounds())
def test_equity_minimum_fill_is_never_below_pro_rata(round_: Round) -> None:
    equity = fairness.report(round_, allocate(round_, EQUITY), EQUITY)
    pro_rata = fairness.report(round_, baselines.pro_rata(round_, EQUITY), EQUITY)
    assert equity.min_fill_rate >= pro_rata.min_fill_rate - 1e-6


def test_authorisation_must_hold_on_the_arrival_date() -> None:
    # An emergency use authorisation in Lao PDR lapses before a lot from Kuala Lumpur could arrive.
    lapsing = Eligibility(((date(2026, 1, 1), DAY + timedelta(days=3)),), "emergency use until 3 December")
    eligibility = {**ALLOWED, ("VENT", "LAO"): lapsing}
    plan = allocate(round_of([lot("L1", "VENT", 10)], [need("L", "VENT", "LAO", 5)], eligibility), EQUITY)
    assert (plan.needs[0].allocated, plan.needs[0].reason) == (0, Reason.NOT_AUTHORISED)
    assert "on arrival" in plan.needs[0].explanation
