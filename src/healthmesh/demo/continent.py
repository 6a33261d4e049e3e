"""A continent-scale demo, loaded straight into PostgreSQL: the 55 African Union members, 20,000
facilities, 300 products, 2,000,000 lots with their receipts, a year of daily consumption at a
sample of facilities, the balance projections and 100,000 outstanding needs. It exists to
measure HealthMesh at that size (page latency, allocation rounds), so it favours speed:

* Everything is generated with NumPy from one seed (`numpy.random.default_rng(seed)`, plus a
  `random.Random(seed)` for the small tables), so the same seed and `today` give the same rows.
* The small tables (members, facilities, products, regulatory decisions, users, pledges) go in as
  bulk INSERTs; the big ones (lots, stock events, both balance projections, needs and their
  history) through PostgreSQL COPY, in binary where rows have a fixed shape. Ids are assigned
  here and the sequences moved past them at the end.
* Balances are not written by the ledger (`supply.ledger`) but computed here from the very event
  rows that are loaded, so each balance is exactly the sum of its events; each lot's running
  balance, in event order, never goes below zero (receipts cover consumption by construction).
  Both are checked in SQL before the commit, and a mismatch rolls everything back.
* The load is one transaction: secondary indexes and foreign keys of the big tables are dropped
  inside it and rebuilt (and re-validated) after the COPYs; a failure anywhere leaves the
  database as it was. `VACUUM (ANALYZE)` follows the commit.

What the data looks like: facilities are placed around each member's population centre, by the
square root of its population (a national warehouse per member at its hub, five regional reserve
depots, then hospitals, primary care centres and laboratories); each holds about 100 lots of the
products its cold chain allows (depots and warehouses many more), received over the past year
with 35-95 % of their shelf life left, so some have expired on the shelf. The consumption sample
(400 facilities x 15 products) issues daily (Poisson, quieter at weekends) first-in first-out
and is replenished every four weeks with what the next period will use, the first delivery adding
two weeks of safety stock. Products are the demo catalogue's items from several suppliers (pack
sizes and shelf lives vary between suppliers; not every supplier is WHO-listed).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, insert, text

from healthmesh.accounts.access import Role
from healthmesh.accounts.models import User
from healthmesh.accounts.security import hash_password
from healthmesh.db import make_engine
from healthmesh.demo.catalogue import CATALOGUE, CatalogueItem
from healthmesh.demo.continent_data import (
    AU_BLOC,
    AU_MEMBERS,
    COD_ZONE_BOUNDARY_LON,
    RELIANCE,
    RESERVE_DEPOTS,
    STRONG_REGULATORS,
    AuMember,
)
from healthmesh.demo.seed import DEMO_PASSWORD, GS1_EXAMPLE_PREFIX
from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.registry.codes import make_gtin
from healthmesh.registry.enums import (
    AuthorisationStatus,
    FacilityKind,
    IncomeGroup,
    ProductCategory,
    StorageCondition,
    WhoListing,
)
from healthmesh.registry.models import (
    Authorisation,
    Facility,
    Jurisdiction,
    JurisdictionBloc,
    Product,
    RecognitionAgreement,
)
from healthmesh.supply.enums import EventKind, PledgeStatus
from healthmesh.supply.models import IngestBatch, Pledge

# --- sizes at scale 1 --------------------------------------------------------------------------

FACILITIES = 20_000
LOTS = 2_000_000
PRODUCTS = 300
SAMPLE_FACILITIES = 400
SAMPLE_PRODUCTS = 15
HISTORY_DAYS = 365
REPLENISH_DAYS = 28
SAFETY_DAYS = 14
NEEDS = 100_000
#: Deliveries per consumption stream over the year (every four weeks, the last one covering 29 days).
DELIVERIES = HISTORY_DAYS // REPLENISH_DAYS
FIXED_FACILITIES = len(AU_MEMBERS) + len(RESERVE_DEPOTS)  # a national warehouse each, and the depots

NOT_POSTGRES = (
    "the continent-scale demo loads through PostgreSQL COPY and needs a PostgreSQL database: "
    "set HEALTHMESH_DATABASE_URL=postgresql+psycopg://user@host:5432/dbname"
)

# --- vocabularies --------------------------------------------------------------------------------

NW, DEPOT, HOSPITAL, PRIMARY, LAB = range(5)
KINDS = (
    FacilityKind.NATIONAL_WAREHOUSE,
    FacilityKind.REGIONAL_RESERVE_DEPOT,
    FacilityKind.HOSPITAL,
    FacilityKind.PRIMARY_CARE,
    FacilityKind.LABORATORY,
)
KIND_MIX = ((HOSPITAL, 0.25), (PRIMARY, 0.63), (LAB, 0.12))
#: Relative lot budgets, and the mean number of lots per product held, by kind of facility.
LOT_WEIGHT = np.array([6.0, 15.0, 1.4, 0.7, 0.7])
LOTS_PER_PRODUCT = np.array([3.0, 5.0, 2.5, 2.5, 2.5])
#: Sampling weight of each kind for the consumption sample and for facility-level needs.
SAMPLE_WEIGHT = np.array([0.0, 0.0, 3.0, 1.0, 0.5])
NEED_WEIGHT = np.array([0.0, 0.0, 3.0, 1.0, 0.5])

CATEGORIES = tuple(ProductCategory)
#: How much each kind of facility stocks of each category (in `CATEGORIES` order).
AFFINITY = np.array(
    [
        # dx   ppe  bme  med  vac  con
        [1.0, 1.0, 0.6, 1.0, 1.0, 1.0],  # national warehouse
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # regional reserve depot
        [1.0, 1.0, 0.5, 1.0, 0.6, 1.0],  # hospital
        [0.8, 1.0, 0.1, 1.2, 1.5, 1.0],  # primary care
        [4.0, 1.5, 0.1, 0.05, 0.0, 1.0],  # laboratory
    ]
)
#: Daily units of issue a reference hospital uses, by category (times a per-product spread).
DAILY_DEMAND = {
    ProductCategory.DIAGNOSTICS: 3.0,
    ProductCategory.PPE: 20.0,
    ProductCategory.BIOMEDICAL_EQUIPMENT: 0.02,
    ProductCategory.MEDICINE: 8.0,
    ProductCategory.VACCINE: 6.0,
    ProductCategory.CONSUMABLE: 10.0,
}
STORAGE_BITS = {
    StorageCondition.AMBIENT: 1,
    StorageCondition.COLD_2_8: 2,
    StorageCondition.FROZEN_MINUS20: 4,
    StorageCondition.ULTRA_COLD_MINUS70: 8,
}
#: Share of facilities with each cold chain (2-8 C, -20 C, -70 C), by kind.
COLD_CHAIN = {HOSPITAL: (0.92, 0.35, 0.10), PRIMARY: (0.55, 0.05, 0.01), LAB: (0.90, 0.60, 0.20)}
URGENCY_MIX = ((Urgency.ROUTINE, 0.70), (Urgency.URGENT, 0.22), (Urgency.EMERGENCY, 0.08))
NEEDED_WITHIN = {Urgency.ROUTINE: (21, 90), Urgency.URGENT: (7, 30), Urgency.EMERGENCY: (2, 14)}
STATUS_MIX = ((NeedStatus.OPEN, 0.75), (NeedStatus.SUBMITTED, 0.18), (NeedStatus.ENDORSED, 0.07))
MEMBER_LEVEL_NEEDS = 0.1
JUSTIFICATIONS = {
    Urgency.ROUTINE: (
        "Quarterly replenishment: stock below the minimum of the max-min system",
        "Consumption rising over the last two months; stock covers under four weeks",
        "Scheduled campaign next quarter needs additional stock",
    ),
    Urgency.URGENT: (
        "Stock covers under two weeks; the last delivery from the central store was short",
        "Increase in admissions; current stock will not last until the next delivery",
        "Expiry write-off left a gap before the next scheduled delivery",
    ),
    Urgency.EMERGENCY: (
        "Stocked out; patients are being referred to other facilities",
        "Outbreak response: demand several times the usual consumption",
        "Stock lost in a cold-chain failure; replacement needed at once",
    ),
}
#: Members whose national warehouse pledges part of its stock to the regional pool.
PLEDGE_INCOME = ("upper_middle", "high")
PLEDGES_PER_MEMBER = 10
MANAGED_MEMBERS = ("NGA", "KEN", "ZAF", "EGY", "SEN")

PG_EPOCH = date(2000, 1, 1)
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
RECEIPT_HOUR, ISSUE_HOUR = 8, 17
COPY_CHUNK = 250_000
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
#: The big tables: loaded by COPY with their secondary indexes and foreign keys dropped meanwhile.
BIG_TABLES = ("lots", "stock_events", "lot_balances", "stock_balances", "needs", "need_transitions")
ID_TABLES = (
    "jurisdictions",
    "facilities",
    "products",
    "authorisations",
    "recognition_agreements",
    "users",
    "ingest_batches",
    "pledges",
    "lots",
    "stock_events",
    "needs",
    "need_transitions",
)
#: Tables that must be empty before the load.
MUST_BE_EMPTY = ("jurisdictions", "facilities", "products", "users", "lots", "stock_events", "needs")

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Progress = Callable[[str, int, int], None]


class ContinentError(RuntimeError):
    """The continent demo cannot load here (not PostgreSQL, not empty) or failed its checks."""


# --- plan and summary ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ContinentPlan:
    """The row counts a scale gives (members and products do not scale)."""

    scale: float
    members: int
    products: int
    facilities: int
    sample_facilities: int
    streams: int
    lots: int
    needs: int

    @property
    def stream_lots(self) -> int:
        return self.streams * DELIVERIES


def plan_counts(scale: float = 1.0) -> ContinentPlan:
    if not 0 < scale <= 10:
        raise ValueError(f"scale must be in (0, 10], not {scale}")
    others = max(1, round((FACILITIES - FIXED_FACILITIES) * scale))
    facilities = FIXED_FACILITIES + others
    sample = max(1, min(others, round(SAMPLE_FACILITIES * scale)))
    streams = sample * SAMPLE_PRODUCTS
    lots = max(round(LOTS * scale), streams * DELIVERIES + facilities)
    return ContinentPlan(
        scale=scale,
        members=len(AU_MEMBERS),
        products=PRODUCTS,
        facilities=facilities,
        sample_facilities=sample,
        streams=streams,
        lots=lots,
        needs=max(1, round(NEEDS * scale)),
    )


@dataclass(frozen=True)
class Stage:
    name: str
    rows: int
    seconds: float


@dataclass
class ContinentSummary:
    plan: ContinentPlan
    members: int = 0
    facilities: int = 0
    products: int = 0
    authorisations: int = 0
    recognitions: int = 0
    users: int = 0
    pledges: int = 0
    lots: int = 0
    receipts: int = 0
    issues: int = 0
    lot_balances: int = 0
    stock_balances: int = 0
    needs: int = 0
    need_transitions: int = 0
    #: The checks run in SQL before the commit (all zero, or nothing was committed).
    lot_mismatches: int = -1
    stock_mismatches: int = -1
    negative_running_balances: int = -1
    database_bytes: int = 0
    stages: list[Stage] = field(default_factory=list)

    @property
    def events(self) -> int:
        return self.receipts + self.issues

    @property
    def verified(self) -> bool:
        return self.lot_mismatches == 0 and self.stock_mismatches == 0 and self.negative_running_balances == 0

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)


class _Stages:
    """Times each stage and reports its progress."""

    def __init__(self, summary: ContinentSummary, progress: Progress | None) -> None:
        self.summary = summary
        self.progress = progress
        self.name = ""
        self.started = 0.0

    def start(self, name: str, total: int = 1) -> None:
        self.name, self.started = name, time.perf_counter()
        self.report(0, total)

    def report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(self.name, done, total)

    def finish(self, rows: int) -> None:
        self.report(max(rows, 1), max(rows, 1))
        self.summary.stages.append(Stage(self.name, rows, round(time.perf_counter() - self.started, 2)))


# --- the registry: members, facilities, products, regulatory decisions, users -------------------


@dataclass
class _Sites:
    """Facilities as arrays (index = id - 1) plus their rows for INSERT."""

    member: Ints
    kind: Ints
    storage: Ints
    size: Floats
    minute: Ints
    catchment: Ints
    rows: list[dict[str, Any]]


@dataclass
class _Items:
    """Products as arrays (index = id - 1) plus their rows for INSERT."""

    bit: Ints
    category: Ints
    equipment: NDArray[np.bool_]
    listed: NDArray[np.bool_]
    popularity: Floats
    demand: Floats
    shelf: Ints
    prefix: NDArray[np.uint8]  # (n, 3) letters that begin the product's lot numbers
    rows: list[dict[str, Any]]


def _spread(total: int, weights: Sequence[float], minimum: int) -> list[int]:
    """`total` split by `weights` (largest remainder), each at least `minimum` when it fits."""
    if minimum * len(weights) > total:
        minimum = 0
    budget, whole = total - minimum * len(weights), sum(weights)
    shares = [budget * w / whole for w in weights]
    counts = [minimum + math.floor(s) for s in shares]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(shares[i] - math.floor(shares[i])), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _sites(rng: random.Random, plan: ContinentPlan, created: datetime) -> _Sites:
    others = plan.facilities - FIXED_FACILITIES
    quota = _spread(others, [math.sqrt(m.population) for m in AU_MEMBERS], minimum=3)
    member: list[int] = []
    kind: list[int] = []
    storage: list[int] = []
    size: list[float] = []
    catchment: list[int] = []
    rows: list[dict[str, Any]] = []

    def add(index: int, code: str, kind_code: int, name: str, lat: float, lon: float, **extra: Any) -> None:
        parent = extra.pop("parent", f"Ministry of Health, {AU_MEMBERS[index].name}")
        zone = AU_MEMBERS[index].time_zones[0]
        if AU_MEMBERS[index].iso3 == "COD" and lon >= COD_ZONE_BOUNDARY_LON:
            zone = AU_MEMBERS[index].time_zones[1]
        bits = 1 | 2 * extra.get("cold_chain_2_8", False) | 4 * extra.get("cold_chain_minus20", False)
        bits |= 8 * extra.get("cold_chain_minus70", False)
        rows.append(
            {
                "id": len(rows) + 1,
                "code": code,
                "jurisdiction_id": index + 1,
                "kind": KINDS[kind_code],
                "name": name,
                "latitude": round(_clamp(lat, -35.0, 37.5), 4),
                "longitude": round(_clamp(lon, -25.5, 63.5), 4),
                "time_zone": zone,
                "parent_organisation": parent,
                "icu_beds": 0,
                "oxygen_plant": False,
                "lab_biosafety_level": None,
                "active": True,
                "created_at": created,
                "updated_at": created,
                **extra,
            }
        )
        member.append(index)
        kind.append(kind_code)
        storage.append(bits)

    for index, au in enumerate(AU_MEMBERS):
        rich = au.income_group in PLEDGE_INCOME
        add(
            index,
            f"{au.iso3}-NW-0001",
            NW,
            f"{au.name} Central Medical Store",
            au.hub_lat + rng.uniform(-0.03, 0.03),
            au.hub_lon + rng.uniform(-0.03, 0.03),
            cold_chain_2_8=True,
            cold_chain_minus20=True,
            cold_chain_minus70=rich or rng.random() < 0.3,
        )
        size.append(au.population / 1_000_000 * 2.0 + 5.0)
        catchment.append(au.population)
        serials = [0] * 5
        for _ in range(quota[index]):
            kind_code = rng.choices([k for k, _ in KIND_MIX], [w for _, w in KIND_MIX])[0]
            serials[kind_code] += 1
            code, name, lat, lon, caps = _facility(rng, au, kind_code, serials[kind_code])
            add(index, code, kind_code, name, lat, lon, **caps)
            size.append(_facility_size(rng, kind_code))
            catchment.append(_catchment(rng, kind_code))
    for depot in RESERVE_DEPOTS:
        index = next(i for i, m in enumerate(AU_MEMBERS) if m.iso3 == depot.iso3)
        add(
            index,
            depot.code,
            DEPOT,
            depot.name,
            depot.lat,
            depot.lon,
            parent=depot.operator,
            cold_chain_2_8=True,
            cold_chain_minus20=True,
            cold_chain_minus70=True,
        )
        rows[-1]["time_zone"] = depot.time_zone
        size.append(150.0)
        catchment.append(0)
    minutes = [rng.randrange(60) for _ in rows]
    return _Sites(
        member=np.array(member, dtype=np.int64),
        kind=np.array(kind, dtype=np.int64),
        storage=np.array(storage, dtype=np.int64),
        size=np.array(size, dtype=np.float64),
        minute=np.array(minutes, dtype=np.int64),
        catchment=np.array(catchment, dtype=np.int64),
        rows=rows,
    )


def _facility(
    rng: random.Random, au: AuMember, kind_code: int, serial: int
) -> tuple[str, str, float, float, dict[str, Any]]:
    """(code, name, lat, lon, capabilities) of a hospital, health centre or laboratory; the
    first hospital and laboratory of a member are its national ones, at its hub."""
    label = {HOSPITAL: "HO", PRIMARY: "PR", LAB: "LA"}[kind_code]
    code = f"{au.iso3}-{label}-{serial:05d}"
    national = serial == 1 and kind_code != PRIMARY
    if national:
        lat, lon = au.hub_lat + rng.uniform(-0.05, 0.05), au.hub_lon + rng.uniform(-0.05, 0.05)
    else:
        lat, lon = rng.gauss(au.centre_lat, au.spread / 2), rng.gauss(au.centre_lon, au.spread / 2)
    if kind_code == HOSPITAL:
        name = f"National Referral Hospital, {au.hub}" if national else f"District Hospital No. {serial}"
    elif kind_code == LAB:
        name = f"National Public Health Laboratory, {au.hub}" if national else f"Laboratory No. {serial}"
    else:
        name = f"Health Centre No. {serial}"
    if not national:
        name = f"{name}, {au.name}"
    two_eight, minus20, minus70 = COLD_CHAIN[kind_code]
    caps: dict[str, Any] = {
        "cold_chain_2_8": national or rng.random() < two_eight,
        "cold_chain_minus20": national or rng.random() < minus20,
        "cold_chain_minus70": rng.random() < (0.5 if national else minus70),
    }
    if kind_code == HOSPITAL:
        caps["icu_beds"] = rng.randint(10, 60) if national else (rng.randint(2, 20) * (rng.random() < 0.6))
        caps["oxygen_plant"] = national or rng.random() < 0.3
    if kind_code == LAB:
        caps["lab_biosafety_level"] = 3 if national or rng.random() < 0.2 else 2
    return code, name, lat, lon, caps


def _facility_size(rng: random.Random, kind_code: int) -> float:
    if kind_code == HOSPITAL:
        return rng.lognormvariate(0.0, 0.5)
    return (0.15 if kind_code == PRIMARY else 0.3) * rng.lognormvariate(0.0, 0.4)


def _catchment(rng: random.Random, kind_code: int) -> int:
    low, high = {HOSPITAL: (50_000, 500_000), PRIMARY: (5_000, 40_000), LAB: (200_000, 2_000_000)}[kind_code]
    return rng.randint(low, high)


_PACK_IN_NAME = re.compile(r"\b(box|pack) of (\d+)\b")


def _items(rng: random.Random, created: datetime) -> _Items:
    """300 products: each catalogue item from five or six suppliers. The first keeps the
    catalogue's line; the others vary the pack (where the name states it), the shelf life and
    whether they are WHO-listed."""
    variants = _spread(PRODUCTS, [1.0] * len(CATALOGUE), minimum=1)
    rows: list[dict[str, Any]] = []
    prefixes: set[str] = set()
    bit, category, equipment, listed, popularity, demand, shelf, prefix = ([] for _ in range(8))
    for item, count in zip(CATALOGUE, variants, strict=True):
        base_popularity = rng.lognormvariate(0.0, 0.6)
        for j in range(count):
            rows.append(_variant(rng, item, j, len(rows) + 1, created))
            row = rows[-1]
            while True:
                letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3))
                if letters not in prefixes:
                    prefixes.add(letters)
                    break
            bit.append(STORAGE_BITS[row["storage_condition"]])
            category.append(CATEGORIES.index(row["category"]))
            equipment.append(row["is_discrete_equipment"])
            listed.append(row["who_listing"] is not None)
            popularity.append(base_popularity * rng.lognormvariate(0.0, 0.4))
            demand.append(DAILY_DEMAND[row["category"]] * rng.lognormvariate(0.0, 0.5))
            shelf.append(row["shelf_life_days"])
            prefix.append(list(letters.encode()))
    return _Items(
        bit=np.array(bit, dtype=np.int64),
        category=np.array(category, dtype=np.int64),
        equipment=np.array(equipment, dtype=np.bool_),
        listed=np.array(listed, dtype=np.bool_),
        popularity=np.array(popularity, dtype=np.float64),
        demand=np.array(demand, dtype=np.float64),
        shelf=np.array(shelf, dtype=np.int64),
        prefix=np.array(prefix, dtype=np.uint8),
        rows=rows,
    )


def _variant(
    rng: random.Random, item: CatalogueItem, j: int, product_id: int, created: datetime
) -> dict[str, Any]:
    name, pack, shelf_life = item.name, item.pack_size, item.shelf_life_days
    who = item.who_listing
    code = item.code
    if j > 0:
        supplier = "ABCDEFGHIJ"[j]
        code = f"{item.code}-{supplier}"
        stated = _PACK_IN_NAME.search(name)
        if stated and int(stated.group(2)) == pack and rng.random() < 0.5:
            pack = rng.choice([pack * 2] + ([pack // 2] if pack % 2 == 0 and pack >= 4 else []))
            name = _PACK_IN_NAME.sub(lambda m: f"{m.group(1)} of {pack}", name, count=1)
        name = f"{name} [supplier {supplier}]"
        if not item.is_discrete_equipment:
            shelf_life = max(270, round(shelf_life * rng.uniform(0.8, 1.2) / 30) * 30)
        if who is not None and rng.random() < 0.5:
            who = None
    return {
        "id": product_id,
        "code": code,
        "gtin": make_gtin(GS1_EXAMPLE_PREFIX, item.gtin_seq if j == 0 else 10_000 + item.gtin_seq * 10 + j),
        "name": name,
        "category": ProductCategory(item.category),
        "unit_of_issue": item.unit_of_issue,
        "pack_size": pack,
        "storage_condition": StorageCondition(item.storage_condition),
        "min_temp_c": item.min_temp_c,
        "max_temp_c": item.max_temp_c,
        "excursion_tolerance_minutes": item.excursion_tolerance_minutes,
        "shelf_life_days": shelf_life,
        "is_discrete_equipment": item.is_discrete_equipment,
        "who_listing": WhoListing(who) if who else None,
        "created_at": created,
        "updated_at": created,
    }


def _decisions(
    rng: random.Random, iso3: str, row: Mapping[str, Any]
) -> list[tuple[AuthorisationStatus, str, str | None, date, date | None]]:
    """A member's decisions on one product: strong regulators decide themselves; others register
    (often through the WHO collaborative procedure), rely on a partner, or leave it to their
    recognition of WHO listing."""
    start = date(2019 + rng.randint(0, 5), rng.randint(1, 12), 1)
    roll = rng.random()
    if iso3 in STRONG_REGULATORS:
        if roll < 0.03:
            return [(AuthorisationStatus.NOT_AUTHORISED, "application refused", None, start, None)]
        if roll < 0.08:
            return []
        if row["category"] in (ProductCategory.VACCINE, ProductCategory.MEDICINE) and rng.random() < 0.3:
            switch = date(start.year + 2, start.month, 1)
            return [
                (
                    AuthorisationStatus.EMERGENCY_USE,
                    "emergency use authorisation",
                    None,
                    start,
                    switch - timedelta(1),
                ),
                (AuthorisationStatus.AUTHORISED, "full marketing authorisation", None, switch, None),
            ]
        return [(AuthorisationStatus.AUTHORISED, "full marketing authorisation", None, start, None)]
    if iso3 in RELIANCE and roll < 0.4:
        partner = RELIANCE[iso3]
        return [(AuthorisationStatus.RELIANCE, f"abridged review relying on {partner}", partner, start, None)]
    if roll < 0.43:
        return [(AuthorisationStatus.NOT_AUTHORISED, "not registered for import", None, start, None)]
    if roll < 0.55:
        return []  # no decision: WHO listing (recognised) or nothing
    pathway = "WHO collaborative registration procedure" if row["who_listing"] else "national registration"
    return [(AuthorisationStatus.AUTHORISED, pathway, None, start, None)]


def _regulatory(
    rng: random.Random, items: _Items, today: date, created: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], NDArray[np.bool_]]:
    """Authorisations and recognition agreements, and which (member, product) pairs are allowed
    today (own decision, else WHO listing recognised)."""
    allowed = np.zeros((len(AU_MEMBERS), len(items.rows)), dtype=np.bool_)
    authorisations: list[dict[str, Any]] = []
    for m, au in enumerate(AU_MEMBERS):
        recognises_who = au.iso3 not in STRONG_REGULATORS
        for p, row in enumerate(items.rows):
            decisions = _decisions(rng, au.iso3, row)
            for status, pathway, relied_on, start, end in decisions:
                authorisations.append(
                    {
                        "id": len(authorisations) + 1,
                        "product_id": row["id"],
                        "jurisdiction_id": m + 1,
                        "status": status,
                        "pathway": pathway,
                        "relied_on_authority": relied_on,
                        "reference": f"{au.iso3}-{row['code']}-{start.year}",
                        "valid_from": start,
                        "valid_to": end,
                        "created_at": created,
                        "updated_at": created,
                    }
                )
            current = [d for d in decisions if d[3] <= today and (d[4] is None or today <= d[4])]
            if current:
                allowed[m, p] = current[-1][0] is not AuthorisationStatus.NOT_AUTHORISED
            else:
                allowed[m, p] = recognises_who and row["who_listing"] is not None
    recognitions: list[dict[str, Any]] = []
    agreements = [
        (au.iso3, authority, "accepts WHO listing for procurement and import")
        for au in AU_MEMBERS
        if au.iso3 not in STRONG_REGULATORS
        for authority in ("WHO-PQ", "WHO-EUL")
    ]
    agreements += [(iso3, partner, "reliance partner (illustrative)") for iso3, partner in RELIANCE.items()]
    index = {au.iso3: i + 1 for i, au in enumerate(AU_MEMBERS)}
    for iso3, authority, note in agreements:
        recognitions.append(
            {
                "id": len(recognitions) + 1,
                "jurisdiction_id": index[iso3],
                "recognised_authority": authority,
                "categories": [],
                "valid_from": date(2020, 3, 1),
                "valid_to": None,
                "note": note,
                "created_at": created,
                "updated_at": created,
            }
        )
    return authorisations, recognitions, allowed


def _users(sites: _Sites, created: datetime) -> list[dict[str, Any]]:
    password_hash = hash_password(DEMO_PASSWORD)
    rows: list[dict[str, Any]] = [
        {"username": "admin", "full_name": "Platform Administrator", "role": Role.ADMIN},
        {
            "username": "coordinator",
            "full_name": "Continental Coordination Centre",
            "role": Role.REGIONAL_COORDINATOR,
        },
        {"username": "auditor", "full_name": "Continental Audit Office", "role": Role.AUDITOR},
        {"username": "researcher", "full_name": "Continental Research Network", "role": Role.RESEARCHER},
    ]
    for m, au in enumerate(AU_MEMBERS):
        rows.append(
            {
                "username": f"fp.{au.iso3.lower()}",
                "full_name": f"National focal point, {au.name}",
                "role": Role.NATIONAL_FOCAL_POINT,
                "jurisdiction_id": m + 1,
            }
        )
    for iso3 in MANAGED_MEMBERS:
        m = next(i for i, au in enumerate(AU_MEMBERS) if au.iso3 == iso3)
        hospitals = np.flatnonzero((sites.member == m) & (sites.kind == HOSPITAL))
        if not len(hospitals):
            continue
        facility = sites.rows[int(hospitals[0])]
        for prefix, title in (("manager", "Pharmacy manager"), ("clinician", "Physician")):
            rows.append(
                {
                    "username": f"{prefix}.{iso3.lower()}",
                    "full_name": f"{title}, {facility['name']}",
                    "role": Role.FACILITY_MANAGER if prefix == "manager" else Role.CLINICIAN,
                    "jurisdiction_id": m + 1,
                    "facility_id": facility["id"],
                }
            )
    return [
        {
            "id": i + 1,
            "email": "",
            "jurisdiction_id": None,
            "facility_id": None,
            "active": True,
            "created_at": created,
            "password_hash": password_hash,
            **row,
        }
        for i, row in enumerate(rows)
    ]


# --- stock: lots, events, balances (NumPy) ------------------------------------------------------


@dataclass
class _Stock:
    """Lots sorted by (facility, product, receipt), events sorted by time; all 0-based arrays,
    ids are index + 1."""

    lot_facility: Ints
    lot_product: Ints
    lot_number: NDArray[np.bytes_]
    lot_expiry: Ints  # days since 2000-01-01, -1 for none (serialised equipment)
    lot_received: Ints  # microseconds since 2000-01-01
    event_lot: Ints
    event_quantity: Ints
    event_time: Ints
    event_issue: NDArray[np.bool_]
    on_hand: Ints  # per lot
    group_start: Ints  # first lot of each facility x product
    group_on_hand: Ints
    group_updated: Ints
    stream_facilities: int


def _lot_budgets(plan: ContinentPlan, sites: _Sites) -> Ints:
    weights = LOT_WEIGHT[sites.kind]
    budget = plan.lots - plan.stream_lots
    return np.array(_spread(budget, list(weights), minimum=1), dtype=np.int64)


def _pick(rng: np.random.Generator, weights: Floats, count: int) -> Ints:
    """`count` indices drawn without replacement in proportion to `weights` (at most the nonzero),
    sorted: the top `count` of log(u) / weight (Efraimidis and Spirakis, 2006)."""
    count = min(count, int(np.count_nonzero(weights)))
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    with np.errstate(divide="ignore"):
        keys = np.where(weights > 0, np.log(rng.random(len(weights))) / weights, -np.inf)
    return np.sort(np.argpartition(-keys, count - 1)[:count])


def _holdings(
    rng: np.random.Generator, plan: ContinentPlan, sites: _Sites, items: _Items
) -> tuple[Ints, Ints, Ints, Ints]:
    """Which products each facility holds, in how many lots; and the consumption streams.
    Returns (lot facility, lot product) of the one-receipt lots and (facility, product) per stream."""
    budgets = _lot_budgets(plan, sites)
    candidates = np.flatnonzero(SAMPLE_WEIGHT[sites.kind] > 0)
    sample = _pick(rng, SAMPLE_WEIGHT[sites.kind[candidates]], plan.sample_facilities)
    sampled = set(candidates[sample].tolist())
    lot_facility: list[Ints] = []
    lot_product: list[Ints] = []
    stream_facility: list[Ints] = []
    stream_product: list[Ints] = []
    base = AFFINITY[:, items.category] * items.popularity  # (kind, product)
    for f in range(len(sites.rows)):
        weights = base[sites.kind[f]] * ((sites.storage[f] & items.bit) != 0)
        if f in sampled:
            streams = _pick(rng, weights * ~items.equipment, SAMPLE_PRODUCTS)
            stream_facility.append(np.full(len(streams), f, dtype=np.int64))
            stream_product.append(streams)
            weights = weights.copy()
            weights[streams] = 0.0
        lots = int(budgets[f])
        held = _pick(rng, weights, min(lots, max(1, round(lots / LOTS_PER_PRODUCT[sites.kind[f]]))))
        counts = 1 + rng.multinomial(lots - len(held), weights[held] / weights[held].sum())
        lot_facility.append(np.full(lots, f, dtype=np.int64))
        lot_product.append(np.repeat(held, counts))
    if len(np.concatenate(stream_product)) != plan.streams:
        raise ContinentError("a sampled facility holds fewer than 15 consumable products")
    return (
        np.concatenate(lot_facility),
        np.concatenate(lot_product),
        np.concatenate(stream_facility),
        np.concatenate(stream_product),
    )


def _consumption(
    rng: np.random.Generator, start_day: int, sites: _Sites, items: _Items, facility: Ints, product: Ints
) -> tuple[Ints, Ints, Ints, Ints, Ints]:
    """A year of daily issues per stream, and deliveries that always cover them.

    Returns the deliveries' quantities (streams x DELIVERIES) and the issues as (stream, day,
    delivery, quantity): each day's issue split over the lots it draws from, first in first out."""
    streams = len(facility)
    mean = np.maximum(3.0, items.demand[product] * sites.size[facility])
    weekday = (np.arange(HISTORY_DAYS) + _weekday(start_day)) % 7
    quiet = np.where(weekday == 5, 0.6, np.where(weekday == 6, 0.3, 1.0))
    demand = rng.poisson(mean[:, None] * quiet[None, :]).astype(np.int64)  # (streams, days)
    cumulative = np.cumsum(demand, axis=1)
    edges = np.arange(DELIVERIES + 1) * REPLENISH_DAYS
    edges[-1] = HISTORY_DAYS
    before = np.concatenate([np.zeros((streams, 1), dtype=np.int64), cumulative], axis=1)
    period = before[:, edges[1:]] - before[:, edges[:-1]]  # what each delivery's period will use
    period[:, 0] += np.ceil(mean * SAFETY_DAYS).astype(np.int64)
    delivered = np.maximum(5, -(-period // 5) * 5)  # rounded up to fives, never empty
    received = np.cumsum(delivered, axis=1)
    # Every boundary between days and between lots splits the consumed range into segments; each
    # segment is one issue event (one day, one lot). Offsets keep the streams apart in one array.
    width = int(max(received[:, -1].max(), cumulative[:, -1].max())) + 1
    offset = (np.arange(streams, dtype=np.int64) * width)[:, None]
    total = cumulative[:, -1:]
    points = np.concatenate([(cumulative + offset)[demand > 0], (received + offset)[received < total]])
    points.sort()
    points = points[np.concatenate([[True], points[1:] != points[:-1]])]
    stream = points // width
    previous = np.empty_like(points)
    previous[1:] = points[:-1]
    first = np.ones(len(points), dtype=np.bool_)
    first[1:] = stream[1:] != stream[:-1]
    previous[first] = stream[first] * width
    day = np.searchsorted((cumulative + offset).ravel(), points, side="left") % HISTORY_DAYS
    lot = np.searchsorted((received + offset).ravel(), points, side="left") % DELIVERIES
    if np.any(lot * REPLENISH_DAYS > day):
        raise ContinentError("an issue would come before its lot was delivered")
    return delivered, stream, day, lot, points - previous


def _weekday(day: int) -> int:
    """Monday = 0 of a day counted from 2000-01-01 (a Saturday)."""
    return (day + 5) % 7


def _days_to_yymm(days: Ints) -> Ints:
    stamps = np.datetime64("2000-01-01", "D") + days.astype("timedelta64[D]")
    months = stamps.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    return (months // 12 + 1970) % 100 * 100 + months % 12 + 1


def _digits(values: Ints, width: int) -> NDArray[np.uint8]:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers % 10 + 48).astype(np.uint8)


def _lot_numbers(
    rng: np.random.Generator, facility: Ints, product: Ints, made: Ints, items: _Items
) -> NDArray[np.bytes_]:
    """Manufacturer lot numbers like "KTR2409-137" (product prefix, year and month made, batch),
    shared across facilities as real lots are, unique per facility and product."""
    yymm = _days_to_yymm(made)
    batch = rng.integers(0, 1000, len(made))
    owner = (facility * PRODUCTS + product) * 10_000_000  # yymm * 1000 + batch < 10,000,000
    for _ in range(1000):
        key = owner + yymm * 1000 + batch
        order = np.argsort(key, kind="stable")
        clashes = order[1:][key[order][1:] == key[order][:-1]]
        if not len(clashes):
            break
        batch[clashes] = (batch[clashes] + rng.integers(1, 1000, len(clashes))) % 1000
    else:
        raise ContinentError("could not number the lots uniquely")
    chars = np.concatenate(
        [
            items.prefix[product],
            _digits(yymm, 4),
            np.full((len(made), 1), ord("-"), np.uint8),
            _digits(batch, 3),
        ],
        axis=1,
    )
    return np.ascontiguousarray(chars).view("S11").ravel()


def _stock(
    rng: np.random.Generator, plan: ContinentPlan, sites: _Sites, items: _Items, today: date
) -> _Stock:
    start_day = (today - PG_EPOCH).days - HISTORY_DAYS
    lot_facility, lot_product, stream_facility, stream_product = _holdings(rng, plan, sites, items)
    static = len(lot_facility)
    # One-receipt lots: received on a day of the past year, with 35-95 % of their shelf life left.
    received_day = rng.integers(0, HISTORY_DAYS, static)
    shelf = items.shelf[lot_product]
    expiry = start_day + received_day + np.rint(rng.uniform(0.35, 0.95, static) * shelf).astype(np.int64)
    made = expiry - shelf
    equipment = items.equipment[lot_product]
    made[equipment] = (start_day + received_day - rng.integers(30, 400, static))[equipment]
    expiry[equipment] = -1
    cover = rng.uniform(20.0, 90.0, static)
    quantity = np.maximum(1, np.rint(items.demand[lot_product] * sites.size[lot_facility] * cover)).astype(
        np.int64
    )
    quantity[equipment] = np.clip(quantity[equipment], 1, 50)
    # Consumption streams: a lot per delivery (every four weeks).
    delivered, issue_stream, issue_day, issue_delivery, issue_quantity = _consumption(
        rng, start_day, sites, items, stream_facility, stream_product
    )
    streams = len(stream_facility)
    s_facility = np.repeat(stream_facility, DELIVERIES)
    s_product = np.repeat(stream_product, DELIVERIES)
    s_day = np.tile(np.arange(DELIVERIES, dtype=np.int64) * REPLENISH_DAYS, streams)
    s_shelf = items.shelf[s_product]
    s_expiry = start_day + s_day + np.rint(rng.uniform(0.6, 0.95, len(s_day)) * s_shelf).astype(np.int64)
    facility = np.concatenate([lot_facility, s_facility])
    product = np.concatenate([lot_product, s_product])
    day = np.concatenate([received_day, s_day])
    expiry = np.concatenate([expiry, s_expiry])
    made = np.concatenate([made, s_expiry - s_shelf])
    quantity = np.concatenate([quantity, delivered.ravel()])
    numbers = _lot_numbers(rng, facility, product, made, items)
    # Lot ids in (facility, product, receipt) order; `rank[i]` is the id - 1 of generated lot i.
    order = np.lexsort((np.arange(len(day)), day, product, facility))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    received_at = (start_day + day) * DAY_US + RECEIPT_HOUR * HOUR_US + sites.minute[facility] * MINUTE_US
    issue_lot = rank[static + issue_stream * DELIVERIES + issue_delivery]
    issue_time = (
        (start_day + issue_day) * DAY_US
        + ISSUE_HOUR * HOUR_US
        + sites.minute[stream_facility[issue_stream]] * MINUTE_US
    )
    event_lot = np.concatenate([rank, issue_lot])
    event_time = np.concatenate([received_at, issue_time])
    event_quantity = np.concatenate([quantity, issue_quantity])
    event_issue = np.concatenate([np.zeros(len(rank), np.bool_), np.ones(len(issue_lot), np.bool_)])
    by_time = np.lexsort((event_lot, event_time))
    event_lot, event_time = event_lot[by_time], event_time[by_time]
    event_quantity, event_issue = event_quantity[by_time], event_issue[by_time]
    # The projections, from the event rows themselves.
    delta = np.where(event_issue, -event_quantity, event_quantity)
    on_hand = np.bincount(event_lot, weights=delta.astype(np.float64), minlength=len(order))
    on_hand = np.rint(on_hand).astype(np.int64)
    if on_hand.min() < 0:
        raise ContinentError("a generated lot balance is negative")
    last = np.zeros(len(order), dtype=np.int64)
    np.maximum.at(last, event_lot, event_time)
    sorted_facility, sorted_product = facility[order], product[order]
    change = np.ones(len(order), dtype=np.bool_)
    change[1:] = (sorted_facility[1:] != sorted_facility[:-1]) | (sorted_product[1:] != sorted_product[:-1])
    group_start = np.flatnonzero(change)
    return _Stock(
        lot_facility=sorted_facility,
        lot_product=sorted_product,
        lot_number=numbers[order],
        lot_expiry=expiry[order],
        lot_received=received_at[order],
        event_lot=event_lot,
        event_quantity=event_quantity,
        event_time=event_time,
        event_issue=event_issue,
        on_hand=on_hand,
        group_start=group_start,
        group_on_hand=np.add.reduceat(on_hand, group_start),
        group_updated=np.maximum.reduceat(last, group_start),
        stream_facilities=len(np.unique(stream_facility)),
    )


# --- needs ---------------------------------------------------------------------------------------


@dataclass
class _Needs:
    rows: list[tuple[Any, ...]]
    transitions: list[tuple[Any, ...]]


NEED_COLUMNS = (
    "id",
    "jurisdiction_id",
    "facility_id",
    "product_id",
    "quantity",
    "urgency",
    "needed_by",
    "justification",
    "population_served",
    "status",
    "quantity_allocated",
    "quantity_fulfilled",
    "rejection_reason",
    "external_id",
    "created_by",
    "created_at",
    "submitted_at",
    "endorsed_by",
    "endorsed_at",
    "updated_at",
)
TRANSITION_COLUMNS = ("id", "need_id", "from_status", "to_status", "actor_id", "at", "note")
OPENED_NOTE = "opened to regional allocation on endorsement"


def _needs(
    rng: np.random.Generator,
    plan: ContinentPlan,
    sites: _Sites,
    items: _Items,
    stock: _Stock,
    allowed: NDArray[np.bool_],
    users: list[dict[str, Any]],
    today: date,
) -> _Needs:
    """Outstanding needs (open, submitted, endorsed) with their history, raised over the last two
    months: most by facilities for products they stock and may use, some by members."""
    count = plan.needs
    member_level = rng.random(count) < MEMBER_LEVEL_NEEDS
    facility = np.full(count, -1, dtype=np.int64)
    product = np.zeros(count, dtype=np.int64)
    # Facility needs: a product the facility holds, re-drawn (up to three times) if not allowed.
    places = np.flatnonzero(NEED_WEIGHT[sites.kind] > 0)
    at = np.flatnonzero(~member_level)
    weights = NEED_WEIGHT[sites.kind[places]]
    facility[at] = places[rng.choice(len(places), size=len(at), p=weights / weights.sum())]
    group_facility = stock.lot_facility[stock.group_start]
    first = np.searchsorted(group_facility, np.arange(len(sites.rows)), side="left")
    held = np.searchsorted(group_facility, np.arange(len(sites.rows)), side="right") - first
    pending = at
    for _ in range(4):
        f = facility[pending]
        pick = first[f] + (rng.random(len(pending)) * held[f]).astype(np.int64)
        product[pending] = stock.lot_product[stock.group_start[pick]]
        pending = pending[~allowed[sites.member[facility[pending]], product[pending]]]
    # Member needs: for the national warehouse to distribute, any allowed product.
    members = np.flatnonzero(member_level)
    roots = np.sqrt([m.population for m in AU_MEMBERS])
    member = sites.member[np.maximum(facility, 0)].copy()
    member[members] = rng.choice(len(AU_MEMBERS), size=len(members), p=roots / roots.sum())
    for n in members:
        choice = np.flatnonzero(allowed[member[n]])
        product[n] = rng.choice(choice) if len(choice) else rng.integers(len(items.rows))
    size = np.where(member_level, 40.0, sites.size[np.maximum(facility, 0)])
    quantity = np.ceil(items.demand[product] * size * rng.uniform(14.0, 60.0, count)).astype(np.int64)
    quantity = np.where(items.equipment[product], np.clip(quantity, 1, 10), np.maximum(quantity, 1))
    population = np.where(
        member_level,
        (np.array([m.population for m in AU_MEMBERS])[member] * rng.uniform(0.01, 0.05, count)).astype(
            np.int64
        ),
        sites.catchment[np.maximum(facility, 0)],
    )
    urgency = rng.choice(len(URGENCY_MIX), size=count, p=[w for _, w in URGENCY_MIX])
    status = rng.choice(len(STATUS_MIX), size=count, p=[w for _, w in STATUS_MIX])
    now = datetime(today.year, today.month, today.day, 9, tzinfo=UTC)
    age = rng.integers(3 * 24 * 60, 60 * 24 * 60, count)  # minutes before now
    to_submit = rng.integers(60, 20 * 60, count)
    to_decide = rng.integers(3 * 60, 60 * 60, count)
    within = rng.random(count)
    template = rng.integers(0, 3, count)
    by_age = np.argsort(-age, kind="stable")  # ids in the order the needs were raised
    focal = {u["jurisdiction_id"]: u["id"] for u in users if u["role"] is Role.NATIONAL_FOCAL_POINT}
    managers = {u["facility_id"]: u["id"] for u in users if u["role"] is Role.FACILITY_MANAGER}
    rows: list[tuple[Any, ...]] = []
    transitions: list[tuple[Any, ...]] = []
    naive = now.replace(tzinfo=None)
    for need_id, n in enumerate(by_age.tolist(), start=1):
        level = (URGENCY_MIX[urgency[n]][0], STATUS_MIX[status[n]][0])
        jurisdiction_id = int(member[n]) + 1
        facility_id = None if member_level[n] else int(facility[n]) + 1
        fp = focal[jurisdiction_id]
        creator = managers.get(facility_id, fp)
        created = naive - timedelta(minutes=int(age[n]))
        submitted = created + timedelta(minutes=int(to_submit[n]))
        decided = min(submitted + timedelta(minutes=int(to_decide[n])), naive)
        low, high = NEEDED_WITHIN[level[0]]
        history = [
            (None, NeedStatus.DRAFT, creator, created, ""),
            (NeedStatus.DRAFT, NeedStatus.SUBMITTED, creator, submitted, ""),
        ]
        endorsed = level[1] is not NeedStatus.SUBMITTED
        if endorsed:
            history.append((NeedStatus.SUBMITTED, NeedStatus.ENDORSED, fp, decided, ""))
        if level[1] is NeedStatus.OPEN:
            history.append((NeedStatus.ENDORSED, NeedStatus.OPEN, fp, decided, OPENED_NOTE))
        rows.append(
            (
                need_id,
                jurisdiction_id,
                facility_id,
                int(product[n]) + 1,
                int(quantity[n]),
                level[0].value,
                today + timedelta(days=low + int(within[n] * (high - low))),
                JUSTIFICATIONS[level[0]][template[n]],
                int(population[n]),
                level[1].value,
                0,
                0,
                "",
                None,
                creator,
                created,
                submitted,
                fp if endorsed else None,
                decided if endorsed else None,
                history[-1][3],
            )
        )
        for before, after, actor, moment, note in history:
            transitions.append(
                (
                    len(transitions) + 1,
                    need_id,
                    before.value if before else None,
                    after.value,
                    actor,
                    moment,
                    note,
                )
            )
    return _Needs(rows, transitions)


def _pledges(
    sites: _Sites, items: _Items, stock: _Stock, users: list[dict[str, Any]], today: date
) -> list[dict[str, Any]]:
    """Better-off members pledge a quarter of their national warehouse's stock of a few products."""
    focal = {u["jurisdiction_id"]: u["id"] for u in users if u["role"] is Role.NATIONAL_FOCAL_POINT}
    group_facility = stock.lot_facility[stock.group_start]
    group_product = stock.lot_product[stock.group_start]
    created = datetime(today.year, today.month, today.day, 3, tzinfo=UTC) - timedelta(days=14)
    rows: list[dict[str, Any]] = []
    for m, au in enumerate(AU_MEMBERS):
        if au.income_group not in PLEDGE_INCOME:
            continue
        warehouse = int(np.flatnonzero((sites.member == m) & (sites.kind == NW))[0])
        mine = np.flatnonzero((group_facility == warehouse) & (stock.group_on_hand >= 4))
        best = mine[np.argsort(-items.popularity[group_product[mine]], kind="stable")][:PLEDGES_PER_MEMBER]
        for g in sorted(best.tolist()):
            rows.append(
                {
                    "id": len(rows) + 1,
                    "jurisdiction_id": m + 1,
                    "facility_id": warehouse + 1,
                    "product_id": int(group_product[g]) + 1,
                    "quantity": int(stock.group_on_hand[g]) // 4,
                    "valid_from": today - timedelta(days=14),
                    "valid_to": today + timedelta(days=90),
                    "status": PledgeStatus.ACTIVE,
                    "note": "pledged to the continental pool",
                    "created_by": focal[m + 1],
                    "created_at": created,
                }
            )
    return rows


# --- PostgreSQL: binary COPY, indexes, checks ---------------------------------------------------

#: PostgreSQL binary COPY field encodings: numpy dtype per our column kinds (text is bytes).
_WIRE = {"int4": ">i4", "int8": ">i8", "ts": ">i8", "date": ">i4"}
_PG_TYPES = {
    "int4": "integer",
    "int8": "bigint",
    "ts": "timestamp without time zone",
    "date": "date",
    "text": "character varying",
}


def _encode(columns: Sequence[tuple[str, Any]], rows: int) -> bytes:
    """Rows in PostgreSQL's binary COPY format, built as one NumPy structured array: each column
    is (kind, values) with values an array, a scalar for every row, or None (NULL). Text columns
    take fixed-width bytes (`S<n>` arrays or a bytes scalar), so a call has one width per column."""
    fields: list[tuple[str, Any]] = [("count", ">i2")]
    values: list[tuple[int, int, Any]] = []
    for i, (kind, value) in enumerate(columns):
        fields.append((f"l{i}", ">i4"))
        if value is None:
            values.append((i, -1, None))
            continue
        if kind == "text":
            width = value.dtype.itemsize if isinstance(value, np.ndarray) else len(value)
            if width:
                fields.append((f"v{i}", f"S{width}"))
            values.append((i, width, value if width else None))
        else:
            fields.append((f"v{i}", _WIRE[kind]))
            values.append((i, np.dtype(_WIRE[kind]).itemsize, value))
    out = np.empty(rows, dtype=np.dtype(fields))
    out["count"] = len(columns)
    for i, length, value in values:
        out[f"l{i}"] = length
        if value is not None:
            out[f"v{i}"] = value
    return out.tobytes()


class _Copy:
    """One binary COPY into `table`; `write` takes column arrays (sliced into chunks)."""

    def __init__(
        self, cursor: Any, table: str, spec: Sequence[tuple[str, str]], stages: _Stages, total: int
    ) -> None:
        _check_types(cursor, table, spec)
        self.cursor, self.table, self.spec = cursor, table, spec
        self.stages, self.total, self.done = stages, total, 0
        self.copy: Any = None

    def __enter__(self) -> _Copy:
        names = ", ".join(name for name, _ in self.spec)
        self.context = self.cursor.copy(f"COPY {self.table} ({names}) FROM STDIN (FORMAT BINARY)")
        self.copy = self.context.__enter__()
        self.copy.write(COPY_HEADER)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.copy.write(COPY_TRAILER)
        self.context.__exit__(*exc)

    def write(self, rows: int, values: Mapping[str, Any]) -> None:
        for start in range(0, rows, COPY_CHUNK):
            end = min(rows, start + COPY_CHUNK)
            chunk = [(kind, _rows(values[name], start, end)) for name, kind in self.spec]
            self.copy.write(_encode(chunk, end - start))
            self.done += end - start
            self.stages.report(self.done, self.total)


def _rows(value: Any, start: int, end: int) -> Any:
    return value[start:end] if isinstance(value, np.ndarray) else value


def _check_types(cursor: Any, table: str, spec: Sequence[tuple[str, str]]) -> None:
    """Binary COPY needs exact types: compare ours with the table's (a changed schema fails here)."""
    cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    actual = dict(cursor.fetchall())
    for name, kind in spec:
        if not str(actual.get(name, "")).startswith(_PG_TYPES[kind]):
            raise ContinentError(f"{table}.{name} is {actual.get(name)!r}, the generator writes {kind}")


def _drop_secondary(cursor: Any) -> list[str]:
    """Drop the big tables' foreign keys, unique constraints and plain indexes; return the
    statements that restore them (unique first, then indexes, then foreign keys)."""
    cursor.execute(
        "SELECT c.conname, c.conrelid::regclass::text, c.contype, pg_get_constraintdef(c.oid) "
        "FROM pg_constraint c WHERE c.conrelid::regclass::text = ANY(%s) AND c.contype IN ('f', 'u') "
        "ORDER BY c.contype DESC, c.conrelid::regclass::text, c.conname",
        (list(BIG_TABLES),),
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid "
        "AND c.conrelid = i.indrelid) ORDER BY 1",
        (list(BIG_TABLES),),
    )
    indexes = cursor.fetchall()
    restore = [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for n, t, kind, d in constraints if kind == "u"]
    restore += [definition for _, definition in indexes]
    restore += [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for n, t, kind, d in constraints if kind == "f"]
    for name, table, _, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f"DROP INDEX {name}")
    return restore


#: Per lot: the balance against the sum of its events, and the lowest running balance in event
#: order. One pass over the events, sorted (a scan of the lot index would read them at random).
VERIFY_LOTS = """
SELECT count(*) FILTER (WHERE b.lot_id IS NULL OR b.on_hand <> coalesce(e.on_hand, 0)
                        OR b.reserved <> coalesce(e.reserved, 0)),
       count(*) FILTER (WHERE e.lowest < 0)
FROM lots l
LEFT JOIN lot_balances b ON b.lot_id = l.id
LEFT JOIN (
    SELECT lot_id, sum(on_hand_delta) AS on_hand, sum(reserved_delta) AS reserved, min(running) AS lowest
    FROM (SELECT lot_id, on_hand_delta, reserved_delta,
                 sum(on_hand_delta) OVER (PARTITION BY lot_id ORDER BY id) AS running
          FROM stock_events) ordered
    GROUP BY lot_id
) e ON e.lot_id = l.id
"""
#: Per facility x product: the balance against the sum of its lots' balances.
VERIFY_STOCK = """
SELECT count(*) FROM stock_balances s
FULL JOIN (SELECT facility_id, product_id, sum(on_hand) AS on_hand, sum(reserved) AS reserved
           FROM lot_balances GROUP BY facility_id, product_id) l USING (facility_id, product_id)
WHERE s.on_hand IS DISTINCT FROM l.on_hand OR s.reserved IS DISTINCT FROM l.reserved
"""


def _empty(connection: Connection) -> bool:
    return not any(
        connection.scalar(text(f"SELECT EXISTS (SELECT 1 FROM {table})"))  # noqa: S608 - our names
        for table in MUST_BE_EMPTY
    )


# --- the load ------------------------------------------------------------------------------------


def seed_continent(
    target: Engine | str,
    *,
    seed: int,
    scale: float = 1.0,
    today: date,
    progress: Progress | None = None,
) -> ContinentSummary:
    """Load the continent-scale demo into an empty, migrated PostgreSQL database, in one
    transaction; `progress(stage, done, total)` hears of each stage. Raises ContinentError if the
    database is not PostgreSQL or not empty, or if the balances fail their check."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        if engine.dialect.name != "postgresql":
            raise ContinentError(NOT_POSTGRES)
        plan = plan_counts(scale)
        summary = ContinentSummary(plan)
        stages = _Stages(summary, progress)
        with engine.connect() as connection:
            with connection.begin():
                if not _empty(connection):
                    raise ContinentError("the database is not empty: the continent demo loads into a new one")
                _load(connection, plan, summary, stages, seed=seed, today=today)
            stages.start("analyze")
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(BIG_TABLES)}")
            autocommit.exec_driver_sql("ANALYZE")
            summary.database_bytes = int(
                autocommit.scalar(text("SELECT pg_database_size(current_database())")) or 0
            )
            stages.finish(0)
        return summary
    finally:
        if isinstance(target, str):
            engine.dispose()


def _load(
    connection: Connection,
    plan: ContinentPlan,
    summary: ContinentSummary,
    stages: _Stages,
    *,
    seed: int,
    today: date,
) -> None:
    created = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=HISTORY_DAYS + 30)
    rng = random.Random(seed)
    generator = np.random.default_rng(seed)
    stages.start("registry")
    sites = _sites(rng, plan, created)
    items = _items(random.Random(f"continent-products-{seed}"), created)
    authorisations, recognitions, allowed = _regulatory(rng, items, today, created)
    users = _users(sites, created)
    connection.execute(
        insert(Jurisdiction),
        [
            {
                "id": m + 1,
                "iso3": au.iso3,
                "name": au.name,
                "income_group": IncomeGroup(au.income_group),
                "population": au.population,
                "data_protection_regime": "",
                "time_zones": list(au.time_zones),
                "capital": au.capital,
                "created_at": created,
                "updated_at": created,
            }
            for m, au in enumerate(AU_MEMBERS)
        ],
    )
    connection.execute(
        insert(JurisdictionBloc),
        [{"jurisdiction_id": m + 1, "bloc": AU_BLOC} for m in range(len(AU_MEMBERS))],
    )
    for model, rows in (
        (Facility, sites.rows),
        (Product, items.rows),
        (Authorisation, authorisations),
        (RecognitionAgreement, recognitions),
        (User, users),
    ):
        for start in range(0, len(rows), 5000):
            connection.execute(insert(model), rows[start : start + 5000])
    summary.members, summary.facilities, summary.products = len(AU_MEMBERS), len(sites.rows), len(items.rows)
    summary.authorisations, summary.recognitions, summary.users = (
        len(authorisations),
        len(recognitions),
        len(users),
    )
    stages.finish(len(sites.rows) + len(items.rows) + len(authorisations) + len(recognitions) + len(users))

    stages.start("generate")
    stock = _stock(generator, plan, sites, items, today)
    needs = _needs(generator, plan, sites, items, stock, allowed, users, today)
    pledges = _pledges(sites, items, stock, users, today)
    stages.finish(len(stock.event_lot) + len(stock.lot_facility) + len(needs.rows))

    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
    cursor.execute("SET LOCAL work_mem = '256MB'")
    cursor.execute("SET LOCAL jit = off")  # the rebuilds and checks are one-off scans: no compiling
    restore = _drop_secondary(cursor)
    _copy_stock(cursor, connection, stock, stages, summary, seed=seed, today=today)
    _copy_needs(cursor, needs, stages, summary)
    if pledges:
        connection.execute(insert(Pledge), pledges)
    summary.pledges = len(pledges)

    stages.start("indexes", len(restore))
    for done, statement in enumerate(restore, start=1):
        cursor.execute(statement)
        stages.report(done, len(restore))
    for table in ID_TABLES:
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - our names
            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )
    stages.finish(len(restore))

    stages.start("verify", 2)
    cursor.execute("SET LOCAL enable_indexscan = off")
    cursor.execute(VERIFY_LOTS)
    summary.lot_mismatches, summary.negative_running_balances = cursor.fetchone() or (-1, -1)
    stages.report(1, 2)
    cursor.execute(VERIFY_STOCK)
    summary.stock_mismatches = (cursor.fetchone() or (-1,))[0]
    if not summary.verified:
        raise ContinentError(
            f"balances do not match their events ({summary.lot_mismatches} lots, "
            f"{summary.stock_mismatches} facility x product totals, {summary.negative_running_balances} "
            "negative running balances); nothing was loaded"
        )
    stages.finish(summary.lots)


def _copy_stock(
    cursor: Any,
    connection: Connection,
    stock: _Stock,
    stages: _Stages,
    summary: ContinentSummary,
    *,
    seed: int,
    today: date,
) -> None:
    lots = len(stock.lot_facility)
    ids = np.arange(1, lots + 1, dtype=np.int64)
    stages.start("lots", lots)
    spec = [
        ("id", "int4"),
        ("facility_id", "int4"),
        ("product_id", "int4"),
        ("lot_number", "text"),
        ("expiry_date", "date"),
        ("created_at", "ts"),
    ]
    with _Copy(cursor, "lots", spec, stages, lots) as copy:
        for dated in (True, False):  # expiry NULL (serialised equipment) is a different row shape
            pick = np.flatnonzero((stock.lot_expiry >= 0) == dated)
            copy.write(
                len(pick),
                {
                    "id": ids[pick],
                    "facility_id": stock.lot_facility[pick] + 1,
                    "product_id": stock.lot_product[pick] + 1,
                    "lot_number": stock.lot_number[pick],
                    "expiry_date": stock.lot_expiry[pick] if dated else None,
                    "created_at": stock.lot_received[pick],
                },
            )
    summary.lots = lots
    stages.finish(lots)

    events = len(stock.event_lot)
    summary.issues = int(stock.event_issue.sum())
    summary.receipts = events - summary.issues
    batch_rows = []
    for batch_id, (source, count) in enumerate(
        (("deliveries", summary.receipts), ("daily consumption reports", summary.issues)), start=1
    ):
        request = f"continent demo {source}: seed {seed}, scale {summary.plan.scale}, {today.isoformat()}"
        batch_rows.append(
            {
                "id": batch_id,
                "idempotency_key": None,
                "request_digest": hashlib.sha256(request.encode()).hexdigest(),
                "source": "demo",
                "events": count,
                "recorded_by": None,
                "created_at": datetime(today.year, today.month, today.day, tzinfo=UTC),
            }
        )
    connection.execute(insert(IngestBatch), batch_rows)
    stages.start("stock events", events)
    spec = [
        ("id", "int8"),
        ("lot_id", "int4"),
        ("facility_id", "int4"),
        ("product_id", "int4"),
        ("kind", "text"),
        ("quantity", "int4"),
        ("on_hand_delta", "int4"),
        ("reserved_delta", "int4"),
        ("reason", "text"),
        ("reference", "text"),
        ("counterpart_facility_id", "int4"),
        ("occurred_at", "ts"),
        ("recorded_at", "ts"),
        ("recorded_by", "int4"),
        ("batch_id", "int4"),
    ]
    report_day = (stock.event_time // DAY_US).astype(np.int64)
    with _Copy(cursor, "stock_events", spec, stages, events) as copy:
        for start in range(0, events, COPY_CHUNK):
            window = np.arange(start, min(events, start + COPY_CHUNK))
            for issue in (False, True):  # the kind's text differs in width: one shape per kind
                pick = window[stock.event_issue[window] == issue]
                lot = stock.event_lot[pick]
                quantity = stock.event_quantity[pick]
                reference = _references(lot, report_day[pick], issue)
                copy.write(
                    len(pick),
                    {
                        "id": pick + 1,
                        "lot_id": lot + 1,
                        "facility_id": stock.lot_facility[lot] + 1,
                        "product_id": stock.lot_product[lot] + 1,
                        "kind": (EventKind.ISSUE if issue else EventKind.RECEIPT).value.encode(),
                        "quantity": quantity,
                        "on_hand_delta": -quantity if issue else quantity,
                        "reserved_delta": 0,
                        "reason": b"",
                        "reference": reference,
                        "counterpart_facility_id": None,
                        "occurred_at": stock.event_time[pick],
                        "recorded_at": stock.event_time[pick] + HOUR_US,
                        "recorded_by": None,
                        "batch_id": 2 if issue else 1,
                    },
                )
    stages.finish(events)

    groups = len(stock.group_start)
    stages.start("balances", lots + groups)
    spec = [
        ("lot_id", "int4"),
        ("facility_id", "int4"),
        ("product_id", "int4"),
        ("on_hand", "int4"),
        ("reserved", "int4"),
    ]
    with _Copy(cursor, "lot_balances", spec, stages, lots + groups) as copy:
        copy.write(
            lots,
            {
                "lot_id": ids,
                "facility_id": stock.lot_facility + 1,
                "product_id": stock.lot_product + 1,
                "on_hand": stock.on_hand,
                "reserved": 0,
            },
        )
    spec = [
        ("facility_id", "int4"),
        ("product_id", "int4"),
        ("on_hand", "int4"),
        ("reserved", "int4"),
        ("updated_at", "ts"),
    ]
    with _Copy(cursor, "stock_balances", spec, stages, lots + groups) as copy:
        copy.done = lots
        copy.write(
            groups,
            {
                "facility_id": stock.lot_facility[stock.group_start] + 1,
                "product_id": stock.lot_product[stock.group_start] + 1,
                "on_hand": stock.group_on_hand,
                "reserved": 0,
                "updated_at": stock.group_updated,
            },
        )
    summary.lot_balances, summary.stock_balances = lots, groups
    stages.finish(lots + groups)


def _references(lot: Ints, day: Ints, issue: bool) -> NDArray[np.bytes_]:
    """ "GRN-00001234" (goods received note, one per lot) or "RPT-20260412" (the day's report)."""
    if issue:
        stamps = np.datetime64("2000-01-01", "D") + day.astype("timedelta64[D]")
        ymd = np.char.replace(np.datetime_as_string(stamps, unit="D"), "-", "")
        return np.char.add("RPT-", ymd).astype("S12")
    chars = np.concatenate(
        [np.frombuffer(b"GRN-", np.uint8)[None, :].repeat(len(lot), 0), _digits(lot + 1, 8)], axis=1
    )
    return np.ascontiguousarray(chars).view("S12").ravel()


def _copy_needs(cursor: Any, needs: _Needs, stages: _Stages, summary: ContinentSummary) -> None:
    total = len(needs.rows) + len(needs.transitions)
    stages.start("needs", total)
    done = 0
    for table, columns, rows in (
        ("needs", NEED_COLUMNS, needs.rows),
        ("need_transitions", TRANSITION_COLUMNS, needs.transitions),
    ):
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for start in range(0, len(rows), 50_000):
                for row in rows[start : start + 50_000]:
                    copy.write_row(row)
                done += min(50_000, len(rows) - start)
                stages.report(done, total)
    summary.needs, summary.need_transitions = len(needs.rows), len(needs.transitions)
    stages.finish(total)


def stage_rows(summary: ContinentSummary) -> Iterable[tuple[str, str, str]]:
    """The stages as (name, rows, seconds) strings, for a report."""
    for stage in summary.stages:
        yield stage.name, f"{stage.rows:,}", f"{stage.seconds:.1f}"
