"""Who may do what, role by role, over the REST API: reads, registry writes, CSV imports, user
administration, the login audit and API tokens.

Every refused request is checked twice: its status (and problem+json body), and the state it left
behind (the row unchanged or absent, the listing free of another member's data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Role
from healthmesh.accounts.models import ApiToken, LoginAttempt, User
from healthmesh.accounts.security import new_token, token_digest
from healthmesh.db import utcnow
from healthmesh.registry.enums import AuthorisationStatus
from healthmesh.registry.models import (
    Authorisation,
    Facility,
    Jurisdiction,
    Product,
    RecognitionAgreement,
)
from tests.conftest import ACTOR_SPECS, Actor, Region

PROBLEM = "application/problem+json"
PROBLEM_KEYS = frozenset({"type", "title", "status", "detail", "instance", "errors"})
ROLES: tuple[str, ...] = tuple(ACTOR_SPECS)
REGION_WIDE = ("admin", "coordinator", "auditor")
NEW_PASSWORD = "Mekong-river-delta-2024"


# --- helpers -------------------------------------------------------------------------------------


def _problem(response: Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem of this status and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _expect(response: Response, status: int) -> None:
    """Assert the status; refusals and failures must be problem+json."""
    if status >= 400:
        _problem(response, status)
    else:
        assert response.status_code == status, response.text


def _count(db: Session, model: type[Any], *where: Any) -> int:
    return db.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _facility(db: Session, code: str) -> Facility | None:
    db.expire_all()
    return db.scalar(select(Facility).where(Facility.code == code))


def _user(db: Session, username: str) -> User | None:
    db.expire_all()
    return db.scalar(select(User).where(User.username == username))


def _token_of(db: Session, actor: Actor) -> ApiToken:
    token = db.scalar(select(ApiToken).where(ApiToken.user_id == actor.principal.user_id))
    assert token is not None
    return token


def _csv(*lines: str) -> dict[str, tuple[str, str, str]]:
    return {"file": ("f.csv", "\n".join(lines) + "\n", "text/csv")}


def _status(role: str, allowed: set[str] | frozenset[str], ok: int) -> int:
    return ok if role in allowed else 403


# --- 1. reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    url: str
    params: dict[str, str]
    extract: Callable[[Response], object]
    expected: object


def _codes(key: str) -> Callable[[Response], object]:
    return lambda response: sorted(item[key] for item in response.json()["items"])


READS: dict[str, Read] = {
    "jurisdictions": Read("/api/v1/jurisdictions", {}, _codes("iso3"), ["LAO", "SGP", "THA"]),
    "jurisdiction": Read("/api/v1/jurisdictions/LAO", {}, lambda r: r.json()["capital"], "Vientiane"),
    "facilities": Read(
        "/api/v1/facilities",
        {},
        _codes("code"),
        ["LAO-HO-0001", "SGP-HO-0001", "THA-HO-0001", "THA-HO-0002"],
    ),
    "facility": Read("/api/v1/facilities/SGP-HO-0001", {}, lambda r: r.json()["icu_beds"], 80),
    "products": Read(
        "/api/v1/products", {}, _codes("code"), ["BME-VENT-ICU", "DX-AGRDT-25", "VAC-COMIRNATY"]
    ),
    "product": Read("/api/v1/products/DX-AGRDT-25", {}, lambda r: r.json()["pack_size"], 25),
    "authorisations": Read(
        "/api/v1/authorisations",
        {"jurisdiction": "THA"},
        _codes("product"),
        ["DX-AGRDT-25", "VAC-COMIRNATY"],
    ),
    "recognitions": Read(
        "/api/v1/recognitions", {"jurisdiction": "LAO"}, _codes("recognised_authority"), ["THA", "WHO-EUL"]
    ),
    "eligibility": Read(
        "/api/v1/eligibility",
        {"product": "VAC-COMIRNATY", "jurisdiction": "LAO", "date": "2022-01-01"},
        lambda r: (r.json()["allowed"], r.json()["basis"], r.json()["authority"]),
        (True, "recognition", "WHO-EUL"),
    ),
    "facilities-export": Read(
        "/api/v1/facilities/export.csv", {}, lambda r: r.text.count("\n"), 5
    ),  # header + 4 facilities
}


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_the_registry(
    client: TestClient, actors: dict[str, Actor], role: str, read: str
) -> None:
    spec = READS[read]
    response = client.get(spec.url, params=spec.params, headers=actors[role].headers)
    assert response.status_code == 200, response.text
    assert spec.extract(response) == spec.expected


@pytest.mark.parametrize("read", READS)
def test_unauthenticated_read_is_a_401_problem(client: TestClient, region: Region, read: str) -> None:
    spec = READS[read]
    response = client.get(spec.url, params=spec.params)
    body = _problem(response, 401)
    assert body["type"] == "urn:healthmesh:problem:unauthenticated"
    assert response.headers["www-authenticate"] == "Bearer"
    assert "items" not in body


def _bad_credentials(case: str, db: Session, actors: dict[str, Actor]) -> dict[str, str]:
    clinician = actors["clinician_tha"]
    if case == "garbage-token":
        return {"Authorization": f"Bearer {new_token('at')}"}
    if case == "truncated-token":
        return {"Authorization": f"Bearer {clinician.token[:-4]}"}
    if case == "basic-scheme":
        return {"Authorization": "Basic Y2xpbmljaWFuLnRoYTpjb3JyZWN0LWhvcnNl"}
    if case == "empty-bearer":
        return {"Authorization": "Bearer "}
    if case == "revoked-token":
        _token_of(db, clinician).revoked_at = utcnow()
    elif case == "expired-token":
        _token_of(db, clinician).expires_at = utcnow() - timedelta(minutes=1)
    elif case == "deactivated-user":
        user = db.get(User, clinician.principal.user_id)
        assert user is not None
        user.active = False
    else:  # pragma: no cover - a typo in the table
        raise AssertionError(case)
    db.flush()
    return clinician.headers


@pytest.mark.parametrize(
    "case",
    [
        "garbage-token",
        "truncated-token",
        "basic-scheme",
        "empty-bearer",
        "revoked-token",
        "expired-token",
        "deactivated-user",
    ],
)
def test_bad_or_revoked_credentials_get_401(
    client: TestClient, db: Session, actors: dict[str, Actor], case: str
) -> None:
    assert client.get("/api/v1/products", headers=actors["clinician_tha"].headers).status_code == 200
    headers = _bad_credentials(case, db, actors)
    body = _problem(client.get("/api/v1/products", headers=headers), 401)
    assert body["type"] == "urn:healthmesh:problem:unauthenticated"
    assert "items" not in body


SIRIRAJ = {
    "code": "THA-HO-0100",
    "jurisdiction": "THA",
    "kind": "hospital",
    "name": "Siriraj Hospital",
    "latitude": 13.759,
    "longitude": 100.485,
    "time_zone": "Asia/Bangkok",
    "cold_chain_2_8": True,
    "icu_beds": 110,
}


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        pytest.param("POST", "/api/v1/facilities", SIRIRAJ, id="create-facility"),
        pytest.param("POST", "/api/v1/facilities", {}, id="create-facility-invalid-body"),
        pytest.param("PATCH", "/api/v1/facilities/THA-HO-0001", {"icu_beds": 0}, id="patch-facility"),
        pytest.param("GET", "/api/v1/users", None, id="list-users"),
        pytest.param("GET", "/api/v1/me/tokens", None, id="list-tokens"),
        pytest.param("GET", "/api/v1/audit/login-attempts", None, id="login-audit"),
    ],
)
def test_unauthenticated_writes_and_private_reads_are_401(
    client: TestClient, db: Session, region: Region, method: str, url: str, body: dict[str, Any] | None
) -> None:
    response = client.request(method, url, json=body)
    _problem(response, 401)
    assert _facility(db, "THA-HO-0100") is None
    rajavithi = _facility(db, "THA-HO-0001")
    assert rajavithi is not None
    assert rajavithi.icu_beds == 60


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_its_own_profile(client: TestClient, actors: dict[str, Actor], role: str) -> None:
    response = client.get("/api/v1/me", headers=actors[role].headers)
    assert response.status_code == 200, response.text
    body = response.json()
    role_, iso3, facility = ACTOR_SPECS[role]
    assert (body["username"], body["role"], body["jurisdiction"], body["facility"]) == (
        role.replace("_", "."),
        role_.value,
        iso3,
        facility,
    )


# --- 2. registry writes --------------------------------------------------------------------------

JURISDICTION_WRITERS = frozenset({"admin", "coordinator"})
PRODUCT_WRITERS = frozenset({"admin", "coordinator"})
THA_FACILITY_CREATORS = frozenset({"admin", "coordinator", "fp_tha"})
THA_REGULATORS = frozenset({"admin", "fp_tha"})

VIET_NAM = {
    "iso3": "VNM",
    "name": "Viet Nam",
    "blocs": ["ASEAN"],
    "income_group": "lower_middle",
    "population": 98_858_950,
    "time_zones": ["Asia/Ho_Chi_Minh"],
    "capital": "Hanoi",
}

DEXAMETHASONE = {
    "code": "MED-DEXA-4MG",
    "name": "Dexamethasone sodium phosphate 4 mg/mL, 1 mL ampoule, box of 100",
    "category": "medicine",
    "unit_of_issue": "box",
    "pack_size": 100,
    "storage_condition": "ambient",
    "min_temp_c": 15,
    "max_temp_c": 30,
    "excursion_tolerance_minutes": 4320,
    "shelf_life_days": 730,
    "who_listing": "prequalified",
}


@pytest.mark.parametrize("role", ROLES)
def test_create_jurisdiction_by_role(
    client: TestClient, db: Session, actors: dict[str, Actor], role: str
) -> None:
    expected = _status(role, JURISDICTION_WRITERS, 201)
    response = client.post("/api/v1/jurisdictions", json=VIET_NAM, headers=actors[role].headers)
    _expect(response, expected)
    written = _count(db, Jurisdiction, Jurisdiction.iso3 == "VNM")
    assert written == (1 if expected == 201 else 0)
    assert _count(db, Jurisdiction) == 3 + written


@pytest.mark.parametrize("role", ROLES)
def test_patch_jurisdiction_by_role(
    client: TestClient, db: Session, actors: dict[str, Actor], role: str
) -> None:
    expected = _status(role, JURISDICTION_WRITERS, 200)
    response = client.patch(
        "/api/v1/jurisdictions/LAO",
        json={"population": 7_953_556, "capital": "Vientiane Capital"},
        headers=actors[role].headers,
    )
    _expect(response, expected)
    db.expire_all()
    lao = db.scalar(select(Jurisdiction).where(Jurisdiction.iso3 == "LAO"))
    assert lao is not None
    if expected == 200:
        assert (lao.population, lao.capital) == (7_953_556, "Vientiane Capital")
    else:
        assert (lao.population, lao.capital) == (7_664_993, "Vientiane")


@pytest.mark.parametrize("role", ROLES)
def test_create_product_by_role(client: TestClient, db: Session, actors: dict[str, Actor], role: str) -> None:
    expected = _status(role, PRODUCT_WRITERS, 201)
    response = client.post("/api/v1/products", json=DEXAMETHASONE, headers=actors[role].headers)
    _expect(response, expected)
    assert _count(db, Product, Product.code == "MED-DEXA-4MG") == (1 if expected == 201 else 0)


@pytest.mark.parametrize("role", ROLES)
def test_patch_product_by_role(client: TestClient, db: Session, actors: dict[str, Actor], role: str) -> None:
    expected = _status(role, PRODUCT_WRITERS, 200)
    response = client.patch(
        "/api/v1/products/VAC-COMIRNATY", json={"shelf_life_days": 540}, headers=actors[role].headers
    )
    _expect(response, expected)
    db.expire_all()
    product = db.scalar(select(Product).where(Product.code == "VAC-COMIRNATY"))
    assert product is not None
    assert product.shelf_life_days == (540 if expected == 200 else 270)


@pytest.mark.parametrize("role", ROLES)
def test_create_facility_in_thailand_by_role(
    client: TestClient, db: Session, actors: dict[str, Actor], role: str
) -> None:
    expected = _status(role, THA_FACILITY_CREATORS, 201)
    response = client.post("/api/v1/facilities", json=SIRIRAJ, headers=actors[role].headers)
    _expect(response, expected)
    siriraj = _facility(db, "THA-HO-0100")
    if expected == 201:
        assert response.json()["jurisdiction"] == "THA"
        assert siriraj is not None
        assert (siriraj.name, siriraj.icu_beds) == ("Siriraj Hospital", 110)
    else:
        assert siriraj is None
    assert _count(db, Facility) == (5 if expected == 201 else 4)


@pytest.mark.parametrize(
    ("role", "code", "expected"),
    [
        ("admin", "THA-HO-0001", 200),
        ("coordinator", "THA-HO-0001", 200),
        ("fp_tha", "THA-HO-0001", 200),
        ("manager_tha", "THA-HO-0001", 200),
        ("manager_tha", "THA-HO-0002", 403),
        ("fp_tha", "LAO-HO-0001", 403),
        ("fp_lao", "THA-HO-0001", 403),
        ("clinician_tha", "THA-HO-0001", 403),
        ("researcher", "THA-HO-0001", 403),
        ("auditor", "THA-HO-0001", 403),
    ],
)
def test_patch_facility_by_role_and_scope(
    client: TestClient, db: Session, actors: dict[str, Actor], role: str, code: str, expected: int
) -> None:
    before = _facility(db, code)
    assert before is not None
    beds_before, oxygen_before = before.icu_beds, before.oxygen_plant
    response = client.patch(
        f"/api/v1/facilities/{code}",
        json={"icu_beds": 75, "oxygen_plant": not oxygen_before},
        headers=actors[role].headers,
    )
    _expect(response, expected)
    after = _facility(db, code)
    assert after is not None
    if expected == 200:
        assert (after.icu_beds, after.oxygen_plant) == (75, not oxygen_before)
    else:
        assert (after.icu_beds, after.oxygen_plant) == (beds_before, oxygen_before)


VENTILATOR_IN_THA = {
    "product": "BME-VENT-ICU",
    "jurisdiction": "THA",
    "status": "authorised",
    "pathway": "abridged",
    "reference": "TFDA-MD-2024-0312",
    "valid_from": "2024-03-01",
}


def _ventilator_rows(db: Session, region: Region) -> int:
    return _count(
        db,
        Authorisation,
        Authorisation.product_id == region.products["BME-VENT-ICU"].id,
        Authorisation.jurisdiction_id == region.members["THA"].id,
    )


@pytest.mark.parametrize("role", ROLES)
def test_put_authorisation_for_thailand_by_role(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], role: str
) -> None:
    expected = _status(role, THA_REGULATORS, 200)
    before = _count(db, Authorisation)
    response = client.put("/api/v1/authorisations", json=VENTILATOR_IN_THA, headers=actors[role].headers)
    _expect(response, expected)
    if expected == 200:
        assert response.json()["reference"] == "TFDA-MD-2024-0312"
    assert _ventilator_rows(db, region) == (1 if expected == 200 else 0)
    assert _count(db, Authorisation) == before + (1 if expected == 200 else 0)


@pytest.mark.parametrize(("role", "expected"), [("fp_tha", 200), ("fp_lao", 403), ("coordinator", 403)])
def test_overwriting_an_existing_thai_decision_needs_thai_scope(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], role: str, expected: int
) -> None:
    """The same product, member and start date replaces the row: only THA's regulator may do it."""
    body = {
        "product": "DX-AGRDT-25",
        "jurisdiction": "THA",
        "status": "not_authorised",
        "pathway": "withdrawn",
        "valid_from": "2021-01-01",
    }
    response = client.put("/api/v1/authorisations", json=body, headers=actors[role].headers)
    _expect(response, expected)
    db.expire_all()
    row = db.scalar(
        select(Authorisation).where(
            Authorisation.product_id == region.products["DX-AGRDT-25"].id,
            Authorisation.jurisdiction_id == region.members["THA"].id,
        )
    )
    assert row is not None
    if expected == 200:
        assert (row.status, row.pathway) == (AuthorisationStatus.NOT_AUTHORISED, "withdrawn")
    else:
        assert (row.status, row.pathway) == (AuthorisationStatus.AUTHORISED, "full")


