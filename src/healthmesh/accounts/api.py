"""REST routes of accounts: sign-in, one's own tokens, user administration, the login audit."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse

from healthmesh.accounts import service
from healthmesh.accounts.access import Permission, Principal, Role
from healthmesh.accounts.schemas import (
    LoginAttemptOut,
    LoginRequest,
    LoginResponse,
    PasswordChange,
    SessionsRevoked,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from healthmesh.errors import FieldError, PermissionDenied
from healthmesh.registry.schemas import RowId
from healthmesh.web.deps import (
    CSRF_HEADER,
    SESSION_COOKIE,
    AppSettings,
    DbSession,
    Page,
    Public,
    csrf_token_for,
    csrf_valid,
    require,
)
from healthmesh.web.pagination import PageOut, page_of
from healthmesh.web.problems import problem

router = APIRouter(prefix="/api/v1", tags=["accounts"])

Self_ = Annotated[Principal, Depends(require(Permission.SELF))]
UserReader = Annotated[Principal, Depends(require(Permission.USER_READ))]
UserWriter = Annotated[Principal, Depends(require(Permission.USER_WRITE))]
Auditor = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]


@router.post(
    "/auth/login",
    response_model=LoginResponse,
    dependencies=[Public],
    responses={401: {"description": "Wrong username or password"}, 429: {"description": "Too many failures"}},
)
def login(data: LoginRequest, request: Request, db: DbSession, settings: AppSettings) -> Response:
    """Password sign-in for the browser: sets the session cookie and returns the CSRF token."""
    ip = request.client.host if request.client else "unknown"
    outcome = service.login(db, settings, data.username, data.password.get_secret_value(), ip)
    if outcome.user is None:
        # A response, not an exception: the failed attempt must be committed to count.
        if outcome.reason == "rate_limited":
            return problem(
                429,
                "Too many attempts",
                "too many failed sign-ins; try again later",
                slug="rate-limited",
                headers={"Retry-After": str(settings.login_window_minutes * 60)},
            )
        return problem(401, "Authentication failed", "wrong username or password", slug="unauthenticated")
    raw, web_session = service.open_session(db, settings, outcome.user)
    body = LoginResponse(
        user=UserOut.model_validate(outcome.user),
        csrf_token=csrf_token_for(settings, raw),
        expires_at=web_session.expires_at,
    )
    response = JSONResponse(body.model_dump(mode="json"))
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=settings.session_ttl_hours * 3600,
        expires=settings.session_ttl_hours * 3600,
        **_cookie_flags(request, settings),
    )
    return response


def _cookie_flags(request: Request, settings: AppSettings) -> dict[str, Any]:
    """The session cookie is never readable by scripts, never sent on cross-site sub-requests or
    POSTs, and Secure whenever the platform is served over HTTPS (see Settings.cookie_secure)."""
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": settings.served_securely(request.url.scheme),
        "path": "/",
    }


#: Fetch Metadata values a browser sends on a request its own page made (or typed by the user).
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Public],
    responses={403: {"description": "A browser request from another site without the CSRF token"}},
)
def logout(request: Request, db: DbSession, settings: AppSettings) -> Response:
    """Sign out: the session is revoked on the server, not only forgotten by the browser.

    Another site may not sign a user out: a browser's cross-site request (Fetch Metadata) must
    carry the session's CSRF token, as every other write does."""
    raw = request.cookies.get(SESSION_COOKIE)
    if raw and service.session_user(db, raw) is not None:
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in _SAME_ORIGIN_FETCH and not csrf_valid(request, settings, raw):
            raise PermissionDenied(f"missing or wrong {CSRF_HEADER} header")
        service.close_session(db, raw)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, **_cookie_flags(request, settings))
    return response


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        422: {"description": "Wrong current password, or a new one the policy refuses (names the field)"},
        429: {"description": "Too many wrong passwords"},
    },
)
def change_password(
    data: PasswordChange, request: Request, db: DbSession, settings: AppSettings, principal: Self_
) -> Response:
    """Change your own password. Your other browser sessions are signed out; API tokens stay."""
    ip = request.client.host if request.client else "unknown"
    current = None if _bearer_sent(request) else request.cookies.get(SESSION_COOKIE)
    outcome = service.change_own_password(db, settings, principal, data, ip, current)
    if outcome.reason == "rate_limited":
        return problem(
            429,
            "Too many attempts",
            "too many wrong passwords; try again later",
            slug="rate-limited",
            headers={"Retry-After": str(settings.login_window_minutes * 60)},
        )
    if outcome.user is None:  # a response, not an exception: the failed attempt must be committed
        return problem(
            422,
            "Invalid input",
            "current_password: wrong password",
            slug="invalid-input",
            instance=request.url.path,
            errors=[FieldError("current_password", "wrong password")],
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _bearer_sent(request: Request) -> bool:
    return request.headers.get("Authorization", "").lower().startswith("bearer ")


@router.get("/me", response_model=UserOut)
def me(db: DbSession, principal: Self_) -> UserOut:
    return UserOut.model_validate(service.get_user(db, principal, principal.username))


@router.get("/me/tokens", response_model=list[TokenOut])
def my_tokens(db: DbSession, principal: Self_) -> list[TokenOut]:
    return [TokenOut.model_validate(token) for token in service.list_tokens(db, principal)]


@router.post("/me/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(data: TokenCreate, db: DbSession, principal: Self_) -> TokenCreated:
    raw, token = service.create_token(db, principal, data)
    return TokenCreated(**TokenOut.model_validate(token).model_dump(), token=raw)


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: RowId, db: DbSession, principal: Self_) -> TokenOut:
    """Revoke one of your tokens (an administrator may revoke anyone's)."""
    return TokenOut.model_validate(service.revoke_token(db, principal, token_id))


@router.get("/users/{username}/tokens", response_model=list[TokenOut])
def user_tokens(username: str, db: DbSession, principal: Self_) -> list[TokenOut]:
    """A user's API tokens, for the user or an administrator (to find and revoke a stolen one)."""
    return [TokenOut.model_validate(token) for token in service.list_user_tokens(db, principal, username)]


@router.delete("/users/{username}/sessions", response_model=SessionsRevoked)
def revoke_sessions(username: str, db: DbSession, principal: Self_) -> SessionsRevoked:
    """Sign a user out of every browser: the user, or an administrator of the account."""
    return SessionsRevoked(revoked=service.revoke_sessions(db, principal, username))


@router.get("/users", response_model=PageOut[UserOut])
def list_users(
    db: DbSession, principal: UserReader, page: Page, role: Role | None = None
) -> PageOut[UserOut]:
    rows, total = service.list_users(db, principal, role=role, limit=page[0], offset=page[1])
    return page_of(UserOut, rows, total, page)


@router.get("/users/{username}", response_model=UserOut)
def get_user(username: str, db: DbSession, principal: UserReader) -> UserOut:
    return UserOut.model_validate(service.get_user(db, principal, username))


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(data: UserCreate, db: DbSession, principal: UserWriter) -> UserOut:
    return UserOut.model_validate(service.create_user(db, principal, data))


@router.patch("/users/{username}", response_model=UserOut)
def update_user(username: str, data: UserUpdate, db: DbSession, principal: UserWriter) -> UserOut:
    return UserOut.model_validate(service.update_user(db, principal, username, data))


@router.get("/audit/login-attempts", response_model=PageOut[LoginAttemptOut])
def login_attempts(
    db: DbSession, _: Auditor, page: Page, username: str | None = None, succeeded: bool | None = None
) -> PageOut[LoginAttemptOut]:
    rows, total = service.list_login_attempts(
        db, username=username, succeeded=succeeded, limit=page[0], offset=page[1]
    )
    return page_of(LoginAttemptOut, rows, total, page)
