"""Security basics (issue 10, part 5): CSRF on every cookie-authenticated write, the session
cookie's flags, security headers on every kind of response, the password policy, revocable
tokens and sessions, secrets kept out of the logs, and SQL built only from bound parameters.

See docs/security.md for the threat model these tests hold HealthMesh to.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import healthmesh
from healthmesh.accounts.models import ApiToken, LoginAttempt, User, WebSession
from healthmesh.config import Settings
from healthmesh.db import utcnow
from healthmesh.registry.models import Facility
from healthmesh.web.app import CONTENT_SECURITY_POLICY
from healthmesh.web.deps import CSRF_HEADER, SESSION_COOKIE
from tests.conftest import TEST_PASSWORD, Actor, app_on_session

SRC = Path(healthmesh.__file__).parent
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
#: The only writes a visitor may make without signing in: reviewed here, so a new one fails.
PUBLIC_WRITES = {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/logout")}
STRONG_PASSWORD = "Irrawaddy-monsoon-ledger-7"


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def make_client(db: Session, engine: Engine, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """`make_client(base_url="https://testserver", cookie_secure=True)`: a client of an application
    with those settings (the `client` fixture's are fixed)."""
    opened: list[TestClient] = []

    def make(base_url: str = "http://testserver", **overrides: Any) -> TestClient:
        settings = Settings(
            data_dir=tmp_path / "data", secret_key="test-secret-key", database_url="sqlite://", **overrides
        )
        test_client = TestClient(
            app_on_session(db, engine, settings), base_url=base_url, raise_server_exceptions=False
        )
        opened.append(test_client)
        return test_client.__enter__()

    yield make
    for test_client in opened:
        test_client.__exit__(None, None, None)


def _login(client: TestClient, username: str, password: str = TEST_PASSWORD) -> str:
    """Sign in through the API; the CSRF token the console would send."""
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    return token


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _is_public(route: Any) -> bool:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if getattr(dependency.call, "public", False):
            return True
        pending.extend(dependency.dependencies)
    return False


def _writes(app: FastAPI) -> list[tuple[str, str, bool]]:
    """(method, path, public) of every state-changing API route (with its routers' dependencies)."""
    return [
        (method, str(context.path), _is_public(context))
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in sorted((context.methods or set()) & set(UNSAFE_METHODS))
    ]


def _set_cookie(response: httpx.Response) -> dict[str, str]:
    """The session cookie's attributes, lower-cased names (flags map to "")."""
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith(f"{SESSION_COOKIE}="))
    attributes = {}
    for part in header.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return attributes


# --- CSRF ----------------------------------------------------------------------------------------


