"""Registry tables."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from healthmesh.db import Base, UTCDateTime, utcnow
from healthmesh.registry.enums import (
    AuthorisationStatus,
    FacilityKind,
    IncomeGroup,
    ProductCategory,
    StorageCondition,
    WhoListing,
)


def _enum(kind: type) -> Enum:
    """Enums stored as their string values, portable across SQLite and PostgreSQL."""
    return Enum(
        kind,
        native_enum=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Jurisdiction(Timestamped, Base):
    """A member of the region: a country (or territory) with its own health authority."""

    __tablename__ = "jurisdictions"
    __table_args__ = (CheckConstraint("population >= 0", name="population_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    iso3: Mapped[str] = mapped_column(String(3), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    income_group: Mapped[IncomeGroup] = mapped_column(_enum(IncomeGroup))
    population: Mapped[int] = mapped_column(BigInteger)
    data_protection_regime: Mapped[str] = mapped_column(String(200), default="")
    time_zones: Mapped[list[str]] = mapped_column(JSON, default=list)
    capital: Mapped[str] = mapped_column(String(120), default="")

    bloc_rows: Mapped[list[JurisdictionBloc]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="JurisdictionBloc.bloc"
    )

    @property
    def blocs(self) -> list[str]:
        return [row.bloc for row in self.bloc_rows]


class JurisdictionBloc(Base):
    """Membership of a regional bloc (ASEAN, EU, AU, ...); a table so lists can filter on it."""

    __tablename__ = "jurisdiction_blocs"

    jurisdiction_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdictions.id", ondelete="CASCADE"), primary_key=True
    )
    bloc: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class Facility(Timestamped, Base):
    __tablename__ = "facilities"
    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
        CheckConstraint("icu_beds >= 0", name="icu_beds_non_negative"),
        CheckConstraint(
            "lab_biosafety_level IS NULL OR lab_biosafety_level BETWEEN 1 AND 4", name="bsl_range"
        ),
        Index("ix_facilities_updated_at", "updated_at"),  # the analytics cache's registry check
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    kind: Mapped[FacilityKind] = mapped_column(_enum(FacilityKind), index=True)
    name: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    time_zone: Mapped[str] = mapped_column(String(64))
    parent_organisation: Mapped[str] = mapped_column(String(200), default="")
    cold_chain_2_8: Mapped[bool] = mapped_column(Boolean, default=False)
    cold_chain_minus20: Mapped[bool] = mapped_column(Boolean, default=False)
    cold_chain_minus70: Mapped[bool] = mapped_column(Boolean, default=False)
    icu_beds: Mapped[int] = mapped_column(Integer, default=0)
    oxygen_plant: Mapped[bool] = mapped_column(Boolean, default=False)
    lab_biosafety_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    jurisdiction: Mapped[Jurisdiction] = relationship(lazy="joined")

    @property
    def jurisdiction_iso3(self) -> str:
        return self.jurisdiction.iso3


class Product(Timestamped, Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("pack_size > 0", name="pack_size_positive"),
        CheckConstraint("shelf_life_days > 0", name="shelf_life_positive"),
        CheckConstraint("min_temp_c <= max_temp_c", name="temperature_range"),
        CheckConstraint("excursion_tolerance_minutes >= 0", name="tolerance_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    gtin: Mapped[str | None] = mapped_column(String(14), unique=True, nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[ProductCategory] = mapped_column(_enum(ProductCategory), index=True)
    unit_of_issue: Mapped[str] = mapped_column(String(32))
    pack_size: Mapped[int] = mapped_column(Integer, default=1)
    storage_condition: Mapped[StorageCondition] = mapped_column(_enum(StorageCondition))
    min_temp_c: Mapped[float] = mapped_column(Float)
    max_temp_c: Mapped[float] = mapped_column(Float)
    excursion_tolerance_minutes: Mapped[int] = mapped_column(Integer, default=0)
    shelf_life_days: Mapped[int] = mapped_column(Integer)
    is_discrete_equipment: Mapped[bool] = mapped_column(Boolean, default=False)
    who_listing: Mapped[WhoListing | None] = mapped_column(_enum(WhoListing), nullable=True)


class Authorisation(Timestamped, Base):
    """A national regulator's decision on a product, valid over a date range."""

    __tablename__ = "authorisations"
    __table_args__ = (
        UniqueConstraint("product_id", "jurisdiction_id", "valid_from"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="valid_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    status: Mapped[AuthorisationStatus] = mapped_column(_enum(AuthorisationStatus))
    pathway: Mapped[str] = mapped_column(String(200), default="")
    relied_on_authority: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reference: Mapped[str] = mapped_column(String(80), default="")
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date, nullable=True)

    product: Mapped[Product] = relationship(lazy="joined")
    jurisdiction: Mapped[Jurisdiction] = relationship(lazy="joined")

    @property
    def product_code(self) -> str:
        return self.product.code

    @property
    def jurisdiction_iso3(self) -> str:
        return self.jurisdiction.iso3


class RecognitionAgreement(Timestamped, Base):
    """Member A accepts the decisions of authority B (another member's regulator, WHO-PQ or WHO-EUL)."""

    __tablename__ = "recognition_agreements"
    __table_args__ = (
        UniqueConstraint("jurisdiction_id", "recognised_authority", "valid_from"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="valid_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    recognised_authority: Mapped[str] = mapped_column(String(16))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    note: Mapped[str] = mapped_column(String(300), default="")

    jurisdiction: Mapped[Jurisdiction] = relationship(lazy="joined")

    @property
    def jurisdiction_iso3(self) -> str:
        return self.jurisdiction.iso3
