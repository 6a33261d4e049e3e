"""FHIR R5 SupplyDelivery <-> shipments: one SupplyDelivery per shipment line, out and (receipt) in.

Export, per line of a shipment that has left its source (dispatched, in transit, delivered,
received or lost). A shipment still planned or picked has moved nothing, and a SupplyDelivery
records a movement, so it has no SupplyDelivery yet (read: 404, search: not listed); a cancelled
shipment was by the workflow never dispatched, so it never has one either.

- `id` `shp-<shipment id>-<line id>`; `identifier` system `urn:healthmesh:shipment-line`, value
  `SHP-000123/<line id>` (the shipment's code, a slash, the line id).
- `basedOn` `SupplyRequest/<need id>`, the need the line serves, as `supply_request` exports it.
- `status`: in-progress while dispatched, in transit or delivered; completed once received;
  abandoned when lost. The exact shipment status rides along in `SHIPMENT_STATUS_EXTENSION`.
- stage: R5 has no `SupplyDelivery.stage` (the R6 ballot adds it, fhir.resources 8 / R5 refuses
  it), so it travels in `STAGE_EXTENSION` as a CodeableConcept of the R6 code system
  http://hl7.org/fhir/supplydelivery-stage: `dispatch` until received, `reception` after.
- `suppliedItem[0]`: `quantity` in the product's unit of issue (shipped units at the dispatch
  stage; ACCEPTED units at the reception stage), and `itemReference` "#lot" to a contained R5
  `InventoryItem` carrying the product coding (urn:healthmesh:product, plus the GS1 GTIN when the
  product has one), the unit and `instance.lotNumber` / `instance.expiry` - the same shape
  `inventory_report` uses for lots. R5's `item[x]` is a choice, so the product code cannot go
  in `itemCodeableConcept` next to a lot reference; InventoryItem is the R5 supply-chain resource
  that admits every product category (Medication would only suit medicines, Device only devices).
- `occurrenceDateTime` the receipt time once received, else the dispatch time.
- `supplier` the source facility as an Organization (R5 restricts `supplier` to Practitioner,
  PractitionerRole or Organization), `destination` the destination facility as a Location, both
  identified as everywhere else (system urn:healthmesh:facility, the facility code) - logical
  references, since facilities are not served as FHIR resources here.
- `receiver[0].display` the receiver's name, once received.
- Once received (or lost), `RECEIPT_EXTENSION` accounts for every shipped unit: sub-extensions
  `shipped`, `accepted`, one `rejected` per reason (`reason` valueCode damaged | expired |
  temperature_excursion | short_shipped, `quantity`), `lost`, `quarantined`. The excursion
  decision, if any, is `EXCURSION_EXTENSION` (valueCode).

Import: a partner's receiving system confirms receipt with SupplyDeliveries at the reception
stage, `status` completed, `suppliedItem[0].quantity` = units accepted, rejected units in
`RECEIPT_EXTENSION` (`rejected` entries; `shipped`/`accepted`/`lost`, when given, must agree),
`receiver[0].display` (required), optional `occurrenceDateTime` and excursion decision.
HealthMesh records a receipt per shipment, all lines at once, so the document is a Bundle
(transaction or collection) with one SupplyDelivery per line of ONE shipment, or a single
SupplyDelivery when the shipment has one line; each names its line by identifier or id as
exported. Units neither accepted nor rejected are refused, never booked as short-shipped behind
the sender's back. Every problem is named by its FHIR path; the receipt goes through
`logistics.service.receive`, all or nothing, under the Idempotency-Key header or else the digest
of the document, so posting it again changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir.resources.bundle import Bundle
from fhir.resources.extension import Extension
from fhir.resources.inventoryitem import InventoryItem
from fhir.resources.supplydelivery import SupplyDelivery
from pydantic import ValidationError
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal
from healthmesh.db import utcnow
from healthmesh.errors import DomainError, FieldError, InvalidInput, NotFound, PermissionDenied
from healthmesh.interop import (
    FACILITY_SYSTEM,
    GTIN_SYSTEM,
    PRODUCT_SYSTEM,
    as_datetime,
    as_json,
    digest_of,
    iso,
    parse,
    whole_number,
)
from healthmesh.logistics import service
from healthmesh.logistics.models import Shipment, ShipmentLine
from healthmesh.logistics.schemas import (
    ExcursionDecision,
    ReceiptIn,
    ReceiptLineIn,
    RejectionIn,
    RejectionReason,
)
from healthmesh.logistics.workflow import ShipmentStatus, Side
from healthmesh.registry.codes import normalise_gtin

SHIPMENT_LINE_SYSTEM = "urn:healthmesh:shipment-line"
STAGE_EXTENSION = "urn:healthmesh:fhir:StructureDefinition:supply-delivery-stage"
STAGE_SYSTEM = "http://hl7.org/fhir/supplydelivery-stage"
SHIPMENT_STATUS_EXTENSION = "urn:healthmesh:fhir:StructureDefinition:shipment-status"
RECEIPT_EXTENSION = "urn:healthmesh:fhir:StructureDefinition:receipt-accounting"
EXCURSION_EXTENSION = "urn:healthmesh:fhir:StructureDefinition:excursion-decision"
KEY_PREFIX = "fhir:SupplyDelivery:"
BUNDLE_TYPES = frozenset({"transaction", "collection"})
MAX_ENTRIES = 1000
LOT_REF = "lot"

S = ShipmentStatus
DISPATCH, RECEPTION = "dispatch", "reception"
STAGE_DISPLAY = {DISPATCH: "Dispatch", RECEPTION: "Reception"}
#: Shipment statuses with a SupplyDelivery, and its status there.
FHIR_STATUS_OF: dict[ShipmentStatus, str] = {
    S.DISPATCHED: "in-progress",
    S.IN_TRANSIT: "in-progress",
    S.DELIVERED: "in-progress",
    S.RECEIVED: "completed",
    S.LOST: "abandoned",
}
_ID = re.compile(r"^shp-(\d{1,12})-(\d{1,12})$")
_LINE = re.compile(r"^SHP-(\d{1,12})/(\d{1,12})$")
_SHIPMENT = re.compile(r"^(?:SHP-)?(\d{1,12})$", re.IGNORECASE)


# --- export --------------------------------------------------------------------------------------


def resource_id(shipment: Shipment, line: ShipmentLine) -> str:
    return f"shp-{shipment.id}-{line.id}"


def line_identifier(shipment: Shipment, line: ShipmentLine) -> str:
    return f"{shipment.code}/{line.id}"


def exported(shipment: Shipment) -> bool:
    """Whether the shipment's lines are SupplyDeliveries yet (it has left its source)."""
    return shipment.status in FHIR_STATUS_OF


