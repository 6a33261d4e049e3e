"""How the access matrix calls each route: the request (path parameters from the seeded world,
a valid body, so that only access decides the outcome), the status of success, and for scoped
reads what the answer shows: the places (member, facility) of its rows.

A builder gets the world, the caller's name and the target (a facility code, a member's ISO3,
"own"/"other", or None for a route that touches no one member's data).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import Response

from tests.access_world import (
    AGRDT,
    CHIANG_MAI,
    MAHOSOT,
    NURSES,
    PLACES,
    PLEDGED,
    RAJAVITHI,
    Identity,
    Place,
    World,
    logger_csv,
)
from tests.conftest import TEST_PASSWORD
from tests.test_access_roles import DEXAMETHASONE, VIET_NAM

Files = dict[str, tuple[str, bytes, str]]


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    ok: int = 200
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    files: Files | None = None
    #: The places of the rows the answer shows (checked against the caller's scope).
    shows: Callable[[Response, World], set[Place]] | None = None
    #: Another check of an allowed answer's content.
    verify: Callable[[Response, World, str], None] | None = None


Builder = Callable[[World, str, str | None], Call]


def member(target: str | None) -> str:
    """The member of a target (a facility code or an ISO3)."""
    assert target is not None
    return PLACES.get(target, target)


def facility_of(target: str | None) -> str:
    """The facility a member-level target stands for: the member's first seeded facility."""
    assert target is not None
    return target if target in PLACES else next(code for code, iso3 in PLACES.items() if iso3 == target)


def _csv(*lines: str) -> Files:
    return {"file": ("upload.csv", ("\n".join(lines) + "\n").encode(), "text/csv")}


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


def _day(world: World, days: int) -> str:
    return (world.today + timedelta(days=days)).isoformat()


# --- what an answer shows ------------------------------------------------------------------------


def _items(response: Response) -> list[dict[str, Any]]:
    body = response.json()
    items: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return items


def _facility_rows(key: str) -> Callable[[Response, World], set[Place]]:
    return lambda response, world: {(_member_of(world, row[key]), row[key]) for row in _items(response)}


def _member_of(world: World, code: str) -> str:
    return world.facility_members[code]


def _member_rows(key: str) -> Callable[[Response, World], set[Place]]:
    return lambda response, world: {(row[key], None) for row in _items(response)}


def facility_indicators(response: Response, world: World) -> set[Place]:
    """Indicators at level=facility: one row per facility and product, keyed by the facility."""
    return {(_member_of(world, row["key"]), row["key"]) for row in _items(response)}


def _need_rows(response: Response, world: World) -> set[Place]:
    return {world.need_places[row["id"]] for row in _items(response)}


def _user_rows(response: Response, world: World) -> set[Place]:
    return {world.user_places[row["username"]] for row in _items(response)}


def _bundle_needs(response: Response, world: World) -> set[Place]:
    return {world.need_places[int(entry["resource"]["id"])] for entry in response.json().get("entry", [])}


def _plan_rows(response: Response, world: World) -> set[Place]:
    """A plan's results and lines, by member."""
    iso3 = {jid: code for code, jid in world.member_ids.items()}
    body = response.json()
    results = {(iso3[row["jurisdiction_id"]], None) for row in body["results"]}
    lines = {(world.need_places[row["need_id"]][0], None) for row in body["lines"]}
    return results | lines


def _destinations(response: Response, world: World) -> set[Place]:
    return {(PLACES[row["destination"]], row["destination"]) for row in _items(response)}


def _map_destinations(response: Response, world: World) -> set[Place]:
    codes = [feature["properties"]["destination"] for feature in response.json()["features"]]
    return {(PLACES[code], code) for code in codes}


