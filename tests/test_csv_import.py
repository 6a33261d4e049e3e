"""CSV import and export: whole-file validation, every bad line reported, nothing half-written."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.cli import OPERATOR
from healthmesh.errors import InvalidInput
from healthmesh.registry import transfer
from healthmesh.registry.codes import make_gtin
from healthmesh.registry.models import Facility, Product
from tests.conftest import Actor, Region

FACILITY_HEADER = "code,jurisdiction,kind,name,latitude,longitude,time_zone,cold_chain_2_8,icu_beds\n"


def _facility_rows(count: int) -> list[str]:
    return [
        f"THA-PC-{n:04d},THA,primary_care,Bang Khen Health Centre {n},{13.87 + n / 10000:.5f},100.60,"
        f"Asia/Bangkok,{'true' if n % 2 else 'false'},0\n"
        for n in range(1, count + 1)
    ]


def _upload(client: TestClient, kind: str, text: str, actor: Actor) -> tuple[int, dict[str, object]]:
    response = client.post(
        f"/api/v1/{kind}/import", files={"file": (f"{kind}.csv", text, "text/csv")}, headers=actor.headers
    )
    return response.status_code, response.json()


def _count(db: Session, model: type) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


def test_import_of_many_facilities_creates_them_all(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    status, body = _upload(
        client, "facilities", FACILITY_HEADER + "".join(_facility_rows(300)), actors["fp_tha"]
    )
    assert status == 200, body
    assert body == {"kind": "facilities", "created": 300, "updated": 0}
    assert _count(db, Facility) == 304
    assert db.scalar(select(Facility.cold_chain_2_8).where(Facility.code == "THA-PC-0003")) is True


def test_one_bad_line_in_a_large_file_changes_nothing_and_is_named(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    rows = _facility_rows(1000)
    rows[733] = rows[733].replace("Asia/Bangkok", "Asia/Bangkokk")  # line 735 of the file
    status, body = _upload(client, "facilities", FACILITY_HEADER + "".join(rows), actors["admin"])
    assert status == 422
    assert body["errors"] == [
        {"field": "time_zone", "message": "unknown IANA time zone 'Asia/Bangkokk'", "line": 735}
    ]
    assert _count(db, Facility) == 4


def test_every_bad_line_is_reported_with_line_and_field(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    text = FACILITY_HEADER + "".join(
        [
            "THA-PC-0001,THA,primary_care,Good Health Centre,13.8,100.6,Asia/Bangkok,true,0\n",
            "THA-PC-0002,XXX,primary_care,Unknown Member Centre,13.8,100.6,Asia/Bangkok,true,0\n",
            "THA-PC-0003,THA,spaceport,Wrong Kind,13.8,100.6,Asia/Bangkok,true,0\n",
            "THA-PC-0004,THA,primary_care,Off The Map,123.8,100.6,Asia/Bangkok,true,-3\n",
            "THA-PC-0001,THA,primary_care,Duplicate Of Line Two,13.8,100.6,Asia/Bangkok,true,0\n",
            "VNM-PC-0001,VNM,primary_care,Not A Member,21.0,105.8,Asia/Ho_Chi_Minh,true,0\n",
        ]
    )
    status, body = _upload(client, "facilities", text, actors["admin"])
    assert status == 422
    found = {(error["line"], error["field"]) for error in body["errors"]}
    assert found == {
        (3, "jurisdiction"),
        (4, "kind"),
        (5, "latitude"),
        (5, "icu_beds"),
        (6, "code"),
        (7, "jurisdiction"),
    }
    assert _count(db, Facility) == 4


def test_header_problems_are_reported_on_line_one(client: TestClient, actors: dict[str, Actor]) -> None:
    status, body = _upload(client, "products", "code,name,colour\nX1,Thing,red\n", actors["admin"])
    assert status == 422
    errors = {(e["line"], e["field"], e["message"]) for e in body["errors"]}
    assert (1, "colour", "unknown column") in errors
    assert (1, "category", "required column missing") in errors


def test_import_by_a_member_outside_its_scope_changes_nothing(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    text = FACILITY_HEADER + "".join(_facility_rows(3))
    status, body = _upload(client, "facilities", text, actors["fp_lao"])
    assert status == 422
    assert {e["line"] for e in body["errors"]} == {2, 3, 4}
    assert _count(db, Facility) == 4


def test_export_then_import_round_trips_every_list(
    client: TestClient, actors: dict[str, Actor], db: Session, region: Region
) -> None:
    headers = actors["admin"].headers
    for kind in transfer.KINDS:
        exported = client.get(f"/api/v1/{kind}/export.csv", headers=headers)
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert rows, kind
        status, body = _upload(client, kind, exported.text, actors["admin"])
        assert status == 200, (kind, body)
        assert body["created"] == 0
        assert body["updated"] == len(rows)
        again = client.get(f"/api/v1/{kind}/export.csv", headers=headers)
        assert again.text == exported.text, kind


def test_import_updates_by_natural_key(client: TestClient, actors: dict[str, Actor], db: Session) -> None:
    gtin = make_gtin("0614141", 777)
    header = (
        "code,gtin,name,category,unit_of_issue,pack_size,storage_condition,"
        "min_temp_c,max_temp_c,shelf_life_days\n"
    )
    first = header + f"CON-SYR-AD05,{gtin},AD syringe 0.5 ml,consumable,box,100,ambient,0,35,1825\n"
    assert _upload(client, "products", first, actors["coordinator"])[1]["created"] == 1
    second = header + f"CON-SYR-AD05,{gtin},AD syringe 0.5 ml,consumable,box,200,ambient,0,35,1825\n"
    assert _upload(client, "products", second, actors["coordinator"])[1]["updated"] == 1
    assert db.scalar(select(Product.pack_size).where(Product.code == "CON-SYR-AD05")) == 200


def test_template_has_the_documented_columns(client: TestClient, actors: dict[str, Actor]) -> None:
    response = client.get("/api/v1/jurisdictions/template.csv", headers=actors["clinician_tha"].headers)
    header = response.text.strip().split(",")
    assert header == [
        "iso3",
        "name",
        "blocs",
        "income_group",
        "population",
        "data_protection_regime",
        "time_zones",
        "capital",
    ]


def test_service_import_reports_all_lines(db: Session, region: Region) -> None:
    text = (
        "jurisdiction,recognised_authority,valid_from,valid_to\n"
        "THA,WHO-PQ,2024-01-01,2023-01-01\n"
        "THA,THA,2024-01-01,\n"
    )
    with pytest.raises(InvalidInput) as refused:
        transfer.import_csv(db, OPERATOR, transfer.KINDS["recognitions"], text)
    assert [(e.line, e.field) for e in refused.value.errors] == [(2, "valid_to"), (3, "recognised_authority")]
