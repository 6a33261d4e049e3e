"""FHIR R5 interop: InventoryReport export/import against the stock ledger, SupplyRequest <-> needs.

Round trips prove nothing is lost (every lot, quantity and expiry; every field of a need); imports
prove they go through the ledger's and the needs service's rules, all or nothing, idempotently, and
that a bad resource is refused with the FHIR path of the element at fault.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.bundle import Bundle
from fhir.resources.inventoryreport import InventoryReport
from fhir.resources.supplyrequest import SupplyRequest
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.interop.api import router
from healthmesh.needs.models import Need
from healthmesh.supply.models import IngestBatch, LotBalance, StockEvent
from tests.conftest import Actor, Region

FHIR_JSON = "application/fhir+json"
PROBLEM = "application/problem+json"
AGRDT = "DX-AGRDT-25"
AGRDT_GTIN = "00614141000012"
COMIRNATY = "VAC-COMIRNATY"
VENTILATOR = "BME-VENT-ICU"
RAJAVITHI = "THA-HO-0001"
CHIANG_MAI = "THA-HO-0002"
MAHOSOT = "LAO-HO-0001"
PRODUCT = "urn:healthmesh:product"
GTIN = "https://www.gs1.org/gtin"
FACILITY = "urn:healthmesh:facility"

LotView = dict[tuple[str, str], tuple[str | None, int]]


@pytest.fixture
def fhir(client: TestClient) -> TestClient:
    """The test app with the FHIR router mounted (the application factory does not include it yet)."""
    app = cast(FastAPI, client.app)
    if not any(getattr(route, "path", "").startswith("/fhir/R5/") for route in app.routes):
        app.include_router(router)
    return client


# --- helpers -------------------------------------------------------------------------------------


def _event(
    kind: str,
    quantity: int,
    *,
    lot: str,
    product: str = AGRDT,
    facility: str = RAJAVITHI,
    at: str = "2026-11-05T09:00:00+07:00",
    expiry: str | None = None,
    **extra: object,
) -> dict[str, object]:
    body: dict[str, object] = {
        "facility": facility,
        "product": product,
        "lot_number": lot,
        "kind": kind,
        "quantity": quantity,
        "occurred_at": at,
    }
    if expiry:
        body["expiry_date"] = expiry
    body.update(extra)
    return body


def _record(client: TestClient, actor: Actor, *events: dict[str, object]) -> None:
    response = client.post("/api/v1/stock/events/batch", json={"events": list(events)}, headers=actor.headers)
    assert response.status_code == 201, response.text


def _stock_rajavithi(client: TestClient, actor: Actor) -> None:
    """Rajavithi's store: two test-kit lots, a vaccine lot, two ventilators (no expiry), one empty lot."""
    _record(
        client,
        actor,
        _event("receipt", 500, lot="AG2611A", expiry="2027-12-31"),
        _event("receipt", 120, lot="AG2611B", expiry="2027-06-30"),
        _event("receipt", 40, lot="AG2509Z", expiry="2026-12-31"),
        _event("issue", 40, lot="AG2509Z", at="2026-11-06T09:00:00+07:00"),
        _event("receipt", 300, lot="FL8095", product=COMIRNATY, expiry="2027-03-31"),
        _event("receipt", 2, lot="HAM-C6-0042", product=VENTILATOR),
        _event("reservation", 100, lot="AG2611A", at="2026-11-07T09:00:00+07:00"),
    )


