"""FHIR R5 routes: InventoryReport export and import, SupplyRequest read, search and import,
SupplyDelivery read, search and import (a shipment's receipt).

Resources are returned as `application/fhir+json`; errors stay the project's problem+json, with
each problem's `field` the FHIR path of the element at fault. The result of an InventoryReport
import is not a FHIR resource (it is the ledger batch, as for the other stock imports), so it is
plain JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from healthmesh.accounts.access import Permission, Principal
from healthmesh.interop import FHIR_JSON, inventory_report, supply_delivery, supply_request
from healthmesh.interop.inventory_report import CountType
from healthmesh.needs import service as needs
from healthmesh.registry.schemas import Position, RowId
from healthmesh.supply.schemas import UtcDateTime
from healthmesh.web.deps import DbSession, require

router = APIRouter(prefix="/fhir/R5", tags=["fhir"])

StockReader = Annotated[Principal, Depends(require(Permission.STOCK_READ))]
StockWriter = Annotated[Principal, Depends(require(Permission.STOCK_WRITE))]
NeedReader = Annotated[Principal, Depends(require(Permission.NEED_READ))]
NeedWriter = Annotated[Principal, Depends(require(Permission.NEED_WRITE))]
ShipmentReader = Annotated[Principal, Depends(require(Permission.SHIPMENT_READ))]
ShipmentReceiver = Annotated[Principal, Depends(require(Permission.SHIPMENT_RECEIVE))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        description="Retrying with the same key changes nothing (default: the document's digest)",
    ),
]
FhirBody = Annotated[dict[str, Any], Body(description="A FHIR R5 resource as JSON")]


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


class ReportImportOut(BaseModel):
    """The ledger batch the report became; no batch when a count agreed with every balance."""

    batch_id: int | None
    events: int
    replayed: bool


@router.get("/InventoryReport", response_class=FhirResponse)
def export_inventory_report(
    db: DbSession,
    actor: StockReader,
    facility: Annotated[str, Query(description="Facility code, e.g. THA-HO-0001")],
    count_type: Annotated[CountType, Query(alias="countType")] = CountType.SNAPSHOT,
    start: Annotated[UtcDateTime | None, Query(alias="from", description="difference: period start")] = None,
    end: Annotated[
        UtcDateTime | None, Query(alias="to", description="difference: period end (excl.)")
    ] = None,
) -> FhirResponse:
    """A facility's stock as an InventoryReport: `snapshot` (lots on hand now) or `difference` (net
    change per lot over [from, to))."""
    report = inventory_report.export_report(db, actor, facility, count_type, start=start, end=end)
    return FhirResponse(report)


@router.post("/InventoryReport", response_model=ReportImportOut, status_code=status.HTTP_201_CREATED)
def import_inventory_report(body: FhirBody, db: DbSession, actor: StockWriter) -> ReportImportOut:
    """Record an InventoryReport (a stock count or a difference) as stock events, all or nothing;
    re-posting the same report changes nothing."""
    result = inventory_report.import_report(db, actor, body)
    return ReportImportOut(batch_id=result.batch_id, events=result.events, replayed=result.replayed)


@router.get("/SupplyRequest/{need_id}", response_class=FhirResponse)
def read_supply_request(need_id: RowId, db: DbSession, actor: NeedReader) -> FhirResponse:
    return FhirResponse(supply_request.to_json(needs.get(db, actor, need_id)))


@router.get("/SupplyRequest", response_class=FhirResponse)
def search_supply_requests(
    request: Request,
    db: DbSession,
    actor: NeedReader,
    status_: Annotated[
        list[str] | None,
        Query(alias="status", description="draft, active, completed, cancelled, or a need status"),
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 50,
    offset: Annotated[Position, Query(alias="_offset")] = 0,
) -> FhirResponse:
    """Needs within your scope as a Bundle (type collection) of SupplyRequests."""
    statuses = supply_request.statuses_of(status_ or [])
    rows, total = needs.list_needs(
        db,
        actor,
        status=statuses,
        jurisdiction=None,
        facility=None,
        product=None,
        urgency=None,
        limit=count,
        offset=offset,
    )
    links = [("self", str(request.url))]
    if offset + count < total:
        links.append(("next", str(request.url.include_query_params(_count=count, _offset=offset + count))))
    return FhirResponse(supply_request.bundle(rows, base_url=str(request.base_url), links=links))


@router.post("/SupplyRequest", response_class=FhirResponse, status_code=status.HTTP_201_CREATED)
def import_supply_requests(
    request: Request, body: FhirBody, db: DbSession, actor: NeedWriter
) -> FhirResponse:
    """Raise needs from a SupplyRequest (answered with the created one) or a Bundle of them (answered
    with a Bundle); a request already imported (same identifier) is a 409 Conflict."""
    created = supply_request.import_requests(db, actor, body)
    if body.get("resourceType") == "Bundle":
        return FhirResponse(
            supply_request.bundle(created, base_url=str(request.base_url)),
            status_code=status.HTTP_201_CREATED,
        )
    need = created[0]
    return FhirResponse(
        supply_request.to_json(need),
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"{str(request.base_url).rstrip('/')}/fhir/R5/SupplyRequest/{need.id}"},
    )


@router.get("/SupplyDelivery/{resource_id}", response_class=FhirResponse)
def read_supply_delivery(resource_id: str, db: DbSession, actor: ShipmentReader) -> FhirResponse:
    """One line of a shipment that has left its source (id `shp-<shipment>-<line>`)."""
    return FhirResponse(supply_delivery.read(db, actor, resource_id))


@router.get("/SupplyDelivery", response_class=FhirResponse)
def search_supply_deliveries(
    request: Request,
    db: DbSession,
    actor: ShipmentReader,
    shipment: Annotated[str, Query(description="Shipment id (123) or code (SHP-000123)")],
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 50,
    offset: Annotated[Position, Query(alias="_offset")] = 0,
) -> FhirResponse:
    """A shipment's lines as a searchset Bundle of SupplyDeliveries; a shipment outside your scope
    (or not dispatched yet) matches nothing."""
    found, lines, total = supply_delivery.search(
        db, actor, supply_delivery.shipment_id_of(shipment), count=count, offset=offset
    )
    links = [("self", str(request.url))]
    if offset + count < total:
        links.append(("next", str(request.url.include_query_params(_count=count, _offset=offset + count))))
    return FhirResponse(
        supply_delivery.searchset(found, lines, total, base_url=str(request.base_url), links=links)
    )


@router.post("/SupplyDelivery", response_class=FhirResponse, status_code=status.HTTP_201_CREATED)
def import_supply_delivery(
    request: Request,
    body: FhirBody,
    db: DbSession,
    actor: ShipmentReceiver,
    key: IdempotencyKey = None,
) -> FhirResponse:
    """Confirm a shipment's receipt: a Bundle (transaction or collection) with a SupplyDelivery at
    the reception stage for every line, or one SupplyDelivery for a one-line shipment. Answered
    with the lines as recorded (201; 200 for a retry, which changes nothing)."""
    result = supply_delivery.import_receipt(db, actor, body, idempotency_key=key)
    code = status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED
    out = supply_delivery.import_response(result, base_url=str(request.base_url))
    headers = {}
    if result.bundle_type is None:
        headers["Location"] = f"{str(request.base_url).rstrip('/')}/fhir/R5/SupplyDelivery/{out['id']}"
    return FhirResponse(out, status_code=code, headers=headers)
