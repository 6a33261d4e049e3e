"""Kinds of stock movement and what each does to a lot's balance."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    RECEIPT = "receipt"
    ISSUE = "issue"
    ADJUSTMENT = "adjustment"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    EXPIRY_WRITEOFF = "expiry_writeoff"
    RESERVATION = "reservation"
    RELEASE = "release"
    WRITE_OFF = "write_off"  # damaged, rejected at receipt, discarded after a temperature excursion
    TRANSIT_LOSS = (
        "transit_loss"  # units that left on a shipment and never arrived (recorded, no balance moves)
    )


#: Kinds that bring stock in (and may create the lot at the facility).
INBOUND = frozenset({EventKind.RECEIPT, EventKind.TRANSFER_IN})
#: Kinds that take stock out: limited to what is on hand and not reserved (or, with
#: `from_reservation`, to what is reserved).
OUTBOUND = frozenset(
    {EventKind.ISSUE, EventKind.TRANSFER_OUT, EventKind.EXPIRY_WRITEOFF, EventKind.WRITE_OFF}
)
#: Kinds only the platform itself records (shipments), never a user's stock event.
SYSTEM_ONLY = frozenset({EventKind.TRANSIT_LOSS})


class PledgeStatus(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
