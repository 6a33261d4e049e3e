"""Need tables: the request and its history of transitions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from healthmesh.accounts.models import User
from healthmesh.db import Base, UTCDateTime, utcnow
from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.registry.models import Facility, Jurisdiction, Product, _enum


class Need(Base):
    __tablename__ = "needs"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("population_served >= 0", name="population_non_negative"),
        CheckConstraint("quantity_allocated >= 0 AND quantity_fulfilled >= 0", name="progress_non_negative"),
        Index("ix_needs_status_product", "status", "product_id"),
        Index("ix_needs_jurisdiction_status", "jurisdiction_id", "status"),
        # Outstanding requests due by a day, per member and product (the shortage board), index-only.
        Index(
            "ix_needs_needed_by",
            "needed_by",
            postgresql_include=["status", "jurisdiction_id", "product_id", "quantity", "quantity_allocated"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"), nullable=True, index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    urgency: Mapped[Urgency] = mapped_column(_enum(Urgency))
    needed_by: Mapped[date] = mapped_column(Date)
    justification: Mapped[str] = mapped_column(Text, default="")
    population_served: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[NeedStatus] = mapped_column(_enum(NeedStatus), default=NeedStatus.DRAFT)
    quantity_allocated: Mapped[int] = mapped_column(Integer, default=0)
    quantity_fulfilled: Mapped[int] = mapped_column(Integer, default=0)
    rejection_reason: Mapped[str] = mapped_column(String(500), default="")
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    endorsed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    endorsed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    jurisdiction: Mapped[Jurisdiction] = relationship(lazy="joined")
    facility: Mapped[Facility | None] = relationship(lazy="joined")
    product: Mapped[Product] = relationship(lazy="joined")
    history: Mapped[list[NeedTransition]] = relationship(
        lazy="selectin", order_by="NeedTransition.id", cascade="all, delete-orphan"
    )

    @property
    def outstanding(self) -> int:
        return max(self.quantity - self.quantity_allocated, 0)


class NeedTransition(Base):
    """Who moved a need from one status to another, and when (and why, for rejections)."""

    __tablename__ = "need_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[NeedStatus | None] = mapped_column(_enum(NeedStatus), nullable=True)
    to_status: Mapped[NeedStatus] = mapped_column(_enum(NeedStatus))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    note: Mapped[str] = mapped_column(String(500), default="")

    actor: Mapped[User | None] = relationship(lazy="joined")