def _facility(kind: str, facility: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "identifier": {"system": FACILITY_SYSTEM, "value": facility.code},
        "display": facility.name,
    }


def _inventory_item(line: ShipmentLine) -> dict[str, Any]:
    product = line.product
    coding = [{"system": PRODUCT_SYSTEM, "code": product.code, "display": product.name}]
    if product.gtin:
        coding.append({"system": GTIN_SYSTEM, "code": product.gtin})
    instance: dict[str, Any] = {"lotNumber": line.lot.lot_number}
    if line.lot.expiry_date is not None:
        instance["expiry"] = line.lot.expiry_date.isoformat()
    return {
        "resourceType": "InventoryItem",
        "id": LOT_REF,
        "status": "active",
        "code": [{"coding": coding, "text": product.name}],
        "baseUnit": {"text": product.unit_of_issue},
        "instance": instance,
    }


def _units(value: int, line: ShipmentLine) -> dict[str, Any]:
    return {"value": value, "unit": line.product.unit_of_issue}


def _accounting(line: ShipmentLine) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "shipped", "valueQuantity": _units(line.quantity, line)},
        {"url": "accepted", "valueQuantity": _units(line.accepted, line)},
    ]
    for reason, units in sorted((line.rejections or {}).items()):
        if units:
            parts.append(
                {
                    "url": "rejected",
                    "extension": [
                        {"url": "reason", "valueCode": reason},
                        {"url": "quantity", "valueQuantity": _units(int(units), line)},
                    ],
                }
            )
    parts.append({"url": "lost", "valueQuantity": _units(line.lost, line)})
    if line.quarantined:
        parts.append({"url": "quarantined", "valueQuantity": _units(line.quarantined, line)})
    return {"url": RECEIPT_EXTENSION, "extension": parts}


