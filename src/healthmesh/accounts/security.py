"""Password hashing (argon2id), token generation and the password policy."""

from __future__ import annotations

import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
#: Verified against when the user does not exist, so timing does not reveal which usernames exist.
_DUMMY_HASH = _HASHER.hash("healthmesh-no-such-user")

MIN_PASSWORD_LENGTH = 12
#: Long enough for any passphrase; a limit keeps a megabyte "password" out of the hasher.
MAX_PASSWORD_LENGTH = 256
#: Whole passwords seen in breach corpora that are 12 characters or longer (shorter ones fail on
#: length already). Built in: the policy must work with no network.
_COMMON = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123123123123",
        "111111111111",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "qwertyuiopas",
        "qwertyuiop123",
        "qwerty123456",
        "qwertyqwerty",
        "asdfghjkl123",
        "zaq12wsxcde3",
        "abcdefghijkl",
        "abc123abc123",
        "passwordpassword",
        "password1234",
        "password123456",
        "passw0rd1234",
        "iloveyou1234",
        "administrator",
        "administrator1",
        "letmeinletmein",
        "welcome12345",
        "changeme1234",
        "healthmesh12",
        "correcthorsebatterystaple",
    }
)
#: Words that make a guessable password when only digits and symbols are added around them
#: ("Password2024!", "#welcome1234").
_COMMON_STEMS = frozenset(
    {
        "password",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "qwerty",
        "qwertyuiop",
        "letmein",
        "welcome",
        "admin",
        "administrator",
        "changeme",
        "iloveyou",
        "monkey",
        "dragon",
        "sunshine",
        "football",
        "princess",
        "trustno1",
        "secret",
        "healthmesh",
        "asean",
    }
)
_AFFIXES = re.compile(r"^[\d\W_]*|[\d\W_]*$")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _guessable(password: str) -> bool:
    """A known password, a common word dressed with digits and symbols, or too few symbols."""
    lowered = password.lower()
    squeezed = re.sub(r"[\s\-_.]", "", lowered)
    return (
        lowered in _COMMON
        or squeezed in _COMMON
        or _AFFIXES.sub("", lowered) in _COMMON_STEMS
        or len(set(password)) < 5
    )


def password_problems(password: str, username: str) -> list[str]:
    """Why a password is refused (empty when acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"at most {MAX_PASSWORD_LENGTH} characters")
    if username and username.lower() in password.lower():
        problems.append("must not contain the username")
    if _guessable(password):
        problems.append("too easy to guess")
    return problems


def new_token(kind: str) -> str:
    """A random credential such as `hm_at_...` (API token) or `hm_s_...` (session)."""
    return f"hm_{kind}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> str:
    """Tokens carry 256 bits of entropy, so a plain SHA-256 is the right stored form."""
    return hashlib.sha256(token.encode()).hexdigest()
