"""Request dependencies: the one transaction per request, settings, and who is asking.

`get_db` is the single place a request's transaction commits: after the endpoint returned
without error (scope="function", so a failed commit still turns into an error response).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session

from healthmesh.accounts import service as accounts
from healthmesh.accounts.access import Permission, Principal
from healthmesh.config import Settings
from healthmesh.db import begin_write
from healthmesh.errors import FieldError, InvalidInput, PermissionDenied, Unauthenticated

SESSION_COOKIE = "hm_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    session: Session = request.app.state.sessionmaker()
    try:
        if request.method not in SAFE_METHODS:
            begin_write(session)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_db, scope="function")]
#: The header that makes a write safe to retry (stored prefixed, so kept under the 128-character column).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        description="Retrying with the same key changes nothing",
    ),
]
AppSettings = Annotated[Settings, Depends(get_settings)]


def csrf_token_for(settings: Settings, session_token: str) -> str:
    """Bound to the session, so a token stolen from one session is useless in another."""
    key = settings.effective_secret_key().encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def csrf_valid(request: Request, settings: Settings, session_token: str) -> bool:
    """Whether the request carries the session's CSRF token (compared as bytes: a header with
    non-ASCII characters is a wrong token, not a server error)."""
    sent = request.headers.get(CSRF_HEADER, "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sent, csrf_token_for(settings, session_token).encode())


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def current_principal(request: Request, db: DbSession, settings: AppSettings) -> Principal:
    """The caller, from an API token (Bearer) or a browser session cookie (with CSRF on writes)."""
    token = _bearer(request)
    if token is not None:
        user = accounts.token_user(db, token)
        if user is None:
            raise Unauthenticated("invalid, expired or revoked API token")
    else:
        raw = request.cookies.get(SESSION_COOKIE)
        found = accounts.session_user(db, raw) if raw else None
        if found is None or raw is None:
            raise Unauthenticated("sign in, or send an API token as 'Authorization: Bearer ...'")
        user = found[0]
        if request.method not in SAFE_METHODS and not csrf_valid(request, settings, raw):
            raise PermissionDenied(f"missing or wrong {CSRF_HEADER} header")
    principal = user.principal()
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[[Principal], Principal]:
    """A dependency that admits only callers holding `permission`. Every protected route uses one;
    the access-matrix test reads `required_permission` off the route's dependencies."""

    def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has(permission):
            raise PermissionDenied(f"your role ({principal.role.value}) may not do this ({permission.value})")
        return principal

    dependency.required_permission = permission  # type: ignore[attr-defined]
    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Page size")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1, description="Rows to skip")] = 0,
) -> tuple[int, int]:
    return limit, offset


Page = Annotated[tuple[int, int], Depends(page_params)]


def public_route() -> None:
    """Marks a route that needs no sign-in (login, health, the transparency log's public API)."""


public_route.public = True  # type: ignore[attr-defined]
Public = Depends(public_route)


def _nul_fields(value: Any, loc: tuple[str, ...]) -> list[str]:
    """Dotted names of the JSON strings (values or keys) that hold a NUL character."""
    if isinstance(value, str):
        return [".".join(loc) or "body"] if "\x00" in value else []
    if isinstance(value, dict):
        return [
            name
            for key, item in value.items()
            for name in ([".".join((*loc, str(key)))] if "\x00" in str(key) else [])
            + _nul_fields(item, (*loc, str(key)))
        ]
    if isinstance(value, list):
        return [name for item in value for name in _nul_fields(item, loc)]
    return []


async def refuse_nul(request: Request) -> None:
    """No text column stores a NUL character (PostgreSQL refuses it) and no real value holds one:
    refuse it in any path or query parameter or JSON body, naming where, before a route reads it.
    (CSV files and FHIR documents are checked by their parsers, with lines and FHIR paths.)"""
    params = [*request.path_params.items(), *request.query_params.multi_items()]
    fields = [name for name, value in params if "\x00" in name or "\x00" in str(value)]
    fhir = request.url.path.startswith("/fhir/")  # its parser names the FHIR path itself
    if "json" in request.headers.get("content-type", "") and not fhir:
        body = await request.body()
        if b"\\u0000" in body or b"\x00" in body:
            with contextlib.suppress(ValueError):  # not JSON: the route's own validation says so
                fields += _nul_fields(json.loads(body), ())
    if fields:
        errors = [FieldError(name, "contains a NUL character") for name in fields]
        raise InvalidInput("a NUL character is not accepted", errors)
