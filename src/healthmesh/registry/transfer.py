"""CSV import and export of every registry list.

An import is judged whole before anything is written: every bad line is reported with its
number and field, and a file with any bad line changes nothing. Rows are upserted by their
natural key (ISO code, facility or product code, or product x member x start date).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Permission, Principal
from healthmesh.csvio import read_csv, validate_rows, write_csv
from healthmesh.errors import DomainError, FieldError, InvalidInput, PermissionDenied
from healthmesh.registry import service
from healthmesh.registry.models import Authorisation, Facility, Jurisdiction, Product, RecognitionAgreement
from healthmesh.registry.schemas import (
    AuthorisationCreate,
    AuthorisationOut,
    FacilityCreate,
    FacilityOut,
    JurisdictionCreate,
    JurisdictionOut,
    ProductCreate,
    ProductOut,
    RecognitionCreate,
    RecognitionOut,
)


@dataclass(frozen=True)
class CsvKind:
    """How one registry list maps to CSV columns and back."""

    name: str
    schema: type[BaseModel]
    out: type[BaseModel]
    model: type[Any]
    key: Callable[[Any], tuple[Any, ...]]
    upsert: Callable[[Session, Principal, Any], tuple[Any, bool]]
    permission: Permission
    key_fields: tuple[str, ...]
    list_columns: frozenset[str] = field(default_factory=frozenset)

    @property
    def columns(self) -> list[str]:
        """The natural key first, then the other fields in schema order."""
        rest = [name for name in self.schema.model_fields if name not in self.key_fields]
        return [*self.key_fields, *rest]

    @property
    def required(self) -> list[str]:
        return [name for name, info in self.schema.model_fields.items() if info.is_required()]


KINDS: dict[str, CsvKind] = {
    kind.name: kind
    for kind in (
        CsvKind(
            "jurisdictions",
            JurisdictionCreate,
            JurisdictionOut,
            Jurisdiction,
            key=lambda row: (row.iso3,),
            key_fields=("iso3",),
            upsert=lambda db, _actor, row: service.upsert_jurisdiction(db, row),
            permission=Permission.JURISDICTION_WRITE,
            list_columns=frozenset({"blocs", "time_zones"}),
        ),
        CsvKind(
            "facilities",
            FacilityCreate,
            FacilityOut,
            Facility,
            key=lambda row: (row.code,),
            key_fields=("code",),
            upsert=service.upsert_facility,
            permission=Permission.FACILITY_WRITE,
        ),
        CsvKind(
            "products",
            ProductCreate,
            ProductOut,
            Product,
            key=lambda row: (row.code,),
            key_fields=("code",),
            upsert=lambda db, _actor, row: service.upsert_product(db, row),
            permission=Permission.PRODUCT_WRITE,
        ),
        CsvKind(
            "authorisations",
            AuthorisationCreate,
            AuthorisationOut,
            Authorisation,
            key=lambda row: (row.product, row.jurisdiction, row.valid_from),
            key_fields=("product", "jurisdiction", "valid_from"),
            upsert=service.upsert_authorisation,
            permission=Permission.REGULATORY_WRITE,
        ),
        CsvKind(
            "recognitions",
            RecognitionCreate,
            RecognitionOut,
            RecognitionAgreement,
            key=lambda row: (row.jurisdiction, row.recognised_authority, row.valid_from),
            key_fields=("jurisdiction", "recognised_authority", "valid_from"),
            upsert=service.upsert_recognition,
            permission=Permission.REGULATORY_WRITE,
            list_columns=frozenset({"categories"}),
        ),
    )
}


@dataclass(frozen=True)
class ImportReport:
    kind: str
    created: int
    updated: int

    @property
    def rows(self) -> int:
        return self.created + self.updated


def get_kind(name: str) -> CsvKind:
    try:
        return KINDS[name]
    except KeyError:
        raise InvalidInput.on("kind", f"one of {', '.join(KINDS)}") from None


def template(kind: CsvKind) -> str:
    """An empty file with the documented header, for people to fill in."""
    return write_csv(kind.columns, [])


def export_csv(db: Session, kind: CsvKind) -> str:
    rows = db.scalars(select(kind.model).order_by(kind.model.id)).unique()
    return write_csv(kind.columns, (kind.out.model_validate(row).model_dump() for row in rows))


def _duplicates(kind: CsvKind, parsed: Sequence[Any]) -> list[FieldError]:
    seen: dict[tuple[Any, ...], int] = {}
    errors = []
    for row in parsed:
        key = kind.key(row.model)
        if key in seen:
            first = kind.key_fields[0]
            errors.append(FieldError(first, f"same record as line {seen[key]}", row.line))
        else:
            seen[key] = row.line
    return errors


def _apply_row(
    db: Session, actor: Principal, kind: CsvKind, model: Any, line: int
) -> tuple[bool, list[FieldError]]:
    """Upsert one row in a savepoint: (created?, errors tagged with the line)."""
    savepoint = db.begin_nested()
    try:
        _, created = kind.upsert(db, actor, model)
    except DomainError as exc:
        savepoint.rollback()
        return False, [FieldError(e.field, e.message, line) for e in exc.errors] or [
            FieldError(kind.key_fields[0], exc.detail, line)
        ]
    savepoint.commit()
    return created, []


def import_csv(
    db: Session, actor: Principal, kind: CsvKind, text: str, *, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Validate the whole file, then apply it; any error raises and nothing is written.

    Every line is applied inside a savepoint so that reference and permission errors found on
    write (an unknown member, another member's facility) are collected for every line too.
    """
    rows, errors = read_csv(
        text, columns=kind.columns, required=kind.required, list_columns=kind.list_columns
    )
    parsed, row_errors = validate_rows(rows, kind.schema)
    errors += row_errors + _duplicates(kind, parsed)
    if not actor.has(kind.permission):
        raise PermissionDenied(f"you may not import {kind.name}")
    skip = {error.line for error in errors}
    created = updated = 0
    for done, row in enumerate(parsed, start=1):
        if row.line in skip:
            continue
        created_row, problems = _apply_row(db, actor, kind, row.model, row.line)
        errors += problems
        if not problems:
            created += created_row
            updated += not created_row
        if progress is not None:
            progress(done)
    if errors:
        errors.sort(key=lambda error: (error.line or 0, error.field))
        raise InvalidInput(f"{kind.name}: {len(errors)} problem(s); nothing was imported", errors)
    return ImportReport(kind.name, created, updated)