def _stream_rows(response: Response, world: World) -> set[Place]:
    """The places of the stream's frames: stock changes by facility, need changes by need."""
    codes = {fid: code for code, fid in world.facility_ids.items()}
    out: set[Place] = set()
    for topic, data in re.findall(r"^event: (\w+)\ndata: (.*)$", response.text, flags=re.MULTILINE):
        payload = json.loads(data)
        if topic == "stock":
            code = codes[payload["facility_id"]]
            out.add((_member_of(world, code), code))
        elif topic == "need":
            out.add(world.need_places[payload["need_id"]])
        else:  # a snapshot taken: the region's, no member's nor facility's
            assert topic == "snapshot", topic
            out.add((None, None))
    return out


def decode_sum(total: int, parts: dict[Place, int]) -> set[Place]:
    """The one set of places whose amounts add up to `total` (seeded so that it is unique)."""
    found = [
        set(combo)
        for size in range(len(parts) + 1)
        for combo in itertools.combinations(parts, size)
        if sum(parts[p] for p in combo) == total
    ]
    assert len(found) == 1, f"{total} is not one sum of {parts}"
    return found[0]


def _pledged(response: Response, world: World) -> set[Place]:
    [row] = response.json()
    parts: dict[Place, int] = {(iso3, facility_of(iso3)): units for iso3, units in PLEDGED.items()}
    return decode_sum(row["pledged"], parts)


def _trend(response: Response, world: World) -> set[Place]:
    points = response.json()
    if not points:
        return set()
    [point] = points
    parts: dict[Place, int] = {
        (_member_of(world, code), code): units for code, units in world.snapshot_on_hand.items()
    }
    return decode_sum(point["on_hand"], parts)


def _html_facilities(response: Response, world: World) -> set[Place]:
    return {(PLACES[code], code) for code in PLACES if code in response.text}


def _html_users(response: Response, world: World) -> set[Place]:
    return {place for name, place in world.user_places.items() if "." in name and name in response.text}


def _me(response: Response, world: World, caller: str) -> None:
    assert response.json()["username"] == world.identities[caller].principal.username


def _my_tokens(response: Response, world: World, caller: str) -> None:
    assert [token["id"] for token in response.json()] == [world.identities[caller].token_id]


def _delivery_lines(response: Response, world: World, caller: str) -> None:
    assert response.json()["total"] == 1, response.text


# --- bodies --------------------------------------------------------------------------------------

#: The seeded facilities as a facilities CSV line (`code,jurisdiction,kind,name,...`), with new ICU beds.
FACILITY_LINES = {
    RAJAVITHI: "THA-HO-0001,THA,hospital,Rajavithi Hospital,13.765,100.537,Asia/Bangkok,true,64",
    CHIANG_MAI: "THA-HO-0002,THA,hospital,Chiang Mai General Hospital,18.79,98.98,Asia/Bangkok,true,24",
    MAHOSOT: "LAO-HO-0001,LAO,hospital,Mahosot Hospital,17.96,102.61,Asia/Vientiane,true,16",
}
NEW_FACILITIES = {
    "THA": {
        "code": "THA-HO-0100",
        "name": "Siriraj Hospital",
        "lat": 13.759,
        "lon": 100.485,
        "tz": "Asia/Bangkok",
    },
    "LAO": {
        "code": "LAO-HO-0100",
        "name": "Setthathirath Hospital",
        "lat": 18.0,
        "lon": 102.63,
        "tz": "Asia/Vientiane",
    },
}


def _issue(target: str | None) -> dict[str, Any]:
    code = facility_of(target)
    return {"facility": code, "product": AGRDT, "lot_number": f"{code}-AG", "kind": "issue", "quantity": 5}


def _need(world: World, target: str | None) -> dict[str, Any]:
    return {
        "facility": facility_of(target),
        "product": AGRDT,
        "quantity": 50,
        "urgency": "urgent",
        "needed_by": _day(world, 30),
        "justification": "Fever clinic testing during the dengue season",
    }


