"""Account use cases: users, login with rate limiting, sessions and API tokens.

Services add and flush; the caller's unit of work commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import ROLE_SCOPES, Permission, Principal, Role, ScopeKind
from healthmesh.accounts.models import ApiToken, LoginAttempt, User, WebSession
from healthmesh.accounts.schemas import PasswordChange, TokenCreate, UserCreate, UserUpdate
from healthmesh.accounts.security import (
    hash_password,
    new_token,
    password_problems,
    token_digest,
    verify_password,
)
from healthmesh.config import Settings
from healthmesh.db import utcnow
from healthmesh.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from healthmesh.ledger import service as transparency
from healthmesh.registry.models import Facility, Jurisdiction

# --- users ---------------------------------------------------------------------------------------


def _resolve_scope(
    db: Session, role: Role, jurisdiction_iso3: str | None, facility_code: str | None
) -> tuple[int | None, int | None]:
    """(jurisdiction_id, facility_id) for a role's scope, validated against what the role allows."""
    allowed = ROLE_SCOPES[role]
    if facility_code is not None:
        if ScopeKind.FACILITY not in allowed:
            raise InvalidInput.on("facility", f"a {role.value} is not scoped to a facility")
        facility = db.scalar(select(Facility).where(Facility.code == facility_code))
        if facility is None:
            raise InvalidInput.on("facility", f"unknown facility {facility_code!r}")
        if jurisdiction_iso3 is not None and facility.jurisdiction.iso3 != jurisdiction_iso3:
            raise InvalidInput.on("facility", f"{facility_code} is not in {jurisdiction_iso3}")
        return facility.jurisdiction_id, facility.id
    if ScopeKind.FACILITY in allowed and len(allowed) == 1:
        raise InvalidInput.on("facility", f"a {role.value} needs a facility")
    if jurisdiction_iso3 is not None:
        if ScopeKind.JURISDICTION not in allowed:
            raise InvalidInput.on("jurisdiction", f"a {role.value} is region-wide, not national")
        jurisdiction = db.scalar(select(Jurisdiction).where(Jurisdiction.iso3 == jurisdiction_iso3))
        if jurisdiction is None:
            raise InvalidInput.on("jurisdiction", f"{jurisdiction_iso3} is not a member of the region")
        return jurisdiction.id, None
    if ScopeKind.REGION not in allowed:
        raise InvalidInput.on("jurisdiction", f"a {role.value} needs a jurisdiction")
    return None, None


def _check_password(password: str, username: str, field: str = "password") -> None:
    problems = password_problems(password, username)
    if problems:
        raise InvalidInput.on(field, "; ".join(problems))


def create_user(db: Session, actor: Principal | None, data: UserCreate) -> User:
    """Create an account. `actor` None is the operator at the command line (bootstrap)."""
    jurisdiction_id, facility_id = _resolve_scope(db, data.role, data.jurisdiction, data.facility)
    if actor is not None and not actor.can_assign(data.role, jurisdiction_id):
        raise PermissionDenied(f"you may not create a {data.role.value} account with this scope")
    if db.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise Conflict("username already taken", [FieldError("username", "already taken")])
    _check_password(data.password.get_secret_value(), data.username)
    user = User(
        username=data.username,
        full_name=data.full_name,
        email=data.email,
        password_hash=hash_password(data.password.get_secret_value()),
        role=data.role,
        jurisdiction_id=jurisdiction_id,
        facility_id=facility_id,
    )
    db.add(user)
    db.flush()
    return user


def _visible_users(actor: Principal) -> Select[User]:
    stmt = select(User)
    if actor.scope is not ScopeKind.REGION:
        stmt = stmt.where(User.jurisdiction_id == actor.jurisdiction_id)
    return stmt


def list_users(
    db: Session, actor: Principal, *, role: Role | None, limit: int, offset: int
) -> tuple[list[User], int]:
    stmt = _visible_users(actor)
    if role is not None:
        stmt = stmt.where(User.role == role)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.scalars(stmt.order_by(User.username).limit(limit).offset(offset)).all()
    return list(rows), total


