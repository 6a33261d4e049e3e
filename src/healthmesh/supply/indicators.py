"""Stock indicators, as logistics management information systems define them. Pure.

- average daily consumption (ADC) = units issued over a window / days in the window;
- usable stock = on hand - reserved - expired;
- days of stock = usable stock / ADC (None when nothing is consumed);
- a stock-out = no usable stock of a product the facility manages;
- near-expiry = units in lots expiring within N days (not yet expired);
- coverage = (usable stock + pipeline) / demand over a horizon, where demand is the larger of
  ADC x horizon and the outstanding requests due within it (they usually ask for the same units,
  so adding them would count the need twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta


@dataclass(frozen=True)
class LotPosition:
    expiry_date: date | None
    on_hand: int
    reserved: int = 0


@dataclass(frozen=True)
class ExpirySplit:
    usable: int
    near_expiry: int
    expired: int


def split_by_expiry(lots: Iterable[LotPosition], today: date, near_days: int) -> ExpirySplit:
    """Usable (unexpired, unreserved) units, those of them expiring within `near_days`, and expired units."""
    usable = near = expired = 0
    horizon = today + timedelta(days=near_days)
    for lot in lots:
        if lot.expiry_date is not None and lot.expiry_date < today:
            expired += lot.on_hand
            continue
        free = max(lot.on_hand - lot.reserved, 0)
        usable += free
        if lot.expiry_date is not None and lot.expiry_date <= horizon:
            near += free
    return ExpirySplit(usable, near, expired)


def average_daily_consumption(issued: int, window_days: int) -> float:
    return issued / window_days if window_days > 0 else 0.0


def days_of_stock(usable: int, adc: float) -> float | None:
    return usable / adc if adc > 0 else None


def stockout_days(closing_balances: Sequence[int]) -> int:
    """Days whose closing balance was zero (or less, which the ledger never allows)."""
    return sum(1 for balance in closing_balances if balance <= 0)


def closing_balances(current: int, net_change_by_day: dict[date, int], first: date, last: date) -> list[int]:
    """Closing balance of each day from `first` to `last`, walking back from today's balance."""
    balances = []
    running = current
    later_changes = sum(change for day, change in net_change_by_day.items() if day > last)
    running -= later_changes
    day = last
    while day >= first:
        balances.append(running)
        running -= net_change_by_day.get(day, 0)
        day -= timedelta(days=1)
    return list(reversed(balances))


def coverage(usable: int, pipeline: int, demand: float) -> float | None:
    return (usable + pipeline) / demand if demand > 0 else None


def demand_over_horizon(adc: float, horizon_days: int, outstanding_requests: int) -> float:
    return max(adc * horizon_days, float(outstanding_requests))


@dataclass
class Position:
    """A product's position at one level (facility, member or region)."""

    on_hand: int = 0
    reserved: int = 0
    usable: int = 0
    near_expiry: int = 0
    expired: int = 0
    issued_in_window: int = 0
    pipeline: int = 0
    outstanding_requests: int = 0
    facilities: int = 0
    stocked_out: int = 0
    stockout_days: int = 0
    members: set[int] = field(default_factory=set)

    def add(self, other: Position) -> None:
        """Add another position's quantities and counts (not its members). Spelt out: a member's
        page adds tens of thousands of facility positions."""
        self.on_hand += other.on_hand
        self.reserved += other.reserved
        self.usable += other.usable
        self.near_expiry += other.near_expiry
        self.expired += other.expired
        self.issued_in_window += other.issued_in_window
        self.pipeline += other.pipeline
        self.outstanding_requests += other.outstanding_requests
        self.facilities += other.facilities
        self.stocked_out += other.stocked_out
        self.stockout_days += other.stockout_days


def severity_key(coverage_value: float | None, demand: float) -> tuple[float, float]:
    """Sort key: lowest coverage first, then the largest demand; no demand sorts last."""
    return (coverage_value if coverage_value is not None else float("inf"), -demand)