def _count_report(target: str | None) -> dict[str, Any]:
    """A stock count of the facility's own lot (390 kits), as an LMIS sends it."""
    code = facility_of(target)
    item = {
        "resourceType": "InventoryItem",
        "id": "kit",
        "status": "active",
        "code": [{"coding": [{"system": "urn:healthmesh:product", "code": AGRDT}]}],
        "instance": {"lotNumber": f"{code}-AG", "expiry": "2028-06-30"},
    }
    counted = datetime.now(UTC) - timedelta(minutes=5)
    return {
        "resourceType": "InventoryReport",
        "status": "active",
        "countType": "snapshot",
        "reportedDateTime": counted.isoformat(),
        "contained": [item],
        "inventoryListing": [
            {
                "location": {"identifier": {"system": "urn:healthmesh:facility", "value": code}},
                "countingDateTime": counted.isoformat(),
                "item": [{"item": {"reference": {"reference": "#kit"}}, "quantity": {"value": 140}}],
            }
        ],
    }


def _supply_request(world: World, target: str | None) -> dict[str, Any]:
    return {
        "resourceType": "SupplyRequest",
        "identifier": [{"system": "https://lmis.example.org/requisition", "value": f"REQ-{target}"}],
        "status": "active",
        "priority": "urgent",
        "item": {"concept": {"coding": [{"system": "urn:healthmesh:product", "code": AGRDT}]}},
        "quantity": {"value": 40},
        "occurrenceDateTime": _day(world, 30),
        "deliverTo": {"identifier": {"system": "urn:healthmesh:facility", "value": facility_of(target)}},
    }


def _receipt(world: World, shipment_id: int) -> dict[str, Any]:
    lines = [{"line_id": line, "accepted": quantity} for line, quantity in world.shipment_lines[shipment_id]]
    return {"lines": lines, "receiver": "Pharmacy store keeper", "place": "Central store"}


MUTUAL_AID = {
    "demand": [
        {"member": "North", "date": "2026-01-01", "units": 4},
        {"member": "South", "date": "2026-01-01", "units": 16},
    ],
    "supply": [{"member": "North", "units": 20}, {"member": "South", "units": 2}],
    "distances": [{"from": "North", "to": "South", "distance": 270}],
}


# --- the calls -----------------------------------------------------------------------------------


def _caller(world: World, caller: str) -> Identity:
    """The caller's identity (anonymous borrows the administrator's records, to be refused)."""
    return world.identities.get(caller, world.identities["admin"])


def _get(url: str, **params: Any) -> Builder:
    return lambda world, caller, target: Call("GET", url, params=params)


def _road(world: World, target: str | None) -> int:
    return world.shipments["road"][facility_of(target)]


def _held(world: World, target: str | None) -> int:
    return world.shipments["held"][facility_of(target)]


def _road_line(world: World, target: str | None) -> str:
    shipment = _road(world, target)
    return f"shp-{shipment}-{world.shipment_lines[shipment][0][0]}"