THA_RECOGNISES_WHO_PQ = {
    "jurisdiction": "THA",
    "recognised_authority": "WHO-PQ",
    "categories": ["vaccine", "medicine"],
    "valid_from": "2024-01-01",
    "note": "Abridged review of WHO-prequalified vaccines and medicines",
}


@pytest.mark.parametrize("role", ROLES)
def test_put_recognition_for_thailand_by_role(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], role: str
) -> None:
    expected = _status(role, THA_REGULATORS, 200)
    response = client.put("/api/v1/recognitions", json=THA_RECOGNISES_WHO_PQ, headers=actors[role].headers)
    _expect(response, expected)
    written = _count(
        db, RecognitionAgreement, RecognitionAgreement.jurisdiction_id == region.members["THA"].id
    )
    assert written == (1 if expected == 200 else 0)
    assert _count(db, RecognitionAgreement) == 2 + written


# --- 3. CSV import -------------------------------------------------------------------------------

FACILITY_HEADER = "code,jurisdiction,kind,name,latitude,longitude,time_zone,cold_chain_2_8,icu_beds"
SIRIRAJ_LINE = "THA-HO-0100,THA,hospital,Siriraj Hospital,13.759,100.485,Asia/Bangkok,true,110"
SETHATHIRATH_LINE = "LAO-HO-0002,LAO,hospital,Setthathirath Hospital,17.99,102.63,Asia/Vientiane,true,14"