def get_user(db: Session, actor: Principal, username: str) -> User:
    """A user the actor may see; one it may not is reported as not found (no existence leak)."""
    user = db.scalar(_visible_users(actor).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def _scope_label(db: Session, jurisdiction_id: int | None, facility_id: int | None) -> str:
    if facility_id is not None:
        return db.scalar(select(Facility.code).where(Facility.id == facility_id)) or str(facility_id)
    if jurisdiction_id is not None:
        return db.scalar(select(Jurisdiction.iso3).where(Jurisdiction.id == jurisdiction_id)) or str(
            jurisdiction_id
        )
    return "region"


def update_user(db: Session, actor: Principal, username: str, data: UserUpdate) -> User:
    user = get_user(db, actor, username)
    if not actor.can_assign(user.role, user.jurisdiction_id):
        raise PermissionDenied("you may not change this account")
    fields = data.model_fields_set
    role = data.role or user.role
    if fields & {"role", "jurisdiction", "facility"}:
        jurisdiction_iso3 = data.jurisdiction if "jurisdiction" in fields else None
        facility_code = data.facility if "facility" in fields else None
        if "role" in fields and not ({"jurisdiction", "facility"} & fields):
            jurisdiction_iso3, facility_code = user.jurisdiction_iso3, user.facility_code
            if ScopeKind.FACILITY not in ROLE_SCOPES[role]:
                facility_code = None
            if ROLE_SCOPES[role] == {ScopeKind.REGION}:
                jurisdiction_iso3 = None
        jurisdiction_id, facility_id = _resolve_scope(db, role, jurisdiction_iso3, facility_code)
        if not actor.can_assign(role, jurisdiction_id):
            raise PermissionDenied(f"you may not make this account a {role.value} with this scope")
        if user.id == actor.user_id and role is not user.role:
            raise PermissionDenied("you may not change your own role")
        before = (user.role, user.jurisdiction_id, user.facility_id)
        user.role, user.jurisdiction_id, user.facility_id = role, jurisdiction_id, facility_id
        if before != (role, jurisdiction_id, facility_id):
            db.flush()
            transparency.append(
                db,
                "account.role_changed",
                {  # the account's number, never its name or contact: the log is public
                    "account": user.id,
                    "from": {"role": before[0].value, "scope": _scope_label(db, before[1], before[2])},
                    "to": {"role": role.value, "scope": _scope_label(db, jurisdiction_id, facility_id)},
                    "by_role": actor.role.value,
                },
            )
    if data.full_name is not None:
        user.full_name = data.full_name
    if data.email is not None:
        user.email = data.email
    if data.active is not None:
        if user.id == actor.user_id and not data.active:
            raise InvalidInput.on("active", "you may not deactivate yourself")
        user.active = data.active
        if not data.active:
            revoke_all_credentials(db, user)
    if data.password is not None:
        _check_password(data.password.get_secret_value(), user.username)
        user.password_hash = hash_password(data.password.get_secret_value())
        revoke_all_credentials(db, user)
    db.flush()
    return user


def revoke_all_credentials(db: Session, user: User) -> None:
    revoke_sessions_of(db, user)
    now = utcnow()
    for token in db.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ):
        token.revoked_at = now


def revoke_sessions_of(db: Session, user: User, *, keep_raw: str | None = None) -> int:
    """Sign the user out everywhere (but the session `keep_raw`, when given); how many were open."""
    now = utcnow()
    kept = token_digest(keep_raw) if keep_raw else None
    count = 0
    for web_session in db.scalars(
        select(WebSession).where(WebSession.user_id == user.id, WebSession.revoked_at.is_(None))
    ):
        if web_session.token_hash != kept:
            web_session.revoked_at = now
            count += 1
    db.flush()
    return count


def _manages(actor: Principal, user: User) -> bool:
    """Whether `actor` may act on `user`'s credentials: its owner, or an administrator over it."""
    return user.id == actor.user_id or (
        actor.has(Permission.USER_WRITE) and actor.can_assign(user.role, user.jurisdiction_id)
    )


def revoke_sessions(db: Session, actor: Principal, username: str) -> int:
    """Sign `username` out of every browser, for its owner or an administrator of the account
    (a national focal point for its member's accounts). Anyone else is told the account does not
    exist, as for any record outside their scope."""
    user = db.scalar(select(User).where(User.username == username))
    if user is None or not _manages(actor, user):
        raise NotFound(f"no user {username!r}")
    return revoke_sessions_of(db, user)


def change_own_password(
    db: Session,
    settings: Settings,
    actor: Principal,
    data: PasswordChange,
    ip_address: str,
    current_session_raw: str | None,
) -> LoginOutcome:
    """Change one's own password after proving the current one.

    The proof goes through `login`, so wrong guesses are recorded and rate-limited like sign-ins
    (a stolen session cannot try passwords at will), and the caller commits a failure rather than
    raising. Every other browser session is signed out; API tokens stay (revoke them one by one).
    """
    outcome = login(db, settings, actor.username, data.current_password.get_secret_value(), ip_address)
    if outcome.user is None:
        return outcome
    new = data.new_password.get_secret_value()
    if verify_password(outcome.user.password_hash, new):
        raise InvalidInput.on("new_password", "must differ from the current password")
    _check_password(new, actor.username, "new_password")
    outcome.user.password_hash = hash_password(new)
    revoke_sessions_of(db, outcome.user, keep_raw=current_session_raw)
    return outcome


# --- login ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginOutcome:
    """The result of a password login; `reason` is set when it failed."""

    user: User | None
    reason: str = ""


