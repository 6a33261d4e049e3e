"""FHIR R5 SupplyRequest <-> needs.

Mapping (both directions):

- `identifier[0].value` <-> `external_id`. Export puts the need's own external id first, then
  `urn:healthmesh:need:<id>` (system urn:ietf:rfc:3986); import takes the first identifier.
- `item.concept.coding` (system urn:healthmesh:product, or a GS1 GTIN, https://www.gs1.org/gtin)
  <-> `product`.
- `quantity.value` (unit = the product's unit of issue) <-> `quantity`.
- `priority` routine / urgent / asap <-> `urgency` routine / urgent / emergency (stat -> emergency).
- `occurrenceDateTime` (or `occurrencePeriod.end` on import) <-> `needed_by`, the calendar date as
  written.
- `deliverTo`: a Location with identifier system urn:healthmesh:facility <-> `facility`; or an
  Organization with identifier system urn:iso:std:iso:3166 (alpha-3) <-> `jurisdiction`, for a
  national request.
- `reason[].concept.text` <-> `justification`.
- `parameter` coded urn:healthmesh:supply-parameter#population-served, `valueQuantity` <->
  `population_served`.
- `status`: import draft -> draft, active -> submitted. Export draft -> draft; submitted up to
  partially fulfilled -> active; fulfilled -> completed; cancelled or rejected -> cancelled.

The jurisdiction goes in `deliverTo` rather than `deliverFor`: R5 restricts `deliverFor` to a
Patient, while `deliverTo` admits an Organization, and a member's national programme is one,
identified by its ISO 3166 code. The exact HealthMesh status rides along in an extension
(`NEED_STATUS_EXTENSION`), since FHIR's statuses are coarser.

Import goes through `needs.service.create`, so scope, product and date rules are the same as for the
REST API; a request without an identifier gets the digest of its JSON as external id, so sending
the same request twice is a 409 Conflict, never a duplicate need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhir.resources.bundle import Bundle
from fhir.resources.supplyrequest import SupplyRequest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal
from healthmesh.csvio import validation_errors as model_errors
from healthmesh.db import utcnow
from healthmesh.errors import DomainError, FieldError, InvalidInput
from healthmesh.interop import (
    COUNTRY_SYSTEM,
    FACILITY_SYSTEM,
    GTIN_SYSTEM,
    PRODUCT_SYSTEM,
    URI_SYSTEM,
    as_json,
    digest_of,
    iso,
    parse,
    remap,
    whole_number,
)
from healthmesh.needs import service
from healthmesh.needs.models import Need
from healthmesh.needs.schemas import NeedIn
from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.registry.codes import normalise_gtin
from healthmesh.registry.models import Product

NEED_URN = "urn:healthmesh:need:"
NEED_STATUS_EXTENSION = "urn:healthmesh:fhir:StructureDefinition:need-status"
PARAMETER_SYSTEM = "urn:healthmesh:supply-parameter"
POPULATION_SERVED = "population-served"
MAX_ENTRIES = 1000
BUNDLE_TYPES = frozenset({"collection", "batch", "transaction"})

PRIORITY_OF = {Urgency.ROUTINE: "routine", Urgency.URGENT: "urgent", Urgency.EMERGENCY: "asap"}
URGENCY_OF = {
    "routine": Urgency.ROUTINE,
    "urgent": Urgency.URGENT,
    "asap": Urgency.EMERGENCY,
    "stat": Urgency.EMERGENCY,
}
S = NeedStatus
#: FHIR SupplyRequest.status -> the need statuses it covers (export, and search by status).
STATUSES: dict[str, frozenset[NeedStatus]] = {
    "draft": frozenset({S.DRAFT}),
    "active": frozenset(
        {S.SUBMITTED, S.ENDORSED, S.OPEN, S.PARTIALLY_ALLOCATED, S.ALLOCATED, S.PARTIALLY_FULFILLED}
    ),
    "completed": frozenset({S.FULFILLED}),
    "cancelled": frozenset({S.CANCELLED, S.REJECTED}),
}
FHIR_STATUS_OF = {status: code for code, members in STATUSES.items() for status in members}
#: Fields of NeedIn -> where they come from in a SupplyRequest.
PATHS = {
    "product": "item",
    "facility": "deliverTo",
    "jurisdiction": "deliverTo",
    "quantity": "quantity",
    "urgency": "priority",
    "needed_by": "occurrenceDateTime",
    "justification": "reason",
    "population_served": "parameter",
    "external_id": "identifier",
    "submit": "status",
}


# --- export --------------------------------------------------------------------------------------


def _deliver_to(need: Need) -> dict[str, Any]:
    if need.facility is not None:
        return {
            "type": "Location",
            "identifier": {"system": FACILITY_SYSTEM, "value": need.facility.code},
            "display": need.facility.name,
        }
    return {
        "type": "Organization",
        "identifier": {"system": COUNTRY_SYSTEM, "value": need.jurisdiction.iso3},
        "display": need.jurisdiction.name,
    }


def to_resource(need: Need) -> SupplyRequest:
    """A need as a validated SupplyRequest."""
    product = need.product
    coding = [{"system": PRODUCT_SYSTEM, "code": product.code, "display": product.name}]
    if product.gtin:
        coding.append({"system": GTIN_SYSTEM, "code": product.gtin})
    identifiers = [{"system": URI_SYSTEM, "value": f"{NEED_URN}{need.id}"}]
    if need.external_id:
        identifiers.insert(0, {"value": need.external_id})
    body: dict[str, Any] = {
        "resourceType": "SupplyRequest",
        "id": str(need.id),
        "extension": [{"url": NEED_STATUS_EXTENSION, "valueCode": need.status.value}],
        "identifier": identifiers,
        "status": FHIR_STATUS_OF[need.status],
        "priority": PRIORITY_OF[need.urgency],
        "item": {"concept": {"coding": coding, "text": product.name}},
        "quantity": {"value": need.quantity, "unit": product.unit_of_issue},
        "occurrenceDateTime": need.needed_by.isoformat(),
        "authoredOn": iso(need.created_at),
        "deliverTo": _deliver_to(need),
    }
    if need.population_served:
        body["parameter"] = [
            {
                "code": {
                    "coding": [{"system": PARAMETER_SYSTEM, "code": POPULATION_SERVED}],
                    "text": "population served",
                },
                "valueQuantity": {"value": need.population_served, "unit": "person"},
            }
        ]
    if need.justification:
        body["reason"] = [{"concept": {"text": need.justification}}]
    return SupplyRequest.model_validate(body)


def to_json(need: Need) -> dict[str, Any]:
    return as_json(to_resource(need))


def bundle(needs: Sequence[Need], *, base_url: str, links: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Needs as a FHIR Bundle of type collection, each entry with its absolute fullUrl."""
    base = base_url.rstrip("/")
    body: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": iso(utcnow()),
        "entry": [{"fullUrl": f"{base}/fhir/R5/SupplyRequest/{n.id}", "resource": to_json(n)} for n in needs],
    }
    if links:
        body["link"] = [{"relation": relation, "url": url} for relation, url in links]
    if not body["entry"]:
        del body["entry"]
    return as_json(Bundle.model_validate(body))


