"""A stored mutual-aid plan: what was asked (inputs and policy), what HiGHS answered, and who
approved it. Approval turns its first period's moves into shipments (`logistics`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from healthmesh.allocation.models import PlanStatus
from healthmesh.db import Base, UTCDateTime, utcnow
from healthmesh.registry.models import Product, _enum


class MutualAidPlan(Base):
    __tablename__ = "mutual_aid_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    first_period: Mapped[date] = mapped_column(Date)
    status: Mapped[PlanStatus] = mapped_column(_enum(PlanStatus), default=PlanStatus.PROPOSED, index=True)
    #: SHA-256 of the canonical inputs and policy: the same request gives the same digest
    inputs_digest: Mapped[str] = mapped_column(String(64), index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)  # demand, supply, distances as given
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)  # `service.plan_to_json`, rows included
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    product: Mapped[Product] = relationship(lazy="joined")
