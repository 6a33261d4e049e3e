"""Who may do what, where, role by role, over the supply side of the API: stock events and reads,
pledges, needs, indicators and the shortage board, the change stream, FHIR, and allocation rounds.

Every refused request is checked twice: its status (and problem+json body), and the state it left
behind (nothing written, the row unchanged); every listing is checked to hold exactly the caller's
scope, never another member's rows. Each test is one role trying several places, so the tables
below (who may write, whose rows one sees) are the expectations, written out by hand from
`healthmesh.accounts.access`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.allocation import service as allocation
from healthmesh.allocation.models import AllocationPlan, PlanStatus
from healthmesh.changes.models import ChangeEvent
from healthmesh.needs.models import Need, NeedTransition
from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.supply import service as supply
from healthmesh.supply.enums import PledgeStatus
from healthmesh.supply.models import IngestBatch, LotBalance, Pledge, StockBalance, StockEvent
from healthmesh.supply.schemas import StockEventIn
from tests.conftest import ACTOR_SPECS, Actor, Region
from tests.test_allocation_rounds import DAY, _world

PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"
ROLES: tuple[str, ...] = tuple(ACTOR_SPECS)

AGRDT = "DX-AGRDT-25"
COMIRNATY = "VAC-COMIRNATY"
RAJAVITHI = "THA-HO-0001"
CHIANG_MAI = "THA-HO-0002"
MAHOSOT = "LAO-HO-0001"
TAN_TOCK_SENG = "SGP-HO-0001"
DEPOT = "RRD-THA-CHAINAT"  # the regional reserve depot of `_world`, hosted by Thailand
FACILITY_SYSTEM = "urn:healthmesh:facility"
PRODUCT_SYSTEM = "urn:healthmesh:product"

ALL_FACILITIES = frozenset({RAJAVITHI, CHIANG_MAI, MAHOSOT, TAN_TOCK_SENG})
#: The facilities whose stock each actor may read (the researcher: region scope with stock:read).
STOCK_SCOPE: dict[str, frozenset[str]] = {
    "admin": ALL_FACILITIES,
    "coordinator": ALL_FACILITIES,
    "auditor": ALL_FACILITIES,
    "researcher": ALL_FACILITIES,
    "fp_tha": frozenset({RAJAVITHI, CHIANG_MAI}),
    "fp_lao": frozenset({MAHOSOT}),
    "manager_tha": frozenset({RAJAVITHI}),
    "clinician_tha": frozenset({RAJAVITHI}),
}
#: Roles holding stock:write (the coordinator for the regional reserve depots, but it is region-wide).
STOCK_WRITERS = frozenset({"admin", "coordinator", "fp_tha", "fp_lao", "manager_tha"})
#: Lot numbers seeded by `stocked`, by facility: a refusal or a listing must not show another's.
LOTS: dict[str, frozenset[str]] = {
    RAJAVITHI: frozenset({"AG2611A", "FL8095"}),
    CHIANG_MAI: frozenset({"AG2611C"}),
    MAHOSOT: frozenset({"LA-AG-0042"}),
    TAN_TOCK_SENG: frozenset({"SG-FK0112"}),
}

#: Needs at facilities, and national needs (an ISO3, no facility).
NEED_PLACES = (RAJAVITHI, CHIANG_MAI, "THA", MAHOSOT, "LAO", TAN_TOCK_SENG)
#: The needs each actor may read; None: no need:read at all (403).
NEED_SCOPE: dict[str, frozenset[str] | None] = {
    "admin": frozenset(NEED_PLACES),
    "coordinator": frozenset(NEED_PLACES),
    "auditor": frozenset(NEED_PLACES),
    "researcher": None,
    "fp_tha": frozenset({RAJAVITHI, CHIANG_MAI, "THA"}),
    "fp_lao": frozenset({MAHOSOT, "LAO"}),
    "manager_tha": frozenset({RAJAVITHI}),  # not its member's national requests
    "clinician_tha": frozenset({RAJAVITHI}),
}
#: Roles holding need:write; access.py gives it neither to the coordinator nor to the auditor.
NEED_WRITERS = frozenset({"admin", "fp_tha", "fp_lao", "manager_tha", "clinician_tha"})


# --- helpers -------------------------------------------------------------------------------------


def _problem(response: Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem of this status and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _expect(response: Response, status: int) -> None:
    """Assert the status; refusals must be problem+json."""
    if status >= 400:
        _problem(response, status)
    else:
        assert response.status_code == status, response.text


def _fields(response: Response) -> set[str]:
    return {error["field"] for error in response.json().get("errors", [])}


def _count(db: Session, model: type[Any], *where: Any) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model).where(*where)) or 0


StockState = tuple[int, int, int, int, list[tuple[Any, ...]]]


def _stock_state(db: Session) -> StockState:
    """Everything a stock write touches: events, batches, lot balances, the outbox, and balances."""
    db.expire_all()
    balances = [
        tuple(row)
        for row in db.execute(
            select(
                StockBalance.facility_id, StockBalance.product_id, StockBalance.on_hand, StockBalance.reserved
            ).order_by(StockBalance.facility_id, StockBalance.product_id)
        )
    ]
    return (
        _count(db, StockEvent),
        _count(db, IngestBatch),
        _count(db, LotBalance),
        _count(db, ChangeEvent),
        balances,
    )


def _on_hand(db: Session, region: Region, facility: str, product: str = AGRDT) -> int:
    db.expire_all()
    row = db.get(StockBalance, (region.facilities[facility].id, region.products[product].id))
    return row.on_hand if row else 0


def _items(response: Response) -> list[dict[str, Any]]:
    """The rows of a listing, paged (items and total) or plain."""
    body = response.json()
    if isinstance(body, dict):
        items: list[dict[str, Any]] = body["items"]
        assert body["total"] == len(items)
        return items
    assert isinstance(body, list)
    return body


def _write_status(role: str, facility: str, ok: int) -> int:
    """A stock write: `ok` inside the scope; 422 naming the facility outside it; 403 without
    stock:write."""
    if role not in STOCK_WRITERS:
        return 403
    return ok if facility in STOCK_SCOPE[role] else 422


def _receipt(facility: str = RAJAVITHI, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "facility": facility,
        "product": AGRDT,
        "lot_number": "AG2612R",
        "expiry_date": "2027-12-31",
        "kind": "receipt",
        "quantity": 500,
        "occurred_at": "2026-11-28T09:30:00+07:00",
        "reference": "GRN-RJV-2026-0117",
    }
    body.update(extra)
    return body


def _stock_count(facility: str, lot: str, quantity: int) -> dict[str, Any]:
    """A facility's monthly stock count as the national LMIS sends it (one test-kit lot)."""
    return {
        "resourceType": "InventoryReport",
        "identifier": [{"system": "https://lmis.moph.go.th/stock-count", "value": f"{facility}-2026-11-30"}],
        "status": "active",
        "countType": "snapshot",
        "reportedDateTime": "2026-11-30T16:00:00+07:00",
        "contained": [
            {
                "resourceType": "InventoryItem",
                "id": "ag",
                "status": "active",
                "code": [{"coding": [{"system": PRODUCT_SYSTEM, "code": AGRDT}]}],
                "instance": {"lotNumber": lot},
            }
        ],
        "inventoryListing": [
            {
                "location": {"identifier": {"system": FACILITY_SYSTEM, "value": facility}},
                "countingDateTime": "2026-11-30T15:30:00+07:00",
                "item": [{"item": {"reference": {"reference": "#ag"}}, "quantity": {"value": quantity}}],
            }
        ],
    }


