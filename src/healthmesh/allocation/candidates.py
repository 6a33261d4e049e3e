"""Which lot may serve which need: the hard rules of a round, applied before any optimisation.

A pair (lot, need) is a candidate when the destination has the storage the product needs, the
product may be used there on the lot's arrival date (or the round carries an emergency waiver),
and the lot arrives with at least the policy's shelf life left. Each need considers its nearest
sources and the largest ones, which keeps the model near-linear in the number of needs while
every big pool stays within reach. A need without any candidate gets the first rule that failed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

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


def build(round_: Round, policy: Policy) -> Candidates:
    lots_by_product: dict[str, list[int]] = defaultdict(list)
    for index, lot in enumerate(round_.lots):
        if lot.quantity > 0:
            lots_by_product[lot.product].append(index)
    pairs: list[Pair] = []
    refused: dict[int, tuple[Reason, str]] = {}
    for n, need in enumerate(round_.needs):
        product = round_.products.get(need.product)
        lot_ids = lots_by_product.get(need.product, [])
        if product is None or not lot_ids:
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
        chosen = _sources(round_, lot_ids, need, policy)
        authorised = shelf = False
        for index in chosen:
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


def _sources(round_: Round, lot_ids: list[int], need: NeedLine, policy: Policy) -> list[int]:
    """Lots at the need's nearest sources and at the largest sources of the product."""
    by_source: dict[str, list[int]] = defaultdict(list)
    for index in lot_ids:
        by_source[round_.lots[index].source].append(index)
    if len(by_source) <= 2 * policy.candidate_sources:
        return lot_ids
    first = {source: round_.lots[ids[0]] for source, ids in by_source.items()}
    nearest = sorted(by_source, key=lambda s: distance_km(first[s].lat, first[s].lon, need.lat, need.lon))
    largest = sorted(by_source, key=lambda s: -sum(round_.lots[i].quantity for i in by_source[s]))
    keep = set(nearest[: policy.candidate_sources]) | set(largest[: policy.candidate_sources])
    return [index for source in sorted(keep) for index in by_source[source]]