def _assert_import_refused(response: Response, line: int) -> None:
    """Refused as a whole: 403, or 422 naming the line and a field."""
    if response.status_code == 403:
        _problem(response, 403)
        return
    body = _problem(response, 422)
    assert "nothing was imported" in body["detail"]
    assert [error["line"] for error in body["errors"]] == [line]
    assert all(error["field"] for error in body["errors"])


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", 200),
        ("coordinator", 200),
        ("fp_tha", 200),
        ("fp_lao", 422),
        ("manager_tha", 422),
        ("clinician_tha", 403),
        ("researcher", 403),
        ("auditor", 403),
    ],
)
def test_import_a_thai_facility_by_role(
    client: TestClient, db: Session, actors: dict[str, Actor], role: str, expected: int
) -> None:
    response = client.post(
        "/api/v1/facilities/import",
        files=_csv(FACILITY_HEADER, SIRIRAJ_LINE),
        headers=actors[role].headers,
    )
    if expected == 200:
        assert response.status_code == 200, response.text
        assert response.json() == {"kind": "facilities", "created": 1, "updated": 0}
        siriraj = _facility(db, "THA-HO-0100")
        assert siriraj is not None
        assert (siriraj.jurisdiction.iso3, siriraj.icu_beds) == ("THA", 110)
    else:
        assert response.status_code == expected
        _assert_import_refused(response, line=2)
        assert _facility(db, "THA-HO-0100") is None
    assert _count(db, Facility) == (5 if expected == 200 else 4)


