"""The access matrix: every route of the application, called as every identity (and anonymous),
on a resource of the caller's own scope and on one outside it, against an explicit rule table.

The rules below are the contract, written here rather than read from the routes (a test that
read them there could not fail). A route's rule is public, signed-in, or a permission; where the
route touches one member's data, also how far the permission reaches (`Reach`) and how a target
out of reach is refused: 403, 404 (the code hides another member's record) or 422 (a file or batch
refused line by line). Who holds each permission is written here too (`GRANTS`, the roles table of
docs/architecture.md).

The tests:
1. every route of the app has a rule and a call, and every rule names a route;
2. each rule agrees with what the route declares (`require(...)`, `viewer_with(...)`, `Public`);
3. every (route, identity, target) is called: a refusal is 401/403/404/422 as the rule says, as
   RFC 9457 problem+json for the API (a redirect to sign-in or an HTML error page for the
   console), and a refused write changes nothing in the database; an allowed call succeeds, and
   a scoped read shows exactly the rows of the caller's scope;
4. a scoped list asked, by its filters, for another member's or facility's rows shows none;
5. a regional reserve depot hosted by a member stays the region's: its host's focal point may not
   write it off, pledge it or re-classify it (`Principal.manages_facility`).

The world (tests/access_world.py) is seeded once per backend in a transaction rolled back after
the module; each case runs in a savepoint rolled back after it. How each route is called is in
tests/access_calls.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from functools import cache, reduce
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import (
    Column,
    Engine,
    LargeBinary,
    String,
    Table,
    cast,
    create_engine,
    func,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

import healthmesh.models  # noqa: F401  (every table in the metadata, for the state check)
from healthmesh.accounts import security
from healthmesh.accounts.access import ROLE_PERMISSIONS, Permission
from healthmesh.accounts.models import User
from healthmesh.config import Settings
from healthmesh.db import Base
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility
from healthmesh.web.app import create_app
from healthmesh.web.deps import SESSION_COOKIE
from tests import access_world
from tests.access_calls import CALLS, Call, facility_indicators, member
from tests.access_world import (
    AGRDT,
    CHIANG_MAI,
    DEPOT,
    MAHOSOT,
    PLACES,
    RAJAVITHI,
    Place,
    World,
    receive_stock,
)
from tests.conftest import ACTOR_SPECS, TEST_PASSWORD, app_on_session

ANONYMOUS = "anonymous"
IDENTITIES: tuple[str, ...] = (ANONYMOUS, *ACTOR_SPECS)
PROBLEM = "application/problem+json"


# --- who holds what ------------------------------------------------------------------------------

EVERYONE = frozenset(ACTOR_SPECS)
FOCAL_POINTS = frozenset({"fp_tha", "fp_lao"})
REGIONAL = frozenset({"admin", "coordinator"})

#: Which identities hold each permission (the roles table of docs/architecture.md).
GRANTS: dict[Permission, frozenset[str]] = {
    Permission.REGISTRY_READ: EVERYONE,
    Permission.SELF: EVERYONE,
    Permission.JURISDICTION_WRITE: REGIONAL,
    Permission.PRODUCT_WRITE: REGIONAL,
    Permission.FACILITY_WRITE: REGIONAL | FOCAL_POINTS | {"manager_tha"},
    Permission.REGULATORY_WRITE: FOCAL_POINTS | {"admin"},
    Permission.USER_READ: REGIONAL | FOCAL_POINTS | {"auditor"},
    Permission.USER_WRITE: FOCAL_POINTS | {"admin"},
    Permission.AUDIT_READ: frozenset({"admin", "auditor"}),
    Permission.STOCK_READ: EVERYONE,
    Permission.STOCK_WRITE: REGIONAL | FOCAL_POINTS | {"manager_tha"},
    Permission.PLEDGE_WRITE: FOCAL_POINTS | {"admin"},
    Permission.NEED_READ: EVERYONE - {"researcher"},
    Permission.NEED_WRITE: FOCAL_POINTS | {"admin", "manager_tha", "clinician_tha"},
    Permission.NEED_ENDORSE: FOCAL_POINTS | {"admin"},
    Permission.ALLOCATION_READ: REGIONAL | FOCAL_POINTS | {"auditor"},
    Permission.ALLOCATION_RUN: REGIONAL,
    Permission.ALLOCATION_APPROVE: REGIONAL,
    Permission.SHIPMENT_READ: EVERYONE - {"researcher"},
    Permission.SHIPMENT_PLAN: REGIONAL,
    Permission.SHIPMENT_SEND: REGIONAL | FOCAL_POINTS | {"manager_tha"},
    Permission.SHIPMENT_RECEIVE: FOCAL_POINTS | {"admin", "manager_tha"},
}


class Reach(StrEnum):
    """How far a permission reaches into one member's data."""

    MEMBER = "within own member"  # the region, or the scope of that whole member
    FACILITY = "within own scope"  # the region, the facility's member, or the facility itself
    HOME = "own member"  # the region, or any scope inside that member (a facility's too)
    WIDE = "member- or region-wide"  # a facility's scope is refused outright
    OWNER = "own, or any for a region-wide user:write"  # API tokens
    ACCOUNT = "own account, or one it administers"  # the region's, or its member's for a focal point


