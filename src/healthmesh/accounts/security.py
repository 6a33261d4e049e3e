"""Password hashing (argon2id), token generation and the password policy."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
#: Verified against when the user does not exist, so timing does not reveal which usernames exist.
_DUMMY_HASH = _HASHER.hash("healthmesh-no-such-user")

MIN_PASSWORD_LENGTH = 12
_COMMON = frozenset(
    {"password1234", "123456789012", "qwertyuiopas", "healthmesh12", "passwordpassword", "administrator"}
)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_problems(password: str, username: str) -> list[str]:
    """Why a password is refused (empty when acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"at least {MIN_PASSWORD_LENGTH} characters")
    if username and username.lower() in password.lower():
        problems.append("must not contain the username")
    if password.lower() in _COMMON or len(set(password)) < 5:
        problems.append("too easy to guess")
    return problems


def new_token(kind: str) -> str:
    """A random credential such as `hm_at_...` (API token) or `hm_s_...` (session)."""
    return f"hm_{kind}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> str:
    """Tokens carry 256 bits of entropy, so a plain SHA-256 is the right stored form."""
    return hashlib.sha256(token.encode()).hexdigest()
