"""Cold-chain check of a shipment from its temperature data logger file.

A shipment of a temperature-sensitive product travels with a data logger. The receiver uploads
the logger's CSV file; this module reads it and finds the temperature excursions, so a breach is
decided the same way for every shipment and the file it was decided on is identified by its hash.
Pure: bytes in, a report or a complete list of field errors out.

File format
-----------
* UTF-8 text (a byte order mark is tolerated), comma-separated, at most 5 MB (5,242,880 bytes)
  and 200,000 readings.
* The first line is a header row naming the columns. Two columns are required:

  - ``timestamp``: ISO 8601 date and time of the reading, for example ``2026-11-30T08:15:00Z``,
    ``2026-11-30T10:15:00+02:00`` or ``2026-11-30 08:15:00``. Seconds and fractions of a second
    are optional. A time without an offset is taken as UTC. All times are converted to UTC.
  - ``temperature_c``: the temperature in degrees Celsius, a decimal number written with a point
    (``4.5``, ``-18``, ``+2.25``). A comma decimal separator (``4,5``) is not accepted.

  Column names are case-insensitive and surrounding spaces are ignored. Any other columns (such
  as ``logger_id`` or ``battery``) are ignored, and the columns may be in any order.
* One reading per line, timestamps strictly increasing. Blank lines are skipped.

Example::

    logger_id,timestamp,temperature_c,battery
    LG-0042,2026-11-30T08:00:00Z,4.6,98
    LG-0042,2026-11-30T08:15:00Z,5.1,98

A file with problems is refused whole. Every problem is reported with its column and file line
(the header is line 1), up to the first 50, so the file can be fixed in one go: an empty file, a
missing required column, a timestamp or temperature that cannot be read, a timestamp not after
the previous one, a file without readings, or a file that is too large.

Excursions
----------
The product's range ``[min_c, max_c]`` is inclusive: exactly ``min_c`` or ``max_c`` is in range.
A reading's value holds until the next reading (sample and hold). A run of consecutive readings
out of range on the same side (above ``max_c`` or below ``min_c``; a jump from above to below
starts a new run) is an excursion. It starts at the time of its first reading and ends at the
time of the next reading, the one that ends it, or at its own last reading if the file ends
during the run. Its duration is ``end - start`` in minutes and its extreme is the highest
(above) or lowest (below) temperature in the run. Every excursion is reported; those lasting
longer than the product's tolerance are flagged, and any flagged excursion is a breach. An
excursion lasting exactly the tolerance is not flagged; one second longer is.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import MappingProxyType
from typing import Final, Literal, NoReturn, TypeVar

from healthmesh.errors import FieldError, InvalidInput

TIMESTAMP: Final = "timestamp"
TEMPERATURE: Final = "temperature_c"
COLUMNS: Final[Mapping[str, str]] = MappingProxyType(
    {
        TIMESTAMP: "ISO 8601 date and time, e.g. 2026-11-30T08:15:00Z, 2026-11-30T10:15:00+02:00 "
        "or 2026-11-30 08:15:00 (no offset means UTC); strictly increasing",
        TEMPERATURE: "temperature in degrees Celsius with a point as decimal separator, e.g. 4.5 or -18",
    }
)
"""The required columns and what they hold; any other column is ignored."""

MAX_BYTES: Final = 5 * 1024 * 1024
MAX_READINGS: Final = 200_000
MAX_ERRORS: Final = 50

Direction = Literal["above", "below"]
T = TypeVar("T")

_TIMESTAMP_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
_DIGITS = re.compile(r"\d+")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class Reading:
    """One logger sample; `at` is timezone-aware UTC so readings from any logger compare."""

    at: datetime
    celsius: float

    def __post_init__(self) -> None:
        if self.at.utcoffset() is None:
            raise ValueError("Reading.at must be timezone-aware")


@dataclass(frozen=True)
class Excursion:
    """A run of readings out of range on one side, with how long it lasted and how far it went."""

    start: datetime
    end: datetime
    minutes: float
    extreme_c: float
    direction: Direction


@dataclass(frozen=True)
class LoggerReport:
    """What a logger file shows, with the hash of the exact bytes it was decided on.

    `min_c` and `max_c` are the lowest and highest temperatures recorded, not the product's range.
    """

    readings: int
    first: datetime
    last: datetime
    min_c: float
    max_c: float
    excursions: tuple[Excursion, ...]
    flagged: tuple[Excursion, ...]
    sha256: str

    @property
    def breach(self) -> bool:
        """Whether any excursion lasted longer than the product's tolerance."""
        return bool(self.flagged)


# Parsing