@pytest.fixture
def stocked(db: Session, region: Region, actors: dict[str, Actor]) -> None:
    """Stock at every member: test kits and vaccines in Thailand, kits in Lao PDR, vaccines in
    Singapore; one issue at Rajavithi so consumption is not zero."""
    rows = [
        (RAJAVITHI, AGRDT, "AG2611A", "2027-12-31", "receipt", 500),
        (RAJAVITHI, COMIRNATY, "FL8095", "2027-03-31", "receipt", 300),
        (RAJAVITHI, AGRDT, "AG2611A", None, "issue", 40),
        (CHIANG_MAI, AGRDT, "AG2611C", "2027-06-30", "receipt", 120),
        (MAHOSOT, AGRDT, "LA-AG-0042", "2027-09-30", "receipt", 80),
        (TAN_TOCK_SENG, COMIRNATY, "SG-FK0112", "2027-02-28", "receipt", 900),
    ]
    items = [
        (
            line,
            StockEventIn(
                facility=facility,
                product=product,
                lot_number=lot,
                expiry_date=date.fromisoformat(expiry) if expiry else None,
                kind=kind,
                quantity=quantity,
                occurred_at=datetime(2026, 11, 5, 2, line, tzinfo=UTC),
            ),
        )
        for line, (facility, product, lot, expiry, kind, quantity) in enumerate(rows, start=1)
    ]
    supply.record(db, actors["admin"].principal, items, source="test", request_digest="stocked")
    db.flush()


def _pledge(db: Session, region: Region, facility: str, product: str, quantity: int) -> Pledge:
    place = region.facilities[facility]
    pledge = Pledge(
        jurisdiction_id=place.jurisdiction_id,
        facility=place,
        product=region.products[product],
        quantity=quantity,
        valid_from=date(2026, 12, 1),
        valid_to=date(2099, 1, 31),
        note="offered to the regional pool",
    )
    db.add(pledge)
    db.flush()
    return pledge


@pytest.fixture
def pledged(db: Session, region: Region, stocked: None) -> None:
    """Active pledges to the regional pool at every member."""
    for facility, product, quantity in (
        (RAJAVITHI, AGRDT, 200),
        (CHIANG_MAI, AGRDT, 50),
        (MAHOSOT, AGRDT, 30),
        (TAN_TOCK_SENG, COMIRNATY, 400),
    ):
        _pledge(db, region, facility, product, quantity)


