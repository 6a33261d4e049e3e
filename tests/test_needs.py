"""Needs: the workflow from draft to open, who may move it, and what is refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.changes.models import ChangeEvent
from healthmesh.needs import service as needs_service
from healthmesh.needs.models import Need, NeedTransition
from healthmesh.needs.workflow import Action, InvalidTransition, NeedStatus, next_status
from tests.conftest import Actor

OXYGEN_NEED = {
    "facility": "THA-HO-0001",
    "product": "BME-VENT-ICU",
    "quantity": 12,
    "urgency": "emergency",
    "needed_by": "2099-01-15",
    "justification": "ICU surge: 38 ventilated patients, 26 ventilators",
    "population_served": 1_250_000,
}


def _raise(client: TestClient, actor: Actor, **overrides: object) -> dict[str, object]:
    response = client.post("/api/v1/needs", json={**OXYGEN_NEED, **overrides}, headers=actor.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_need_goes_from_draft_to_open_with_who_and_when(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    need = _raise(client, actors["clinician_tha"])
    assert need["status"] == "draft"
    submitted = client.post(f"/api/v1/needs/{need['id']}/submit", headers=actors["manager_tha"].headers)
    assert submitted.json()["status"] == "submitted"
    endorsed = client.post(f"/api/v1/needs/{need['id']}/endorse", headers=actors["fp_tha"].headers).json()
    assert endorsed["status"] == "open"
    steps = [(h["from_status"], h["to_status"], h["by"]) for h in endorsed["history"]]
    assert steps == [
        (None, "draft", "clinician.tha"),
        ("draft", "submitted", "manager.tha"),
        ("submitted", "endorsed", "fp.tha"),
        ("endorsed", "open", "fp.tha"),
    ]
    assert all(h["at"] for h in endorsed["history"])


def test_rejection_needs_a_reason_and_is_final(client: TestClient, actors: dict[str, Actor]) -> None:
    need = _raise(client, actors["manager_tha"], submit=True)
    no_reason = client.post(f"/api/v1/needs/{need['id']}/reject", json={}, headers=actors["fp_tha"].headers)
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "reason"
    rejected = client.post(
        f"/api/v1/needs/{need['id']}/reject",
        json={"reason": "duplicate of request 118"},
        headers=actors["fp_tha"].headers,
    ).json()
    assert (rejected["status"], rejected["rejection_reason"]) == ("rejected", "duplicate of request 118")
    again = client.post(f"/api/v1/needs/{need['id']}/endorse", headers=actors["fp_tha"].headers)
    assert again.status_code == 409
    assert "rejected is final" in again.json()["detail"]


@pytest.mark.parametrize(
    ("first", "then", "expected_status"),
    [
        ("endorse", None, 409),  # a draft cannot be endorsed
        ("submit", "submit", 409),  # twice
    ],
)
def test_invalid_transitions_are_refused_and_change_nothing(
    client: TestClient,
    actors: dict[str, Actor],
    db: Session,
    first: str,
    then: str | None,
    expected_status: int,
) -> None:
    need = _raise(client, actors["manager_tha"])
    actor = actors["fp_tha"] if first == "endorse" else actors["manager_tha"]
    response = client.post(f"/api/v1/needs/{need['id']}/{first}", headers=actor.headers)
    if then is not None:
        response = client.post(f"/api/v1/needs/{need['id']}/{then}", headers=actor.headers)
    assert response.status_code == expected_status
    transitions = db.scalar(
        select(func.count()).select_from(NeedTransition).where(NeedTransition.need_id == need["id"])
    )
    assert transitions == (1 if then is None else 2)


def test_only_the_members_focal_point_endorses(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    need = _raise(client, actors["manager_tha"], submit=True)
    assert (
        client.post(f"/api/v1/needs/{need['id']}/endorse", headers=actors["fp_lao"].headers).status_code
        == 404
    )
    assert (
        client.post(f"/api/v1/needs/{need['id']}/endorse", headers=actors["manager_tha"].headers).status_code
        == 403
    )
    assert (
        client.post(f"/api/v1/needs/{need['id']}/endorse", headers=actors["coordinator"].headers).status_code
        == 403
    )
    assert db.scalar(select(Need.status).where(Need.id == need["id"])) is NeedStatus.SUBMITTED


def test_needs_are_seen_only_within_scope(client: TestClient, actors: dict[str, Actor]) -> None:
    _raise(client, actors["manager_tha"], submit=True)
    _raise(client, actors["fp_lao"], facility="LAO-HO-0001", submit=True)

    def visible(name: str) -> set[str]:
        body = client.get("/api/v1/needs", headers=actors[name].headers).json()
        return {item["jurisdiction"] for item in body["items"]}

    assert visible("coordinator") == {"THA", "LAO"}
    assert visible("fp_tha") == {"THA"}
    assert visible("fp_lao") == {"LAO"}
    assert visible("clinician_tha") == {"THA"}
    assert client.get("/api/v1/needs", headers=actors["researcher"].headers).status_code == 403


def test_bad_need_input_names_the_field(client: TestClient, actors: dict[str, Actor], db: Session) -> None:
    cases = [
        ({"quantity": 0}, "quantity"),
        ({"needed_by": "2020-01-01"}, "needed_by"),
        ({"product": "NOPE-1"}, "product"),
        ({"facility": "LAO-HO-0001"}, "facility"),
        ({"urgency": "whenever"}, "urgency"),
    ]
    for overrides, field in cases:
        response = client.post(
            "/api/v1/needs", json={**OXYGEN_NEED, **overrides}, headers=actors["manager_tha"].headers
        )
        assert response.status_code in (403, 422), (field, response.text)
        assert response.json()["errors"][0]["field"] == field
    assert db.scalar(select(func.count()).select_from(Need)) == 0


def test_only_drafts_can_be_edited(client: TestClient, actors: dict[str, Actor]) -> None:
    need = _raise(client, actors["manager_tha"])
    edited = client.patch(
        f"/api/v1/needs/{need['id']}", json={"quantity": 20}, headers=actors["manager_tha"].headers
    )
    assert edited.json()["quantity"] == 20
    client.post(f"/api/v1/needs/{need['id']}/submit", headers=actors["manager_tha"].headers)
    late = client.patch(
        f"/api/v1/needs/{need['id']}", json={"quantity": 30}, headers=actors["manager_tha"].headers
    )
    assert late.status_code == 409


def test_workflow_table() -> None:
    assert next_status(NeedStatus.OPEN, Action.ALLOCATE_PART) is NeedStatus.PARTIALLY_ALLOCATED
    assert next_status(NeedStatus.ALLOCATED, Action.FULFIL_ALL) is NeedStatus.FULFILLED
    with pytest.raises(InvalidTransition, match="fulfilled is final"):
        next_status(NeedStatus.FULFILLED, Action.CANCEL)


def test_progress_that_keeps_the_status_is_announced(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    """Units returned to demand (a shipment cancelled) change what is outstanding even when the
    status stays: the change feed says so, as the analytics cache and subscribers rely on it."""
    need_id = _raise(client, actors["fp_tha"], submit=True)["id"]
    endorsed = client.post(f"/api/v1/needs/{need_id}/endorse", headers=actors["fp_tha"].headers)
    assert endorsed.json()["status"] == "open"
    need = db.get(Need, need_id)
    assert need is not None
    need.quantity_allocated = 8
    needs_service.transition(db, need, Action.ALLOCATE_PART, None, "plan 1: 8 units")
    before = db.scalar(select(func.max(ChangeEvent.id)))
    need.quantity_allocated = 5
    needs_service.follow_progress(db, need, None, "SHP-1 cancelled: 3 units to allocate again")
    assert need.status is NeedStatus.PARTIALLY_ALLOCATED
    announced = db.scalars(select(ChangeEvent).where(ChangeEvent.id > before)).all()
    assert [(c.topic, c.payload["need_id"], c.payload["quantity_allocated"]) for c in announced] == [
        ("need", need_id, 5)
    ]
