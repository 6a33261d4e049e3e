"""The Server-Sent Events stream delivers what a subscriber may see, and never what it may not."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.conftest import Actor


def _events(client: TestClient, actor: Actor) -> list[tuple[str, dict[str, object]]]:
    with client.stream(
        "GET",
        "/api/v1/stream",
        params={"after": 0, "max_seconds": 0.3, "poll_seconds": 0.05},
        headers=actor.headers,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    out = []
    for frame in body.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in frame.splitlines() if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_subscribers_receive_only_changes_in_their_scope(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    receipt = {
        "facility": "THA-HO-0001",
        "product": "DX-AGRDT-25",
        "lot_number": "AG-1",
        "expiry_date": "2027-06-30",
        "kind": "receipt",
        "quantity": 400,
    }
    assert (
        client.post("/api/v1/stock/events", json=receipt, headers=actors["manager_tha"].headers).status_code
        == 201
    )
    need = {"facility": "LAO-HO-0001", "product": "DX-AGRDT-25", "quantity": 50, "needed_by": "2099-01-01"}
    assert client.post("/api/v1/needs", json=need, headers=actors["fp_lao"].headers).status_code == 201

    tha = _events(client, actors["fp_tha"])
    assert [topic for topic, _ in tha] == ["stock"]
    assert tha[0][1]["on_hand"] == 400
    lao = _events(client, actors["fp_lao"])
    assert [(topic, payload["status"]) for topic, payload in lao] == [("need", "draft")]
    clinician = _events(client, actors["clinician_tha"])
    assert [topic for topic, _ in clinician] == ["stock"]
    region = _events(client, actors["coordinator"])
    assert sorted(topic for topic, _ in region) == ["need", "stock"]


def test_stream_resumes_after_the_last_event_id(client: TestClient, actors: dict[str, Actor]) -> None:
    receipt = {
        "facility": "THA-HO-0001",
        "product": "DX-AGRDT-25",
        "lot_number": "AG-2",
        "expiry_date": "2027-06-30",
        "kind": "receipt",
        "quantity": 10,
    }
    client.post("/api/v1/stock/events", json=receipt, headers=actors["manager_tha"].headers)
    with client.stream(
        "GET",
        "/api/v1/stream",
        params={"after": 0, "max_seconds": 0.2, "poll_seconds": 0.05},
        headers=actors["fp_tha"].headers,
    ) as response:
        first = response.read().decode()
    last_id = max(int(line[4:]) for line in first.splitlines() if line.startswith("id: "))
    with client.stream(
        "GET",
        "/api/v1/stream",
        params={"max_seconds": 0.2, "poll_seconds": 0.05},
        headers={**actors["fp_tha"].headers, "Last-Event-ID": str(last_id)},
    ) as response:
        resumed = response.read().decode()
    assert "event: stock" not in resumed


def test_stream_needs_authentication(client: TestClient) -> None:
    assert client.get("/api/v1/stream", params={"max_seconds": 0.1}).status_code == 401