TARGETS: dict[Reach, tuple[str, ...]] = {
    Reach.MEMBER: ("THA", "LAO"),
    Reach.HOME: ("THA", "LAO"),
    Reach.FACILITY: (RAJAVITHI, CHIANG_MAI, MAHOSOT),
    Reach.OWNER: ("own", "other"),
    Reach.ACCOUNT: ("own", "THA", "LAO"),
}
EMPTY = 0  # a refusal that answers 200 with nothing in it


@dataclass(frozen=True)
class Rule:
    access: str | Permission  # "public", "signed-in" or the permission
    reach: Reach | None = None
    refused: int = 403  # the status for a target out of reach

    def __str__(self) -> str:
        text = str(self.access)
        if self.reach is not None:
            text += f" {self.reach.value} (else {self.refused or 'nothing'})"
        return text


PUBLIC = Rule("public")
SIGNED_IN = Rule("signed-in")


def can(permission: Permission, reach: Reach | None = None, refused: int = 403) -> Rule:
    return Rule(permission, reach, refused)


P = Permission
F, M = Reach.FACILITY, Reach.MEMBER
CSV_KINDS = ("jurisdictions", "facilities", "products", "authorisations", "recognitions")

RULES: dict[str, Rule] = {
    # accounts
    "POST /api/v1/auth/login": PUBLIC,
    "POST /api/v1/auth/logout": PUBLIC,
    "GET /api/v1/me": can(P.SELF),
    "GET /api/v1/me/tokens": can(P.SELF),
    "POST /api/v1/me/tokens": can(P.SELF),
    "POST /api/v1/me/password": can(P.SELF),
    "DELETE /api/v1/tokens/{token_id}": can(P.SELF, Reach.OWNER, 404),
    "GET /api/v1/users/{username}/tokens": can(P.SELF, Reach.OWNER, 404),
    "DELETE /api/v1/users/{username}/sessions": can(P.SELF, Reach.ACCOUNT, 404),
    "GET /api/v1/users": can(P.USER_READ),
    "GET /api/v1/users/{username}": can(P.USER_READ, M, 404),
    "POST /api/v1/users": can(P.USER_WRITE, M),
    "PATCH /api/v1/users/{username}": can(P.USER_WRITE, M, 404),
    "GET /api/v1/audit/login-attempts": can(P.AUDIT_READ),
    # registry: reads for every signed-in user, writes by permission and scope
    **{f"GET /api/v1/{kind}/export.csv": can(P.REGISTRY_READ) for kind in CSV_KINDS},
    **{f"GET /api/v1/{kind}/template.csv": can(P.REGISTRY_READ) for kind in CSV_KINDS},
    "POST /api/v1/jurisdictions/import": can(P.JURISDICTION_WRITE),
    "POST /api/v1/facilities/import": can(P.FACILITY_WRITE, F, 422),
    "POST /api/v1/products/import": can(P.PRODUCT_WRITE),
    "POST /api/v1/authorisations/import": can(P.REGULATORY_WRITE, M, 422),
    "POST /api/v1/recognitions/import": can(P.REGULATORY_WRITE, M, 422),
    "GET /api/v1/jurisdictions": can(P.REGISTRY_READ),
    "GET /api/v1/jurisdictions/{iso3}": can(P.REGISTRY_READ),
    "POST /api/v1/jurisdictions": can(P.JURISDICTION_WRITE),
    "PATCH /api/v1/jurisdictions/{iso3}": can(P.JURISDICTION_WRITE),
    "GET /api/v1/facilities": can(P.REGISTRY_READ),
    "GET /api/v1/facilities/{code}": can(P.REGISTRY_READ),
    "POST /api/v1/facilities": can(P.FACILITY_WRITE, M),
    "PATCH /api/v1/facilities/{code}": can(P.FACILITY_WRITE, F),
    "GET /api/v1/products": can(P.REGISTRY_READ),
    "GET /api/v1/products/{code}": can(P.REGISTRY_READ),
    "POST /api/v1/products": can(P.PRODUCT_WRITE),
    "PATCH /api/v1/products/{code}": can(P.PRODUCT_WRITE),
    "GET /api/v1/authorisations": can(P.REGISTRY_READ),
    "PUT /api/v1/authorisations": can(P.REGULATORY_WRITE, M),
    "GET /api/v1/recognitions": can(P.REGISTRY_READ),
    "PUT /api/v1/recognitions": can(P.REGULATORY_WRITE, M),
    "GET /api/v1/eligibility": can(P.REGISTRY_READ),
    # supply: stock writes outside the scope are refused line by line (422 naming the facility)
    "POST /api/v1/stock/events": can(P.STOCK_WRITE, F, 422),
    "POST /api/v1/stock/events/batch": can(P.STOCK_WRITE, F, 422),
    "POST /api/v1/stock/events/import": can(P.STOCK_WRITE, F, 422),
    "GET /api/v1/stock/events/template.csv": can(P.STOCK_READ),
    "GET /api/v1/stock/events": can(P.STOCK_READ),
    "GET /api/v1/stock/balances": can(P.STOCK_READ),
    "GET /api/v1/stock/lots": can(P.STOCK_READ),
    "POST /api/v1/pledges": can(P.PLEDGE_WRITE, M),
    "GET /api/v1/pledges": can(P.STOCK_READ),
    "POST /api/v1/pledges/{pledge_id}/withdraw": can(P.PLEDGE_WRITE, M, 404),
    "GET /api/v1/indicators": can(P.STOCK_READ, Reach.WIDE),  # a facility asks level=facility
    "GET /api/v1/shortages": can(P.STOCK_READ, Reach.WIDE),
    "GET /api/v1/stock/shareable": can(P.STOCK_READ),
    "GET /api/v1/stock/trends": can(P.STOCK_READ),
    # needs: another member's need does not exist for the caller
    "POST /api/v1/needs": can(P.NEED_WRITE, F),
    "POST /api/v1/needs/import": can(P.NEED_WRITE, F, 422),
    "GET /api/v1/needs/template.csv": can(P.NEED_READ),
    "GET /api/v1/needs": can(P.NEED_READ),
    "GET /api/v1/needs/{need_id}": can(P.NEED_READ, F, 404),
    "PATCH /api/v1/needs/{need_id}": can(P.NEED_WRITE, F, 404),
    "POST /api/v1/needs/{need_id}/submit": can(P.NEED_WRITE, F, 404),
    "POST /api/v1/needs/{need_id}/endorse": can(P.NEED_ENDORSE, F, 404),
    "POST /api/v1/needs/{need_id}/reject": can(P.NEED_ENDORSE, F, 404),
    "POST /api/v1/needs/{need_id}/cancel": can(P.NEED_WRITE, F, 404),
    # allocation: region-wide runs and decisions; a member reads its own needs' results
    "GET /api/v1/allocation/policies": can(P.ALLOCATION_READ),
    "PUT /api/v1/allocation/policies/{name}": can(P.ALLOCATION_APPROVE),
    "GET /api/v1/allocation/snapshot": can(P.ALLOCATION_RUN),
    "POST /api/v1/allocation/plans": can(P.ALLOCATION_RUN),
    "POST /api/v1/allocation/compare": can(P.ALLOCATION_RUN),
    "GET /api/v1/allocation/plans": can(P.ALLOCATION_READ),
    "GET /api/v1/allocation/plans/{plan_id}": can(P.ALLOCATION_READ),
    "POST /api/v1/allocation/plans/{plan_id}/approve": can(P.ALLOCATION_APPROVE),
    "POST /api/v1/allocation/plans/{plan_id}/reject": can(P.ALLOCATION_APPROVE),
    "GET /api/v1/allocation/needs/{need_id}/explanations": can(P.ALLOCATION_READ, F, 404),
    # logistics: a shipment belongs to its two ends (here: its destination; the depot is nobody's)
    "POST /api/v1/logistics/plans/{plan_id}/shipments": can(P.SHIPMENT_PLAN),
    "GET /api/v1/logistics/shipments": can(P.SHIPMENT_READ),
    "GET /api/v1/logistics/shipments/map": can(P.SHIPMENT_READ),
    "GET /api/v1/logistics/shipments/{shipment_id}": can(P.SHIPMENT_READ, F, 404),
    "POST /api/v1/logistics/shipments/{shipment_id}/moves": can(P.SHIPMENT_SEND, F, 404),
    "POST /api/v1/logistics/shipments/{shipment_id}/temperature-logs": can(P.SHIPMENT_RECEIVE, F, 404),
    "POST /api/v1/logistics/shipments/{shipment_id}/receipt": can(P.SHIPMENT_RECEIVE, F, 404),
    "POST /api/v1/logistics/shipments/{shipment_id}/quarantine": can(P.SHIPMENT_RECEIVE, F, 404),
    "GET /api/v1/logistics/shipments/{shipment_id}/signature": can(P.SHIPMENT_READ, F, 404),
    # the transparency log is public
    "GET /api/v1/ledger/checkpoint": PUBLIC,
    "GET /api/v1/ledger/checkpoints/{size}": PUBLIC,
    "GET /api/v1/ledger/entries": PUBLIC,
    "GET /api/v1/ledger/proofs/inclusion": PUBLIC,
    "GET /api/v1/ledger/proofs/consistency": PUBLIC,
    "GET /api/v1/ledger/keys": PUBLIC,
    "GET /api/v1/stream": can(P.STOCK_READ),
    # FHIR
    "GET /fhir/R5/InventoryReport": can(P.STOCK_READ, F, 404),
    "POST /fhir/R5/InventoryReport": can(P.STOCK_WRITE, F, 422),
    "GET /fhir/R5/SupplyRequest/{need_id}": can(P.NEED_READ, F, 404),
    "GET /fhir/R5/SupplyRequest": can(P.NEED_READ),
    "POST /fhir/R5/SupplyRequest": can(P.NEED_WRITE, F),
    "GET /fhir/R5/SupplyDelivery/{resource_id}": can(P.SHIPMENT_READ, F, 404),
    "GET /fhir/R5/SupplyDelivery": can(P.SHIPMENT_READ, F, EMPTY),
    "POST /fhir/R5/SupplyDelivery": can(P.SHIPMENT_RECEIVE, F, 404),
    "POST /api/v1/mutual-aid/plans": can(P.ALLOCATION_RUN),
    "GET /api/v1/mutual-aid/plans/{plan_id}": can(P.ALLOCATION_READ),
    "POST /api/v1/mutual-aid/plans/{plan_id}/approve": can(P.ALLOCATION_APPROVE),
    # pages
    "GET /": PUBLIC,
    "GET /docs": PUBLIC,
    "GET /healthz": PUBLIC,
    "GET /openapi.json": PUBLIC,
    "GET /static": PUBLIC,
    # the console: a page the role may not open is a 403 page; another member's a 403 or 404 page
    "GET /console/login": PUBLIC,
    "GET /console": can(P.STOCK_READ),
    "GET /console/members/{iso3}": can(P.STOCK_READ, Reach.HOME),
    "GET /console/shortages": can(P.STOCK_READ),
    "GET /console/shortages/table": can(P.STOCK_READ),
    "GET /console/needs": can(P.NEED_READ),
    "GET /console/needs/table": can(P.NEED_READ),
    "GET /console/allocation": can(P.ALLOCATION_READ),
    "GET /console/allocation/{plan_id}": can(P.ALLOCATION_READ),
    "GET /console/mutual-aid": can(P.ALLOCATION_RUN),
    "GET /console/mutual-aid/example/{name}.csv": can(P.ALLOCATION_RUN),
    "GET /console/shipments": can(P.SHIPMENT_READ),
    "GET /console/shipments/{shipment_id}": can(P.SHIPMENT_READ, F, 404),
    "GET /console/ledger": SIGNED_IN,
    "GET /console/admin": can(P.USER_READ),
}


