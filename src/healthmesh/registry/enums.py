"""Closed vocabularies of the registry, shared by models, schemas, imports and the demo."""

from __future__ import annotations

from enum import StrEnum


class IncomeGroup(StrEnum):
    """World Bank income classification."""

    HIGH = "high"
    UPPER_MIDDLE = "upper_middle"
    LOWER_MIDDLE = "lower_middle"
    LOW = "low"


class FacilityKind(StrEnum):
    HOSPITAL = "hospital"
    LABORATORY = "laboratory"
    PRIMARY_CARE = "primary_care"
    NATIONAL_WAREHOUSE = "national_warehouse"
    REGIONAL_RESERVE_DEPOT = "regional_reserve_depot"


class ProductCategory(StrEnum):
    DIAGNOSTICS = "diagnostics"
    PPE = "ppe"
    BIOMEDICAL_EQUIPMENT = "biomedical_equipment"
    MEDICINE = "medicine"
    VACCINE = "vaccine"
    CONSUMABLE = "consumable"


class StorageCondition(StrEnum):
    """What a product needs; each cold condition maps to a facility capability."""

    AMBIENT = "ambient"
    COLD_2_8 = "cold_2_8"
    FROZEN_MINUS20 = "frozen_minus20"
    ULTRA_COLD_MINUS70 = "ultra_cold_minus70"


class WhoListing(StrEnum):
    PREQUALIFIED = "prequalified"
    EMERGENCY_USE_LISTING = "emergency_use_listing"


class AuthorisationStatus(StrEnum):
    AUTHORISED = "authorised"
    EMERGENCY_USE = "emergency_use"
    RELIANCE = "reliance"
    NOT_AUTHORISED = "not_authorised"


#: Authorities a member may recognise besides another member's national regulator.
WHO_AUTHORITIES: dict[str, WhoListing] = {
    "WHO-PQ": WhoListing.PREQUALIFIED,
    "WHO-EUL": WhoListing.EMERGENCY_USE_LISTING,
}