def _need(db: Session, region: Region, place: str, *, status: NeedStatus = NeedStatus.SUBMITTED) -> Need:
    """600 vials of Comirnaty at a facility (a code) or for a member (an ISO3), due in 2099."""
    facility = region.facilities.get(place)
    need = Need(
        jurisdiction=facility.jurisdiction if facility else region.members[place],
        facility=facility,
        product=region.products[COMIRNATY],
        quantity=600,
        urgency=Urgency.URGENT,
        needed_by=date(2099, 1, 31),
        justification="Dengue and COVID-19 co-circulation; booster campaign for health workers",
        population_served=12_000,
        status=status,
    )
    db.add(need)
    db.flush()
    return need


def _label(need: dict[str, Any]) -> str:
    """A need's place as the tables name it: its facility, or its member for a national need."""
    return str(need["facility"] or need["jurisdiction"])


def _username(role: str) -> str:
    return role.replace("_", ".")


# --- 1. stock ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_record_receipts_by_role_and_scope(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], role: str
) -> None:
    """A receipt at Rajavithi, Chiang Mai and Mahosot: recorded inside the scope; outside it 422
    naming `facility` and nothing written; without stock:write 403 and nothing written."""
    for facility in (RAJAVITHI, CHIANG_MAI, MAHOSOT):
        expected = _write_status(role, facility, 201)
        before = _stock_state(db)
        response = client.post("/api/v1/stock/events", json=_receipt(facility), headers=actors[role].headers)
        _expect(response, expected)
        if expected == 201:
            assert (response.json()["events"], response.json()["replayed"]) == (1, False)
            assert _on_hand(db, region, facility) == 500
            batch = db.get(IngestBatch, response.json()["batch_id"])
            assert batch is not None
            assert batch.recorded_by == actors[role].principal.user_id
            assert _count(db, StockEvent) == before[0] + 1
            continue
        if expected == 422:
            assert response.json()["errors"] == [
                {"field": "facility", "message": f"you may not record stock at {facility}", "line": 1}
            ]
        else:
            assert "stock:write" in response.json()["detail"]
        assert _stock_state(db) == before, facility
        assert _on_hand(db, region, facility) == 0


def test_a_batch_reaching_outside_the_scope_records_nothing(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor]
) -> None:
    """All or nothing: the one Lao line refuses fp_tha's whole batch, its Thai lines included."""
    before = _stock_state(db)
    events = [_receipt(RAJAVITHI), _receipt(CHIANG_MAI, quantity=80), _receipt(MAHOSOT, quantity=20)]
    response = client.post(
        "/api/v1/stock/events/batch", json={"events": events}, headers=actors["fp_tha"].headers
    )
    body = _problem(response, 422)
    assert body["errors"] == [
        {"field": "facility", "message": f"you may not record stock at {MAHOSOT}", "line": 3}
    ]
    assert _stock_state(db) == before
    assert _on_hand(db, region, RAJAVITHI) == 0


#: Filters naming another member's place, per caller: each answers 200 and no rows (the admin
#: gets rows for every one of them, so the emptiness is the scope, not the data).
FOREIGN_FILTERS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "fp_tha": [
        ("/api/v1/stock/balances", {"jurisdiction": "LAO"}),
        ("/api/v1/stock/lots", {"facility": MAHOSOT}),
        ("/api/v1/pledges", {"jurisdiction": "SGP"}),
        ("/api/v1/needs", {"jurisdiction": "LAO"}),
    ],
    "fp_lao": [
        ("/api/v1/stock/balances", {"facility": RAJAVITHI}),
        ("/api/v1/stock/events", {"jurisdiction": "THA"}),
        ("/api/v1/pledges", {"jurisdiction": "THA"}),
        ("/api/v1/needs", {"facility": RAJAVITHI}),
    ],
    "manager_tha": [
        ("/api/v1/stock/events", {"facility": CHIANG_MAI}),
        ("/api/v1/stock/lots", {"jurisdiction": "SGP"}),
        ("/api/v1/pledges", {"jurisdiction": "LAO"}),
        ("/api/v1/needs", {"facility": CHIANG_MAI}),
    ],
    "clinician_tha": [
        ("/api/v1/stock/balances", {"facility": CHIANG_MAI}),
        ("/api/v1/needs", {"jurisdiction": "SGP"}),
    ],
}


@pytest.mark.parametrize("role", ROLES)
def test_stock_and_pledge_reads_hold_exactly_the_callers_scope(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], pledged: None, role: str
) -> None:
    """Balances, lots, events and pledges: region-wide roles (and the researcher) see every
    member's rows, a focal point its member's facilities, a facility's roles that facility; and a
    filter naming another member's place never widens that."""
    headers = actors[role].headers
    visible = STOCK_SCOPE[role]
    hidden = set().union(*(LOTS[f] for f in ALL_FACILITIES - visible))
    for url in ("/api/v1/stock/balances", "/api/v1/stock/lots", "/api/v1/stock/events", "/api/v1/pledges"):
        response = client.get(url, params={"limit": 500}, headers=headers)
        assert response.status_code == 200, f"{url}: {response.text}"
        assert {row["facility"] for row in _items(response)} == visible, url
        for lot in hidden:
            assert lot not in response.text, url
    balances = _items(client.get("/api/v1/stock/balances", headers=headers))
    assert {row["jurisdiction"] for row in balances} == {code[:3] for code in visible}
    if RAJAVITHI in visible:
        rajavithi = {
            row["product"]: (row["on_hand"], row["pledged"], row["available"])
            for row in balances
            if row["facility"] == RAJAVITHI
        }
        assert rajavithi == {AGRDT: (460, 200, 260), COMIRNATY: (300, 0, 300)}

    for place in NEED_PLACES:
        _need(db, region, place)
    for url, params in FOREIGN_FILTERS.get(role, []):
        assert _items(client.get(url, params=params, headers=actors["admin"].headers)), (url, params)
        response = client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert _items(response) == [], (url, params)