@dataclass(frozen=True)
class Shown:
    """What a scoped read holds: the places seeded (for a target, or overall), and the reach by
    which a caller sees each."""

    reach: Reach
    seeded: str  # "stock", "pledges", "members", "shortages", "needs", "users", "changes", ...
    only_with: Permission | None = None  # the rows are shown only to holders of this permission


#: For every read whose call says what it shows, which rows the caller must see: exactly those
#: seeded rows its scope reaches (all of them region-wide), never another member's.
SHOWN: dict[str, Shown] = {
    "GET /api/v1/users": Shown(Reach.HOME, "users"),
    "GET /api/v1/stock/events": Shown(F, "stock"),
    "GET /api/v1/stock/balances": Shown(F, "stock"),
    "GET /api/v1/stock/lots": Shown(F, "stock"),
    "GET /api/v1/pledges": Shown(F, "pledges"),
    "GET /api/v1/indicators": Shown(M, "members"),
    "GET /api/v1/shortages": Shown(M, "members with needs"),
    "GET /api/v1/stock/shareable": Shown(F, "pledges"),
    "GET /api/v1/stock/trends": Shown(F, "stock"),
    "GET /api/v1/needs": Shown(F, "needs"),
    "GET /api/v1/allocation/plans/{plan_id}": Shown(M, "members with needs"),
    "GET /api/v1/logistics/shipments": Shown(F, "places"),
    "GET /api/v1/logistics/shipments/map": Shown(F, "places"),
    "GET /api/v1/stream": Shown(F, "changes"),
    "GET /fhir/R5/SupplyRequest": Shown(F, "needs"),
    "GET /console/members/{iso3}": Shown(F, "places of the target", P.NEED_READ),  # its open needs
    "GET /console/needs": Shown(F, "places"),
    "GET /console/allocation/{plan_id}": Shown(M, "places"),  # a member sees its own needs' lines
    "GET /console/needs/table": Shown(F, "places"),
    "GET /console/shipments": Shown(F, "places"),
    "GET /console/admin": Shown(Reach.HOME, "staff"),
}


