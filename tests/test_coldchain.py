"""Cold-chain logger files: parsing, refusal of bad files, and excursion detection.

The product throughout is a 2-8 °C vaccine that tolerates 60 minutes out of range, on a 48-hour
trip whose logger records every 15 minutes (or every 5 where the timing must be exact).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthmesh.errors import FieldError, InvalidInput
from healthmesh.logistics import coldchain
from healthmesh.logistics.coldchain import Excursion, Reading, analyse, detect, parse_logger_csv

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
MIN_C, MAX_C, TOLERANCE = 2.0, 8.0, 60
HEADER = "logger_id,timestamp,temperature_c,battery"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def logger_file(rows: Sequence[tuple[datetime, float]], header: str = HEADER) -> bytes:
    """A logger export as the receiver would upload it: extra columns, one reading per line."""
    lines = [header, *(f"LG-0042,{stamp(at)},{celsius},97" for at, celsius in rows)]
    return ("\n".join(lines) + "\n").encode()


def raw_file(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def fridge(i: int) -> float:
    """A well-behaved reefer: gentle swing between about 3.8 and 6.2 °C."""
    return round(5.0 + 1.2 * math.sin(i / 8), 1)


def trip(
    every: int = 15, hours: int = 48, spikes: dict[int, float] | None = None
) -> list[tuple[datetime, float]]:
    """Readings every `every` minutes for `hours`, with some samples (by index) replaced."""
    spikes = spikes or {}
    count = hours * 60 // every + 1
    return [(T0 + minutes(i * every), spikes.get(i, fridge(i))) for i in range(count)]


def refused(data: bytes) -> list[FieldError]:
    with pytest.raises(InvalidInput) as caught:
        parse_logger_csv(data)
    return caught.value.errors


def where(errors: list[FieldError]) -> list[tuple[str, int | None]]:
    return [(error.field, error.line) for error in errors]


# Clean files and excursions


def test_clean_trip_has_no_excursions() -> None:
    rows = trip()
    report = analyse(logger_file(rows), MIN_C, MAX_C, TOLERANCE)
    assert report.readings == 193
    assert (report.first, report.last) == (T0, T0 + timedelta(hours=48))
    assert report.min_c == min(c for _, c in rows)
    assert report.max_c == max(c for _, c in rows)
    assert report.excursions == ()
    assert report.flagged == ()
    assert not report.breach


def test_range_bounds_are_inclusive() -> None:
    report = analyse(logger_file(trip(spikes={10: 8.0, 11: 2.0, 12: 8.0})), MIN_C, MAX_C, TOLERANCE)
    assert report.excursions == ()


def test_short_door_opening_is_listed_but_not_flagged() -> None:
    report = analyse(logger_file(trip(spikes={20: 8.6, 21: 9.4, 22: 8.9})), MIN_C, MAX_C, TOLERANCE)
    assert report.excursions == (
        Excursion(
            start=T0 + minutes(300), end=T0 + minutes(345), minutes=45.0, extreme_c=9.4, direction="above"
        ),
    )
    assert report.flagged == ()
    assert not report.breach


def warm_for(count: int) -> list[tuple[datetime, float]]:
    """5-minute logging with `count` consecutive readings at 9.1 °C from minute 60."""
    return trip(every=5, hours=6, spikes=dict.fromkeys(range(12, 12 + count), 9.1))


def test_excursion_exactly_at_tolerance_is_not_flagged() -> None:
    report = analyse(logger_file(warm_for(12)), MIN_C, MAX_C, TOLERANCE)
    (excursion,) = report.excursions
    assert (excursion.start, excursion.end) == (T0 + minutes(60), T0 + minutes(120))
    assert excursion.minutes == 60.0
    assert report.flagged == ()


def test_excursion_one_interval_past_tolerance_is_flagged() -> None:
    report = analyse(logger_file(warm_for(13)), MIN_C, MAX_C, TOLERANCE)
    (excursion,) = report.excursions
    assert (excursion.start, excursion.end) == (T0 + minutes(60), T0 + minutes(125))
    assert excursion.minutes == 65.0
    assert report.flagged == (excursion,)
    assert report.breach


def test_one_second_past_tolerance_is_flagged() -> None:
    readings = [
        Reading(T0, 5.0),
        Reading(T0 + minutes(10), 9.0),
        Reading(T0 + minutes(70), 5.0),
        Reading(T0 + minutes(80), 9.0),
        Reading(T0 + minutes(140) + timedelta(seconds=1), 5.0),
    ]
    excursions, flagged = detect(readings, MIN_C, MAX_C, TOLERANCE)
    assert [e.minutes for e in excursions] == [60.0, pytest.approx(60 + 1 / 60)]
    assert flagged == (excursions[1],)


def test_freeze_is_a_below_excursion() -> None:
    freeze = {100: 1.4, 101: -0.3, 102: -1.2, 103: 0.4, 104: 1.9, 105: 3.1}
    report = analyse(logger_file(trip(spikes=freeze)), MIN_C, MAX_C, TOLERANCE)
    (excursion,) = report.flagged
    assert excursion.direction == "below"
    assert excursion.extreme_c == -1.2
    assert (excursion.start, excursion.end) == (T0 + minutes(1500), T0 + minutes(1575))
    assert excursion.minutes == 75.0
    assert report.min_c == -1.2


def test_run_ending_with_the_file_ends_at_its_last_reading() -> None:
    rows = trip(spikes={188: 8.4, 189: 9.0, 190: 10.2, 191: 11.5, 192: 12.0})
    report = analyse(logger_file(rows), MIN_C, MAX_C, TOLERANCE)
    (excursion,) = report.excursions
    assert (excursion.start, excursion.end) == (T0 + minutes(188 * 15), T0 + timedelta(hours=48))
    assert excursion.minutes == 60.0
    assert excursion.extreme_c == 12.0
    assert not report.breach


def test_jump_from_above_to_below_starts_a_new_run() -> None:
    rows = trip(spikes={40: 9.5, 41: 10.0, 42: 1.0, 43: 0.5, 44: 1.5})
    report = analyse(logger_file(rows), MIN_C, MAX_C, TOLERANCE)
    above, below = report.excursions
    assert (above.direction, above.start, above.end, above.extreme_c) == (
        "above",
        T0 + minutes(600),
        T0 + minutes(630),
        10.0,
    )
    assert (below.direction, below.start, below.end, below.extreme_c) == (
        "below",
        T0 + minutes(630),
        T0 + minutes(675),
        0.5,
    )


def test_sha256_is_of_the_raw_bytes() -> None:
    data = b"\xef\xbb\xbf" + logger_file(trip())
    assert analyse(data, MIN_C, MAX_C, TOLERANCE).sha256 == hashlib.sha256(data).hexdigest()


# Reading the file


def test_timezone_offsets_are_normalised_to_utc() -> None:
    data = raw_file(
        "timestamp,temperature_c",
        "2026-11-30T10:15:00+02:00,4.5",
        "2026-11-30 08:30:00,4.6",
        "2026-11-30T03:45:00-05:00,4.7",
        "2026-11-30t09:00z,4.8",
        "2026-11-30T09:15:30.5+0000,4.9",
    )
    readings = parse_logger_csv(data)
    assert [r.at for r in readings] == [
        datetime(2026, 11, 30, 8, 15, tzinfo=UTC),
        datetime(2026, 11, 30, 8, 30, tzinfo=UTC),
        datetime(2026, 11, 30, 8, 45, tzinfo=UTC),
        datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        datetime(2026, 11, 30, 9, 15, 30, 500000, tzinfo=UTC),
    ]
    assert all(r.at.tzinfo is UTC for r in readings)


def test_bom_crlf_blank_lines_and_header_spelling_are_tolerated() -> None:
    lines = [
        " Battery , Temperature_C ,TIMESTAMP",
        "98,4.5,2026-11-30T08:00:00Z",
        "",
        "97,-18,2026-11-30T08:15:00Z",
    ]
    readings = parse_logger_csv(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    assert readings == [Reading(T0, 4.5), Reading(T0 + minutes(15), -18.0)]


def test_empty_file_is_refused() -> None:
    assert where(refused(b"")) == [("file", 1)]
    assert where(refused(b"\xef\xbb\xbf\n\n")) == [("file", 1)]


def test_header_without_readings_is_refused() -> None:
    errors = refused(raw_file(HEADER, ""))
    assert [e.field for e in errors] == ["file"]
    assert "no readings" in errors[0].message


def test_missing_column_is_reported_on_the_header_line() -> None:
    errors = refused(raw_file("logger_id,time,temperature_c", "LG-0042,2026-11-30T08:00:00Z,4.5"))
    assert where(errors) == [("timestamp", 1)]
    assert "missing" in errors[0].message


def test_semicolon_file_gets_a_hint() -> None:
    errors = refused(raw_file("timestamp;temperature_c", "2026-11-30T08:00:00Z;4,5"))
    assert where(errors) == [("timestamp", 1), ("temperature_c", 1)]
    assert "commas" in errors[0].message


def test_non_numeric_temperature_names_its_line() -> None:
    rows = [
        f"LG-0042,{stamp(T0 + minutes(15 * i))},{c},97" for i, c in enumerate(["4.5", "ERR", "5.0", "nan"])
    ]
    errors = refused(raw_file(HEADER, *rows))
    assert where(errors) == [("temperature_c", 3), ("temperature_c", 5)]
    assert "'ERR' is not a number" in errors[0].message


def test_comma_decimal_is_refused_with_a_hint() -> None:
    errors = refused(
        raw_file(
            "timestamp,temperature_c,battery",
            '2026-11-30T08:00:00Z,"4,5",98',
            "2026-11-30T08:15:00Z,4,6,98",
            "2026-11-30T08:30:00Z,4.7,98",
        )
    )
    assert where(errors) == [("temperature_c", 2), ("temperature_c", 3)]
    assert all("comma as decimal separator" in e.message for e in errors)
    assert "write 4.5" in errors[0].message
    assert "write 4.6" in errors[1].message


def test_decreasing_timestamp_names_both_lines() -> None:
    rows = trip(hours=1)
    rows[2], rows[3] = rows[3], rows[2]
    errors = refused(logger_file(rows))
    assert where(errors) == [("timestamp", 5)]
    assert "line 4" in errors[0].message


def test_repeated_timestamp_is_refused() -> None:
    rows = trip(hours=1)
    rows[3] = (rows[2][0], rows[3][1])
    assert where(refused(logger_file(rows))) == [("timestamp", 5)]


def test_all_line_errors_are_reported_together() -> None:
    errors = refused(
        raw_file(
            HEADER,
            "LG-0042,2026-11-30T08:00:00Z,4.5,98",
            "LG-0042,30/11/2026 08:15,4.6,98",
            "LG-0042,2026-11-30T08:30:00Z,,98",
            "LG-0042,2026-11-30T08:45:00Z,4.8,98,extra",
            "LG-0042,2026-13-30T09:00:00Z,4.8°C,98",
        )
    )
    assert where(errors) == [
        ("timestamp", 3),
        ("temperature_c", 4),
        ("row", 5),
        ("timestamp", 6),
        ("temperature_c", 6),
    ]
    assert "ISO 8601" in errors[0].message
    assert errors[1].message == "missing value"


def test_error_list_stops_at_fifty() -> None:
    rows = [f"LG-0042,{stamp(T0 + minutes(i))},warm,97" for i in range(80)]
    with pytest.raises(InvalidInput) as caught:
        parse_logger_csv(raw_file(HEADER, *rows))
    assert len(caught.value.errors) == 50
    assert "50" in caught.value.detail


def test_oversized_file_is_refused() -> None:
    errors = refused(b"timestamp,temperature_c\n" + b" " * coldchain.MAX_BYTES)
    assert [e.field for e in errors] == ["file"]


def test_too_many_readings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coldchain, "MAX_READINGS", 10)
    assert len(parse_logger_csv(logger_file(trip(hours=3)[:10]))) == 10
    assert where(refused(logger_file(trip(hours=3)[:11]))) == [("file", 12)]


def test_non_utf8_file_is_refused_on_its_line() -> None:
    data = raw_file(HEADER, "LG-0042,2026-11-30T08:00:00Z,4.5,98").replace(
        b"LG-0042", "LG-ö".encode("latin-1")
    )
    assert where(refused(data)) == [("file", 2)]


def test_detect_refuses_unordered_readings_and_naive_times() -> None:
    with pytest.raises(ValueError, match="increasing"):
        detect([Reading(T0, 5.0), Reading(T0, 6.0)], MIN_C, MAX_C, TOLERANCE)
    with pytest.raises(ValueError, match="timezone"):
        Reading(datetime(2026, 11, 30, 8, 0), 5.0)


# Property


temperatures = st.one_of(st.sampled_from([MIN_C, MAX_C]), st.integers(-60, 150).map(lambda t: t / 10))
samples = st.lists(st.tuples(st.integers(1, 3600), temperatures), max_size=60)


def inside(at: datetime, excursion: Excursion) -> bool:
    return excursion.start <= at <= excursion.end


def side_of(celsius: float) -> str | None:
    """An independent statement of the inclusive range."""
    if celsius > MAX_C:
        return "above"
    return "below" if celsius < MIN_C else None


@given(samples=samples, tolerance=st.integers(0, 120))
def test_detect_properties(samples: list[tuple[int, float]], tolerance: int) -> None:
    at = T0
    readings = []
    for gap, celsius in samples:
        at += timedelta(seconds=gap)
        readings.append(Reading(at, celsius))
    excursions, flagged = detect(readings, MIN_C, MAX_C, tolerance)
    assert all(e.minutes > tolerance for e in flagged)
    assert all(e.minutes <= tolerance for e in excursions if e not in flagged)
    assert set(flagged) <= set(excursions)
    for reading in readings:
        direction = side_of(reading.celsius)
        if direction is not None:
            assert any(inside(reading.at, e) and e.direction == direction for e in excursions)
        else:
            assert not any(e.start <= reading.at < e.end for e in excursions)
