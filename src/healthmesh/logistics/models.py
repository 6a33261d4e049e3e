"""Logistics tables: shipments, their lines, their history, temperature logs, stored files.

A shipment's stock never lives here: dispatch, receipt, rejection and loss are stock events in
the ledger (reference `shipment:<id>`); these rows say what was planned, who moved it, when and
where, and how every shipped unit was accounted for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from healthmesh.accounts.models import User
from healthmesh.db import Base, UTCDateTime, utcnow
from healthmesh.logistics.routing import Mode
from healthmesh.logistics.workflow import ShipmentStatus
from healthmesh.registry.models import Facility, Product, _enum
from healthmesh.supply.models import Lot


class Blob(Base):
    """A stored file (a proof-of-delivery signature), addressed by its SHA-256: stored once."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (
        Index("ix_shipments_status_eta", "status", "eta"),
        CheckConstraint("source_facility_id <> destination_facility_id", name="distinct_ends"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("allocation_plans.id"), nullable=True, index=True)
    #: or a mutual-aid plan's transfer (a member lending to another) or reserve release
    mutual_aid_plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("mutual_aid_plans.id"), nullable=True, index=True
    )
    source_facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), index=True)
    destination_facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), index=True)
    mode: Mapped[Mode] = mapped_column(_enum(Mode))
    great_circle_km: Mapped[float] = mapped_column(Float)
    distance_km: Mapped[float] = mapped_column(Float)
    transit_hours: Mapped[float] = mapped_column(Float)
    status: Mapped[ShipmentStatus] = mapped_column(_enum(ShipmentStatus), default=ShipmentStatus.PLANNED)
    eta: Mapped[datetime] = mapped_column(UTCDateTime())
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    receiver_name: Mapped[str] = mapped_column(String(200), default="")
    signature_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), nullable=True)
    excursion_decision: Mapped[str | None] = mapped_column(String(32), nullable=True)
    quarantine_open: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    source: Mapped[Facility] = relationship(foreign_keys=[source_facility_id], lazy="joined")
    destination: Mapped[Facility] = relationship(foreign_keys=[destination_facility_id], lazy="joined")
    lines: Mapped[list[ShipmentLine]] = relationship(
        lazy="selectin", order_by="ShipmentLine.id", cascade="all, delete-orphan"
    )
    history: Mapped[list[ShipmentTransition]] = relationship(
        lazy="selectin", order_by="ShipmentTransition.id", cascade="all, delete-orphan"
    )
    logs: Mapped[list[TemperatureLog]] = relationship(
        lazy="selectin", order_by="TemperatureLog.id", cascade="all, delete-orphan"
    )

    @property
    def code(self) -> str:
        return f"SHP-{self.id:06d}"

    @property
    def reference(self) -> str:
        """The reference its stock events carry."""
        return f"shipment:{self.id}"


class ShipmentLine(Base):
    """Units of one lot on a shipment, and how every one of them was accounted for."""

    __tablename__ = "shipment_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "accepted >= 0 AND rejected >= 0 AND lost >= 0 AND accepted + rejected + lost <= quantity",
            name="accounted_within_shipped",
        ),
        CheckConstraint("quarantined >= 0 AND quarantined <= accepted", name="quarantine_within_accepted"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    #: An allocation line ships once (a cancelled shipment releases it back to the pool).
    allocation_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("allocation_lines.id"), nullable=True, unique=True
    )
    need_id: Mapped[int | None] = mapped_column(ForeignKey("needs.id"), nullable=True, index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    #: its units were reserved at the source when it was planned: dispatch takes them from the
    #: reservation, cancellation releases them
    from_reservation: Mapped[bool] = mapped_column(Boolean, default=False)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    rejections: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # reason -> units
    lost: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)

    lot: Mapped[Lot] = relationship(lazy="joined")
    product: Mapped[Product] = relationship(lazy="joined")


class ShipmentTransition(Base):
    """Who moved a shipment from one status to another, when and where."""

    __tablename__ = "shipment_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[ShipmentStatus | None] = mapped_column(_enum(ShipmentStatus), nullable=True)
    to_status: Mapped[ShipmentStatus] = mapped_column(_enum(ShipmentStatus))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    place: Mapped[str] = mapped_column(String(200), default="")
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str] = mapped_column(String(500), default="")

    actor: Mapped[User | None] = relationship(lazy="joined")


class TemperatureLog(Base):
    """One uploaded logger file: what it showed against each product's range, and the verdict."""

    __tablename__ = "temperature_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    readings: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
    min_c: Mapped[float] = mapped_column(Float)
    max_c: Mapped[float] = mapped_column(Float)
    breach: Mapped[bool] = mapped_column(Boolean)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # per product: range, excursions
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
