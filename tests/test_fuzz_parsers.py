"""Hypothesis on every file and document parser: the CSV imports (registry lists, stock events,
needs, mutual-aid inputs) and the FHIR R5 imports (InventoryReport, SupplyRequest, SupplyDelivery).

Two properties. Whatever arrives - arbitrary text or JSON, or a document of the right shape with
wrong, extreme or contradictory values - the parser either accepts it or raises its documented
error (`InvalidInput`, every problem naming its field, and its line for files; the FHIR imports
also answer `Conflict`, `NotFound` or `PermissionDenied` as documented), and a refused document
changes nothing. And where an exporter exists, what it writes parses back to the same data.

Reproducible: derandomized, no example database.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import string
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.inventoryreport import InventoryReport
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal
from healthmesh.csvio import read_csv, validate_rows, write_csv
from healthmesh.errors import DomainError, FieldError, InvalidInput
from healthmesh.interop import as_datetime, as_json, inventory_report, parse, supply_delivery, supply_request
from healthmesh.interop.inventory_report import CountType, LotLine
from healthmesh.logistics import service as logistics
from healthmesh.logistics.models import Shipment
from healthmesh.logistics.schemas import ReceiptIn, ReceiptLineIn, RejectionIn, RejectionReason
from healthmesh.mutual_aid import transfer as mutual_aid
from healthmesh.needs import service as needs
from healthmesh.needs import transfer as needs_csv
from healthmesh.needs.models import Need
from healthmesh.needs.schemas import NeedIn
from healthmesh.needs.workflow import Urgency
from healthmesh.registry import transfer as registry_csv
from healthmesh.registry.codes import gtin_check_digit
from healthmesh.registry.enums import (
    AuthorisationStatus,
    FacilityKind,
    IncomeGroup,
    ProductCategory,
    StorageCondition,
    WhoListing,
)
from healthmesh.supply import transfer as stock_csv
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import IngestBatch, StockEvent
from tests.conftest import Actor, Region
from tests.test_fhir_supply_delivery import _dispatch, _plan

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("HEALTHMESH_FUZZ_EXAMPLES", "8"))  # a deeper run: 80 (as for the API)
#: Settings for tests on the database: each example runs in a savepoint rolled back after it, so
#: the function-scoped fixtures are safely shared between examples.
ON_DB = settings(
    max_examples=5 * EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PURE = settings(ON_DB, max_examples=20 * EXAMPLES)

# --- values a sender gets wrong ------------------------------------------------------------------

NASTY_CELLS = [
    "",
    " ",
    "\r",
    "\n",
    "\r\n",
    "\x00",
    '"',
    '""',
    ",",
    ";",
    "\ufeff",
    "\u2028",
    "-1",
    "0",
    "1.5",
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "9" * 40,
    "-" + "9" * 40,
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "true",
    "NULL",
    "THA",
    "THA-HO-0001",
    "DX-AGRDT-25",
    "x" * 300,
    "Ünïcødé 🩺",
]

cells = st.one_of(st.sampled_from(NASTY_CELLS), st.text(max_size=30), st.integers().map(str))


@st.composite
def csv_files(draw: st.DrawFn, columns: list[str], good: dict[str, st.SearchStrategy[str]]) -> str:
    """A CSV of the right family: a header from the real columns (reordered, some missing, some
    unknown or doubled), rows mostly of plausible cells and partly of nasty ones, any line ending,
    sometimes a BOM or a stray control character."""
    header = draw(st.permutations(columns))
    header = header[: draw(st.integers(1, len(header)))]
    if draw(st.booleans()) and len(header) > 2:
        header = header[:-1]
    if not draw(st.integers(0, 9)):
        header.append(draw(st.sampled_from(["unknown", header[0], " ", ""])))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        row = [draw(good[name] if name in good and draw(st.integers(0, 4)) else cells) for name in header]
        if not draw(st.integers(0, 9)):
            row = row[: draw(st.integers(0, len(row)))] if draw(st.booleans()) else [*row, draw(cells)]
        rows.append(row)
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])),
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
    )
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    if draw(st.integers(0, 4)) == 0 and text:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\r", "\x00", '"', "\n", "\ufeff"])) + text[at:]
    if draw(st.integers(0, 9)) == 0:
        text = "\ufeff" + text
    return text


def any_text() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")))


def assert_documented(exc: InvalidInput, *, lines: bool) -> None:
    """The documented refusal: at least one problem, each naming its field (and line, for files)."""
    assert exc.errors, exc
    for error in exc.errors:
        assert isinstance(error, FieldError)
        assert error.field.strip(), exc.errors
        assert error.message.strip(), exc.errors
        if lines:
            assert isinstance(error.line, int), exc.errors
            assert error.line >= 1, exc.errors


def count(db: Session, model: type[Any]) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def rollback(db: Session) -> Callable[[], AbstractContextManager[None]]:
    """A context for one example: whatever it writes is rolled back after it."""

    @contextmanager
    def savepoint() -> Iterator[None]:
        point = db.begin_nested()
        try:
            yield
        finally:
            point.rollback()
            db.expire_all()

    return savepoint


# --- the shared CSV reader -----------------------------------------------------------------------


@PURE
@given(text=st.one_of(any_text(), csv_files(["a", "b", "c"], {})))
def test_csv_reader_reports_bad_files_by_line_and_never_raises(text: str) -> None:
    rows, errors = read_csv(text, columns=["a", "b", "c"], required=["a"], list_columns=["c"])
    if errors:
        assert_documented(InvalidInput("refused", errors), lines=True)
    lines = [line for line, _ in rows]
    assert lines == sorted(set(lines))
    assert all(line >= 2 for line in lines)


#: Any text a cell may hold (NUL aside, which imports refuse).
plain = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40
)


@PURE
@given(rows=st.lists(st.fixed_dictionaries({"a": plain, "b": plain}), max_size=8))
def test_csv_writer_and_reader_agree_on_any_text(rows: list[dict[str, str]]) -> None:
    """What `write_csv` (every export) writes, `read_csv` (every import) reads back, cell for cell
    (cells are trimmed on import, and empty ones are absent)."""
    parsed, errors = read_csv(write_csv(["a", "b"], rows), columns=["a", "b"], required=[])
    assert errors == []
    expected = [{k: v.strip() for k, v in row.items() if v.strip()} for row in rows]
    assert [values for _, values in parsed] == [values for values in expected if values]


def test_csv_with_old_mac_line_endings_is_read_line_by_line() -> None:
    """Found by fuzzing: a lone CR (as old Mac spreadsheets end lines) raised csv.Error, a 500."""
    rows, errors = read_csv("a,b\r1,2\r\r3,4\r", columns=["a", "b"], required=["a"])
    assert errors == []
    assert rows == [(2, {"a": "1", "b": "2"}), (4, {"a": "3", "b": "4"})]


def test_csv_problems_found_by_fuzzing_are_field_errors_with_their_line() -> None:
    _, blank = read_csv("a,,b\n1,2,3\n", columns=["a", "b"], required=["a"])
    assert blank == [FieldError("header", "column 2 has no name", 1)]
    rows, nul = read_csv("a,b\nok,fine\nbad\x00,fine\n", columns=["a", "b"], required=["a"])
    assert nul == [FieldError("a", "contains a NUL character", 3)]
    assert rows == [(2, {"a": "ok", "b": "fine"})]
    _, huge = read_csv('a\nfine\n"' + "x" * 200_000 + '"\n', columns=["a"], required=["a"])
    assert [(e.field, e.line) for e in huge] == [("row", 3)]
    assert huge[0].message.startswith("unreadable CSV: field larger than field limit")


def test_exports_quote_a_carriage_return_so_the_record_stays_whole() -> None:
    """Found by fuzzing: with LF records a lone CR went out unquoted and split the row on import."""
    text = write_csv(["code", "name"], [{"code": "THA-HO-9", "name": "Ward 3\rannex"}])
    assert text == 'code,name\r\nTHA-HO-9,"Ward 3\rannex"\r\n'
    assert read_csv(text, columns=["code", "name"], required=[]) == (
        [(2, {"code": "THA-HO-9", "name": "Ward 3\rannex"})],
        [],
    )


def test_fhir_documents_with_a_nul_or_an_out_of_calendar_time_are_refused_by_path() -> None:
    """Found by fuzzing on PostgreSQL, which refuses NUL in text; and 9999-12-31T23:59-14:00
    overflowed when converted to UTC for storage."""
    body = {"resourceType": "InventoryReport", "status": "active", "contained": [{"id": "lot\x00"}]}
    with pytest.raises(InvalidInput) as refused:
        parse(InventoryReport, body, "entry[2].resource.")
    assert refused.value.errors == [
        FieldError("entry[2].resource.contained[0].id", "contains a NUL character")
    ]
    contained = {**body, "contained": [{"resourceType": None, "id": "lot-1"}]}
    with pytest.raises(InvalidInput) as unknown:  # fhir.resources raised TypeError on it: a 500
        parse(InventoryReport, contained)
    assert unknown.value.errors == [FieldError("contained[0].resourceType", "not a FHIR R5 resource type")]
    late = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14)))
    assert as_datetime(late) is None
    assert as_datetime(datetime(2026, 11, 30, 16, tzinfo=timezone(timedelta(hours=7)))) == datetime(
        2026, 11, 30, 9, tzinfo=UTC
    )


# --- registry lists ------------------------------------------------------------------------------

words = (
    st.text(string.ascii_letters + string.digits + " ,;\"'-.()/&éü", min_size=1, max_size=60)
    .map(str.strip)
    .filter(bool)
)
codes = st.from_regex(r"\A[A-Z][A-Z0-9]{1,5}-[A-Z0-9]{1,8}\Z")
new_iso3 = st.sampled_from(["VNM", "KHM", "MYS", "IDN", "PHL", "BRN", "MMR", "TLS"])
zones = st.sampled_from(["Asia/Bangkok", "Asia/Ho_Chi_Minh", "Asia/Jakarta", "Asia/Makassar", "UTC"])
days = st.dates(date(2000, 1, 1), date(2040, 12, 31))


def gtins() -> st.SearchStrategy[str]:
    body = st.text(string.digits, min_size=12, max_size=12)
    return body.map(lambda digits: digits + str(gtin_check_digit(digits)))


def _enum(values: Any) -> st.SearchStrategy[str]:
    return st.sampled_from([v.value for v in values])


REGISTRY_ROWS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "jurisdictions": st.fixed_dictionaries(
        {
            "iso3": new_iso3,
            "name": words,
            "income_group": _enum(IncomeGroup),
            "population": st.integers(0, 2_000_000_000),
            "time_zones": st.lists(zones, min_size=1, max_size=3, unique=True),
        },
        optional={
            "blocs": st.lists(st.sampled_from(["ASEAN", "APEC", "RCEP-1"]), unique=True, max_size=2),
            "data_protection_regime": words,
            "capital": words,
        },
    ),
    "facilities": st.fixed_dictionaries(
        {
            "code": codes,
            "jurisdiction": st.sampled_from(["THA", "LAO", "SGP"]),
            "kind": _enum(FacilityKind),
            "name": words,
            "latitude": st.floats(-90, 90),
            "longitude": st.floats(-180, 180),
            "time_zone": zones,
        },
        optional={
            "parent_organisation": words,
            "cold_chain_2_8": st.booleans(),
            "icu_beds": st.integers(0, 5_000),
            "lab_biosafety_level": st.integers(1, 4),
            "active": st.booleans(),
        },
    ),
    "products": st.fixed_dictionaries(
        {
            "code": codes,
            "name": words,
            "category": _enum(ProductCategory),
            "unit_of_issue": st.sampled_from(["kit", "vial", "each", "box of 50"]),
            "storage_condition": _enum(StorageCondition),
            "min_temp_c": st.floats(-100, 0),
            "max_temp_c": st.floats(0, 60),
            "shelf_life_days": st.integers(1, 3650),
        },
        optional={
            "gtin": gtins(),
            "pack_size": st.integers(1, 1000),
            "excursion_tolerance_minutes": st.integers(0, 10_080),
            "is_discrete_equipment": st.booleans(),
            "who_listing": _enum(WhoListing),
        },
    ),
    "authorisations": st.fixed_dictionaries(
        {
            "product": st.sampled_from(["DX-AGRDT-25", "VAC-COMIRNATY", "BME-VENT-ICU"]),
            "jurisdiction": st.sampled_from(["LAO", "SGP"]),
            "status": _enum(AuthorisationStatus).filter(lambda s: s != AuthorisationStatus.RELIANCE.value),
            "valid_from": days,
        },
        optional={"pathway": words, "reference": words.map(lambda s: s[:80])},
    ),
    "recognitions": st.fixed_dictionaries(
        {
            "jurisdiction": st.sampled_from(["THA", "SGP"]),
            "recognised_authority": st.sampled_from(["WHO-PQ", "WHO-EUL", "LAO"]),
            "valid_from": days,
        },
        optional={
            "categories": st.lists(_enum(ProductCategory), unique=True, max_size=3),
            "note": words,
        },
    ),
}


def _cell(value: Any) -> str:
    """A value as `write_csv` puts it in a cell."""
    if isinstance(value, list):
        return ";".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _good_cells(kind: registry_csv.CsvKind) -> dict[str, st.SearchStrategy[str]]:
    rows = REGISTRY_ROWS[kind.name]

    def column(name: str) -> st.SearchStrategy[str]:
        return rows.map(lambda row: _cell(row.get(name)))

    return {name: column(name) for name in kind.columns}


@pytest.mark.parametrize("kind", list(registry_csv.KINDS.values()), ids=list(registry_csv.KINDS))
def test_registry_import_refuses_bad_files_by_line(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    rollback: Callable[[], AbstractContextManager[None]],
    kind: registry_csv.CsvKind,
) -> None:
    """(A refused import leaves nothing because its caller's transaction rolls back: the import
    applies good rows in savepoints to find every reference error before it raises.)"""
    admin = actors["admin"].principal
    fuzz_import(
        rollback,
        st.one_of(any_text(), csv_files(kind.columns, _good_cells(kind))),
        lambda text: registry_csv.import_csv(db, admin, kind, text),
        lines=True,
        refusals=(InvalidInput,),
    )


def _comparable(kind: registry_csv.CsvKind, models: list[Any]) -> dict[Any, dict[str, Any]]:
    """Rows as the import schema reads them, by natural key; list columns are sets (blocs,
    categories), so their order is not compared."""
    out = {}
    for model in models:
        values = model.model_dump()
        out[kind.key(model)] = {k: sorted(v) if k in kind.list_columns else v for k, v in values.items()}
    return out


@pytest.mark.parametrize("kind", list(registry_csv.KINDS.values()), ids=list(registry_csv.KINDS))
def test_registry_export_parses_back_to_what_was_imported(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    rollback: Callable[[], AbstractContextManager[None]],
    kind: registry_csv.CsvKind,
) -> None:
    admin = actors["admin"].principal
    key_of = kind.key

    def unique(rows: list[dict[str, Any]]) -> bool:
        """One row per record, and no GTIN twice (a GTIN names one product)."""
        keys = [key_of(kind.schema.model_validate(row)) for row in rows]
        gtins = [row["gtin"] for row in rows if "gtin" in row]
        return len(keys) == len(set(keys)) and len(gtins) == len(set(gtins))

    @ON_DB
    @given(rows=st.lists(REGISTRY_ROWS[kind.name], min_size=1, max_size=5).filter(unique))
    def check(rows: list[dict[str, Any]]) -> None:
        with rollback():
            registry_csv.import_csv(db, admin, kind, write_csv(kind.columns, rows))
            exported, errors = read_csv(
                registry_csv.export_csv(db, kind),
                columns=kind.columns,
                required=kind.required,
                list_columns=kind.list_columns,
            )
            parsed, row_errors = validate_rows(exported, kind.schema)
            assert errors == row_errors == []
            back = _comparable(kind, [row.model for row in parsed])
            sent = _comparable(kind, [kind.schema.model_validate(row) for row in rows])
            assert {key: back[key] for key in sent} == sent

    check()


# --- stock events --------------------------------------------------------------------------------

STOCK_GOOD = {
    "facility": st.sampled_from(["THA-HO-0001", "THA-HO-0002", "LAO-HO-0001", "XXX-1"]),
    "product": st.sampled_from(["DX-AGRDT-25", "VAC-COMIRNATY", "NOPE"]),
    "lot_number": st.sampled_from(["AG-01", "AG-02", " AG-03 "]),
    "expiry_date": st.sampled_from(["2027-06-30", "2025-01-01", ""]),
    "kind": _enum(EventKind),
    "quantity": st.integers(-50, 500).map(str),
    "occurred_at": st.sampled_from(["2026-11-01", "2026-11-01T08:00:00+07:00", ""]),
    "reason": st.sampled_from(["", "count", "damaged"]),
    "counterpart_facility": st.sampled_from(["", "LAO-HO-0001"]),
    "from_reservation": st.sampled_from(["true", "false", ""]),
}


def test_stock_import_refuses_bad_files_by_line_and_records_nothing(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    rollback: Callable[[], AbstractContextManager[None]],
) -> None:
    manager = actors["fp_tha"].principal
    fuzz_import(
        rollback,
        st.one_of(any_text(), csv_files(stock_csv.COLUMNS, STOCK_GOOD)),
        lambda text: stock_csv.import_events(db, manager, text),
        lines=True,
        refusals=(InvalidInput,),
        unchanged=lambda: (count(db, StockEvent), count(db, IngestBatch)),
    )


# --- needs ---------------------------------------------------------------------------------------

NEED_GOOD = {
    "jurisdiction": st.sampled_from(["THA", "LAO", "tha", ""]),
    "facility": st.sampled_from(["THA-HO-0001", "LAO-HO-0001", ""]),
    "product": st.sampled_from(["DX-AGRDT-25", "BME-VENT-ICU"]),
    "quantity": st.integers(-5, 200_000_000).map(str),
    "urgency": _enum(Urgency),
    "needed_by": st.sampled_from(["2099-01-31", "2020-01-01", "9999-12-31"]),
    "population_served": st.integers(-1, 2**40).map(str),
    "submit": st.sampled_from(["true", "false", "yes"]),
    "external_id": st.text(max_size=140),
}


def test_needs_import_refuses_bad_files_by_line(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    rollback: Callable[[], AbstractContextManager[None]],
) -> None:
    """(Like the registry import, it creates good rows in savepoints and its caller rolls back.)"""
    focal_point = actors["fp_tha"].principal
    fuzz_import(
        rollback,
        st.one_of(any_text(), csv_files(needs_csv.COLUMNS, NEED_GOOD)),
        lambda text: needs_csv.import_needs(db, focal_point, text),
        lines=True,
        refusals=(InvalidInput,),
    )


# --- mutual aid ----------------------------------------------------------------------------------

MUTUAL_AID_GOOD = {
    "member": st.sampled_from(["NY", "NJ", "reserve", ""]),
    "date": st.sampled_from(["2020-04-01", "2020-04-02", "2020-13-01", ""]),
    "units": st.sampled_from(["0", "12.5", "-3", "1e400", "nan", "x"]),
    "from": st.sampled_from(["NY", "NJ"]),
    "to": st.sampled_from(["NJ", "CT"]),
    "distance": st.sampled_from(["10", "1e308", "-1", "inf"]),
    "delay": st.sampled_from(["", "1", "2.5", "1e30", "400"]),
}


@PURE
@example(  # a lone CR ends lines: csv.Error
    demand="member,date,units\rNY,2020-04-01,5\r",
    supply="member,units\nNY,3\n",
    distances="from,to,distance\n",
)
@example(  # a delay of 1e30 periods: OverflowError filling the int64 delay matrix
    demand="member,date,units\nNY,2020-04-01,5\nNJ,2020-04-01,5\n",
    supply="member,units\nNY,3\n",
    distances="from,to,distance,delay\nNY,NJ,10,1e30\n",
)
@given(
    demand=st.one_of(any_text(), csv_files(["member", "date", "units"], MUTUAL_AID_GOOD)),
    supply=st.one_of(any_text(), csv_files(["member", "units", "date"], MUTUAL_AID_GOOD)),
    distances=st.one_of(any_text(), csv_files(["from", "to", "distance", "delay"], MUTUAL_AID_GOOD)),
)
def test_mutual_aid_files_are_read_or_refused_by_line(demand: str, supply: str, distances: str) -> None:
    try:
        mutual_aid.to_problem(mutual_aid.from_csv(demand, supply, distances))
    except InvalidInput as exc:
        assert_documented(exc, lines=False)


# --- FHIR: any JSON, and well-formed documents with wrong values ---------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NASTY_CELLS),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
#: Values that fit FHIR's shapes but not HealthMesh's data.
FHIR_WRONG = st.one_of(
    json_values,
    st.sampled_from(
        [
            "snapshot",
            "difference",
            "active",
            "completed",
            "draft",
            "entered-in-error",
            "#lot-1",
            "#lot-99",
            "lot-1",
            "urn:healthmesh:product",
            "urn:healthmesh:facility",
            "https://www.gs1.org/gtin",
            "00614141000012",
            "00614141000013",
            "2027-12",
            "2027",
            "2026-11-30",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "SHP-000001/1",
            "shp-1-1",
            "reception",
            "dispatch",
            "damaged",
            "kit",
            "vial",
            -1,
            0,
            0.5,
            10_000_001,
            2**63,
            {"value": -3},
            {"value": 1e400},
            {"value": 2.5, "unit": "kit"},
            [],
            {},
        ]
    ),
)


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> Any:
    """The document with a few of its values replaced, keys removed or list items doubled."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 4))):
        node: Any = doc
        path: list[Any] = []
        while isinstance(node, dict | list) and node and draw(st.integers(0, 3)):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append(key)
            node = node[key]
        if not path:
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.integers(0, 5))
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            parent[path[-1]] = copy.deepcopy(draw(FHIR_WRONG))  # never share a drawn list or dict
    return doc


