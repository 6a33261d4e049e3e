"""API and import shapes of needs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.registry.schemas import MAX_INT, Code, Day, Iso3


class NeedIn(BaseModel):
    """A request for supplies. Give a facility, or only a jurisdiction for a national request."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    jurisdiction: Iso3 | None = None
    facility: Code | None = None
    product: Code
    quantity: int = Field(gt=0, le=100_000_000)
    urgency: Urgency = Urgency.ROUTINE
    needed_by: Day
    justification: str = Field(default="", max_length=2000)
    population_served: int = Field(default=0, ge=0, le=MAX_INT)
    submit: bool = Field(default=False, description="Submit at once instead of keeping a draft")
    external_id: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _where(self) -> Self:
        if self.jurisdiction is None and self.facility is None:
            raise ValueError("facility: give a facility or a jurisdiction")
        return self


class NeedUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    quantity: int | None = Field(default=None, gt=0, le=100_000_000)
    urgency: Urgency | None = None
    needed_by: Day | None = None
    justification: str | None = Field(default=None, max_length=2000)
    population_served: int | None = Field(default=None, ge=0, le=MAX_INT)


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=3, max_length=500)


class TransitionOut(BaseModel):
    from_status: NeedStatus | None
    to_status: NeedStatus
    by: str | None
    at: datetime
    note: str


class NeedOut(BaseModel):
    id: int
    jurisdiction: str
    facility: str | None
    product: str
    quantity: int
    urgency: Urgency
    needed_by: date
    justification: str
    population_served: int
    status: NeedStatus
    quantity_allocated: int
    quantity_fulfilled: int
    rejection_reason: str
    external_id: str | None
    created_at: datetime
    history: list[TransitionOut] = Field(default_factory=list)
