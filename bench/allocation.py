"""Benchmark: the allocation engine on generated rounds of growing size, up to 50 members,
5,000 facilities, 200 products, 20,000 open needs and 50,000 lots, against the pro-rata baseline.

    .venv/bin/python -m bench.allocation [--sizes small|all] [--policy equity] [--seed 2026]
    .venv/bin/python -m bench.allocation --sizes small --profile 25   # where the time goes

Each size runs in a fresh (forked) process, so its peak memory is its own. For each size: the
time to build (candidate pairs, then the per-product sparse matrices) and to solve (HiGHS, every
stage), the peak resident memory, HiGHS's status with the stage-2 objective against its proven
dual bound, and the plan's quality (minimum fill rate among servable needs, weighted unmet need,
from `healthmesh.allocation.fairness.report`) next to the pro-rata baseline's on the same round.

The rounds are synthetic but shaped like a real one: 50 African Union members with their World
Bank 2023 populations and income groups (approximate), facilities placed around each member's
population centre, regional reserve depots holding most lots, pledging hospitals holding the
rest, products across the four storage conditions and pack sizes, needs with urgencies, coverage
and destination cold chain, eligibility that is mostly open, sometimes refused and sometimes
lapsing within the horizon, and lots whose expiry is sometimes too close to survive transit.
Supply is 40-70% of demand per product, so fairness matters.

Target (issue): the largest round solves to optimality in under 10 s on the 2-core machine, with
time growing near-linearly in the number of needs.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import math
import multiprocessing
import pstats
import random
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import machine
from healthmesh.allocation import baselines, fairness
from healthmesh.allocation import candidates as cand
from healthmesh.allocation.engine import allocate, solver_threads
from healthmesh.allocation.model import (
    Eligibility,
    MemberInfo,
    NeedLine,
    Plan,
    Policy,
    ProductInfo,
    Round,
    SupplyLot,
)
from healthmesh.allocation.policies import POLICIES

DAY = date(2026, 11, 30)
TARGET_SECONDS = 10.0
NEAR_LINEAR_RATIO = 1.5  # per-need time at the largest size / at the smallest


@dataclass(frozen=True)
class Size:
    members: int
    facilities: int
    products: int
    needs: int
    lots: int


SIZES: tuple[Size, ...] = (
    Size(10, 500, 20, 1_000, 2_500),
    Size(20, 1_000, 50, 2_500, 6_250),
    Size(30, 2_000, 100, 5_000, 12_500),
    Size(40, 3_500, 150, 10_000, 25_000),
    Size(50, 5_000, 200, 20_000, 50_000),
)
SMALL = 3  # --sizes small: the first three rungs (up to 5,000 needs)


@dataclass(frozen=True)
class Country:
    iso3: str
    population: int  # World Bank SP.POP.TOTL 2023, rounded
    income_group: str  # World Bank FY2025 classification, approximately
    lat: float  # population centre
    lon: float
    spread: float  # degrees: how far facilities scatter around it


# African Union members, most populous first: the first n of them make a round of n members.
COUNTRIES: tuple[Country, ...] = (
    Country("NGA", 223_800_000, "lower_middle", 8.5, 7.5, 3.0),
    Country("ETH", 126_500_000, "low", 9.0, 38.7, 3.0),
    Country("EGY", 112_700_000, "lower_middle", 30.0, 31.2, 1.5),
    Country("COD", 102_300_000, "low", -3.5, 22.0, 5.0),
    Country("TZA", 67_400_000, "lower_middle", -6.4, 35.0, 3.0),
    Country("ZAF", 60_400_000, "upper_middle", -27.5, 27.0, 3.0),
    Country("KEN", 55_100_000, "lower_middle", -0.5, 37.0, 2.0),
    Country("UGA", 48_600_000, "low", 1.0, 32.5, 1.5),
    Country("SDN", 48_100_000, "low", 14.5, 31.0, 3.0),
    Country("DZA", 45_600_000, "upper_middle", 35.5, 3.5, 2.0),
    Country("MAR", 37_800_000, "lower_middle", 33.0, -7.0, 1.5),
    Country("AGO", 36_700_000, "lower_middle", -10.5, 15.5, 3.0),
    Country("GHA", 34_100_000, "lower_middle", 6.5, -1.3, 1.5),
    Country("MOZ", 33_900_000, "low", -17.0, 36.0, 3.0),
    Country("MDG", 30_300_000, "low", -19.0, 47.0, 2.0),
    Country("CIV", 28_900_000, "lower_middle", 6.5, -5.0, 1.5),
    Country("CMR", 28_600_000, "lower_middle", 5.0, 11.5, 2.0),
    Country("NER", 27_200_000, "low", 13.5, 6.0, 2.5),
    Country("MLI", 23_300_000, "low", 13.0, -7.0, 2.5),
    Country("BFA", 23_300_000, "low", 12.3, -1.5, 1.5),
    Country("MWI", 20_900_000, "low", -14.0, 34.0, 1.2),
    Country("ZMB", 20_600_000, "low", -14.0, 28.0, 2.5),
    Country("TCD", 18_300_000, "low", 11.0, 17.0, 3.0),
    Country("SOM", 18_100_000, "low", 3.0, 45.0, 3.0),
    Country("SEN", 18_000_000, "lower_middle", 14.5, -15.5, 1.2),
    Country("ZWE", 16_700_000, "lower_middle", -18.5, 30.5, 1.5),
    Country("GIN", 14_200_000, "low", 10.0, -11.5, 1.2),
    Country("RWA", 14_100_000, "low", -2.0, 30.0, 0.5),
    Country("BEN", 13_700_000, "lower_middle", 7.5, 2.3, 1.0),
    Country("BDI", 13_200_000, "low", -3.4, 29.9, 0.5),
    Country("TUN", 12_500_000, "lower_middle", 35.5, 10.0, 1.0),
    Country("SSD", 11_100_000, "low", 6.5, 31.0, 2.5),
    Country("TGO", 9_100_000, "low", 7.5, 1.1, 0.8),
    Country("SLE", 8_800_000, "low", 8.5, -12.0, 0.8),
    Country("LBY", 6_900_000, "upper_middle", 31.5, 15.0, 2.5),
    Country("COG", 6_100_000, "lower_middle", -3.0, 15.0, 1.5),
    Country("CAF", 5_700_000, "low", 5.5, 20.0, 2.0),
    Country("LBR", 5_400_000, "low", 6.5, -9.5, 0.8),
    Country("MRT", 4_900_000, "lower_middle", 18.5, -15.0, 2.0),
    Country("ERI", 3_700_000, "low", 15.3, 38.9, 1.0),
    Country("GMB", 2_800_000, "low", 13.4, -16.0, 0.3),
    Country("BWA", 2_700_000, "upper_middle", -23.0, 25.5, 1.5),
    Country("NAM", 2_600_000, "upper_middle", -21.0, 17.0, 2.0),
    Country("GAB", 2_400_000, "upper_middle", -0.5, 10.5, 1.2),
    Country("LSO", 2_300_000, "lower_middle", -29.5, 28.0, 0.5),
    Country("GNB", 2_200_000, "low", 12.0, -15.3, 0.5),
    Country("GNQ", 1_700_000, "upper_middle", 2.0, 10.0, 0.6),
    Country("MUS", 1_300_000, "upper_middle", -20.2, 57.5, 0.2),
    Country("SWZ", 1_200_000, "lower_middle", -26.5, 31.4, 0.3),
    Country("SYC", 120_000, "high", -4.6, 55.5, 0.1),
)
# Hosts of regional reserve depots, in the order depots are added as rounds grow.
DEPOT_HOSTS = ("KEN", "NGA", "ZAF", "EGY", "SEN", "ETH", "GHA", "RWA", "CMR", "MAR", "ZMB", "CIV")

STORAGE_MIX = (("ambient", 0.55), ("cold_2_8", 0.30), ("frozen_minus20", 0.10), ("ultra_cold_minus70", 0.05))
CONSUMABLE_PACKS = (10, 20, 25, 50, 100)
URGENCY_MIX = (("routine", 0.70), ("urgent", 0.22), ("emergency", 0.08))
# Share of facilities with each capability: (hospital, health centre).
COLD_CHAIN = {
    "cold_chain_2_8": (0.92, 0.55),
    "cold_chain_minus20": (0.35, 0.05),
    "cold_chain_minus70": (0.10, 0.01),
}


@dataclass(frozen=True)
class _Facility:
    code: str
    member: str
    lat: float
    lon: float
    hospital: bool
    storage: frozenset[str]


def _pick(rng: random.Random, mix: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in mix], [weight for _, weight in mix])[0]


def _spread_counts(total: int, weights: list[float], minimum: int) -> list[int]:
    """`total` split by `weights` (largest remainder), each at least `minimum`."""
    budget = total - minimum * len(weights)
    shares = [budget * w / sum(weights) for w in weights]
    counts = [minimum + math.floor(s) for s in shares]
    by_remainder = sorted(range(len(weights)), key=lambda i: -(shares[i] - math.floor(shares[i])))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _place(rng: random.Random, country: Country) -> tuple[float, float]:
    lat = max(-35.0, min(37.5, rng.gauss(country.lat, country.spread / 2)))
    return round(lat, 4), round(rng.gauss(country.lon, country.spread / 2), 4)


def _facilities(rng: random.Random, size: Size, countries: tuple[Country, ...]) -> list[_Facility]:
    """Regional depots first, then hospitals and health centres by the square root of population."""
    hosts = [iso3 for iso3 in DEPOT_HOSTS if iso3 in {c.iso3 for c in countries}]
    depots = hosts[: max(2, size.members // 5)]
    by_iso3 = {c.iso3: c for c in countries}
    out = [
        _Facility(
            f"{iso3}-DEPOT",
            iso3,
            by_iso3[iso3].lat,
            by_iso3[iso3].lon,
            False,
            frozenset(COLD_CHAIN),
        )
        for iso3 in depots
    ]
    counts = _spread_counts(
        size.facilities - len(depots), [math.sqrt(c.population) for c in countries], minimum=3
    )
    for country, count in zip(countries, counts, strict=True):
        for n in range(count):
            hospital = rng.random() < 0.4
            storage = frozenset(
                capability
                for capability, (at_hospital, at_centre) in COLD_CHAIN.items()
                if rng.random() < (at_hospital if hospital else at_centre)
            )
            lat, lon = _place(rng, country)
            kind = "HO" if hospital else "HC"
            out.append(_Facility(f"{country.iso3}-{kind}-{n:04d}", country.iso3, lat, lon, hospital, storage))
    return out


def _products(rng: random.Random, count: int) -> tuple[dict[str, ProductInfo], list[float]]:
    """Products with a storage condition, a pack size, and a popularity (needs and lots follow it)."""
    products: dict[str, ProductInfo] = {}
    popularity = []
    for n in range(count):
        condition = _pick(rng, STORAGE_MIX)
        discrete = condition == "ambient" and rng.random() < 0.25  # ventilators, oximeters, concentrators
        if discrete:
            code, pack = f"EQP-{n:03d}", 1
        else:
            prefix = {"ambient": "MED", "cold_2_8": "VAC", "frozen_minus20": "VFZ"}.get(condition, "VUC")
            code, pack = f"{prefix}-{n:03d}", rng.choice(CONSUMABLE_PACKS)
        products[code] = ProductInfo(code, condition, pack, discrete)
        popularity.append(rng.lognormvariate(0.0, 0.6))
    return products, popularity


def _eligibility(
    rng: random.Random, products: dict[str, ProductInfo], countries: tuple[Country, ...]
) -> dict[tuple[str, str], Eligibility]:
    """Most pairs always allowed, ~10% never (not registered), ~2% an authorisation that lapses
    within the horizon (so only nearby lots arrive in time), ~1% one that starts in a few days."""
    out: dict[tuple[str, str], Eligibility] = {}
    for code in products:
        for country in countries:
            draw = rng.random()
            if draw < 0.10:
                out[(code, country.iso3)] = Eligibility.never("not registered with the national regulator")
            elif draw < 0.12:
                until = DAY + timedelta(days=rng.randint(2, 12))
                out[(code, country.iso3)] = Eligibility(
                    ((date(2025, 1, 1), until),), f"emergency use authorisation until {until.isoformat()}"
                )
            elif draw < 0.13:
                start = DAY + timedelta(days=rng.randint(3, 10))
                out[(code, country.iso3)] = Eligibility(
                    ((start, None),), f"registered from {start.isoformat()}"
                )
            else:
                out[(code, country.iso3)] = Eligibility.always()
    return out


def generate(size: Size, seed: int = 2026) -> Round:
    """A deterministic round of `size`: the same size and seed always give the same round."""
    rng = random.Random(seed * 1_000_003 + size.needs)
    countries = COUNTRIES[: size.members]
    facilities = _facilities(rng, size, countries)
    depots = [f for f in facilities if f.code.endswith("-DEPOT")]
    sites = [f for f in facilities if not f.code.endswith("-DEPOT")]
    pledgers = [f for f in sites if f.hospital and rng.random() < 0.2]
    products, popularity = _products(rng, size.products)
    codes = list(products)
    eligibility = _eligibility(rng, products, countries)

    coverage: dict[tuple[str, str], float | None] = {}
    site_weights = list(itertools.accumulate(3.0 if f.hospital else 1.0 for f in sites))
    product_weights = list(itertools.accumulate(popularity))
    needs: list[NeedLine] = []
    demand: dict[str, int] = defaultdict(int)
    for n in range(size.needs):
        site = rng.choices(sites, cum_weights=site_weights)[0]
        code = codes[n] if n < len(codes) else rng.choices(codes, cum_weights=product_weights)[0]
        for _ in range(3):  # facilities mostly ask for what they can store
            capability = cand.STORAGE_CAPABILITY[products[code].storage_condition]
            if capability is None or capability in site.storage or rng.random() < 0.1:
                break
            code = rng.choices(codes, cum_weights=product_weights)[0]
        info = products[code]
        if info.discrete:
            quantity = rng.randint(1, 12)
        else:
            quantity = info.pack_size * rng.randint(1, 60)
            if rng.random() < 0.2:  # not a whole number of packs; a few ask for less than one
                quantity = max(1, quantity - rng.randint(1, info.pack_size - 1))
        key = (code, site.member)
        if key not in coverage:
            coverage[key] = None if rng.random() < 0.15 else round(rng.uniform(0.0, 1.2), 2)
        needs.append(
            NeedLine(
                id=f"need:{n}",
                product=code,
                member=site.member,
                facility=site.code,
                lat=site.lat,
                lon=site.lon,
                quantity=quantity,
                urgency=_pick(rng, URGENCY_MIX),
                coverage=coverage[key],
                population_served=rng.randint(5_000, 500_000 if site.hospital else 60_000),
                order=n,
                storage=site.storage,
            )
        )
        demand[code] += quantity

    # Lots: each product's supply is 40-70% of its demand, split over lots that follow popularity;
    # about 70% of lots sit at the regional depots, the rest are pledged by hospitals.
    lot_products = codes + rng.choices(codes, cum_weights=product_weights, k=size.lots - len(codes))
    per_product: dict[str, list[tuple[_Facility, float, bool]]] = defaultdict(list)
    for code in lot_products:
        reserve = rng.random() < 0.7 or not pledgers
        source = rng.choice(depots) if reserve else rng.choice(pledgers)
        per_product[code].append((source, rng.expovariate(1.0) * (2.0 if reserve else 1.0), reserve))
    lots: list[SupplyLot] = []
    for code in codes:
        info = products[code]
        supply = demand[code] * rng.uniform(0.4, 0.7)
        entries = per_product[code]
        total_weight = sum(weight for _, weight, _ in entries)
        for source, weight, reserve in entries:
            packs = max(1, round(supply * weight / total_weight / info.pack_size))
            draw = rng.random()
            if info.discrete:
                expiry = None if draw < 0.8 else DAY + timedelta(days=rng.randint(180, 1500))
            elif draw < 0.05:  # close to expiry: survives only a short trip, if any
                expiry = DAY + timedelta(days=rng.randint(20, 45))
            else:
                expiry = DAY + timedelta(days=rng.randint(60, 1000))
            lots.append(
                SupplyLot(
                    id=f"lot:{len(lots)}",
                    product=code,
                    source=source.code,
                    source_member=source.member,
                    quantity=packs * info.pack_size,
                    expiry=expiry,
                    lat=source.lat,
                    lon=source.lon,
                    origin="reserve" if reserve else "pledge",
                )
            )
    members = {c.iso3: MemberInfo(c.iso3, c.population, c.income_group) for c in countries}
    return Round(DAY, tuple(lots), tuple(needs), products, members, eligibility)


# --- measuring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    min_fill_rate: float
    weighted_unmet_need: float
    allocated: int
    requested: int
    seconds: float


@dataclass(frozen=True)
class Figure:
    size: Size
    needs: int
    lots: int
    supply_share: float  # supply / demand over the round
    unservable: int  # needs with no candidate lot (storage, eligibility, shelf life)
    pairs: int
    largest_product_pairs: int  # columns of the largest per-product programme
    variables: int
    constraints: int
    seconds_candidates: float
    seconds_matrix: float
    seconds_solve: float
    seconds_total: float  # the whole allocate(): candidates, matrices, HiGHS, explanations
    rss_start_mib: float
    rss_peak_mib: float
    status: str
    objective: float
    bound: float
    gap: float
    equity: Quality
    pro_rata: Quality

    @property
    def seconds_build(self) -> float:
        return self.seconds_candidates + self.seconds_matrix

    @property
    def per_thousand_needs(self) -> float:
        return self.seconds_total / self.needs * 1000


@dataclass
class _Calls:
    seconds: float = 0.0
    found: cand.Candidates | None = None


@contextmanager
def _timed_candidates() -> Iterator[_Calls]:
    """Time `candidates.build` where the engine calls it (the engine does not report it)."""
    calls = _Calls()
    original: Callable[[Round, Policy], cand.Candidates] = cand.build

    def timed(round_: Round, policy: Policy) -> cand.Candidates:
        started = time.perf_counter()
        found = original(round_, policy)
        calls.seconds += time.perf_counter() - started
        calls.found = found
        return found

    cand.build = timed
    try:
        yield calls
    finally:
        cand.build = original  # type: ignore[assignment]


def _rss_mib() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _quality(round_: Round, plan: Plan, policy: Policy, seconds: float) -> Quality:
    figures = fairness.report(round_, plan, policy)
    return Quality(
        figures.min_fill_rate, figures.weighted_unmet_need, figures.allocated, figures.requested, seconds
    )


def measure(size: Size, policy_name: str, seed: int) -> Figure:
    """One size, in the calling process: generate, allocate (timed, memory), then pro-rata."""
    round_ = generate(size, seed)
    policy = POLICIES[policy_name]
    demand = sum(need.quantity for need in round_.needs)
    supply = sum(lot.quantity for lot in round_.lots)
    rss_start = _rss_mib()
    with _timed_candidates() as calls:
        started = time.perf_counter()
        plan = allocate(round_, policy)
        total = time.perf_counter() - started
    rss_peak = _peak_rss_mib()
    solver, found = plan.solver, calls.found
    assert solver is not None
    assert found is not None
    per_product = Counter(round_.needs[pair.need].product for pair in found.pairs)
    equity = _quality(round_, plan, policy, total)
    started = time.perf_counter()
    baseline = baselines.pro_rata(round_, policy)
    pro_rata = _quality(round_, baseline, policy, time.perf_counter() - started)
    return Figure(
        size=size,
        needs=len(round_.needs),
        lots=len(round_.lots),
        supply_share=supply / demand,
        unservable=len(found.refused),
        pairs=len(found.pairs),
        largest_product_pairs=max(per_product.values(), default=0),
        variables=solver.variables,
        constraints=solver.constraints,
        seconds_candidates=calls.seconds,
        seconds_matrix=solver.seconds_build,
        seconds_solve=solver.seconds_solve,
        seconds_total=total,
        rss_start_mib=rss_start,
        rss_peak_mib=rss_peak,
        status=solver.status,
        objective=solver.objective,
        bound=solver.bound,
        gap=solver.gap,
        equity=equity,
        pro_rata=pro_rata,
    )


def measure_isolated(size: Size, policy_name: str, seed: int) -> Figure:
    """`measure` in a fresh forked process, so the peak RSS is this size's alone."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        return pool.submit(measure, size, policy_name, seed).result()


