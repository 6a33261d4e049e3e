"""Indicators and the shortage board on a hand-checked region (today = 2026-11-30)."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from healthmesh.needs.models import Need
from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.supply import indicators as ind
from tests.conftest import Actor, Region

TODAY = "2026-11-30"


def _post(client: TestClient, actor: Actor, **event: object) -> None:
    body = {"product": "DX-AGRDT-25", **event}
    response = client.post("/api/v1/stock/events", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text


@pytest.fixture
def history(client: TestClient, actors: dict[str, Actor], db: Session, region: Region) -> None:
    admin = actors["admin"]
    rajavithi = {"facility": "THA-HO-0001"}
    _post(
        client,
        admin,
        **rajavithi,
        lot_number="A",
        expiry_date="2027-06-30",
        kind="receipt",
        quantity=1000,
        occurred_at="2026-10-01",
    )
    _post(
        client,
        admin,
        **rajavithi,
        lot_number="B",
        expiry_date="2026-12-20",
        kind="receipt",
        quantity=100,
        occurred_at="2026-10-01",
    )
    _post(
        client,
        admin,
        **rajavithi,
        lot_number="C",
        expiry_date="2026-11-15",
        kind="receipt",
        quantity=50,
        occurred_at="2026-10-01",
    )
    for day in range(1, 31):  # 20 tests a day in November
        _post(
            client,
            admin,
            **rajavithi,
            lot_number="A",
            kind="issue",
            quantity=20,
            occurred_at=f"2026-11-{day:02d}",
        )
    _post(
        client,
        admin,
        **rajavithi,
        lot_number="A",
        kind="transfer_out",
        quantity=100,
        reference="TR-9",
        counterpart_facility="LAO-HO-0001",
        occurred_at="2026-11-28",
    )
    _post(
        client,
        admin,
        facility="THA-HO-0002",
        lot_number="D",
        expiry_date="2027-06-30",
        kind="receipt",
        quantity=10,
        occurred_at="2026-10-01",
    )
    _post(
        client,
        admin,
        facility="THA-HO-0002",
        lot_number="D",
        kind="issue",
        quantity=10,
        occurred_at="2026-11-10",
    )
    # Needs dated against the fixed TODAY, written directly (the API refuses dates before the real today).
    lao = region.members["LAO"]
    product = region.products["DX-AGRDT-25"]
    for quantity, due, status in (
        (500, date(2026, 12, 15), NeedStatus.OPEN),
        (900, date(2027, 3, 1), NeedStatus.OPEN),
        (70, date(2026, 12, 10), NeedStatus.CANCELLED),
    ):
        db.add(
            Need(
                jurisdiction=lao,
                facility=region.facilities["LAO-HO-0001"],
                product=product,
                quantity=quantity,
                urgency=Urgency.URGENT,
                needed_by=due,
                status=status,
            )
        )
    db.flush()


def _rows(client: TestClient, actor: Actor, **params: object) -> list[dict[str, object]]:
    response = client.get(
        "/api/v1/indicators",
        params={"date": TODAY, "product": "DX-AGRDT-25", **params},
        headers=actor.headers,
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def test_facility_indicators(client: TestClient, actors: dict[str, Actor], history: None) -> None:
    rows = {row["key"]: row for row in _rows(client, actors["fp_tha"], level="facility")}
    rajavithi = rows["THA-HO-0001"]
    assert (rajavithi["on_hand"], rajavithi["usable"], rajavithi["near_expiry"], rajavithi["expired"]) == (
        450,
        400,
        100,
        50,
    )
    assert rajavithi["average_daily_consumption"] == 20.0
    assert rajavithi["days_of_stock"] == 20.0
    assert (rajavithi["facilities_stocked_out"], rajavithi["stockout_days"]) == (0, 0)
    chiang_mai = rows["THA-HO-0002"]
    assert (chiang_mai["usable"], chiang_mai["facilities_stocked_out"], chiang_mai["stockout_days"]) == (
        0,
        1,
        21,
    )
    assert set(rows) == {"THA-HO-0001", "THA-HO-0002"}


def test_member_and_region_levels_add_up(client: TestClient, actors: dict[str, Actor], history: None) -> None:
    tha = _rows(client, actors["fp_tha"], level="jurisdiction")
    assert [(r["key"], r["usable"], r["facilities"], r["facilities_stocked_out"]) for r in tha] == [
        ("THA", 400, 2, 1)
    ]
    region = _rows(client, actors["coordinator"], level="region")
    assert [(r["key"], r["on_hand"], r["pipeline"]) for r in region] == [("REGION", 450, 100)]
    refused = client.get("/api/v1/indicators", params={"level": "region"}, headers=actors["fp_tha"].headers)
    assert refused.status_code == 403


def test_shortage_board_puts_the_least_covered_member_first(
    client: TestClient, actors: dict[str, Actor], history: None
) -> None:
    board = client.get(
        "/api/v1/shortages", params={"date": TODAY}, headers=actors["coordinator"].headers
    ).json()
    assert [(row["jurisdiction"], row["product"]) for row in board] == [
        ("LAO", "DX-AGRDT-25"),
        ("THA", "DX-AGRDT-25"),
    ]
    lao, tha = board
    assert (lao["usable"], lao["pipeline"], lao["outstanding_requests"], lao["demand"]) == (0, 100, 500, 500)
    assert lao["coverage"] == pytest.approx(0.2)
    assert (tha["usable"], tha["average_daily_consumption"], tha["demand"]) == (400, 20.33, 610.0)
    assert tha["coverage"] == pytest.approx(400 / 610, abs=1e-3)
    assert tha["facilities_stocked_out"] == 1
    national = client.get(
        "/api/v1/shortages", params={"date": TODAY}, headers=actors["fp_tha"].headers
    ).json()
    assert [row["jurisdiction"] for row in national] == ["THA"]


def test_pure_indicator_functions() -> None:
    lots = [ind.LotPosition(date(2027, 1, 1), 100, 30), ind.LotPosition(date(2026, 11, 1), 40)]
    assert ind.split_by_expiry(lots, date(2026, 11, 30), 90) == ind.ExpirySplit(70, 70, 40)
    assert ind.closing_balances(
        5, {date(2026, 11, 29): -5, date(2026, 11, 30): 5}, date(2026, 11, 28), date(2026, 11, 30)
    ) == [5, 0, 5]
    assert ind.coverage(10, 5, 0) is None
    assert ind.demand_over_horizon(2.0, 30, 100) == 100