def statuses_of(values: Sequence[str]) -> list[NeedStatus]:
    """FHIR status codes (or HealthMesh need statuses), comma-separated or repeated, as need statuses."""
    out: set[NeedStatus] = set()
    for value in values:
        for code in (part.strip() for part in value.split(",")):
            if not code:
                continue
            if code in STATUSES:
                out |= STATUSES[code]
                continue
            try:
                out.add(NeedStatus(code))
            except ValueError:
                choices = ", ".join([*STATUSES, *(s.value for s in NeedStatus)])
                raise InvalidInput.on("status", f"unknown status {code!r}; one of {choices}") from None
    return sorted(out)


# --- import --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One SupplyRequest ready for `needs.service.create`, and where it sits in the document."""

    prefix: str
    data: NeedIn


def _product(db: Session, request: SupplyRequest, prefix: str, errors: list[FieldError]) -> Product | None:
    concept = request.item.concept
    if concept is None:
        errors.append(
            FieldError(f"{prefix}item", "give the product as item.concept (a reference is not enough)")
        )
        return None
    code: str | None = None
    gtin: str | None = None
    for coding in concept.coding or []:
        if coding.system == PRODUCT_SYSTEM and coding.code:
            code = str(coding.code)
        elif coding.system == GTIN_SYSTEM and coding.code:
            try:
                gtin = normalise_gtin(str(coding.code))
            except ValueError as exc:
                errors.append(FieldError(f"{prefix}item.concept", str(exc)))
                return None
    where = f"{prefix}item.concept"
    if code is not None:
        product = db.scalar(select(Product).where(Product.code == code))
        if product is None:
            errors.append(FieldError(where, f"unknown product {code!r}"))
        elif gtin is not None and product.gtin != gtin:
            errors.append(FieldError(where, f"GTIN {gtin} is not that of {code}"))
            return None
        return product
    if gtin is not None:
        product = db.scalar(select(Product).where(Product.gtin == gtin))
        if product is None:
            errors.append(FieldError(where, f"no product with GTIN {gtin}"))
        return product
    errors.append(FieldError(where, f"needs a coding with system {PRODUCT_SYSTEM} or {GTIN_SYSTEM}"))
    return None


