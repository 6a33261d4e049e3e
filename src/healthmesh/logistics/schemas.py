"""API shapes of shipments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from healthmesh.logistics.routing import Mode
from healthmesh.logistics.workflow import ShipmentStatus
from healthmesh.supply.schemas import UtcDateTime


class RejectionReason(StrEnum):
    DAMAGED = "damaged"
    EXPIRED = "expired"
    TEMPERATURE_EXCURSION = "temperature_excursion"
    SHORT_SHIPPED = "short_shipped"  # never arrived: a rejection recorded as a transit loss at the source


class ExcursionDecision(StrEnum):
    ACCEPT = "accept"
    QUARANTINE = "quarantine"
    DISCARD = "discard"


class PlanShipmentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode | None = Field(
        default=None, description="Default: air for emergencies and beyond 2,500 km, road otherwise"
    )


class MoveIn(BaseModel):
    """A status change: when and where it happened (default: now, no place)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    status: ShipmentStatus
    at: UtcDateTime | None = None
    place: str = Field(default="", max_length=200)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    note: str = Field(default="", max_length=500)


class RejectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: RejectionReason
    quantity: int = Field(gt=0)


class ReceiptLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: int
    accepted: int = Field(ge=0)
    rejected: list[RejectionIn] = Field(default_factory=list, max_length=4)

    @property
    def rejected_total(self) -> int:
        return sum(r.quantity for r in self.rejected)

    @model_validator(mode="after")
    def _one_entry_per_reason(self) -> Self:
        reasons = [r.reason for r in self.rejected]
        if len(set(reasons)) != len(reasons):
            raise ValueError("rejected: give each reason once")
        return self


class SignatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    media_type: str = Field(pattern=r"^image/(png|jpeg)$")
    data_base64: str = Field(min_length=8, max_length=3_000_000)


class ReceiptIn(BaseModel):
    """Proof of delivery: every line's accepted and rejected units (they must add up to what was
    shipped), who received it and when, and the decision on a flagged temperature excursion."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    lines: list[ReceiptLineIn] = Field(min_length=1, max_length=1000)
    receiver: str = Field(min_length=2, max_length=200)
    received_at: UtcDateTime | None = None
    place: str = Field(default="", max_length=200)
    excursion_decision: ExcursionDecision | None = None
    signature: SignatureIn | None = None
    note: str = Field(default="", max_length=500)


class QuarantineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    release: bool = Field(description="true: the stock may be used; false: it is written off")
    note: str = Field(default="", max_length=500)


class LineOut(BaseModel):
    id: int
    need_id: int | None
    product: str
    lot_number: str
    expiry_date: str | None
    quantity: int
    accepted: int
    rejected: int
    rejections: dict[str, int]
    lost: int
    quarantined: int


class TransitionOut(BaseModel):
    from_status: ShipmentStatus | None
    to_status: ShipmentStatus
    by: str | None
    at: datetime
    place: str
    latitude: float | None
    longitude: float | None
    note: str


class ExcursionOut(BaseModel):
    start: datetime
    end: datetime
    minutes: float
    extreme_c: float
    direction: str


class FindingOut(BaseModel):
    product: str
    min_c: float
    max_c: float
    tolerance_minutes: int
    excursions: list[ExcursionOut]
    flagged: list[ExcursionOut]


class TemperatureLogOut(BaseModel):
    id: int
    sha256: str
    readings: int
    first_at: datetime
    last_at: datetime
    min_c: float
    max_c: float
    breach: bool
    findings: list[FindingOut]
    uploaded_at: datetime


class ShipmentOut(BaseModel):
    id: int
    code: str
    plan_id: int | None
    mutual_aid_plan_id: int | None = None
    source: str
    source_member: str
    destination: str
    destination_member: str
    mode: Mode
    great_circle_km: float
    distance_km: float
    transit_hours: float
    status: ShipmentStatus
    eta: datetime
    overdue: bool
    units: int
    dispatched_at: datetime | None
    delivered_at: datetime | None
    received_at: datetime | None
    receiver_name: str
    signature_sha256: str | None
    excursion_flagged: bool
    excursion_decision: str | None
    quarantine_open: bool


class ShipmentDetailOut(ShipmentOut):
    lines: list[LineOut]
    history: list[TransitionOut]
    temperature_logs: list[TemperatureLogOut]