def _lots(client: TestClient, actor: Actor, facility: str) -> LotView:
    response = client.get(
        "/api/v1/stock/lots", params={"facility": facility, "limit": 500}, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    return {
        (r["product"], r["lot_number"]): (r["expiry_date"], r["on_hand"]) for r in response.json()["items"]
    }


def _export(client: TestClient, actor: Actor, **params: str) -> dict[str, Any]:
    response = client.get("/fhir/R5/InventoryReport", params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    InventoryReport.model_validate(body)
    return body


def _listed(report: dict[str, Any]) -> LotView:
    """What a report says, per (product, lot): (expiry, quantity), read through its references."""
    contained = {f"#{item['id']}": item for item in report.get("contained", [])}
    out: LotView = {}
    for listing in report["inventoryListing"]:
        for entry in listing.get("item", []):
            item = contained[entry["item"]["reference"]["reference"]]
            codes = {c["system"]: c["code"] for c in item["code"][0]["coding"]}
            out[(codes[PRODUCT], item["instance"]["lotNumber"])] = (
                item["instance"].get("expiry"),
                entry["quantity"]["value"],
            )
    return out


def _count(db: Session, model: type[Any]) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


def _problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


def _fields(response: Response) -> set[str]:
    return {error["field"] for error in response.json().get("errors", [])}


def _item(
    ref: str, product: str, lot: str, expiry: str | None = None, gtin: str | None = None
) -> dict[str, Any]:
    coding = [{"system": PRODUCT, "code": product}] if product else []
    if gtin:
        coding.append({"system": GTIN, "code": gtin})
    instance: dict[str, Any] = {"lotNumber": lot}
    if expiry:
        instance["expiry"] = expiry
    return {
        "resourceType": "InventoryItem",
        "id": ref,
        "status": "active",
        "code": [{"coding": coding}],
        "instance": instance,
    }


def _count_report(
    items: list[tuple[dict[str, Any], Any]], *, facility: str = RAJAVITHI, identifier: str | None = None
) -> dict[str, Any]:
    """A stock count as a LMIS would send it: contained items and their counted quantities."""
    report: dict[str, Any] = {
        "resourceType": "InventoryReport",
        "status": "active",
        "countType": "snapshot",
        "reportedDateTime": "2026-11-30T16:00:00+07:00",
        "contained": [item for item, _ in items],
        "inventoryListing": [
            {
                "location": {"identifier": {"system": FACILITY, "value": facility}},
                "countingDateTime": "2026-11-30T15:30:00+07:00",
                "item": [
                    {"item": {"reference": {"reference": f"#{item['id']}"}}, "quantity": quantity}
                    for item, quantity in items
                ],
            }
        ],
    }
    if identifier:
        report["identifier"] = [{"system": "https://lmis.moph.go.th/stock-count", "value": identifier}]
    return report


# --- InventoryReport export ----------------------------------------------------------------------


def test_snapshot_lists_every_lot_on_hand_as_a_contained_inventory_item(
    fhir: TestClient, actors: dict[str, Actor]
) -> None:
    _stock_rajavithi(fhir, actors["manager_tha"])
    _record(
        fhir, actors["fp_tha"], _event("receipt", 75, lot="AG2611A", facility=CHIANG_MAI, expiry="2027-12-31")
    )

    report = _export(fhir, actors["fp_tha"], facility=RAJAVITHI, countType="snapshot")

    assert (report["status"], report["countType"]) == ("active", "snapshot")
    assert report["reportedDateTime"]
    [listing] = report["inventoryListing"]
    assert listing["location"]["identifier"] == {"system": FACILITY, "value": RAJAVITHI}
    assert _listed(report) == {
        (AGRDT, "AG2611A"): ("2027-12-31", 500),  # reserved stock is still on hand
        (AGRDT, "AG2611B"): ("2027-06-30", 120),
        (COMIRNATY, "FL8095"): ("2027-03-31", 300),
        (VENTILATOR, "HAM-C6-0042"): (None, 2),
    }  # AG2509Z (issued to zero) and Chiang Mai's stock are not listed
    refs = [entry["item"]["reference"]["reference"] for entry in listing["item"]]
    assert refs == [f"#lot-{n}" for n in range(1, 5)]
    units = {entry["quantity"]["unit"] for entry in listing["item"]}
    assert units == {"kit", "vial", "each"}
    codings = {item["instance"]["lotNumber"]: item["code"][0]["coding"] for item in report["contained"]}
    assert {"system": GTIN, "code": AGRDT_GTIN} in codings["AG2611A"]
    assert all(c["system"] != GTIN for c in codings["FL8095"])  # Comirnaty has no GTIN on file


def test_snapshot_round_trip_into_another_facility_preserves_lots_quantities_and_expiry(
    fhir: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    _stock_rajavithi(fhir, actors["manager_tha"])
    exported = _export(fhir, actors["fp_tha"], facility=RAJAVITHI, countType="snapshot")

    moved = copy.deepcopy(exported)  # the same count, as Chiang Mai's opening balance
    moved["inventoryListing"][0]["location"]["identifier"]["value"] = CHIANG_MAI
    response = fhir.post("/fhir/R5/InventoryReport", json=moved, headers=actors["fp_tha"].headers)

    assert response.status_code == 201, response.text
    assert response.json()["events"] == 4
    assert response.json()["replayed"] is False
    assert _lots(fhir, actors["fp_tha"], CHIANG_MAI) == _lots(fhir, actors["fp_tha"], RAJAVITHI)
    again = _export(fhir, actors["fp_tha"], facility=CHIANG_MAI, countType="snapshot")
    assert _listed(again) == _listed(exported)
    reasons = db.scalars(
        select(StockEvent.reason).where(StockEvent.batch_id == response.json()["batch_id"])
    ).all()
    assert set(reasons) == {"opening balance from stock count"}


def test_difference_report_is_the_net_of_the_events_in_the_period(
    fhir: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    manager = actors["manager_tha"]
    _record(
        fhir,
        manager,
        _event("receipt", 500, lot="AG2611A", expiry="2027-12-31", at="2026-11-05T08:00:00Z"),  # before
        _event("issue", 120, lot="AG2611A", at="2026-11-10T00:00:00Z"),  # at `from`: counted
        _event("receipt", 200, lot="AG2611B", expiry="2027-06-30", at="2026-11-12T03:00:00Z"),
        _event("issue", 50, lot="AG2611B", at="2026-11-15T03:00:00Z"),
        _event("reservation", 30, lot="AG2611A", at="2026-11-16T03:00:00Z"),  # not an on-hand change
        _event("adjustment", -5, lot="AG2611A", reason="water damage", at="2026-11-18T03:00:00Z"),
        _event(
            "receipt", 100, lot="FL8095", product=COMIRNATY, expiry="2027-03-31", at="2026-11-11T03:00:00Z"
        ),
        _event("issue", 100, lot="FL8095", product=COMIRNATY, at="2026-11-19T03:00:00Z"),  # nets to zero
        _event("issue", 10, lot="AG2611A", at="2026-11-20T00:00:00Z"),  # at `to`: excluded
    )

    report = _export(
        fhir,
        actors["coordinator"],
        facility=RAJAVITHI,
        countType="difference",
        **{"from": "2026-11-10T07:00:00+07:00", "to": "2026-11-20"},
    )

    assert report["countType"] == "difference"
    assert report["reportingPeriod"] == {"start": "2026-11-10T00:00:00Z", "end": "2026-11-20T00:00:00Z"}
    assert _listed(report) == {
        (AGRDT, "AG2611A"): ("2027-12-31", -125),
        (AGRDT, "AG2611B"): ("2027-06-30", 150),
    }
    in_period = db.scalar(
        select(func.sum(StockEvent.on_hand_delta)).where(
            StockEvent.occurred_at >= datetime(2026, 11, 10, tzinfo=UTC),
            StockEvent.occurred_at < datetime(2026, 11, 20, tzinfo=UTC),
        )
    )
    assert sum(quantity for _, quantity in _listed(report).values()) == in_period
    missing = fhir.get(
        "/fhir/R5/InventoryReport",
        params={"facility": RAJAVITHI, "countType": "difference"},
        headers=manager.headers,
    )
    _problem(missing, 422)
    assert _fields(missing) == {"from"}


def test_difference_import_adds_signed_quantities_and_receives_new_lots(
    fhir: TestClient, actors: dict[str, Actor]
) -> None:
    manager = actors["manager_tha"]
    _stock_rajavithi(fhir, manager)
    report = _count_report(
        [
            (_item("a", AGRDT, "AG2611B"), {"value": -20, "unit": "kit"}),
            (_item("b", AGRDT, "AG2612C", "2028-01-31"), {"value": 60, "unit": "kit"}),
            (_item("c", COMIRNATY, "FL8095"), {"value": 0, "unit": "vial"}),
        ]
    )
    report["countType"] = "difference"
    response = fhir.post("/fhir/R5/InventoryReport", json=report, headers=manager.headers)
    assert response.status_code == 201, response.text
    assert response.json()["events"] == 2
    lots = _lots(fhir, manager, RAJAVITHI)
    assert lots[(AGRDT, "AG2611B")] == ("2027-06-30", 100)
    assert lots[(AGRDT, "AG2612C")] == ("2028-01-31", 60)
    assert lots[(COMIRNATY, "FL8095")] == ("2027-03-31", 300)


# --- InventoryReport import: stock counts --------------------------------------------------------


def test_stock_count_adjusts_to_the_counted_quantities_and_leaves_uncounted_lots_alone(
    fhir: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    manager = actors["manager_tha"]
    _stock_rajavithi(fhir, manager)
    count = _count_report(
        [
            (_item("lot-1", AGRDT, "AG2611A", "2027-12-31"), {"value": 488, "unit": "kit"}),
            (_item("lot-2", AGRDT, "AG2611B", "2027-06-30"), {"value": 120, "unit": "kit"}),  # agrees
            (_item("lot-3", "", "AG2612C", "2028-01", gtin=AGRDT_GTIN), {"value": 60}),  # new, by GTIN
        ],
        identifier="RJV-2026-11-30-01",
    )

    response = fhir.post("/fhir/R5/InventoryReport", json=count, headers=manager.headers)

    assert response.status_code == 201, response.text
    assert response.json()["events"] == 2
    events = db.execute(
        select(StockEvent.kind, StockEvent.quantity, StockEvent.reason).where(
            StockEvent.batch_id == response.json()["batch_id"]
        )
    ).all()
    assert sorted((kind.value, quantity, reason) for kind, quantity, reason in events) == [
        ("adjustment", -12, "stock count (FHIR InventoryReport RJV-2026-11-30-01)"),
        ("receipt", 60, "opening balance from stock count"),
    ]
    lots = _lots(fhir, manager, RAJAVITHI)
    assert lots[(AGRDT, "AG2611A")] == ("2027-12-31", 488)
    assert lots[(AGRDT, "AG2611B")] == ("2027-06-30", 120)
    assert lots[(AGRDT, "AG2612C")] == ("2028-01-31", 60)  # "2028-01" = end of January
    assert lots[(COMIRNATY, "FL8095")] == ("2027-03-31", 300)  # not counted: not zeroed
    assert lots[(VENTILATOR, "HAM-C6-0042")] == (None, 2)
    reserved = db.scalar(select(func.sum(LotBalance.reserved)))
    assert reserved == 100  # the reservation survives the count


def test_reposting_the_same_report_changes_nothing(
    fhir: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    manager = actors["manager_tha"]
    _stock_rajavithi(fhir, manager)
    with_id = _count_report(
        [(_item("lot-1", AGRDT, "AG2611A"), {"value": 490, "unit": "kit"})], identifier="RJV-2026-11-30-02"
    )
    without_id = _count_report([(_item("lot-1", AGRDT, "AG2611B"), {"value": 110, "unit": "kit"})])

    for report in (with_id, without_id):
        first = fhir.post("/fhir/R5/InventoryReport", json=report, headers=manager.headers)
        assert first.status_code == 201, first.text
        events, batches, lots = (
            _count(db, StockEvent),
            _count(db, IngestBatch),
            _lots(fhir, manager, RAJAVITHI),
        )
        again = fhir.post("/fhir/R5/InventoryReport", json=report, headers=manager.headers)
        assert again.status_code == 201, again.text
        assert again.json() == {**first.json(), "replayed": True}
        assert (_count(db, StockEvent), _count(db, IngestBatch)) == (events, batches)
        assert _lots(fhir, manager, RAJAVITHI) == lots
    assert _lots(fhir, manager, RAJAVITHI)[(AGRDT, "AG2611A")][1] == 490
    assert _lots(fhir, manager, RAJAVITHI)[(AGRDT, "AG2611B")][1] == 110

    changed = copy.deepcopy(with_id)
    changed["inventoryListing"][0]["item"][0]["quantity"]["value"] = 480
    conflict = fhir.post("/fhir/R5/InventoryReport", json=changed, headers=manager.headers)
    _problem(conflict, 409)
    assert _fields(conflict) == {"identifier"}
    assert _lots(fhir, manager, RAJAVITHI)[(AGRDT, "AG2611A")][1] == 490

    agrees = _count_report([(_item("lot-1", AGRDT, "AG2611A"), {"value": 490, "unit": "kit"})])
    response = fhir.post("/fhir/R5/InventoryReport", json=agrees, headers=manager.headers)
    assert response.status_code == 201
    assert response.json() == {"batch_id": None, "events": 0, "replayed": False}


def _base_count() -> dict[str, Any]:
    return _count_report(
        [
            (_item("lot-1", AGRDT, "AG2611A", "2027-12-31"), {"value": 480, "unit": "kit"}),
            (_item("lot-2", COMIRNATY, "FL8095", "2027-03-31"), {"value": 290, "unit": "vial"}),
        ]
    )


def _second_quantity(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(report: dict[str, Any]) -> None:
        entry = report["inventoryListing"][0]["item"][1]
        if value is None:
            del entry["quantity"]
        else:
            entry["quantity"] = value

    return change


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(report: dict[str, Any]) -> None:
        node: Any = report
        for key in path[:-1]:
            node = node[key]
        if value is None:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(
            _second_quantity({"value": -3, "unit": "vial"}),
            "inventoryListing[0].item[1].quantity",
            id="negative",
        ),
        pytest.param(_second_quantity(None), "inventoryListing[0].item[1].quantity", id="missing"),
        pytest.param(
            _second_quantity({"unit": "vial"}), "inventoryListing[0].item[1].quantity", id="no-value"
        ),
        pytest.param(
            _second_quantity({"value": 2.5, "unit": "vial"}),
            "inventoryListing[0].item[1].quantity",
            id="fraction",
        ),
        pytest.param(
            _second_quantity({"value": 290, "unit": "dose"}),
            "inventoryListing[0].item[1].quantity",
            id="unit",
        ),
        pytest.param(
            _second_quantity({"value": "many"}),
            "inventoryListing[0].item[1].quantity.value",
            id="not-a-number",
        ),
        pytest.param(
            _set(["contained", 1, "code", 0, "coding", 0, "code"], "VAC-NOPE"),
            "contained[1].code",
            id="product",
        ),
        pytest.param(
            _set(["contained", 1, "instance", "lotNumber"], None), "contained[1].instance.lotNumber", id="lot"
        ),
        pytest.param(
            _set(["contained", 1, "instance", "expiry"], "2027-13-45"),
            "contained[1].instance.expiry",
            id="expiry",
        ),
        pytest.param(
            _set(["inventoryListing", 0, "location", "identifier", "value"], "THA-HO-9999"),
            "inventoryListing[0].location",
            id="facility",
        ),
        pytest.param(
            _set(["inventoryListing", 0, "location", "identifier", "value"], CHIANG_MAI),
            "inventoryListing[0].location",
            id="out-of-scope",
        ),
        pytest.param(
            _set(["inventoryListing", 0, "item", 1, "item", "reference", "reference"], "#lot-9"),
            "inventoryListing[0].item[1].item",
            id="dangling-reference",
        ),
        pytest.param(
            _set(["inventoryListing", 0, "item", 0, "quantity", "value"], 50),
            "inventoryListing[0].item[0].quantity",
            id="below-reserved",
        ),
        pytest.param(_set(["countType"], "total"), "countType", id="count-type"),
        pytest.param(_set(["reportedDateTime"], None), "reportedDateTime", id="no-date"),
        pytest.param(_set(["resourceType"], "SupplyDelivery"), "resourceType", id="resource-type"),
    ],
)
def test_an_invalid_report_is_refused_with_its_fhir_path_and_nothing_is_written(
    fhir: TestClient,
    actors: dict[str, Actor],
    db: Session,
    change: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    manager = actors["manager_tha"]
    _stock_rajavithi(fhir, manager)
    before = (_count(db, StockEvent), _count(db, IngestBatch), _lots(fhir, manager, RAJAVITHI))
    report = _base_count()
    change(report)

    response = fhir.post("/fhir/R5/InventoryReport", json=report, headers=manager.headers)

    _problem(response, 422)
    assert field in _fields(response), response.text
    assert (_count(db, StockEvent), _count(db, IngestBatch), _lots(fhir, manager, RAJAVITHI)) == before


def test_only_callers_covering_the_facility_may_export_or_import_its_report(
    fhir: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    _stock_rajavithi(fhir, actors["manager_tha"])
    params = {"facility": RAJAVITHI}
    _problem(fhir.get("/fhir/R5/InventoryReport", params=params, headers=actors["fp_lao"].headers), 404)
    other = {"facility": CHIANG_MAI}
    _problem(fhir.get("/fhir/R5/InventoryReport", params=other, headers=actors["manager_tha"].headers), 404)
    unknown = {"facility": "THA-HO-9999"}
    _problem(fhir.get("/fhir/R5/InventoryReport", params=unknown, headers=actors["admin"].headers), 404)
    for name in ("fp_tha", "manager_tha", "clinician_tha", "researcher", "auditor"):
        _export(fhir, actors[name], **params)

    events = _count(db, StockEvent)
    report = _base_count()
    _problem(fhir.post("/fhir/R5/InventoryReport", json=report, headers=actors["clinician_tha"].headers), 403)
    refused = fhir.post("/fhir/R5/InventoryReport", json=report, headers=actors["fp_lao"].headers)
    _problem(refused, 422)
    assert _fields(refused) == {"inventoryListing[0].location"}
    assert _count(db, StockEvent) == events


# --- SupplyRequest -------------------------------------------------------------------------------


def _need(client: TestClient, actor: Actor, **values: object) -> dict[str, Any]:
    body: dict[str, object] = {
        "facility": RAJAVITHI,
        "product": COMIRNATY,
        "quantity": 600,
        "urgency": "emergency",
        "needed_by": (date.today() + timedelta(days=21)).isoformat(),
        "justification": "Dengue and COVID-19 co-circulation; booster campaign for health workers",
        "population_served": 12_000,
        "submit": True,
    }
    body.update(values)
    response = client.post("/api/v1/needs", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _supply_request(
    identifier: str, place: dict[str, Any], *, product: str = AGRDT, quantity: Any = 40, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "SupplyRequest",
        "identifier": [{"system": "https://lmis.moph.go.th/requisition", "value": identifier}],
        "status": "active",
        "priority": "urgent",
        "item": {"concept": {"coding": [{"system": PRODUCT, "code": product}]}},
        "quantity": {"value": quantity},
        "occurrenceDateTime": (date.today() + timedelta(days=30)).isoformat(),
        "deliverTo": place,
    }
    body.update(extra)
    return body


def test_supply_request_round_trip_preserves_the_need(
    fhir: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    manager = actors["manager_tha"]
    need = _need(fhir, manager)

    response = fhir.get(f"/fhir/R5/SupplyRequest/{need['id']}", headers=manager.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    resource = response.json()
    SupplyRequest.model_validate(resource)
    assert (resource["status"], resource["priority"]) == ("active", "asap")
    assert resource["item"]["concept"]["coding"][0]["code"] == COMIRNATY
    assert resource["quantity"] == {"value": 600, "unit": "vial"}
    assert resource["occurrenceDateTime"] == need["needed_by"]
    assert resource["deliverTo"]["identifier"] == {"system": FACILITY, "value": RAJAVITHI}
    assert resource["identifier"][0]["value"] == f"urn:healthmesh:need:{need['id']}"

    imported = fhir.post("/fhir/R5/SupplyRequest", json=resource, headers=manager.headers)

    assert imported.status_code == 201, imported.text
    assert imported.headers["content-type"].startswith(FHIR_JSON)
    new_id = int(imported.json()["id"])
    assert new_id != need["id"]
    assert imported.headers["location"].endswith(f"/fhir/R5/SupplyRequest/{new_id}")
    copy_ = fhir.get(f"/api/v1/needs/{new_id}", headers=manager.headers).json()
    keys = ("facility", "jurisdiction", "product", "quantity", "urgency", "needed_by", "justification")
    assert {k: copy_[k] for k in keys} == {k: need[k] for k in keys}
    assert (copy_["population_served"], copy_["status"]) == (12_000, "submitted")
    assert copy_["external_id"] == f"urn:healthmesh:need:{need['id']}"

    needs = _count(db, Need)
    again = fhir.post("/fhir/R5/SupplyRequest", json=resource, headers=manager.headers)
    _problem(again, 409)
    assert _fields(again) == {"identifier"}
    assert _count(db, Need) == needs
    exported_again = fhir.get(f"/fhir/R5/SupplyRequest/{new_id}", headers=manager.headers).json()
    assert exported_again["identifier"][0] == {"value": f"urn:healthmesh:need:{need['id']}"}


def test_a_bundle_of_supply_requests_becomes_needs_all_or_nothing(
    fhir: TestClient, actors: dict[str, Actor], db: Session, region: Region
) -> None:
    focal_point = actors["fp_tha"]
    national = _supply_request(
        "MOPH-REQ-2026-0412",
        {"type": "Organization", "identifier": {"system": "urn:iso:std:iso:3166", "value": "THA"}},
        status="draft",
        item={"concept": {"coding": [{"system": GTIN, "code": AGRDT_GTIN}]}},  # only a GTIN
        quantity=2_000,
        reason=[{"concept": {"text": "Songkran travel surge"}}],
    )
    ventilators = _supply_request(
        "MOPH-REQ-2026-0413",
        {"type": "Location", "identifier": {"system": FACILITY, "value": CHIANG_MAI}},
        product=VENTILATOR,
        quantity=4,
        priority="stat",
    )
    ventilators["occurrencePeriod"] = {"end": ventilators.pop("occurrenceDateTime")}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": national}, {"resource": ventilators}],
    }

    response = fhir.post("/fhir/R5/SupplyRequest", json=bundle, headers=focal_point.headers)

    assert response.status_code == 201, response.text
    created = Bundle.model_validate(response.json())
    assert created.type == "collection"
    assert len(created.entry or []) == 2
    rows = {
        n.external_id: n for n in db.scalars(select(Need).where(Need.external_id.like("MOPH-REQ-%"))).all()
    }
    first, second = rows["MOPH-REQ-2026-0412"], rows["MOPH-REQ-2026-0413"]
    assert (first.facility_id, first.jurisdiction_id) == (None, region.members["THA"].id)
    assert (first.product.code, first.quantity, first.urgency.value, first.status.value) == (
        AGRDT,
        2_000,
        "urgent",
        "draft",
    )
    assert first.justification == "Songkran travel surge"
    assert second.facility is not None
    assert second.facility.code == CHIANG_MAI
    assert (second.quantity, second.urgency.value, second.status.value) == (4, "emergency", "submitted")
    national_out = fhir.get(f"/fhir/R5/SupplyRequest/{first.id}", headers=focal_point.headers).json()
    assert national_out["deliverTo"]["identifier"] == {"system": "urn:iso:std:iso:3166", "value": "THA"}

    needs = _count(db, Need)
    bad = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": _supply_request("MOPH-REQ-2026-0500", national["deliverTo"])},
            {"resource": _supply_request("MOPH-REQ-2026-0501", national["deliverTo"], quantity=0)},
            {"resource": _supply_request("MOPH-REQ-2026-0502", national["deliverTo"], product="DX-NOPE")},
            {"resource": {"resourceType": "SupplyRequest", "item": {"concept": {"text": "masks"}}}},
        ],
    }
    refused = fhir.post("/fhir/R5/SupplyRequest", json=bad, headers=focal_point.headers)
    _problem(refused, 422)
    assert {
        "entry[1].resource.quantity",
        "entry[2].resource.item.concept",
        "entry[3].resource.quantity",
    } <= _fields(refused)
    assert _count(db, Need) == needs


def test_supply_requests_are_read_and_raised_within_scope(
    fhir: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    need = _need(fhir, actors["manager_tha"])
    draft = _need(fhir, actors["manager_tha"], product=AGRDT, quantity=100, urgency="routine", submit=False)

    _problem(fhir.get(f"/fhir/R5/SupplyRequest/{need['id']}", headers=actors["fp_lao"].headers), 404)
    lao = fhir.get("/fhir/R5/SupplyRequest", headers=actors["fp_lao"].headers)
    assert lao.status_code == 200
    assert "entry" not in lao.json()
    active = fhir.get("/fhir/R5/SupplyRequest", params={"status": "active"}, headers=actors["fp_tha"].headers)
    assert active.headers["content-type"].startswith(FHIR_JSON)
    assert [e["resource"]["id"] for e in active.json()["entry"]] == [str(need["id"])]
    both = fhir.get(
        "/fhir/R5/SupplyRequest",
        params={"status": "draft,active", "_count": 1},
        headers=actors["admin"].headers,
    )
    assert len(both.json()["entry"]) == 1
    assert any(link["relation"] == "next" for link in both.json()["link"])
    assert _fields(
        fhir.get("/fhir/R5/SupplyRequest", params={"status": "shipped"}, headers=actors["admin"].headers)
    ) == {"status"}
    assert draft["status"] == "draft"

    needs = _count(db, Need)
    place = {"identifier": {"system": FACILITY, "value": RAJAVITHI}}
    foreign = fhir.post(
        "/fhir/R5/SupplyRequest", json=_supply_request("LAO-1", place), headers=actors["fp_lao"].headers
    )
    _problem(foreign, 403)
    assert _fields(foreign) == {"deliverTo"}
    read_only = fhir.post(
        "/fhir/R5/SupplyRequest", json=_supply_request("AUD-1", place), headers=actors["auditor"].headers
    )
    _problem(read_only, 403)
    past = _supply_request("RJV-OLD", place, occurrenceDateTime="2026-01-15")
    stale = fhir.post("/fhir/R5/SupplyRequest", json=past, headers=actors["manager_tha"].headers)
    _problem(stale, 422)
    assert _fields(stale) == {"occurrenceDateTime"}
    assert _count(db, Need) == needs
