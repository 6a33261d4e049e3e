"""REST routes of accounts: sign-in, one's own tokens, user administration, the login audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse

from healthmesh.accounts import service
from healthmesh.accounts.access import Permission, Principal, Role
from healthmesh.accounts.schemas import (
    LoginAttemptOut,
    LoginRequest,
    LoginResponse,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from healthmesh.web.deps import (
    SESSION_COOKIE,
    AppSettings,
    DbSession,
    Page,
    Public,
    csrf_token_for,
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
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        max_age=settings.session_ttl_hours * 3600,
        path="/",
    )
    return response


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Public])
def logout(request: Request, db: DbSession) -> Response:
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        service.close_session(db, raw)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


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
def revoke_token(token_id: int, db: DbSession, principal: Self_) -> TokenOut:
    """Revoke one of your tokens (an administrator may revoke anyone's)."""
    return TokenOut.model_validate(service.revoke_token(db, principal, token_id))


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
