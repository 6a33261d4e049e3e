"""Approving a mutual-aid plan: its first period's transfers and reserve releases are reserved at
the senders (earliest expiry first) and become shipments, all or nothing, logged; a sender short
of units refuses the whole approval and leaves everything as it was."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from healthmesh import migrate
from healthmesh.cli import app
from healthmesh.db import make_engine, make_sessionmaker
from healthmesh.ledger.models import LogEntry
from healthmesh.logistics.models import Shipment
from healthmesh.mutual_aid.models import MutualAidPlan
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility
from healthmesh.supply import ledger
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import Lot, LotBalance
from tests.conftest import Actor, Region

PRODUCT = "BME-VENT-ICU"
TODAY = date.today()
PERIODS = [(TODAY + timedelta(days=7 * k)).isoformat() for k in range(3)]
WAREHOUSES = {
    "THA": ("THA-NW-01", 13.80, 100.55),
    "LAO": ("LAO-NW-01", 17.97, 102.60),
    "SGP": ("SGP-NW-01", 1.35, 103.82),
}


def _facility(
    db: Session, region: Region, code: str, iso3: str, kind: FacilityKind, lat: float, lon: float
) -> Facility:
    place = Facility(
        code=code,
        jurisdiction=region.members[iso3],
        kind=kind,
        name=code,
        latitude=lat,
        longitude=lon,
        time_zone=region.members[iso3].time_zones[0],
    )
    db.add(place)
    db.flush()
    return place


def _receive(db: Session, region: Region, place: Facility, lots: list[tuple[str, date | None, int]]) -> None:
    ledger.record_events(
        db,
        [
            ledger.EventInput(
                line=n,
                facility_id=place.id,
                jurisdiction_id=place.jurisdiction_id,
                product_id=region.products[PRODUCT].id,
                lot_number=number,
                expiry_date=expiry,
                kind=EventKind.RECEIPT,
                quantity=units,
                occurred_at=datetime.now(UTC) - timedelta(days=1),
            )
            for n, (number, expiry, units) in enumerate(lots, start=1)
        ],
        user_id=None,
        source="test",
        request_digest=f"stock-{place.code}",
    )


@pytest.fixture
def warehouses(db: Session, region: Region) -> dict[str, Facility]:
    """A national warehouse per member; Thailand's holds 15 ventilators expiring next year, 10
    expiring later and 5 undated (earliest expiry leaves first)."""
    out = {
        iso3: _facility(db, region, code, iso3, FacilityKind.NATIONAL_WAREHOUSE, lat, lon)
        for iso3, (code, lat, lon) in WAREHOUSES.items()
    }
    _receive(
        db,
        region,
        out["THA"],
        [
            ("VT-LATE", TODAY + timedelta(days=900), 10),
            ("VT-SOON", TODAY + timedelta(days=400), 15),
            ("VT-NODATE", None, 5),
        ],
    )
    return out


def staggered_peaks(tha_stock: int = 30) -> dict[str, Any]:
    """Lao PDR peaks first (20 ventilators in weeks 1-2), Thailand later (30 in week 3): Thailand
    lends 20 now and gets them back in time."""
    return {
        "demand": [
            *(
                {"member": "LAO", "date": day, "units": units}
                for day, units in zip(PERIODS, (20, 20, 0), strict=True)
            ),
            *(
                {"member": "THA", "date": day, "units": units}
                for day, units in zip(PERIODS, (0, 0, 30), strict=True)
            ),
        ],
        "supply": [{"member": "THA", "units": tha_stock}],
        "distances": [
            {"from": "THA", "to": "LAO", "distance": 520, "delay": 0},
            {"from": "LAO", "to": "THA", "distance": 520, "delay": 0},
        ],
        "policy": {"delay_periods": 0},
    }


def save(client: TestClient, actor: Actor, body: dict[str, Any], product: str | None = PRODUCT) -> Any:
    return client.post(
        "/api/v1/mutual-aid/plans", json={**body, "save": True, "product": product}, headers=actor.headers
    )


def balances(db: Session, place: Facility) -> dict[str, tuple[int, int]]:
    db.expire_all()
    rows = db.execute(
        select(LotBalance.lot_id, LotBalance.on_hand, LotBalance.reserved).where(
            LotBalance.facility_id == place.id
        )
    ).all()
    numbers = {lot.id: lot.lot_number for lot in db.scalars(select(Lot).where(Lot.facility_id == place.id))}
    return {numbers[lot]: (on_hand, reserved) for lot, on_hand, reserved in rows}


def log_entries(db: Session, kind: str) -> list[dict[str, Any]]:
    return [
        json.loads(e.body)
        for e in db.scalars(select(LogEntry).where(LogEntry.kind == kind).order_by(LogEntry.index))
    ]


def test_approval_reserves_earliest_expiry_first_and_ships_the_first_period(
    client: TestClient, actors: dict[str, Actor], db: Session, warehouses: dict[str, Facility]
) -> None:
    coordinator = actors["coordinator"]
    saved = save(client, coordinator, staggered_peaks())
    assert saved.status_code == 200, saved.text
    plan = saved.json()
    assert (plan["status"], plan["totals"]["shortfall"], plan["totals"]["shortfall_without_sharing"]) == (
        "proposed",
        0.0,
        40.0,
    )
    stored = client.get(f"/api/v1/mutual-aid/plans/{plan['id']}", headers=coordinator.headers).json()
    assert stored["first_period_moves"] == [{"from": "THA", "to": "LAO", "units": 20}]

    approved = client.post(f"/api/v1/mutual-aid/plans/{plan['id']}/approve", headers=coordinator.headers)
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "approved"
    [shipment] = body["shipments"]
    assert (shipment["source"], shipment["destination"], shipment["units"], shipment["status"]) == (
        "THA-NW-01",
        "LAO-NW-01",
        20,
        "planned",
    )
    assert shipment["mutual_aid_plan_id"] == plan["id"]
    # 15 of the lot expiring first, then 5 of the next; the undated lot untouched
    assert balances(db, warehouses["THA"]) == {"VT-SOON": (15, 15), "VT-LATE": (10, 5), "VT-NODATE": (5, 0)}
    [entry] = log_entries(db, "mutual_aid.plan_approved")
    assert entry["moves"] == [{"from": "THA", "to": "LAO", "units": 20}]
    assert [line["quantity"] for line in entry["shipments"][0]["lines"]] == [15, 5]

    again = client.post(f"/api/v1/mutual-aid/plans/{plan['id']}/approve", headers=coordinator.headers)
    assert again.status_code == 409
    assert db.scalar(select(func.count()).select_from(Shipment)) == 1
    assert balances(db, warehouses["THA"])["VT-SOON"] == (15, 15)


def test_refusal_names_the_sender_and_what_it_holds(
    client: TestClient, actors: dict[str, Actor], db: Session, region: Region, warehouses: dict[str, Facility]
) -> None:
    coordinator = actors["coordinator"]
    plan = save(client, coordinator, staggered_peaks()).json()
    # stock leaves the warehouse after the plan was made: 22 of its 30 issued
    _issue(db, region, warehouses["THA"], "VT-SOON", 15)
    _issue(db, region, warehouses["THA"], "VT-LATE", 7)
    before = balances(db, warehouses["THA"])
    refused = client.post(f"/api/v1/mutual-aid/plans/{plan['id']}/approve", headers=coordinator.headers)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["errors"] == [
        {
            "field": "moves.THA",
            "message": "THA must send 20 units of BME-VENT-ICU to LAO but holds 8 free at THA-NW-01",
        }
    ]
    assert balances(db, warehouses["THA"]) == before
    assert db.scalar(select(func.count()).select_from(Shipment)) == 0
    assert db.get(MutualAidPlan, plan["id"]).status.value == "proposed"  # type: ignore[union-attr]
    assert log_entries(db, "mutual_aid.plan_approved") == []


def _issue(db: Session, region: Region, place: Facility, lot: str, units: int) -> None:
    ledger.record_events(
        db,
        [
            ledger.EventInput(
                line=1,
                facility_id=place.id,
                jurisdiction_id=place.jurisdiction_id,
                product_id=region.products[PRODUCT].id,
                lot_number=lot,
                expiry_date=None,
                kind=EventKind.ISSUE,
                quantity=units,
                occurred_at=datetime.now(UTC),
            )
        ],
        user_id=None,
        source="test",
        request_digest=f"issue-{lot}-{units}",
    )


def test_a_reserve_release_draws_on_the_depots_earliest_expiry_first(
    client: TestClient, actors: dict[str, Actor], db: Session, region: Region, warehouses: dict[str, Facility]
) -> None:
    depot = _facility(db, region, "RRD-SGP-01", "SGP", FacilityKind.REGIONAL_RESERVE_DEPOT, 1.30, 103.80)
    _receive(
        db,
        region,
        depot,
        [("RV-LATER", TODAY + timedelta(days=700), 10), ("RV-FIRST", TODAY + timedelta(days=100), 3)],
    )
    body = {
        "demand": [{"member": "SGP", "date": day, "units": 5} for day in PERIODS],
        "supply": [{"member": "reserve", "units": 5}],
        "distances": [],
    }
    plan = save(client, actors["coordinator"], body).json()
    assert plan["totals"]["shortfall"] == 0.0
    approved = client.post(
        f"/api/v1/mutual-aid/plans/{plan['id']}/approve", headers=actors["coordinator"].headers
    )
    assert approved.status_code == 200, approved.text
    [shipment] = approved.json()["shipments"]
    assert (shipment["source"], shipment["destination"], shipment["units"]) == ("RRD-SGP-01", "SGP-NW-01", 5)
    assert balances(db, depot) == {"RV-FIRST": (3, 3), "RV-LATER": (10, 2)}


def test_cancelling_releases_and_dispatch_takes_from_the_reservation(
    client: TestClient, actors: dict[str, Actor], db: Session, warehouses: dict[str, Facility]
) -> None:
    coordinator = sender = actors["coordinator"]
    first = save(client, coordinator, staggered_peaks()).json()
    [shipment] = client.post(
        f"/api/v1/mutual-aid/plans/{first['id']}/approve", headers=coordinator.headers
    ).json()["shipments"]
    cancelled = client.post(
        f"/api/v1/logistics/shipments/{shipment['id']}/moves",
        json={"status": "cancelled"},
        headers=sender.headers,
    )
    assert cancelled.status_code == 200, cancelled.text
    assert balances(db, warehouses["THA"]) == {"VT-SOON": (15, 0), "VT-LATE": (10, 0), "VT-NODATE": (5, 0)}

    second = save(client, coordinator, staggered_peaks()).json()
    [shipment] = client.post(
        f"/api/v1/mutual-aid/plans/{second['id']}/approve", headers=coordinator.headers
    ).json()["shipments"]
    for status in ("picked", "dispatched"):
        moved = client.post(
            f"/api/v1/logistics/shipments/{shipment['id']}/moves",
            json={"status": status},
            headers=sender.headers,
        )
        assert moved.status_code == 200, moved.text
    assert balances(db, warehouses["THA"]) == {"VT-SOON": (0, 0), "VT-LATE": (5, 0), "VT-NODATE": (5, 0)}


@pytest.mark.parametrize(
    ("who", "action", "status"),
    [
        ("fp_tha", "save", 403),
        ("researcher", "save", 403),
        ("fp_tha", "approve", 403),
        ("manager_tha", "approve", 403),
        ("auditor", "approve", 403),
    ],
)
def test_only_coordinators_store_and_approve(
    client: TestClient,
    actors: dict[str, Actor],
    db: Session,
    warehouses: dict[str, Facility],
    who: str,
    action: str,
    status: int,
) -> None:
    plan = save(client, actors["coordinator"], staggered_peaks()).json()
    if action == "save":
        response = save(client, actors[who], staggered_peaks())
    else:
        response = client.post(f"/api/v1/mutual-aid/plans/{plan['id']}/approve", headers=actors[who].headers)
    assert response.status_code == status, response.text
    assert db.scalar(select(func.count()).select_from(Shipment)) == 0
    assert db.scalar(select(func.count()).select_from(MutualAidPlan)) == 1


def test_a_plan_to_store_needs_registry_members_and_a_product(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    body = staggered_peaks()
    body["demand"].append({"member": "TEXAS", "date": PERIODS[0], "units": 3})
    unknown = save(client, actors["coordinator"], body)
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["demand"]
    assert "TEXAS" in unknown.json()["errors"][0]["message"]
    no_product = save(client, actors["coordinator"], staggered_peaks(), product=None)
    assert no_product.status_code == 422
    assert [e["field"] for e in no_product.json()["errors"]] == ["product"]
    assert db.scalar(select(func.count()).select_from(MutualAidPlan)) == 0
    missing = client.post("/api/v1/mutual-aid/plans/999/approve", headers=actors["coordinator"].headers)
    assert missing.status_code == 404


def test_cli_stores_and_approves_a_plan(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import region as region_fixture

    migrate.upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
    with make_sessionmaker(engine)() as db:
        world = region_fixture.__wrapped__(db)  # type: ignore[attr-defined]
        made = warehouses.__wrapped__(db, world)  # type: ignore[attr-defined]
        tha = made["THA"].id
        db.commit()
    monkeypatch.setenv("HEALTHMESH_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("HEALTHMESH_DATA_DIR", str(tmp_path / "data"))
    body = staggered_peaks()
    (tmp_path / "d.csv").write_text(
        "member,date,units\n" + "".join(f"{d['member']},{d['date']},{d['units']}\n" for d in body["demand"])
    )
    (tmp_path / "s.csv").write_text("member,units\nTHA,30\n")
    (tmp_path / "x.csv").write_text("from,to,distance,delay\nTHA,LAO,520,0\nLAO,THA,520,0\n")
    files = ["--demand", str(tmp_path / "d.csv"), "--supply", str(tmp_path / "s.csv")]
    files += ["--distances", str(tmp_path / "x.csv"), "--delay", "0"]
    refused = CliRunner().invoke(app, ["mutual-aid", "plan", *files, "--save"])
    assert refused.exit_code != 0  # no product named
    stored = CliRunner().invoke(
        app, ["mutual-aid", "plan", *files, "--save", "--product", PRODUCT, "--format", "json"]
    )
    assert stored.exit_code == 0, stored.output
    plan_id = json.loads(stored.stdout)["id"]
    approved = CliRunner().invoke(app, ["mutual-aid", "approve", str(plan_id)])
    assert approved.exit_code == 0, approved.output
    assert "THA-NW-01 -> LAO-NW-01: 20 units" in approved.stdout
    again = CliRunner().invoke(app, ["mutual-aid", "approve", str(plan_id)])
    assert again.exit_code != 0
    with make_sessionmaker(engine)() as db:
        reserved = db.scalar(select(func.sum(LotBalance.reserved)).where(LotBalance.facility_id == tha))
        assert reserved == 20
        assert db.scalar(select(func.count()).select_from(Shipment)) == 1
    engine.dispose()
