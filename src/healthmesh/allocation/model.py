"""The plain data an allocation round takes and gives back. Pure: no database, no web.

A round is a snapshot: shareable lots (at reserve depots or pledged), open needs, the products'
handling rules, the members, which product may go where (regulatory eligibility), and a policy.
The same snapshot and policy always give the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

EARTH_RADIUS_KM = 6371.0


class Fairness(StrEnum):
    MAXMIN_THEN_EFFICIENCY = "maxmin_then_efficiency"
    EFFICIENCY = "efficiency"


@dataclass(frozen=True)
class SupplyLot:
    id: str
    product: str
    source: str  # facility code
    source_member: str
    quantity: int  # units available to share (not reserved)
    expiry: date | None
    lat: float
    lon: float
    origin: str = "reserve"  # "reserve" (a depot) or "pledge"


@dataclass(frozen=True)
class NeedLine:
    id: str
    product: str
    member: str
    facility: str | None
    lat: float
    lon: float
    quantity: int  # still to allocate
    urgency: str = "routine"
    coverage: float | None = None  # the member's shortage coverage for this product (lower = worse)
    population_served: int = 0
    order: int = 0  # submission order (first come, first served)
    storage: frozenset[str] = frozenset()  # cold-chain capabilities of the destination


@dataclass(frozen=True)
class ProductInfo:
    code: str
    storage_condition: str  # ambient, cold_2_8, frozen_minus20, ultra_cold_minus70
    pack_size: int = 1
    discrete: bool = False


@dataclass(frozen=True)
class MemberInfo:
    iso3: str
    population: int
    income_group: str


@dataclass(frozen=True)
class Policy:
    """What a region agreed on. Weights multiply: urgency x severity x vulnerability."""

    name: str
    fairness: Fairness = Fairness.MAXMIN_THEN_EFFICIENCY
    urgency_weights: dict[str, float] = field(
        default_factory=lambda: {"routine": 1.0, "urgent": 2.0, "emergency": 4.0}
    )
    severity_weight: float = 1.0  # extra weight as coverage falls to 0
    income_weights: dict[str, float] = field(
        default_factory=lambda: {"low": 2.0, "lower_middle": 1.5, "upper_middle": 1.0, "high": 0.8}
    )
    floor_share: float = 0.0  # share of a scarce product's supply split by population as a floor
    cap_share: float = 1.0  # no member receives more than this share of a product's supply
    min_shelf_life_days: int = 30  # on arrival
    emergency_waiver: bool = False  # ignore regulatory status (recorded on the plan)
    road_speed_km_per_day: float = 500.0
    handling_days: int = 2
    whole_units: bool = True
    candidate_sources: int = 12  # per need: this many nearest lots, plus the product's largest lots
    time_limit_seconds: float = 30.0


@dataclass(frozen=True)
class Eligibility:
    """When a product may be used in a member: the date windows (inclusive; None = open-ended) and
    the basis in plain words, or why not."""

    windows: tuple[tuple[date, date | None], ...]
    basis: str

    def on(self, day: date) -> bool:
        return any(start <= day and (end is None or day <= end) for start, end in self.windows)

    @classmethod
    def always(cls, basis: str = "authorised") -> Eligibility:
        return cls(((date.min, None),), basis)

    @classmethod
    def never(cls, why: str) -> Eligibility:
        return cls((), why)


@dataclass(frozen=True)
class Round:
    day: date
    lots: tuple[SupplyLot, ...]
    needs: tuple[NeedLine, ...]
    products: dict[str, ProductInfo]
    members: dict[str, MemberInfo]
    #: (product, member) -> when it may be used there; missing means never.
    eligibility: dict[tuple[str, str], Eligibility]


@dataclass(frozen=True)
class PlanLine:
    lot_id: str
    need_id: str
    quantity: int
    distance_km: float
    arrival: date


class Reason(StrEnum):
    FULLY_ALLOCATED = "fully_allocated"
    SUPPLY_EXHAUSTED = "supply_exhausted"
    NOT_AUTHORISED = "not_authorised"
    NO_COLD_CHAIN = "no_cold_chain"
    SHELF_LIFE = "shelf_life"
    NO_SUPPLY = "no_supply"
    MEMBER_CAP = "member_cap"
    FLOOR_APPLIED = "floor_applied"
    BELOW_PACK = "below_pack_size"


@dataclass(frozen=True)
class NeedResult:
    need_id: str
    member: str
    product: str
    requested: int
    allocated: int
    reason: Reason
    explanation: str

    @property
    def fill_rate(self) -> float:
        return self.allocated / self.requested if self.requested else 1.0

    @property
    def unmet(self) -> int:
        return self.requested - self.allocated


@dataclass(frozen=True)
class SolverReport:
    status: str
    seconds_build: float
    seconds_solve: float
    variables: int
    constraints: int
    objective: float
    bound: float
    gap: float


@dataclass(frozen=True)
class Plan:
    policy: str
    lines: tuple[PlanLine, ...]
    needs: tuple[NeedResult, ...]
    solver: SolverReport | None = None


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))
