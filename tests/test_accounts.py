"""Sign-in, sessions with CSRF, rate limiting, the login audit, API tokens and the password policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.models import LoginAttempt, WebSession
from healthmesh.accounts.security import password_problems, verify_password
from healthmesh.db import utcnow
from healthmesh.web.deps import CSRF_HEADER, SESSION_COOKIE
from tests.conftest import TEST_PASSWORD, Actor

FACILITY_PATCH = {"icu_beds": 64}


def _login(client: TestClient, username: str, password: str = TEST_PASSWORD) -> tuple[int, dict[str, object]]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    return response.status_code, response.json()


def test_login_sets_a_session_that_reads_and_needs_csrf_to_write(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    status, body = _login(client, "fp.tha")
    assert status == 200
    assert body["user"]["jurisdiction"] == "THA"
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie is not None
    assert cookie.startswith("hm_s_")
    stored = db.scalars(select(WebSession.token_hash)).all()
    assert cookie not in stored  # only the hash is kept
    assert client.get("/api/v1/me").json()["username"] == "fp.tha"
    refused = client.patch("/api/v1/facilities/THA-HO-0002", json=FACILITY_PATCH)
    assert refused.status_code == 403
    assert CSRF_HEADER in refused.json()["detail"]
    allowed = client.patch(
        "/api/v1/facilities/THA-HO-0002", json=FACILITY_PATCH, headers={CSRF_HEADER: str(body["csrf_token"])}
    )
    assert allowed.status_code == 200
    assert allowed.json()["icu_beds"] == 64


def test_logout_revokes_the_session(client: TestClient, actors: dict[str, Actor]) -> None:
    _login(client, "auditor")
    cookie = client.cookies.get(SESSION_COOKIE)
    assert client.post("/api/v1/auth/logout").status_code == 204
    client.cookies.set(SESSION_COOKIE, str(cookie))
    assert client.get("/api/v1/me").status_code == 401


def test_expired_session_is_refused(client: TestClient, actors: dict[str, Actor], db: Session) -> None:
    _login(client, "auditor")
    for web_session in db.scalars(select(WebSession)):
        web_session.expires_at = utcnow() - timedelta(minutes=1)
    db.flush()
    assert client.get("/api/v1/me").status_code == 401


def test_wrong_password_is_401_and_recorded(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    status, body = _login(client, "fp.tha", "not-the-password-at-all")
    assert status == 401
    assert body["type"] == "urn:healthmesh:problem:unauthenticated"
    status, _ = _login(client, "nobody-here", "not-the-password-at-all")
    assert status == 401
    attempts = db.scalars(select(LoginAttempt).order_by(LoginAttempt.id)).all()
    assert [(a.username, a.succeeded, a.reason) for a in attempts] == [
        ("fp.tha", False, "bad_credentials"),
        ("nobody-here", False, "bad_credentials"),
    ]


def test_repeated_failures_are_rate_limited_even_with_the_right_password(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    for _ in range(5):
        assert _login(client, "fp.lao", "guessing-again-and-again")[0] == 401
    status, body = _login(client, "fp.lao")
    assert status == 429
    assert body["type"] == "urn:healthmesh:problem:rate-limited"
    assert _login(client, "fp.tha")[0] == 200  # other accounts are unaffected
    reasons = db.scalars(select(LoginAttempt.reason).where(LoginAttempt.username == "fp.lao")).all()
    assert reasons.count("rate_limited") == 1


def test_deactivated_user_cannot_sign_in_or_use_tokens(client: TestClient, actors: dict[str, Actor]) -> None:
    response = client.patch(
        "/api/v1/users/clinician.tha", json={"active": False}, headers=actors["admin"].headers
    )
    assert response.status_code == 200
    assert _login(client, "clinician.tha")[0] == 401
    assert client.get("/api/v1/me", headers=actors["clinician_tha"].headers).status_code == 401


def test_api_token_is_shown_once_stored_hashed_and_revocable(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    headers = actors["researcher"].headers
    created = client.post("/api/v1/me/tokens", json={"name": "nightly export"}, headers=headers)
    assert created.status_code == 201
    token = created.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/me", headers=bearer).json()["username"] == "researcher"
    listed = client.get("/api/v1/me/tokens", headers=headers).json()
    assert all("token" not in item for item in listed)
    assert [item["name"] for item in listed] == ["test", "nightly export"]
    revoked = client.delete(f"/api/v1/tokens/{created.json()['id']}", headers=headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert client.get("/api/v1/me", headers=bearer).status_code == 401


def test_token_in_the_past_is_refused(client: TestClient, actors: dict[str, Actor]) -> None:
    response = client.post(
        "/api/v1/me/tokens",
        json={"name": "old", "expires_at": "2020-01-01T00:00:00Z"},
        headers=actors["admin"].headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "expires_at"


def test_weak_password_is_refused_naming_the_field(client: TestClient, actors: dict[str, Actor]) -> None:
    body = {"username": "nurse.ann", "password": "short", "role": "clinician", "facility": "THA-HO-0002"}
    response = client.post("/api/v1/users", json=body, headers=actors["admin"].headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "password"


def test_changing_a_password_revokes_existing_sessions(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    _login(client, "fp.lao")
    response = client.patch(
        "/api/v1/users/fp.lao", json={"password": "a-much-better-passphrase"}, headers=actors["admin"].headers
    )
    assert response.status_code == 200
    assert client.get("/api/v1/me").status_code == 401
    assert _login(client, "fp.lao", "a-much-better-passphrase")[0] == 200


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short-one", "at least 12 characters"),
        ("mary.smith-2026-x", "must not contain the username"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess"),
    ],
)
def test_password_policy(password: str, problem: str) -> None:
    assert problem in password_problems(password, "mary.smith")


def test_verify_password_refuses_a_missing_hash() -> None:
    assert verify_password(None, "anything at all") is False


def test_a_token_records_its_use_at_most_once_a_minute(db: Session, actors: dict[str, Actor]) -> None:
    """Writing the last use on every request would serialise all requests made with one token."""
    from healthmesh.accounts import service
    from healthmesh.accounts.models import ApiToken

    actor = actors["fp_tha"]
    token = db.scalar(select(ApiToken).where(ApiToken.user_id == actor.principal.user_id))
    assert token is not None
    assert service.token_user(db, actor.token) is not None
    first = token.last_used_at
    assert first is not None
    assert service.token_user(db, actor.token) is not None
    assert token.last_used_at == first  # within the minute: not written again
    token.last_used_at = first - timedelta(minutes=2)
    assert service.token_user(db, actor.token) is not None
    assert token.last_used_at is not None
    assert token.last_used_at > first - timedelta(minutes=2)
