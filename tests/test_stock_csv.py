"""CSV import of stock events: a large file with one bad line changes nothing; a good one lands once."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.supply.models import StockBalance, StockEvent
from healthmesh.supply.transfer import COLUMNS
from tests.conftest import Actor

HEADER = "facility,product,lot_number,expiry_date,kind,quantity,occurred_at,reason\n"


def _file(lines: int) -> list[str]:
    """A receipt per lot, then weekly issues: a realistic stock report of `lines` data lines."""
    rows = []
    for n in range(lines):
        lot = f"AG26-{n % 50:03d}"
        if n < 50:
            rows.append(f"THA-HO-0001,DX-AGRDT-25,{lot},2027-06-30,receipt,1000,2026-09-01,\n")
        else:
            day = 2 + (n // 50) % 27
            rows.append(f"THA-HO-0001,DX-AGRDT-25,{lot},,issue,2,2026-10-{day:02d},\n")
    return rows


def _upload(
    client: TestClient, text: str, actor: Actor, key: str | None = None
) -> tuple[int, dict[str, object]]:
    headers = {**actor.headers, **({"Idempotency-Key": key} if key else {})}
    response = client.post(
        "/api/v1/stock/events/import", files={"file": ("stock.csv", text, "text/csv")}, headers=headers
    )
    return response.status_code, response.json()


def test_ten_thousand_lines_with_one_bad_line_change_nothing(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    rows = _file(10_000)
    rows[7_321] = rows[7_321].replace(",issue,2,", ",issue,two,")  # line 7,323 of the file
    status, body = _upload(client, HEADER + "".join(rows), actors["manager_tha"])
    assert status == 422
    assert body["errors"] == [
        {
            "field": "quantity",
            "message": "Input should be a valid integer, unable to parse string as an integer",
            "line": 7_323,
        }
    ]
    assert db.scalar(select(func.count()).select_from(StockEvent)) == 0
    assert db.scalar(select(func.count()).select_from(StockBalance)) == 0


def test_ten_thousand_lines_import_once_even_if_sent_twice(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    text = HEADER + "".join(_file(10_000))
    status, body = _upload(client, text, actors["manager_tha"])
    assert status == 201, body
    assert body["events"] == 10_000
    on_hand = db.scalar(select(StockBalance.on_hand))
    assert on_hand == 50 * 1000 - (10_000 - 50) * 2
    status, again = _upload(client, text, actors["manager_tha"])
    assert status == 201
    assert again["replayed"] is True
    assert db.scalar(select(StockBalance.on_hand)) == on_hand
    assert db.scalar(select(func.count()).select_from(StockEvent)) == 10_000


def test_overdrawn_line_is_reported_with_its_number(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    text = HEADER + (
        "THA-HO-0001,DX-AGRDT-25,AG1,2027-06-30,receipt,10,2026-09-01,\n"
        "THA-HO-0001,DX-AGRDT-25,AG1,,issue,6,2026-09-02,\n"
        "THA-HO-0001,DX-AGRDT-25,AG1,,issue,6,2026-09-03,\n"
        "THA-HO-0001,DX-AGRDT-25,AG9,,issue,1,2026-09-03,\n"
        "THA-HO-0001,DX-AGRDT-25,AG1,,adjustment,-1,2026-09-04,\n"
    )
    status, body = _upload(client, text, actors["manager_tha"])
    assert status == 422
    assert [(e["line"], e["field"]) for e in body["errors"]] == [
        (4, "quantity"),
        (5, "lot_number"),
        (6, "reason"),
    ]
    assert db.scalar(select(func.count()).select_from(StockEvent)) == 0


def test_template_lists_the_documented_columns(client: TestClient, actors: dict[str, Actor]) -> None:
    response = client.get("/api/v1/stock/events/template.csv", headers=actors["auditor"].headers)
    assert response.text.strip().split(",") == COLUMNS
    assert {"facility", "product", "lot_number", "kind", "quantity", "counterpart_facility"} <= set(COLUMNS)