def profile(size: Size, policy_name: str, seed: int, top: int) -> None:
    """cProfile one allocate() and say how its time splits between the stages."""
    round_ = generate(size, seed)
    policy = POLICIES[policy_name]
    profiler = cProfile.Profile()
    profiler.enable()
    allocate(round_, policy)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]

    def cumulative(file_part: str, name: str) -> tuple[float, int]:
        found = [(v[3], v[1]) for (f, _, n), v in raw.items() if file_part in f and n == name]
        return (sum(s for s, _ in found), sum(c for _, c in found))

    total, _ = cumulative("allocation/engine.py", "allocate")
    print(f"\nprofile of allocate() at {size.needs:,} needs (cProfile inflates Python time):")
    for label, file_part, name in (
        ("candidates.build", "allocation/candidates.py", "build"),
        ("  of which _sources", "allocation/candidates.py", "_sources"),
        ("  of which distance_km", "allocation/model.py", "distance_km"),
        ("ProductProgramme.__init__", "allocation/engine.py", "__init__"),
        ("ProductProgramme.solve", "allocation/engine.py", "solve"),
        ("  scipy milp (HiGHS + checks)", "scipy/optimize/_milp.py", "milp"),
        ("  HiGHS run (C++)", "~", "<built-in method scipy.optimize._highspy._core.run>"),
        ("  binary search LPs", "allocation/engine.py", "_feasible"),
        ("_explain", "allocation/engine.py", "_explain"),
    ):
        seconds, count = cumulative(file_part, name)
        print(f"  {label:<32} {seconds:>8.2f} s {seconds / total:>6.1%} {count:>9,} calls")
    print(f"  {'allocate (total)':<32} {total:>8.2f} s")
    stats.sort_stats("tottime").print_stats(top)


