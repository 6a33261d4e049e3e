"""The life of a need, as a table of allowed transitions. Pure.

draft -> submitted -> endorsed (by the member's focal point) -> open (to regional allocation)
-> partially_allocated / allocated -> partially_fulfilled / fulfilled; rejected or cancelled on
the way. Endorsement opens the need at once (the region's default rule), and both steps are kept
in the history.
"""

from __future__ import annotations

from enum import StrEnum


class NeedStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ENDORSED = "endorsed"
    REJECTED = "rejected"
    OPEN = "open"
    PARTIALLY_ALLOCATED = "partially_allocated"
    ALLOCATED = "allocated"
    PARTIALLY_FULFILLED = "partially_fulfilled"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Action(StrEnum):
    SUBMIT = "submit"
    ENDORSE = "endorse"
    OPEN = "open"
    REJECT = "reject"
    CANCEL = "cancel"
    ALLOCATE_PART = "allocate_part"
    ALLOCATE_ALL = "allocate_all"
    FULFIL_PART = "fulfil_part"
    FULFIL_ALL = "fulfil_all"


S = NeedStatus
TRANSITIONS: dict[tuple[NeedStatus, Action], NeedStatus] = {
    (S.DRAFT, Action.SUBMIT): S.SUBMITTED,
    (S.DRAFT, Action.CANCEL): S.CANCELLED,
    (S.SUBMITTED, Action.ENDORSE): S.ENDORSED,
    (S.SUBMITTED, Action.REJECT): S.REJECTED,
    (S.SUBMITTED, Action.CANCEL): S.CANCELLED,
    (S.ENDORSED, Action.OPEN): S.OPEN,
    (S.ENDORSED, Action.CANCEL): S.CANCELLED,
    (S.OPEN, Action.CANCEL): S.CANCELLED,
    (S.OPEN, Action.ALLOCATE_PART): S.PARTIALLY_ALLOCATED,
    (S.OPEN, Action.ALLOCATE_ALL): S.ALLOCATED,
    (S.PARTIALLY_ALLOCATED, Action.ALLOCATE_PART): S.PARTIALLY_ALLOCATED,
    (S.PARTIALLY_ALLOCATED, Action.ALLOCATE_ALL): S.ALLOCATED,
    (S.PARTIALLY_ALLOCATED, Action.FULFIL_PART): S.PARTIALLY_FULFILLED,
    (S.PARTIALLY_ALLOCATED, Action.CANCEL): S.CANCELLED,
    (S.ALLOCATED, Action.FULFIL_PART): S.PARTIALLY_FULFILLED,
    (S.ALLOCATED, Action.FULFIL_ALL): S.FULFILLED,
    (S.PARTIALLY_FULFILLED, Action.FULFIL_PART): S.PARTIALLY_FULFILLED,
    (S.PARTIALLY_FULFILLED, Action.FULFIL_ALL): S.FULFILLED,
    (S.PARTIALLY_FULFILLED, Action.ALLOCATE_PART): S.PARTIALLY_FULFILLED,
    (S.PARTIALLY_FULFILLED, Action.ALLOCATE_ALL): S.PARTIALLY_FULFILLED,
}

#: Needs the region still has to meet (the demand side of the shortage board and allocation); a
#: partly fulfilled need counts for what is neither delivered nor on its way (rejected or lost units).
OUTSTANDING = frozenset({S.SUBMITTED, S.ENDORSED, S.OPEN, S.PARTIALLY_ALLOCATED, S.PARTIALLY_FULFILLED})
#: Needs an allocation round may serve (for their unallocated quantity).
ALLOCATABLE = frozenset({S.OPEN, S.PARTIALLY_ALLOCATED, S.PARTIALLY_FULFILLED})
#: Needs whose status follows their allocations and shipments (`status_for_progress`).
IN_PROGRESS = frozenset({S.OPEN, S.PARTIALLY_ALLOCATED, S.ALLOCATED, S.PARTIALLY_FULFILLED})


class InvalidTransition(ValueError):
    pass


def next_status(current: NeedStatus, action: Action) -> NeedStatus:
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        allowed = sorted(a.value for (s, a) in TRANSITIONS if s is current)
        hint = (
            f"; from {current.value} you may {', '.join(allowed)}"
            if allowed
            else f"; {current.value} is final"
        )
        raise InvalidTransition(f"cannot {action.value} a need that is {current.value}{hint}") from None


def status_for_progress(quantity: int, allocated: int, fulfilled: int) -> NeedStatus:
    """Where a need stands once shipments deliver, lose or return its units: fulfilment first,
    then allocation. Rejected and lost units leave `allocated`, so the need asks again for them."""
    if fulfilled >= quantity:
        return S.FULFILLED
    if fulfilled > 0:
        return S.PARTIALLY_FULFILLED
    if allocated >= quantity:
        return S.ALLOCATED
    if allocated > 0:
        return S.PARTIALLY_ALLOCATED
    return S.OPEN