def seeded_places(world: World, seeded: str, target: str | None) -> set[Place]:
    """The places of the rows seeded of one kind."""
    places: set[Place] = {(iso3, code) for code, iso3 in PLACES.items()}
    kinds: dict[str, set[Place]] = {
        "places": places,
        "stock": places | {("SGP", DEPOT)},
        "pledges": {(iso3, code) for iso3, code in [("THA", RAJAVITHI), ("LAO", MAHOSOT)]},
        "members": {("THA", None), ("LAO", None), ("SGP", None)},  # the depot's stock is in Singapore's
        "members with needs": {("THA", None), ("LAO", None)},
        "needs": set(world.need_places.values()),
        "users": set(world.user_places.values()),
        "staff": {p for name, p in world.user_places.items() if "." in name},
        "changes": world.change_places,
    }
    if seeded == "places of the target":
        return {p for p in places if p[0] == member(target)}
    return kinds[seeded]


# --- expectations --------------------------------------------------------------------------------


def _scope(identity: str) -> tuple[str | None, str | None]:
    _, iso3, facility = ACTOR_SPECS[identity]
    return iso3, facility


def reaches(identity: str, reach: Reach, place: Place) -> bool:
    """Whether the identity's scope reaches the place, as the rule's reach defines it."""
    iso3, facility = _scope(identity)
    region = iso3 is None
    if reach is Reach.MEMBER:
        return region or (facility is None and iso3 == place[0])
    if reach is Reach.FACILITY:
        return (
            region
            or (facility is None and iso3 == place[0])
            or (facility is not None and facility == place[1])
        )
    if reach is Reach.HOME:
        return region or iso3 == place[0]
    if reach is Reach.WIDE:
        return facility is None
    if place[0] == "own":
        return True
    if reach is Reach.ACCOUNT:
        return identity in GRANTS[Permission.USER_WRITE] and (
            region or (facility is None and iso3 == place[0])
        )
    return region and identity in GRANTS[Permission.USER_WRITE]


