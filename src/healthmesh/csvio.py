"""CSV parsing shared by every import: header checks, line numbers, and per-line validation.

Pure: text in, validated models or a complete list of field errors out. A file is judged whole
before anything is written, so callers can refuse it without touching the database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from healthmesh.errors import FieldError

LIST_SEPARATOR = ";"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ParsedRow(Generic[M]):
    line: int
    model: M


def field_of(loc: Sequence[int | str], message: str) -> tuple[str, str]:
    """Pydantic's location as a field name; model-level errors name their field as 'field: ...'."""
    parts = [str(part) for part in loc if not isinstance(part, int)]
    message = message.removeprefix("Value error, ")
    if not parts and ": " in message:
        head, rest = message.split(": ", 1)
        if head.isidentifier():
            return head, rest
    return (".".join(parts) or "row"), message


def validation_errors(exc: ValidationError, line: int | None = None) -> list[FieldError]:
    """Pydantic errors as field errors (with an optional file line)."""
    out = []
    for error in exc.errors(include_url=False):
        field, message = field_of(error["loc"], error["msg"])
        out.append(FieldError(field, message, line))
    return out


def read_csv(
    text: str, *, columns: Sequence[str], required: Iterable[str], list_columns: Iterable[str] = ()
) -> tuple[list[tuple[int, dict[str, Any]]], list[FieldError]]:
    """Rows of a CSV as (line, values) with empty cells dropped; header problems as errors on line 1."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return [], [FieldError("header", "the file is empty", 1)]
    errors = [FieldError(name, "unknown column", 1) for name in header if name not in columns]
    errors += [FieldError(name, "required column missing", 1) for name in required if name not in header]
    errors += [FieldError(name, "column appears twice", 1) for name in set(header) if header.count(name) > 1]
    if errors:
        return [], errors
    listed = [name for name in header if name in set(list_columns)]
    width = len(header)
    rows: list[tuple[int, dict[str, Any]]] = []
    for cells in reader:
        line = reader.line_num
        if len(cells) != width:
            if cells and any(cell.strip() for cell in cells):
                errors.append(FieldError("row", f"{len(cells)} cells, expected {width}", line))
            continue
        values: dict[str, Any] = {
            name: cell.strip() for name, cell in zip(header, cells, strict=True) if cell
        }
        for name in listed:
            cell = values.pop(name, "")
            values[name] = [item.strip() for item in cell.split(LIST_SEPARATOR) if item.strip()]
        if not any(values.values()) and not listed:
            continue
        for name in [name for name, value in values.items() if value == ""]:
            del values[name]
        rows.append((line, values))
    return rows, errors


def validate_rows(
    rows: Iterable[tuple[int, Mapping[str, Any]]], schema: type[M]
) -> tuple[list[ParsedRow[M]], list[FieldError]]:
    parsed: list[ParsedRow[M]] = []
    errors: list[FieldError] = []
    for line, values in rows:
        try:
            parsed.append(ParsedRow(line, schema.model_validate(values)))
        except ValidationError as exc:
            errors.extend(validation_errors(exc, line))
    return parsed, errors


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _cell(row.get(name)) for name in columns})
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return LIST_SEPARATOR.join(str(_cell(item)) for item in value)
    if hasattr(value, "value"):
        return str(value.value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)
