"""What a stock event does to a balance, and when it must be refused. Pure.

A lot has `on_hand` units, of which `reserved` are promised (to an approved allocation). Stock
that leaves must come from what is available (on hand and not reserved), or, when the event says
`from_reservation`, from what was reserved for it. No balance ever goes below zero and a
reservation never exceeds what is on hand.
"""

from __future__ import annotations

from typing import NamedTuple

from healthmesh.supply.enums import INBOUND, OUTBOUND, EventKind


class RefusedMovement(ValueError):
    """The event would drive a balance negative or over-reserve; the message says by how much."""


class Balance(NamedTuple):
    """A tuple, not a frozen dataclass: the ledger makes one per event, 100k at a time."""

    on_hand: int = 0
    reserved: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def deltas(kind: EventKind, quantity: int, from_reservation: bool = False) -> tuple[int, int]:
    """(on_hand change, reserved change) of an event. Quantities are positive except adjustments,
    which are signed."""
    if kind is EventKind.ADJUSTMENT:
        if quantity == 0:
            raise RefusedMovement("an adjustment changes the quantity: it cannot be 0")
        return quantity, 0
    if quantity <= 0:
        raise RefusedMovement(f"a {kind.value} quantity must be positive")
    if kind in INBOUND:
        return quantity, 0
    if kind in OUTBOUND:
        return -quantity, -quantity if from_reservation else 0
    if kind is EventKind.RESERVATION:
        return 0, quantity
    if kind is EventKind.TRANSIT_LOSS:
        return 0, 0
    return 0, -quantity  # release


def apply(balance: Balance, kind: EventKind, quantity: int, from_reservation: bool = False) -> Balance:
    """The balance after the event, or RefusedMovement explaining why it cannot happen.
    (Written as one pass over plain ints: the ledger calls it for every event of a batch.)"""
    on_hand, reserved = balance
    if kind in INBOUND:
        if quantity <= 0:
            raise RefusedMovement(f"a {kind.value} quantity must be positive")
        return Balance(on_hand + quantity, reserved)
    if kind in OUTBOUND:
        if quantity <= 0:
            raise RefusedMovement(f"a {kind.value} quantity must be positive")
        if from_reservation:
            if quantity > reserved:
                raise RefusedMovement(f"{kind.value} of {quantity} exceeds the {reserved} reserved")
            return Balance(on_hand - quantity, reserved - quantity)
        if quantity > on_hand - reserved:
            raise RefusedMovement(
                f"{kind.value} of {quantity} exceeds the {on_hand - reserved} available "
                f"(on hand {on_hand}, reserved {reserved})"
            )
        return Balance(on_hand - quantity, reserved)
    if kind is EventKind.ADJUSTMENT:
        if quantity == 0:
            raise RefusedMovement("an adjustment changes the quantity: it cannot be 0")
        if on_hand + quantity < 0:
            raise RefusedMovement(f"adjustment of {quantity} exceeds the {on_hand} on hand")
        if reserved > on_hand + quantity:
            raise RefusedMovement(
                f"adjustment of {quantity} would leave {on_hand + quantity} on hand for {reserved} reserved"
            )
        return Balance(on_hand + quantity, reserved)
    if quantity <= 0:
        raise RefusedMovement(f"a {kind.value} quantity must be positive")
    if kind is EventKind.TRANSIT_LOSS:
        return balance  # the units already left this lot on a shipment: the event only records them
    if kind is EventKind.RESERVATION:
        if quantity > on_hand - reserved:
            raise RefusedMovement(f"reservation of {quantity} exceeds the {on_hand - reserved} available")
        return Balance(on_hand, reserved + quantity)
    if quantity > reserved:
        raise RefusedMovement(f"release of {quantity} exceeds the {reserved} reserved")
    return Balance(on_hand, reserved - quantity)
