"""FHIR R5 interoperability: supply data in and out as standard resources.

`inventory_report` maps the stock ledger to and from `InventoryReport` (with contained
`InventoryItem`s for lots), `supply_request` maps needs to and from `SupplyRequest`, and `api` serves
both under `/fhir/R5`. Everything that enters is validated with `fhir.resources` first, and every
problem is reported with its FHIR path (`inventoryListing[0].item[2].quantity`), so a sender can
find the element to fix. This module holds what both mappings share: code systems, paths, dates.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from fhir.resources import get_fhir_model_class
from fhir.resources.resource import Resource
from pydantic import ValidationError

from healthmesh.errors import FieldError, InvalidInput

FHIR_JSON = "application/fhir+json"

#: HealthMesh product codes (`Product.code`).
PRODUCT_SYSTEM = "urn:healthmesh:product"
#: GS1 Global Trade Item Numbers, as GS1 names the system.
GTIN_SYSTEM = "https://www.gs1.org/gtin"
#: HealthMesh facility codes (`Facility.code`), e.g. THA-HO-0001.
FACILITY_SYSTEM = "urn:healthmesh:facility"
#: ISO 3166 country codes (FHIR's registered URI); HealthMesh members use the alpha-3 form.
COUNTRY_SYSTEM = "urn:iso:std:iso:3166"
#: Identifiers whose value is itself a URI (RFC 3986), as FHIR recommends for minted ids.
URI_SYSTEM = "urn:ietf:rfc:3986"

R = TypeVar("R", bound=Resource)


def fhir_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """A pydantic location as a FHIR path: ('entry', 0, 'quantity') -> entry[0].quantity."""
    out = prefix.rstrip(".")
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = "resourceType" if part == "resource_type" else part
            out += f".{name}" if out else name
    return out or "resource"


def validation_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    return [
        FieldError(fhir_path(error["loc"], prefix), str(error["msg"]).removeprefix("Value error, "))
        for error in exc.errors(include_url=False)
    ]


def _nul_paths(value: Any, loc: list[int | str]) -> list[list[int | str]]:
    """Where a string (a value or a key) holds a NUL character, which no database stores in text."""
    if isinstance(value, str):
        return [loc] if "\x00" in value else []
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                out.append(loc)
            out += _nul_paths(item, [*loc, key])
        return out
    if isinstance(value, list):
        return [path for index, item in enumerate(value) for path in _nul_paths(item, [*loc, index])]
    return []


def _is_resource_type(name: Any) -> bool:
    """A FHIR R5 resource's name (fhir.resources crashes on anything else in a nested resource)."""
    if not isinstance(name, str) or not name.isidentifier():
        return False
    try:
        return issubclass(get_fhir_model_class(name), Resource)
    except ValueError:
        return False


def _bad_resource_types(value: Any, loc: list[int | str]) -> list[list[int | str]]:
    """Where a nested object claims a resourceType that is not a resource's name."""
    if isinstance(value, list):
        return [path for index, item in enumerate(value) for path in _bad_resource_types(item, [*loc, index])]
    if not isinstance(value, dict):
        return []
    out = [] if "resourceType" not in value or _is_resource_type(value["resourceType"]) else [loc]
    for key, item in value.items():
        out += _bad_resource_types(item, [*loc, key])
    return out


def parse(model: type[R], body: Any, prefix: str = "") -> R:
    """Validate a resource with fhir.resources; every structural problem named by its path."""
    if not isinstance(body, dict):
        raise InvalidInput.on(fhir_path([], prefix), f"expected a FHIR {model.__name__} JSON object")
    nul = _nul_paths(body, [])
    if nul:
        raise InvalidInput(
            f"not a valid FHIR R5 {model.__name__}; nothing was recorded",
            [FieldError(fhir_path(loc, prefix), "contains a NUL character") for loc in nul],
        )
    if body.get("resourceType") != model.__name__:
        raise InvalidInput.on(
            fhir_path(["resourceType"], prefix),
            f"expected {model.__name__}, got {body.get('resourceType')!r}",
        )
    unknown = _bad_resource_types(body, [])
    if unknown:
        raise InvalidInput(
            f"not a valid FHIR R5 {model.__name__}; nothing was recorded",
            [
                FieldError(fhir_path([*loc, "resourceType"], prefix), "not a FHIR R5 resource type")
                for loc in unknown
            ],
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = validation_errors(exc, prefix)
        raise InvalidInput(f"not a valid FHIR R5 {model.__name__}; nothing was recorded", errors) from None


def digest_of(body: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys), so key order and spacing do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def as_json(resource: Resource) -> dict[str, Any]:
    """A validated resource as FHIR JSON (no nulls, FHIR element order)."""
    out: dict[str, Any] = resource.model_dump(mode="json")
    return out


def whole_number(value: Decimal | None) -> int | None:
    """A decimal that is a whole number, else None (stock and needs count whole units)."""
    if value is None or not value.is_finite() or value != value.to_integral_value():
        return None
    return int(value)


def as_datetime(value: Any) -> datetime | None:
    """A FHIR dateTime as an aware UTC datetime: a date is its midnight UTC; a bare year/month, or a
    time that leaves the calendar once converted to UTC (9999-12-31T23:00:00-05:00), is refused."""
    if isinstance(value, datetime):
        try:
            return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        except OverflowError:
            return None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def as_expiry(value: Any) -> date | None:
    """A FHIR dateTime as an expiry date; "2027-12" is the last day of that month, as on packs."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 7:
        year, month = int(value[:4]), int(value[5:])
        return date(year, month, calendar.monthrange(year, month)[1])
    return None


def iso(value: datetime) -> str:
    """An aware datetime as a FHIR dateTime (seconds precision, UTC 'Z')."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def remap(errors: Sequence[FieldError], fields: dict[str, str], default: str) -> list[FieldError]:
    """Domain field errors re-addressed to FHIR paths (field -> path; anything else -> default)."""
    return [FieldError(fields.get(error.field, default), error.message) for error in errors]
