"""FHIR R5 InventoryReport <-> the stock ledger.

Export: what one facility holds, as a `snapshot` (every lot with stock on hand, from the lot
balances) or a `difference` (each lot's net change, the sum of its events' on-hand deltas, over a
period [from, to)). Each lot is a contained `InventoryItem` (product coding, GTIN, lot number,
expiry) referenced from `inventoryListing[].item[].item.reference` as "#lot-N".

Import: the report is validated with fhir.resources, read whole (every problem named by its FHIR
path), turned into stock events, and recorded as one idempotent ledger batch, all or nothing. The
ledger stays the only writer of balances, so its rules (no negative stock, reservations kept,
expiry consistency) apply to FHIR data exactly as to the REST and CSV routes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import uuid4

from fhir.resources.identifier import Identifier
from fhir.resources.inventoryitem import InventoryItem
from fhir.resources.inventoryreport import InventoryReport, InventoryReportInventoryListingItem
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal
from healthmesh.db import utcnow
from healthmesh.errors import Conflict, FieldError, InvalidInput, NotFound
from healthmesh.interop import (
    FACILITY_SYSTEM,
    GTIN_SYSTEM,
    PRODUCT_SYSTEM,
    URI_SYSTEM,
    as_datetime,
    as_expiry,
    as_json,
    digest_of,
    iso,
    parse,
    remap,
    whole_number,
)
from healthmesh.registry.codes import normalise_gtin
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Product
from healthmesh.supply import ledger, service
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import Lot, LotBalance, StockEvent
from healthmesh.supply.schemas import StockEventIn

SOURCE = "fhir-inventory-report"
MAX_QUANTITY = 10_000_000  # the ledger's own bound on one event
KEY_PREFIX = "fhir:InventoryReport:"


class CountType(StrEnum):
    SNAPSHOT = "snapshot"
    DIFFERENCE = "difference"


@dataclass(frozen=True)
class LotLine:
    """One lot of a report: what it is and how many (held, or changed by)."""

    product: Product
    lot_number: str
    expiry: date | None
    quantity: int


@dataclass(frozen=True)
class ImportResult:
    """The recorded batch; `batch_id` is None when the report changed nothing (a count that agreed)."""

    batch_id: int | None
    events: int
    replayed: bool


# --- export --------------------------------------------------------------------------------------


def visible_facility(db: Session, actor: Principal, code: str) -> Facility:
    """The facility if the actor may read its stock; otherwise not found (no existence leak of stock)."""
    facility = db.scalar(select(Facility).where(Facility.code == code))
    if facility is None or not actor.covers_facility(facility.id, facility.jurisdiction_id):
        raise NotFound(f"no stock of facility {code!r} in your scope")
    return facility


def snapshot_lines(db: Session, facility_id: int) -> list[LotLine]:
    """Every lot with stock on hand now, from the lot balances."""
    stmt = (
        select(Lot, LotBalance.on_hand)
        .join(LotBalance, LotBalance.lot_id == Lot.id)
        .join(Product, Product.id == Lot.product_id)
        .where(LotBalance.facility_id == facility_id, LotBalance.on_hand > 0)
        .order_by(Product.code, Lot.expiry_date.asc().nulls_last(), Lot.lot_number)
    )
    return [
        LotLine(lot.product, lot.lot_number, lot.expiry_date, on_hand) for lot, on_hand in db.execute(stmt)
    ]


def difference_lines(db: Session, facility_id: int, start: datetime, end: datetime) -> list[LotLine]:
    """Each lot's net on-hand change over [start, end); lots whose movements cancel out are left out."""
    net = func.sum(StockEvent.on_hand_delta)
    stmt = (
        select(StockEvent.lot_id, net)
        .where(
            StockEvent.facility_id == facility_id,
            StockEvent.occurred_at >= start,
            StockEvent.occurred_at < end,
        )
        .group_by(StockEvent.lot_id)
        .having(net != 0)
    )
    sums: dict[int, int] = {lot_id: int(total) for lot_id, total in db.execute(stmt)}
    if not sums:
        return []
    lots = db.scalars(select(Lot).where(Lot.id.in_(list(sums)))).unique().all()
    lines = [LotLine(lot.product, lot.lot_number, lot.expiry_date, int(sums[lot.id])) for lot in lots]
    return sorted(lines, key=lambda x: (x.product.code, x.expiry or date.max, x.lot_number))