# --- 2. pledges ----------------------------------------------------------------------------------

PLEDGE = {
    "facility": RAJAVITHI,
    "product": AGRDT,
    "quantity": 200,
    "valid_from": "2026-12-01",
    "valid_to": "2099-01-31",
    "note": "Surplus after the Songkran testing campaign",
}
#: Who may pledge Rajavithi's stock (pledge:write and THA in scope), and withdraw a THA pledge.
PLEDGE_STATUS: dict[str, tuple[int, int]] = {
    "admin": (201, 200),
    "fp_tha": (201, 200),
    "fp_lao": (403, 404),  # another member's pledge is not found
    "coordinator": (403, 403),
    "manager_tha": (403, 403),
    "clinician_tha": (403, 403),
    "researcher": (403, 403),
    "auditor": (403, 403),
}


@pytest.mark.parametrize("role", ROLES)
def test_pledge_and_withdraw_thai_stock_by_role(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], stocked: None, role: str
) -> None:
    create_status, withdraw_status = PLEDGE_STATUS[role]
    headers = actors[role].headers
    response = client.post("/api/v1/pledges", json=PLEDGE, headers=headers)
    _expect(response, create_status)
    [balance] = _items(
        client.get(
            "/api/v1/stock/balances",
            params={"facility": RAJAVITHI, "product": AGRDT},
            headers=actors["admin"].headers,
        )
    )
    if create_status == 201:
        assert (response.json()["jurisdiction"], response.json()["status"]) == ("THA", "active")
        pledge = db.scalar(select(Pledge))
        assert pledge is not None
        assert (pledge.quantity, pledge.created_by) == (200, actors[role].principal.user_id)
        assert (balance["pledged"], balance["available"]) == (200, 260)
    else:
        assert _count(db, Pledge) == 0
        assert (balance["pledged"], balance["available"]) == (0, 460)
        if role == "fp_lao":
            assert response.json()["detail"] == f"you may not pledge stock of {RAJAVITHI}"

    standing = _pledge(db, region, RAJAVITHI, COMIRNATY, 100).id
    response = client.post(f"/api/v1/pledges/{standing}/withdraw", headers=headers)
    _expect(response, withdraw_status)
    db.expire_all()
    pledge = db.get(Pledge, standing)
    assert pledge is not None
    if withdraw_status == 200:
        assert response.json()["status"] == "withdrawn"
        assert pledge.status is PledgeStatus.WITHDRAWN
    else:
        assert pledge.status is PledgeStatus.ACTIVE
        assert RAJAVITHI not in response.text


# --- 3. needs ------------------------------------------------------------------------------------


def _need_body(**place: str) -> dict[str, object]:
    return {
        **place,
        "product": COMIRNATY,
        "quantity": 600,
        "urgency": "emergency",
        "needed_by": "2099-01-31",
        "justification": "Dengue and COVID-19 co-circulation; booster campaign for health workers",
        "population_served": 12_000,
        "submit": True,
    }


@pytest.mark.parametrize("role", ROLES)
def test_raise_needs_by_role_and_scope(
    client: TestClient, db: Session, actors: dict[str, Actor], role: str
) -> None:
    """A need at Rajavithi, at Chiang Mai, and a national Thai one: raised inside the scope;
    outside it 403 naming the place, nothing written; without need:write (the coordinator,
    researcher and auditor) 403, nothing written."""
    scope = NEED_SCOPE[role] or frozenset()
    for place in (RAJAVITHI, CHIANG_MAI, "THA"):
        where = {"jurisdiction": place} if place == "THA" else {"facility": place}
        expected = 201 if role in NEED_WRITERS and place in scope else 403
        before = (_count(db, Need), _count(db, NeedTransition), _count(db, ChangeEvent))
        response = client.post("/api/v1/needs", json=_need_body(**where), headers=actors[role].headers)
        _expect(response, expected)
        if expected == 201:
            body = response.json()
            assert (body["jurisdiction"], body["facility"], body["status"]) == (
                "THA",
                where.get("facility"),
                "submitted",
            )
            assert [(h["to_status"], h["by"]) for h in body["history"]] == [
                ("draft", _username(role)),
                ("submitted", _username(role)),
            ]
            need = db.get(Need, body["id"])
            assert need is not None
            assert need.created_by == actors[role].principal.user_id
            assert _count(db, Need) == before[0] + 1
            continue
        if role in NEED_WRITERS:
            assert _fields(response) == set(where), place
        else:
            assert "need:write" in response.json()["detail"]
        assert (_count(db, Need), _count(db, NeedTransition), _count(db, ChangeEvent)) == before


