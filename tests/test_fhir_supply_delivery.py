"""FHIR R5 SupplyDelivery: shipment lines out (before and after receipt), a partner's receipt in.

The world: the Chainat reserve depot ships Ag-RDT kits to Rajavithi, Bangkok (two lots: two lines)
and to Mahosot, Vientiane (one line). Exports must validate with fhir.resources and carry the lot,
quantities and the need they serve; searches see only the caller's scope; a receipt imported as a
Bundle goes through the logistics service, all or nothing, idempotently, and a receipt that does
not account for every unit is refused with the FHIR path of the element at fault.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.bundle import Bundle
from fhir.resources.supplydelivery import SupplyDelivery
from fhir.resources.supplyrequest import SupplyRequest
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.allocation import service as allocation
from healthmesh.logistics import service as logistics
from healthmesh.logistics.models import Shipment
from healthmesh.logistics.schemas import MoveIn
from healthmesh.registry.models import Facility
from healthmesh.supply import ledger
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import IngestBatch, LotBalance, StockEvent
from tests.conftest import Actor, Region
from tests.test_allocation_rounds import COORDINATOR, DAY, _world

FHIR_JSON = "application/fhir+json"
PROBLEM = "application/problem+json"
AGRDT = "DX-AGRDT-25"
AGRDT_GTIN = "00614141000012"
DEPOT = "RRD-THA-CHAINAT"
RAJAVITHI = "THA-HO-0001"
MAHOSOT = "LAO-HO-0001"
PRODUCT = "urn:healthmesh:product"
GTIN = "https://www.gs1.org/gtin"
FACILITY = "urn:healthmesh:facility"
LINE_SYSTEM = "urn:healthmesh:shipment-line"
STAGE_URL = "urn:healthmesh:fhir:StructureDefinition:supply-delivery-stage"
STAGE_SYSTEM = "http://hl7.org/fhir/supplydelivery-stage"
RECEIPT_URL = "urn:healthmesh:fhir:StructureDefinition:receipt-accounting"
STATUS_URL = "urn:healthmesh:fhir:StructureDefinition:shipment-status"
EXCURSION_URL = "urn:healthmesh:fhir:StructureDefinition:excursion-decision"
#: Hourly readings of a truck's logger: 33.5 °C for 27 h, beyond the 24 h an Ag-RDT kit tolerates
#: above 30 °C.
LOGGER_START = datetime(2026, 12, 1, 6, tzinfo=UTC)
HOT_TRUCK = "timestamp,temperature_c\n" + "".join(
    f"{(LOGGER_START + timedelta(hours=h)).isoformat()},{33.5 if 4 <= h <= 30 else 27.0}\n" for h in range(36)
)


@dataclass
class Shipped:
    to_thailand: Shipment  # Rajavithi: 250 kits of RRMS-AG-01 and 100 of RRMS-AG-02
    to_laos: Shipment  # Mahosot: 350 kits of RRMS-AG-01


def _plan(db: Session, region: Region) -> tuple[Shipment, Shipment]:
    """The depot with a second, earlier-expiring lot, so Rajavithi's shipment has two lines."""
    _world(db, region)
    depot = db.scalar(select(Facility).where(Facility.code == DEPOT))
    assert depot is not None
    ledger.record_events(
        db,
        [
            ledger.EventInput(
                line=1,
                facility_id=depot.id,
                jurisdiction_id=depot.jurisdiction_id,
                product_id=region.products[AGRDT].id,
                lot_number="RRMS-AG-02",
                expiry_date=date(2027, 6, 30),
                kind=EventKind.RECEIPT,
                quantity=100,
                occurred_at=datetime(2026, 11, 2, tzinfo=UTC),
            )
        ],
        user_id=None,
        source="test",
        request_digest="depot-second-lot",
    )
    plan = allocation.create_plan(db, COORDINATOR, "equity", DAY)
    allocation.approve(db, COORDINATOR, plan.id)
    shipments = {s.destination.code: s for s in logistics.plan_shipments(db, COORDINATOR, plan.id)}
    return shipments[RAJAVITHI], shipments[MAHOSOT]