# --- report --------------------------------------------------------------------------------------


def _solver_threads() -> int:
    return solver_threads(10**6)


def _print_tables(figures: list[Figure]) -> None:
    print(
        f"\n{'members':>7} {'facil.':>6} {'prods':>5} {'needs':>6} {'lots':>6} {'pairs':>9} {'max/prod':>8} "
        f"{'vars':>9} {'constrs':>7} {'cand s':>7} {'matrix s*':>9} {'HiGHS s*':>8} "
        f"{'total s':>7} {'RSS MiB':>7} {'+peak':>6}"
    )
    for f in figures:
        s = f.size
        print(
            f"{s.members:>7} {s.facilities:>6,} {s.products:>5} {f.needs:>6,} {f.lots:>6,} {f.pairs:>9,} "
            f"{f.largest_product_pairs:>8,} {f.variables:>9,} {f.constraints:>7,} "
            f"{f.seconds_candidates:>7.2f} {f.seconds_matrix:>9.2f} "
            f"{f.seconds_solve:>8.2f} {f.seconds_total:>7.2f} "
            f"{f.rss_start_mib:>7.0f} {f.rss_peak_mib - f.rss_start_mib:>6.0f}"
        )
    print(
        f"* summed over the {_solver_threads()} solver thread(s): products are built and solved in "
        "parallel, one thread per core, so these can exceed the wall-clock total"
    )
    solver = f"{'':>6} {'':>6} {'':>7} {'HiGHS, stage 2 summed over products':<62}"
    print(f"\n{solver} | {'equity plan':<28} | {'pro-rata baseline':<36}")
    print(
        f"{'needs':>6} {'supply':>6} {'unserv.':>7} {'status':>10} {'objective':>14} {'dual bound':>14} "
        f"{'rel diff':>8} {'max gap':>8} | {'alloc':>6} {'min fill':>8} {'w. unmet':>11} | "
        f"{'alloc':>6} {'min fill':>8} {'w. unmet':>11} {'seconds':>7}"
    )
    for f in figures:
        diff = abs(f.objective - f.bound) / max(abs(f.objective), 1.0)
        e, p = f.equity, f.pro_rata
        print(
            f"{f.needs:>6,} {f.supply_share:>6.0%} {f.unservable:>7,} {f.status:>10} {f.objective:>14.4f} "
            f"{f.bound:>14.4f} {diff:>8.1e} {f.gap:>8.1e} | {e.allocated / e.requested:>6.1%} "
            f"{e.min_fill_rate:>8.1%} {e.weighted_unmet_need:>11,.0f} | {p.allocated / p.requested:>6.1%} "
            f"{p.min_fill_rate:>8.1%} {p.weighted_unmet_need:>11,.0f} {p.seconds:>7.2f}"
        )
    print(
        "supply = units in lots / units requested; unserv. = needs no lot may serve (storage, eligibility, "
        "shelf life); alloc = units allocated / requested; min fill over the needs some lot could serve; "
        "w. unmet = unmet units x urgency x severity x income weight (lower is better)"
    )


