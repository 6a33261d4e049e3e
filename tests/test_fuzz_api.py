"""Schemathesis over every operation of the OpenAPI spec, in process, on both databases: whatever
it sends, the API never answers 5xx.

One test per database; each operation is a subtest (schemathesis' lazy schema), run from the same
seeded region: stock at a reserve depot and a hospital, needs at every stage, an approved allocation
plan with its shipments (one delivered, awaiting receipt), a proposed plan, a stored mutual-aid
plan, a pledge, a spare account and token. What an operation changes is rolled back before the
next. Each request is sent as the administrator or as the narrowest identity whose role may call
the operation (a facility manager or focal point where the role allows, so scope checks run too).
Path and query parameters that name a resource (a need, plan, shipment, facility, product,
member...) point at a seeded one for about half the generated values, so fuzzed bodies reach the
services and not only the 404 path.

Phases: schemathesis' coverage phase (boundary and invalid values of every parameter, unexpected
methods) and its fuzzing phase (positive and negative cases). Reproducible: a fixed seed, no
example database. Deeper runs: HEALTHMESH_FUZZ_EXAMPLES=200 (fuzzing cases per operation),
HEALTHMESH_FUZZ_SEED=<n> (another sample), HEALTHMESH_FUZZ_ONLY=<regex over "METHOD /path">.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from sqlalchemy.orm import Session, SessionTransaction

from healthmesh.accounts.access import ROLE_PERMISSIONS, Permission, Role
from healthmesh.accounts.models import ApiToken
from healthmesh.accounts.security import new_token, token_digest
from healthmesh.allocation import service as allocation
from healthmesh.config import Settings
from healthmesh.web.app import create_app
from tests.conftest import ACTOR_SPECS, Actor, Region, make_user
from tests.test_allocation_rounds import DAY, _world

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("HEALTHMESH_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("HEALTHMESH_FUZZ_SEED", "20261130"))
#: Operations that hash a password (argon2id, deliberately slow): fewer fuzzing cases.
HASHING = ["POST /api/v1/auth/login", "POST /api/v1/me/password", "POST /api/v1/users"]


def _spec_app() -> FastAPI:
    """The application only for its route table (it never opens its database)."""
    data_dir = Path(tempfile.gettempdir()) / "healthmesh-fuzz-spec"
    return create_app(Settings(data_dir=data_dir, secret_key="fuzz", database_url="sqlite://"))


def _required_permissions(app: FastAPI) -> dict[tuple[str, str], Permission | None]:
    """(METHOD, path) -> the permission its `require(...)` dependency asks for (None: public)."""

    def find(dependant: Any) -> Permission | None:
        for sub in dependant.dependencies:
            permission = getattr(sub.call, "required_permission", None) or find(sub)
            if permission is not None:
                return permission
        return None

    out = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in route.methods or ():
                out[(method, route.path)] = find(route.dependant)
    return out


PERMISSIONS = _required_permissions(_spec_app())
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "operations": [
            {"include-name": HASHING, "generation": {"max-examples": max(EXAMPLES // 3, 1)}},
        ],
    }
)
#: Narrowest first: the first whose role holds the operation's permission shares the calls with
#: the administrator.
SCOPED = ("manager_tha", "fp_tha", "coordinator", "auditor")


def identities(method: str, path: str) -> tuple[str, str]:
    """The administrator and the narrowest identity whose role may call the operation."""
    permission = PERMISSIONS.get((method, path))
    if permission is None:
        return ("admin", "manager_tha")
    for name in SCOPED:
        if permission in ROLE_PERMISSIONS[ACTOR_SPECS[name][0]]:
            return ("admin", name)
    return ("admin", "admin")


def identity(case: schemathesis.Case[Any]) -> str:
    """One of the operation's two identities, chosen by the case's content, so that a replayed case
    (Hypothesis shrinking) is sent by the same caller."""
    content = json.dumps(
        [case.path_parameters, case.query, case.headers, case.body], sort_keys=True, default=repr
    )
    return identities(case.method.upper(), case.operation.path)[zlib.crc32(content.encode()) % 2]


@dataclass
class World:
    """The seeded resources, by the parameter name that refers to them."""

    app: FastAPI
    db: Session
    actors: dict[str, Actor]
    by_name: dict[str, list[Any]] = field(default_factory=dict)
    operation: str = ""
    savepoint: SessionTransaction | None = None

    def rewind_for(self, operation: str) -> None:
        """Each operation starts from the seeded world: what the previous one changed is rolled back."""
        if operation == self.operation:
            return
        if self.savepoint is not None:
            self.savepoint.rollback()
        self.db.expire_all()
        self.savepoint = self.db.begin_nested()
        self.operation = operation

    def choices(self, path: str, name: str) -> list[Any]:
        """The seeded values a parameter of this path may name."""
        if name == "code":
            return self.by_name["product" if path.startswith("/api/v1/products") else "facility"]
        if name == "plan_id" and path.startswith("/api/v1/mutual-aid/"):
            return self.by_name["mutual_aid_plan_id"]
        return self.by_name.get(name, [])


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def _stored_mutual_aid_plan(client: TestClient, coordinator: Actor) -> int:
    """Thailand lends Ag-RDTs to Lao PDR over two weeks, stored for approval."""
    demand = [
        {"member": member, "date": day, "units": units}
        for member, units in (("THA", 100), ("LAO", 300))
        for day in ("2026-12-01", "2026-12-08")
    ]
    body = {
        "demand": demand,
        "supply": [{"member": "THA", "units": 500}, {"member": "LAO", "units": 50}],
        "distances": [{"from": "THA", "to": "LAO", "distance": 650}],
        "save": True,
        "product": "DX-AGRDT-25",
    }
    plan = _ok(client.post("/api/v1/mutual-aid/plans?rows=false", json=body, headers=coordinator.headers))
    return int(plan["id"])


@pytest.fixture
def world(client: TestClient, db: Session, region: Region, actors: dict[str, Actor]) -> Iterator[World]:
    """The seeded region the operations are fuzzed on (see the module's docstring)."""
    _world(db, region)
    coordinator, manager, fp = actors["coordinator"], actors["manager_tha"], actors["fp_tha"]
    approved = allocation.create_plan(db, coordinator.principal, "equity", DAY)
    allocation.approve(db, coordinator.principal, approved.id)
    proposed = allocation.create_plan(db, coordinator.principal, "equity", DAY)
    shipments = _ok(
        client.post(f"/api/v1/logistics/plans/{approved.id}/shipments", json={}, headers=coordinator.headers)
    )
    bangkok = next(s for s in shipments if s["destination"] == "THA-HO-0001")
    for status, who in (("picked", coordinator), ("dispatched", coordinator), ("delivered", manager)):
        moved = client.post(
            f"/api/v1/logistics/shipments/{bangkok['id']}/moves", json={"status": status}, headers=who.headers
        )
        _ok(moved)
    receipt = {
        "facility": "THA-HO-0002",
        "product": "DX-AGRDT-25",
        "lot_number": "AG-2026-11",
        "expiry_date": "2027-10-31",
        "kind": "receipt",
        "quantity": 400,
    }
    _ok(client.post("/api/v1/stock/events", json=receipt, headers=fp.headers))
    offer = {
        "facility": "THA-HO-0002",
        "product": "DX-AGRDT-25",
        "quantity": 150,
        "valid_from": "2026-11-01",
        "valid_to": "2099-03-31",
    }
    pledge = _ok(client.post("/api/v1/pledges", json=offer, headers=fp.headers))
    need = {
        "facility": "THA-HO-0001",
        "product": "VAC-COMIRNATY",
        "quantity": 120,
        "urgency": "urgent",
        "needed_by": "2099-06-30",
        "population_served": 25_000,
    }
    draft = _ok(client.post("/api/v1/needs", json=need, headers=manager.headers))
    submitted = _ok(client.post("/api/v1/needs", json={**need, "submit": True}, headers=manager.headers))
    mutual_aid_plan = _stored_mutual_aid_plan(client, coordinator)
    spare = make_user(db, region, "fuzz.target", Role.CLINICIAN, "THA", "THA-HO-0002")
    raw = new_token("at")
    token = ApiToken(user_id=spare.id, name="spare", prefix=raw[:12], token_hash=token_digest(raw))
    db.add(token)
    db.flush()
    needs = [n["id"] for n in _ok(client.get("/api/v1/needs", headers=coordinator.headers))["items"]]
    line = bangkok["lines"][0]["id"]
    members = sorted(region.members)
    yield World(
        app=client.app,  # type: ignore[arg-type]
        db=db,
        actors=actors,
        by_name={
            "need_id": sorted({draft["id"], submitted["id"], *needs}),
            "plan_id": [approved.id, proposed.id],
            "mutual_aid_plan_id": [mutual_aid_plan],
            "shipment_id": [s["id"] for s in shipments],
            "pledge_id": [pledge["id"]],
            "token_id": [token.id],
            "username": ["fuzz.target", "fp.lao"],
            "iso3": members,
            "jurisdiction": members,
            "member": members,
            "facility": [*sorted(region.facilities), "RRD-THA-CHAINAT"],
            "product": sorted(region.products),
            "shipment": [str(bangkok["id"]), f"SHP-{bangkok['id']:06d}"],
            "resource_id": [f"shp-{bangkok['id']}-{line}"],
            "name": ["equity", "pro_rata"],
        },
    )
    asgi.shutdown_lifespans()  # schemathesis keeps every app it started alive; this one is done


@pytest.fixture
def api_schema(world: World, request: pytest.FixtureRequest) -> schemathesis.BaseSchema:
    """The spec as this test's application serves it; calls go to that application in process."""
    # schemathesis 4.32's lazy loader renames the test after each operation through `_nodeid`,
    # which pytest 9.2 nodes no longer have; give it one (each subtest is still named by operation).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    return schemathesis.openapi.from_asgi("/openapi.json", world.app, config=CONFIG)


lazy_schema = schemathesis.pytest.from_fixture("api_schema")
if os.environ.get("HEALTHMESH_FUZZ_ONLY"):
    lazy_schema = lazy_schema.include(name_regex=os.environ["HEALTHMESH_FUZZ_ONLY"])


def _aim(value: Any, choices: list[Any]) -> Any:
    """About half the generated values become a seeded resource (picked by the value itself, so a
    run stays reproducible); the rest stay as generated, to reach the not-found and boundary paths."""
    if isinstance(value, bool) or not choices:
        return value
    if isinstance(value, int):
        key = value
    elif isinstance(value, str):
        key = len(value)
    else:
        return value
    index = key % (2 * len(choices))
    return choices[index] if index < len(choices) else value


def aim(case: schemathesis.Case[Any], world: World) -> None:
    path = case.operation.path
    for container in (case.path_parameters, case.query):
        for name, value in list((container or {}).items()):
            container[name] = _aim(value, world.choices(path, name))
    if path == "/api/v1/stream":  # an event stream: one poll, then it ends
        case.query = {**(case.query or {}), "max_seconds": 0.05, "poll_seconds": 0.05}


def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Every refusal is RFC 9457 problem details, and a 422 names each field at fault."""
    if response.status_code < 400:
        return None
    media_type = (response.headers.get("content-type") or [""])[0].split(";")[0]
    assert media_type == "application/problem+json", f"{response.status_code} answered as {media_type!r}"
    body = response.json()
    assert body["status"] == response.status_code, body
    assert body["title"], body
    assert body["type"].startswith("urn:healthmesh:problem:"), body
    if response.status_code == 422:
        assert body.get("errors"), body
        assert all(error.get("field") for error in body["errors"]), body
    return None


@lazy_schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the world is seeded once
def test_no_input_makes_a_server_error(case: schemathesis.Case[Any], world: World) -> None:
    """Any request answers below 500; a refusal is problem details naming the fields at fault."""
    world.rewind_for(case.operation.label)
    aim(case, world)
    response = case.call(headers=world.actors[identity(case)].headers)
    case.validate_response(response, checks=[not_a_server_error, problem_details])


# --- what the fuzzer found -----------------------------------------------------------------------

PRODUCT = {
    "code": "DX-FLU-RDT",
    "name": "Influenza A/B rapid test, 20 tests",
    "category": "diagnostics",
    "unit_of_issue": "kit",
    "storage_condition": "ambient",
    "min_temp_c": 2,
    "max_temp_c": 30,
    "shelf_life_days": 540,
}
RECEIPT = {
    "facility": "THA-HO-0001",
    "product": "DX-AGRDT-25",
    "lot_number": "AG-26-001",
    "kind": "receipt",
    "quantity": 10,
}
LOT_WITH_NUL = {
    "resourceType": "InventoryReport",
    "status": "active",
    "countType": "snapshot",
    "reportedDateTime": "2026-11-30T16:00:00+07:00",
    "contained": [
        {
            "resourceType": "InventoryItem",
            "id": "lot-1",
            "status": "active",
            "code": [{"coding": [{"system": "urn:healthmesh:product", "code": "DX-AGRDT-25"}]}],
            "instance": {"lotNumber": "AG\u0000-01"},
        }
    ],
    "inventoryListing": [
        {
            "location": {"identifier": {"system": "urn:healthmesh:facility", "value": "THA-HO-0001"}},
            "item": [{"item": {"reference": {"reference": "#lot-1"}}, "quantity": {"value": 5}}],
        }
    ],
}
BIG = 2**63


#: Requests the fuzzer found answered with a 500 (on one database or both), and the field the 422
#: that now answers them names. `{draft}` is a draft need of Rajavithi.
FOUND = [
    ("PATCH", "/api/v1/needs/{draft}", {"json": {"population_served": 2**31}}, "population_served"),
    ("POST", "/api/v1/needs/2242725521/cancel", {}, "need_id"),
    ("GET", f"/fhir/R5/SupplyRequest?_offset={BIG}", {}, "_offset"),
    ("GET", f"/api/v1/stock/events?after_id={BIG}", {}, "after_id"),
    ("GET", f"/api/v1/ledger/checkpoints/{BIG}", {}, "size"),
    (
        "POST",
        "/api/v1/products",
        {"json": {**PRODUCT, "pack_size": 446143685804006780106119839744}},
        "pack_size",
    ),
    (
        "POST",
        "/api/v1/stock/events",
        {"json": {**RECEIPT, "occurred_at": "9999-12-31T23:59:59-14:00"}},
        "occurred_at",
    ),
    ("GET", "/api/v1/stock/trends?product=DX-AGRDT-25&date=0001-01-01", {}, "date"),
    ("GET", "/api/v1/shortages?date=0001-01-01&horizon_days=1", {}, "date"),
    ("POST", "/api/v1/facilities/import", {"files": {"file": ("f.csv", "\r0", "text/csv")}}, "code"),
    ("POST", "/fhir/R5/InventoryReport", {"json": LOT_WITH_NUL}, "contained[0].instance.lotNumber"),
    (
        "POST",
        "/fhir/R5/InventoryReport",
        {"json": {**LOT_WITH_NUL, "contained": [{"resourceType": None, "id": "lot-1"}]}},
        "contained[0].resourceType",
    ),
    pytest.param("GET", f"/api/v1/pledges?offset={BIG}", {}, "offset"),
    pytest.param(
        "POST",
        "/api/v1/logistics/shipments/14376667970/moves",
        {"json": {"status": "lost"}},
        "shipment_id",
    ),
    pytest.param(
        "GET",
        "/api/v1/mutual-aid/plans/203610620864",
        {},
        "plan_id",
    ),
    pytest.param(
        "POST",
        "/api/v1/auth/login",
        {"json": {"username": "fp\u0000tha", "password": "correct-horse-battery-staple"}},
        "username",
    ),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "field"), FOUND)
def test_inputs_found_by_fuzzing_are_refused_naming_their_field(
    client: TestClient, actors: dict[str, Actor], method: str, url: str, kwargs: dict[str, Any], field: str
) -> None:
    admin = actors["admin"].headers
    if "{draft}" in url:
        need = {
            "facility": "THA-HO-0001",
            "product": "DX-AGRDT-25",
            "quantity": 50,
            "needed_by": "2099-01-31",
        }
        created = client.post("/api/v1/needs", json=need, headers=admin)
        assert created.status_code == 201, created.text
        url = url.replace("{draft}", str(created.json()["id"]))
    response = client.request(method, url, headers=admin, **kwargs)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]], response.json()
