"""The life of a shipment, as a table of allowed transitions and the side that may make each.
Pure: no database, no web.

planned -> picked -> dispatched -> in_transit -> delivered -> received, or cancelled (before it
leaves) or lost (once it has left). The source side (the sending facility, its member, or the
region for its reserve depots) prepares and sends; the destination side confirms receipt.
Arrival at the destination (`delivered`) may be recorded by either side: the carrier reports to
the sender, the gate to the receiver.
"""

from __future__ import annotations

from enum import StrEnum


class ShipmentStatus(StrEnum):
    PLANNED = "planned"
    PICKED = "picked"
    DISPATCHED = "dispatched"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    RECEIVED = "received"
    CANCELLED = "cancelled"
    LOST = "lost"


class Side(StrEnum):
    SOURCE = "source"
    DESTINATION = "destination"


S = ShipmentStatus
#: (from, to) -> the sides that may make the move.
TRANSITIONS: dict[tuple[ShipmentStatus, ShipmentStatus], frozenset[Side]] = {
    (S.PLANNED, S.PICKED): frozenset({Side.SOURCE}),
    (S.PLANNED, S.CANCELLED): frozenset({Side.SOURCE}),
    (S.PICKED, S.DISPATCHED): frozenset({Side.SOURCE}),
    (S.PICKED, S.CANCELLED): frozenset({Side.SOURCE}),
    (S.DISPATCHED, S.IN_TRANSIT): frozenset({Side.SOURCE}),
    (S.DISPATCHED, S.DELIVERED): frozenset({Side.SOURCE, Side.DESTINATION}),
    (S.DISPATCHED, S.LOST): frozenset({Side.SOURCE}),
    (S.IN_TRANSIT, S.DELIVERED): frozenset({Side.SOURCE, Side.DESTINATION}),
    (S.IN_TRANSIT, S.LOST): frozenset({Side.SOURCE}),
    (S.DELIVERED, S.RECEIVED): frozenset({Side.DESTINATION}),
}

#: Stock has left the source and has not been accounted for at the destination yet.
ON_THE_ROAD = frozenset({S.DISPATCHED, S.IN_TRANSIT, S.DELIVERED})
FINAL = frozenset({S.RECEIVED, S.CANCELLED, S.LOST})


class InvalidTransition(ValueError):
    pass


def check(current: ShipmentStatus, target: ShipmentStatus, sides: frozenset[Side]) -> None:
    """Refuse a move the table does not allow, or one the actor's side may not make."""
    allowed = TRANSITIONS.get((current, target))
    if allowed is None:
        options = sorted(t.value for (s, t) in TRANSITIONS if s is current)
        hint = f"; from {current.value} it may go to {', '.join(options)}" if options else ""
        final = f"; {current.value} is final" if current in FINAL else ""
        raise InvalidTransition(
            f"a shipment that is {current.value} cannot become {target.value}{hint}{final}"
        )
    if not allowed & sides:
        who = " or ".join(sorted(side.value for side in allowed))
        raise PermissionError(f"only the {who} side may mark a shipment {target.value}")
