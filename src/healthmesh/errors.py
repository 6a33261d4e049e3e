"""Domain errors. Services raise these; the web layer renders them as RFC 9457 problem details
and the CLI prints them. They carry the field (and line, for files) that caused them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One problem with one input field; `line` is set for file imports (1 = header line)."""

    field: str
    message: str
    line: int | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"field": self.field, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        return out

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line is not None else ""
        return f"{where}{self.field}: {self.message}"


@dataclass
class DomainError(Exception):
    detail: str
    errors: list[FieldError] = field(default_factory=list)

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __str__(self) -> str:
        if not self.errors:
            return self.detail
        return self.detail + "\n" + "\n".join(f"  - {error}" for error in self.errors)


class InvalidInput(DomainError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"

    @classmethod
    def on(cls, field_name: str, message: str) -> InvalidInput:
        return cls(f"{field_name}: {message}", [FieldError(field_name, message)])


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PermissionDenied(DomainError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class Unauthenticated(DomainError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"


class RateLimited(DomainError):
    status = 429
    slug = "rate-limited"
    title = "Too many attempts"