def refused_as_documented(
    call: Callable[[], Any], *, lines: bool = False, refusals: tuple[type[DomainError], ...] = (DomainError,)
) -> DomainError | None:
    """Run an import: it is accepted, or refused with a documented domain error of `refusals`
    (Conflict, NotFound and PermissionDenied as each resource documents; InvalidInput naming every
    field, and its line with `lines`). Any other error fails the test."""
    refused: DomainError | None = None
    try:
        call()
    except refusals as exc:
        refused = exc
    if isinstance(refused, InvalidInput):
        assert_documented(refused, lines=lines)
    elif refused is not None:
        assert str(refused).strip()
    return refused


def fuzz_import(
    rollback: Callable[[], AbstractContextManager[None]],
    inputs: st.SearchStrategy[Any],
    apply: Callable[[Any], object],
    *,
    lines: bool = False,
    refusals: tuple[type[DomainError], ...] = (DomainError,),
    unchanged: Callable[[], object] | None = None,
) -> None:
    """`apply` every input drawn, each in a savepoint rolled back after it: accepted, or refused as
    documented (`refused_as_documented`); with `unchanged`, what it reads is the same after a
    refusal (nothing half-written)."""

    @ON_DB
    @given(value=inputs)
    def check(value: Any) -> None:
        with rollback():
            before = unchanged() if unchanged is not None else None
            refused = refused_as_documented(lambda: apply(value), lines=lines, refusals=refusals)
            if refused is not None and unchanged is not None:
                assert unchanged() == before

    check()


