"""CSV import of needs: the columns of `NeedIn` (facility or jurisdiction, product, quantity,
urgency, needed_by, justification, population_served, submit, external_id). Checked whole; any
bad line changes nothing, and every bad line is reported."""

from __future__ import annotations

from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal
from healthmesh.csvio import read_csv, validate_rows, write_csv
from healthmesh.errors import DomainError, FieldError, InvalidInput
from healthmesh.needs import service
from healthmesh.needs.schemas import NeedIn

COLUMNS = list(NeedIn.model_fields)
REQUIRED = [name for name, info in NeedIn.model_fields.items() if info.is_required()]


def template() -> str:
    return write_csv(COLUMNS, [])


def import_needs(db: Session, actor: Principal, text: str) -> int:
    """Create every need of the file, or none; returns how many were created."""
    rows, errors = read_csv(text, columns=COLUMNS, required=REQUIRED)
    parsed, row_errors = validate_rows(rows, NeedIn)
    errors += row_errors
    created = 0
    for row in parsed:
        savepoint = db.begin_nested()
        try:
            service.create(db, actor, row.model)
        except DomainError as exc:
            savepoint.rollback()
            errors += [FieldError(e.field, e.message, row.line) for e in exc.errors] or [
                FieldError("row", exc.detail, row.line)
            ]
            continue
        savepoint.commit()
        created += 1
    if errors:
        errors.sort(key=lambda error: (error.line or 0, error.field))
        raise InvalidInput(f"{len(errors)} problem(s) in the file; nothing was imported", errors)
    return created