def _stage(code: str) -> dict[str, Any]:
    return {
        "url": STAGE_EXTENSION,
        "valueCodeableConcept": {
            "coding": [{"system": STAGE_SYSTEM, "code": code, "display": STAGE_DISPLAY[code]}]
        },
    }


def to_resource(shipment: Shipment, line: ShipmentLine) -> SupplyDelivery:
    """One line of a dispatched (or later) shipment as a validated SupplyDelivery."""
    if not exported(shipment):
        raise ValueError(f"{shipment.code} is {shipment.status.value}: not a delivery yet")
    received = shipment.status is S.RECEIVED
    stage = RECEPTION if received else DISPATCH
    extensions: list[dict[str, Any]] = [
        _stage(stage),
        {"url": SHIPMENT_STATUS_EXTENSION, "valueCode": shipment.status.value},
    ]
    if shipment.status in (S.RECEIVED, S.LOST):
        extensions.append(_accounting(line))
    if shipment.excursion_decision:
        extensions.append({"url": EXCURSION_EXTENSION, "valueCode": shipment.excursion_decision})
    when = shipment.received_at if received else shipment.dispatched_at
    body: dict[str, Any] = {
        "resourceType": "SupplyDelivery",
        "id": resource_id(shipment, line),
        "contained": [_inventory_item(line)],
        "extension": extensions,
        "identifier": [{"system": SHIPMENT_LINE_SYSTEM, "value": line_identifier(shipment, line)}],
        "status": FHIR_STATUS_OF[shipment.status],
        "suppliedItem": [
            {
                "quantity": _units(line.accepted if received else line.quantity, line),
                "itemReference": {"reference": f"#{LOT_REF}", "display": line.product.name},
            }
        ],
        "supplier": _facility("Organization", shipment.source),
        "destination": _facility("Location", shipment.destination),
    }
    if line.need_id is not None:
        body["basedOn"] = [{"reference": f"SupplyRequest/{line.need_id}"}]
    if when is not None:
        body["occurrenceDateTime"] = iso(when)
    if received and shipment.receiver_name:
        body["receiver"] = [{"display": shipment.receiver_name}]
    return SupplyDelivery.model_validate(body)


def to_json(shipment: Shipment, line: ShipmentLine) -> dict[str, Any]:
    return as_json(to_resource(shipment, line))


def read(db: Session, actor: Principal, resource_id_: str) -> dict[str, Any]:
    """A SupplyDelivery by id; unknown, out of scope and not yet dispatched are all not found."""
    match = _ID.match(resource_id_)
    if match is None:
        raise NotFound(f"no SupplyDelivery {resource_id_!r} (ids look like shp-<shipment>-<line>)")
    shipment_id, line_id = int(match[1]), int(match[2])
    shipment = service.get(db, actor, shipment_id)
    line = next((x for x in shipment.lines if x.id == line_id), None)
    if line is None or not exported(shipment):
        raise NotFound(f"no SupplyDelivery {resource_id_!r}")
    return to_json(shipment, line)


def shipment_id_of(value: str) -> int:
    """A search's `shipment` parameter: the id (123) or the code (SHP-000123)."""
    match = _SHIPMENT.match(value.strip())
    if match is None:
        raise InvalidInput.on("shipment", f"{value!r}: give a shipment id (123) or code (SHP-000123)")
    return int(match[1])


def search(
    db: Session, actor: Principal, shipment_id: int, *, count: int, offset: int
) -> tuple[Shipment | None, list[ShipmentLine], int]:
    """The shipment's lines as SupplyDeliveries, a page of them, and how many there are; a shipment
    unknown, out of scope or not yet dispatched matches nothing (a search leaks no existence)."""
    try:
        shipment = service.get(db, actor, shipment_id)
    except NotFound:
        return None, [], 0
    if not exported(shipment):
        return shipment, [], 0
    return shipment, list(shipment.lines[offset : offset + count]), len(shipment.lines)