def parse_logger_csv(data: bytes) -> list[Reading]:
    """The readings of a logger file, in file order; raises InvalidInput listing every problem."""
    if len(data) > MAX_BYTES:
        _refuse([FieldError("file", f"the file is {len(data):,} bytes; at most {MAX_BYTES:,} are accepted")])
    rows = _rows(_decode(data))
    header = next(rows, None)
    if header is None:
        _refuse([FieldError("file", "the file is empty", 1)])
    header_line, header_cells = header
    names = [cell.strip().lower() for cell in header_cells]
    _check_header(names, header_line)
    readings = _read_body(rows, names)
    if not readings:
        _refuse([FieldError("file", "the file has a header but no readings")])
    return readings


def _refuse(errors: list[FieldError]) -> NoReturn:
    """Raise the errors as one InvalidInput, so the caller sees the whole file's problems at once."""
    shown = errors[:MAX_ERRORS]
    more = f" (listing stops at {MAX_ERRORS})" if len(errors) >= MAX_ERRORS else ""
    noun = "problem" if len(shown) == 1 else "problems"
    raise InvalidInput(f"the temperature logger file has {len(shown)} {noun}{more}", shown)


def _decode(data: bytes) -> str:
    """The file as text; a wrong encoding is named, since spreadsheet exports often get it wrong."""
    if data.startswith(_UTF16_BOMS):
        _refuse([FieldError("file", "the file is UTF-16 text; save it as UTF-8 CSV", 1)])
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        _refuse([FieldError("file", "the file is not UTF-8 text; save it as UTF-8 CSV", line)])


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank CSV rows with the file line they start on (1-based)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                yield line, cells
            line = reader.line_num + 1
    except csv.Error as exc:
        _refuse([FieldError("file", f"not readable as CSV: {exc}", line)])


def _check_header(names: list[str], line: int) -> None:
    """Both required columns present, once each; the message hints at the usual causes."""
    errors = []
    for column in COLUMNS:
        count = names.count(column)
        if count == 0:
            errors.append(FieldError(column, _missing_column_message(names), line))
        elif count > 1:
            errors.append(FieldError(column, "column appears more than once", line))
    if errors:
        _refuse(errors)


def _missing_column_message(names: list[str]) -> str:
    message = "required column missing from the header row"
    if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
        return message + "; columns must be separated by commas, not semicolons or tabs"
    return message + f" (the first line must name the columns: {', '.join(COLUMNS)})"


def _read_body(rows: Iterator[tuple[int, list[str]]], names: list[str]) -> list[Reading]:
    """Every data row read and checked; errors are collected across the file before refusing."""
    at_index, celsius_index = names.index(TIMESTAMP), names.index(TEMPERATURE)
    readings: list[Reading] = []
    errors: list[FieldError] = []
    previous: tuple[int, datetime] | None = None
    for line, cells in rows:
        if len(readings) >= MAX_READINGS:
            too_many = FieldError("file", f"more than {MAX_READINGS:,} readings; split the file", line)
            _refuse([*errors, too_many])
        row_errors, at, celsius = _read_row(cells, len(names), at_index, celsius_index, line)
        if at is not None:
            if previous is not None and at <= previous[1]:
                row_errors.append(_not_increasing(at, previous, line))
            previous = (line, at)
        errors.extend(row_errors)
        if len(errors) >= MAX_ERRORS:
            break
        if at is not None and celsius is not None and not row_errors:
            readings.append(Reading(at, celsius))
    if errors:
        _refuse(errors)
    return readings


def _read_row(
    cells: list[str], width: int, at_index: int, celsius_index: int, line: int
) -> tuple[list[FieldError], datetime | None, float | None]:
    """One data row's timestamp and temperature, or the errors that prevent reading them."""
    if len(cells) > width and any(cell.strip() for cell in cells[width:]):
        if _split_decimal(cells, celsius_index):
            raw = f"{cells[celsius_index].strip()},{cells[celsius_index + 1].strip()}"
            return [FieldError(TEMPERATURE, _comma_message(raw), line)], None, None
        message = f"{len(cells)} cells but the header has {width} columns"
        return [FieldError("row", message, line)], None, None
    errors: list[FieldError] = []
    at = _cell(cells, at_index, TIMESTAMP, _parse_timestamp, errors, line)
    celsius = _cell(cells, celsius_index, TEMPERATURE, _parse_celsius, errors, line)
    return errors, at, celsius


def _split_decimal(cells: list[str], index: int) -> bool:
    """Whether an unquoted comma decimal (4,5) split the temperature into two cells."""
    if index + 1 >= len(cells):
        return False
    whole, fraction = cells[index].strip(), cells[index + 1].strip()
    return bool(_NUMBER.fullmatch(whole) and "." not in whole and _DIGITS.fullmatch(fraction))