#: Endorse and reject a submitted Rajavithi need: the member's focal point (and the admin) only;
#: another member's focal point does not find it.
ENDORSE_STATUS: dict[str, int] = {
    "admin": 200,
    "fp_tha": 200,
    "fp_lao": 404,
    "coordinator": 403,
    "manager_tha": 403,
    "clinician_tha": 403,
    "researcher": 403,
    "auditor": 403,
}
REASON = "Covered by the national stockpile this quarter"


@pytest.mark.parametrize("role", ROLES)
def test_endorse_and_reject_a_thai_need_by_role(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], role: str
) -> None:
    expected = ENDORSE_STATUS[role]
    endorsed_id, rejected_id = _need(db, region, RAJAVITHI).id, _need(db, region, RAJAVITHI).id
    before = (_count(db, NeedTransition), _count(db, ChangeEvent))
    headers = actors[role].headers
    endorse = client.post(f"/api/v1/needs/{endorsed_id}/endorse", headers=headers)
    reject = client.post(f"/api/v1/needs/{rejected_id}/reject", json={"reason": REASON}, headers=headers)
    _expect(endorse, expected)
    _expect(reject, expected)
    db.expire_all()
    endorsed, rejected = db.get(Need, endorsed_id), db.get(Need, rejected_id)
    assert endorsed is not None
    assert rejected is not None
    if expected == 200:
        assert endorse.json()["status"] == "open"
        assert (endorsed.status, endorsed.endorsed_by) == (NeedStatus.OPEN, actors[role].principal.user_id)
        assert (rejected.status, rejected.rejection_reason) == (NeedStatus.REJECTED, REASON)
        return
    for need in (endorsed, rejected):
        assert (need.status, need.endorsed_by, need.rejection_reason) == (NeedStatus.SUBMITTED, None, "")
    assert (_count(db, NeedTransition), _count(db, ChangeEvent)) == before
    for response in (endorse, reject):
        assert COMIRNATY not in response.text
        assert "history" not in response.json()


@pytest.mark.parametrize("role", ROLES)
def test_needs_are_listed_read_and_changed_only_within_scope(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], role: str
) -> None:
    """The listing holds exactly the caller's places; every other need is not found, by REST, as a
    FHIR SupplyRequest, and for edit and cancel (a draft, which the owner could change), and stays
    as it was; a role without need:read gets 403 everywhere."""
    ids = {place: _need(db, region, place, status=NeedStatus.DRAFT).id for place in NEED_PLACES}
    headers = actors[role].headers
    visible = NEED_SCOPE[role]
    listing = client.get("/api/v1/needs", params={"limit": 500}, headers=headers)
    if visible is None:
        assert "items" not in _problem(listing, 403)
    else:
        assert listing.status_code == 200, listing.text
        assert {_label(need) for need in _items(listing)} == visible
    for place, need_id in ids.items():
        expected = 403 if visible is None else 200 if place in visible else 404
        one = client.get(f"/api/v1/needs/{need_id}", headers=headers)
        fhir = client.get(f"/fhir/R5/SupplyRequest/{need_id}", headers=headers)
        _expect(one, expected)
        _expect(fhir, expected)
        if expected == 200:
            assert (one.json()["id"], _label(one.json())) == (need_id, place)
            assert fhir.headers["content-type"].startswith(FHIR_JSON)
            assert (fhir.json()["resourceType"], fhir.json()["id"]) == ("SupplyRequest", str(need_id))
            assert fhir.json()["deliverTo"]["identifier"]["value"] == place
            continue
        edit = client.patch(f"/api/v1/needs/{need_id}", json={"quantity": 9_999}, headers=headers)
        cancel = client.post(f"/api/v1/needs/{need_id}/cancel", headers=headers)
        for response in (one, fhir, edit, cancel):
            _expect(response, expected)
            assert COMIRNATY not in response.text, place
            assert not {"history", "resourceType", "quantity"} & set(response.json())
    db.expire_all()
    assert {(n.status, n.quantity) for n in db.scalars(select(Need))} == {(NeedStatus.DRAFT, 600)}


# --- 4. indicators and the shortage board --------------------------------------------------------