CALLS: dict[str, Builder] = {
    # accounts
    "POST /api/v1/auth/login": lambda w, c, t: Call(
        "POST", "/api/v1/auth/login", json={"username": NURSES["THA"], "password": TEST_PASSWORD}
    ),
    "POST /api/v1/auth/logout": lambda w, c, t: Call("POST", "/api/v1/auth/logout", ok=204),
    "GET /api/v1/me": lambda w, c, t: Call("GET", "/api/v1/me", verify=_me),
    "GET /api/v1/me/tokens": lambda w, c, t: Call("GET", "/api/v1/me/tokens", verify=_my_tokens),
    "POST /api/v1/me/tokens": lambda w, c, t: Call(
        "POST", "/api/v1/me/tokens", ok=201, json={"name": "laptop"}
    ),
    "POST /api/v1/me/password": lambda w, c, t: Call(
        "POST",
        "/api/v1/me/password",
        ok=204,
        json={"current_password": TEST_PASSWORD, "new_password": "Irrawaddy-dolphin-2026"},
    ),
    "DELETE /api/v1/tokens/{token_id}": lambda w, c, t: Call(
        "DELETE", f"/api/v1/tokens/{_caller(w, c).token_id if t == 'own' else w.nurse_token_id}"
    ),
    "GET /api/v1/users/{username}/tokens": lambda w, c, t: Call(
        "GET", f"/api/v1/users/{_caller(w, c).principal.username if t == 'own' else NURSES['THA']}/tokens"
    ),
    "DELETE /api/v1/users/{username}/sessions": lambda w, c, t: Call(
        "DELETE",
        f"/api/v1/users/{_caller(w, c).principal.username if t == 'own' else NURSES[member(t)]}/sessions",
    ),
    "GET /api/v1/users": lambda w, c, t: Call("GET", "/api/v1/users", shows=_user_rows),
    "GET /api/v1/users/{username}": lambda w, c, t: Call("GET", f"/api/v1/users/{NURSES[member(t)]}"),
    "POST /api/v1/users": lambda w, c, t: Call(
        "POST",
        "/api/v1/users",
        ok=201,
        json={
            "username": f"pharmacist.{member(t).lower()}",
            "password": "Mekong-river-delta-2024",
            "full_name": "Hospital pharmacist",
            "role": "clinician",
            "jurisdiction": member(t),
            "facility": facility_of(t),
        },
    ),
    "PATCH /api/v1/users/{username}": lambda w, c, t: Call(
        "PATCH", f"/api/v1/users/{NURSES[member(t)]}", json={"full_name": "Ward 5 charge nurse"}
    ),
    "GET /api/v1/audit/login-attempts": _get("/api/v1/audit/login-attempts"),
    # registry: CSV
    **{
        f"GET /api/v1/{kind}/export.csv": _get(f"/api/v1/{kind}/export.csv")
        for kind in ("jurisdictions", "facilities", "products", "authorisations", "recognitions")
    },
    **{
        f"GET /api/v1/{kind}/template.csv": _get(f"/api/v1/{kind}/template.csv")
        for kind in ("jurisdictions", "facilities", "products", "authorisations", "recognitions")
    },
    "POST /api/v1/jurisdictions/import": lambda w, c, t: Call(
        "POST",
        "/api/v1/jurisdictions/import",
        files=_csv(
            "iso3,name,blocs,income_group,population,time_zones,capital",
            "VNM,Viet Nam,ASEAN,lower_middle,98858950,Asia/Ho_Chi_Minh,Hanoi",
        ),
    ),
    "POST /api/v1/facilities/import": lambda w, c, t: Call(
        "POST",
        "/api/v1/facilities/import",
        files=_csv(
            "code,jurisdiction,kind,name,latitude,longitude,time_zone,cold_chain_2_8,icu_beds",
            FACILITY_LINES[facility_of(t)],
        ),
    ),
    "POST /api/v1/products/import": lambda w, c, t: Call(
        "POST",
        "/api/v1/products/import",
        files=_csv(
            ",".join(DEXAMETHASONE),
            _csv_line(list(DEXAMETHASONE.values())),
        ),
    ),
    "POST /api/v1/authorisations/import": lambda w, c, t: Call(
        "POST",
        "/api/v1/authorisations/import",
        files=_csv(
            "product,jurisdiction,status,pathway,reference,valid_from",
            f"BME-VENT-ICU,{member(t)},authorised,abridged,MD-2024-0312,2024-03-01",
        ),
    ),
    "POST /api/v1/recognitions/import": lambda w, c, t: Call(
        "POST",
        "/api/v1/recognitions/import",
        files=_csv(
            "jurisdiction,recognised_authority,valid_from,categories,note",
            f"{member(t)},WHO-PQ,2024-01-01,vaccine;medicine,Abridged review of prequalified products",
        ),
    ),
    # registry
    "GET /api/v1/jurisdictions": _get("/api/v1/jurisdictions"),
    "GET /api/v1/jurisdictions/{iso3}": _get("/api/v1/jurisdictions/LAO"),
    "POST /api/v1/jurisdictions": lambda w, c, t: Call(
        "POST", "/api/v1/jurisdictions", ok=201, json=VIET_NAM
    ),
    "PATCH /api/v1/jurisdictions/{iso3}": lambda w, c, t: Call(
        "PATCH", "/api/v1/jurisdictions/LAO", json={"population": 7_953_556}
    ),
    "GET /api/v1/facilities": _get("/api/v1/facilities"),
    "GET /api/v1/facilities/{code}": _get(f"/api/v1/facilities/{MAHOSOT}"),
    "POST /api/v1/facilities": lambda w, c, t: Call(
        "POST",
        "/api/v1/facilities",
        ok=201,
        json={
            "code": NEW_FACILITIES[member(t)]["code"],
            "jurisdiction": member(t),
            "kind": "hospital",
            "name": NEW_FACILITIES[member(t)]["name"],
            "latitude": NEW_FACILITIES[member(t)]["lat"],
            "longitude": NEW_FACILITIES[member(t)]["lon"],
            "time_zone": NEW_FACILITIES[member(t)]["tz"],
        },
    ),
    "PATCH /api/v1/facilities/{code}": lambda w, c, t: Call(
        "PATCH", f"/api/v1/facilities/{facility_of(t)}", json={"icu_beds": 75}
    ),
    "GET /api/v1/products": _get("/api/v1/products"),
    "GET /api/v1/products/{code}": _get("/api/v1/products/VAC-COMIRNATY"),
    "POST /api/v1/products": lambda w, c, t: Call("POST", "/api/v1/products", ok=201, json=DEXAMETHASONE),
    "PATCH /api/v1/products/{code}": lambda w, c, t: Call(
        "PATCH", "/api/v1/products/VAC-COMIRNATY", json={"shelf_life_days": 540}
    ),
    "GET /api/v1/authorisations": _get("/api/v1/authorisations"),
    "PUT /api/v1/authorisations": lambda w, c, t: Call(
        "PUT",
        "/api/v1/authorisations",
        json={
            "product": "BME-VENT-ICU",
            "jurisdiction": member(t),
            "status": "authorised",
            "pathway": "abridged",
            "reference": "MD-2024-0312",
            "valid_from": "2024-03-01",
        },
    ),
    "GET /api/v1/recognitions": _get("/api/v1/recognitions"),
    "PUT /api/v1/recognitions": lambda w, c, t: Call(
        "PUT",
        "/api/v1/recognitions",
        json={
            "jurisdiction": member(t),
            "recognised_authority": "WHO-PQ",
            "categories": ["vaccine", "medicine"],
            "valid_from": "2024-01-01",
        },
    ),
    "GET /api/v1/eligibility": _get(
        "/api/v1/eligibility", product="VAC-COMIRNATY", jurisdiction="LAO", date="2022-01-01"
    ),
    # supply
    "POST /api/v1/stock/events": lambda w, c, t: Call("POST", "/api/v1/stock/events", ok=201, json=_issue(t)),
    "POST /api/v1/stock/events/batch": lambda w, c, t: Call(
        "POST", "/api/v1/stock/events/batch", ok=201, json={"events": [_issue(t)]}
    ),
    "POST /api/v1/stock/events/import": lambda w, c, t: Call(
        "POST",
        "/api/v1/stock/events/import",
        ok=201,
        files=_csv("facility,product,lot_number,kind,quantity", ",".join(str(v) for v in _issue(t).values())),
    ),
    "GET /api/v1/stock/events/template.csv": _get("/api/v1/stock/events/template.csv"),
    "GET /api/v1/stock/events": lambda w, c, t: Call(
        "GET", "/api/v1/stock/events", shows=_facility_rows("facility")
    ),
    "GET /api/v1/stock/balances": lambda w, c, t: Call(
        "GET", "/api/v1/stock/balances", shows=_facility_rows("facility")
    ),
    "GET /api/v1/stock/lots": lambda w, c, t: Call(
        "GET", "/api/v1/stock/lots", shows=_facility_rows("facility")
    ),
    "POST /api/v1/pledges": lambda w, c, t: Call(
        "POST",
        "/api/v1/pledges",
        ok=201,
        json={
            "facility": facility_of(t),
            "product": AGRDT,
            "quantity": 25,
            "valid_from": _day(w, 0),
            "valid_to": _day(w, 60),
        },
    ),
    "GET /api/v1/pledges": lambda w, c, t: Call("GET", "/api/v1/pledges", shows=_facility_rows("facility")),
    "POST /api/v1/pledges/{pledge_id}/withdraw": lambda w, c, t: Call(
        "POST", f"/api/v1/pledges/{w.pledges[member(t)]}/withdraw"
    ),
    "GET /api/v1/indicators": lambda w, c, t: Call("GET", "/api/v1/indicators", shows=_member_rows("key")),
    "GET /api/v1/shortages": lambda w, c, t: Call(
        "GET", "/api/v1/shortages", shows=_member_rows("jurisdiction")
    ),
    "GET /api/v1/stock/shareable": lambda w, c, t: Call("GET", "/api/v1/stock/shareable", shows=_pledged),
    "GET /api/v1/stock/trends": lambda w, c, t: Call(
        "GET", "/api/v1/stock/trends", params={"product": AGRDT, "days": 1}, shows=_trend
    ),
    # needs
    "POST /api/v1/needs": lambda w, c, t: Call("POST", "/api/v1/needs", ok=201, json=_need(w, t)),
    "POST /api/v1/needs/import": lambda w, c, t: Call(
        "POST",
        "/api/v1/needs/import",
        ok=201,
        files=_csv(
            "facility,product,quantity,urgency,needed_by", f"{facility_of(t)},{AGRDT},50,urgent,{_day(w, 30)}"
        ),
    ),
    "GET /api/v1/needs/template.csv": _get("/api/v1/needs/template.csv"),
    "GET /api/v1/needs": lambda w, c, t: Call("GET", "/api/v1/needs", shows=_need_rows),
    "GET /api/v1/needs/{need_id}": lambda w, c, t: Call(
        "GET", f"/api/v1/needs/{w.needs['submitted'][t or '']}"
    ),
    "PATCH /api/v1/needs/{need_id}": lambda w, c, t: Call(
        "PATCH", f"/api/v1/needs/{w.needs['draft'][t or '']}", json={"quantity": 75}
    ),
    "POST /api/v1/needs/{need_id}/submit": lambda w, c, t: Call(
        "POST", f"/api/v1/needs/{w.needs['draft'][t or '']}/submit"
    ),
    "POST /api/v1/needs/{need_id}/endorse": lambda w, c, t: Call(
        "POST", f"/api/v1/needs/{w.needs['submitted'][t or '']}/endorse"
    ),
    "POST /api/v1/needs/{need_id}/reject": lambda w, c, t: Call(
        "POST",
        f"/api/v1/needs/{w.needs['submitted'][t or '']}/reject",
        json={"reason": "Already covered by the provincial request"},
    ),
    "POST /api/v1/needs/{need_id}/cancel": lambda w, c, t: Call(
        "POST", f"/api/v1/needs/{w.needs['submitted'][t or '']}/cancel"
    ),
    # allocation
    "GET /api/v1/allocation/policies": _get("/api/v1/allocation/policies"),
    "PUT /api/v1/allocation/policies/{name}": lambda w, c, t: Call(
        "PUT",
        "/api/v1/allocation/policies/equity",
        json={"floor_share": 0.1, "note": "Agreed by the regional steering committee"},
    ),
    "GET /api/v1/allocation/snapshot": _get("/api/v1/allocation/snapshot"),
    "POST /api/v1/allocation/plans": lambda w, c, t: Call(
        "POST", "/api/v1/allocation/plans", ok=201, json={"policy": "equity"}
    ),
    "POST /api/v1/allocation/compare": lambda w, c, t: Call(
        "POST", "/api/v1/allocation/compare", json={"policies": ["equity", "pro_rata"]}
    ),
    "GET /api/v1/allocation/plans": _get("/api/v1/allocation/plans"),
    "GET /api/v1/allocation/plans/{plan_id}": lambda w, c, t: Call(
        "GET", f"/api/v1/allocation/plans/{w.plans.proposed}", shows=_plan_rows
    ),
    "POST /api/v1/allocation/plans/{plan_id}/approve": lambda w, c, t: Call(
        "POST", f"/api/v1/allocation/plans/{w.plans.proposed}/approve"
    ),
    "POST /api/v1/allocation/plans/{plan_id}/reject": lambda w, c, t: Call(
        "POST",
        f"/api/v1/allocation/plans/{w.plans.proposed}/reject",
        json={"note": "Wait for the new counts"},
    ),
    "GET /api/v1/allocation/needs/{need_id}/explanations": lambda w, c, t: Call(
        "GET", f"/api/v1/allocation/needs/{w.needs['allocated'][t or '']}/explanations"
    ),
    # logistics
    "POST /api/v1/logistics/plans/{plan_id}/shipments": lambda w, c, t: Call(
        "POST", f"/api/v1/logistics/plans/{w.plans.approved}/shipments", ok=201, json={}
    ),
    "GET /api/v1/logistics/shipments": lambda w, c, t: Call(
        "GET", "/api/v1/logistics/shipments", shows=_destinations
    ),
    "GET /api/v1/logistics/shipments/map": lambda w, c, t: Call(
        "GET", "/api/v1/logistics/shipments/map", shows=_map_destinations
    ),
    "GET /api/v1/logistics/shipments/{shipment_id}": lambda w, c, t: Call(
        "GET", f"/api/v1/logistics/shipments/{_road(w, t)}"
    ),
    "POST /api/v1/logistics/shipments/{shipment_id}/moves": lambda w, c, t: Call(
        "POST", f"/api/v1/logistics/shipments/{_road(w, t)}/moves", json={"status": "delivered"}
    ),
    "POST /api/v1/logistics/shipments/{shipment_id}/temperature-logs": lambda w, c, t: Call(
        "POST",
        f"/api/v1/logistics/shipments/{_road(w, t)}/temperature-logs",
        ok=201,
        files={"file": ("LG-12.csv", logger_csv(False, datetime.now(UTC) - timedelta(hours=40)), "text/csv")},
    ),
    "POST /api/v1/logistics/shipments/{shipment_id}/receipt": lambda w, c, t: Call(
        "POST", f"/api/v1/logistics/shipments/{_road(w, t)}/receipt", json=_receipt(w, _road(w, t))
    ),
    "POST /api/v1/logistics/shipments/{shipment_id}/quarantine": lambda w, c, t: Call(
        "POST",
        f"/api/v1/logistics/shipments/{_held(w, t)}/quarantine",
        json={"release": True, "note": "Manufacturer confirms stability at 35 °C for 72 h"},
    ),
    "GET /api/v1/logistics/shipments/{shipment_id}/signature": lambda w, c, t: Call(
        "GET", f"/api/v1/logistics/shipments/{_held(w, t)}/signature"
    ),
    # the transparency log
    "GET /api/v1/ledger/checkpoint": _get("/api/v1/ledger/checkpoint"),
    "GET /api/v1/ledger/checkpoints/{size}": lambda w, c, t: Call(
        "GET", f"/api/v1/ledger/checkpoints/{w.checkpoint_size}"
    ),
    "GET /api/v1/ledger/entries": _get("/api/v1/ledger/entries"),
    "GET /api/v1/ledger/proofs/inclusion": lambda w, c, t: Call(
        "GET", "/api/v1/ledger/proofs/inclusion", params={"index": 0, "size": w.checkpoint_size}
    ),
    "GET /api/v1/ledger/proofs/consistency": lambda w, c, t: Call(
        "GET", "/api/v1/ledger/proofs/consistency", params={"old": 1, "new": w.checkpoint_size}
    ),
    "GET /api/v1/ledger/keys": _get("/api/v1/ledger/keys"),
    # the change stream, from the first change on, closing after a moment
    "GET /api/v1/stream": lambda w, c, t: Call(
        "GET",
        "/api/v1/stream",
        params={"after": 0, "max_seconds": 0.1, "poll_seconds": 0.05},
        shows=_stream_rows,
    ),
    # FHIR
    "GET /fhir/R5/InventoryReport": lambda w, c, t: Call(
        "GET", "/fhir/R5/InventoryReport", params={"facility": facility_of(t)}
    ),
    "POST /fhir/R5/InventoryReport": lambda w, c, t: Call(
        "POST", "/fhir/R5/InventoryReport", ok=201, json=_count_report(t)
    ),
    "GET /fhir/R5/SupplyRequest/{need_id}": lambda w, c, t: Call(
        "GET", f"/fhir/R5/SupplyRequest/{w.needs['submitted'][t or '']}"
    ),
    "GET /fhir/R5/SupplyRequest": lambda w, c, t: Call("GET", "/fhir/R5/SupplyRequest", shows=_bundle_needs),
    "POST /fhir/R5/SupplyRequest": lambda w, c, t: Call(
        "POST", "/fhir/R5/SupplyRequest", ok=201, json=_supply_request(w, t)
    ),
    "GET /fhir/R5/SupplyDelivery/{resource_id}": lambda w, c, t: Call(
        "GET", f"/fhir/R5/SupplyDelivery/{_road_line(w, t)}"
    ),
    "GET /fhir/R5/SupplyDelivery": lambda w, c, t: Call(
        "GET", "/fhir/R5/SupplyDelivery", params={"shipment": _road(w, t)}, verify=_delivery_lines
    ),
    "POST /fhir/R5/SupplyDelivery": lambda w, c, t: Call(
        "POST", "/fhir/R5/SupplyDelivery", ok=201, json=w.deliveries[facility_of(t)]
    ),
    # mutual aid
    "POST /api/v1/mutual-aid/plans": lambda w, c, t: Call(
        "POST", "/api/v1/mutual-aid/plans", json=MUTUAL_AID
    ),
    "GET /api/v1/mutual-aid/plans/{plan_id}": lambda w, c, t: Call(
        "GET", f"/api/v1/mutual-aid/plans/{w.mutual_aid_plan}"
    ),
    "POST /api/v1/mutual-aid/plans/{plan_id}/approve": lambda w, c, t: Call(
        "POST", f"/api/v1/mutual-aid/plans/{w.mutual_aid_plan}/approve"
    ),
    # pages
    "GET /": _get("/"),
    "GET /docs": _get("/docs"),
    "GET /healthz": _get("/healthz"),
    "GET /openapi.json": _get("/openapi.json"),
    "GET /static": _get("/static/css/console.css"),
    # the console
    "GET /console/login": _get("/console/login"),
    "GET /console": _get("/console"),
    "GET /console/members/{iso3}": lambda w, c, t: Call(
        "GET", f"/console/members/{member(t)}", shows=_html_facilities
    ),
    "GET /console/shortages": _get("/console/shortages"),
    "GET /console/shortages/table": _get("/console/shortages/table"),
    "GET /console/needs": lambda w, c, t: Call("GET", "/console/needs", shows=_html_facilities),
    "GET /console/needs/table": lambda w, c, t: Call("GET", "/console/needs/table", shows=_html_facilities),
    "GET /console/allocation": _get("/console/allocation"),
    "GET /console/allocation/{plan_id}": lambda w, c, t: Call(
        "GET", f"/console/allocation/{w.plans.proposed}"
    ),
    "GET /console/mutual-aid": _get("/console/mutual-aid"),
    "GET /console/mutual-aid/example/{name}.csv": _get("/console/mutual-aid/example/demand.csv"),
    "GET /console/shipments": lambda w, c, t: Call("GET", "/console/shipments", shows=_html_facilities),
    "GET /console/shipments/{shipment_id}": lambda w, c, t: Call("GET", f"/console/shipments/{_road(w, t)}"),
    "GET /console/ledger": _get("/console/ledger"),
    "GET /console/admin": lambda w, c, t: Call("GET", "/console/admin", shows=_html_users),
}
