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
    return 0, -quantity  # release


def apply(balance: Balance, kind: EventKind, quantity: int, from_reservation: bool = False) -> Balance:
    """The balance after the event, or RefusedMovement explaining why it cannot happen."""
    on_hand_delta, reserved_delta = deltas(kind, quantity, from_reservation)
    after = Balance(balance.on_hand + on_hand_delta, balance.reserved + reserved_delta)
    if kind in OUTBOUND and not from_reservation and quantity > balance.available:
        raise RefusedMovement(
            f"{kind.value} of {quantity} exceeds the {balance.available} available "
            f"(on hand {balance.on_hand}, reserved {balance.reserved})"
        )
    if kind in OUTBOUND and from_reservation and quantity > balance.reserved:
        raise RefusedMovement(f"{kind.value} of {quantity} exceeds the {balance.reserved} reserved")
    if kind is EventKind.RESERVATION and quantity > balance.available:
        raise RefusedMovement(f"reservation of {quantity} exceeds the {balance.available} available")
    if kind is EventKind.RELEASE and quantity > balance.reserved:
        raise RefusedMovement(f"release of {quantity} exceeds the {balance.reserved} reserved")
    if after.on_hand < 0:
        raise RefusedMovement(f"adjustment of {quantity} exceeds the {balance.on_hand} on hand")
    if after.reserved > after.on_hand:
        raise RefusedMovement(
            f"adjustment of {quantity} would leave {after.on_hand} on hand for {after.reserved} reserved"
        )
    return after
