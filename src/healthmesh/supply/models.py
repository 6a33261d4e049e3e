"""Supply tables: lots, the append-only stock event log, and the balance projections.

Balances are never written directly: `supply.ledger` applies events and updates the
projections (`lot_balances`, `stock_balances`) in the same transaction. CHECK constraints keep
a balance from going negative even if a bug slipped past the ledger's own checks.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from healthmesh.db import Base, UTCDateTime, utcnow
from healthmesh.registry.models import Facility, Jurisdiction, Product, _enum
from healthmesh.supply.enums import EventKind, PledgeStatus


class Lot(Base):
    """A manufacturer's lot of a product as held at one facility."""

    __tablename__ = "lots"
    __table_args__ = (UniqueConstraint("facility_id", "product_id", "lot_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    lot_number: Mapped[str] = mapped_column(String(64))
    expiry_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    facility: Mapped[Facility] = relationship(lazy="joined")
    product: Mapped[Product] = relationship(lazy="joined")


class StockEvent(Base):
    """One movement of stock. Append-only: corrections are new events (adjustments)."""

    __tablename__ = "stock_events"
    __table_args__ = (
        Index("ix_stock_events_facility_product_occurred", "facility_id", "product_id", "occurred_at"),
        Index("ix_stock_events_lot", "lot_id", "id"),
        # Events of a kind since a day: issues in the ADC window (index-only on PostgreSQL), the
        # transfers behind the pipeline, the movements behind stock-out days (supply.summary).
        Index(
            "ix_stock_events_kind_occurred",
            "kind",
            "occurred_at",
            postgresql_include=["facility_id", "product_id", "quantity"],
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"))
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind))
    quantity: Mapped[int] = mapped_column(Integer)
    on_hand_delta: Mapped[int] = mapped_column(Integer)
    reserved_delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200), default="")
    reference: Mapped[str] = mapped_column(String(80), default="")
    counterpart_facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_batches.id"), nullable=True)


class LotBalance(Base):
    """Projection: what a lot holds now (on hand, of which reserved)."""

    __tablename__ = "lot_balances"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_non_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
        Index("ix_lot_balances_facility_product", "facility_id", "product_id"),
    )

    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"), primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)


class StockBalance(Base):
    """Projection: a facility's total of a product across its lots."""

    __tablename__ = "stock_balances"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_non_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
        Index("ix_stock_balances_product", "product_id"),
    )

    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IngestBatch(Base):
    """A write of one or many events, remembered under its idempotency key so a retry changes nothing."""

    __tablename__ = "ingest_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    events: Mapped[int] = mapped_column(Integer)
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Pledge(Base):
    """Part of a member's stock offered to the regional pool for a period."""

    __tablename__ = "pledges"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("valid_to >= valid_from", name="valid_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date] = mapped_column(Date)
    status: Mapped[PledgeStatus] = mapped_column(_enum(PledgeStatus), default=PledgeStatus.ACTIVE)
    note: Mapped[str] = mapped_column(String(300), default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    jurisdiction: Mapped[Jurisdiction] = relationship(lazy="joined")
    facility: Mapped[Facility] = relationship(lazy="joined")
    product: Mapped[Product] = relationship(lazy="joined")


class StockSnapshot(Base):
    """A day's closing position of a facility x product, kept for trends."""

    __tablename__ = "stock_snapshots"
    __table_args__ = (
        # covering on PostgreSQL: a member's trend reads its facilities' units without the table
        Index(
            "ix_stock_snapshots_product_day",
            "product_id",
            "day",
            postgresql_include=["facility_id", "on_hand"],
        ),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer)
    expired: Mapped[int] = mapped_column(Integer)
    issued_in_window: Mapped[int] = mapped_column(Integer)
    stocked_out: Mapped[bool] = mapped_column(Boolean)