def _stock(db: Session, region: Region, actor: Principal) -> None:
    """Two lots at Rajavithi, so exports have content to mutate."""
    stock_csv.import_events(
        db,
        actor,
        "facility,product,lot_number,expiry_date,kind,quantity,occurred_at\n"
        "THA-HO-0001,DX-AGRDT-25,AG-26-001,2027-06-30,receipt,400,2026-11-01\n"
        "THA-HO-0001,VAC-COMIRNATY,FK-0931,2027-02-28,receipt,60,2026-11-02\n",
    )


def test_inventory_report_import_accepts_or_refuses_any_document(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    rollback: Callable[[], AbstractContextManager[None]],
) -> None:
    manager = actors["manager_tha"].principal
    _stock(db, region, manager)
    base = inventory_report.export_report(db, manager, "THA-HO-0001", CountType.SNAPSHOT)
    base.pop("identifier")

    fuzz_import(
        rollback,
        st.one_of(json_values, mutated(base)),
        lambda body: inventory_report.import_report(db, manager, body),
        unchanged=lambda: count(db, StockEvent),
    )


lot_numbers = (
    st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=64
    )
    .map(str.strip)
    .filter(bool)
)


def test_inventory_report_export_parses_back_to_the_same_lots(
    db: Session, region: Region, actors: dict[str, Actor]
) -> None:
    manager = actors["manager_tha"].principal
    facility = region.facilities["THA-HO-0001"]
    products = list(region.products.values())

    @ON_DB
    @given(
        count_type=st.sampled_from(CountType),
        lines=st.lists(
            st.tuples(
                st.sampled_from(products),
                lot_numbers,
                st.none() | days,
                st.integers(-10_000_000, 10_000_000).filter(bool),
            ),
            max_size=6,
            unique_by=lambda line: (line[0].code, line[1]),
        ),
    )
    def check(count_type: CountType, lines: list[Any]) -> None:
        if count_type is CountType.SNAPSHOT:
            lines = [(p, lot, expiry, abs(q)) for p, lot, expiry, q in lines]
        sent = [LotLine(*line) for line in lines]
        now = datetime(2026, 11, 30, 9, tzinfo=UTC)
        period = (now - timedelta(days=7), now) if count_type is CountType.DIFFERENCE else None
        report = inventory_report.build_report(facility, count_type, sent, now=now, period=period)
        parsed = parse(InventoryReport, as_json(report))
        reader = inventory_report._Reader(db, manager, parsed, count_type)
        back = reader.lines()
        assert reader.errors == []
        assert [(x.product.code, x.lot_number, x.expiry, x.quantity) for x in back] == [
            (x.product.code, x.lot_number, x.expiry, x.quantity) for x in sent
        ]

    check()


