"""API shapes of accounts."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

from healthmesh.accounts.access import Role
from healthmesh.registry.schemas import Iso3

Username = str


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    username: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    password: SecretStr
    full_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=254)
    role: Role
    jurisdiction: Iso3 | None = None
    facility: str | None = Field(default=None, max_length=40)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    full_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    role: Role | None = None
    jurisdiction: Iso3 | None = None
    facility: str | None = Field(default=None, max_length=40)
    active: bool | None = None
    password: SecretStr | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    full_name: str
    email: str
    role: Role
    jurisdiction: str | None = Field(validation_alias="jurisdiction_iso3")
    facility: str | None = Field(validation_alias="facility_code")
    active: bool
    created_at: datetime


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=64)
    password: SecretStr


class LoginResponse(BaseModel):
    user: UserOut
    csrf_token: str
    expires_at: datetime


class PasswordChange(BaseModel):
    """One's own password change: the current password proves it is the owner, not a stolen session."""

    model_config = ConfigDict(extra="forbid")

    current_password: SecretStr
    new_password: SecretStr


class SessionsRevoked(BaseModel):
    revoked: int = Field(description="How many open sessions were signed out.")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    expires_at: AwareDatetime | None = None


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; only its hash is stored.")


class LoginAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    ip_address: str
    succeeded: bool
    reason: str
    at: datetime