REGION_KEYS: dict[str, set[str] | None] = {
    "region": {"REGION"},
    "jurisdiction": {"THA", "LAO", "SGP"},
    "facility": set(ALL_FACILITIES | {DEPOT}),
}
#: The indicator rows' keys each caller gets, per level; None: refused (403).
INDICATOR_KEYS: dict[str, dict[str, set[str] | None]] = {
    "admin": REGION_KEYS,
    "coordinator": REGION_KEYS,
    "auditor": REGION_KEYS,
    "researcher": REGION_KEYS,
    "fp_tha": {"region": None, "jurisdiction": {"THA"}, "facility": {RAJAVITHI, CHIANG_MAI, DEPOT}},
    "fp_lao": {"region": None, "jurisdiction": {"LAO"}, "facility": {MAHOSOT}},
    "manager_tha": {"region": None, "jurisdiction": None, "facility": {RAJAVITHI}},
    "clinician_tha": {"region": None, "jurisdiction": None, "facility": {RAJAVITHI}},
}
#: The members on each caller's shortage board (the open Ag-RDT needs of `_world`); None: 403.
SHORTAGE_MEMBERS: dict[str, set[str] | None] = {
    "admin": {"THA", "LAO", "SGP"},
    "coordinator": {"THA", "LAO", "SGP"},
    "auditor": {"THA", "LAO", "SGP"},
    "researcher": {"THA", "LAO", "SGP"},
    "fp_tha": {"THA"},
    "fp_lao": {"LAO"},
    "manager_tha": None,
    "clinician_tha": None,
}
OUTSTANDING = {"THA": 500, "LAO": 500, "SGP": 200}


@pytest.mark.parametrize("role", ROLES)
def test_indicators_and_shortage_board_by_role(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], stocked: None, role: str
) -> None:
    """Region-wide indicators only for region-wide roles, member-wide ones not for a facility's
    roles, every level summed over the caller's scope only; the shortage board for member- and
    region-wide roles, each seeing its own members' rows."""
    _world(db, region)  # 600 Ag-RDTs at the reserve depot; open needs in THA, LAO, SGP
    headers = actors[role].headers
    for level, keys in INDICATOR_KEYS[role].items():
        params = {"level": level, "date": DAY.isoformat()}
        response = client.get("/api/v1/indicators", params=params, headers=headers)
        if keys is None:
            _problem(response, 403)
            assert "on_hand" not in response.text
            continue
        assert response.status_code == 200, response.text
        rows = response.json()
        assert {row["key"] for row in rows} == keys, level
        if level == "region":
            assert {row["product"]: row["on_hand"] for row in rows} == {AGRDT: 1260, COMIRNATY: 1200}
            assert next(row for row in rows if row["product"] == AGRDT)["issued_in_window"] == 40
        if level == "jurisdiction" and keys == {"THA"}:
            assert {row["product"]: row["on_hand"] for row in rows} == {AGRDT: 1180, COMIRNATY: 300}

    response = client.get("/api/v1/shortages", params={"date": DAY.isoformat()}, headers=headers)
    members = SHORTAGE_MEMBERS[role]
    if members is None:
        assert "shortage board" in _problem(response, 403)["detail"]
        return
    assert response.status_code == 200, response.text
    rows = response.json()
    assert {(row["product"], row["jurisdiction"]) for row in rows} == {(AGRDT, m) for m in members}
    assert {row["jurisdiction"]: row["outstanding_requests"] for row in rows} == {
        member: OUTSTANDING[member] for member in members
    }


# --- 5. the change stream ------------------------------------------------------------------------

#: One actor per role (the two focal points share one).
STREAM_ROLES = tuple(role for role in ROLES if role != "fp_lao")


@pytest.mark.parametrize("role", STREAM_ROLES)
def test_every_role_with_stock_read_may_subscribe_to_the_stream(
    client: TestClient, actors: dict[str, Actor], role: str
) -> None:
    """The stream needs stock:read, which access.py gives every role (so no role gets its 403; the
    anonymous 401 is tested below, and what each subscriber receives in test_stream.py)."""
    with client.stream(
        "GET",
        "/api/v1/stream",
        params={"after": 0, "max_seconds": 0.2, "poll_seconds": 0.05},
        headers=actors[role].headers,
    ) as response:
        response.read()
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.startswith("retry: 2000\nid: 0\n\n")


# --- 6. FHIR InventoryReport ---------------------------------------------------------------------


def _lot_numbers(report: dict[str, Any]) -> set[str]:
    return {item["instance"]["lotNumber"] for item in report.get("contained", [])}


@pytest.mark.parametrize("role", ROLES)
def test_inventory_reports_are_exported_and_imported_only_within_scope(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], stocked: None, role: str
) -> None:
    """Export: a facility in the caller's scope, else 404 showing none of its lots. Import (a stock
    count): inside the scope recorded; outside 422 at the report's location; without stock:write
    403; refused imports write nothing."""
    headers = actors[role].headers
    for facility in (RAJAVITHI, CHIANG_MAI, MAHOSOT):
        response = client.get(
            "/fhir/R5/InventoryReport",
            params={"facility": facility, "countType": "snapshot"},
            headers=headers,
        )
        if facility in STOCK_SCOPE[role]:
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(FHIR_JSON)
            assert _lot_numbers(response.json()) == LOTS[facility]
        else:
            _problem(response, 404)
            assert not any(lot in response.text for lot in LOTS[facility])

    for facility, lot, on_hand in ((RAJAVITHI, "AG2611A", 460), (MAHOSOT, "LA-AG-0042", 80)):
        expected = _write_status(role, facility, 201)
        before = _stock_state(db)
        response = client.post(
            "/fhir/R5/InventoryReport", json=_stock_count(facility, lot, 75), headers=headers
        )
        _expect(response, expected)
        if expected == 201:
            assert (response.json()["events"], response.json()["replayed"]) == (1, False)
            assert _on_hand(db, region, facility) == 75
            continue
        if expected == 422:
            assert _fields(response) == {"inventoryListing[0].location"}
        assert _stock_state(db) == before
        assert _on_hand(db, region, facility) == on_hand