def _need(db: Session, actor: Principal, **values: Any) -> Need:
    data = {"facility": "THA-HO-0001", "product": "DX-AGRDT-25", "quantity": 300, "needed_by": "2099-03-31"}
    return needs.create(db, actor, NeedIn.model_validate({**data, **values}))


def test_supply_request_import_accepts_or_refuses_any_document(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    rollback: Callable[[], AbstractContextManager[None]],
) -> None:
    focal_point = actors["fp_tha"].principal
    base = supply_request.to_json(
        _need(db, focal_point, justification="outbreak in Bang Khen", population_served=12_000)
    )
    base["identifier"] = [{"value": "LMIS-2026-0042"}]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": base}, {"resource": base}],
    }

    fuzz_import(  # (a Bundle refused half-way is undone by the caller's transaction)
        rollback,
        st.one_of(json_values, mutated(base), mutated(bundle)),
        lambda body: supply_request.import_requests(db, focal_point, body),
    )


external_ids = st.none() | st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=128
).map(str.strip).filter(bool)


def test_supply_request_export_parses_back_to_the_same_need(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    rollback: Callable[[], AbstractContextManager[None]],
) -> None:
    focal_point = actors["fp_tha"].principal

    @ON_DB
    @given(
        place=st.sampled_from([{"facility": "THA-HO-0002"}, {"jurisdiction": "THA"}]),
        product=st.sampled_from(["DX-AGRDT-25", "VAC-COMIRNATY", "BME-VENT-ICU"]),
        quantity=st.integers(1, 100_000_000),
        urgency=st.sampled_from(Urgency),
        needed_by=st.dates(date(2099, 1, 1), date(2199, 12, 31)),
        justification=st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=200).map(str.strip),
        population=st.integers(0, 2_000_000_000),
        external_id=external_ids,
        submit=st.booleans(),
    )
    def check(
        place: dict[str, str],
        product: str,
        quantity: int,
        urgency: Urgency,
        needed_by: date,
        justification: str,
        population: int,
        external_id: str | None,
        submit: bool,
    ) -> None:
        with rollback():
            sent = NeedIn.model_validate(
                {
                    **place,
                    "product": product,
                    "quantity": quantity,
                    "urgency": urgency,
                    "needed_by": needed_by,
                    "justification": justification,
                    "population_served": population,
                    "external_id": external_id,
                    "submit": submit,
                }
            )
            need = needs.create(db, focal_point, sent)
            (entry,) = supply_request._entries(db, supply_request.to_json(need))
            expected = sent.model_copy(
                update={"external_id": external_id or f"urn:healthmesh:need:{need.id}"}
            )
            assert entry.data == expected

    check()