def _inventory_item(ref_id: str, line: LotLine) -> dict[str, Any]:
    product = line.product
    coding = [{"system": PRODUCT_SYSTEM, "code": product.code, "display": product.name}]
    if product.gtin:
        coding.append({"system": GTIN_SYSTEM, "code": product.gtin})
    instance: dict[str, Any] = {"lotNumber": line.lot_number}
    if line.expiry is not None:
        instance["expiry"] = line.expiry.isoformat()
    return {
        "resourceType": "InventoryItem",
        "id": ref_id,
        "status": "active",
        "code": [{"coding": coding, "text": product.name}],
        "baseUnit": {"text": product.unit_of_issue},
        "instance": instance,
    }


def build_report(
    facility: Facility,
    count_type: CountType,
    lines: Sequence[LotLine],
    *,
    now: datetime,
    period: tuple[datetime, datetime] | None = None,
) -> InventoryReport:
    """The resource for these lines, validated by fhir.resources before anyone sees it."""
    contained = []
    items = []
    for number, line in enumerate(lines, start=1):
        ref_id = f"lot-{number}"
        contained.append(_inventory_item(ref_id, line))
        items.append(
            {
                "item": {"reference": {"reference": f"#{ref_id}"}},
                "quantity": {"value": line.quantity, "unit": line.product.unit_of_issue},
            }
        )
    listing: dict[str, Any] = {
        "location": {
            "type": "Location",
            "identifier": {"system": FACILITY_SYSTEM, "value": facility.code},
            "display": facility.name,
        }
    }
    if count_type is CountType.SNAPSHOT:
        listing["countingDateTime"] = iso(now)
    if items:
        listing["item"] = items
    body: dict[str, Any] = {
        "resourceType": "InventoryReport",
        "identifier": [{"system": URI_SYSTEM, "value": f"urn:uuid:{uuid4()}"}],
        "status": "active",
        "countType": count_type.value,
        "reportedDateTime": iso(now),
        "inventoryListing": [listing],
    }
    if contained:
        body["contained"] = contained
    if period is not None:
        body["reportingPeriod"] = {"start": iso(period[0]), "end": iso(period[1])}
    return InventoryReport.model_validate(body)