# --- 7. allocation -------------------------------------------------------------------------------

RUNNERS = frozenset({"admin", "coordinator"})
#: The members whose needs' results each caller sees in a plan; None: no allocation:read (403).
PLAN_MEMBERS: dict[str, set[str] | None] = {
    "admin": {"THA", "LAO", "SGP"},
    "coordinator": {"THA", "LAO", "SGP"},
    "auditor": {"THA", "LAO", "SGP"},
    "fp_tha": {"THA"},
    "fp_lao": {"LAO"},
    "manager_tha": None,
    "clinician_tha": None,
    "researcher": None,
}


@pytest.fixture
def plan_id(db: Session, region: Region, actors: dict[str, Actor]) -> int:
    """A proposed equity plan over `_world`: the depot's 600 Ag-RDTs, 300 each to Thailand and Lao
    PDR; Singapore's need is not eligible and gets nothing."""
    _world(db, region)
    plan = allocation.create_plan(db, actors["coordinator"].principal, "equity", DAY)
    db.flush()
    return plan.id


def _need_ids(db: Session) -> dict[str, int]:
    return {need.jurisdiction.iso3: need.id for need in db.scalars(select(Need))}


def _reserved(db: Session) -> int:
    db.expire_all()
    return db.scalar(select(func.coalesce(func.sum(LotBalance.reserved), 0))) or 0


@pytest.mark.parametrize("role", ROLES)
def test_run_compare_and_snapshot_are_for_the_coordinators(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], role: str
) -> None:
    _world(db, region)
    headers = actors[role].headers
    day = {"day": DAY.isoformat()}
    run = client.post("/api/v1/allocation/plans", json={"policy": "equity", **day}, headers=headers)
    compare = client.post(
        "/api/v1/allocation/compare", json={"policies": ["equity", "pro_rata"], **day}, headers=headers
    )
    snapshot = client.get("/api/v1/allocation/snapshot", params=day, headers=headers)
    if role not in RUNNERS:
        for response in (run, compare, snapshot):
            assert "allocation:run" in _problem(response, 403)["detail"]
        assert _count(db, AllocationPlan) == 0
        return
    assert run.status_code == 201, run.text
    assert (run.json()["status"], run.json()["allocated_units"]) == ("proposed", 600)
    assert _count(db, AllocationPlan) == 1
    assert compare.status_code == 200, compare.text
    assert [row["policy"] for row in compare.json()] == ["equity", "pro_rata"]
    assert snapshot.status_code == 200, snapshot.text
    assert snapshot.headers["etag"] == run.json()["snapshot_digest"]


@pytest.mark.parametrize("role", ROLES)
def test_a_plan_and_its_explanations_show_each_caller_only_its_members_needs(
    client: TestClient, db: Session, actors: dict[str, Actor], plan_id: int, role: str
) -> None:
    headers = actors[role].headers
    members = PLAN_MEMBERS[role]
    ids = _need_ids(db)
    response = client.get(f"/api/v1/allocation/plans/{plan_id}", headers=headers)
    if members is None:
        assert "results" not in _problem(response, 403)
    else:
        assert response.status_code == 200, response.text
        plan = response.json()
        results = {r["need_id"] for r in plan["results"]}
        lines = {line["need_id"] for line in plan["lines"]}
        assert results == {ids[m] for m in members}
        assert lines == {ids[m] for m in members - {"SGP"}}  # Singapore's need got nothing
        assert not {ids[m] for m in ids.keys() - members} & (results | lines)
        assert sum(line["quantity"] for line in plan["lines"]) == 300 * len(members - {"SGP"})
    for member, need_id in ids.items():
        expected = 403 if members is None else 200 if member in members else 404
        explained = client.get(f"/api/v1/allocation/needs/{need_id}/explanations", headers=headers)
        _expect(explained, expected)
        if expected == 200:
            [result] = explained.json()
            assert (result["need_id"], result["allocated"]) == (need_id, 0 if member == "SGP" else 300)
            assert result["explanation"]
        else:
            assert "allocated" not in explained.text


