"""Plain data of mutual aid over a horizon: the problem, the policy and the plan (no DB, no web)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Objective = Literal["shortfall", "equity"]


@dataclass(frozen=True)
class Policy:
    """The rules of a plan; every one a setting.

    Delay of a pair = its own delay when the distances give one, else
    `delay_periods + ceil(distance / distance_per_period)` (the second term only when set).
    """

    delay_periods: int = 1
    distance_per_period: float | None = None
    min_stock_fraction: float = 0.0  # share of a member's own stock that never leaves it
    max_send_per_period: float | None = None  # units a member sends per period, over all targets
    no_send_while_short: bool = False  # a member short in a period sends nothing in it (MIP)
    no_resend_periods: int = 0  # received units are not sent on within this many periods (0: off)
    no_worse_off: bool = False  # no member's total shortfall above its shortfall without sharing
    reserve_release_limit: float | None = None  # units the reserve releases per period, in all
    whole_units: bool = False  # transfers and releases in whole units (MIP)
    objective: Objective = "shortfall"
    time_limit_seconds: float = 120.0
    mip_rel_gap: float = 1e-6

    def needs_mip(self) -> bool:
        return self.whole_units or self.no_send_while_short


@dataclass(frozen=True)
class Problem:
    """Members x periods. `stock[i, t]` is own stock that member i gets in period t (column 0: on
    hand at the start); `reserve[t]` the units entering the shared reserve in period t; `distance`
    is members x members with `inf` where no transfer is possible; `delay`, when given, overrides
    the policy's delay for the pairs where it is >= 0 (same shape; negative = the policy's)."""

    members: tuple[str, ...]
    periods: tuple[str, ...]
    demand: NDArray[np.float64]
    stock: NDArray[np.float64]
    reserve: NDArray[np.float64]
    distance: NDArray[np.float64]
    delay: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        n, t = len(self.members), len(self.periods)
        if self.demand.shape != (n, t) or self.stock.shape != (n, t):
            raise ValueError("demand and stock must be members x periods")
        if self.reserve.shape != (t,) or self.distance.shape != (n, n):
            raise ValueError("reserve must be per period and distance members x members")
        if self.delay is not None and self.delay.shape != (n, n):
            raise ValueError("delay must be members x members")


@dataclass(frozen=True)
class MemberPeriod:
    """One member in one period: units held (after sending, arrivals included), demand, unmet."""

    member: str
    period: str
    supply: float
    demand: float
    shortfall: float
    shortfall_without_sharing: float
    received: float
    sent: float
    released: float


@dataclass(frozen=True)
class Transfer:
    source: str
    target: str
    period: str  # sent
    arrives: str
    units: float
    distance: float


@dataclass(frozen=True)
class SolverReport:
    kind: Literal["LP", "MIP"]
    status: str
    build_seconds: float
    solve_seconds: float
    columns: int
    rows: int
    nonzeros: int
    objective: float
    lp_bound: float  # the LP relaxation's shortfall (for an LP: the optimum itself)
    mip_bound: float | None = None
    mip_gap: float | None = None


@dataclass(frozen=True)
class Totals:
    demand: float
    shortfall: float
    shortfall_without_sharing: float
    transfers: int
    units_moved: float
    unit_distance: float  # units x distance, summed over transfers
    reserve_released: float
    largest_unmet_share: float
    largest_unmet_share_without_sharing: float


@dataclass(frozen=True)
class Plan:
    members: tuple[str, ...]
    periods: tuple[str, ...]
    policy: Policy
    rows: list[MemberPeriod]
    transfers: list[Transfer]
    totals: Totals
    solver: SolverReport
    stages: list[SolverReport] = field(default_factory=list)