# --- SupplyDelivery ------------------------------------------------------------------------------


@pytest.fixture
def delivered(db: Session, region: Region) -> Shipment:
    """Rajavithi's two-line shipment from the Chainat depot, on the road."""
    thailand, _ = _plan(db, region)
    _dispatch(db, thailand)
    return thailand


def _receipt_bundle(shipment: Shipment, kind: str = "transaction") -> dict[str, Any]:
    entries = [{"resource": supply_delivery.to_json(shipment, line)} for line in shipment.lines]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def test_supply_delivery_import_accepts_or_refuses_any_document(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    delivered: Shipment,
    rollback: Callable[[], AbstractContextManager[None]],
) -> None:
    manager = actors["manager_tha"].principal
    with rollback():  # a well-formed receipt of this shipment, to mutate
        split = [ReceiptLineIn(line_id=line.id, accepted=line.quantity) for line in delivered.lines]
        logistics.receive(db, manager, delivered.id, ReceiptIn(lines=split, receiver="Khun Malee, stores"))
        base = _receipt_bundle(delivered)
    single = copy.deepcopy(base["entry"][0]["resource"])

    fuzz_import(
        rollback,
        st.one_of(json_values, mutated(base), mutated(single)),
        lambda body: supply_delivery.import_receipt(db, manager, body),
        unchanged=lambda: count(db, StockEvent),
    )