def _recent_failures(db: Session, since: datetime, **where: str) -> int:
    stmt = (
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since)
    )
    for column, value in where.items():
        stmt = stmt.where(getattr(LoginAttempt, column) == value)
    return db.scalar(stmt) or 0


def login(db: Session, settings: Settings, username: str, password: str, ip_address: str) -> LoginOutcome:
    """Check a password, rate-limited per account and per address; every attempt is recorded.

    Returns instead of raising, so the failed attempt is committed with the request.
    """
    username = username.strip().lower()[:64]
    since = utcnow() - timedelta(minutes=settings.login_window_minutes)
    limited = (
        _recent_failures(db, since, username=username) >= settings.login_max_failures
        or _recent_failures(db, since, ip_address=ip_address) >= settings.login_max_failures_per_ip
    )
    user = db.scalar(select(User).where(User.username == username))
    if limited:
        outcome = LoginOutcome(None, "rate_limited")
    elif not verify_password(user.password_hash if user else None, password):
        outcome = LoginOutcome(None, "bad_credentials")
    elif user is None or not user.active:
        outcome = LoginOutcome(None, "inactive")
    else:
        outcome = LoginOutcome(user)
    db.add(
        LoginAttempt(
            username=username,
            ip_address=ip_address[:64],
            succeeded=outcome.user is not None,
            reason=outcome.reason,
        )
    )
    db.flush()
    return outcome


def list_login_attempts(
    db: Session, *, username: str | None, succeeded: bool | None, limit: int, offset: int
) -> tuple[list[LoginAttempt], int]:
    stmt = select(LoginAttempt)
    if username:
        stmt = stmt.where(LoginAttempt.username == username)
    if succeeded is not None:
        stmt = stmt.where(LoginAttempt.succeeded.is_(succeeded))
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.scalars(stmt.order_by(LoginAttempt.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total


# --- sessions ------------------------------------------------------------------------------------


def open_session(db: Session, settings: Settings, user: User) -> tuple[str, WebSession]:
    raw = new_token("s")
    web_session = WebSession(
        user_id=user.id,
        token_hash=token_digest(raw),
        expires_at=utcnow() + timedelta(hours=settings.session_ttl_hours),
    )
    db.add(web_session)
    db.flush()
    return raw, web_session


def session_user(db: Session, raw: str) -> tuple[User, WebSession] | None:
    web_session = db.scalar(select(WebSession).where(WebSession.token_hash == token_digest(raw)))
    if web_session is None or web_session.revoked_at is not None or web_session.expires_at <= utcnow():
        return None
    if not web_session.user.active:
        return None
    return web_session.user, web_session


def close_session(db: Session, raw: str) -> None:
    web_session = db.scalar(select(WebSession).where(WebSession.token_hash == token_digest(raw)))
    if web_session is not None and web_session.revoked_at is None:
        web_session.revoked_at = utcnow()
        db.flush()


# --- API tokens ----------------------------------------------------------------------------------


def create_token(db: Session, actor: Principal, data: TokenCreate) -> tuple[str, ApiToken]:
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise InvalidInput.on("expires_at", "must be in the future")
    raw = new_token("at")
    token = ApiToken(
        user_id=actor.user_id,
        name=data.name,
        prefix=raw[:12],
        token_hash=token_digest(raw),
        expires_at=data.expires_at,
    )
    db.add(token)
    db.flush()
    return raw, token


def list_tokens(db: Session, actor: Principal) -> list[ApiToken]:
    return list(db.scalars(select(ApiToken).where(ApiToken.user_id == actor.user_id).order_by(ApiToken.id)))


def _token_admin(actor: Principal) -> bool:
    """Who may see and revoke anyone's API tokens: a region-wide account administrator."""
    return actor.has(Permission.USER_WRITE) and actor.scope is ScopeKind.REGION


def list_user_tokens(db: Session, actor: Principal, username: str) -> list[ApiToken]:
    """A user's tokens, for the user or an administrator (so a stolen one can be found and revoked)."""
    user = db.scalar(select(User).where(User.username == username))
    if user is None or not (user.id == actor.user_id or _token_admin(actor)):
        raise NotFound(f"no user {username!r}")
    return list(db.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


def revoke_token(db: Session, actor: Principal, token_id: int) -> ApiToken:
    token = db.get(ApiToken, token_id)
    mine = token is not None and token.user_id == actor.user_id
    if token is None or not (mine or _token_admin(actor)):
        raise NotFound(f"no token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.flush()
    return token


TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def token_user(db: Session, raw: str) -> User | None:
    token = db.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(raw)))
    now = utcnow()
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if not token.user.active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_INTERVAL:
        # at most once a minute: writing it on every request would hold the token row's lock until
        # the request commits, and so serialise every request made with the same token
        token.last_used_at = now
    return token.user