def test_focal_point_import_with_one_foreign_line_writes_nothing(
    client: TestClient, db: Session, actors: dict[str, Actor]
) -> None:
    """fp_lao's own line 2 is fine, line 3 is Thailand's: the whole file is refused."""
    response = client.post(
        "/api/v1/facilities/import",
        files=_csv(FACILITY_HEADER, SETHATHIRATH_LINE, SIRIRAJ_LINE),
        headers=actors["fp_lao"].headers,
    )
    _assert_import_refused(response, line=3)
    if response.status_code == 422:
        assert "THA" in response.json()["errors"][0]["message"]
    assert _facility(db, "LAO-HO-0002") is None
    assert _facility(db, "THA-HO-0100") is None
    assert _count(db, Facility) == 4


@pytest.mark.parametrize(("code", "expected"), [("THA-HO-0001", 200), ("THA-HO-0002", 422)])
def test_facility_manager_imports_only_its_own_facility(
    client: TestClient, db: Session, actors: dict[str, Actor], code: str, expected: int
) -> None:
    before = _facility(db, code)
    assert before is not None
    beds, name = before.icu_beds, before.name
    line = f"{code},THA,hospital,{name},{before.latitude},{before.longitude},Asia/Bangkok,true,99"
    response = client.post(
        "/api/v1/facilities/import",
        files=_csv(FACILITY_HEADER, line),
        headers=actors["manager_tha"].headers,
    )
    after = _facility(db, code)
    assert after is not None
    if expected == 200:
        assert response.json() == {"kind": "facilities", "created": 0, "updated": 1}
        assert after.icu_beds == 99
    else:
        _assert_import_refused(response, line=2)
        assert after.icu_beds == beds


