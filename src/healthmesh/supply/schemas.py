"""API and import shapes of supply."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, NotRequired, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from healthmesh.registry.schemas import FIRST_DAY, LAST_DAY, MAX_INT, Code, Day
from healthmesh.supply.enums import OUTBOUND, SYSTEM_ONLY, EventKind, PledgeStatus


def _utc(value: datetime) -> datetime:
    """A date or naive date-time is taken as UTC (CSV files rarely carry offsets); an offset is
    converted now, so a time at the edge of the calendar (9999-12-31T23:00-05:00) is refused here
    instead of overflowing where it is stored."""
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None
    if not FIRST_DAY <= value.date() <= LAST_DAY:
        raise ValueError(f"out of range: dates run from {FIRST_DAY} to {LAST_DAY}")
    return value


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]
TRANSFERS = frozenset({EventKind.TRANSFER_OUT, EventKind.TRANSFER_IN})


class StockEventIn(BaseModel):
    """One stock movement at a facility. `quantity` is positive, except for adjustments (signed)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    facility: Code
    product: Code
    lot_number: str = Field(min_length=1, max_length=64)
    expiry_date: Day | None = None
    kind: EventKind
    quantity: int = Field(ge=-10_000_000, le=10_000_000)
    occurred_at: UtcDateTime | None = None
    reason: str = Field(default="", max_length=200)
    reference: str = Field(default="", max_length=80)
    counterpart_facility: Code | None = None
    from_reservation: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problem = inconsistency(
            self.kind, self.quantity, self.reason, self.counterpart_facility, self.from_reservation
        )
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self


def inconsistency(
    kind: EventKind, quantity: int, reason: str, counterpart: str | None, from_reservation: bool
) -> tuple[str, str] | None:
    """The first cross-field rule an event breaks, as (field, message); shared by the API model and
    the fast file path so the rules are written once."""
    if kind in SYSTEM_ONLY:
        return "kind", f"{kind.value} is recorded by shipments, not as a stock event"
    if kind is EventKind.ADJUSTMENT:
        if quantity == 0:
            return "quantity", "an adjustment cannot be 0"
        if not reason:
            return "reason", "required for an adjustment"
    elif quantity <= 0:
        return "quantity", "must be positive"
    if kind is EventKind.WRITE_OFF and not reason:
        return "reason", "required for a write-off"
    if kind in TRANSFERS and not counterpart:
        return "counterpart_facility", "required for a transfer"
    if from_reservation and kind not in OUTBOUND:
        return "from_reservation", "only for stock leaving the facility"
    return None


def _row_schema() -> Any:
    """The fields of `StockEventIn` as a TypedDict, for files: pydantic validates a list of these
    several times faster than model instances, with the very same field rules."""
    fields = {
        name: info.rebuild_annotation() if info.is_required() else NotRequired[info.rebuild_annotation()]
        for name, info in StockEventIn.model_fields.items()
    }
    row = TypedDict("StockEventRow", fields)  # type: ignore[misc]
    row.__pydantic_config__ = ConfigDict(extra="forbid", str_strip_whitespace=True)  # type: ignore[attr-defined]
    return row


StockEventRow = _row_schema()


class StockBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[StockEventIn] = Field(min_length=1, max_length=200_000)


class BatchOut(BaseModel):
    batch_id: int
    events: int
    replayed: bool


class BalanceOut(BaseModel):
    facility: str
    jurisdiction: str
    product: str
    on_hand: int
    reserved: int
    pledged: int
    available: int


class LotOut(BaseModel):
    facility: str
    product: str
    lot_number: str
    expiry_date: date | None
    on_hand: int
    reserved: int


class StockEventOut(BaseModel):
    id: int
    facility: str
    product: str
    lot_number: str
    kind: EventKind
    quantity: int
    on_hand_delta: int
    reserved_delta: int
    reason: str
    reference: str
    counterpart_facility: str | None
    occurred_at: datetime
    recorded_at: datetime


class PledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    facility: Code
    product: Code
    quantity: int = Field(gt=0, le=MAX_INT)
    valid_from: Day
    valid_to: Day
    note: str = Field(default="", max_length=300)

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.valid_to < self.valid_from:
            raise ValueError("valid_to: the range ends before it starts")
        return self


class PledgeOut(BaseModel):
    id: int
    jurisdiction: str
    facility: str
    product: str
    quantity: int
    valid_from: date
    valid_to: date
    status: PledgeStatus
    note: str
