"""The stock ledger: events in, balances derived; refusals, idempotency and all-or-nothing batches."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.supply.models import IngestBatch, LotBalance, StockBalance, StockEvent
from tests.conftest import Actor, Region

AGRDT = "DX-AGRDT-25"
RAJAVITHI = "THA-HO-0001"


def _event(kind: str, quantity: int, lot: str = "AG2611A", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "facility": RAJAVITHI,
        "product": AGRDT,
        "lot_number": lot,
        "kind": kind,
        "quantity": quantity,
        "occurred_at": "2026-11-20T08:00:00+07:00",
    }
    if kind in ("receipt", "transfer_in"):
        body["expiry_date"] = "2027-12-31"
    body.update(extra)
    return body


def _balance(db: Session, facility: str = RAJAVITHI) -> tuple[int, int]:
    row = db.execute(
        select(StockBalance.on_hand, StockBalance.reserved).where(
            StockBalance.facility_id == select_facility(db, facility)
        )
    ).first()
    return (row[0], row[1]) if row else (0, 0)


def select_facility(db: Session, code: str) -> int:
    from healthmesh.registry.models import Facility

    facility_id = db.scalar(select(Facility.id).where(Facility.code == code))
    assert facility_id is not None
    return facility_id


def test_receipt_issue_reserve_and_release_move_the_balance(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    headers = actors["manager_tha"].headers
    steps = [
        (_event("receipt", 500), (500, 0)),
        (_event("issue", 120), (380, 0)),
        (_event("reservation", 100), (380, 100)),
        (_event("issue", 200), (180, 100)),
        (
            _event(
                "transfer_out",
                60,
                counterpart_facility="THA-HO-0002",
                reference="TR-1",
                from_reservation=True,
            ),
            (120, 40),
        ),
        (_event("release", 40), (120, 0)),
        (_event("adjustment", -20, reason="damaged in storage"), (100, 0)),
        (_event("expiry_writeoff", 100), (0, 0)),
    ]
    for body, expected in steps:
        response = client.post("/api/v1/stock/events", json=body, headers=headers)
        assert response.status_code == 201, response.text
        assert _balance(db) == expected, body["kind"]
    deltas = db.execute(select(func.sum(StockEvent.on_hand_delta), func.sum(StockEvent.reserved_delta))).one()
    assert tuple(deltas) == (0, 0)


def test_issue_beyond_available_is_refused_with_the_numbers(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    headers = actors["manager_tha"].headers
    client.post("/api/v1/stock/events", json=_event("receipt", 50), headers=headers)
    client.post("/api/v1/stock/events", json=_event("reservation", 30), headers=headers)
    response = client.post("/api/v1/stock/events", json=_event("issue", 21), headers=headers)
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "quantity"
    assert "exceeds the 20 available (on hand 50, reserved 30)" in error["message"]
    assert _balance(db) == (50, 30)


def test_batch_is_all_or_nothing_and_names_the_refused_event(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    batch = {
        "events": [_event("receipt", 100), _event("issue", 60), _event("issue", 60), _event("issue", 10)]
    }
    response = client.post("/api/v1/stock/events/batch", json=batch, headers=actors["fp_tha"].headers)
    assert response.status_code == 422
    assert [(e["line"], e["field"]) for e in response.json()["errors"]] == [(3, "quantity")]
    assert db.scalar(select(func.count()).select_from(StockEvent)) == 0
    assert db.scalar(select(func.count()).select_from(LotBalance)) == 0
    assert _balance(db) == (0, 0)


def test_retry_with_the_same_idempotency_key_changes_nothing(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    headers = {**actors["manager_tha"].headers, "Idempotency-Key": "rajavithi-2026-11-20-receipt"}
    batch = {"events": [_event("receipt", 300), _event("issue", 45)]}
    first = client.post("/api/v1/stock/events/batch", json=batch, headers=headers)
    again = client.post("/api/v1/stock/events/batch", json=batch, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["replayed"] is False
    assert again.json() == {**first.json(), "replayed": True}
    assert _balance(db) == (255, 0)
    assert db.scalar(select(func.count()).select_from(StockEvent)) == 2
    assert db.scalar(select(func.count()).select_from(IngestBatch)) == 1
    different = client.post(
        "/api/v1/stock/events/batch", json={"events": [_event("receipt", 1)]}, headers=headers
    )
    assert different.status_code == 409
    assert _balance(db) == (255, 0)


def test_unknown_lot_and_expiry_mismatch_are_refused(client: TestClient, actors: dict[str, Actor]) -> None:
    headers = actors["manager_tha"].headers
    client.post("/api/v1/stock/events", json=_event("receipt", 10), headers=headers)
    missing = client.post("/api/v1/stock/events", json=_event("issue", 1, lot="NOPE"), headers=headers)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "lot_number"
    other_expiry = client.post(
        "/api/v1/stock/events", json=_event("receipt", 10, expiry_date="2028-01-01"), headers=headers
    )
    assert other_expiry.status_code == 422
    assert other_expiry.json()["errors"][0]["field"] == "expiry_date"


def test_bad_fields_are_named(client: TestClient, actors: dict[str, Actor]) -> None:
    headers = actors["admin"].headers
    cases = [
        (_event("adjustment", -5), "reason"),
        (_event("issue", -5), "quantity"),
        (_event("transfer_out", 5), "counterpart_facility"),
        (_event("receipt", 5, product="NOPE-X"), "product"),
        (_event("receipt", 5, facility="XXX-HO-0001"), "facility"),
        (_event("teleport", 5), "kind"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/stock/events", json=body, headers=headers)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["errors"][0]["field"] == field


def test_a_member_cannot_record_stock_at_another_members_facility(
    client: TestClient, actors: dict[str, Actor], db: Session, region: Region
) -> None:
    body = _event("receipt", 10)
    assert client.post("/api/v1/stock/events", json=body, headers=actors["fp_lao"].headers).status_code == 422
    other = {**body, "facility": "THA-HO-0002"}
    assert (
        client.post("/api/v1/stock/events", json=other, headers=actors["manager_tha"].headers).status_code
        == 422
    )
    assert (
        client.post("/api/v1/stock/events", json=body, headers=actors["clinician_tha"].headers).status_code
        == 403
    )
    assert db.scalar(select(func.count()).select_from(StockEvent)) == 0
    _ = date