AUTHORISATION_CSV = (
    "product,jurisdiction,status,pathway,reference,valid_from",
    "BME-VENT-ICU,THA,authorised,abridged,TFDA-MD-2024-0312,2024-03-01",
)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("fp_tha", 200), ("admin", 200), ("fp_lao", 422), ("coordinator", 403), ("manager_tha", 403)],
)
def test_import_thai_authorisations_by_role(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor], role: str, expected: int
) -> None:
    response = client.post(
        "/api/v1/authorisations/import", files=_csv(*AUTHORISATION_CSV), headers=actors[role].headers
    )
    if expected == 200:
        assert response.json() == {"kind": "authorisations", "created": 1, "updated": 0}
    else:
        assert response.status_code == expected
        _assert_import_refused(response, line=2)
    assert _ventilator_rows(db, region) == (1 if expected == 200 else 0)


# --- 4. users ------------------------------------------------------------------------------------

ALL_USERNAMES = sorted(name.replace("_", ".") for name in ACTOR_SPECS)
THA_USERNAMES = ["clinician.tha", "fp.tha", "manager.tha"]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", ALL_USERNAMES),
        ("auditor", ALL_USERNAMES),
        ("coordinator", ALL_USERNAMES),
        ("fp_tha", THA_USERNAMES),
        ("fp_lao", ["fp.lao"]),
        ("manager_tha", None),
        ("clinician_tha", None),
        ("researcher", None),
    ],
)
def test_list_users_by_role_and_scope(
    client: TestClient, db: Session, actors: dict[str, Actor], role: str, expected: list[str] | None
) -> None:
    response = client.get("/api/v1/users", params={"limit": 500}, headers=actors[role].headers)
    if expected is None:
        body = _problem(response, 403)
        assert "items" not in body
        return
    assert response.status_code == 200, response.text
    page = response.json()
    usernames = [user["username"] for user in page["items"]]
    assert usernames == expected
    assert page["total"] == len(expected)
    if role == "fp_tha":
        assert {user["jurisdiction"] for user in page["items"]} == {"THA"}
        assert "fp.lao" not in response.text
        tha = actors["fp_tha"].principal.jurisdiction_id
        assert tha is not None
        assert page["total"] == _count(db, User, User.jurisdiction_id == tha) == 3
        first = client.get("/api/v1/users", params={"limit": 1}, headers=actors[role].headers).json()
        assert (len(first["items"]), first["total"]) == (1, 3)
        admins = client.get("/api/v1/users", params={"role": "admin"}, headers=actors[role].headers).json()
        assert (admins["items"], admins["total"]) == ([], 0)
        focal = client.get(
            "/api/v1/users", params={"role": "national_focal_point"}, headers=actors[role].headers
        ).json()
        assert [user["username"] for user in focal["items"]] == ["fp.tha"]
        assert focal["total"] == 1


