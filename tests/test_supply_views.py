"""Pledges and the shareable pool, daily snapshots and trends, needs by CSV, and the stock CLI."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from healthmesh.cli import app
from healthmesh.db import make_engine, make_sessionmaker
from healthmesh.needs.models import Need
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility
from healthmesh.supply import snapshots
from healthmesh.supply.models import StockBalance, StockSnapshot
from tests.conftest import Actor, Region


def _post(client: TestClient, actor: Actor, **event: object) -> None:
    response = client.post(
        "/api/v1/stock/events", json={"product": "DX-AGRDT-25", **event}, headers=actor.headers
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def stocked(client: TestClient, actors: dict[str, Actor], db: Session, region: Region) -> None:
    depot = Facility(
        code="RRD-THA-CHAINAT",
        jurisdiction=region.members["THA"],
        kind=FacilityKind.REGIONAL_RESERVE_DEPOT,
        name="DELSA Chainat",
        latitude=15.18,
        longitude=100.12,
        time_zone="Asia/Bangkok",
        cold_chain_2_8=True,
    )
    db.add(depot)
    db.flush()
    admin = actors["admin"]
    _post(
        client,
        admin,
        facility="RRD-THA-CHAINAT",
        lot_number="R1",
        expiry_date="2027-12-31",
        kind="receipt",
        quantity=5000,
        occurred_at="2026-11-01",
    )
    _post(
        client,
        admin,
        facility="RRD-THA-CHAINAT",
        lot_number="R1",
        kind="reservation",
        quantity=1200,
        occurred_at="2026-11-02",
    )
    _post(
        client,
        admin,
        facility="THA-HO-0001",
        lot_number="A",
        expiry_date="2027-06-30",
        kind="receipt",
        quantity=800,
        occurred_at="2026-11-01",
    )
    _post(
        client,
        admin,
        facility="THA-HO-0001",
        lot_number="A",
        kind="issue",
        quantity=300,
        occurred_at="2026-11-10",
    )
    _post(
        client,
        admin,
        facility="LAO-HO-0001",
        lot_number="B",
        expiry_date="2026-11-20",
        kind="receipt",
        quantity=40,
        occurred_at="2026-11-01",
    )


def test_pledges_are_bounded_by_what_is_free_and_shown_apart(
    client: TestClient, actors: dict[str, Actor], stocked: None
) -> None:
    pledge = {
        "facility": "THA-HO-0001",
        "product": "DX-AGRDT-25",
        "quantity": 300,
        "valid_from": "2026-11-01",
        "valid_to": "2099-12-31",
        "note": "surplus after the dry season",
    }
    made = client.post("/api/v1/pledges", json=pledge, headers=actors["fp_tha"].headers)
    assert made.status_code == 201, made.text
    too_much = client.post(
        "/api/v1/pledges", json={**pledge, "quantity": 201}, headers=actors["fp_tha"].headers
    )
    assert too_much.status_code == 422
    assert "only 200 available to pledge" in too_much.json()["errors"][0]["message"]
    foreign = client.post("/api/v1/pledges", json=pledge, headers=actors["fp_lao"].headers)
    assert foreign.status_code == 403
    balance = client.get(
        "/api/v1/stock/balances", params={"facility": "THA-HO-0001"}, headers=actors["fp_tha"].headers
    ).json()["items"][0]
    assert (balance["on_hand"], balance["reserved"], balance["pledged"], balance["available"]) == (
        500,
        0,
        300,
        200,
    )
    pool = client.get("/api/v1/stock/shareable", headers=actors["coordinator"].headers).json()
    assert pool == [
        {
            "product": "DX-AGRDT-25",
            "product_name": "SARS-CoV-2 Ag-RDT, 25 tests",
            "reserve": 3800,
            "pledged": 300,
            "pledges": 1,
            "total": 4100,
        }
    ]
    lao_view = client.get("/api/v1/stock/shareable", headers=actors["fp_lao"].headers).json()
    assert lao_view[0]["pledged"] == 0  # another member's pledge is not LAO's to see
    withdrawn = client.post(f"/api/v1/pledges/{made.json()['id']}/withdraw", headers=actors["fp_tha"].headers)
    assert withdrawn.json()["status"] == "withdrawn"


def test_balances_and_lots_stay_in_scope(client: TestClient, actors: dict[str, Actor], stocked: None) -> None:
    lao = client.get("/api/v1/stock/balances", headers=actors["fp_lao"].headers).json()
    assert {row["facility"] for row in lao["items"]} == {"LAO-HO-0001"}
    clinician = client.get("/api/v1/stock/lots", headers=actors["clinician_tha"].headers).json()
    assert {row["facility"] for row in clinician["items"]} == {"THA-HO-0001"}
    events = client.get("/api/v1/stock/events", headers=actors["fp_lao"].headers).json()
    assert {row["facility"] for row in events} == {"LAO-HO-0001"}


def test_snapshots_rebuild_past_days_and_feed_trends(
    client: TestClient, actors: dict[str, Actor], db: Session, stocked: None
) -> None:
    for day in (date(2026, 11, 5), date(2026, 11, 15), date(2026, 11, 25)):
        snapshots.take_snapshot(db, day)
    snapshots.take_snapshot(db, date(2026, 11, 25))  # re-taking replaces, never doubles
    assert (
        db.scalar(
            select(func.count()).select_from(StockSnapshot).where(StockSnapshot.day == date(2026, 11, 25))
        )
        == 3
    )
    points = client.get(
        "/api/v1/stock/trends",
        params={"product": "DX-AGRDT-25", "date": "2026-11-30", "days": 30, "jurisdiction": "THA"},
        headers=actors["coordinator"].headers,
    ).json()
    assert [(p["day"], p["on_hand"], p["usable"], p["issued_in_window"]) for p in points] == [
        ("2026-11-05", 5800, 4600, 0),
        ("2026-11-15", 5500, 4300, 300),
        ("2026-11-25", 5500, 4300, 300),
    ]
    lao = client.get(
        "/api/v1/stock/trends",
        params={"product": "DX-AGRDT-25", "date": "2026-11-30", "days": 30},
        headers=actors["fp_lao"].headers,
    ).json()
    assert [(p["day"], p["expired"], p["facilities_stocked_out"]) for p in lao] == [
        ("2026-11-05", 0, 0),
        ("2026-11-15", 0, 0),
        ("2026-11-25", 40, 1),
    ]


def test_needs_csv_import_is_all_or_nothing(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    header = "facility,product,quantity,urgency,needed_by,justification,submit\n"
    good = "THA-HO-0001,DX-AGRDT-25,2000,urgent,2099-01-31,outbreak testing,true\n"
    bad = (
        "THA-HO-0001,DX-AGRDT-25,-5,urgent,2099-01-31,,true\n"
        "LAO-HO-0001,DX-AGRDT-25,5,urgent,2099-01-31,,true\n"
    )
    refused = client.post(
        "/api/v1/needs/import",
        files={"file": ("needs.csv", header + good + bad, "text/csv")},
        headers=actors["fp_tha"].headers,
    )
    assert refused.status_code == 422
    assert [(e["line"], e["field"]) for e in refused.json()["errors"]] == [(3, "quantity"), (4, "facility")]
    assert db.scalar(select(func.count()).select_from(Need)) == 0
    accepted = client.post(
        "/api/v1/needs/import",
        files={"file": ("needs.csv", header + good, "text/csv")},
        headers=actors["fp_tha"].headers,
    )
    assert accepted.json() == {"created": 1}
    assert db.scalar(select(Need.status)) == "submitted"


def test_stock_import_command_counts_a_file_once(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHMESH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEALTHMESH_DATABASE_URL", fresh_database_url)
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--no-serve", "--no-history"]).exit_code == 0
    stock = tmp_path / "stock.csv"
    stock.write_text(
        "facility,product,lot_number,expiry_date,kind,quantity,occurred_at\n"
        "THA-NW-0001,DX-AGRDT-25,CLI-1,2027-09-30,receipt,750,2026-11-28\n"
        "THA-NW-0001,DX-AGRDT-25,CLI-1,,issue,50,2026-11-29\n"
    )
    first = runner.invoke(app, ["stock", "import", str(stock)])
    assert first.exit_code == 0, first.output
    assert "recorded 2 events" in first.output
    second = runner.invoke(app, ["stock", "import", str(stock)])
    assert "nothing changed" in second.output
    snap = runner.invoke(app, ["stock", "snapshot", "--day", "2026-11-29", "--days", "2"])
    assert snap.exit_code == 0, snap.output
    with make_sessionmaker(make_engine(fresh_database_url))() as db:
        warehouse = select(Facility.id).where(Facility.code == "THA-NW-0001").scalar_subquery()
        on_hand = db.scalar(
            select(func.sum(StockBalance.on_hand)).where(StockBalance.facility_id == warehouse)
        )
        assert on_hand is not None
        assert on_hand >= 700
        assert db.scalar(select(func.count()).select_from(StockSnapshot)) > 0