def _print_scaling(figures: list[Figure]) -> None:
    per = ", ".join(f"{f.needs:,}: {f.per_thousand_needs:.2f}" for f in figures)
    print(f"\nscaling: total seconds per 1,000 needs at each size ({per})")
    if len(figures) < 2:
        return
    first, last = figures[0], figures[-1]
    ratio = last.per_thousand_needs / first.per_thousand_needs
    exponent = math.log(last.seconds_total / first.seconds_total) / math.log(last.needs / first.needs)
    verdict = "near-linear" if ratio <= NEAR_LINEAR_RATIO else "NOT near-linear"
    print(
        f"scaling: per-need time at {last.needs:,} / at {first.needs:,} needs = {ratio:.2f} "
        f"(time ~ needs^{exponent:.2f}): {verdict} (criterion: ratio <= {NEAR_LINEAR_RATIO})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", choices=("small", "all"), default="all")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="equity")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--profile", type=int, metavar="TOP", default=0, help="cProfile the largest chosen size instead"
    )
    args = parser.parse_args()
    sizes = SIZES if args.sizes == "all" else SIZES[:SMALL]
    if args.profile:
        profile(sizes[-1], args.policy, args.seed, args.profile)
        return
    print(f"allocation benchmark: policy {args.policy}, seed {args.seed}; {machine()}")
    print(
        "times: total = wall clock of allocate(); candidates timed at the call; matrix and HiGHS from "
        "the engine's SolverReport, summed over products and stages; "
        "memory: RSS at the start of allocate() and the rise to its peak (ru_maxrss), one forked "
        "process per size; status 'optimal' = every HiGHS stage proven optimal within mip_rel_gap "
        "1e-6; objective and dual bound = stage 2 summed over products"
    )
    figures = []
    for size in sizes:
        figure = measure_isolated(size, args.policy, args.seed)
        figures.append(figure)
        print(f"  done: {size.needs:,} needs in {figure.seconds_total:.2f} s ({figure.status})", flush=True)
    _print_tables(figures)
    _print_scaling(figures)
    largest = figures[-1]
    met = largest.status == "optimal" and largest.seconds_total < TARGET_SECONDS
    verdict = ("met" if met else "MISSED") if sizes is SIZES else "not measured (needs --sizes all)"
    print(f"target: largest round optimal in < {TARGET_SECONDS:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