def _target_place(target: str | None) -> Place:
    if target in PLACES:
        return PLACES[target], target
    return target, None


def expected_refusal(rule: Rule, identity: str, target: str | None) -> int | None:
    """The status refusing this call, or None when it is allowed."""
    if rule.access == "public":
        return None
    if identity == ANONYMOUS:
        return 401
    if rule.access == "signed-in":
        return None
    assert isinstance(rule.access, Permission)
    if identity not in GRANTS[rule.access]:
        return 403
    if rule.reach is not None and not reaches(identity, rule.reach, _target_place(target)):
        return rule.refused
    return None


# --- the application's routes --------------------------------------------------------------------


def _app_for_listing() -> FastAPI:
    settings = Settings(data_dir=Path(tempfile.gettempdir()), secret_key="routes", database_url="sqlite://")
    return create_app(settings, create_engine("sqlite://"))


def route_keys(app: FastAPI) -> dict[str, Any]:
    """Every route as "METHOD path" (HEAD aside: it answers as GET), with the route."""
    out: dict[str, Any] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        methods = sorted((context.methods or {"GET"}) - {"HEAD"})
        for method in methods:
            out[f"{method} {context.path}"] = context if isinstance(route, APIRoute) else route
    return out


def declared_access(route: Any) -> str | Permission:
    """What a route declares: `Public`, a `require(...)`/`viewer_with(...)` permission, a bare
    sign-in, or nothing ("unguarded"). Routes that are not FastAPI's (the OpenAPI document, the
    static files) carry no dependencies and are public."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return "public"
    found: set[str | Permission] = set()
    stack = list(dependant.dependencies)
    while stack:
        sub = stack.pop()
        call = sub.call
        if getattr(call, "public", False):
            found.add("public")
        if hasattr(call, "required_permission"):
            found.add(call.required_permission)
        if getattr(call, "__name__", "") in ("current_principal", "current_viewer"):
            found.add("signed-in")
        stack.extend(sub.dependencies)
    permissions = {item for item in found if isinstance(item, Permission)}
    assert len(permissions) <= 1, f"more than one permission: {permissions}"
    if permissions:
        return permissions.pop()
    if "public" in found:
        assert "signed-in" not in found, "public and signed-in at once"
        return "public"
    return "signed-in" if "signed-in" in found else "unguarded"


APP_ROUTES = route_keys(_app_for_listing())


def _cases() -> Iterator[Any]:
    for key in APP_ROUTES:
        rule = RULES.get(key)
        if rule is None:
            yield pytest.param(key, ANONYMOUS, None, id=f"{key}[no rule]")
            continue
        for identity in IDENTITIES:
            targets: tuple[str | None, ...] = (None,)
            if rule.reach in TARGETS:
                held = identity != ANONYMOUS and (
                    not isinstance(rule.access, Permission) or identity in GRANTS[rule.access]
                )
                targets = TARGETS[rule.reach] if held else TARGETS[rule.reach][:1]
            for target in targets:
                label = identity if target is None else f"{identity}@{target}"
                yield pytest.param(key, identity, target, id=f"{key}[{label}]")


# --- 1 and 2: the table against the application ---------------------------------------------------


def test_every_route_has_a_rule_and_a_call_and_every_rule_a_route() -> None:
    routes = set(APP_ROUTES)
    assert sorted(routes - set(RULES)) == [], "routes without a rule in RULES"
    assert sorted(set(RULES) - routes) == [], "rules naming no route of the application"
    assert set(CALLS) == set(RULES), "every rule needs a call in tests/access_calls.py, and only those"
    assert set(SHOWN) <= set(RULES)
    assert set(GRANTS) == set(Permission), "every permission needs its holders in GRANTS"


@pytest.mark.parametrize("key", sorted(RULES))
def test_the_rule_agrees_with_what_the_route_declares(key: str) -> None:
    if key not in APP_ROUTES:
        pytest.fail(f"{key}: no such route")
    declared = declared_access(APP_ROUTES[key])
    assert declared == RULES[key].access, f"{key}: the route declares {declared}, the rule says {RULES[key]}"


@pytest.mark.parametrize("identity", sorted(ACTOR_SPECS))
def test_the_grants_are_the_roles_permissions(identity: str) -> None:
    role = ACTOR_SPECS[identity][0]
    held = {permission for permission, holders in GRANTS.items() if identity in holders}
    assert held == set(ROLE_PERMISSIONS[role])


# --- 3: every route as every identity -------------------------------------------------------------

#: A column a read may write (an API token's last use): left out of "nothing changed".
VOLATILE = frozenset({("api_tokens", "last_used_at")})


def _text(column: Column[Any], dialect: str) -> Any:
    if isinstance(column.type, LargeBinary):
        return func.hex(column) if dialect == "sqlite" else func.encode(column, "hex")
    return cast(column, String)


def _row_text(table: Table, dialect: str) -> Any:
    """One text per row of the table: its columns, NULL marked, joined by `||` (portable SQL)."""
    columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
    parts: list[Any] = [func.coalesce(_text(c, dialect), "\u2205") for c in columns]
    row: Any = reduce(lambda a, b: a.op("||")("|").op("||")(b), parts)
    return select(literal(table.name), row)


@cache
def _state_query(dialect: str) -> Any:
    return union_all(*(_row_text(table, dialect) for table in Base.metadata.sorted_tables))


def database_state(db: Session) -> list[tuple[str, str]]:
    """Every row of every table as text, sorted (one query: it runs after every refused write)."""
    query = _state_query(db.get_bind().dialect.name)
    return sorted((name, text) for name, text in db.execute(query))


@dataclass
class Matrix:
    db: Session
    world: World
    client: TestClient
    baseline: list[tuple[str, str]]


@pytest.fixture(scope="module")
def matrix(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """The world seeded once per backend in a transaction rolled back after the module, and the
    application on it (each request a savepoint, as in tests/conftest.py)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("matrix"), secret_key="matrix-secret", database_url="sqlite://"
    )
    connection = engine.connect()
    outer = connection.begin()
    db = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    app = app_on_session(db, engine, settings)
    with pytest.MonkeyPatch.context() as patch:
        # Argon2 at its cost for real passwords would be most of this module's time (sign-in,
        # password changes, new accounts); the matrix tests who may call, not the hash.
        patch.setattr(security, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        try:
            world = access_world.build(db, settings)
            db.execute(update(User).values(password_hash=security.hash_password(TEST_PASSWORD)))
            db.expire_all()
            with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
                yield Matrix(db, world, client, database_state(db))
        finally:
            db.close()
            outer.rollback()
            connection.close()


@pytest.fixture
def isolated(matrix: Matrix) -> Iterator[Matrix]:
    """One case: whatever its request changes is rolled back after it."""
    savepoint = matrix.db.begin_nested()
    try:
        yield matrix
    finally:
        savepoint.rollback()
        matrix.db.expire_all()
        matrix.client.cookies.clear()


def send(matrix: Matrix, call: Call, identity: str) -> Response:
    """The call as the identity: a session cookie on console pages, an API token elsewhere."""
    headers: dict[str, str] = {}
    if identity != ANONYMOUS:
        known = matrix.world.identities[identity]
        if call.url.startswith("/console"):
            headers["Cookie"] = f"{SESSION_COOKIE}={known.session}"
        else:
            headers["Authorization"] = f"Bearer {known.token}"
    response: Response = matrix.client.request(
        call.method, call.url, params=call.params, json=call.json, files=call.files, headers=headers
    )
    return response


def assert_refused(response: Response, call: Call, status: int, what: str) -> None:
    if call.url.startswith("/console"):
        if status == 401:
            assert response.status_code == 303, what
            assert response.headers["location"] == f"/console/login?next={quote(call.url)}", what
            return
        assert response.status_code == status, what
        assert response.headers["content-type"].startswith("text/html"), what
        return
    if status == EMPTY:
        assert response.status_code == 200, what
        assert response.json().get("total", 0) == 0, what
        assert not response.json().get("entry"), what
        return
    assert response.status_code == status, what
    assert response.headers["content-type"].startswith(PROBLEM), what
    body = response.json()
    assert body["status"] == status, what
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer", what
    if status == 422:  # refused line by line: each error names its field, and the scope is why
        assert body["errors"], what
        assert all(error["field"] for error in body["errors"]), what
        assert all("may not" in e["message"] or "scope" in e["message"] for e in body["errors"]), what


def assert_shows_the_scope(
    response: Response, call: Call, matrix: Matrix, key: str, identity: str, target: str | None, what: str
) -> None:
    assert call.shows is not None
    shown = SHOWN[key]
    seeded = seeded_places(matrix.world, shown.seeded, target)
    expected = {place for place in seeded if reaches(identity, shown.reach, place)}
    if shown.only_with is not None and identity not in GRANTS[shown.only_with]:
        expected = set()
    else:
        assert expected, f"{what}: the world seeds nothing this caller may see; the check would be empty"
    assert call.shows(response, matrix.world) == expected, what


@pytest.mark.slow  # about 3,500 requests over both backends
@pytest.mark.parametrize(("key", "identity", "target"), list(_cases()))
def test_route_access(isolated: Matrix, key: str, identity: str, target: str | None) -> None:
    rule = RULES.get(key)
    assert rule is not None, f"{key} has no rule in RULES"
    matrix = isolated
    call = CALLS[key](matrix.world, identity, target)
    refusal = expected_refusal(rule, identity, target)
    response = send(matrix, call, identity)
    what = f"{key} as {identity} on {target} ({rule}): {response.status_code} {response.text[:600]}"
    if refusal is not None:
        assert_refused(response, call, refusal, what)
        if call.method not in ("GET", "HEAD"):
            assert database_state(matrix.db) == matrix.baseline, f"{what}: a refused write changed data"
        return
    assert response.status_code == call.ok, what
    if call.shows is not None:
        assert_shows_the_scope(response, call, matrix, key, identity, target, what)
    if call.verify is not None:
        call.verify(response, matrix.world, identity)


# --- 4. a filter never reaches past the scope -------------------------------------------------------

NARROW = ("fp_tha", "fp_lao", "manager_tha", "clinician_tha")
VALUES = {"member": ("THA", "LAO"), "facility": (RAJAVITHI, CHIANG_MAI, MAHOSOT)}


@dataclass(frozen=True)
class Pry:
    """A scoped list asked for one member's or one facility's rows (`{member}`, `{facility}`)."""

    key: str
    params: dict[str, str]
    shows: Callable[[Response, World], set[Place]] | None = None  # when the filter changes the rows' kind
    shown: Shown | None = None


PRYING: tuple[Pry, ...] = (
    *(
        Pry(key, {name: "{facility}" if name == "facility" else "{member}"})
        for key in ("GET /api/v1/stock/events", "GET /api/v1/stock/balances", "GET /api/v1/stock/lots")
        for name in ("facility", "jurisdiction")
    ),
    Pry("GET /api/v1/pledges", {"jurisdiction": "{member}"}),
    Pry("GET /api/v1/stock/trends", {"facility": "{facility}"}),
    Pry("GET /api/v1/stock/trends", {"jurisdiction": "{member}"}),
    Pry("GET /api/v1/indicators", {"jurisdiction": "{member}"}),
    Pry(
        "GET /api/v1/indicators",
        {"level": "facility", "facility": "{facility}"},
        facility_indicators,
        Shown(F, "stock"),
    ),
    Pry("GET /api/v1/needs", {"facility": "{facility}"}),
    Pry("GET /api/v1/needs", {"jurisdiction": "{member}"}),
    Pry("GET /api/v1/logistics/shipments", {"member": "{member}"}),
    Pry("GET /console/shipments", {"member": "{member}"}),
    Pry("GET /console/needs", {"member": "{member}"}),
)


def _prying_cases() -> Iterator[Any]:
    for pry in PRYING:
        [(name, template)] = [(n, t) for n, t in pry.params.items() if t.startswith("{")]
        kind = template.strip("{}")
        for value in VALUES[kind]:
            params = {**pry.params, name: value}
            for identity in NARROW:
                query = "&".join(f"{k}={v}" for k, v in params.items())
                yield pytest.param(pry, params, (kind, value), identity, id=f"{pry.key}?{query}[{identity}]")


@pytest.mark.slow
@pytest.mark.parametrize(("pry", "params", "asked", "identity"), list(_prying_cases()))
def test_a_filter_never_reaches_past_the_scope(
    isolated: Matrix, pry: Pry, params: dict[str, str], asked: tuple[str, str], identity: str
) -> None:
    """Asked for another member's or facility's rows, a scoped list shows none of them (or refuses)."""
    matrix = isolated
    call = CALLS[pry.key](matrix.world, identity, None)
    call = replace(call, params={**call.params, **params})
    response = send(matrix, call, identity)
    what = f"{pry.key} {params} as {identity}: {response.status_code} {response.text[:400]}"
    if response.status_code in (403, 404):
        assert_refused(response, call, response.status_code, what)
        return
    assert response.status_code == 200, what
    shown = pry.shown or SHOWN[pry.key]
    kind, value = asked
    index = 0 if kind == "member" else 1
    seeded = seeded_places(matrix.world, shown.seeded, None)
    expected = {p for p in seeded if p[index] == value and reaches(identity, shown.reach, p)}
    shows = pry.shows or call.shows
    assert shows is not None
    assert shows(response, matrix.world) == expected, what


# --- 5. the regional reserve is the region's, not its host member's --------------------------------

HOSTED_DEPOT = "RRD-THA-CHAINAT"
DISPOSALS: dict[str, tuple[Call, int]] = {
    "write-off": (
        Call(
            "POST",
            "/api/v1/stock/events",
            json={
                "facility": HOSTED_DEPOT,
                "product": AGRDT,
                "lot_number": "RRS-CHAINAT-01",
                "kind": "write_off",
                "quantity": 900,
                "reason": "damaged in storage",
            },
        ),
        422,
    ),
    "pledge": (
        Call(
            "POST",
            "/api/v1/pledges",
            json={
                "facility": HOSTED_DEPOT,
                "product": AGRDT,
                "quantity": 500,
                "valid_from": date.today().isoformat(),
                "valid_to": (date.today() + timedelta(days=30)).isoformat(),
            },
        ),
        403,
    ),
    "make-it-national": (
        Call("PATCH", f"/api/v1/facilities/{HOSTED_DEPOT}", json={"kind": "national_warehouse"}),
        403,
    ),
}


def _host_a_depot(matrix: Matrix) -> None:
    """A regional reserve depot in Thailand (DELSA Chainat) holding 1,000 Ag-RDT kits."""
    depot = Facility(
        code=HOSTED_DEPOT,
        jurisdiction_id=matrix.world.member_ids["THA"],
        kind=FacilityKind.REGIONAL_RESERVE_DEPOT,
        name="DELSA Chainat",
        latitude=15.18,
        longitude=100.12,
        time_zone="Asia/Bangkok",
    )
    matrix.db.add(depot)
    matrix.db.flush()
    receive_stock(matrix.db, depot, matrix.world.product_ids[AGRDT], "RRS-CHAINAT-01", 1000, date.today())
    matrix.db.flush()


@pytest.mark.parametrize("disposal", DISPOSALS)
def test_the_coordinator_disposes_of_a_hosted_depots_stock(isolated: Matrix, disposal: str) -> None:
    """The control for the test below: the calls are valid, and the region's coordinator may; a
    pledge of the reserve is refused even to the region's admin (its stock is the region's already)."""
    _host_a_depot(isolated)
    call, _ = DISPOSALS[disposal]
    identity = "admin" if disposal == "pledge" else "coordinator"  # the coordinator pledges nothing
    response = send(isolated, call, identity)
    if disposal == "pledge":
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "facility"
    else:
        assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize("disposal", DISPOSALS)
def test_the_host_members_focal_point_may_not_dispose_of_the_regional_reserve(
    isolated: Matrix, disposal: str
) -> None:
    _host_a_depot(isolated)
    before = database_state(isolated.db)
    call, status = DISPOSALS[disposal]
    response = send(isolated, call, "fp_tha")
    assert_refused(response, call, status, f"{disposal}: {response.status_code} {response.text[:300]}")
    assert database_state(isolated.db) == before