@pytest.mark.parametrize(
    ("role", "username", "expected"),
    [
        ("admin", "fp.lao", 200),
        ("auditor", "fp.lao", 200),
        ("coordinator", "fp.lao", 200),
        ("fp_tha", "manager.tha", 200),
        ("fp_tha", "fp.lao", 404),
        ("fp_tha", "admin", 404),
        ("fp_lao", "clinician.tha", 404),
        ("manager_tha", "clinician.tha", 403),
        ("clinician_tha", "manager.tha", 403),
        ("researcher", "fp.lao", 403),
    ],
)
def test_get_user_by_role_and_scope(
    client: TestClient, actors: dict[str, Actor], role: str, username: str, expected: int
) -> None:
    response = client.get(f"/api/v1/users/{username}", headers=actors[role].headers)
    _expect(response, expected)
    if expected == 200:
        assert response.json()["username"] == username
    else:
        assert set(response.json()) <= PROBLEM_KEYS
        assert "national_focal_point" not in response.text
        assert "@" not in response.text


def _new_user(
    username: str, role: Role, iso3: str | None = None, facility: str | None = None
) -> dict[str, Any]:
    return {
        "username": username,
        "password": NEW_PASSWORD,
        "full_name": username.replace(".", " ").title(),
        "email": f"{username}@health.example.org",
        "role": role.value,
        "jurisdiction": iso3,
        "facility": facility,
    }


@pytest.mark.parametrize(
    ("actor", "payload", "expected"),
    [
        pytest.param("admin", _new_user("w.admin", Role.ADMIN), 201, id="admin-creates-admin"),
        pytest.param(
            "admin", _new_user("w.coord", Role.REGIONAL_COORDINATOR), 201, id="admin-creates-coordinator"
        ),
        pytest.param("admin", _new_user("w.audit", Role.AUDITOR), 201, id="admin-creates-auditor"),
        pytest.param(
            "admin", _new_user("w.res", Role.RESEARCHER, "SGP"), 201, id="admin-creates-national-researcher"
        ),
        pytest.param(
            "admin", _new_user("w.fp", Role.NATIONAL_FOCAL_POINT, "SGP"), 201, id="admin-creates-focal-point"
        ),
        pytest.param(
            "admin",
            _new_user("w.mgr", Role.FACILITY_MANAGER, facility="LAO-HO-0001"),
            201,
            id="admin-creates-manager",
        ),
        pytest.param(
            "admin",
            _new_user("w.nurse", Role.CLINICIAN, facility="SGP-HO-0001"),
            201,
            id="admin-creates-clinician",
        ),
        pytest.param(
            "fp_tha",
            _new_user("s.kittisak", Role.CLINICIAN, "THA", "THA-HO-0002"),
            201,
            id="fp_tha-creates-clinician-in-THA",
        ),
        pytest.param(
            "fp_tha",
            _new_user("s.kittisak", Role.RESEARCHER, "THA"),
            201,
            id="fp_tha-creates-researcher-in-THA",
        ),
        pytest.param(
            "fp_tha",
            _new_user("s.kittisak", Role.CLINICIAN, facility="LAO-HO-0001"),
            403,
            id="fp_tha-creates-clinician-in-LAO",
        ),
        pytest.param(
            "fp_tha",
            _new_user("s.kittisak", Role.NATIONAL_FOCAL_POINT, "LAO"),
            403,
            id="fp_tha-creates-focal-point-in-LAO",
        ),
        pytest.param(
            "fp_tha",
            _new_user("s.kittisak", Role.REGIONAL_COORDINATOR),
            403,
            id="fp_tha-creates-coordinator",
        ),
        pytest.param("fp_tha", _new_user("s.kittisak", Role.ADMIN), 403, id="fp_tha-creates-admin"),
        pytest.param(
            "fp_tha",
            _new_user("s.kittisak", Role.RESEARCHER),
            403,
            id="fp_tha-creates-region-wide-researcher",
        ),
        pytest.param("fp_tha", _new_user("s.kittisak", Role.AUDITOR), 403, id="fp_tha-creates-auditor"),
        pytest.param(
            "fp_lao",
            _new_user("s.kittisak", Role.CLINICIAN, facility="THA-HO-0002"),
            403,
            id="fp_lao-creates-clinician-in-THA",
        ),
        pytest.param(
            "coordinator",
            _new_user("s.kittisak", Role.CLINICIAN, facility="THA-HO-0002"),
            403,
            id="coordinator-creates-clinician",
        ),
        pytest.param(
            "auditor",
            _new_user("s.kittisak", Role.CLINICIAN, facility="THA-HO-0002"),
            403,
            id="auditor-creates-clinician",
        ),
        pytest.param(
            "manager_tha",
            _new_user("s.kittisak", Role.CLINICIAN, facility="THA-HO-0001"),
            403,
            id="manager-creates-clinician-at-own-facility",
        ),
        pytest.param(
            "clinician_tha",
            _new_user("s.kittisak", Role.CLINICIAN, facility="THA-HO-0001"),
            403,
            id="clinician-creates-clinician",
        ),
        pytest.param(
            "researcher", _new_user("s.kittisak", Role.RESEARCHER), 403, id="researcher-creates-researcher"
        ),
    ],
)
def test_create_user_by_role_and_scope(
    client: TestClient,
    db: Session,
    actors: dict[str, Actor],
    actor: str,
    payload: dict[str, Any],
    expected: int,
) -> None:
    before = _count(db, User)
    response = client.post("/api/v1/users", json=payload, headers=actors[actor].headers)
    _expect(response, expected)
    created = _user(db, payload["username"])
    if expected == 201:
        body = response.json()
        assert (body["role"], body["facility"]) == (payload["role"], payload["facility"])
        assert "password" not in body
        assert "password_hash" not in body
        assert created is not None
        assert created.role.value == payload["role"]
        assert created.facility_code == payload["facility"]
        if payload["jurisdiction"] is not None:
            assert created.jurisdiction_iso3 == payload["jurisdiction"]
        assert _count(db, User) == before + 1
    else:
        assert created is None
        assert _count(db, User) == before