def _quantity(request: SupplyRequest, product: Product | None, prefix: str, errors: list[FieldError]) -> int:
    where = f"{prefix}quantity"
    value = whole_number(request.quantity.value)
    if value is None or value <= 0:
        errors.append(FieldError(where, "a positive whole number of units is required"))
        return 0
    unit = request.quantity.unit or request.quantity.code
    if product is not None and unit and str(unit).lower() != product.unit_of_issue.lower():
        errors.append(
            FieldError(where, f"unit {unit!r}: {product.code} is requested in {product.unit_of_issue!r}")
        )
    return value


def _needed_by(request: SupplyRequest, prefix: str, errors: list[FieldError]) -> date | None:
    value: Any = request.occurrenceDateTime
    where = f"{prefix}occurrenceDateTime"
    if value is None and request.occurrencePeriod is not None:
        value, where = request.occurrencePeriod.end, f"{prefix}occurrencePeriod.end"
    if isinstance(value, datetime):
        return value.date()  # the calendar date the sender wrote, not shifted to UTC
    if isinstance(value, date):
        return value
    errors.append(FieldError(where, "the date the supplies are needed by is required (a full date)"))
    return None


def _place(request: SupplyRequest, prefix: str, errors: list[FieldError]) -> dict[str, str]:
    where = f"{prefix}deliverTo"
    identifier = request.deliverTo.identifier if request.deliverTo else None
    if identifier is not None and identifier.value:
        if identifier.system == FACILITY_SYSTEM:
            return {"facility": str(identifier.value)}
        if identifier.system == COUNTRY_SYSTEM:
            return {"jurisdiction": str(identifier.value).upper()}
    errors.append(
        FieldError(
            where,
            f"identify a facility (Location, identifier system {FACILITY_SYSTEM}) or a member "
            f"(Organization, identifier system {COUNTRY_SYSTEM}, alpha-3)",
        )
    )
    return {}


def _justification(request: SupplyRequest) -> str:
    texts: list[str] = []
    for reason in request.reason or []:
        concept = reason.concept
        if concept is None:
            continue
        if concept.text:
            texts.append(str(concept.text))
        else:
            texts.extend(str(c.display or c.code) for c in concept.coding or [] if c.display or c.code)
    return "; ".join(texts)


def _population(request: SupplyRequest, prefix: str, errors: list[FieldError]) -> int:
    for index, parameter in enumerate(request.parameter or []):
        codings = parameter.code.coding if parameter.code else None
        if any(c.system == PARAMETER_SYSTEM and c.code == POPULATION_SERVED for c in codings or []):
            value = whole_number(parameter.valueQuantity.value if parameter.valueQuantity else None)
            if value is None or value < 0:
                errors.append(
                    FieldError(f"{prefix}parameter[{index}].valueQuantity", "a whole number of people")
                )
                return 0
            return value
    return 0


