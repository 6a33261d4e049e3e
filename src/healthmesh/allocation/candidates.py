"""Which lot may serve which need: the hard rules of a round, applied before any optimisation.

A pair (lot, need) is a candidate when the destination has the storage the product needs, the
product may be used there on the lot's arrival date (or the round carries an emergency waiver),
and the lot arrives with at least the policy's shelf life left. Each need considers its nearest
lots and the product's largest ones, which keeps the model linear in the number of needs while
every big pool stays within reach. A need without any candidate gets the first rule that failed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from healthmesh.allocation.model import Eligibility, NeedLine, Policy, Reason, Round, SupplyLot, distance_km

STORAGE_CAPABILITY = {
    "ambient": None,
    "cold_2_8": "cold_chain_2_8",
    "frozen_minus20": "cold_chain_minus20",
    "ultra_cold_minus70": "cold_chain_minus70",
}


@dataclass(frozen=True)
class Pair:
    lot: int  # index into the round's lots
    need: int  # index into the round's needs
    distance_km: float
    arrival: date


@dataclass(frozen=True)
class Candidates:
    pairs: list[Pair]
    refused: dict[int, tuple[Reason, str]]  # need index -> why it has no candidate


def arrival(day: date, km: float, policy: Policy) -> date:
    return day + timedelta(days=policy.handling_days + math.ceil(km / policy.road_speed_km_per_day))


def _storage_ok(need: NeedLine, condition: str) -> bool:
    capability = STORAGE_CAPABILITY.get(condition)
    return capability is None or capability in need.storage


def _shelf_ok(lot: SupplyLot, arrives: date, policy: Policy) -> bool:
    return lot.expiry is None or (lot.expiry - arrives).days >= policy.min_shelf_life_days


class _ProductLots:
    """A product's lots as arrays, for choosing each need's candidates without a Python loop."""

    def __init__(self, round_: Round, indices: list[int], policy: Policy) -> None:
        self.indices = np.array(indices, dtype=np.int64)
        lots = [round_.lots[i] for i in indices]
        self.lat = np.radians([lot.lat for lot in lots])
        self.lon = np.radians([lot.lon for lot in lots])
        quantity = np.array([lot.quantity for lot in lots])
        self.largest = self.indices[np.argsort(-quantity, kind="stable")[: policy.candidate_sources]]
        self.keep = policy.candidate_sources

    def chosen(self, need: NeedLine) -> list[int]:
        """The need's nearest lots and the product's largest lots (nearest first)."""
        if len(self.indices) <= 2 * self.keep:
            return [int(i) for i in self.indices]
        lat, lon = math.radians(need.lat), math.radians(need.lon)
        a = (
            np.sin((self.lat - lat) / 2) ** 2
            + np.cos(lat) * np.cos(self.lat) * np.sin((self.lon - lon) / 2) ** 2
        )
        nearest = self.indices[np.argpartition(a, self.keep)[: self.keep]]
        return sorted({int(i) for i in nearest} | {int(i) for i in self.largest})


def build(round_: Round, policy: Policy) -> Candidates:
    lots_by_product: dict[str, list[int]] = defaultdict(list)
    for index, lot in enumerate(round_.lots):
        if lot.quantity > 0:
            lots_by_product[lot.product].append(index)
    arrays = {code: _ProductLots(round_, ids, policy) for code, ids in lots_by_product.items()}
    pairs: list[Pair] = []
    refused: dict[int, tuple[Reason, str]] = {}
    for n, need in enumerate(round_.needs):
        product = round_.products.get(need.product)
        if product is None or need.product not in arrays:
            refused[n] = (Reason.NO_SUPPLY, f"no shareable supply of {need.product} in this round")
            continue
        eligibility = round_.eligibility.get(
            (need.product, need.member), Eligibility.never("no decision recorded")
        )
        if not _storage_ok(need, product.storage_condition):
            place = need.facility or need.member
            refused[n] = (
                Reason.NO_COLD_CHAIN,
                f"{place} has no {product.storage_condition.replace('_', ' ')} storage for {need.product}",
            )
            continue
        authorised = shelf = False
        for index in arrays[need.product].chosen(need):
            lot = round_.lots[index]
            km = distance_km(lot.lat, lot.lon, need.lat, need.lon)
            arrives = arrival(round_.day, km, policy)
            if not (policy.emergency_waiver or eligibility.on(arrives)):
                continue
            authorised = True
            if _shelf_ok(lot, arrives, policy):
                pairs.append(Pair(index, n, km, arrives))
                shelf = True
        if not authorised:
            refused[n] = (
                Reason.NOT_AUTHORISED,
                f"{need.product} may not be used in {need.member} on arrival: {eligibility.basis}",
            )
        elif not shelf:
            refused[n] = (
                Reason.SHELF_LIFE,
                f"no lot of {need.product} would arrive with {policy.min_shelf_life_days} days of shelf life",
            )
    return Candidates(pairs, refused)
