"""Allocation tables: stored plans with their snapshot, lines and per-need results."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from healthmesh.db import Base, UTCDateTime, utcnow
from healthmesh.registry.models import _enum


class PlanStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"


class AllocationPlan(Base):
    __tablename__ = "allocation_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_name: Mapped[str] = mapped_column(String(40))
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    day: Mapped[date] = mapped_column(Date)
    snapshot_digest: Mapped[str] = mapped_column(String(64), index=True)
    snapshot: Mapped[str] = mapped_column(Text)
    status: Mapped[PlanStatus] = mapped_column(_enum(PlanStatus), default=PlanStatus.PROPOSED, index=True)
    emergency_waiver: Mapped[bool] = mapped_column(Boolean, default=False)
    fairness: Mapped[dict[str, Any]] = mapped_column(JSON)
    solver: Mapped[dict[str, Any]] = mapped_column(JSON)
    allocated_units: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decision_note: Mapped[str] = mapped_column(String(500), default="")

    lines: Mapped[list[AllocationLine]] = relationship(
        lazy="selectin", order_by="AllocationLine.id", cascade="all, delete-orphan"
    )
    results: Mapped[list[AllocationResult]] = relationship(
        lazy="selectin", order_by="AllocationResult.need_id", cascade="all, delete-orphan"
    )


class AllocationLine(Base):
    """Units of one lot promised to one need: reserved at approval, then shipped (logistics)."""

    __tablename__ = "allocation_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_allocation_lines_plan", "plan_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("allocation_plans.id", ondelete="CASCADE"))
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"))
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    distance_km: Mapped[float] = mapped_column(Float)
    arrival: Mapped[date] = mapped_column(Date)
    origin: Mapped[str] = mapped_column(String(16))


class AllocationResult(Base):
    """What a need got in a plan, and the binding reason in plain words."""

    __tablename__ = "allocation_results"

    plan_id: Mapped[int] = mapped_column(
        ForeignKey("allocation_plans.id", ondelete="CASCADE"), primary_key=True
    )
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    requested: Mapped[int] = mapped_column(Integer)
    allocated: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    explanation: Mapped[str] = mapped_column(Text)


class PolicySetting(Base):
    """The region's agreed parameters for a named policy, replacing the built-in defaults.
    Every change is a new version and an entry in the transparency log."""

    __tablename__ = "allocation_policy_settings"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    note: Mapped[str] = mapped_column(String(500), default="")
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