def _cell(
    cells: list[str], index: int, column: str, parse: Callable[[str], T], errors: list[FieldError], line: int
) -> T | None:
    """A cell parsed, or None with an error recorded against its column and line."""
    raw = cells[index].strip() if index < len(cells) else ""
    if not raw:
        errors.append(FieldError(column, "missing value", line))
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        errors.append(FieldError(column, str(exc), line))
        return None


def _parse_timestamp(raw: str) -> datetime:
    """ISO 8601 date and time in UTC; no offset means UTC, as loggers are normally set to it."""
    text = raw.upper()
    if _TIMESTAMP_SHAPE.fullmatch(text):
        try:
            parsed = datetime.fromisoformat(text)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise ValueError(f"{_quote(raw)} is not an ISO 8601 date and time such as 2026-11-30T08:15:00Z")


def _parse_celsius(raw: str) -> float:
    """A plain decimal number; float() alone would also take 'nan', '1e3' and '4_5'."""
    if _NUMBER.fullmatch(raw):
        return float(raw)
    if _COMMA_DECIMAL.fullmatch(raw):
        raise ValueError(_comma_message(raw))
    raise ValueError(f"{_quote(raw)} is not a number; write degrees Celsius such as 4.5 or -18")


def _comma_message(raw: str) -> str:
    fixed = raw.replace(",", ".")
    return f"{_quote(raw)} uses a comma as decimal separator, which is not accepted; write {fixed}"


def _not_increasing(at: datetime, previous: tuple[int, datetime], line: int) -> FieldError:
    prev_line, prev_at = previous
    message = f"{at.isoformat()} is not after the previous reading ({prev_at.isoformat()}, line {prev_line})"
    return FieldError(TIMESTAMP, message, line)


def _quote(raw: str) -> str:
    """A cell value for a message, shortened so one bad cell cannot flood the error list."""
    return repr(raw if len(raw) <= 40 else raw[:37] + "...")


# Detection


def detect(
    readings: Sequence[Reading], min_c: float, max_c: float, tolerance_minutes: int
) -> tuple[tuple[Excursion, ...], tuple[Excursion, ...]]:
    """All excursions and those longer than the tolerance, readings taken as sample and hold."""
    _check_detect_arguments(readings, min_c, max_c, tolerance_minutes)
    excursions = tuple(_excursions(readings, min_c, max_c))
    tolerance = timedelta(minutes=tolerance_minutes)
    flagged = tuple(excursion for excursion in excursions if excursion.end - excursion.start > tolerance)
    return excursions, flagged


def _check_detect_arguments(
    readings: Sequence[Reading], min_c: float, max_c: float, tolerance_minutes: int
) -> None:
    """Programming errors, not file errors: parse_logger_csv already guarantees the order."""
    if min_c > max_c:
        raise ValueError(f"min_c {min_c} is above max_c {max_c}")
    if tolerance_minutes < 0:
        raise ValueError("tolerance_minutes must not be negative")
    if any(later.at <= earlier.at for earlier, later in pairwise(readings)):
        raise ValueError("readings must be in strictly increasing time order")


def _excursions(readings: Sequence[Reading], min_c: float, max_c: float) -> Iterator[Excursion]:
    """Runs of same-side out-of-range readings; each ends at the reading that ends it."""
    run: list[Reading] = []
    side: Direction | None = None
    for reading in readings:
        here = _side(reading.celsius, min_c, max_c)
        if here == side:
            if side is not None:
                run.append(reading)
            continue
        if side is not None:
            yield _excursion(run, reading.at, side)
        run, side = ([reading] if here is not None else []), here
    if side is not None:
        yield _excursion(run, run[-1].at, side)


def _side(celsius: float, min_c: float, max_c: float) -> Direction | None:
    """Which side of the inclusive range a temperature is on, or None if it is in range."""
    if celsius > max_c:
        return "above"
    if celsius < min_c:
        return "below"
    return None


def _excursion(run: list[Reading], end: datetime, side: Direction) -> Excursion:
    temperatures = [reading.celsius for reading in run]
    extreme = max(temperatures) if side == "above" else min(temperatures)
    start = run[0].at
    minutes = (end - start) / timedelta(minutes=1)
    return Excursion(start=start, end=end, minutes=minutes, extreme_c=extreme, direction=side)


# The whole check


def analyse(data: bytes, min_c: float, max_c: float, tolerance_minutes: int) -> LoggerReport:
    """Parse a logger file and check it against a product's range and tolerance."""
    readings = parse_logger_csv(data)
    excursions, flagged = detect(readings, min_c, max_c, tolerance_minutes)
    temperatures = [reading.celsius for reading in readings]
    return LoggerReport(
        readings=len(readings),
        first=readings[0].at,
        last=readings[-1].at,
        min_c=min(temperatures),
        max_c=max(temperatures),
        excursions=excursions,
        flagged=flagged,
        sha256=hashlib.sha256(data).hexdigest(),
    )