@pytest.mark.parametrize(
    ("action", "role", "expected"),
    [
        pytest.param("approve", "admin", 200, id="approve-admin"),
        pytest.param("approve", "coordinator", 200, id="approve-coordinator"),
        pytest.param("approve", "fp_tha", 403, id="approve-fp_tha"),
        pytest.param("approve", "auditor", 403, id="approve-auditor"),
        pytest.param("reject", "coordinator", 200, id="reject-coordinator"),
        pytest.param("reject", "fp_tha", 403, id="reject-fp_tha"),
    ],
)
def test_decide_a_plan_by_role(
    client: TestClient,
    db: Session,
    actors: dict[str, Actor],
    plan_id: int,
    action: str,
    role: str,
    expected: int,
) -> None:
    note = "Equity round for the dengue season"
    response = client.post(
        f"/api/v1/allocation/plans/{plan_id}/{action}", json={"note": note}, headers=actors[role].headers
    )
    _expect(response, expected)
    db.expire_all()
    plan = db.get(AllocationPlan, plan_id)
    assert plan is not None
    allocated = sorted(need.quantity_allocated for need in db.scalars(select(Need)))
    if expected == 200 and action == "approve":
        assert (plan.status, plan.decided_by) == (PlanStatus.APPROVED, actors[role].principal.user_id)
        assert _reserved(db) == 600
        assert allocated == [0, 300, 300]
    elif expected == 200:
        assert (plan.status, plan.decision_note) == (PlanStatus.REJECTED, note)
        assert _reserved(db) == 0
        assert allocated == [0, 0, 0]
    else:
        assert "allocation:approve" in response.json()["detail"]
        assert (plan.status, plan.decided_at, plan.decided_by) == (PlanStatus.PROPOSED, None, None)
        assert _reserved(db) == 0
        assert allocated == [0, 0, 0]


# --- unauthenticated -----------------------------------------------------------------------------

UNAUTHENTICATED: dict[str, list[tuple[str, str, dict[str, Any] | None]]] = {
    "supply": [
        ("GET", "/api/v1/stock/balances", None),
        ("GET", "/api/v1/stock/lots", None),
        ("GET", "/api/v1/stock/events", None),
        ("POST", "/api/v1/stock/events", _receipt()),
        ("GET", "/api/v1/pledges", None),
        ("POST", "/api/v1/pledges", PLEDGE),
        ("GET", "/api/v1/indicators", None),
        ("GET", "/api/v1/shortages", None),
        ("GET", "/api/v1/stream?max_seconds=0.2&poll_seconds=0.05&after=0", None),
    ],
    "needs-and-fhir": [
        ("GET", "/api/v1/needs", None),
        ("POST", "/api/v1/needs", _need_body(facility=RAJAVITHI)),
        ("GET", f"/fhir/R5/InventoryReport?facility={RAJAVITHI}&countType=snapshot", None),
        ("POST", "/fhir/R5/InventoryReport", _stock_count(RAJAVITHI, "AG2611A", 448)),
        ("GET", "/fhir/R5/SupplyRequest", None),
    ],
    "allocation": [
        ("GET", "/api/v1/allocation/plans", None),
        ("POST", "/api/v1/allocation/plans", {"policy": "equity"}),
        ("GET", "/api/v1/allocation/snapshot", None),
    ],
}


@pytest.mark.parametrize("area", UNAUTHENTICATED)
def test_unauthenticated_is_a_401_problem_and_writes_nothing(
    client: TestClient, db: Session, region: Region, area: str
) -> None:
    before = (_stock_state(db), _count(db, Pledge), _count(db, Need), _count(db, AllocationPlan))
    for method, url, body in UNAUTHENTICATED[area]:
        response = client.request(method, url, json=body)
        problem = _problem(response, 401)
        assert problem["type"] == "urn:healthmesh:problem:unauthenticated", url
        assert response.headers["www-authenticate"] == "Bearer"
        assert "items" not in problem
    assert (_stock_state(db), _count(db, Pledge), _count(db, Need), _count(db, AllocationPlan)) == before


# --- known bugs ----------------------------------------------------------------------------------


def _thai_receipt(client: TestClient, route: str, actor: Actor) -> Response:
    """The very write fp_tha makes for Rajavithi, by REST (with an Idempotency-Key), as a CSV file
    (keyed by its digest) or as a FHIR stock count (keyed by its identifier), sent by `actor`."""
    response: Response
    if route == "rest":
        response = client.post(
            "/api/v1/stock/events",
            json=_receipt(),
            headers={**actor.headers, "Idempotency-Key": "rjv-grn-2026-0117"},
        )
    elif route == "csv":
        text = (
            "facility,product,lot_number,expiry_date,kind,quantity,occurred_at,reference\n"
            f"{RAJAVITHI},{AGRDT},AG2612R,2027-12-31,receipt,500,2026-11-28,GRN-RJV-2026-0117\n"
        )
        response = client.post(
            "/api/v1/stock/events/import",
            files={"file": ("rajavithi.csv", text, "text/csv")},
            headers=actor.headers,
        )
    else:
        response = client.post(
            "/fhir/R5/InventoryReport", json=_stock_count(RAJAVITHI, "AG2612R", 500), headers=actor.headers
        )
    return response


@pytest.mark.parametrize("route", ["rest", "csv", "fhir"])
def test_replaying_another_members_stock_write_is_refused(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], route: str
) -> None:
    first = _thai_receipt(client, route, actors["fp_tha"])
    assert first.status_code == 201, first.text
    before = _stock_state(db)
    response = _thai_receipt(client, route, actors["fp_lao"])
    assert _stock_state(db) == before  # holds today: nothing is written twice
    assert response.status_code == 422, response.text
    assert "batch_id" not in response.json()