def test_every_cookie_write_without_the_sessions_csrf_token_is_refused(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    """Walks the route table: a write by a signed-in browser with no token, or another session's
    token, is a 403 naming the header, whatever the route (the check precedes the route's own)."""
    other = TestClient(client.app)
    foreign_token = _login(other, "coordinator")
    _login(client, "admin")
    routes = _writes(client.app)  # type: ignore[arg-type]
    assert {(m, p) for m, p, public in routes if public} == PUBLIC_WRITES
    guarded = [(m, p) for m, p, public in routes if not public]
    assert len(guarded) > 40  # the whole API, not a handful
    before = db.scalar(select(func.count()).select_from(User))
    for method, path in guarded:
        for headers in ({}, {CSRF_HEADER: foreign_token}):
            response = client.request(method, _fill(path), headers=headers)
            assert response.status_code == 403, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert CSRF_HEADER in response.json()["detail"], (method, path)
    assert db.scalar(select(func.count()).select_from(User)) == before


def test_the_sessions_own_token_lets_a_write_through_and_changes_nothing_without_it(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    token = _login(client, "fp.tha")
    refused = client.patch("/api/v1/facilities/THA-HO-0002", json={"icu_beds": 64})
    assert refused.status_code == 403
    facility = db.scalar(select(Facility).where(Facility.code == "THA-HO-0002"))
    assert facility is not None
    assert facility.icu_beds == 20
    allowed = client.patch(
        "/api/v1/facilities/THA-HO-0002", json={"icu_beds": 64}, headers={CSRF_HEADER: token}
    )
    assert allowed.status_code == 200
    assert allowed.json()["icu_beds"] == 64


def test_api_tokens_need_no_csrf_token_and_a_cookie_does_not_lend_them_one(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    """A browser never attaches an Authorization header on its own, so bearer writes are not
    CSRF-exposed; a bearer request is judged by its token alone, not by a cookie beside it."""
    response = client.patch(
        "/api/v1/facilities/THA-HO-0002", json={"icu_beds": 30}, headers=actors["fp_tha"].headers
    )
    assert response.status_code == 200
    _login(client, "admin")  # the admin's session cookie is now sent along too
    response = client.patch(
        "/api/v1/facilities/SGP-HO-0001", json={"icu_beds": 81}, headers=actors["fp_tha"].headers
    )
    assert response.status_code in (403, 404)  # fp.tha's scope, not the admin's session


def test_a_csrf_header_with_non_ascii_bytes_is_a_403_not_a_server_error(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    _login(client, "admin")
    response = client.post(
        "/api/v1/me/tokens", json={"name": "x"}, headers={CSRF_HEADER: "é".encode("latin-1")}
    )
    assert response.status_code == 403
    assert CSRF_HEADER in response.json()["detail"]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", json.dumps({"username": "admin", "password": TEST_PASSWORD})),
        ("application/x-www-form-urlencoded", f"username=admin&password={TEST_PASSWORD}"),
        (
            "multipart/form-data; boundary=b",
            '--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nadmin\r\n--b--',
        ),
    ],
)
def test_sign_in_takes_only_json_so_another_sites_form_cannot_sign_a_browser_in(
    client: TestClient, actors: dict[str, Actor], content_type: str, body: str
) -> None:
    """An HTML form can post these types cross-site without a preflight (login CSRF); JSON it cannot."""
    response = client.post("/api/v1/auth/login", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert SESSION_COOKIE not in response.cookies


def test_another_site_cannot_sign_a_browser_out(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    token = _login(client, "auditor")
    refused = client.post("/api/v1/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert client.get("/api/v1/me").status_code == 200
    assert db.scalar(select(WebSession.revoked_at)) is None
    signed_out = client.post(
        "/api/v1/auth/logout", headers={"Sec-Fetch-Site": "same-origin", CSRF_HEADER: token}
    )
    assert signed_out.status_code == 204
    assert db.scalar(select(WebSession.revoked_at)) is not None


# --- the session cookie --------------------------------------------------------------------------


def test_the_session_cookie_is_httponly_lax_path_wide_and_expires_with_the_session(
    make_client: Callable[..., TestClient], actors: dict[str, Actor]
) -> None:
    client = make_client(session_ttl_hours=8)
    response = client.post("/api/v1/auth/login", json={"username": "admin", "password": TEST_PASSWORD})
    flags = _set_cookie(response)
    assert "httponly" in flags
    assert flags["samesite"] == "lax"
    assert flags["path"] == "/"
    assert flags["max-age"] == str(8 * 3600)
    assert "expires" in flags
    assert "secure" not in flags  # plain http on a development machine: a Secure cookie would not come back
    cleared = _set_cookie(client.post("/api/v1/auth/logout"))
    assert cleared["max-age"] == "0"
    assert "httponly" in cleared
    assert cleared["samesite"] == "lax"


@pytest.mark.parametrize(
    ("base_url", "cookie_secure", "secure"),
    [
        ("https://testserver", None, True),  # served over HTTPS: Secure by itself
        ("http://testserver", True, True),  # behind a TLS proxy that does not say so: forced
        ("http://testserver", None, False),  # plain-http development
        ("https://testserver", False, False),  # explicitly off
    ],
)
def test_the_session_cookie_is_secure_whenever_served_over_https(
    make_client: Callable[..., TestClient],
    actors: dict[str, Actor],
    base_url: str,
    cookie_secure: bool | None,
    secure: bool,
) -> None:
    client = make_client(base_url, cookie_secure=cookie_secure)
    response = client.post("/api/v1/auth/login", json={"username": "admin", "password": TEST_PASSWORD})
    assert ("secure" in _set_cookie(response)) is secure
    assert ("strict-transport-security" in response.headers) is secure
    if secure:
        assert response.headers["strict-transport-security"] == "max-age=63072000"


# --- security headers ----------------------------------------------------------------------------

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def _assert_security_headers(response: httpx.Response, what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (what, name)
    policy = response.headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives.get("script-src", [""])[0] == "'self'", what
    assert "'unsafe-inline'" not in directives["script-src"], what
    assert "'unsafe-eval'" not in directives["script-src"], what
    assert directives["frame-ancestors"] == ["'none'"], what
    assert directives["object-src"] == ["'none'"], what
    assert directives["default-src"] == ["'self'"], what
    assert "camera=()" in response.headers.get("permissions-policy", ""), what


def test_every_kind_of_response_carries_the_security_headers(
    make_client: Callable[..., TestClient], actors: dict[str, Actor]
) -> None:
    client = make_client()
    app: FastAPI = client.app  # type: ignore[assignment]

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("an unhandled bug")

    anonymous = {
        "HTML page": ("GET", "/", 200),
        "JSON": ("GET", "/healthz", 200),
        "OpenAPI": ("GET", "/openapi.json", 200),
        "API explorer": ("GET", "/docs", 200),
        "static file": ("GET", "/static/js/console.js", 200),
        "sign-in page": ("GET", "/console/login", 200),
        "redirect to sign-in": ("GET", "/console", 303),
        "problem 401": ("GET", "/api/v1/me", 401),
        "problem 404": ("GET", "/api/v1/no-such-thing", 404),
        "problem 405": ("PUT", "/healthz", 405),
        "problem 422": ("POST", "/api/v1/auth/login", 422),
        "unhandled error 500": ("GET", "/boom", 500),
    }
    for what, (method, path, status) in anonymous.items():
        response = client.request(method, path, follow_redirects=False)
        assert response.status_code == status, (what, response.text)
        _assert_security_headers(response, what)
    _login(client, "researcher")
    for what, (path, status) in {
        "console page": ("/console/shortages", 200),
        "forbidden page": ("/console/admin", 403),
        "page fragment": ("/console/ledger", 200),
    }.items():
        response = client.get(path)
        assert response.status_code == status, what
        _assert_security_headers(response, what)


def test_the_api_explorer_may_run_its_one_inline_script_and_no_other(client: TestClient) -> None:
    response = client.get("/docs")
    scripts = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    policy = response.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    assert policy.replace(f" 'sha256-{digest}'", "") == CONTENT_SECURITY_POLICY
    assert "sha256-" not in client.get("/").headers["content-security-policy"]


def test_no_strict_transport_security_over_plain_http(client: TestClient) -> None:
    assert "strict-transport-security" not in client.get("/healthz").headers


def test_responses_for_one_caller_are_never_stored(client: TestClient, actors: dict[str, Actor]) -> None:
    assert client.get("/api/v1/me", headers=actors["auditor"].headers).headers["cache-control"] == "no-store"
    anonymous = client.get("/healthz")
    assert "no-store" not in anonymous.headers.get("cache-control", "")
    signed_in = client.post("/api/v1/auth/login", json={"username": "auditor", "password": TEST_PASSWORD})
    assert signed_in.headers["cache-control"] == "no-store"  # it carries the CSRF token
    assert client.get("/console/ledger").headers["cache-control"] == "no-store"
    refused = client.get("/api/v1/users", headers={"Authorization": "Bearer hm_at_not-a-token"})
    assert refused.status_code == 401
    assert refused.headers["cache-control"] == "no-store"
    asset = client.get("/static/js/console.js")  # the cookie goes along, but the file is everyone's
    assert asset.status_code == 200
    assert "no-store" not in asset.headers.get("cache-control", "")


class _InlineCode(HTMLParser):
    """Collects what a strict script-src would block: inline scripts, on*= handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and "src" not in named and named.get("type") != "application/json":
            self.found.append(f"inline <script> at line {self.getpos()[0]}")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{name}= handler at line {self.getpos()[0]}")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL at line {self.getpos()[0]}")


def test_no_template_has_code_the_content_security_policy_would_block() -> None:
    """The CSP runs no inline script: code in a template would silently not run in the console."""
    found = {}
    for template in sorted((SRC / "web" / "templates").rglob("*.html")):
        parser = _InlineCode()
        parser.feed(template.read_text(encoding="utf-8"))
        if parser.found:
            found[template.name] = parser.found
    assert found == {}
    parser = _InlineCode()
    parser.feed('<p><script>alert(1)</script><a href="javascript:x" onclick="y()">z</a></p>')
    assert len(parser.found) == 3  # the check itself sees what it looks for


def test_our_scripts_use_no_eval_the_policy_forbids() -> None:
    for script in sorted((SRC / "web" / "static" / "js").glob("*.js")):
        code = script.read_text(encoding="utf-8")
        assert not re.search(r"\beval\(|new Function\(|set(?:Timeout|Interval)\(\s*[\"'`]", code), script.name


# --- password policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Short-1", "at least 12 characters"),
        ("s.kittisak-of-bangkok", "must not contain the username"),
        ("Password2024!", "too easy to guess"),
        ("qwerty123456", "too easy to guess"),
        ("#Welcome12345", "too easy to guess"),
        ("correct horse battery staple", "too easy to guess"),
        ("abababababababab", "too easy to guess"),
        ("Mekong-" * 40, "at most 256 characters"),
    ],
)
def test_a_weak_password_is_refused_on_create_naming_the_field(
    client: TestClient, actors: dict[str, Actor], db: Session, password: str, message: str
) -> None:
    body = {"username": "s.kittisak", "password": password, "role": "clinician", "facility": "THA-HO-0002"}
    response = client.post("/api/v1/users", json=body, headers=actors["admin"].headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"] == [{"field": "password", "message": problem["errors"][0]["message"]}]
    assert message in problem["errors"][0]["message"]
    assert password not in response.text  # the refusal does not echo the secret
    assert db.scalar(select(User).where(User.username == "s.kittisak")) is None


def test_a_good_password_is_accepted_and_stored_as_argon2id(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    body = {
        "username": "s.kittisak",
        "password": STRONG_PASSWORD,
        "role": "clinician",
        "facility": "THA-HO-0002",
    }
    assert client.post("/api/v1/users", json=body, headers=actors["admin"].headers).status_code == 201
    stored = db.scalar(select(User.password_hash).where(User.username == "s.kittisak"))
    assert stored is not None
    assert stored.startswith("$argon2id$")


def test_a_weak_password_is_refused_on_an_administrators_reset_and_the_old_one_stays(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    response = client.patch(
        "/api/v1/users/fp.lao", json={"password": "fp.lao-2026-pass"}, headers=actors["admin"].headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "password"
    assert (
        client.post("/api/v1/auth/login", json={"username": "fp.lao", "password": TEST_PASSWORD}).status_code
        == 200
    )


def _change(client: TestClient, current: str, new: str, headers: dict[str, str]) -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/v1/me/password", json={"current_password": current, "new_password": new}, headers=headers
    )
    return response


def test_changing_ones_own_password_signs_out_the_other_browsers(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    elsewhere = TestClient(client.app)
    _login(elsewhere, "manager.tha")
    token = _login(client, "manager.tha")
    assert _change(client, TEST_PASSWORD, STRONG_PASSWORD, {CSRF_HEADER: token}).status_code == 204
    assert client.get("/api/v1/me").status_code == 200  # this browser stays signed in
    assert elsewhere.get("/api/v1/me").status_code == 401  # the other one is out at once
    assert client.get("/api/v1/me", headers=actors["manager_tha"].headers).status_code == 200  # tokens stay
    fresh = TestClient(client.app)
    assert (
        fresh.post(
            "/api/v1/auth/login", json={"username": "manager.tha", "password": TEST_PASSWORD}
        ).status_code
        == 401
    )
    assert _login(fresh, "manager.tha", STRONG_PASSWORD)


@pytest.mark.parametrize(
    ("current", "new", "field", "message"),
    [
        ("not-my-password-at-all", STRONG_PASSWORD, "current_password", "wrong password"),
        (TEST_PASSWORD, "clinician.tha-secure", "new_password", "must not contain the username"),
        (TEST_PASSWORD, "letmein2025!!", "new_password", "too easy to guess"),
        (TEST_PASSWORD, TEST_PASSWORD, "new_password", "must differ from the current password"),
    ],
)
def test_a_refused_password_change_names_the_field_and_changes_nothing(
    client: TestClient,
    actors: dict[str, Actor],
    db: Session,
    current: str,
    new: str,
    field: str,
    message: str,
) -> None:
    before = db.scalar(select(User.password_hash).where(User.username == "clinician.tha"))
    response = _change(client, current, new, actors["clinician_tha"].headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert message in errors[0]["message"]
    db.expire_all()
    assert db.scalar(select(User.password_hash).where(User.username == "clinician.tha")) == before


def test_guessing_the_current_password_is_recorded_and_rate_limited(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    """A stolen session or token cannot try passwords at will to take the account over."""
    statuses = [
        _change(client, f"guess-number-{i}", STRONG_PASSWORD, actors["researcher"].headers).status_code
        for i in range(6)
    ]
    assert statuses == [422] * 5 + [429]
    failures = db.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.username == "researcher", LoginAttempt.succeeded.is_(False))
    )
    assert failures == 6
    assert _change(client, TEST_PASSWORD, STRONG_PASSWORD, actors["researcher"].headers).status_code == 429


# --- revocable tokens and sessions ---------------------------------------------------------------


def test_a_token_its_owner_revokes_is_refused_at_once(client: TestClient, actors: dict[str, Actor]) -> None:
    created = client.post(
        "/api/v1/me/tokens", json={"name": "stock sync"}, headers=actors["manager_tha"].headers
    )
    raw, token_id = created.json()["token"], created.json()["id"]
    bearer = {"Authorization": f"Bearer {raw}"}
    assert client.get("/api/v1/me", headers=bearer).status_code == 200
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=bearer).status_code == 200  # revokes itself
    refused = client.get("/api/v1/me", headers=bearer)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"


def test_an_administrator_finds_and_revokes_anothers_token_and_nobody_else_may(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    victim = actors["fp_lao"]
    listed = client.get("/api/v1/users/fp.lao/tokens", headers=actors["admin"].headers)
    assert [t["name"] for t in listed.json()] == ["test"]
    token_id = listed.json()[0]["id"]
    for outsider in ("fp_tha", "coordinator", "auditor"):
        assert client.get("/api/v1/users/fp.lao/tokens", headers=actors[outsider].headers).status_code == 404
        assert (
            client.delete(f"/api/v1/tokens/{token_id}", headers=actors[outsider].headers).status_code == 404
        )
    assert client.get("/api/v1/me", headers=victim.headers).status_code == 200
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=actors["admin"].headers).status_code == 200
    assert client.get("/api/v1/me", headers=victim.headers).status_code == 401
    assert victim.token not in listed.text  # a prefix to recognise it by, never the token
    assert db.scalar(select(ApiToken.revoked_at).where(ApiToken.id == token_id)) is not None


def test_an_expired_token_is_refused_at_once(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    created = client.post(
        "/api/v1/me/tokens", json={"name": "one hour", "expires_at": soon}, headers=actors["auditor"].headers
    )
    bearer = {"Authorization": f"Bearer {created.json()['token']}"}
    assert client.get("/api/v1/me", headers=bearer).status_code == 200
    token = db.get(ApiToken, created.json()["id"])
    assert token is not None
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    assert client.get("/api/v1/me", headers=bearer).status_code == 401


def test_sign_out_revokes_the_session_on_the_server(
    client: TestClient, actors: dict[str, Actor], db: Session
) -> None:
    token = _login(client, "coordinator")
    raw = client.cookies.get(SESSION_COOKIE)
    assert client.post("/api/v1/auth/logout", headers={CSRF_HEADER: token}).status_code == 204
    assert db.scalar(select(WebSession.revoked_at)) is not None
    client.cookies.set(SESSION_COOKIE, str(raw))  # a copy of the cookie kept by a thief
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/console/ledger", follow_redirects=False).status_code == 303


def test_a_user_signs_out_everywhere(client: TestClient, actors: dict[str, Actor]) -> None:
    phone, laptop = TestClient(client.app), TestClient(client.app)
    _login(phone, "fp.tha")
    token = _login(laptop, "fp.tha")
    response = laptop.delete("/api/v1/users/fp.tha/sessions", headers={CSRF_HEADER: token})
    assert response.json() == {"revoked": 2}
    assert phone.get("/api/v1/me").status_code == 401
    assert laptop.get("/api/v1/me").status_code == 401


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [("admin", True), ("fp_tha", True), ("fp_lao", False), ("coordinator", False), ("manager_tha", False)],
)
def test_an_administrator_of_the_account_signs_a_user_out_and_nobody_else_may(
    client: TestClient, actors: dict[str, Actor], actor: str, allowed: bool
) -> None:
    _login(client, "clinician.tha")
    response = client.delete("/api/v1/users/clinician.tha/sessions", headers=actors[actor].headers)
    assert response.status_code == (200 if allowed else 404)
    assert client.get("/api/v1/me").status_code == (401 if allowed else 200)


# --- secrets never logged ------------------------------------------------------------------------


@dataclass
class _Secrets:
    values: list[str]

    def leaked_in(self, records: list[logging.LogRecord]) -> list[str]:
        leaks = []
        for record in records:
            text = record.getMessage() + repr(record.args) + (record.exc_text or "")
            leaks += [f"{record.name}: {value[:8]}..." for value in self.values if value in text]
        return leaks


def _sensitive_flow(http: Any, actors: dict[str, Actor]) -> _Secrets:
    """Sign-in, token creation, a bearer request, a CSRF-guarded write and a password change."""
    signed_in = http.post("/api/v1/auth/login", json={"username": "fp.tha", "password": TEST_PASSWORD})
    assert signed_in.status_code == 200
    csrf = signed_in.json()["csrf_token"]
    session = signed_in.cookies[SESSION_COOKIE]
    created = http.post("/api/v1/me/tokens", json={"name": "sync"}, headers={CSRF_HEADER: csrf})
    assert created.status_code == 201
    new_token = created.json()["token"]
    assert http.get("/api/v1/me", headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    assert http.get("/api/v1/users", headers=actors["admin"].headers).status_code == 200
    changed = http.post(
        "/api/v1/me/password",
        json={"current_password": TEST_PASSWORD, "new_password": STRONG_PASSWORD},
        headers={CSRF_HEADER: csrf},
    )
    assert changed.status_code == 204
    wrong = http.post(
        "/api/v1/auth/login", json={"username": "fp.tha", "password": "typo-" + STRONG_PASSWORD}
    )
    assert wrong.status_code == 401
    return _Secrets(
        [
            TEST_PASSWORD,
            STRONG_PASSWORD,
            "typo-" + STRONG_PASSWORD,
            csrf,
            session,
            new_token,
            actors["admin"].token,
        ]
    )


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record at every level, SQL statements and their parameters included (requested
    before the database fixtures: a connection decides whether it logs when it opens)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # SQLAlchemy keeps itself at WARNING
    return caplog


def test_no_secret_reaches_the_application_logs(
    every_log: pytest.LogCaptureFixture, client: TestClient, actors: dict[str, Actor]
) -> None:
    caplog = every_log
    secrets = _sensitive_flow(client, actors)
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)  # the logs were on
    assert secrets.leaked_in(caplog.records) == []


def test_no_secret_reaches_the_servers_access_log(
    db: Session,
    engine: Engine,
    settings: Settings,
    actors: dict[str, Actor],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same flow against uvicorn itself, with its access log on."""
    caplog.set_level(logging.INFO)
    access_logger = logging.getLogger("uvicorn.access")  # an earlier in-process uvicorn may have
    monkeypatch.setattr(access_logger, "propagate", True)  # configured it not to propagate
    monkeypatch.setattr(access_logger, "disabled", False)
    monkeypatch.setattr(access_logger, "level", logging.INFO)
    app = app_on_session(db, engine, settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=True, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            secrets = _sensitive_flow(http, actors)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    access = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert any("/api/v1/me/password" in r.getMessage() for r in access)  # the access log was on
    assert secrets.leaked_in(caplog.records) == []


# --- SQL only through bound parameters -----------------------------------------------------------

#: Calls that send a string to the database as SQL.
SQL_SINKS = frozenset(
    {"text", "literal_column", "exec_driver_sql", "execute", "executemany", "executescript", "copy"}
)
#: Builtins that hand their argument's strings through unchanged.
PASS_THROUGH = frozenset({"enumerate", "zip", "sorted", "reversed", "list", "tuple", "iter", "str"})
#: Where SQL is built from strings on purpose, each with why no value from outside reaches it.
#: Identifiers cannot be bound parameters; values always are. An entry that no longer matches
#: anything fails the test too, so the list stays exact.
ALLOWED_SQL_BUILDERS = {
    # COPY / executemany column list from EVENT_COLUMNS, a module constant asserted equal to the
    # table's columns at import; the values go as COPY rows or `?` parameters.
    ("supply/ledger.py", "_insert_events"),
    # The continent load (an operator's command on an empty database, no request input):
    # table and column names from the loader's own COPY specs and tuples (BIG_TABLES, ID_TABLES,
    # MUST_BE_EMPTY, NEED_COLUMNS, TRANSITION_COLUMNS) ...
    ("demo/continent.py", "_Copy.__enter__"),
    ("demo/continent.py", "_copy_needs"),
    ("demo/continent.py", "_empty"),
    ("demo/continent.py", "seed_continent"),
    # ... and constraint and index definitions read back from PostgreSQL's own catalog
    # (pg_get_constraintdef, pg_get_indexdef) for those tables, to drop and restore them.
    ("demo/continent.py", "_drop_secondary"),
    ("demo/continent.py", "_load"),
}


class _SqlBuilders(ast.NodeVisitor):
    """Finds SQL sinks given a string built with an f-string, %, .format(), a str join or `+`,
    directly or through a variable, a loop over built strings, or a module function returning one."""

    def __init__(self, tree: ast.Module) -> None:
        self.found: list[tuple[str, int]] = []
        self.scopes: list[str] = []
        self.bindings = [self._bindings(tree)]
        self.functions = {
            n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        }

    @staticmethod
    def _bindings(scope: ast.AST) -> dict[str, list[ast.expr]]:
        """What each name in this scope (not nested functions or classes) is ever bound to."""
        out: dict[str, list[ast.expr]] = {}

        def bind(target: ast.expr, value: ast.expr) -> None:
            if isinstance(target, ast.Name):
                out.setdefault(target.id, []).append(value)
            elif isinstance(target, (ast.Tuple, ast.List)):
                for element in target.elts:
                    bind(element, value)

        pending: list[ast.AST] = [scope]
        while pending:
            for child in ast.iter_child_nodes(pending.pop()):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                    continue
                if isinstance(child, ast.Assign):
                    for target in child.targets:
                        bind(target, child.value)
                elif isinstance(child, (ast.AnnAssign, ast.AugAssign)) and child.value is not None:
                    bind(child.target, child.value)
                elif isinstance(child, (ast.For, ast.AsyncFor, ast.comprehension)):
                    bind(child.target, child.iter)
                elif isinstance(child, ast.withitem) and child.optional_vars is not None:
                    bind(child.optional_vars, child.context_expr)
                pending.append(child)
        return out

    def _scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scopes.append(node.name)
        function = not isinstance(node, ast.ClassDef)
        if function:
            self.bindings.append(self._bindings(node))
        self.generic_visit(node)
        if function:
            self.bindings.pop()
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope  # noqa: N815 - ast's names

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name in SQL_SINKS and node.args and self.built(node.args[0], frozenset()):
            self.found.append((".".join(self.scopes) or "<module>", node.lineno))
        self.generic_visit(node)

    def built(self, expr: ast.expr, seen: frozenset[str]) -> bool:
        """Whether `expr` is a string assembled at run time."""
        if isinstance(expr, ast.JoinedStr):
            return any(isinstance(value, ast.FormattedValue) for value in expr.values)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Mod)):
            sides = (expr.left, expr.right)
            if any(self.built(side, seen) for side in sides):
                return True
            texts = [isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides]
            return any(texts) and not all(isinstance(s, ast.Constant) for s in sides)
        if isinstance(expr, ast.Call):
            return self._built_call(expr, seen)
        if isinstance(expr, ast.IfExp):
            return self.built(expr.body, seen) or self.built(expr.orelse, seen)
        if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
            return any(self.built(element, seen) for element in expr.elts)
        if isinstance(expr, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            return self.built(expr.elt, seen)
        if isinstance(expr, ast.Name) and expr.id not in seen:
            for scope in reversed(self.bindings):
                if expr.id in scope:
                    return any(self.built(value, seen | {expr.id}) for value in scope[expr.id])
        return False

    def _built_call(self, call: ast.Call, seen: frozenset[str]) -> bool:
        if isinstance(call.func, ast.Attribute):
            return call.func.attr == "format" or (
                call.func.attr == "join" and isinstance(call.func.value, ast.Constant)
            )
        if not isinstance(call.func, ast.Name):
            return False
        if call.func.id in PASS_THROUGH:
            return any(self.built(argument, seen) for argument in call.args)
        called = self.functions.get(call.func.id)
        marker = f"{call.func.id}()"
        if called is None or marker in seen:
            return False
        self.bindings.append(self._bindings(called))
        try:
            calls = frozenset(name for name in seen if name.endswith("()")) | {marker}
            returned = [n.value for n in ast.walk(called) if isinstance(n, ast.Return) and n.value]
            return any(self.built(value, calls) for value in returned)
        finally:
            self.bindings.pop()


def _sql_builders(source: str) -> list[tuple[str, int]]:
    tree = ast.parse(source)
    scan = _SqlBuilders(tree)
    scan.visit(tree)
    return scan.found


def test_sql_is_built_only_from_bound_parameters() -> None:
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for scope, line in _sql_builders(path.read_text(encoding="utf-8")):
            found.setdefault((path.relative_to(SRC).as_posix(), scope), []).append(line)
    unexpected = {site: lines for site, lines in found.items() if site not in ALLOWED_SQL_BUILDERS}
    assert unexpected == {}, "SQL built from strings: bind the values, or justify it in ALLOWED_SQL_BUILDERS"
    assert ALLOWED_SQL_BUILDERS - found.keys() == set(), "stale entries in ALLOWED_SQL_BUILDERS"


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("db.execute(text(f\"SELECT * FROM users WHERE name = '{name}'\"))", True),
        ("db.execute(text(\"SELECT * FROM users WHERE name = '%s'\" % name))", True),
        ("db.execute(text(\"SELECT * FROM users WHERE name = '{}'\".format(name)))", True),
        ('conn.exec_driver_sql("DELETE FROM lots WHERE id = " + lot_id)', True),
        ('def f(kind):\n    sql = f"DROP TABLE {kind}"\n    cursor.execute(sql)', True),
        ('def f(names):\n    for s in [f"DROP TABLE {n}" for n in names]:\n        cursor.execute(s)', True),
        ('def q(t):\n    return "SELECT * FROM " + t\ndef f(t):\n    cursor.execute(q(t))', True),
        ('db.execute(text(" ".join(parts)))', True),
        ('db.execute(text("SELECT * FROM users WHERE name = :name"), {"name": name})', False),
        ("db.execute(select(User).where(User.username == name))", False),
        ('conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")', False),
        ('SQL = "SELECT 1 " + "FROM users"\ndb.execute(text(SQL))', False),
    ],
)
def test_the_sql_scan_tells_built_strings_from_bound_parameters(source: str, flagged: bool) -> None:
    assert bool(_sql_builders(source)) is flagged
