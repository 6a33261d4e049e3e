"""Mutual-aid inputs as CSV (or the same rows as JSON) -> a `Problem`.

- demand: `member,date,units` (units needed in that period; `state`, `day`, `ventilators` accepted);
- supply: `member,units[,date]`: own stock on hand (no date, or a date on or before the first
  period) or arriving in the period of `date`; the member `reserve` is the shared reserve;
- distances: `from,to,distance[,delay]` (one row serves both directions unless the reverse is given;
  `delay` in periods overrides the policy's), or a square matrix whose header starts with an empty
  cell and names the members (as in the shared US data).
Periods are the demand's dates, sorted. Pure: text in, a problem or every error found out.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from healthmesh.errors import FieldError, InvalidInput
from healthmesh.mutual_aid.model import Problem

RESERVE = "reserve"
ALIASES: dict[str, tuple[str, ...]] = {
    "member": ("member", "state", "stname", "jurisdiction"),
    "date": ("date", "day", "period"),
    "units": ("units", "units_needed", "needed", "demand", "ventilators", "stock", "quantity"),
    "from": ("from", "source", "origin"),
    "to": ("to", "target", "destination"),
    "distance": ("distance", "distance_km", "km"),
    "delay": ("delay", "delay_periods"),
}


@dataclass
class Inputs:
    """Validated rows: demand (member, date, units), supply (member, units, date or None) and
    distances (from, to, distance, delay or None)."""

    demand: list[tuple[str, str, float]] = field(default_factory=list)
    supply: list[tuple[str, float, str | None]] = field(default_factory=list)
    distances: list[tuple[str, str, float, int | None]] = field(default_factory=list)


def _records(text: str, source: str, errors: list[FieldError]) -> list[list[str]]:
    """The file's records, whatever its line endings; a record holding a NUL character (no
    database stores one in text) is left out with an error, and one the csv module cannot read (a
    cell over its size limit) ends the file with an error on its line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    out: list[list[str]] = []
    try:
        for cells in reader:
            if any("\x00" in cell for cell in cells):
                errors.append(FieldError(source, "contains a NUL character", reader.line_num))
                cells = []
            out.append(cells)
    except csv.Error as exc:
        errors.append(FieldError(source, f"unreadable CSV: {exc}", reader.line_num))
    return out


def _rows(
    text: str, source: str, required: tuple[str, ...], optional: tuple[str, ...], errors: list[FieldError]
) -> list[tuple[int, dict[str, str]]]:
    records = _records(text, source, errors)
    header = [name.strip().lower() for name in (records[0] if records else [])]
    if not header:
        errors.append(FieldError(source, "the file is empty", 1))
        return []
    column: dict[str, int] = {}
    for name in (*required, *optional):
        found = [i for i, h in enumerate(header) if h in ALIASES[name]]
        if found:
            column[name] = found[0]
        elif name in required:
            errors.append(FieldError(f"{source}.{name}", "required column missing", 1))
    if any(name not in column for name in required):
        return []
    out = []
    for line, cells in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        out.append((line, {name: cells[i].strip() if i < len(cells) else "" for name, i in column.items()}))
    return out


def _number(value: str, where: str, line: int | None, errors: list[FieldError]) -> float | None:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        errors.append(FieldError(where, f"not a number >= 0: {value!r}", line))
        return None
    return number


def _periods(value: str, where: str, line: int | None, errors: list[FieldError]) -> float | None:
    """A delay: a whole number of periods, at most 365 (as in the JSON form)."""
    number = _number(value, where, line, errors)
    if number is not None and (number != int(number) or number > 365):
        errors.append(FieldError(where, f"a whole number of periods from 0 to 365, not {value!r}", line))
        return None
    return number


def _date(value: str, where: str, line: int | None, errors: list[FieldError]) -> str | None:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        errors.append(FieldError(where, f"not a date (YYYY-MM-DD): {value!r}", line))
        return None


def read_demand(text: str, inputs: Inputs, errors: list[FieldError]) -> None:
    for line, row in _rows(text, "demand", ("member", "date", "units"), (), errors):
        day = _date(row["date"], "demand.date", line, errors)
        units = _number(row["units"], "demand.units", line, errors)
        if not row["member"]:
            errors.append(FieldError("demand.member", "missing", line))
        elif day is not None and units is not None:
            inputs.demand.append((row["member"], day, units))