def test_created_user_can_sign_in_with_the_password_given(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    payload = _new_user("s.kittisak", Role.CLINICIAN, "THA", "THA-HO-0002")
    assert client.post("/api/v1/users", json=payload, headers=actors["fp_tha"].headers).status_code == 201
    login = client.post("/api/v1/auth/login", json={"username": "s.kittisak", "password": NEW_PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["user"]["facility"] == "THA-HO-0002"


@pytest.mark.parametrize(
    ("actor", "username", "patch", "expected"),
    [
        pytest.param("admin", "fp.lao", {"active": False}, 200, id="admin-deactivates-fp.lao"),
        pytest.param("fp_tha", "fp.lao", {"active": False}, 404, id="fp_tha-deactivates-fp.lao"),
        pytest.param("fp_tha", "admin", {"active": False}, 404, id="fp_tha-deactivates-admin"),
        pytest.param("fp_tha", "manager.tha", {"active": False}, 200, id="fp_tha-deactivates-manager.tha"),
        pytest.param("fp_lao", "manager.tha", {"active": False}, 404, id="fp_lao-deactivates-manager.tha"),
        pytest.param("coordinator", "fp.lao", {"active": False}, 403, id="coordinator-deactivates-fp.lao"),
        pytest.param("auditor", "fp.lao", {"active": False}, 403, id="auditor-deactivates-fp.lao"),
        pytest.param(
            "manager_tha", "clinician.tha", {"active": False}, 403, id="manager-deactivates-own-clinician"
        ),
        pytest.param(
            "fp_tha",
            "clinician.tha",
            {"facility": "LAO-HO-0001"},
            403,
            id="fp_tha-moves-clinician-to-LAO",
        ),
        pytest.param(
            "fp_tha",
            "clinician.tha",
            {"role": "regional_coordinator"},
            403,
            id="fp_tha-promotes-clinician-to-coordinator",
        ),
        pytest.param("fp_tha", "fp.tha", {"role": "admin"}, 403, id="fp_tha-promotes-itself-to-admin"),
        pytest.param(
            "fp_tha",
            "clinician.tha",
            {"role": "researcher", "jurisdiction": None},
            403,
            id="fp_tha-makes-clinician-a-region-wide-researcher",
        ),
        pytest.param(
            "fp_tha",
            "manager.tha",
            {"facility": "LAO-HO-0001", "jurisdiction": "LAO"},
            403,
            id="fp_tha-moves-manager-to-LAO",
        ),
    ],
)
def test_patch_user_by_role_and_scope(
    client: TestClient,
    db: Session,
    actors: dict[str, Actor],
    actor: str,
    username: str,
    patch: dict[str, Any],
    expected: int,
) -> None:
    before = _user(db, username)
    assert before is not None
    state = (before.active, before.role, before.jurisdiction_id, before.facility_id)
    response = client.patch(f"/api/v1/users/{username}", json=patch, headers=actors[actor].headers)
    _expect(response, expected)
    after = _user(db, username)
    assert after is not None
    if expected == 200:
        assert after.active is False
        assert response.json()["active"] is False
    else:
        assert (after.active, after.role, after.jurisdiction_id, after.facility_id) == state
        if expected == 404:
            assert set(response.json()) <= PROBLEM_KEYS


def test_deactivated_user_token_stops_working(client: TestClient, actors: dict[str, Actor]) -> None:
    fp_lao = actors["fp_lao"]
    assert client.get("/api/v1/me", headers=fp_lao.headers).status_code == 200
    response = client.patch("/api/v1/users/fp.lao", json={"active": False}, headers=actors["admin"].headers)
    assert response.status_code == 200, response.text
    _problem(client.get("/api/v1/me", headers=fp_lao.headers), 401)
    mine = client.get("/api/v1/users/fp.lao", headers=actors["admin"].headers).json()
    assert mine["active"] is False


# --- 5. login audit ------------------------------------------------------------------------------

AUDIT_READERS = frozenset({"admin", "auditor"})


@pytest.mark.parametrize("role", ROLES)
def test_login_audit_by_role(client: TestClient, db: Session, actors: dict[str, Actor], role: str) -> None:
    failed = client.post(
        "/api/v1/auth/login", json={"username": "fp.lao", "password": "not-the-password-at-all"}
    )
    _problem(failed, 401)
    assert _count(db, LoginAttempt, LoginAttempt.username == "fp.lao") == 1
    response = client.get("/api/v1/audit/login-attempts", headers=actors[role].headers)
    if role in AUDIT_READERS:
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == 1
        attempt = page["items"][0]
        assert (attempt["username"], attempt["succeeded"], attempt["reason"]) == (
            "fp.lao",
            False,
            "bad_credentials",
        )
    else:
        body = _problem(response, 403)
        assert "fp.lao" not in response.text
        assert "items" not in body


# --- 6. API tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_creates_and_lists_its_own_tokens(
    client: TestClient, db: Session, actors: dict[str, Actor], role: str
) -> None:
    headers = actors[role].headers
    created = client.post("/api/v1/me/tokens", json={"name": "nightly stock sync"}, headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    raw = body["token"]
    assert raw.startswith("hm_at_")
    assert body["prefix"] == raw[:12]
    stored = db.get(ApiToken, body["id"])
    assert stored is not None
    assert stored.user_id == actors[role].principal.user_id
    assert stored.token_hash == token_digest(raw)
    assert raw not in stored.token_hash

    listed = client.get("/api/v1/me/tokens", headers=headers)
    assert listed.status_code == 200, listed.text
    tokens = listed.json()
    assert [token["name"] for token in tokens] == ["test", "nightly stock sync"]
    assert all("token" not in token and "token_hash" not in token for token in tokens)
    own_ids = set(db.scalars(select(ApiToken.id).where(ApiToken.user_id == actors[role].principal.user_id)))
    assert {token["id"] for token in tokens} == own_ids

    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == 200
    assert me.json()["username"] == role.replace("_", ".")


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("admin", 200),
        ("coordinator", 404),
        ("auditor", 404),
        ("fp_tha", 404),
        ("manager_tha", 404),
        ("researcher", 404),
    ],
)
def test_revoking_another_users_token(
    client: TestClient, db: Session, actors: dict[str, Actor], actor: str, expected: int
) -> None:
    victim = actors["clinician_tha"]
    token_id = _token_of(db, victim).id
    response = client.delete(f"/api/v1/tokens/{token_id}", headers=actors[actor].headers)
    _expect(response, expected)
    db.expire_all()
    token = db.get(ApiToken, token_id)
    assert token is not None
    if expected == 200:
        assert response.json()["revoked_at"] is not None
        assert token.revoked_at is not None
        _problem(client.get("/api/v1/me", headers=victim.headers), 401)
    else:
        assert "prefix" not in response.json()
        assert token.revoked_at is None
        assert client.get("/api/v1/me", headers=victim.headers).status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_revoking_ones_own_token_then_it_gets_401(
    client: TestClient, actors: dict[str, Actor], role: str
) -> None:
    headers = actors[role].headers
    created = client.post("/api/v1/me/tokens", json={"name": "laptop"}, headers=headers).json()
    spare = {"Authorization": f"Bearer {created['token']}"}
    response = client.delete(f"/api/v1/tokens/{created['id']}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["revoked_at"] is not None
    _problem(client.get("/api/v1/products", headers=spare), 401)
    assert client.get("/api/v1/products", headers=headers).status_code == 200
    listed = {token["id"]: token for token in client.get("/api/v1/me/tokens", headers=headers).json()}
    assert listed[created["id"]]["revoked_at"] is not None


def test_revoking_an_unknown_token_is_404(client: TestClient, actors: dict[str, Actor]) -> None:
    _problem(client.delete("/api/v1/tokens/987654", headers=actors["admin"].headers), 404)


def test_token_with_past_expiry_is_refused(client: TestClient, db: Session, actors: dict[str, Actor]) -> None:
    before = _count(db, ApiToken)
    past = (utcnow() - timedelta(days=1)).isoformat()
    response = client.post(
        "/api/v1/me/tokens", json={"name": "stale", "expires_at": past}, headers=actors["researcher"].headers
    )
    body = _problem(response, 422)
    assert body["errors"][0]["field"] == "expires_at"
    assert _count(db, ApiToken) == before
