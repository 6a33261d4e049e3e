"""Allocation rounds on the database: run, explain, approve (reserving stock), overlap and
concurrency, and reproducibility from the stored snapshot."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from healthmesh import migrate
from healthmesh.accounts.access import Principal, Role
from healthmesh.allocation import service
from healthmesh.allocation.models import AllocationPlan, PlanStatus
from healthmesh.cli import app
from healthmesh.db import begin_write, make_engine, make_sessionmaker
from healthmesh.errors import Conflict
from healthmesh.needs.models import Need
from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility
from healthmesh.supply import ledger
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import LotBalance
from tests.conftest import Actor, Region

DAY = date(2026, 11, 30)
COORDINATOR = Principal(user_id=0, username="coordinator", role=Role.REGIONAL_COORDINATOR)


def _world(db: Session, region: Region, depot_units: int = 600) -> None:
    """A reserve depot holding Ag-RDTs, and open needs in Thailand (authorised), Lao PDR
    (recognises WHO EUL) and Singapore (no decision: not eligible)."""
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
    ledger.record_events(
        db,
        [
            ledger.EventInput(
                line=1,
                facility_id=depot.id,
                jurisdiction_id=depot.jurisdiction_id,
                product_id=region.products["DX-AGRDT-25"].id,
                lot_number="RRMS-AG-01",
                expiry_date=date(2027, 12, 31),
                kind=EventKind.RECEIPT,
                quantity=depot_units,
                occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
            )
        ],
        user_id=None,
        source="test",
        request_digest="depot",
    )
    for facility, quantity, urgency in (
        ("THA-HO-0001", 500, Urgency.URGENT),
        ("LAO-HO-0001", 500, Urgency.EMERGENCY),
        ("SGP-HO-0001", 200, Urgency.ROUTINE),
    ):
        place = region.facilities[facility]
        db.add(
            Need(
                jurisdiction_id=place.jurisdiction_id,
                facility=place,
                product=region.products["DX-AGRDT-25"],
                quantity=quantity,
                urgency=urgency,
                needed_by=date(2026, 12, 20),
                status=NeedStatus.OPEN,
                population_served=100_000,
            )
        )
    db.flush()


@pytest.fixture
def world(db: Session, region: Region) -> None:
    _world(db, region)


def test_a_round_explains_every_need_and_members_see_their_own(
    client: TestClient, actors: dict[str, Actor], world: None
) -> None:
    response = client.post(
        "/api/v1/allocation/plans",
        json={"policy": "equity", "day": DAY.isoformat()},
        headers=actors["coordinator"].headers,
    )
    assert response.status_code == 201, response.text
    plan = response.json()
    results = {r["need_id"]: r for r in plan["results"]}
    allocated = sorted(r["allocated"] for r in results.values())
    assert allocated == [0, 300, 300]  # 600 tests shared equally (in kits of 25) between THA and LAO
    singapore = next(r for r in results.values() if r["allocated"] == 0)
    assert singapore["reason"] == "not_authorised"
    assert "SGP" in singapore["explanation"]
    assert plan["fairness"]["min_fill_rate"] == pytest.approx(0.6)
    assert plan["status"] == "proposed"
    lao_view = client.get(f"/api/v1/allocation/plans/{plan['id']}", headers=actors["fp_lao"].headers).json()
    assert len(lao_view["results"]) == 1
    assert lao_view["results"][0]["allocated"] == 300
    assert "at least 60%" in lao_view["results"][0]["explanation"]
    assert (
        client.post(
            f"/api/v1/allocation/plans/{plan['id']}/approve", headers=actors["fp_lao"].headers
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/api/v1/allocation/plans", json={"policy": "equity"}, headers=actors["manager_tha"].headers
        ).status_code
        == 403
    )


def test_approval_reserves_the_stock_and_moves_the_needs(
    client: TestClient, actors: dict[str, Actor], db: Session, world: None
) -> None:
    plan = client.post(
        "/api/v1/allocation/plans",
        json={"policy": "equity", "day": DAY.isoformat()},
        headers=actors["coordinator"].headers,
    ).json()
    approved = client.post(
        f"/api/v1/allocation/plans/{plan['id']}/approve", headers=actors["coordinator"].headers
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert db.scalar(select(LotBalance.reserved)) == 600
    statuses = sorted(
        (n.facility.code, n.status.value, n.quantity_allocated) for n in db.scalars(select(Need))
    )
    assert statuses == [
        ("LAO-HO-0001", "partially_allocated", 300),
        ("SGP-HO-0001", "open", 0),
        ("THA-HO-0001", "partially_allocated", 300),
    ]
    again = client.post(
        f"/api/v1/allocation/plans/{plan['id']}/approve", headers=actors["coordinator"].headers
    )
    assert again.status_code == 409


def test_a_second_plan_over_the_same_stock_fails_cleanly(db: Session, region: Region, world: None) -> None:
    first = service.create_plan(db, COORDINATOR, "equity", DAY)
    second = service.create_plan(db, COORDINATOR, "efficiency", DAY)
    service.approve(db, COORDINATOR, first.id)
    reserved = db.scalar(select(LotBalance.reserved))
    with pytest.raises(Conflict):
        service.approve(db, COORDINATOR, second.id)
    assert db.scalar(select(LotBalance.reserved)) == reserved
    assert db.get(AllocationPlan, second.id).status is PlanStatus.PROPOSED  # type: ignore[union-attr]


def test_a_stored_plan_reruns_to_the_identical_plan(db: Session, region: Region, world: None) -> None:
    stored = service.create_plan(db, COORDINATOR, "covax", DAY)
    again, snapshot = service.rerun(stored)
    assert snapshot.digest() == stored.snapshot_digest
    assert sorted(
        (int(line.lot_id[4:]), int(line.need_id[5:]), line.quantity) for line in again.lines
    ) == sorted((line.lot_id, line.need_id, line.quantity) for line in stored.lines)


def test_compare_puts_policies_and_baselines_side_by_side(
    client: TestClient, actors: dict[str, Actor], world: None
) -> None:
    rows = client.post(
        "/api/v1/allocation/compare", json={"day": DAY.isoformat()}, headers=actors["coordinator"].headers
    ).json()
    by_name = {row["policy"]: row for row in rows}
    assert set(by_name) == {"equity", "covax", "efficiency", "pro_rata", "population", "fcfs"}
    assert by_name["equity"]["min_fill_rate"] >= by_name["pro_rata"]["min_fill_rate"]
    assert by_name["fcfs"]["min_fill_rate"] <= by_name["equity"]["min_fill_rate"]
    for row in rows:
        assert {
            "fill_rate_by_member",
            "fill_rate_by_income_group",
            "gini_of_member_fill_rates",
            "weighted_unmet_need",
            "units_expiring_unused",
            "total_distance_km",
        } <= set(row)


def test_concurrent_approvals_of_overlapping_plans_one_wins(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
    factory = make_sessionmaker(engine)
    with factory() as db:
        from tests.conftest import region as region_fixture

        _world(db, region_fixture.__wrapped__(db))  # type: ignore[attr-defined]
        plans = [service.create_plan(db, COORDINATOR, name, DAY).id for name in ("equity", "efficiency")]
        db.commit()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(plan_id: int) -> None:
        with factory() as db:
            barrier.wait()
            begin_write(db)
            try:
                service.approve(db, COORDINATOR, plan_id)
                db.commit()
                outcomes.append("approved")
            except Conflict:
                db.rollback()
                outcomes.append("refused")

    threads = [threading.Thread(target=approve, args=(plan_id,)) for plan_id in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["approved", "refused"]
    with factory() as db:
        assert db.scalar(select(LotBalance.reserved)) == 600
        statuses = sorted(plan.status.value for plan in db.scalars(select(AllocationPlan)))
        assert statuses == ["approved", "proposed"]
    engine.dispose()


def test_cli_snapshot_then_run_gives_the_api_plan(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHMESH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEALTHMESH_DATABASE_URL", fresh_database_url)
    migrate.upgrade(fresh_database_url)
    factory = make_sessionmaker(make_engine(fresh_database_url))
    with factory() as db:
        from tests.conftest import region as region_fixture

        _world(db, region_fixture.__wrapped__(db))  # type: ignore[attr-defined]
        stored = service.create_plan(db, COORDINATOR, "equity", DAY)
        expected = sorted(
            (f"lot:{line.lot_id}", f"need:{line.need_id}", line.quantity) for line in stored.lines
        )
        digest = stored.snapshot_digest
        db.commit()
    out = tmp_path / "round.json"
    runner = CliRunner()
    written = runner.invoke(app, ["allocate", "snapshot", "--out", str(out), "--day", DAY.isoformat()])
    assert written.exit_code == 0, written.output
    assert json.loads(out.read_text())["schema"] == "healthmesh.allocation.snapshot/1"
    result = runner.invoke(
        app, ["allocate", "run", "--snapshot", str(out), "--policy", "equity", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["snapshot_digest"] == digest
    assert sorted((line["lot"], line["need"], line["quantity"]) for line in body["lines"]) == expected
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "healthmesh.allocation.snapshot/1", "day": "2026-11-30"}')
    refused = runner.invoke(app, ["allocate", "run", "--snapshot", str(broken)])
    assert refused.exit_code == 1
    assert "not a valid snapshot" in refused.output
