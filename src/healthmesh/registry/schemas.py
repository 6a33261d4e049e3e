"""API and import shapes of the registry. Validation here is what names the bad field."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Self

from annotated_types import Ge, Le
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from healthmesh.registry.codes import normalise_gtin, validate_iso3, validate_time_zone
from healthmesh.registry.eligibility import Basis
from healthmesh.registry.enums import (
    WHO_AUTHORITIES,
    AuthorisationStatus,
    FacilityKind,
    IncomeGroup,
    ProductCategory,
    StorageCondition,
    WhoListing,
)


def _bloc(value: str) -> str:
    cleaned = value.strip().upper()
    if not cleaned or not cleaned.replace("-", "").isalnum() or len(cleaned) > 32:
        raise ValueError(f"invalid bloc {value!r}: letters, digits and '-' only")
    return cleaned


def _authority(value: str) -> str:
    cleaned = value.strip().upper()
    if cleaned in WHO_AUTHORITIES:
        return cleaned
    try:
        return validate_iso3(cleaned)
    except ValueError:
        raise ValueError(
            f"unknown authority {value!r}: a member's ISO 3166-1 alpha-3 code, WHO-PQ or WHO-EUL"
        ) from None


Iso3 = Annotated[str, AfterValidator(validate_iso3)]
TimeZone = Annotated[str, AfterValidator(validate_time_zone)]
Gtin = Annotated[str, AfterValidator(normalise_gtin)]
Bloc = Annotated[str, AfterValidator(_bloc)]
Authority = Annotated[str, AfterValidator(_authority)]
Code = Annotated[str, Field(min_length=2, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]

#: Bounds of the storage columns, so an out-of-range number is a 422 naming its field and never a
#: database error (PostgreSQL INTEGER and BIGINT; SQLite's integers are 64-bit).
MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1
#: A row id in a path or a query (tables key on INTEGER).
RowId = Annotated[int, Ge(1), Le(MAX_INT)]
#: A count stored in an INTEGER column.
Count = Annotated[int, Ge(0), Le(MAX_INT)]
#: A position in a list or a log (offsets, change ids, log indices): BIGINT at most.
Position = Annotated[int, Ge(0), Le(MAX_BIGINT)]

FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)


def _plausible_day(value: date) -> date:
    """Far enough from the calendar's ends that a window, horizon or shelf life added to the day
    (or taken from it) is still a date."""
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"out of range: dates run from {FIRST_DAY} to {LAST_DAY}")
    return value


#: A calendar day given as input (a query's date, a validity, an expiry, a deadline).
Day = Annotated[date, AfterValidator(_plausible_day)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- jurisdictions -------------------------------------------------------------------------------


class JurisdictionFields(Strict):
    name: Name
    blocs: list[Bloc] = Field(default_factory=list)
    income_group: IncomeGroup
    population: int = Field(ge=0, le=MAX_BIGINT)
    data_protection_regime: str = Field(default="", max_length=200)
    time_zones: list[TimeZone] = Field(min_length=1)
    capital: str = Field(default="", max_length=120)


class JurisdictionCreate(JurisdictionFields):
    iso3: Iso3


class JurisdictionUpdate(Strict):
    name: Name | None = None
    blocs: list[Bloc] | None = None
    income_group: IncomeGroup | None = None
    population: int | None = Field(default=None, ge=0, le=MAX_BIGINT)
    data_protection_regime: str | None = Field(default=None, max_length=200)
    time_zones: list[TimeZone] | None = Field(default=None, min_length=1)
    capital: str | None = Field(default=None, max_length=120)


class JurisdictionOut(Out):
    iso3: str
    name: str
    blocs: list[str]
    income_group: IncomeGroup
    population: int
    data_protection_regime: str
    time_zones: list[str]
    capital: str


# --- facilities ----------------------------------------------------------------------------------


class FacilityFields(Strict):
    jurisdiction: Iso3
    kind: FacilityKind
    name: Name
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    time_zone: TimeZone
    parent_organisation: str = Field(default="", max_length=200)
    cold_chain_2_8: bool = False
    cold_chain_minus20: bool = False
    cold_chain_minus70: bool = False
    icu_beds: int = Field(default=0, ge=0, le=MAX_INT)
    oxygen_plant: bool = False
    lab_biosafety_level: int | None = Field(default=None, ge=1, le=4)
    active: bool = True


class FacilityCreate(FacilityFields):
    code: Code


class FacilityUpdate(Strict):
    name: Name | None = None
    kind: FacilityKind | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    time_zone: TimeZone | None = None
    parent_organisation: str | None = Field(default=None, max_length=200)
    cold_chain_2_8: bool | None = None
    cold_chain_minus20: bool | None = None
    cold_chain_minus70: bool | None = None
    icu_beds: int | None = Field(default=None, ge=0, le=MAX_INT)
    oxygen_plant: bool | None = None
    lab_biosafety_level: int | None = Field(default=None, ge=1, le=4)
    active: bool | None = None


class FacilityOut(Out):
    id: int
    code: str
    jurisdiction: str = Field(validation_alias="jurisdiction_iso3")
    kind: FacilityKind
    name: str
    latitude: float
    longitude: float
    time_zone: str
    parent_organisation: str
    cold_chain_2_8: bool
    cold_chain_minus20: bool
    cold_chain_minus70: bool
    icu_beds: int
    oxygen_plant: bool
    lab_biosafety_level: int | None
    active: bool


# --- products ------------------------------------------------------------------------------------


class ProductFields(Strict):
    gtin: Gtin | None = None
    name: Name
    category: ProductCategory
    unit_of_issue: str = Field(min_length=1, max_length=32)
    pack_size: int = Field(default=1, gt=0, le=MAX_INT)
    storage_condition: StorageCondition
    min_temp_c: float = Field(ge=-100, le=60)
    max_temp_c: float = Field(ge=-100, le=60)
    excursion_tolerance_minutes: int = Field(default=0, ge=0, le=MAX_INT)
    shelf_life_days: int = Field(gt=0, le=MAX_INT)
    is_discrete_equipment: bool = False
    who_listing: WhoListing | None = None

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min_temp_c > self.max_temp_c:
            raise ValueError("min_temp_c must not exceed max_temp_c")
        return self


class ProductCreate(ProductFields):
    code: Code


class ProductUpdate(Strict):
    gtin: Gtin | None = None
    name: Name | None = None
    category: ProductCategory | None = None
    unit_of_issue: str | None = Field(default=None, min_length=1, max_length=32)
    pack_size: int | None = Field(default=None, gt=0, le=MAX_INT)
    storage_condition: StorageCondition | None = None
    min_temp_c: float | None = Field(default=None, ge=-100, le=60)
    max_temp_c: float | None = Field(default=None, ge=-100, le=60)
    excursion_tolerance_minutes: int | None = Field(default=None, ge=0, le=MAX_INT)
    shelf_life_days: int | None = Field(default=None, gt=0, le=MAX_INT)
    is_discrete_equipment: bool | None = None
    who_listing: WhoListing | None = None


class ProductOut(Out):
    id: int
    code: str
    gtin: str | None
    name: str
    category: ProductCategory
    unit_of_issue: str
    pack_size: int
    storage_condition: StorageCondition
    min_temp_c: float
    max_temp_c: float
    excursion_tolerance_minutes: int
    shelf_life_days: int
    is_discrete_equipment: bool
    who_listing: WhoListing | None


# --- regulatory ----------------------------------------------------------------------------------


class DateRange(Strict):
    valid_from: Day
    valid_to: Day | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to: the range ends before it starts")
        return self


class AuthorisationCreate(DateRange):
    product: Code
    jurisdiction: Iso3
    status: AuthorisationStatus
    pathway: str = Field(default="", max_length=200)
    relied_on_authority: Authority | None = None
    reference: str = Field(default="", max_length=80)

    @model_validator(mode="after")
    def _reliance_names_authority(self) -> Self:
        if self.status is AuthorisationStatus.RELIANCE and not self.relied_on_authority:
            raise ValueError("relied_on_authority: required when status is reliance")
        return self


class AuthorisationOut(Out):
    id: int
    product: str = Field(validation_alias="product_code")
    jurisdiction: str = Field(validation_alias="jurisdiction_iso3")
    status: AuthorisationStatus
    pathway: str
    relied_on_authority: str | None
    reference: str
    valid_from: date
    valid_to: date | None


class RecognitionCreate(DateRange):
    jurisdiction: Iso3
    recognised_authority: Authority
    categories: list[ProductCategory] = Field(default_factory=list)
    note: str = Field(default="", max_length=300)

    @model_validator(mode="after")
    def _not_self(self) -> Self:
        if self.recognised_authority == self.jurisdiction:
            raise ValueError("recognised_authority: a member does not recognise itself")
        return self


class RecognitionOut(Out):
    id: int
    jurisdiction: str = Field(validation_alias="jurisdiction_iso3")
    recognised_authority: str
    categories: list[str]
    valid_from: date
    valid_to: date | None
    note: str


class EligibilityOut(BaseModel):
    product: str
    jurisdiction: str
    date: date
    allowed: bool
    basis: Basis
    authority: str | None
    explanation: str