def _external_id(request: SupplyRequest, raw: Any) -> str:
    """The request's first identifier value; without one, the digest of its JSON."""
    identifier = next((i for i in request.identifier or [] if i.value), None)
    return str(identifier.value) if identifier is not None else f"sha256:{digest_of(raw)}"


def _need_in(
    db: Session, request: SupplyRequest, raw: Any, prefix: str, errors: list[FieldError]
) -> NeedIn | None:
    """A SupplyRequest as NeedIn; problems appended to `errors` with their paths."""
    mine: list[FieldError] = []
    status = request.status or "draft"
    if status not in ("draft", "active"):
        mine.append(
            FieldError(f"{prefix}status", f"{status!r}: only a draft or an active request is imported")
        )
    priority = request.priority or "routine"
    if priority not in URGENCY_OF:
        mine.append(FieldError(f"{prefix}priority", f"{priority!r}: expected routine, urgent, asap or stat"))
    product = _product(db, request, prefix, mine)
    values: dict[str, Any] = {
        "product": product.code if product else "",
        "quantity": _quantity(request, product, prefix, mine),
        "urgency": URGENCY_OF.get(str(priority), Urgency.ROUTINE),
        "needed_by": _needed_by(request, prefix, mine),
        "justification": _justification(request),
        "population_served": _population(request, prefix, mine),
        "submit": status == "active",
        "external_id": _external_id(request, raw),
        **_place(request, prefix, mine),
    }
    if mine:
        errors.extend(mine)
        return None
    try:
        return NeedIn.model_validate(values)
    except ValidationError as exc:
        fields = {name: prefix + path for name, path in PATHS.items()}
        errors.extend(remap(model_errors(exc), fields, prefix.rstrip(".") or "resource"))
        return None


def _entries(db: Session, body: Any) -> list[_Entry]:
    """Every SupplyRequest of the document (one, or a Bundle of them), checked whole."""
    errors: list[FieldError] = []
    out: list[_Entry] = []
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        raw_entries = body.get("entry")
        resources: list[Any] = []
        if isinstance(raw_entries, list) and all(isinstance(e, dict) for e in raw_entries):
            # The envelope first, then each resource on its own: every entry's problems at once.
            resources = [e.get("resource") for e in raw_entries]
            body = {**body, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in raw_entries]}
        document = parse(Bundle, body)
        if document.type not in BUNDLE_TYPES:
            errors.append(
                FieldError("type", f"{document.type!r}: expected one of {', '.join(sorted(BUNDLE_TYPES))}")
            )
        if not resources or len(resources) > MAX_ENTRIES:
            errors.append(FieldError("entry", f"between 1 and {MAX_ENTRIES} SupplyRequest entries"))
        for index, raw in enumerate(resources[:MAX_ENTRIES]):
            prefix = f"entry[{index}].resource."
            try:
                request = parse(SupplyRequest, raw, prefix)
            except InvalidInput as exc:
                errors.extend(exc.errors)
                continue
            data = _need_in(db, request, raw, prefix, errors)
            if data is not None:
                out.append(_Entry(prefix, data))
    else:
        data = _need_in(db, parse(SupplyRequest, body), body, "", errors)
        if data is not None:
            out.append(_Entry("", data))
    seen: dict[str, str] = {}
    for item in out:
        external_id = item.data.external_id or ""
        if external_id in seen:
            errors.append(FieldError(f"{item.prefix}identifier", f"the same request as {seen[external_id]}"))
        seen[external_id] = item.prefix.rstrip(".") or "resource"
    if errors:
        raise InvalidInput(f"{len(errors)} problem(s) in the request(s); nothing was imported", errors)
    return out


def import_requests(db: Session, actor: Principal, body: Any) -> list[Need]:
    """Raise a need per SupplyRequest (one, or a Bundle of them), all or nothing.

    Re-importing a request whose identifier is already a need's external id is a 409 Conflict.
    """
    needs: list[Need] = []
    for entry in _entries(db, body):
        try:
            needs.append(service.create(db, actor, entry.data))
        except DomainError as exc:
            fields = {name: entry.prefix + path for name, path in PATHS.items()}
            errors = remap(exc.errors, fields, entry.prefix.rstrip(".") or "resource")
            raise type(exc)(exc.detail, errors) from None
    return needs
