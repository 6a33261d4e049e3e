"""Which lot may serve which need: the hard rules of a round, applied before any optimisation.

A pair (lot, need) is a candidate when the destination has the storage the product needs, the
product may be used there on the lot's arrival date (or the round carries an emergency waiver),
and the lot arrives with at least the policy's shelf life left. Each need considers its nearest
lots and the product's largest ones, which keeps the model linear in the number of needs while
every big pool stays within reach. A need without any candidate gets the first rule that failed.

The rules are applied product by product on arrays (needs x lots), not pair by pair: a round of
20,000 needs and 50,000 lots yields its 400,000 candidates in well under a second.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from healthmesh.allocation.model import EARTH_RADIUS_KM, Eligibility, NeedLine, Policy, Reason, Round

STORAGE_CAPABILITY = {
    "ambient": None,
    "cold_2_8": "cold_chain_2_8",
    "frozen_minus20": "cold_chain_minus20",
    "ultra_cold_minus70": "cold_chain_minus70",
}
NO_EXPIRY = date.max.toordinal()
CHUNK_CELLS = 2_000_000  # needs x lots evaluated at once: bounds memory for a very large product

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Pair:
    lot: int  # index into the round's lots
    need: int  # index into the round's needs
    distance_km: float
    arrival: date


@dataclass
class Candidates:
    """The candidate pairs as columns, grouped by product (`products` gives each one's slice)."""

    lot: IntArray
    need: IntArray
    distance_km: FloatArray
    arrival_day: IntArray  # proleptic Gregorian ordinal (`date.toordinal`)
    products: dict[str, slice]
    refused: dict[int, tuple[Reason, str]] = field(default_factory=dict)  # need index -> why none

    @cached_property
    def pairs(self) -> list[Pair]:
        """The pairs one by one, for the rule-of-thumb baselines and reports."""
        return [
            Pair(int(lot), int(need), float(km), date.fromordinal(int(day)))
            for lot, need, km, day in zip(
                self.lot, self.need, self.distance_km, self.arrival_day, strict=True
            )
        ]


def arrival(day: date, km: float, policy: Policy) -> date:
    return day + timedelta(days=policy.handling_days + math.ceil(km / policy.road_speed_km_per_day))


def _storage_ok(need: NeedLine, condition: str) -> bool:
    capability = STORAGE_CAPABILITY.get(condition)
    return capability is None or capability in need.storage


def haversine_km(lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray) -> FloatArray:
    """Great-circle distances between broadcast arrays of points in degrees (as `distance_km`)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a)), dtype=np.float64)


def _allowed(eligibility: Eligibility, days: IntArray) -> BoolArray:
    """Whether each arrival day falls in one of the eligibility windows."""
    ok = np.zeros(days.shape, dtype=bool)
    for start, end in eligibility.windows:
        last = end.toordinal() if end is not None else NO_EXPIRY
        ok |= (days >= start.toordinal()) & (days <= last)
    return ok


class _ProductLots:
    """A product's lots as arrays."""

    def __init__(self, round_: Round, indices: list[int], policy: Policy) -> None:
        self.indices = np.array(indices, dtype=np.int64)
        lots = [round_.lots[i] for i in indices]
        self.lat = np.array([lot.lat for lot in lots], dtype=np.float64)
        self.lon = np.array([lot.lon for lot in lots], dtype=np.float64)
        self.expiry = np.array(
            [lot.expiry.toordinal() if lot.expiry else NO_EXPIRY for lot in lots], dtype=np.int64
        )
        quantity = np.array([lot.quantity for lot in lots])
        self.largest = np.argsort(-quantity, kind="stable")[: policy.candidate_sources]
        self.keep = policy.candidate_sources

    def chosen(self, distance: FloatArray) -> BoolArray:
        """Per need (row): its nearest lots and the product's largest lots."""
        if distance.shape[1] <= 2 * self.keep:
            return np.ones(distance.shape, dtype=bool)
        mask = np.zeros(distance.shape, dtype=bool)
        nearest = np.argpartition(distance, self.keep, axis=1)[:, : self.keep]
        np.put_along_axis(mask, nearest, True, axis=1)
        mask[:, self.largest] = True
        return mask


@dataclass
class _Block:
    lot: list[IntArray] = field(default_factory=list)
    need: list[IntArray] = field(default_factory=list)
    km: list[FloatArray] = field(default_factory=list)
    day: list[IntArray] = field(default_factory=list)


def _product_pairs(
    round_: Round,
    policy: Policy,
    lots: _ProductLots,
    needs: list[int],
    block: _Block,
    refused: dict[int, tuple[Reason, str]],
) -> int:
    """Add the candidates of one product's needs (all of which have the storage it needs) to
    `block`; returns how many."""
    added = 0
    first_day = round_.day.toordinal() + policy.handling_days
    rows_per_chunk = max(1, CHUNK_CELLS // max(len(lots.indices), 1))
    for start in range(0, len(needs), rows_per_chunk):
        chunk = needs[start : start + rows_per_chunk]
        lat = np.array([round_.needs[n].lat for n in chunk])[:, None]
        lon = np.array([round_.needs[n].lon for n in chunk])[:, None]
        km = haversine_km(lots.lat[None, :], lots.lon[None, :], lat, lon)
        days = first_day + np.ceil(km / policy.road_speed_km_per_day).astype(np.int64)
        chosen = lots.chosen(km)
        authorised = chosen if policy.emergency_waiver else chosen & _eligible(round_, chunk, days)
        usable = authorised & (lots.expiry[None, :] - days >= policy.min_shelf_life_days)
        _refusals(round_, policy, chunk, np.any(authorised, axis=1), np.any(usable, axis=1), refused)
        rows, cols = np.nonzero(usable)
        block.lot.append(lots.indices[cols])
        block.need.append(np.asarray(chunk, dtype=np.int64)[rows])
        block.km.append(km[rows, cols])
        block.day.append(days[rows, cols])
        added += len(rows)
    return added


def _eligible(round_: Round, chunk: list[int], days: IntArray) -> BoolArray:
    """Regulatory eligibility of every (need, lot) cell on its arrival day, member by member."""
    ok = np.zeros(days.shape, dtype=bool)
    by_member: dict[str, list[int]] = defaultdict(list)
    for row, n in enumerate(chunk):
        by_member[round_.needs[n].member].append(row)
    product = round_.needs[chunk[0]].product
    for member, rows in by_member.items():
        eligibility = round_.eligibility.get((product, member), Eligibility.never("no decision recorded"))
        ok[rows] = _allowed(eligibility, days[rows])
    return ok


def _refusals(
    round_: Round,
    policy: Policy,
    chunk: list[int],
    authorised: BoolArray,
    usable: BoolArray,
    refused: dict[int, tuple[Reason, str]],
) -> None:
    for row in np.nonzero(~usable)[0]:
        need = round_.needs[chunk[int(row)]]
        if not authorised[row]:
            eligibility = round_.eligibility.get(
                (need.product, need.member), Eligibility.never("no decision recorded")
            )
            refused[chunk[int(row)]] = (
                Reason.NOT_AUTHORISED,
                f"{need.product} may not be used in {need.member} on arrival: {eligibility.basis}",
            )
        else:
            refused[chunk[int(row)]] = (
                Reason.SHELF_LIFE,
                f"no lot of {need.product} would arrive with {policy.min_shelf_life_days} days of shelf life",
            )


def build(round_: Round, policy: Policy) -> Candidates:
    lots_by_product: dict[str, list[int]] = defaultdict(list)
    for index, lot in enumerate(round_.lots):
        if lot.quantity > 0:
            lots_by_product[lot.product].append(index)
    needs_by_product: dict[str, list[int]] = defaultdict(list)
    refused: dict[int, tuple[Reason, str]] = {}
    for n, need in enumerate(round_.needs):
        product = round_.products.get(need.product)
        if product is None or need.product not in lots_by_product:
            refused[n] = (Reason.NO_SUPPLY, f"no shareable supply of {need.product} in this round")
        elif not _storage_ok(need, product.storage_condition):
            place = need.facility or need.member
            refused[n] = (
                Reason.NO_COLD_CHAIN,
                f"{place} has no {product.storage_condition.replace('_', ' ')} storage for {need.product}",
            )
        else:
            needs_by_product[need.product].append(n)
    block = _Block()
    slices: dict[str, slice] = {}
    start = 0
    for code in sorted(needs_by_product):
        lots = _ProductLots(round_, lots_by_product[code], policy)
        end = start + _product_pairs(round_, policy, lots, needs_by_product[code], block, refused)
        slices[code] = slice(start, end)
        start = end
    return Candidates(
        _ints(block.lot),
        _ints(block.need),
        np.concatenate(block.km) if block.km else np.zeros(0),
        _ints(block.day),
        {code: part for code, part in slices.items() if part.stop > part.start},
        refused,
    )


def _ints(parts: list[IntArray]) -> IntArray:
    return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, dtype=np.int64)