def read_supply(text: str, inputs: Inputs, errors: list[FieldError]) -> None:
    for line, row in _rows(text, "supply", ("member", "units"), ("date",), errors):
        units = _number(row["units"], "supply.units", line, errors)
        day = _date(row["date"], "supply.date", line, errors) if row.get("date") else None
        if not row["member"]:
            errors.append(FieldError("supply.member", "missing", line))
        elif units is not None and (day is not None or not row.get("date")):
            inputs.supply.append((row["member"], units, day))


def read_distances(text: str, inputs: Inputs, errors: list[FieldError]) -> None:
    unreadable: list[FieldError] = []  # reported here for a matrix, else by _rows
    records = _records(text, "distances", unreadable)
    first = records[0] if records else []
    if first and not first[0].strip():  # a matrix
        names = [name.strip() for name in first[1:]]
        errors += unreadable
        for line, cells in enumerate(records, start=1):
            if line == 1 or not cells:
                continue
            for name, cell in zip(names, cells[1:], strict=False):
                if name != cells[0].strip() and cell.strip():
                    km = _number(cell, "distances", line, errors)
                    if km is not None:
                        inputs.distances.append((cells[0].strip(), name, km, None))
        return
    for line, row in _rows(text, "distances", ("from", "to", "distance"), ("delay",), errors):
        km = _number(row["distance"], "distances.distance", line, errors)
        delay = _periods(row["delay"], "distances.delay", line, errors) if row.get("delay") else None
        if km is not None and (delay is not None or not row.get("delay")):
            inputs.distances.append((row["from"], row["to"], km, None if delay is None else int(delay)))


def from_csv(demand: str, supply: str, distances: str) -> Inputs:
    """Parse the three files; raises `InvalidInput` with every problem found."""
    inputs, errors = Inputs(), list[FieldError]()
    read_demand(demand, inputs, errors)
    read_supply(supply, inputs, errors)
    read_distances(distances, inputs, errors)
    if errors:
        raise InvalidInput(f"{len(errors)} problem(s) in the mutual-aid files", errors)
    return inputs


def to_problem(inputs: Inputs) -> Problem:
    """The members (everyone in demand or supply but the reserve), periods (demand dates) and matrices."""
    if not inputs.demand:
        raise InvalidInput.on("demand", "no demand rows")
    periods = sorted({day for _, day, _ in inputs.demand})
    names = sorted(
        {m for m, _, _ in inputs.demand} | {m for m, _, _ in inputs.supply if m.lower() != RESERVE}
    )
    index = {name: i for i, name in enumerate(names)}
    n, n_t = len(names), len(periods)
    demand = np.zeros((n, n_t))
    for member, day, units in inputs.demand:
        demand[index[member], bisect.bisect_left(periods, day)] += units
    stock, reserve = np.zeros((n, n_t)), np.zeros(n_t)
    errors = []
    for member, units, maybe_day in inputs.supply:
        t = 0 if maybe_day is None else bisect.bisect_left(periods, maybe_day)
        if t >= n_t:
            errors.append(FieldError("supply.date", f"{maybe_day} is after the last period {periods[-1]}"))
        elif member.lower() == RESERVE:
            reserve[t] += units
        else:
            stock[index[member], t] += units
    if errors:
        raise InvalidInput("supply dates outside the horizon", errors)
    distance = np.full((n, n), np.inf)
    delay = np.full((n, n), -1, dtype=np.int64)
    given = np.zeros((n, n), dtype=bool)
    for a, b, km, days in inputs.distances:
        if a not in index or b not in index or a == b:
            continue  # members outside the plan are no concern of it
        i, j = index[a], index[b]
        for p, q, explicit in ((i, j, True), (j, i, False)):
            if explicit or not given[p, q]:
                distance[p, q], delay[p, q] = km, -1 if days is None else days
                given[p, q] |= explicit
    return Problem(tuple(names), tuple(periods), demand, stock, reserve, distance, delay)