@st.composite
def splits(draw: st.DrawFn, quantity: int) -> tuple[int, list[RejectionIn]]:
    """A line's units split between accepted and up to four rejection reasons."""
    reasons = draw(st.lists(st.sampled_from(RejectionReason), unique=True, max_size=4))
    rejected = []
    left = quantity
    for reason in reasons:
        units = draw(st.integers(0, left))
        if units:
            rejected.append(RejectionIn(reason=reason, quantity=units))
            left -= units
    return left, rejected


def test_supply_delivery_export_of_a_receipt_reads_back_as_that_receipt(
    db: Session,
    region: Region,
    actors: dict[str, Actor],
    delivered: Shipment,
    rollback: Callable[[], AbstractContextManager[None]],
) -> None:
    manager = actors["manager_tha"].principal
    lines = list(delivered.lines)

    @ON_DB
    @given(
        parts=st.tuples(*(splits(line.quantity) for line in lines)),
        receiver=st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=2, max_size=200)
        .map(str.strip)
        .filter(lambda s: len(s) >= 2),
        bundle_type=st.sampled_from(sorted(supply_delivery.BUNDLE_TYPES)),
    )
    def check(parts: tuple[tuple[int, list[RejectionIn]], ...], receiver: str, bundle_type: str) -> None:
        with rollback():
            sent = [
                ReceiptLineIn(line_id=line.id, accepted=accepted, rejected=rejected)
                for line, (accepted, rejected) in zip(lines, parts, strict=True)
            ]
            logistics.receive(db, manager, delivered.id, ReceiptIn(lines=sent, receiver=receiver))
            db.expire_all()
            shipment = db.get(Shipment, delivered.id)
            assert shipment is not None
            assert shipment.received_at is not None
            posts, kind, errors = supply_delivery._documents(_receipt_bundle(shipment, bundle_type))
            assert supply_delivery._identify(posts, errors) == shipment.id
            reader = supply_delivery._Reader(shipment, posts, kind, complete=True)
            back = reader.receipt()
            assert errors == reader.errors == []
            assert back is not None
            assert (back.receiver, back.received_at) == (
                receiver,
                shipment.received_at.replace(microsecond=0),
            )
            key = {line.line_id: (line.accepted, sorted(line.rejected, key=str)) for line in sent}
            assert {x.line_id: (x.accepted, sorted(x.rejected, key=str)) for x in back.lines} == key

    check()