def export_report(
    db: Session,
    actor: Principal,
    facility_code: str,
    count_type: CountType,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A facility's InventoryReport as FHIR JSON; a difference needs `start` (`end` defaults to now)."""
    facility = visible_facility(db, actor, facility_code)
    now = now or utcnow()
    if count_type is CountType.SNAPSHOT:
        return as_json(build_report(facility, count_type, snapshot_lines(db, facility.id), now=now))
    if start is None:
        raise InvalidInput.on("from", "required for a difference report: the start of the period")
    end = end or now
    if end <= start:
        raise InvalidInput.on("to", "the period ends before it starts")
    lines = difference_lines(db, facility.id, start, end)
    return as_json(build_report(facility, count_type, lines, now=now, period=(start, end)))


# --- import --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Counted:
    """One listed item, resolved; the paths say where it came from, for error messages."""

    path: str  # inventoryListing[i].item[j]
    listing: str  # inventoryListing[i]
    item: str  # contained[k]
    facility: Facility
    product: Product
    lot_number: str
    expiry: date | None
    quantity: int
    occurred_at: datetime


@dataclass(frozen=True)
class _Codes:
    """Product code and/or GTIN of a contained InventoryItem."""

    code: str | None
    gtin: str | None


def _first_identifier(identifiers: Sequence[Identifier] | None) -> Identifier | None:
    return next((i for i in identifiers or [] if i.value), None)


def _idempotency_key(report: InventoryReport, digest: str) -> str:
    """The report's business identifier (system|value) if it has one, else the digest of its JSON."""
    identifier = _first_identifier(report.identifier)
    if identifier is None:
        return f"{KEY_PREFIX}sha256:{digest}"
    token = f"{identifier.system}|{identifier.value}" if identifier.system else str(identifier.value)
    key = KEY_PREFIX + token
    if len(key) > 128:
        key = f"{KEY_PREFIX}sha256:{hashlib.sha256(token.encode()).hexdigest()}"
    return key


def _label(report: InventoryReport, digest: str) -> str:
    """How events name their report: its id, its identifier, or a short digest."""
    identifier = _first_identifier(report.identifier)
    label = report.id or (identifier.value if identifier else None) or f"sha256:{digest[:16]}"
    return str(label)[:120]


def _item_codes(item: InventoryItem, path: str, errors: list[FieldError]) -> _Codes:
    code: str | None = None
    gtin: str | None = None
    for concept in item.code or []:
        for coding in concept.coding or []:
            if coding.system == PRODUCT_SYSTEM and coding.code:
                code = str(coding.code)
            elif coding.system == GTIN_SYSTEM and coding.code:
                try:
                    gtin = normalise_gtin(str(coding.code))
                except ValueError as exc:
                    errors.append(FieldError(f"{path}.code", str(exc)))
    if code is None and gtin is None:
        errors.append(
            FieldError(f"{path}.code", f"needs a coding with system {PRODUCT_SYSTEM} or {GTIN_SYSTEM}")
        )
    return _Codes(code, gtin)


class _Reader:
    """Reads a validated report into resolved lines, collecting every problem before raising."""

    def __init__(self, db: Session, actor: Principal, report: InventoryReport, count_type: CountType) -> None:
        self.db = db
        self.actor = actor
        self.report = report
        self.count_type = count_type
        self.errors: list[FieldError] = []
        self.items: dict[str, tuple[str, InventoryItem]] = {}
        for index, resource in enumerate(report.contained or []):
            if isinstance(resource, InventoryItem) and resource.id:
                self.items[f"#{resource.id}"] = (f"contained[{index}]", resource)
        self.codes = {ref: _item_codes(item, path, self.errors) for ref, (path, item) in self.items.items()}
        wanted = {c.code for c in self.codes.values() if c.code}
        gtins = {c.gtin for c in self.codes.values() if c.gtin}
        products = db.scalars(select(Product).where(Product.code.in_(wanted) | Product.gtin.in_(gtins))).all()
        self.by_code = {p.code: p for p in products}
        self.by_gtin = {p.gtin: p for p in products if p.gtin}
        locations = [self._location_code(i) for i in range(len(report.inventoryListing or []))]
        facilities = db.scalars(select(Facility).where(Facility.code.in_([c for c in locations if c]))).all()
        self.facilities = {f.code: f for f in facilities}

    def _location_code(self, index: int) -> str | None:
        listing = (self.report.inventoryListing or [])[index]
        identifier = listing.location.identifier if listing.location else None
        if identifier is None or identifier.system != FACILITY_SYSTEM or not identifier.value:
            return None
        return str(identifier.value)

    def _facility(self, index: int) -> Facility | None:
        path = f"inventoryListing[{index}].location"
        code = self._location_code(index)
        if code is None:
            self.errors.append(
                FieldError(path, f"identify the facility by an identifier with system {FACILITY_SYSTEM}")
            )
            return None
        facility = self.facilities.get(code)
        if facility is None:
            self.errors.append(FieldError(path, f"unknown facility {code!r}"))
        elif not self.actor.manages_facility(
            facility.id,
            facility.jurisdiction_id,
            regional_depot=facility.kind is FacilityKind.REGIONAL_RESERVE_DEPOT,
        ):
            self.errors.append(FieldError(path, f"you may not record stock at {code}"))
            return None
        return facility

    def _product(self, ref: str) -> Product | None:
        path = self.items[ref][0]
        codes = self.codes[ref]
        by_code = self.by_code.get(codes.code) if codes.code else None
        by_gtin = self.by_gtin.get(codes.gtin) if codes.gtin else None
        if codes.code and by_code is None:
            self.errors.append(FieldError(f"{path}.code", f"unknown product {codes.code!r}"))
            return None
        if codes.gtin and by_gtin is None and by_code is None:
            self.errors.append(FieldError(f"{path}.code", f"no product with GTIN {codes.gtin}"))
            return None
        if by_code is not None and by_gtin is not None and by_code.id != by_gtin.id:
            self.errors.append(
                FieldError(f"{path}.code", f"GTIN {codes.gtin} is {by_gtin.code}, not {by_code.code}")
            )
            return None
        return by_code or by_gtin

    def _quantity(
        self, entry: InventoryReportInventoryListingItem, path: str, product: Product
    ) -> int | None:
        quantity = entry.quantity
        value = whole_number(quantity.value)
        where = f"{path}.quantity"
        if quantity.value is None:
            self.errors.append(FieldError(where, "a value is required"))
        elif value is None:
            self.errors.append(FieldError(where, f"{quantity.value} is not a whole number of units"))
        elif abs(value) > MAX_QUANTITY:
            self.errors.append(FieldError(where, f"more than {MAX_QUANTITY:,} units in one line"))
        elif self.count_type is CountType.SNAPSHOT and value < 0:
            self.errors.append(FieldError(where, f"a counted quantity cannot be negative ({value})"))
        else:
            unit = quantity.unit or quantity.code
            if unit and str(unit).lower() != product.unit_of_issue.lower():
                self.errors.append(
                    FieldError(
                        where, f"unit {unit!r}: {product.code} is counted in {product.unit_of_issue!r}"
                    )
                )
                return None
            return value
        return None

    def _occurred_at(self, index: int) -> datetime:
        listing = (self.report.inventoryListing or [])[index]
        when = as_datetime(listing.countingDateTime) or as_datetime(self.report.reportedDateTime)
        if when is None:
            self.errors.append(
                FieldError(
                    "reportedDateTime",
                    "give at least a full date (one that stays within the calendar in UTC)",
                )
            )
            return utcnow()
        return when

    def lines(self) -> list[_Counted]:
        out: list[_Counted] = []
        for i, listing in enumerate(self.report.inventoryListing or []):
            facility = self._facility(i)
            occurred_at = self._occurred_at(i)
            for j, entry in enumerate(listing.item or []):
                path = f"inventoryListing[{i}].item[{j}]"
                ref = entry.item.reference.reference if entry.item.reference else None
                if not ref or ref not in self.items:
                    self.errors.append(
                        FieldError(
                            f"{path}.item",
                            "must reference a contained InventoryItem ('#id') with the product and lot",
                        )
                    )
                    continue
                item_path, item = self.items[ref]
                product = self._product(ref)
                instance = item.instance
                lot_number = str(instance.lotNumber).strip() if instance and instance.lotNumber else ""
                if not lot_number or len(lot_number) > 64:
                    self.errors.append(
                        FieldError(
                            f"{item_path}.instance.lotNumber", "a lot number (1-64 characters) is required"
                        )
                    )
                expiry = None
                if instance is not None and instance.expiry is not None:
                    expiry = as_expiry(instance.expiry)
                    if expiry is None:
                        self.errors.append(
                            FieldError(f"{item_path}.instance.expiry", "give a full date or a year and month")
                        )
                if product is None:
                    continue
                quantity = self._quantity(entry, path, product)
                if facility is None or quantity is None or not lot_number:
                    continue
                out.append(
                    _Counted(
                        path,
                        f"inventoryListing[{i}]",
                        item_path,
                        facility,
                        product,
                        lot_number,
                        expiry,
                        quantity,
                        occurred_at,
                    )
                )
        if not self.report.inventoryListing:
            self.errors.append(FieldError("inventoryListing", "a report needs a listing with its location"))
        return out


LotKey = tuple[int, int, str]


def _current_lots(db: Session, lines: Sequence[_Counted]) -> dict[LotKey, tuple[int, date | None]]:
    """On hand and expiry of the lots the report names, locked until the transaction ends so the
    count's adjustments are computed against balances nobody else is moving."""
    facility_ids = {line.facility.id for line in lines}
    product_ids = {line.product.id for line in lines}
    if not lines:
        return {}
    stmt = (
        select(Lot.facility_id, Lot.product_id, Lot.lot_number, Lot.expiry_date, LotBalance.on_hand)
        .join(LotBalance, LotBalance.lot_id == Lot.id)
        .where(Lot.facility_id.in_(facility_ids), Lot.product_id.in_(product_ids))
        .order_by(LotBalance.lot_id)
        .with_for_update(of=LotBalance)
    )
    return {(f, p, n): (on_hand, x) for f, p, n, x, on_hand in db.execute(stmt)}


def _events(
    count_type: CountType, lines: Sequence[_Counted], lots: dict[LotKey, tuple[int, date | None]], label: str
) -> tuple[list[tuple[int, StockEventIn]], dict[int, _Counted], list[FieldError]]:
    """Stock events for the lines, numbered; the number maps ledger errors back to FHIR paths."""
    errors: list[FieldError] = []
    events: list[tuple[int, StockEventIn]] = []
    origin: dict[int, _Counted] = {}
    seen: dict[LotKey, str] = {}
    reference = f"InventoryReport/{label}"[:80]
    for line in lines:
        key = (line.facility.id, line.product.id, line.lot_number)
        known = lots.get(key)
        if known is not None and line.expiry and known[1] and line.expiry != known[1]:
            errors.append(
                FieldError(
                    f"{line.item}.instance.expiry",
                    f"lot {line.lot_number!r} of {line.product.code} expires on {known[1].isoformat()} here",
                )
            )
            continue
        if count_type is CountType.SNAPSHOT:
            if key in seen:
                errors.append(
                    FieldError(line.path, f"lot {line.lot_number!r} is also counted at {seen[key]}")
                )
                continue
            seen[key] = line.path
            if known is not None:
                kind, quantity, reason = (
                    EventKind.ADJUSTMENT,
                    line.quantity - known[0],
                    f"stock count (FHIR InventoryReport {label})",
                )
            else:
                kind, quantity, reason = EventKind.RECEIPT, line.quantity, "opening balance from stock count"
        elif known is None and line.quantity > 0:
            kind, quantity, reason = (
                EventKind.RECEIPT,
                line.quantity,
                f"new lot in stock difference (FHIR InventoryReport {label})",
            )
        else:
            kind, quantity, reason = (
                EventKind.ADJUSTMENT,
                line.quantity,
                f"stock difference (FHIR InventoryReport {label})",
            )
        if quantity == 0:
            continue
        number = len(events) + 1
        origin[number] = line
        events.append(
            (
                number,
                StockEventIn(
                    facility=line.facility.code,
                    product=line.product.code,
                    lot_number=line.lot_number,
                    expiry_date=line.expiry,
                    kind=kind,
                    quantity=quantity,
                    occurred_at=line.occurred_at,
                    reason=reason[:200],
                    reference=reference,
                ),
            )
        )
    return events, origin, errors


def _ledger_errors(exc: InvalidInput, origin: dict[int, _Counted]) -> InvalidInput:
    """The ledger's refusals (by event number and field) re-addressed to the report's paths."""
    out: list[FieldError] = []
    for error in exc.errors:
        line = origin.get(error.line) if error.line is not None else None
        if line is None:
            out.append(FieldError(error.field, error.message))
            continue
        fields = {
            "facility": f"{line.listing}.location",
            "product": f"{line.item}.code",
            "lot_number": f"{line.item}.instance.lotNumber",
            "expiry_date": f"{line.item}.instance.expiry",
            "quantity": f"{line.path}.quantity",
        }
        out.extend(remap([error], fields, line.path))
    return InvalidInput(f"{len(out)} item(s) refused; nothing was recorded", out)


def _identifier_conflict(exc: Conflict) -> Conflict:
    return Conflict(
        "this InventoryReport identifier was already recorded with different content",
        remap(exc.errors, {"Idempotency-Key": "identifier"}, "identifier"),
    )


def import_report(db: Session, actor: Principal, body: Any) -> ImportResult:
    """Record an InventoryReport as stock events: one batch, all or nothing, idempotent.

    A `snapshot` is a stock count. Each counted lot gets an adjustment of (counted - on hand),
    reason "stock count (FHIR InventoryReport <id>)"; a lot not yet at the facility with a positive
    count is received with its expiry ("opening balance from stock count"). Lots the facility holds
    but the snapshot does not list are left as they are, NOT zeroed: partial counts (one store room,
    one product, a cycle count) are common, and silence is not a count of zero.

    A `difference` adds each item's signed quantity as an adjustment; a positive quantity of a lot
    the facility does not hold yet is a receipt.

    The idempotency key is the report's identifier (system|value) when it has one, else a digest of
    its JSON: re-posting the same report changes nothing and answers `replayed`. The same
    identifier with different content is a conflict.
    """
    report = parse(InventoryReport, body)
    errors: list[FieldError] = []
    if report.status != "active":
        errors.append(FieldError("status", f"only an active report is recorded, not {report.status!r}"))
    try:
        count_type = CountType(str(report.countType))
    except ValueError:
        errors.append(FieldError("countType", f"{report.countType!r}: expected snapshot or difference"))
        count_type = CountType.SNAPSHOT
    if errors:
        raise InvalidInput(f"{len(errors)} problem(s) in the report; nothing was recorded", errors)
    digest = digest_of(body)
    key = _idempotency_key(report, digest)
    reader = _Reader(db, actor, report, count_type)
    lines = reader.lines()
    if reader.errors:  # scope and references first: a replay must not answer for another member
        raise InvalidInput(
            f"{len(reader.errors)} problem(s) in the report; nothing was recorded", reader.errors
        )
    try:
        earlier = ledger.earlier_batch(db, key, digest)
    except Conflict as exc:
        raise _identifier_conflict(exc) from None
    if earlier is not None:
        return ImportResult(earlier.id, earlier.events, replayed=True)
    try:
        events, origin, errors = _events(count_type, lines, _current_lots(db, lines), _label(report, digest))
    except ValidationError as exc:  # a bound StockEventIn enforces that the reader missed: a bug, but named
        raise InvalidInput(
            "an item could not become a stock event", [FieldError("inventoryListing", str(exc))]
        ) from None
    if errors:
        raise InvalidInput(f"{len(errors)} problem(s) in the report; nothing was recorded", errors)
    if not events:
        return ImportResult(None, 0, replayed=False)
    try:
        result = service.record(db, actor, events, source=SOURCE, request_digest=digest, idempotency_key=key)
    except InvalidInput as exc:
        raise _ledger_errors(exc, origin) from None
    except Conflict as exc:
        raise _identifier_conflict(exc) from None
    return ImportResult(result.batch_id, result.events, result.replayed)
