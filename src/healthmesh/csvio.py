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
    """Rows of a CSV as (line, values) with empty cells dropped; header problems as errors on line 1.

    Any line ending is read (newline="" lets the csv module see a lone CR, as old Mac spreadsheets
    write it); a file the csv module cannot read (a cell over its size limit) is an error on
    the line where reading stopped, never an exception."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return [], [FieldError("header", "the file is empty", 1)]
    except csv.Error as exc:
        return [], [FieldError("header", f"unreadable CSV: {exc}", max(reader.line_num, 1))]
    errors = [
        FieldError(name, "unknown column", 1) if name else FieldError("header", f"column {i} has no name", 1)
        for i, name in enumerate(header, start=1)
        if name not in columns
    ]
    errors += [FieldError(name, "required column missing", 1) for name in required if name not in header]
    errors += [
        FieldError(name, "column appears twice", 1) for name in set(header) if name and header.count(name) > 1
    ]
    if errors:
        return [], errors
    rows: list[tuple[int, dict[str, Any]]] = []
    end = reader.line_num  # a record is named by the line it starts on (a quoted cell may span lines)
    try:
        for cells in reader:
            _read_row(end + 1, cells, header, list_columns, rows, errors)
            end = reader.line_num
    except csv.Error as exc:
        errors.append(FieldError("row", f"unreadable CSV: {exc}", end + 1))
    return rows, errors


def _read_row(
    line: int,
    cells: list[str],
    header: list[str],
    list_columns: Iterable[str],
    rows: list[tuple[int, dict[str, Any]]],
    errors: list[FieldError],
) -> None:
    """One data line as values (or a cell-count error); blank lines are skipped."""
    width = len(header)
    if len(cells) != width:
        if cells and any(cell.strip() for cell in cells):
            errors.append(FieldError("row", f"{len(cells)} cells, expected {width}", line))
        return
    values: dict[str, Any] = {name: cell.strip() for name, cell in zip(header, cells, strict=True) if cell}
    nul = [name for name, cell in values.items() if "\x00" in cell]
    if nul:  # no database stores it in text (PostgreSQL refuses it), and no real value holds one
        errors.extend(FieldError(name, "contains a NUL character", line) for name in nul)
        return
    listed = [name for name in header if name in set(list_columns)]
    for name in listed:
        cell = values.pop(name, "")
        values[name] = [item.strip() for item in cell.split(LIST_SEPARATOR) if item.strip()]
    if not any(values.values()) and not listed:
        return
    for name in [name for name, value in values.items() if value == ""]:
        del values[name]
    rows.append((line, values))


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
    """RFC 4180 text: CRLF ends a record, so the writer quotes every cell holding a CR or LF (with
    LF alone, a lone CR in a name went out unquoted and split the record when read back)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\r\n")
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