def searchset(
    shipment: Shipment | None,
    lines: Sequence[ShipmentLine],
    total: int,
    *,
    base_url: str,
    links: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Search results as a FHIR Bundle of type searchset (each entry a match, with its fullUrl)."""
    base = base_url.rstrip("/")
    body: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": iso(utcnow()),
        "total": total,
    }
    if links:
        body["link"] = [{"relation": relation, "url": url} for relation, url in links]
    if shipment is not None and lines:
        body["entry"] = [
            {
                "fullUrl": f"{base}/fhir/R5/SupplyDelivery/{resource_id(shipment, line)}",
                "resource": to_json(shipment, line),
                "search": {"mode": "match"},
            }
            for line in lines
        ]
    return as_json(Bundle.model_validate(body))


# --- import --------------------------------------------------------------------------------------


@dataclass
class _Posted:
    """One posted SupplyDelivery: where it sits, which line it names, and what it says."""

    prefix: str  # "" or "entry[i].resource."
    resource: SupplyDelivery
    shipment_id: int | None = None
    line_id: int | None = None
    ref_path: str = ""
    accepted: int | None = None
    rejected: list[RejectionIn] = field(default_factory=list)
    shipped: tuple[int, str] | None = None  # (units, path)
    accepted_ext: tuple[int, str] | None = None
    quantity_path: str = ""

    def at(self, path: str) -> str:
        return f"{self.prefix}{path}"

    @property
    def where(self) -> str:
        return self.prefix.rstrip(".") or "resource"


@dataclass(frozen=True)
class ImportResult:
    shipment: Shipment
    replayed: bool
    bundle_type: str | None  # None: a single resource was posted


def _line_ref(posted: _Posted, errors: list[FieldError]) -> None:
    """The (shipment, line) the resource names: its identifier, else its id as exported."""
    resource = posted.resource
    for index, identifier in enumerate(resource.identifier or []):
        value = str(identifier.value or "")
        match = _LINE.match(value)
        if match is not None:
            posted.shipment_id, posted.line_id = int(match[1]), int(match[2])
            posted.ref_path = posted.at(f"identifier[{index}]")
            return
        if identifier.system == SHIPMENT_LINE_SYSTEM:
            errors.append(
                FieldError(
                    posted.at(f"identifier[{index}].value"), f"{value!r}: expected SHP-000123/<line id>"
                )
            )
            return
    match = _ID.match(str(resource.id or ""))
    if match is not None:
        posted.shipment_id, posted.line_id = int(match[1]), int(match[2])
        posted.ref_path = posted.at("id")
        return
    errors.append(
        FieldError(
            posted.at("identifier"),
            f"name the shipment line: identifier (system {SHIPMENT_LINE_SYSTEM}) SHP-000123/<line id>, "
            "or id shp-<shipment>-<line>, as HealthMesh exports it",
        )
    )


def _documents(body: Any) -> tuple[list[_Posted], str | None, list[FieldError]]:
    """Every SupplyDelivery of the document, validated by fhir.resources, with structural errors."""
    errors: list[FieldError] = []
    if not (isinstance(body, dict) and body.get("resourceType") == "Bundle"):
        return [_Posted("", parse(SupplyDelivery, body))], None, errors
    raw_entries = body.get("entry")
    resources: list[Any] = []
    if isinstance(raw_entries, list) and all(isinstance(e, dict) for e in raw_entries):
        # The envelope first, then each resource on its own: every entry's problems at once.
        resources = [e.get("resource") for e in raw_entries]
        body = {**body, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in raw_entries]}
    document = parse(Bundle, body)
    if document.type not in BUNDLE_TYPES:
        errors.append(FieldError("type", f"{document.type!r}: expected transaction or collection"))
    if not resources or len(resources) > MAX_ENTRIES:
        errors.append(FieldError("entry", f"between 1 and {MAX_ENTRIES} SupplyDelivery entries"))
    for index, entry in enumerate(document.entry or []):
        request = entry.request
        if request is not None and (
            request.method not in ("POST", "PUT") or not str(request.url or "").startswith("SupplyDelivery")
        ):
            errors.append(
                FieldError(f"entry[{index}].request", "a receipt is a POST (or PUT) of a SupplyDelivery")
            )
    posted: list[_Posted] = []
    for index, raw in enumerate(resources[:MAX_ENTRIES]):
        prefix = f"entry[{index}].resource."
        try:
            posted.append(_Posted(prefix, parse(SupplyDelivery, raw, prefix)))
        except InvalidInput as exc:
            errors.extend(exc.errors)
    return posted, str(document.type), errors


def _stage_of(posted: _Posted) -> tuple[str | None, str]:
    for index, extension in enumerate(posted.resource.extension or []):
        if extension.url == STAGE_EXTENSION:
            path = posted.at(f"extension[{index}]")
            concept = extension.valueCodeableConcept
            for coding in concept.coding or [] if concept else []:
                if coding.system == STAGE_SYSTEM and coding.code:
                    return str(coding.code), path
            return "", path
    return None, posted.at("extension")


def _quantity(value: Any, line: ShipmentLine | None, path: str, errors: list[FieldError]) -> int | None:
    """A whole, non-negative number of units in the product's unit of issue."""
    if value is None or value.value is None:
        errors.append(FieldError(path, "a value is required (units)"))
        return None
    units = whole_number(value.value)
    if units is None or units < 0:
        errors.append(FieldError(path, f"{value.value} is not a whole, non-negative number of units"))
        return None
    unit = value.unit or value.code
    if line is not None and unit and str(unit).lower() != line.product.unit_of_issue.lower():
        errors.append(
            FieldError(
                path, f"unit {unit!r}: {line.product.code} is shipped in {line.product.unit_of_issue!r}"
            )
        )
        return None
    return units


def _rejection(
    extension: Extension, line: ShipmentLine | None, path: str, errors: list[FieldError]
) -> RejectionIn | None:
    reason: str | None = None
    units: int | None = None
    for index, part in enumerate(extension.extension or []):
        if part.url == "reason":
            reason = str(part.valueCode or "")
        elif part.url == "quantity":
            units = _quantity(part.valueQuantity, line, f"{path}.extension[{index}].valueQuantity", errors)
    choices = ", ".join(r.value for r in RejectionReason)
    if reason not in {r.value for r in RejectionReason}:
        errors.append(FieldError(f"{path}.extension", f"a reason (valueCode) is required: one of {choices}"))
        return None
    if units is None:
        if not any(e.field.startswith(f"{path}.extension[") for e in errors):
            errors.append(FieldError(f"{path}.extension", "a quantity (valueQuantity) is required"))
        return None
    if units == 0:
        errors.append(FieldError(f"{path}.extension", "a rejection counts at least one unit"))
        return None
    return RejectionIn(reason=RejectionReason(reason), quantity=units)


def _accounting_in(posted: _Posted, line: ShipmentLine | None, errors: list[FieldError]) -> None:
    """The receipt extension of a posted resource: its rejections, and totals that must agree."""
    for index, extension in enumerate(posted.resource.extension or []):
        if extension.url != RECEIPT_EXTENSION:
            continue
        base = posted.at(f"extension[{index}]")
        reasons: dict[str, str] = {}
        for j, part in enumerate(extension.extension or []):
            path = f"{base}.extension[{j}]"
            if part.url == "rejected":
                rejection = _rejection(part, line, path, errors)
                if rejection is None:
                    continue
                if rejection.reason.value in reasons:
                    errors.append(
                        FieldError(
                            path,
                            f"{rejection.reason.value} is also given at {reasons[rejection.reason.value]}",
                        )
                    )
                    continue
                reasons[rejection.reason.value] = path
                posted.rejected.append(rejection)
            elif part.url in ("shipped", "accepted", "lost"):
                units = _quantity(part.valueQuantity, line, f"{path}.valueQuantity", errors)
                if units is None:
                    continue
                if part.url == "shipped":
                    posted.shipped = (units, f"{path}.valueQuantity")
                elif part.url == "accepted":
                    posted.accepted_ext = (units, f"{path}.valueQuantity")
                elif units:
                    errors.append(
                        FieldError(
                            f"{path}.valueQuantity",
                            "units that never arrived are rejected with reason short_shipped, not lost",
                        )
                    )
        return


def _excursion(posts: Sequence[_Posted], errors: list[FieldError]) -> ExcursionDecision | None:
    decision: ExcursionDecision | None = None
    first = ""
    for posted in posts:
        for index, extension in enumerate(posted.resource.extension or []):
            if extension.url != EXCURSION_EXTENSION:
                continue
            path = posted.at(f"extension[{index}]")
            try:
                value = ExcursionDecision(str(extension.valueCode or ""))
            except ValueError:
                choices = ", ".join(d.value for d in ExcursionDecision)
                errors.append(FieldError(f"{path}.valueCode", f"{extension.valueCode!r}: one of {choices}"))
                continue
            if decision is not None and value is not decision:
                errors.append(
                    FieldError(f"{path}.valueCode", f"{value.value}, but {first} says {decision.value}")
                )
                continue
            decision, first = value, path
    return decision


def _same(values: list[tuple[Any, str]], what: str, errors: list[FieldError]) -> Any:
    """The one value all resources give (None if none does); a disagreement is an error."""
    if not values:
        return None
    first, first_path = values[0]
    for value, path in values[1:]:
        if value != first:
            errors.append(FieldError(path, f"every line of a receipt has the same {what} (see {first_path})"))
    return first


def _item_matches(posted: _Posted, line: ShipmentLine, errors: list[FieldError]) -> None:
    """When the resource says what it carries, it must be the line's product and lot."""
    items = posted.resource.suppliedItem or []
    if len(items) != 1:
        return
    item = items[0]
    codes: list[tuple[str, str]] = []
    path = posted.at("suppliedItem[0]")
    lot_number: tuple[str, str] | None = None
    if item.itemCodeableConcept is not None:
        path += ".itemCodeableConcept"
        codes = [(str(c.system), str(c.code)) for c in item.itemCodeableConcept.coding or [] if c.code]
    elif item.itemReference is not None and item.itemReference.reference:
        ref = str(item.itemReference.reference)
        path += ".itemReference"
        contained = [
            (index, r)
            for index, r in enumerate(posted.resource.contained or [])
            if isinstance(r, InventoryItem) and f"#{r.id}" == ref
        ]
        if not contained:
            errors.append(FieldError(path, f"{ref!r}: no contained InventoryItem with that id"))
            return
        index, inventory = contained[0]
        path = posted.at(f"contained[{index}].code")
        codes = [
            (str(c.system), str(c.code))
            for concept in inventory.code or []
            for c in concept.coding or []
            if c.code
        ]
        if inventory.instance is not None and inventory.instance.lotNumber:
            lot_number = (
                str(inventory.instance.lotNumber),
                posted.at(f"contained[{index}].instance.lotNumber"),
            )
    product = line.product
    for system, code in codes:
        if system == PRODUCT_SYSTEM and code != product.code:
            errors.append(FieldError(path, f"{code}: line {line.id} carries {product.code}"))
        elif system == GTIN_SYSTEM:
            try:
                gtin = normalise_gtin(code)
            except ValueError as exc:
                errors.append(FieldError(path, str(exc)))
                continue
            if gtin != product.gtin:
                errors.append(
                    FieldError(
                        path, f"GTIN {gtin} is not that of {product.code}, which line {line.id} carries"
                    )
                )
    if lot_number is not None and lot_number[0] != line.lot.lot_number:
        errors.append(
            FieldError(
                lot_number[1], f"{lot_number[0]!r}: line {line.id} carries lot {line.lot.lot_number!r}"
            )
        )


class _Reader:
    """Reads the posted resources against the shipment, collecting every problem before raising."""

    def __init__(
        self, shipment: Shipment, posts: list[_Posted], bundle_type: str | None, *, complete: bool
    ) -> None:
        self.shipment = shipment
        self.posts = posts
        self.bundle_type = bundle_type
        self.complete = complete  # every entry was read (else a missing line may just be unreadable)
        self.errors: list[FieldError] = []
        self.lines = {line.id: line for line in shipment.lines}

    def receipt(self) -> ReceiptIn | None:
        seen: dict[int, str] = {}
        receivers: list[tuple[str, str]] = []
        times: list[tuple[datetime, str]] = []
        for posted in self.posts:
            ours = posted.shipment_id == self.shipment.id and posted.line_id is not None
            line = self.lines.get(posted.line_id) if ours and posted.line_id is not None else None
            if ours and line is None:
                self.errors.append(
                    FieldError(posted.ref_path, f"{self.shipment.code} has no line {posted.line_id}")
                )
            elif line is not None and line.id in seen:
                self.errors.append(
                    FieldError(posted.ref_path, f"line {line.id} is also given at {seen[line.id]}")
                )
                line = None
            elif line is not None:
                seen[line.id] = posted.where
            self._content(posted, line, receivers, times)
        missing = [line for line_id, line in self.lines.items() if line_id not in seen]
        unresolved = any(p.shipment_id != self.shipment.id or p.line_id not in self.lines for p in self.posts)
        if missing and self.complete and not unresolved:
            names = ", ".join(f"line {x.id} ({x.product.code} lot {x.lot.lot_number})" for x in missing)
            where = "entry" if self.bundle_type else "identifier"
            self.errors.append(
                FieldError(
                    where,
                    f"a receipt covers every line of {self.shipment.code} "
                    f"(a Bundle with one SupplyDelivery per line); missing: {names}",
                )
            )
        receiver = _same(receivers, "receiver", self.errors)
        received_at = _same(times, "occurrenceDateTime", self.errors)
        decision = _excursion(self.posts, self.errors)
        if self.errors:
            return None
        lines = [
            ReceiptLineIn(line_id=int(p.line_id or 0), accepted=int(p.accepted or 0), rejected=p.rejected)
            for p in self.posts
        ]
        try:
            return ReceiptIn(
                lines=lines, receiver=receiver, received_at=received_at, excursion_decision=decision
            )
        except ValidationError as exc:  # the checks above mirror ReceiptIn's: a gap there, but named
            self.errors.append(FieldError(self.posts[0].where, str(exc)))
            return None

    def _content(
        self,
        posted: _Posted,
        line: ShipmentLine | None,
        receivers: list[tuple[str, str]],
        times: list[tuple[datetime, str]],
    ) -> None:
        resource = posted.resource
        errors = self.errors
        if resource.status != "completed":
            errors.append(
                FieldError(posted.at("status"), f"{resource.status!r}: a confirmed receipt is completed")
            )
        stage, stage_path = _stage_of(posted)
        if stage != RECEPTION:
            errors.append(
                FieldError(
                    stage_path,
                    f"a receipt is at the reception stage: extension {STAGE_EXTENSION} with "
                    f"valueCodeableConcept {STAGE_SYSTEM}#{RECEPTION}"
                    + (f" (not {stage!r})" if stage else ""),
                )
            )
        items = resource.suppliedItem or []
        posted.quantity_path = posted.at("suppliedItem[0].quantity")
        if len(items) != 1:
            errors.append(FieldError(posted.at("suppliedItem"), "exactly one supplied item: the line's lot"))
        else:
            posted.accepted = _quantity(items[0].quantity, line, posted.quantity_path, errors)
            if line is not None:
                _item_matches(posted, line, errors)
        _accounting_in(posted, line, errors)
        receivers_of = resource.receiver or []
        name = str(receivers_of[0].display or "").strip() if receivers_of else ""
        if not 2 <= len(name) <= 200:
            errors.append(
                FieldError(posted.at("receiver[0].display"), "the name of who received it (2-200 characters)")
            )
        else:
            receivers.append((name, posted.at("receiver[0].display")))
        if resource.occurrenceDateTime is not None:
            when = as_datetime(resource.occurrenceDateTime)
            if when is None:
                errors.append(
                    FieldError(
                        posted.at("occurrenceDateTime"),
                        "give at least a full date (one that stays within the calendar in UTC)",
                    )
                )
            else:
                times.append((when, posted.at("occurrenceDateTime")))
        elif resource.occurrencePeriod is not None or resource.occurrenceTiming is not None:
            errors.append(
                FieldError(posted.at("occurrenceDateTime"), "give the time of receipt as a dateTime")
            )
        if line is None or posted.accepted is None:
            return
        rejected = sum(r.quantity for r in posted.rejected)
        counted = posted.accepted + rejected
        if posted.shipped is not None and posted.shipped[0] != line.quantity:
            errors.append(
                FieldError(posted.shipped[1], f"{posted.shipped[0]}: line {line.id} shipped {line.quantity}")
            )
        if posted.accepted_ext is not None and posted.accepted_ext[0] != posted.accepted:
            errors.append(
                FieldError(
                    posted.accepted_ext[1],
                    f"{posted.accepted_ext[0]}, but suppliedItem[0].quantity accepts {posted.accepted}",
                )
            )
        if counted < line.quantity:
            errors.append(
                FieldError(
                    posted.quantity_path,
                    f"{posted.accepted} accepted + {rejected} rejected: {line.quantity - counted} of the "
                    f"{line.quantity} shipped on line {line.id} are not accounted for; list them as rejected "
                    f"(extension {RECEIPT_EXTENSION}, reason short_shipped if they never arrived)",
                )
            )
        elif counted > line.quantity:
            errors.append(
                FieldError(
                    posted.quantity_path,
                    f"{posted.accepted} accepted + {rejected} rejected is more than the {line.quantity} "
                    f"shipped on line {line.id}",
                )
            )


def _identify(posts: list[_Posted], errors: list[FieldError]) -> int | None:
    """The one shipment the document is about."""
    shipment_id: int | None = None
    first = ""
    for posted in posts:
        _line_ref(posted, errors)
        if posted.shipment_id is None:
            continue
        if shipment_id is None:
            shipment_id, first = posted.shipment_id, posted.ref_path
        elif posted.shipment_id != shipment_id:
            errors.append(
                FieldError(
                    posted.ref_path,
                    f"one receipt is one shipment: this is SHP-{posted.shipment_id:06d}, {first} is "
                    f"SHP-{shipment_id:06d}",
                )
            )
    return shipment_id


def _service_errors(exc: DomainError, posts: Sequence[_Posted]) -> DomainError:
    """The logistics service's refusals (fields of ReceiptIn) re-addressed to FHIR paths."""
    out: list[FieldError] = []
    for error in exc.errors:
        match = re.match(r"^lines\[(\d+)\]", error.field)
        if match is not None and int(match[1]) < len(posts):
            posted = posts[int(match[1])]
            out.append(FieldError(posted.quantity_path or posted.where, error.message))
        elif error.field in ("at", "received_at"):
            out.append(FieldError(posts[0].at("occurrenceDateTime"), error.message))
        elif error.field == "excursion_decision":
            out.append(
                FieldError(posts[0].at("extension"), f"{error.message} (extension {EXCURSION_EXTENSION})")
            )
        elif error.field == "status":  # the shipment's state (already received, say): name it
            out.append(FieldError(posts[0].ref_path or posts[0].where, error.message))
        elif error.field == "receiver":
            out.append(FieldError(posts[0].at("receiver[0].display"), error.message))
        else:
            out.append(error)
    return type(exc)(exc.detail, out)


def import_receipt(
    db: Session, actor: Principal, body: Any, *, idempotency_key: str | None = None
) -> ImportResult:
    """Confirm a shipment's receipt from SupplyDeliveries at the reception stage, all or nothing.

    Scope comes before content: a shipment the actor cannot see is not found, one it does not
    receive is forbidden, whatever the document says. The receipt is idempotent under the
    Idempotency-Key (or the document's digest): a retry answers `replayed` and changes nothing.
    """
    posts, bundle_type, errors = _documents(body)
    shipment_id = _identify(posts, errors)
    if shipment_id is None:
        raise InvalidInput(f"{len(errors)} problem(s) in the receipt; nothing was recorded", errors)
    shipment = service.get(db, actor, shipment_id)
    if Side.DESTINATION not in service.sides_of(actor, shipment):
        raise PermissionDenied(f"only the receiving side confirms the receipt of {shipment.code}")
    reader = _Reader(shipment, posts, bundle_type, complete=not errors)
    data = reader.receipt()
    errors += reader.errors
    if data is None or errors:
        raise InvalidInput(
            f"{len(errors)} problem(s) in the receipt of {shipment.code}; nothing was recorded", errors
        )
    key = idempotency_key or f"{KEY_PREFIX}sha256:{digest_of(body)}"
    try:
        received, replayed = service.receive(db, actor, shipment.id, data, idempotency_key=key)
    except DomainError as exc:
        raise _service_errors(exc, posts) from None
    return ImportResult(received, replayed, bundle_type)


def import_response(result: ImportResult, *, base_url: str) -> dict[str, Any]:
    """What a receipt became: the line's SupplyDelivery (a single resource was posted), or a
    Bundle of every line's (transaction-response for a transaction, else collection)."""
    shipment = result.shipment
    if result.bundle_type is None:
        return to_json(shipment, shipment.lines[0])
    base = base_url.rstrip("/")
    transaction = result.bundle_type == "transaction"
    status = "200 OK" if result.replayed else "201 Created"
    entries = []
    for line in shipment.lines:
        entry: dict[str, Any] = {
            "fullUrl": f"{base}/fhir/R5/SupplyDelivery/{resource_id(shipment, line)}",
            "resource": to_json(shipment, line),
        }
        if transaction:
            entry["response"] = {
                "status": status,
                "location": f"SupplyDelivery/{resource_id(shipment, line)}",
            }
        entries.append(entry)
    body = {
        "resourceType": "Bundle",
        "type": "transaction-response" if transaction else "collection",
        "timestamp": iso(utcnow()),
        "entry": entries,
    }
    return as_json(Bundle.model_validate(body))
