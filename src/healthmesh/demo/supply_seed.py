"""Twelve weeks of stock history, an outbreak, the regional reserve, pledges and needs for the demo.

Runs after `seed_demo` and is deterministic from its seed (one `random.Random`, never the global
one, and every iteration in a fixed order). The history is simulated day by day, and every
movement is recorded through `supply.ledger.record_events`, so balances are the sum of events.

What the numbers are modelled on (orders of magnitude, not any real facility):

* Inventory control: the standard max-min system of the USAID | DELIVER *Logistics Handbook*
  (2011). Facilities report consumption weekly (the usual LMIS cadence in an emergency) and
  review stock every four weeks: below a minimum of five weeks of adjusted consumption they order
  up to nine (minimum = review period + lead time and safety stock; maximum = minimum + review
  period). Oxygen cylinders are exchanged weekly. The central medical store opens with 12-18
  weeks of national consumption and receives procurement deliveries. Lots leave first-expiry,
  first-out.
* Consumption (`RATES`): the WHO COVID-19 Essential Supplies Forecasting Tool (ESFT) assumptions,
  scaled to a mid-size hospital (about 200 beds, 15 ICU beds): some 1,500 medical masks, 300
  gowns and 400 antigen tests a week; a patient on 10 L/min of oxygen uses about two J cylinders
  (6,800 L) a day. Primary care centres and laboratories use a fraction, each for its own work.
* Expiry: opening lots carry 35-90 % of the product's shelf life; a few are short-dated, and the
  reserve depots hold older lots (the classic problem of stockpiles), so near-expiry and expired
  stock show up; facilities write expired lots off at a weekly report, often weeks late.
* The outbreak: an acute respiratory outbreak in the Philippines and Viet Nam from five weeks
  ago. Demand for tests, oxygen and PPE rises by half to double at once and by the fourth week
  reaches x5-x6 in the hotspots (x4-x5 elsewhere; PPE a little less), the pace of the 2021 Delta
  wave, when hospitals in both countries ran short of oxygen. They are chosen as large,
  lower-middle-income members with dense capitals (Metro Manila, Hanoi and Ho Chi Minh City are
  the hotspots) and because a DELSA satellite warehouse (Camp Aguinaldo) is in the Philippines,
  so a release from the regional reserve is part of the story. Stores ration what is left, so
  facilities stock out.
* Regional reserve: the DELSA depots hold about a week (Subang) or half a week (satellites) of
  the region's baseline consumption. Camp Aguinaldo released most of its outbreak stock to the
  Philippines in the second week; a consignment from Subang to Viet Nam is in transit today.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.models import User
from healthmesh.changes.service import Change, publish
from healthmesh.needs.models import Need, NeedTransition
from healthmesh.needs.workflow import OUTSTANDING, NeedStatus, Urgency
from healthmesh.registry.enums import FacilityKind, ProductCategory, StorageCondition
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply.enums import INBOUND, EventKind, PledgeStatus
from healthmesh.supply.ledger import EventInput, record_events
from healthmesh.supply.models import Pledge

HISTORY_WEEKS = 12
HISTORY_DAYS = HISTORY_WEEKS * 7
OUTBREAK_MEMBERS = ("PHL", "VNM")
OUTBREAK_WEEKS = 5
#: Cities where the outbreak is most intense (facility names begin with their city).
HOTSPOTS = ("Manila", "Quezon City", "Hanoi", "Ho Chi Minh City")
#: How strongly each product group follows the outbreak curve (testing surges first and most).
SURGE_WEIGHT = {"tests": 1.0, "oxygen": 0.9, "ppe": 0.75}
#: Members that pledge part of their central stock to the regional pool (unaffected, with stock).
PLEDGING_MEMBERS = ("SGP", "THA", "MYS", "IDN", "BRN")
BATCH_EVENTS = 50_000
#: Needs by final status: about 1,000 outstanding (submitted or open) among 1,180.
NEED_STATUSES = {
    NeedStatus.DRAFT: 59,
    NeedStatus.SUBMITTED: 177,
    NeedStatus.OPEN: 826,
    NeedStatus.REJECTED: 59,
    NeedStatus.CANCELLED: 59,
}
OUTBREAK_NEED_SHARE = 0.8

#: Time of day (UTC hour) of each kind of movement, so that a day's events apply in a fixed
#: order: write-offs, deliveries, the weekly issue report, count adjustments, dispatches.
SLOT_WRITE_OFF, SLOT_INBOUND, SLOT_ISSUE, SLOT_ADJUST, SLOT_DISPATCH = 0, 2, 6, 7, 8

#: Weekly issues, in units of issue, at a reference (hospital, primary care centre, laboratory).
RATES: dict[str, tuple[float, float, float]] = {
    "DX-AGRDT-25": (16, 6, 4),
    "DX-PCR-96": (3, 0, 8),
    "DX-PCRCART-10": (6, 2, 6),
    "DX-EXTR-250": (1, 0, 3),
    "DX-SWAB-NP": (4, 2, 10),
    "DX-VTM-3ML": (4, 1, 16),
    "PPE-MASK-MED": (30, 8, 4),
    "PPE-RESP-FFP2": (15, 3, 6),
    "PPE-GLOVE-EXM": (50, 10, 12),
    "PPE-GLOVE-SRG": (5, 0.5, 0),
    "PPE-GOWN-ISO": (30, 3, 5),
    "PPE-SHIELD": (1, 0.3, 0.5),
    "PPE-GOGGLE": (3, 0.5, 1),
    "PPE-APRON-HD": (2, 0.5, 0.5),
    "PPE-HANDRUB-500": (6, 1.5, 1.5),
    "OXY-CONC-10": (0.3, 0.05, 0),
    "OXY-CONC-5": (0.4, 0.1, 0),
    "OXY-CYL-J": (40, 2, 0),
    "OXY-REG-FM": (1, 0.2, 0),
    "OXY-HUMID": (2, 0.3, 0),
    "OXY-HFNC": (0.15, 0, 0),
    "OXY-CAN-AD": (6, 1, 0),
    "OXY-CAN-PD": (2, 0.5, 0),
    "OXY-MASK-NRB": (3, 0.3, 0),
    "BME-VENT-ICU": (0.1, 0, 0),
    "BME-VENT-TRN": (0.1, 0, 0),
    "BME-CPAP": (0.15, 0, 0),
    "BME-MON-MP": (0.2, 0, 0),
    "BME-POX-HH": (1, 0.3, 0),
    "BME-PUMP-INF": (0.3, 0, 0),
    "BME-PUMP-SYR": (0.3, 0, 0),
    "BME-SUCT-EL": (0.15, 0, 0),
    "MED-DEXA-4": (4, 0.5, 0),
    "MED-ENOX-40": (20, 0, 0),
    "MED-HEP-5K": (5, 0, 0),
    "MED-PARA-500": (40, 15, 0),
    "MED-TOCI-400": (3, 0, 0),
    "MED-BARI-4": (3, 0, 0),
    "MED-NMVR-5D": (10, 6, 0),
    "MED-REMD-100": (20, 0, 0),
    "MED-CEFT-1G": (25, 3, 0),
    "MED-MIDA-5": (8, 0, 0),
    "MED-PROP-10": (8, 0, 0),
    "MED-NORE-4": (4, 0, 0),
    "MED-ORS-1L": (2, 3, 0),
    "VAC-COMIR-6": (25, 0, 0),
    "VAC-SPIKE-10": (12, 0, 0),
    "VAC-VAXZ-10": (12, 8, 0),
    "VAC-CORV-1": (60, 40, 0),
    "VAC-NUVX-10": (8, 5, 0),
    "VAC-MR-10": (10, 12, 0),
    "VAC-BOPV-20": (6, 8, 0),
    "CON-ADSYR-05": (3, 3, 0),
    "CON-RUPSYR-5": (0.5, 1, 0),
    "CON-SBOX-5L": (0.6, 0.6, 0),
    "CON-IVCAN-20G": (10, 1, 0),
    "CON-GIVSET": (4, 0.5, 0),
    "CON-TRIPACK": (5, 3, 30),
    "CON-BODYBAG": (2, 0, 0),
}


def _codes(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Assortments: what every facility of a kind manages, and what some add (to a size drawn per
#: facility). Vaccines come on top, only where the cold chain allows (see `_Simulation.assortment`).
HOSPITAL_CORE = _codes(
    "PPE-MASK-MED PPE-RESP-FFP2 PPE-GLOVE-EXM PPE-GOWN-ISO PPE-HANDRUB-500 DX-AGRDT-25 DX-SWAB-NP "
    "OXY-CYL-J OXY-REG-FM OXY-CAN-AD OXY-MASK-NRB MED-DEXA-4 MED-PARA-500 MED-CEFT-1G MED-ENOX-40 "
    "CON-IVCAN-20G CON-GIVSET BME-POX-HH BME-MON-MP"
)
HOSPITAL_ICU = _codes("BME-VENT-ICU BME-PUMP-SYR MED-MIDA-5 MED-PROP-10 MED-NORE-4 OXY-HFNC")
HOSPITAL_OPTIONAL = _codes(
    "PPE-GLOVE-SRG PPE-SHIELD PPE-GOGGLE PPE-APRON-HD DX-VTM-3ML DX-PCRCART-10 DX-PCR-96 DX-EXTR-250 "
    "OXY-CONC-5 OXY-CONC-10 OXY-HUMID OXY-CAN-PD MED-HEP-5K MED-REMD-100 MED-NMVR-5D MED-BARI-4 "
    "MED-ORS-1L MED-TOCI-400 BME-PUMP-INF BME-SUCT-EL BME-VENT-TRN BME-CPAP CON-BODYBAG CON-TRIPACK"
)
PRIMARY_CORE = _codes(
    "PPE-MASK-MED PPE-GLOVE-EXM PPE-HANDRUB-500 PPE-RESP-FFP2 DX-AGRDT-25 MED-PARA-500 MED-ORS-1L BME-POX-HH"
)
PRIMARY_OPTIONAL = _codes(
    "PPE-GOWN-ISO PPE-SHIELD PPE-APRON-HD DX-SWAB-NP DX-PCRCART-10 MED-NMVR-5D MED-DEXA-4 MED-CEFT-1G "
    "CON-IVCAN-20G OXY-CONC-5 OXY-CAN-AD OXY-CYL-J CON-TRIPACK"
)
LAB_CORE = _codes("DX-SWAB-NP DX-VTM-3ML DX-EXTR-250 DX-PCR-96 PPE-GLOVE-EXM PPE-RESP-FFP2 CON-TRIPACK")
LAB_OPTIONAL = _codes(
    "DX-AGRDT-25 DX-PCRCART-10 PPE-GOWN-ISO PPE-SHIELD PPE-HANDRUB-500 PPE-GOGGLE PPE-MASK-MED"
)
COVID_VACCINES_2_8 = ("VAC-VAXZ-10", "VAC-CORV-1", "VAC-NUVX-10")
IMMUNIZATION_SUPPLIES = ("CON-ADSYR-05", "CON-SBOX-5L")

ADJUSTMENT_LOSSES = (
    "physical count: breakage",
    "physical count: damaged in storage (water leak)",
    "physical count: unexplained loss, reported",
    "physical count: packaging damaged in transit",
)
ADJUSTMENT_GAINS = (
    "physical count: found in secondary store",
    "physical count: correction of an issue entry",
)
REJECTION_REASONS = (
    "duplicate of an earlier request for the same period",
    "quantity exceeds the facility's storage capacity; resubmit in two deliveries",
    "consumption reports missing for the last two weeks; resubmit with the data",
    "product not authorised in this member; request an authorised equivalent",
)
CANCEL_REASONS = (
    "covered by a national redistribution",
    "entered twice by mistake",
    "received from the central medical store",
)


@dataclass(frozen=True)
class SupplySummary:
    """What `seed_supply` created; `digest` fingerprints the event stream (same seed, same digest)."""

    facility_products: int
    events: int
    batches: int
    lots: int
    needs: int
    outstanding_needs: int
    pledges: int
    outbreak_members: tuple[str, ...]
    digest: str


@dataclass
class _Site:
    id: int
    code: str
    jurisdiction_id: int
    iso3: str
    population: int
    kind: FacilityKind
    storage: frozenset[StorageCondition]
    icu: bool
    oxygen_plant: bool
    size: float = 1.0
    minute: int = 0
    report_offset: int = 7
    review_phase: int = 0
    lead_days: tuple[int, int] = (1, 4)
    outbreak: bool = False
    intensity: float = 1.0


@dataclass(frozen=True)
class _Item:
    id: int
    code: str
    category: ProductCategory
    storage: StorageCondition
    shelf_life_days: int
    equipment: bool
    group: str | None
    prefix: str


@dataclass
class _Lot:
    number: str
    expiry: date | None
    on_hand: int = 0


@dataclass
class _Stock:
    """One facility x product as the simulation tracks it."""

    site: _Site
    item: _Item
    weekly: float
    lots: dict[str, _Lot] = field(default_factory=dict)
    pipeline: int = 0
    demand: list[int] = field(default_factory=list)
    unmet: list[int] = field(default_factory=list)
    opening: list[_Lot] = field(default_factory=list)


@dataclass
class _Inbound:
    dest: _Stock
    kind: EventKind
    number: str
    expiry: date | None
    quantity: int
    reference: str
    reason: str = ""
    counterpart: int | None = None
    pipeline: bool = False


@dataclass
class _Order:
    dest: _Stock
    quantity: int
    source: _Stock | None
    reference: str = ""
    reason: str = ""
    lead: int = 0
    ration: bool = True


@dataclass
class _NeedPlan:
    stock: _Stock | None  # None: a member-level request for the central medical store
    site: _Site
    item: _Item
    quantity: int
    urgency: Urgency
    needed_by: date
    population: int
    justification: str


_STORES = (FacilityKind.NATIONAL_WAREHOUSE, FacilityKind.REGIONAL_RESERVE_DEPOT)


def _fefo(lot: _Lot) -> tuple[date, str]:
    return (lot.expiry or date.max, lot.number)


def _group(code: str, category: ProductCategory) -> str | None:
    """The outbreak product groups: tests (diagnostics), oxygen (the OXY- lines) and PPE."""
    if category is ProductCategory.DIAGNOSTICS:
        return "tests"
    if category is ProductCategory.PPE:
        return "ppe"
    return "oxygen" if code.startswith("OXY-") else None


def _storage(facility: Facility) -> frozenset[StorageCondition]:
    capabilities = {StorageCondition.AMBIENT}
    if facility.cold_chain_2_8:
        capabilities.add(StorageCondition.COLD_2_8)
    if facility.cold_chain_minus20:
        capabilities.add(StorageCondition.FROZEN_MINUS20)
    if facility.cold_chain_minus70:
        capabilities.add(StorageCondition.ULTRA_COLD_MINUS70)
    return frozenset(capabilities)


def _weighted_sample(rng: random.Random, weighted: list[tuple[float, int]], count: int) -> list[int]:
    """Indices of `count` items drawn without replacement, in proportion to their weights
    (Efraimidis and Spirakis, 2006)."""
    keys = sorted(((rng.random() ** (1.0 / weight), index) for weight, index in weighted), reverse=True)
    return [index for _, index in keys[:count]]


class _Simulation:
    """The demo region's supply chain, day by day, emitting ledger events in the order they apply."""

    def __init__(self, rng: random.Random, today: date, sites: list[_Site], items: list[_Item]) -> None:
        self.rng = rng
        self.today = today
        self.start = today - timedelta(days=HISTORY_DAYS)
        self.outbreak_day = HISTORY_DAYS - OUTBREAK_WEEKS * 7
        self.sites = sites
        self.items = {item.code: item for item in items}
        self.stocks: dict[int, list[_Stock]] = defaultdict(list)
        self.warehouse: dict[tuple[int, int], _Stock] = {}  # (member, product) -> central store stock
        self.events: list[EventInput] = []
        self.lot_registry: dict[int, dict[str, date | None]] = defaultdict(dict)
        self.lot_keys: set[tuple[int, int, str]] = set()
        self.inbound: dict[int, list[_Inbound]] = defaultdict(list)
        self.orders: dict[int, list[_Order]] = defaultdict(list)
        self.references = 0
        self._dates = [self.start + timedelta(days=n) for n in range(HISTORY_DAYS + 1)]
        self._midnight = [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in self._dates]
        self._offsets = [[timedelta(hours=h, minutes=m) for m in range(60)] for h in range(24)]

    # --- helpers ---------------------------------------------------------------------------------

    def day_date(self, day: int) -> date:
        return self._dates[day] if 0 <= day <= HISTORY_DAYS else self.start + timedelta(days=day)

    def units(self, value: float) -> int:
        """Whole units with stochastic rounding, so slow movers (a ventilator a month) still move."""
        whole = math.floor(value)
        return whole + (1 if self.rng.random() < value - whole else 0)

    def usable(self, stock: _Stock, day: int) -> int:
        on = self.day_date(day)
        return sum(lot.on_hand for lot in stock.lots.values() if lot.expiry is None or lot.expiry >= on)

    def surge(self, stock: _Stock, day: int) -> float:
        """Demand multiplier: x2 as the outbreak starts, x6 in hotspots (x4-x5 elsewhere) from its
        fourth week."""
        if not stock.site.outbreak or stock.item.group is None or day < self.outbreak_day:
            return 1.0
        peak = min(6.0, 2.0 + 1.2 * (day - self.outbreak_day) / 7)
        return 1.0 + (peak - 1.0) * SURGE_WEIGHT[stock.item.group] * stock.site.intensity

    def new_lot(self, item: _Item, received: int, life: tuple[float, float]) -> _Lot:
        """A manufacturer's lot with `life` (fractions) of its shelf life left on arrival."""
        on = self.day_date(received)
        if item.equipment:  # serialised equipment has a service life, not an expiry date
            return self.numbered(item, None, on - timedelta(days=self.rng.randint(30, 400)))
        expiry = on + timedelta(days=round(item.shelf_life_days * self.rng.uniform(*life)))
        return self.numbered(item, expiry, expiry - timedelta(days=item.shelf_life_days))

    def short_dated_lot(self, item: _Item, received: int, days: tuple[int, int]) -> _Lot:
        expiry = self.day_date(received) + timedelta(days=self.rng.randint(*days))
        return self.numbered(item, expiry, expiry - timedelta(days=item.shelf_life_days))

    def numbered(self, item: _Item, expiry: date | None, made: date) -> _Lot:
        """Numbered like "AG2609-0412" (product, year and month made, serial), unique per product."""
        known = self.lot_registry[item.id]
        while True:
            number = f"{item.prefix}{made:%y%m}-{self.rng.randint(1, 9999):04d}"
            if number not in known:
                known[number] = expiry
                return _Lot(number, expiry)

    def reference(self, prefix: str, iso3: str, day: int) -> str:
        self.references += 1
        return f"{prefix}-{iso3}-{self.day_date(day):%y%m%d}-{self.references:05d}"

    def split(self, total: int, parts: int) -> list[int]:
        if parts <= 1 or total < parts:
            return [total]
        cuts = sorted(self.rng.sample(range(1, total), parts - 1))
        bounds = [0, *cuts, total]
        return [bounds[i + 1] - bounds[i] for i in range(parts)]

    def emit(
        self,
        stock: _Stock,
        lot: _Lot,
        kind: EventKind,
        quantity: int,
        day: int,
        slot: int,
        minute: int,
        *,
        reason: str = "",
        reference: str = "",
        counterpart: int | None = None,
    ) -> None:
        self.events.append(
            EventInput(
                line=len(self.events) + 1,
                facility_id=stock.site.id,
                jurisdiction_id=stock.site.jurisdiction_id,
                product_id=stock.item.id,
                lot_number=lot.number,
                expiry_date=lot.expiry if kind in INBOUND else None,
                kind=kind,
                quantity=quantity,
                occurred_at=self._midnight[day] + self._offsets[slot][minute],
                reason=reason,
                reference=reference,
                counterpart_facility_id=counterpart,
            )
        )

    def take(self, stock: _Stock, quantity: int, day: int) -> list[tuple[_Lot, int]]:
        """Take up to `quantity` from unexpired lots, first expiry first out; the portions taken."""
        on = self.day_date(day)
        portions = []
        for lot in sorted(stock.lots.values(), key=_fefo):
            if quantity <= 0:
                break
            if lot.on_hand <= 0 or (lot.expiry is not None and lot.expiry < on):
                continue
            portion = min(lot.on_hand, quantity)
            lot.on_hand -= portion
            quantity -= portion
            portions.append((lot, portion))
            if lot.on_hand == 0:
                del stock.lots[lot.number]  # the lot stays in the ledger; it just holds nothing
        return portions

    def put(self, stock: _Stock, number: str, expiry: date | None, quantity: int) -> _Lot:
        lot = stock.lots.get(number)
        if lot is None:
            lot = stock.lots[number] = _Lot(number, expiry)
            self.lot_keys.add((stock.site.id, stock.item.id, number))
        lot.on_hand += quantity
        return lot

    def receive(self, stock: _Stock, lot: _Lot, quantity: int, day: int, reference: str, reason: str) -> None:
        if quantity <= 0:
            return
        if day == 0:
            stock.opening.append(_Lot(lot.number, lot.expiry, quantity))
        self.inbound[day].append(
            _Inbound(stock, EventKind.RECEIPT, lot.number, lot.expiry, quantity, reference, reason)
        )

    # --- the assortment and opening stock ---------------------------------------------------------

    def assortment(self, site: _Site) -> list[str]:
        """Product codes a facility manages, by its kind, intensive care and cold chain."""

        def fits(code: str) -> bool:
            return code in self.items and self.items[code].storage in site.storage

        rng = self.rng
        if site.kind is FacilityKind.HOSPITAL:
            chosen = list(HOSPITAL_CORE) + (list(HOSPITAL_ICU) if site.icu else [])
            vaccines = [code for code in sorted(self.items) if code.startswith("VAC-") and fits(code)]
            if vaccines and rng.random() < 0.75:
                picked = rng.sample(vaccines, min(len(vaccines), rng.randint(1, 3)))
                chosen += picked + list(IMMUNIZATION_SUPPLIES)
                if "VAC-MR-10" in picked:
                    chosen.append("CON-RUPSYR-5")
            optional, target = list(HOSPITAL_OPTIONAL), rng.randint(25, 35)
        elif site.kind is FacilityKind.PRIMARY_CARE:
            chosen = list(PRIMARY_CORE)
            if StorageCondition.COLD_2_8 in site.storage:
                chosen += [
                    "VAC-MR-10",
                    rng.choice(COVID_VACCINES_2_8),
                    "CON-RUPSYR-5",
                    *IMMUNIZATION_SUPPLIES,
                ]
            optional, target = list(PRIMARY_OPTIONAL), rng.randint(12, 18)
        else:
            chosen, optional, target = list(LAB_CORE), list(LAB_OPTIONAL), rng.randint(6, 10)
        chosen = [code for code in chosen if fits(code)]
        optional = [code for code in optional if fits(code) and code not in chosen]
        if len(chosen) < target:
            chosen += rng.sample(optional, min(len(optional), target - len(chosen)))
        return sorted(set(chosen))

    def weekly_rate(self, site: _Site, item: _Item) -> float:
        column = {FacilityKind.HOSPITAL: 0, FacilityKind.PRIMARY_CARE: 1, FacilityKind.LABORATORY: 2}
        rate = RATES[item.code][column[site.kind]] * site.size * self.rng.uniform(0.75, 1.25)
        if item.code == "OXY-CYL-J" and site.oxygen_plant:
            rate *= 0.3  # the plant feeds the wards; cylinders are the back-up
        return rate

    def build(self) -> None:
        """Assortments, then opening balances (a stock count at go-live, 12 weeks ago)."""
        facilities = [site for site in self.sites if site.kind not in _STORES]
        for site in facilities:
            for code in self.assortment(site):
                item = self.items[code]
                rate = self.weekly_rate(site, item)
                if rate > 0:
                    self.stocks[site.id].append(_Stock(site, item, rate))
        national: dict[tuple[int, int], float] = defaultdict(float)
        regional: dict[int, float] = defaultdict(float)
        for site in facilities:
            for stock in self.stocks[site.id]:
                national[(site.jurisdiction_id, stock.item.id)] += stock.weekly
                regional[stock.item.id] += stock.weekly
        for site in self.sites:
            if site.kind is FacilityKind.NATIONAL_WAREHOUSE:
                self.open_warehouse(site, national)
            elif site.kind is FacilityKind.REGIONAL_RESERVE_DEPOT:
                self.open_depot(site, regional)
        for site in facilities:
            for stock in self.stocks[site.id]:
                self.open_facility(stock)

    def open_warehouse(self, site: _Site, national: dict[tuple[int, int], float]) -> None:
        """The central medical store: 12-18 weeks of national consumption in two or three lots,
        a procurement delivery for most products mid-period, and in the outbreak members a small
        emergency delivery of tests, oxygen and PPE (all the market could supply)."""
        rng = self.rng
        for item in sorted(self.items.values(), key=lambda i: i.code):
            if item.storage not in site.storage:
                continue
            weekly = national.get((site.jurisdiction_id, item.id), 0.0) or max(RATES[item.code]) * 0.5
            stock = _Stock(site, item, weekly)
            self.stocks[site.id].append(stock)
            self.warehouse[(site.jurisdiction_id, item.id)] = stock
            total = max(round(weekly * rng.uniform(12, 18)), 4)
            for share in self.split(total, rng.randint(2, 3)):
                self.receive(
                    stock, self.new_lot(item, 0, (0.5, 0.95)), share, 0, "OPENING", "opening balance"
                )
            if rng.random() < 0.75:
                day = rng.randint(28, 63)
                lot, quantity = (
                    self.new_lot(item, day, (0.75, 0.95)),
                    max(round(weekly * rng.uniform(6, 12)), 2),
                )
                self.receive(stock, lot, quantity, day, self.reference("PO", site.iso3, day), "procurement")
            if site.outbreak and item.group is not None:
                day = self.outbreak_day + 10
                lot, quantity = (
                    self.new_lot(item, day, (0.75, 0.95)),
                    max(round(weekly * rng.uniform(2, 3)), 2),
                )
                reason = "emergency procurement, outbreak response"
                self.receive(stock, lot, quantity, day, self.reference("PO", site.iso3, day), reason)

    def open_depot(self, site: _Site, regional: dict[int, float]) -> None:
        """A DELSA stockpile: all but vaccines, about a week (Subang) or half a week (satellites)
        of the region's consumption. The older lot is often near or past its expiry."""
        weeks = 1.0 if "SUBANG" in site.code else 0.5
        for item in sorted(self.items.values(), key=lambda i: i.code):
            if item.category is ProductCategory.VACCINE or item.storage not in site.storage:
                continue
            stock = _Stock(site, item, 0.0)
            self.stocks[site.id].append(stock)
            total = max(round(regional.get(item.id, 0.0) * weeks * (4 if item.equipment else 1)), 10)
            older, newer = self.split(total, 2)
            if not item.equipment and self.rng.random() < 0.35:
                lot = self.short_dated_lot(item, 0, (30, 200))
            else:
                lot = self.new_lot(item, 0, (0.3, 0.6))
            self.receive(stock, lot, older, 0, "OPENING", "regional reserve: opening balance")
            lot = self.new_lot(item, 0, (0.6, 0.95))
            self.receive(stock, lot, newer, 0, "OPENING", "regional reserve: opening balance")

    def open_facility(self, stock: _Stock) -> None:
        """Four to nine weeks of stock in one or two lots, mostly lots the central store also holds;
        a few are short-dated."""
        item, rng = stock.item, self.rng
        total = round(stock.weekly * rng.uniform(4, 9))
        if item.equipment:
            total = max(total, rng.randint(1, 3))
        if total <= 0:
            return
        parts = self.split(total, 2) if total >= 4 and rng.random() < 0.5 else [total]
        central = self.warehouse.get((stock.site.jurisdiction_id, item.id))
        for index, part in enumerate(parts):
            if index == 0 and not item.equipment and rng.random() < 0.07:
                lot = self.short_dated_lot(item, 0, (25, 160))
            elif central is not None and central.opening and rng.random() < 0.7:
                lot = rng.choice(central.opening)
            else:
                lot = self.new_lot(item, 0, (0.35, 0.9))
            self.receive(stock, lot, part, 0, "OPENING", "opening balance")

    # --- the day loop -----------------------------------------------------------------------------

    def run(self) -> None:
        facilities = sorted((s for s in self.sites if s.kind not in _STORES), key=lambda s: (s.minute, s.id))
        stores = sorted((s for s in self.sites if s.kind in _STORES), key=lambda s: (s.minute, s.id))
        self.plan_reserve_releases()
        for day in range(HISTORY_DAYS + 1):
            reporting = [s for s in facilities if day >= s.report_offset and (day - s.report_offset) % 7 == 0]
            for site in reporting + (stores if day in (28, 56, 84) else []):
                self.write_off(site, day)
            self.deliver(day)
            for site in reporting:
                self.report(site, day)
            self.dispatch(day)

    def write_off(self, site: _Site, day: int) -> None:
        """Expired lots found at a weekly report or a store count are destroyed, often weeks late."""
        on = self.day_date(day)
        chance = 0.2 if site.kind in _STORES else 0.35
        for stock in self.stocks[site.id]:
            for lot in sorted(stock.lots.values(), key=_fefo):
                if lot.expiry is None or lot.expiry >= on or lot.on_hand <= 0 or self.rng.random() >= chance:
                    continue
                reason = f"expired {lot.expiry.isoformat()}; destroyed under national waste rules"
                self.emit(
                    stock,
                    lot,
                    EventKind.EXPIRY_WRITEOFF,
                    lot.on_hand,
                    day,
                    SLOT_WRITE_OFF,
                    site.minute,
                    reason=reason,
                )
                lot.on_hand = 0
                del stock.lots[lot.number]

    def deliver(self, day: int) -> None:
        arrivals = sorted(enumerate(self.inbound.pop(day, [])), key=lambda e: (e[1].dest.site.minute, e[0]))
        for _, entry in arrivals:
            lot = self.put(entry.dest, entry.number, entry.expiry, entry.quantity)
            if entry.pipeline:
                entry.dest.pipeline -= entry.quantity
            self.emit(
                entry.dest,
                lot,
                entry.kind,
                entry.quantity,
                day,
                SLOT_INBOUND,
                entry.dest.site.minute,
                reason=entry.reason,
                reference=entry.reference,
                counterpart=entry.counterpart,
            )

    def report(self, site: _Site, day: int) -> None:
        """The weekly report: issues (the demand that stock could meet), a count adjustment now and
        then, and requisitions."""
        review = (day - site.report_offset) // 7 % 4 == site.review_phase
        for stock in self.stocks[site.id]:
            noise = min(max(self.rng.gauss(1.0, 0.12), 0.6), 1.5)
            demand = self.units(stock.weekly * self.surge(stock, day) * noise)
            issued = 0
            for lot, portion in self.take(stock, demand, day):
                self.emit(stock, lot, EventKind.ISSUE, portion, day, SLOT_ISSUE, site.minute)
                issued += portion
            stock.demand.append(demand)
            stock.unmet.append(demand - issued)
            if review and self.rng.random() < 0.025:
                self.adjust(stock, day)
            self.requisition(stock, day, review)

    def adjust(self, stock: _Stock, day: int) -> None:
        lots = [lot for lot in sorted(stock.lots.values(), key=_fefo) if lot.on_hand > 0]
        if not lots:
            return
        lot = lots[0]
        change = max(1, round(lot.on_hand * self.rng.uniform(0.01, 0.05)))
        if self.rng.random() < 0.75:
            change, reason = -min(change, lot.on_hand), self.rng.choice(ADJUSTMENT_LOSSES)
        else:
            reason = self.rng.choice(ADJUSTMENT_GAINS)
        lot.on_hand += change
        if lot.on_hand == 0:
            del stock.lots[lot.number]
        self.emit(
            stock, lot, EventKind.ADJUSTMENT, change, day, SLOT_ADJUST, stock.site.minute, reason=reason
        )

    def requisition(self, stock: _Stock, day: int, review: bool) -> None:
        """Standard max-min: at the four-weekly review, order up to nine weeks of adjusted
        consumption when under five (cylinders: weekly, up to two weeks); in the outbreak also an
        emergency order whenever under two weeks of demand is in hand or on the way."""
        cylinders = stock.item.code == "OXY-CYL-J"
        surging = stock.site.outbreak and stock.item.group is not None and day >= self.outbreak_day
        if not (review or cylinders or surging):
            return
        recent = stock.demand[-4:]
        amc = sum(recent) / len(recent)
        position = self.usable(stock, day) + stock.pipeline
        if review or cylinders:
            low, high = (1.5 * amc, 2.0 * amc) if cylinders else (5.0 * amc, 9.0 * amc)
            if stock.item.equipment:  # keep a spare or two, however slowly they move
                spare = 2 if stock.site.kind is FacilityKind.HOSPITAL else 1
                low, high = max(low, spare), max(high, spare)
            if position >= low and not (surging and position < 2 * stock.demand[-1]):
                return
            target = high
        else:
            last = stock.demand[-1]
            if position >= 2 * last:
                return
            target = 4 * last
        quantity = math.ceil(target - position)
        if quantity <= 0 or (not stock.item.equipment and quantity < 0.5 * amc):
            return
        source = self.warehouse.get((stock.site.jurisdiction_id, stock.item.id))
        self.orders[day].append(_Order(stock, quantity, source, lead=self.rng.randint(*stock.site.lead_days)))

    def dispatch(self, day: int) -> None:
        orders = sorted(enumerate(self.orders.pop(day, [])), key=lambda e: (e[1].dest.site.minute, e[0]))
        for _, order in orders:
            dest, source = order.dest, order.source
            if source is None:  # not held centrally (ultra-cold chain): the supplier delivers direct
                lot = self.new_lot(dest.item, day + order.lead, (0.6, 0.9))
                reference = self.reference("PO", dest.site.iso3, day)
                reason = "direct delivery from the supplier"
                self.schedule(
                    day + order.lead,
                    _Inbound(
                        dest, EventKind.RECEIPT, lot.number, lot.expiry, order.quantity, reference, reason
                    ),
                )
                continue
            available = self.usable(source, day)
            quantity = min(order.quantity, available)
            if order.ration and available < 4 * order.quantity:
                # scarce: the store rations what is left, a third at a time, down to the last unit
                quantity = min(order.quantity, max(available // 3, 1 if available else 0))
            if quantity <= 0:
                continue
            reference = order.reference or self.reference("RS", source.site.iso3, day)
            reason = order.reason or "resupply"
            for lot, portion in self.take(source, quantity, day):
                self.emit(
                    source,
                    lot,
                    EventKind.TRANSFER_OUT,
                    portion,
                    day,
                    SLOT_DISPATCH,
                    dest.site.minute,
                    reason=reason,
                    reference=reference,
                    counterpart=dest.site.id,
                )
                inbound = _Inbound(
                    dest,
                    EventKind.TRANSFER_IN,
                    lot.number,
                    lot.expiry,
                    portion,
                    reference,
                    reason,
                    source.site.id,
                )
                self.schedule(day + order.lead, inbound)

    def schedule(self, day: int, entry: _Inbound) -> None:
        """Book a delivery; one due after today is still in transit (the pipeline)."""
        entry.pipeline = True
        entry.dest.pipeline += entry.quantity
        if day <= HISTORY_DAYS:
            self.inbound[day].append(entry)

    def plan_reserve_releases(self) -> None:
        """DELSA releases: Camp Aguinaldo to the Philippines' central store in the outbreak's second
        week (long arrived), Subang to Viet Nam's two days ago (in transit today)."""
        by_code = {site.code: site for site in self.sites}
        releases = (
            ("RRD-PHL-AGUINALDO", "PHL", self.outbreak_day + 12, 0.6, 1),
            ("RRD-MYS-SUBANG", "VNM", HISTORY_DAYS - 2, 0.35, 5),
        )
        for depot_code, iso3, day, share, lead in releases:
            depot = by_code.get(depot_code)
            if depot is None:
                continue
            reference = f"DELSA-REL-{iso3}-{self.day_date(day):%y%m%d}"
            for stock in self.stocks[depot.id]:
                dest = next(
                    (s for (_, p), s in self.warehouse.items() if p == stock.item.id and s.site.iso3 == iso3),
                    None,
                )
                if stock.item.group is None or dest is None:
                    continue
                quantity = max(int(sum(lot.on_hand for lot in stock.opening) * share), 1)
                reason = f"regional reserve release: outbreak response in {iso3}"
                self.orders[day].append(_Order(dest, quantity, stock, reference, reason, lead, ration=False))

    # --- needs and pledges ------------------------------------------------------------------------

    def plan_needs(self, total: int) -> list[_NeedPlan]:
        """Requests raised over the last weeks: most from the outbreak members for tests, oxygen
        and PPE (weighted by unmet demand), the rest routine requests from the other members."""
        rng, day = self.rng, HISTORY_DAYS
        facility_stocks = [
            stock for site in self.sites if site.kind not in _STORES for stock in self.stocks[site.id]
        ]
        surging = [s for s in facility_stocks if s.site.outbreak and s.item.group is not None]
        central = [
            s
            for s in self.warehouse.values()
            if s.site.outbreak and s.item.group is not None and s.weekly > 0
        ]
        routine = [s for s in facility_stocks if not s.site.outbreak]
        outbreak_count = round(total * OUTBREAK_NEED_SHARE)
        central_count = min(len(central), round(outbreak_count * 0.08))
        plans: list[_NeedPlan] = []
        weights = [(sum(s.unmet[-3:]) / max(s.weekly, 0.1) + 0.3, i) for i, s in enumerate(surging)]
        for index in _weighted_sample(rng, weights, outbreak_count - central_count):
            plans.append(self.outbreak_need(surging[index], day))
        for index in _weighted_sample(rng, [(1.0, i) for i in range(len(central))], central_count):
            plans.append(self.outbreak_need(central[index], day, member_level=True))
        weights = [(1.0 / (0.5 + self.usable(s, day) / max(s.weekly, 0.1)), i) for i, s in enumerate(routine)]
        for index in _weighted_sample(rng, weights, total - len(plans)):
            plans.append(self.routine_need(routine[index]))
        return plans

    def needed_by(self) -> date:
        return self.today + timedelta(days=self.rng.randint(14, 42))

    def population(self, site: _Site) -> int:
        rng = self.rng
        if site.kind is FacilityKind.HOSPITAL:
            served = site.size * rng.uniform(120_000, 350_000)
        elif site.kind is FacilityKind.PRIMARY_CARE:
            served = rng.uniform(8_000, 45_000)
        elif site.kind is FacilityKind.LABORATORY:
            served = rng.uniform(300_000, 2_500_000)
        else:
            served = site.population * rng.uniform(0.05, 0.3)
        return int(round(served, -2))

    def outbreak_need(self, stock: _Stock, day: int, *, member_level: bool = False) -> _NeedPlan:
        rng, item, site = self.rng, stock.item, stock.site
        needed_by = self.needed_by()
        weeks = (needed_by - self.today).days / 7
        # a national request looks at the hotspots' peak; a facility at its own demand today
        surge = 1 + 5 * SURGE_WEIGHT.get(item.group or "", 0.0) if member_level else self.surge(stock, day)
        share = rng.uniform(0.2, 0.4) if member_level else rng.uniform(0.5, 0.9)
        quantity = max(1, math.ceil(stock.weekly * surge * weeks * share))
        if item.equipment:
            quantity = min(quantity, 20 if member_level else 6)
        usable = self.usable(stock, day)
        cover = round(7 * usable / max(stock.weekly * surge, 0.1))
        if member_level:
            why = (
                f"National request for the central medical store: acute respiratory outbreak, demand for "
                f"{item.code} about x{surge:.0f} since {self.day_date(self.outbreak_day):%d %b}; "
                "facility orders are being rationed."
            )
        elif item.group == "tests":
            why = f"Outbreak: testing demand about x{surge:.0f}; {cover} days of {item.code} left."
        elif item.group == "oxygen":
            why = f"Outbreak: patients on oxygen about x{surge:.0f}; {cover} days of {item.code} left."
        else:
            why = f"Outbreak wards: PPE use about x{surge:.0f}; {cover} days of {item.code} left."
        urgency = rng.choices([Urgency.EMERGENCY, Urgency.URGENT, Urgency.ROUTINE], [40, 50, 10])[0]
        return _NeedPlan(
            None if member_level else stock,
            site,
            item,
            quantity,
            urgency,
            needed_by,
            self.population(site),
            why,
        )

    def routine_need(self, stock: _Stock) -> _NeedPlan:
        rng = self.rng
        quantity = max(1, math.ceil(stock.weekly * rng.uniform(3, 8)))
        why = rng.choice(
            (
                "Routine replenishment: stock below the one-month minimum; central delivery delayed.",
                "Replacement of stock lost to expiry at the last count.",
                "Seasonal rise in respiratory admissions expected next month.",
                "Catch-up immunization sessions planned in the district.",
            )
        )
        urgency = rng.choices([Urgency.EMERGENCY, Urgency.URGENT, Urgency.ROUTINE], [3, 22, 75])[0]
        return _NeedPlan(
            stock,
            stock.site,
            stock.item,
            quantity,
            urgency,
            self.needed_by(),
            self.population(stock.site),
            why,
        )

    def plan_pledges(self) -> list[tuple[_Stock, int, date, date, str]]:
        """Unaffected members offer 10-30 % of their central stock of outbreak products to the pool."""
        rng, day = self.rng, HISTORY_DAYS
        affected = " and ".join(OUTBREAK_MEMBERS)
        plans = []
        for iso3 in PLEDGING_MEMBERS:
            candidates = sorted(
                (
                    s
                    for s in self.warehouse.values()
                    if s.site.iso3 == iso3
                    and s.item.group is not None
                    and self.usable(s, day) >= (10 if s.item.equipment else 100)
                ),
                key=lambda s: s.item.code,
            )
            for stock in rng.sample(candidates, min(len(candidates), rng.randint(3, 5))):
                quantity = max(1, int(self.usable(stock, day) * rng.uniform(0.1, 0.3)))
                valid_from = self.today - timedelta(days=rng.randint(2, 14))
                valid_to = self.today + timedelta(days=rng.randint(45, 120))
                note = f"Offered to the ASEAN regional pool for the outbreak response in {affected}"
                plans.append((stock, quantity, valid_from, valid_to, note))
        return plans


# --- loading, writing --------------------------------------------------------------------------


def _load(db: Session, rng: random.Random) -> tuple[list[_Site], list[_Item]]:
    populations = {
        j: population for j, population in db.execute(select(Jurisdiction.id, Jurisdiction.population))
    }
    iso3s = {j: iso3 for j, iso3 in db.execute(select(Jurisdiction.id, Jurisdiction.iso3))}
    sites = []
    for index, facility in enumerate(db.scalars(select(Facility).order_by(Facility.code))):
        iso3 = iso3s[facility.jurisdiction_id]
        site = _Site(
            id=facility.id,
            code=facility.code,
            jurisdiction_id=facility.jurisdiction_id,
            iso3=iso3,
            population=populations[facility.jurisdiction_id],
            kind=facility.kind,
            storage=_storage(facility),
            icu=facility.icu_beds > 0,
            oxygen_plant=facility.oxygen_plant,
        )
        if site.kind is FacilityKind.HOSPITAL:
            site.size = 0.6 + facility.icu_beds / 25
        elif site.kind is FacilityKind.PRIMARY_CARE:
            site.size = rng.uniform(0.6, 1.4)
        elif site.kind is FacilityKind.LABORATORY:
            site.size = rng.uniform(0.7, 1.5) * (1.3 if facility.lab_biosafety_level == 3 else 1.0)
        site.minute = rng.randrange(60)
        site.report_offset = rng.randint(1, 7)
        site.review_phase = index % 4
        site.lead_days = (3, 9) if iso3 in ("PHL", "IDN") else (2, 7) if iso3 in ("MMR", "LAO") else (1, 4)
        site.outbreak = iso3 in OUTBREAK_MEMBERS
        if site.outbreak:
            hotspot = facility.name.startswith(HOTSPOTS)
            site.intensity = 1.0 if hotspot else rng.uniform(0.7, 0.9)
        sites.append(site)
    items = []
    for product in db.scalars(select(Product).order_by(Product.code)):
        if product.code not in RATES:
            continue  # a product added after the demo catalogue: no history for it
        parts = product.code.split("-")
        items.append(
            _Item(
                id=product.id,
                code=product.code,
                category=product.category,
                storage=product.storage_condition,
                shelf_life_days=product.shelf_life_days,
                equipment=product.is_discrete_equipment,
                group=_group(product.code, product.category),
                prefix=(parts[1] if len(parts) > 1 else parts[0])[:2].upper(),
            )
        )
    return sites, items


def _canonical(event: EventInput, facilities: dict[int, str], products: dict[int, str]) -> str:
    counterpart = facilities.get(event.counterpart_facility_id or 0, "")
    expiry = event.expiry_date.isoformat() if event.expiry_date else ""
    return (
        f"{facilities[event.facility_id]}|{products[event.product_id]}|{event.lot_number}|{expiry}|"
        f"{event.kind.value}|{event.quantity}|{event.occurred_at.isoformat()}|{event.reason}|"
        f"{event.reference}|{counterpart}\n"
    )


def _record(
    db: Session,
    events: list[EventInput],
    sites: list[_Site],
    items: list[_Item],
    progress: Callable[[str], None] | None,
) -> tuple[int, str]:
    """Write the events in batches of about 50,000, in the order they happened."""
    events.sort(key=lambda event: event.occurred_at)  # stable: same-time events keep their order
    facilities = {site.id: site.code for site in sites}
    products = {item.id: item.code for item in items}
    overall = hashlib.sha256()
    batches = 0
    for start in range(0, len(events), BATCH_EVENTS):
        batch = events[start : start + BATCH_EVENTS]
        payload = "".join(_canonical(event, facilities, products) for event in batch).encode()
        overall.update(payload)
        record_events(
            db, batch, user_id=None, source="demo", request_digest=hashlib.sha256(payload).hexdigest()
        )
        batches += 1
        if progress is not None:
            progress(f"recorded stock events {start + len(batch):,}/{len(events):,}")
    return batches, overall.hexdigest()


def _users(db: Session) -> tuple[dict[str, int], dict[int, list[int]]]:
    """Focal points by member, and the facility-scoped users (managers, clinicians) by facility."""
    focal: dict[str, int] = {}
    at_facility: dict[int, list[int]] = defaultdict(list)
    for user in db.scalars(select(User).order_by(User.username)):
        if user.username.startswith("fp."):
            focal[user.username[3:].upper()] = user.id
        elif user.facility_id is not None:
            at_facility[user.facility_id].append(user.id)
    return focal, at_facility


def _write_needs(db: Session, rng: random.Random, plans: list[_NeedPlan], today: date) -> list[Need]:
    """Needs with their whole history: created as drafts, submitted, then endorsed and opened by
    the member's focal point (or rejected, or cancelled on the way)."""
    statuses = [status for status, count in NEED_STATUSES.items() for _ in range(count)]
    statuses = (statuses * (len(plans) // len(statuses) + 1))[: len(plans)]
    rng.shuffle(statuses)
    focal, at_facility = _users(db)
    now = datetime(today.year, today.month, today.day, 10, tzinfo=UTC)
    needs = []
    for plan, status in zip(plans, statuses, strict=True):
        facility_id = plan.stock.site.id if plan.stock is not None else None
        fp = focal.get(plan.site.iso3)
        local = at_facility.get(facility_id or 0)
        creator = rng.choice(local) if local else fp
        span = 24.0 if plan.site.outbreak else 40.0
        created = now - timedelta(minutes=rng.randint(12 * 60, int(span * 24 * 60)))
        submitted = min(created + timedelta(minutes=rng.randint(60, 20 * 60)), now)
        decided = min(submitted + timedelta(minutes=rng.randint(3 * 60, 60 * 60)), now)
        history = [NeedTransition(from_status=None, to_status=NeedStatus.DRAFT, actor_id=creator, at=created)]
        need = Need(
            jurisdiction_id=plan.site.jurisdiction_id,
            facility_id=facility_id,
            product_id=plan.item.id,
            quantity=plan.quantity,
            urgency=plan.urgency,
            needed_by=plan.needed_by,
            justification=plan.justification,
            population_served=plan.population,
            status=status,
            created_by=creator,
            created_at=created,
        )
        path = _path(rng, status)
        if NeedStatus.SUBMITTED in path:
            need.submitted_at = submitted
            history.append(_step(NeedStatus.DRAFT, NeedStatus.SUBMITTED, creator, submitted))
        if NeedStatus.OPEN in path:
            need.endorsed_by, need.endorsed_at = fp, decided
            history.append(_step(NeedStatus.SUBMITTED, NeedStatus.ENDORSED, fp, decided))
            note = "opened to regional allocation on endorsement"
            history.append(_step(NeedStatus.ENDORSED, NeedStatus.OPEN, fp, decided, note))
        if status is NeedStatus.REJECTED:
            need.rejection_reason = rng.choice(REJECTION_REASONS)
            history.append(
                _step(NeedStatus.SUBMITTED, NeedStatus.REJECTED, fp, decided, need.rejection_reason)
            )
        if status is NeedStatus.CANCELLED:
            last = path[-1]
            at = min(decided + timedelta(minutes=rng.randint(2 * 60, 48 * 60)), now)
            actor = fp if last is NeedStatus.OPEN else creator
            history.append(_step(last, NeedStatus.CANCELLED, actor, at, rng.choice(CANCEL_REASONS)))
        need.history = history
        need.updated_at = max(step.at for step in history)
        needs.append(need)
    db.add_all(needs)
    db.flush()
    publish(
        db,
        [
            Change(
                "need",
                need.jurisdiction_id,
                need.facility_id,
                {
                    "need_id": need.id,
                    "status": need.status.value,
                    "product": plan.item.code,
                    "quantity": need.quantity,
                    "quantity_allocated": 0,
                },
            )
            for need, plan in zip(needs, plans, strict=True)
        ],
    )
    return needs


def _path(rng: random.Random, status: NeedStatus) -> list[NeedStatus]:
    """The statuses a need passed through before its final one (a cancellation may come at any)."""
    if status is NeedStatus.CANCELLED:
        return rng.choice(
            [
                [NeedStatus.DRAFT],
                [NeedStatus.DRAFT, NeedStatus.SUBMITTED],
                [NeedStatus.DRAFT, NeedStatus.SUBMITTED, NeedStatus.OPEN],
            ]
        )
    if status is NeedStatus.DRAFT:
        return [NeedStatus.DRAFT]
    if status is NeedStatus.OPEN:
        return [NeedStatus.DRAFT, NeedStatus.SUBMITTED, NeedStatus.OPEN]
    return [NeedStatus.DRAFT, NeedStatus.SUBMITTED]


def _step(
    before: NeedStatus, after: NeedStatus, actor: int | None, at: datetime, note: str = ""
) -> NeedTransition:
    return NeedTransition(from_status=before, to_status=after, actor_id=actor, at=at, note=note)


def _write_pledges(
    db: Session, plans: Iterable[tuple[_Stock, int, date, date, str]], focal: dict[str, int]
) -> int:
    count = 0
    for stock, quantity, valid_from, valid_to, note in plans:
        db.add(
            Pledge(
                jurisdiction_id=stock.site.jurisdiction_id,
                facility_id=stock.site.id,
                product_id=stock.item.id,
                quantity=quantity,
                valid_from=valid_from,
                valid_to=valid_to,
                status=PledgeStatus.ACTIVE,
                note=note,
                created_by=focal.get(stock.site.iso3),
                created_at=datetime(valid_from.year, valid_from.month, valid_from.day, 3, tzinfo=UTC),
            )
        )
        count += 1
    db.flush()
    return count


def seed_supply(
    db: Session, *, seed: int, today: date, progress: Callable[[str], None] | None = None
) -> SupplySummary:
    """Add stock history, the outbreak, the reserve, pledges and needs to a region just seeded by
    `seed_demo` (no stock yet); everything is dated relative to `today`. The caller's unit of
    work commits."""
    rng = random.Random(seed)

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    sites, items = _load(db, rng)
    simulation = _Simulation(rng, today, sites, items)
    simulation.build()
    say("planned assortments and opening stock")
    simulation.run()
    say(f"simulated {HISTORY_WEEKS} weeks: {len(simulation.events):,} stock events")
    batches, digest = _record(db, simulation.events, sites, items, progress)
    needs = _write_needs(db, rng, simulation.plan_needs(sum(NEED_STATUSES.values())), today)
    say(f"raised {len(needs):,} needs")
    focal, _ = _users(db)
    pledges = _write_pledges(db, simulation.plan_pledges(), focal)
    say(f"pledged {pledges} stock lines to the regional pool")
    return SupplySummary(
        facility_products=sum(len(stocks) for stocks in simulation.stocks.values()),
        events=len(simulation.events),
        batches=batches,
        lots=len(simulation.lot_keys),
        needs=len(needs),
        outstanding_needs=sum(1 for need in needs if need.status in OUTSTANDING),
        pledges=pledges,
        outbreak_members=OUTBREAK_MEMBERS,
        digest=digest,
    )
