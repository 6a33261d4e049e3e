"""Registry over the REST API: listing, filtering, writing, and bad input as problem+json."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.registry.codes import make_gtin
from healthmesh.registry.models import Facility, Jurisdiction, Product
from tests.conftest import Actor, Region

PROBLEM = "application/problem+json"

NEW_PRODUCT = {
    "code": "PPE-MASK-MED",
    "gtin": make_gtin("0614141", 901),
    "name": "Medical mask, type IIR, box of 50",
    "category": "ppe",
    "unit_of_issue": "box",
    "pack_size": 50,
    "storage_condition": "ambient",
    "min_temp_c": 5,
    "max_temp_c": 35,
    "excursion_tolerance_minutes": 10080,
    "shelf_life_days": 1825,
}


def _count(db: Session, model: type) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


def test_list_jurisdictions_filters_and_paginates(client: TestClient, actors: dict[str, Actor]) -> None:
    headers = actors["clinician_tha"].headers
    page = client.get("/api/v1/jurisdictions", params={"limit": 2}, headers=headers).json()
    assert page["total"] == 3
    assert [j["iso3"] for j in page["items"]] == ["LAO", "SGP"]
    second = client.get("/api/v1/jurisdictions", params={"limit": 2, "offset": 2}, headers=headers).json()
    assert [j["iso3"] for j in second["items"]] == ["THA"]
    high = client.get("/api/v1/jurisdictions", params={"income_group": "high"}, headers=headers).json()
    assert [j["iso3"] for j in high["items"]] == ["SGP"]
    asean = client.get("/api/v1/jurisdictions", params={"bloc": "asean"}, headers=headers).json()
    assert asean["total"] == 3
    eu = client.get("/api/v1/jurisdictions", params={"bloc": "EU"}, headers=headers).json()
    assert eu["total"] == 0
    found = client.get("/api/v1/jurisdictions", params={"q": "lao"}, headers=headers).json()
    assert [j["iso3"] for j in found["items"]] == ["LAO"]


def test_list_facilities_by_member_kind_and_capability(client: TestClient, actors: dict[str, Actor]) -> None:
    headers = actors["researcher"].headers
    tha = client.get("/api/v1/facilities", params={"jurisdiction": "THA"}, headers=headers).json()
    assert [f["code"] for f in tha["items"]] == ["THA-HO-0001", "THA-HO-0002"]
    ultra = client.get(
        "/api/v1/facilities", params={"capability": "cold_chain_minus70"}, headers=headers
    ).json()
    assert [f["code"] for f in ultra["items"]] == ["SGP-HO-0001"]
    bad = client.get("/api/v1/facilities", params={"capability": "teleporter"}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "capability"


def test_create_product_and_read_it_back(client: TestClient, actors: dict[str, Actor], db: Session) -> None:
    response = client.post("/api/v1/products", json=NEW_PRODUCT, headers=actors["coordinator"].headers)
    assert response.status_code == 201, response.text
    assert response.json()["gtin"] == NEW_PRODUCT["gtin"]
    got = client.get("/api/v1/products/PPE-MASK-MED", headers=actors["clinician_tha"].headers).json()
    assert got["pack_size"] == 50
    by_gtin = client.get(
        "/api/v1/products", params={"gtin": NEW_PRODUCT["gtin"][1:]}, headers=actors["clinician_tha"].headers
    ).json()
    assert [p["code"] for p in by_gtin["items"]] == ["PPE-MASK-MED"]


def test_wrong_gtin_check_digit_is_refused_naming_the_field(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    before = _count(db, Product)
    good = NEW_PRODUCT["gtin"]
    wrong = good[:-1] + str((int(good[-1]) + 1) % 10)
    response = client.post(
        "/api/v1/products", json={**NEW_PRODUCT, "gtin": wrong}, headers=actors["admin"].headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 422
    assert body["type"] == "urn:healthmesh:problem:invalid-input"
    assert body["errors"][0]["field"] == "gtin"
    assert "check digit" in body["errors"][0]["message"]
    assert _count(db, Product) == before


def test_unknown_iso_code_and_negative_population_are_refused(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    body = {
        "iso3": "XYZ",
        "name": "Nowhere",
        "income_group": "low",
        "population": -5,
        "time_zones": ["Asia/Bangkok"],
        "blocs": ["ASEAN"],
    }
    response = client.post("/api/v1/jurisdictions", json=body, headers=actors["admin"].headers)
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"iso3", "population"}
    assert _count(db, Jurisdiction) == 3


def test_unknown_time_zone_is_refused(client: TestClient, actors: dict[str, Actor]) -> None:
    body = {
        "iso3": "VNM",
        "name": "Viet Nam",
        "income_group": "lower_middle",
        "population": 1,
        "time_zones": ["Asia/Saigon_City"],
    }
    response = client.post("/api/v1/jurisdictions", json=body, headers=actors["admin"].headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "time_zones"


def test_facility_in_unknown_member_is_refused_and_nothing_written(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    before = _count(db, Facility)
    body = {
        "code": "VNM-HO-0001",
        "jurisdiction": "VNM",
        "kind": "hospital",
        "name": "Bach Mai Hospital",
        "latitude": 21.0,
        "longitude": 105.84,
        "time_zone": "Asia/Ho_Chi_Minh",
    }
    response = client.post("/api/v1/facilities", json=body, headers=actors["coordinator"].headers)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "jurisdiction", "message": "VNM is not a member of the region"}
    ]
    assert _count(db, Facility) == before


def test_date_range_that_ends_before_it_starts_is_refused(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    body = {
        "product": "DX-AGRDT-25",
        "jurisdiction": "THA",
        "status": "authorised",
        "valid_from": "2024-05-01",
        "valid_to": "2024-01-01",
    }
    response = client.put("/api/v1/authorisations", json=body, headers=actors["fp_tha"].headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "valid_to"


def test_unknown_product_in_authorisation_is_refused(client: TestClient, actors: dict[str, Actor]) -> None:
    body = {"product": "NOPE-1", "jurisdiction": "THA", "status": "authorised", "valid_from": "2024-05-01"}
    response = client.put("/api/v1/authorisations", json=body, headers=actors["fp_tha"].headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "product"


def test_update_facility_changes_only_given_fields(client: TestClient, actors: dict[str, Actor]) -> None:
    response = client.patch(
        "/api/v1/facilities/THA-HO-0002",
        json={"icu_beds": 32, "oxygen_plant": True},
        headers=actors["fp_tha"].headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["icu_beds"], body["oxygen_plant"], body["name"]) == (32, True, "Chiang Mai General Hospital")


def test_missing_item_is_a_problem_404(client: TestClient, actors: dict[str, Actor]) -> None:
    response = client.get("/api/v1/products/NOPE", headers=actors["admin"].headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["detail"] == "no product 'NOPE'"


def test_openapi_lists_the_registry(client: TestClient, region: Region) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/products", "/api/v1/eligibility", "/api/v1/facilities/import"} <= set(spec["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_home_page_shows_the_region_without_signing_in(client: TestClient, region: Region) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "Lao PDR" in response.text
    assert "71,702,435" in response.text
    assert "Content-Security-Policy" in response.headers
    assert "http://" not in response.text.replace("http://testserver", "")
    assert "https://" not in response.text


def test_healthz_reports_the_registry_size(client: TestClient, region: Region) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["registry"] == {"jurisdictions": 3, "facilities": 4, "products": 3}
