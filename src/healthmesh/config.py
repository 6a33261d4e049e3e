"""Runtime settings, read from HEALTHMESH_* environment variables (or a .env file).

Settings are built by `load_settings()` when the application or a command starts, never at import
time, so tests and tools can build their own without touching the process environment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator may configure."""

    model_config = SettingsConfigDict(env_prefix="HEALTHMESH_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="Where the embedded database and keys live.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to a SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/healthmesh",
    )
    secret_key: str | None = Field(
        default=None, description="Signs CSRF tokens; generated into data_dir if unset."
    )
    session_ttl_hours: int = Field(default=12, gt=0)
    login_max_failures: int = Field(default=5, gt=0, description="Failures per account in the window.")
    login_max_failures_per_ip: int = Field(default=20, gt=0)
    login_window_minutes: int = Field(default=15, gt=0)
    cookie_secure: bool | None = Field(
        default=None,
        description="Mark the session cookie Secure and send HSTS. Unset: whenever the request came "
        "over HTTPS (directly, or from a trusted proxy's X-Forwarded-Proto); true: always (behind "
        "HTTPS); false: never (plain-http development only).",
    )
    region_name: str = "ASEAN"
    ledger_origin: str | None = Field(
        default=None, description="The transparency log's origin line in checkpoints (a schema-less URL)."
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+pysqlite:///{(self.data_dir / 'healthmesh.sqlite3').resolve()}"

    def served_securely(self, scheme: str) -> bool:
        """Whether a request arriving with `scheme` gets Secure cookies and HSTS."""
        return scheme == "https" if self.cookie_secure is None else self.cookie_secure

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def effective_secret_key(self) -> str:
        """The configured key, or one generated once and kept (mode 0600) in the data directory."""
        if self.secret_key:
            return self.secret_key
        path = self.ensure_data_dir() / "secret_key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