def _dispatch(db: Session, shipment: Shipment) -> None:
    for step in ("picked", "dispatched"):
        logistics.move(db, COORDINATOR, shipment.id, MoveIn.model_validate({"status": step}))


@pytest.fixture
def shipped(db: Session, region: Region) -> Shipped:
    thailand, laos = _plan(db, region)
    _dispatch(db, thailand)
    _dispatch(db, laos)
    return Shipped(thailand, laos)


# --- helpers -------------------------------------------------------------------------------------


def _problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


def _fields(response: Response) -> set[str]:
    return {error["field"] for error in response.json().get("errors", [])}


def _read(client: TestClient, actor: Actor, resource_id: str) -> dict[str, Any]:
    response = client.get(f"/fhir/R5/SupplyDelivery/{resource_id}", headers=actor.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    SupplyDelivery.model_validate(body)
    return body


def _search(client: TestClient, actor: Actor, shipment: object, **params: object) -> dict[str, Any]:
    response = client.get(
        "/fhir/R5/SupplyDelivery", params={"shipment": shipment, **params}, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    bundle = Bundle.model_validate(body)
    assert bundle.type == "searchset"
    for entry in bundle.entry or []:
        assert isinstance(entry.resource, SupplyDelivery)
    return body


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def _extension(resource: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in resource.get("extension", []) if e["url"] == url), None)


def _stage(resource: dict[str, Any]) -> str:
    extension = _extension(resource, STAGE_URL)
    assert extension is not None
    [coding] = extension["valueCodeableConcept"]["coding"]
    assert coding["system"] == STAGE_SYSTEM
    code: str = coding["code"]
    return code


def _accounting(resource: dict[str, Any]) -> dict[str, Any]:
    """The receipt extension as {shipped, accepted, lost, rejected: {reason: units}}."""
    extension = _extension(resource, RECEIPT_URL)
    assert extension is not None
    out: dict[str, Any] = {"rejected": {}}
    for part in extension["extension"]:
        if part["url"] == "rejected":
            values = {p["url"]: p for p in part["extension"]}
            out["rejected"][values["reason"]["valueCode"]] = values["quantity"]["valueQuantity"]["value"]
        else:
            assert part["valueQuantity"]["unit"] == "kit"
            out[part["url"]] = part["valueQuantity"]["value"]
    return out


def _receipt(
    exported: dict[str, Any],
    accepted: int,
    rejected: dict[str, int] | None = None,
    receiver: str = "Somchai Rattanakorn, Rajavithi pharmacy store",
) -> dict[str, Any]:
    """What a partner's receiving system sends back for a line: the exported SupplyDelivery at
    the reception stage, completed, with the accepted units and the rejected ones."""
    resource = copy.deepcopy(exported)
    resource["status"] = "completed"
    resource["extension"] = [
        {
            "url": STAGE_URL,
            "valueCodeableConcept": {"coding": [{"system": STAGE_SYSTEM, "code": "reception"}]},
        }
    ]
    if rejected:
        resource["extension"].append(
            {
                "url": RECEIPT_URL,
                "extension": [
                    {
                        "url": "rejected",
                        "extension": [
                            {"url": "reason", "valueCode": reason},
                            {"url": "quantity", "valueQuantity": {"value": units, "unit": "kit"}},
                        ],
                    }
                    for reason, units in rejected.items()
                ],
            }
        )
    resource["suppliedItem"][0]["quantity"] = {"value": accepted, "unit": "kit"}
    resource["receiver"] = [{"display": receiver}]
    resource.pop("occurrenceDateTime", None)
    return resource


def _bundle(*resources: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for resource in resources:
        entry: dict[str, Any] = {"resource": resource}
        if kind == "transaction":
            entry["request"] = {"method": "POST", "url": "SupplyDelivery"}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _thai_receipt(
    client: TestClient, actor: Actor, shipment: Shipment, accepted: tuple[int, int] = (240, 100)
) -> dict[str, Any]:
    """Rajavithi's receipt: line 1 with 10 kits damaged, line 2 whole."""
    first, second = (_read(client, actor, f"shp-{shipment.id}-{line.id}") for line in shipment.lines)
    return _bundle(
        _receipt(first, accepted[0], {"damaged": 250 - accepted[0]} if accepted[0] < 250 else None),
        _receipt(second, accepted[1]),
    )


def _stock(db: Session, facility: str) -> int:
    db.expire_all()
    on_hand = db.scalar(
        select(func.coalesce(func.sum(LotBalance.on_hand), 0))
        .join(Facility, Facility.id == LotBalance.facility_id)
        .where(Facility.code == facility)
    )
    return int(on_hand or 0)


def _count(db: Session, model: type[Any]) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


def _state(db: Session, shipment: Shipment) -> tuple[Any, ...]:
    """Everything a refused or repeated receipt must leave as it was."""
    db.expire_all()
    fresh = db.get(Shipment, shipment.id)
    assert fresh is not None
    return (
        _count(db, StockEvent),
        _count(db, IngestBatch),
        _stock(db, RAJAVITHI),
        _stock(db, MAHOSOT),
        fresh.status.value,
        fresh.receiver_name,
        [(line.accepted, line.rejected, dict(line.rejections)) for line in fresh.lines],
    )


# --- export --------------------------------------------------------------------------------------


def test_a_dispatched_line_is_a_supply_delivery_with_its_lot_quantity_and_request(
    client: TestClient, actors: dict[str, Actor], shipped: Shipped
) -> None:
    shipment = shipped.to_thailand
    first, second = shipment.lines
    resource = _read(client, actors["fp_tha"], f"shp-{shipment.id}-{first.id}")

    assert resource["id"] == f"shp-{shipment.id}-{first.id}"
    assert resource["identifier"] == [{"system": LINE_SYSTEM, "value": f"SHP-{shipment.id:06d}/{first.id}"}]
    assert (resource["status"], _stage(resource)) == ("in-progress", "dispatch")
    assert _extension(resource, STATUS_URL) == {"url": STATUS_URL, "valueCode": "dispatched"}
    assert _extension(resource, RECEIPT_URL) is None
    assert "receiver" not in resource
    assert resource["basedOn"] == [{"reference": f"SupplyRequest/{first.need_id}"}]
    assert resource["supplier"]["identifier"] == {"system": FACILITY, "value": DEPOT}
    assert resource["supplier"]["type"] == "Organization"
    assert resource["destination"]["identifier"] == {"system": FACILITY, "value": RAJAVITHI}
    assert shipment.dispatched_at is not None
    assert resource["occurrenceDateTime"] == shipment.dispatched_at.astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    [item] = resource["suppliedItem"]
    assert item["quantity"] == {"value": 250, "unit": "kit"}
    [lot] = resource["contained"]
    assert item["itemReference"]["reference"] == f"#{lot['id']}"
    assert lot["resourceType"] == "InventoryItem"
    assert lot["instance"] == {"lotNumber": "RRMS-AG-01", "expiry": "2027-12-31"}
    codings = lot["code"][0]["coding"]
    assert {"system": GTIN, "code": AGRDT_GTIN} in codings
    assert any(c["system"] == PRODUCT and c["code"] == AGRDT for c in codings)

    other = _read(client, actors["fp_tha"], f"shp-{shipment.id}-{second.id}")
    assert other["contained"][0]["instance"] == {"lotNumber": "RRMS-AG-02", "expiry": "2027-06-30"}
    assert other["suppliedItem"][0]["quantity"]["value"] == 100

    request = client.get(f"/fhir/R5/{resource['basedOn'][0]['reference']}", headers=actors["fp_tha"].headers)
    assert request.status_code == 200, request.text  # basedOn resolves to the exported SupplyRequest
    SupplyRequest.model_validate(request.json())
    assert request.json()["deliverTo"]["identifier"]["value"] == RAJAVITHI


def test_a_received_line_says_what_was_accepted_and_rejected(
    client: TestClient, actors: dict[str, Actor], shipped: Shipped, db: Session
) -> None:
    manager = actors["manager_tha"]
    shipment = shipped.to_thailand
    bundle = _thai_receipt(client, manager, shipment, accepted=(235, 100))
    bundle["entry"][0]["resource"]["extension"][1]["extension"].append(
        {
            "url": "rejected",
            "extension": [
                {"url": "reason", "valueCode": "short_shipped"},
                {"url": "quantity", "valueQuantity": {"value": 5, "unit": "kit"}},
            ],
        }
    )
    bundle["entry"][0]["resource"]["extension"][1]["extension"][0]["extension"][1]["valueQuantity"][
        "value"
    ] = 10
    response = client.post("/fhir/R5/SupplyDelivery", json=bundle, headers=manager.headers)
    assert response.status_code == 201, response.text

    first, second = shipment.lines
    resource = _read(client, manager, f"shp-{shipment.id}-{first.id}")
    assert (resource["status"], _stage(resource)) == ("completed", "reception")
    assert _extension(resource, STATUS_URL) == {"url": STATUS_URL, "valueCode": "received"}
    assert resource["suppliedItem"][0]["quantity"] == {"value": 235, "unit": "kit"}  # accepted
    assert _accounting(resource) == {
        "shipped": 250,
        "accepted": 235,
        "lost": 0,
        "rejected": {"damaged": 10, "short_shipped": 5},
    }
    assert resource["receiver"] == [{"display": "Somchai Rattanakorn, Rajavithi pharmacy store"}]
    db.expire_all()
    received = db.get(Shipment, shipment.id)
    assert received is not None
    assert received.received_at is not None
    assert resource["occurrenceDateTime"] == received.received_at.astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert resource["contained"][0]["instance"]["lotNumber"] == "RRMS-AG-01"
    whole = _read(client, manager, f"shp-{shipment.id}-{second.id}")
    assert _accounting(whole) == {"shipped": 100, "accepted": 100, "lost": 0, "rejected": {}}


def test_a_shipment_not_yet_dispatched_has_no_supply_delivery(
    client: TestClient, actors: dict[str, Actor], db: Session, region: Region
) -> None:
    thailand, _ = _plan(db, region)
    line = thailand.lines[0]
    _problem(
        client.get(f"/fhir/R5/SupplyDelivery/shp-{thailand.id}-{line.id}", headers=actors["fp_tha"].headers),
        404,
    )
    assert "entry" not in _search(client, actors["fp_tha"], thailand.id)
    logistics.move(db, COORDINATOR, thailand.id, MoveIn.model_validate({"status": "picked"}))
    assert _search(client, actors["fp_tha"], thailand.id)["total"] == 0
    logistics.move(db, COORDINATOR, thailand.id, MoveIn.model_validate({"status": "dispatched"}))
    assert _search(client, actors["fp_tha"], thailand.id)["total"] == 2


# --- scope ---------------------------------------------------------------------------------------


def test_reads_and_searches_see_only_shipments_of_the_callers_scope(
    client: TestClient, actors: dict[str, Actor], shipped: Shipped
) -> None:
    thailand, laos = shipped.to_thailand, shipped.to_laos
    thai_ids = [f"shp-{thailand.id}-{line.id}" for line in thailand.lines]
    lao_ids = [f"shp-{laos.id}-{line.id}" for line in laos.lines]

    lao = actors["fp_lao"]
    assert _ids(_search(client, lao, laos.id)) == lao_ids
    hidden = _search(client, lao, thailand.id)
    assert (hidden["total"], "entry" in hidden) == (0, False)
    _problem(client.get(f"/fhir/R5/SupplyDelivery/{thai_ids[0]}", headers=lao.headers), 404)

    manager = actors["manager_tha"]
    assert _ids(_search(client, manager, f"SHP-{thailand.id:06d}")) == thai_ids  # by code too
    assert _search(client, manager, laos.id)["total"] == 0
    _problem(client.get(f"/fhir/R5/SupplyDelivery/{lao_ids[0]}", headers=manager.headers), 404)
    _read(client, manager, thai_ids[1])

    for name in ("fp_tha", "coordinator", "auditor", "clinician_tha"):  # the source side, the region
        assert _ids(_search(client, actors[name], thailand.id)) == thai_ids
    _problem(client.get(f"/fhir/R5/SupplyDelivery/{thai_ids[0]}", headers=actors["researcher"].headers), 403)

    page = _search(client, manager, thailand.id, _count=1)
    assert (page["total"], _ids(page)) == (2, thai_ids[:1])
    [next_link] = [link["url"] for link in page["link"] if link["relation"] == "next"]
    rest = client.get(next_link, headers=manager.headers).json()
    assert _ids(rest) == thai_ids[1:]
    assert not any(link["relation"] == "next" for link in rest["link"])

    unknown = f"shp-{thailand.id + 1000}-{thailand.lines[0].id}"
    _problem(client.get(f"/fhir/R5/SupplyDelivery/{unknown}", headers=actors["admin"].headers), 404)
    _problem(
        client.get(
            f"/fhir/R5/SupplyDelivery/shp-{laos.id}-{thailand.lines[0].id}", headers=actors["admin"].headers
        ),
        404,
    )
    _problem(client.get("/fhir/R5/SupplyDelivery/nonsense", headers=actors["admin"].headers), 404)
    bad = client.get("/fhir/R5/SupplyDelivery", params={"shipment": "abc"}, headers=actors["admin"].headers)
    _problem(bad, 422)
    assert _fields(bad) == {"shipment"}
    assert _search(client, actors["admin"], 999_999)["total"] == 0


# --- import --------------------------------------------------------------------------------------


def test_a_receipt_bundle_records_the_receipt_once(
    client: TestClient, actors: dict[str, Actor], shipped: Shipped, db: Session
) -> None:
    manager = actors["manager_tha"]
    shipment = shipped.to_thailand
    before = _stock(db, RAJAVITHI)
    bundle = _thai_receipt(client, manager, shipment)
    headers = {**manager.headers, "Idempotency-Key": "RJV-GRN-2026-12-01-0007"}

    response = client.post("/fhir/R5/SupplyDelivery", json=bundle, headers=headers)

    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    answer = Bundle.model_validate(response.json())
    assert answer.type == "transaction-response"
    assert [e.response.status for e in answer.entry or [] if e.response] == ["201 Created"] * 2
    assert [_stage(e["resource"]) for e in response.json()["entry"]] == ["reception"] * 2
    assert _stock(db, RAJAVITHI) == before + 240 + 100  # the 10 damaged kits are written off
    db.expire_all()
    received = db.get(Shipment, shipment.id)
    assert received is not None
    assert received.status.value == "received"
    assert received.receiver_name == "Somchai Rattanakorn, Rajavithi pharmacy store"
    assert [(x.accepted, x.rejected, x.rejections) for x in received.lines] == [
        (240, 10, {"damaged": 10}),
        (100, 0, {}),
    ]

    state = _state(db, shipment)
    again = client.post("/fhir/R5/SupplyDelivery", json=bundle, headers=headers)
    assert again.status_code == 200, again.text
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"] * 2
    assert _state(db, shipment) == state

    other = _thai_receipt(client, manager, shipment, accepted=(250, 100))  # a second, different receipt
    refused = client.post("/fhir/R5/SupplyDelivery", json=other, headers=manager.headers)
    _problem(refused, 409)
    assert _fields(refused) == {"entry[0].resource.identifier[0]"}
    assert _state(db, shipment) == state


def test_a_receipt_without_a_key_is_recognised_by_its_content(
    client: TestClient, actors: dict[str, Actor], shipped: Shipped, db: Session
) -> None:
    lao = actors["fp_lao"]
    shipment = shipped.to_laos
    [line] = shipment.lines
    exported = _read(client, lao, f"shp-{shipment.id}-{line.id}")
    receipt = _receipt(exported, 350, receiver="Khamla Phommavong, Mahosot central store")
    before = _stock(db, MAHOSOT)

    response = client.post("/fhir/R5/SupplyDelivery", json=receipt, headers=lao.headers)  # one resource

    assert response.status_code == 201, response.text
    assert response.headers["location"].endswith(f"/fhir/R5/SupplyDelivery/shp-{shipment.id}-{line.id}")
    created = SupplyDelivery.model_validate(response.json())
    assert (created.status, _stage(response.json())) == ("completed", "reception")
    assert _stock(db, MAHOSOT) == before + 350
    state = _state(db, shipment)
    again = client.post("/fhir/R5/SupplyDelivery", json=receipt, headers=lao.headers)
    assert again.status_code == 200, again.text
    assert _state(db, shipment) == state


def _entry(index: int, *path: str | int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The node at `path` inside entry `index`'s resource."""

    def node(bundle: dict[str, Any]) -> dict[str, Any]:
        value: Any = bundle["entry"][index]["resource"]
        for key in path:
            value = value[key]
        result: dict[str, Any] = value
        return result

    return node


def _accepted(value: int) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        _entry(1, "suppliedItem", 0)(bundle)["quantity"]["value"] = value

    return change


def _put(index: int, path: tuple[str | int, ...], key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        node = _entry(index, *path)(bundle)
        if value is None:
            del node[key]
        else:
            node[key] = value

    return change


def _drop_entry(bundle: dict[str, Any]) -> None:
    del bundle["entry"][1]


def _duplicate_entry(bundle: dict[str, Any]) -> None:
    bundle["entry"][1] = copy.deepcopy(bundle["entry"][0])


def _reason(reason: str) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        _entry(0, "extension", 1, "extension", 0, "extension", 0)(bundle)["valueCode"] = reason

    return change


def _unknown_line(bundle: dict[str, Any]) -> None:
    identifier = _entry(1, "identifier", 0)(bundle)
    identifier["value"] = identifier["value"].split("/")[0] + "/99999"


def _r6_stage(bundle: dict[str, Any]) -> None:
    _entry(0)(bundle)["stage"] = {"coding": [{"system": STAGE_SYSTEM, "code": "reception"}]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(_accepted(90), "entry[1].resource.suppliedItem[0].quantity", id="units-unaccounted"),
        pytest.param(_accepted(110), "entry[1].resource.suppliedItem[0].quantity", id="more-than-shipped"),
        pytest.param(_accepted(-1), "entry[1].resource.suppliedItem[0].quantity", id="negative"),
        pytest.param(
            _put(1, ("suppliedItem", 0, "quantity"), "unit", "test"),
            "entry[1].resource.suppliedItem[0].quantity",
            id="unit",
        ),
        pytest.param(_put(0, (), "status", "in-progress"), "entry[0].resource.status", id="status"),
        pytest.param(_put(1, (), "extension", None), "entry[1].resource.extension", id="no-stage"),
        pytest.param(
            _put(1, ("extension", 0, "valueCodeableConcept", "coding", 0), "code", "dispatch"),
            "entry[1].resource.extension[0]",
            id="dispatch-stage",
        ),
        pytest.param(_r6_stage, "entry[0].resource.stage", id="r6-stage-element"),
        pytest.param(
            _put(0, (), "receiver", None), "entry[0].resource.receiver[0].display", id="no-receiver"
        ),
        pytest.param(
            _put(1, ("receiver", 0), "display", "Someone else"),
            "entry[1].resource.receiver[0].display",
            id="two-receivers",
        ),
        pytest.param(_reason("stolen"), "entry[0].resource.extension[1].extension[0].extension", id="reason"),
        pytest.param(
            _put(0, ("contained", 0, "instance"), "lotNumber", "RRMS-AG-99"),
            "entry[0].resource.contained[0].instance.lotNumber",
            id="lot",
        ),
        pytest.param(_unknown_line, "entry[1].resource.identifier[0]", id="no-such-line"),
        pytest.param(_drop_entry, "entry", id="line-missing"),
        pytest.param(_duplicate_entry, "entry[1].resource.identifier[0]", id="line-twice"),
        pytest.param(
            _put(0, (), "occurrenceDateTime", "2099-01-01T00:00:00Z"),
            "entry[0].resource.occurrenceDateTime",
            id="future",
        ),
    ],
)
def test_a_receipt_that_does_not_add_up_is_refused_with_its_fhir_path_and_changes_nothing(
    client: TestClient,
    actors: dict[str, Actor],
    shipped: Shipped,
    db: Session,
    change: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    manager = actors["manager_tha"]
    shipment = shipped.to_thailand
    bundle = _thai_receipt(client, manager, shipment)
    change(bundle)
    state = _state(db, shipment)

    response = client.post("/fhir/R5/SupplyDelivery", json=bundle, headers=manager.headers)

    _problem(response, 422)
    assert field in _fields(response), response.text
    assert _state(db, shipment) == state


def test_only_the_receiving_side_may_import_a_receipt(
    client: TestClient, actors: dict[str, Actor], shipped: Shipped, db: Session
) -> None:
    thailand, lao = shipped.to_thailand, shipped.to_laos
    bundle = _thai_receipt(client, actors["manager_tha"], thailand)
    state, lao_state = _state(db, thailand), _state(db, lao)

    foreign = client.post("/fhir/R5/SupplyDelivery", json=bundle, headers=actors["fp_lao"].headers)
    _problem(foreign, 404)  # fp_lao cannot see a Thai shipment to a Thai hospital
    sender = client.post("/fhir/R5/SupplyDelivery", json=bundle, headers=actors["coordinator"].headers)
    _problem(sender, 403)  # the coordinator sends; it holds no shipment:receive
    clinician = client.post("/fhir/R5/SupplyDelivery", json=bundle, headers=actors["clinician_tha"].headers)
    _problem(clinician, 403)
    lao_receipt = _receipt(_read(client, actors["fp_lao"], f"shp-{lao.id}-{lao.lines[0].id}"), 350)
    source_side = client.post("/fhir/R5/SupplyDelivery", json=lao_receipt, headers=actors["fp_tha"].headers)
    _problem(source_side, 403)  # Thailand sent it (from its depot): Lao PDR confirms receipt
    assert (_state(db, thailand), _state(db, lao)) == (state, lao_state)


def test_a_flagged_temperature_excursion_needs_the_receivers_decision(
    client: TestClient, actors: dict[str, Actor], shipped: Shipped, db: Session
) -> None:
    lao = actors["fp_lao"]
    shipment = shipped.to_laos
    [line] = shipment.lines
    logistics.upload_log(db, lao.principal, shipment.id, HOT_TRUCK.encode())
    receipt = _receipt(_read(client, lao, f"shp-{shipment.id}-{line.id}"), 350)
    state = _state(db, shipment)

    undecided = client.post("/fhir/R5/SupplyDelivery", json=receipt, headers=lao.headers)

    _problem(undecided, 422)
    assert _fields(undecided) == {"extension"}
    assert EXCURSION_URL in undecided.json()["errors"][0]["message"]
    assert _state(db, shipment) == state
    receipt["extension"].append({"url": EXCURSION_URL, "valueCode": "quarantine"})
    response = client.post("/fhir/R5/SupplyDelivery", json=receipt, headers=lao.headers)
    assert response.status_code == 201, response.text
    resource = _read(client, lao, f"shp-{shipment.id}-{line.id}")
    assert _extension(resource, EXCURSION_URL) == {"url": EXCURSION_URL, "valueCode": "quarantine"}
    assert _accounting(resource) == {
        "shipped": 350,
        "accepted": 350,
        "lost": 0,
        "quarantined": 350,
        "rejected": {},
    }
