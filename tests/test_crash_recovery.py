"""SIGKILL the server in the middle of a large stock CSV import, an allocation approval and a
shipment receipt; after a restart nothing is half-applied, a retry under the same key applies
each exactly once, and the transparency log matches the database.

On PostgreSQL the kill lands truly mid-transaction: the test holds a row lock on the last stock
balance the import moves, and an exclusive lock on the log's entries table, so the import blocks
after writing its events and lot balances, and the approval and the receipt block at their log
entry after writing everything else; once `pg_stat_activity` shows all three waiting, the server
and its workers are killed, the locks released, and PostgreSQL must roll all three back.

SQLite cannot be held from outside halfway through a transaction, so there the kill is timed: a
large import is killed once its uncommitted pages are spilling into the write-ahead log.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.engine import make_url

from healthmesh.accounts.access import Role
from healthmesh.config import load_settings
from healthmesh.db import make_engine
from healthmesh.ledger import notes
from healthmesh.ledger import service as ledger
from tests import hardening_server as hs

pytestmark = pytest.mark.slow

IMPORTER = "IDN"  # the member whose national LMIS export is imported
IMPORT_PRODUCTS = (
    "PPE-MASK-MED",
    "PPE-GLOVE-EXM",
    "DX-AGRDT-25",
    "MED-PARA-500",
    "MED-ORS-1L",
    "OXY-MASK-NRB",
)
#: Lines of the import: enough on SQLite that it is still writing when the kill comes.
IMPORT_LINES = {"sqlite": 60_000, "postgresql": 20_000}
SPILLED_BYTES = 2_000_000  # uncommitted write-ahead log that shows the SQLite import is writing (of ~12 MB)
DEPOTS = ("RRD-MYS-SUBANG", "RRD-THA-CHAINAT")
WAIT_SECONDS = 90.0
IMPORT_KEY = "lmis-idn-2026-11"
RECEIPT_KEY = "grn-vnm-0001"
TABLES = (
    "stock_events",
    "lots",
    "lot_balances",
    "stock_balances",
    "ingest_batches",
    "change_events",
    "needs",
    "need_transitions",
    "allocation_plans",
    "shipments",
    "shipment_transitions",
    "pledges",
    "log_entries",
    "log_nodes",
)


@dataclass
class World:
    backend: str
    engine: Engine
    server: hs.Server
    tokens: dict[str, str]
    plan: int  # proposed, approved during the crash
    shipment: dict[str, Any]  # dispatched, received during the crash
    receipt: dict[str, Any]
    csv: str
    csv_events: int


@dataclass
class Crash:
    world: World
    in_flight: set[str]  # "import", "approval", "receipt"
    before: dict[str, Any]  # the state when the requests were sent
    after: dict[str, Any]  # the state after the restart
    answers: dict[str, str] = field(default_factory=dict)  # what the killed requests' clients saw


# --- the state that must not move ----------------------------------------------------------------


def state(engine: Engine) -> dict[str, Any]:
    """Row counts of every table a write touches, the balances' totals, and every need's, plan's
    and shipment's status: equal before and after means nothing was applied."""
    out: dict[str, Any] = {table: hs.scalar(engine, f"SELECT COUNT(*) FROM {table}") for table in TABLES}
    for table in ("lot_balances", "stock_balances"):
        out[f"{table} on hand, reserved"] = tuple(
            hs.rows(engine, f"SELECT COALESCE(SUM(on_hand), 0), COALESCE(SUM(reserved), 0) FROM {table}")[0]
        )
    out["needs"] = hs.rows(
        engine, "SELECT id, status, quantity_allocated, quantity_fulfilled FROM needs ORDER BY id"
    )
    out["plans"] = hs.rows(engine, "SELECT id, status FROM allocation_plans ORDER BY id")
    out["shipments"] = hs.rows(engine, "SELECT id, status, received_at FROM shipments ORDER BY id")
    out["log size"] = hs.scalar(engine, "SELECT COALESCE(MAX(size), 0) FROM log_head")
    out["pledges"] = hs.rows(engine, "SELECT id, quantity, status FROM pledges ORDER BY id")
    return out


# --- setup ---------------------------------------------------------------------------------------


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), (
        f"{response.request.url}: {response.status_code} {response.text}"
    )
    return response.json()


def _delivery(day: date, batch: str, packs: int) -> dict[str, Any]:
    events = [
        {
            "facility": depot,
            "product": "DX-AGRDT-25",
            "lot_number": f"AGRDT-{batch}{d}",
            "expiry_date": (day + timedelta(days=300 + 30 * d)).isoformat(),
            "kind": "receipt",
            "quantity": 25 * packs,
            "reason": "procurement delivery",
            "reference": f"PO-2026-{batch}{d}",
        }
        for d, depot in enumerate(DEPOTS)
    ]
    return {"events": events}


def _need(hospital: str, packs: int, day: date) -> dict[str, Any]:
    return {
        "facility": hospital,
        "product": "DX-AGRDT-25",
        "quantity": 25 * packs,
        "urgency": "urgent",
        "needed_by": (day + timedelta(days=21)).isoformat(),
        "justification": "testing demand tripled with the outbreak",
        "population_served": 400_000,
        "submit": True,
    }


def _hospitals(engine: Engine, iso3: str, count: int) -> list[str]:
    sql = (
        "SELECT f.code FROM facilities f JOIN jurisdictions j ON j.id = f.jurisdiction_id "
        "WHERE j.iso3 = :iso3 AND f.kind = 'hospital' ORDER BY f.code LIMIT :n"
    )
    return [code for (code,) in hs.rows(engine, sql, iso3=iso3, n=count)]


def _set_up(
    server: hs.Server, tokens: dict[str, str], engine: Engine, day: date
) -> tuple[int, dict[str, Any]]:
    """A dispatched shipment to a Viet Nam hospital (its needs fully allocated by round one), and a
    proposed plan for the Philippines' needs on new stock: their needs and lots do not overlap."""
    with (
        server.client(tokens["coordinator"]) as coordinator,
        server.client(tokens["fp.vnm"]) as vnm,
        server.client(tokens["fp.phl"]) as phl,
    ):
        _ok(coordinator.post("/api/v1/stock/events/batch", json=_delivery(day, "A", 40)))
        for hospital in _hospitals(engine, "VNM", 2):
            need = _ok(vnm.post("/api/v1/needs", json=_need(hospital, 12, day)))
            _ok(vnm.post(f"/api/v1/needs/{need['id']}/endorse"))
        round_one = _ok(coordinator.post("/api/v1/allocation/plans", json={"policy": "equity"}))
        _ok(coordinator.post(f"/api/v1/allocation/plans/{round_one['id']}/approve"))
        shipments = _ok(coordinator.post(f"/api/v1/logistics/plans/{round_one['id']}/shipments", json={}))
        shipment = shipments[0]
        for status in ("picked", "dispatched"):
            _ok(
                coordinator.post(
                    f"/api/v1/logistics/shipments/{shipment['id']}/moves", json={"status": status}
                )
            )
        _ok(coordinator.post("/api/v1/stock/events/batch", json=_delivery(day, "B", 30)))
        for hospital in _hospitals(engine, "PHL", 3):
            need = _ok(phl.post("/api/v1/needs", json=_need(hospital, 16, day)))
            _ok(phl.post(f"/api/v1/needs/{need['id']}/endorse"))
        plan = _ok(coordinator.post("/api/v1/allocation/plans", json={"policy": "equity"}))
    assert plan["lines"], "the second round should allocate the new stock"
    assert not {line["need_id"] for line in plan["lines"]} & {line["need_id"] for line in shipment["lines"]}
    return plan["id"], shipment


def _stock_csv(facilities: list[str], lines: int, day: date) -> tuple[str, int]:
    """A national LMIS export: per facility and product a delivered lot, then its daily issues."""
    pairs = [(facility, product) for facility in facilities for product in IMPORT_PRODUCTS]
    per_pair = max(lines // len(pairs), 2)
    rows = ["facility,product,lot_number,expiry_date,kind,quantity,occurred_at,reason,reference"]
    for n, (facility, product) in enumerate(pairs):
        lot = f"LMIS-{n:05d}"
        expiry = (day + timedelta(days=400)).isoformat()
        start = day - timedelta(days=28)
        rows.append(
            f"{facility},{product},{lot},{expiry},receipt,{8 * per_pair},{start},store delivery,GRN-{n}"
        )
        for k in range(per_pair - 1):
            when = (start + timedelta(days=1 + k % 27)).isoformat()
            rows.append(f"{facility},{product},{lot},,issue,{1 + k % 7},{when}T08:00:00,,RX-{n}-{k}")
    return "\n".join(rows) + "\n", len(rows) - 1


def _import_facilities(engine: Engine) -> list[str]:
    sql = (
        "SELECT f.code FROM facilities f JOIN jurisdictions j ON j.id = f.jurisdiction_id "
        "WHERE j.iso3 = :iso3 AND f.kind IN ('hospital', 'primary_care') ORDER BY f.code"
    )
    return [code for (code,) in hs.rows(engine, sql, iso3=IMPORTER)]


def _receipt(shipment: dict[str, Any]) -> dict[str, Any]:
    return {
        "lines": [{"line_id": line["id"], "accepted": line["quantity"]} for line in shipment["lines"]],
        "receiver": "Hospital pharmacy store",
        "note": "all cartons intact",
    }


# --- the crash -----------------------------------------------------------------------------------


class InFlight:
    """Requests sent from threads; their clients see the connection die with the server."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}
        self.threads: list[threading.Thread] = []

    def send(self, name: str, client: httpx.Client, path: str, **kwargs: Any) -> None:
        def run() -> None:
            try:
                response = client.post(path, **kwargs)
                self.answers[name] = f"{response.status_code} {response.text[:300]}"
            except httpx.TransportError as exc:
                self.answers[name] = f"no answer: {type(exc).__name__}"

        thread = threading.Thread(target=run, name=name)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(WAIT_SECONDS)


def _send_import(flight: InFlight, world: World, client: httpx.Client) -> None:
    files = {"file": ("lmis-idn.csv", world.csv.encode(), "text/csv")}
    flight.send(
        "import", client, "/api/v1/stock/events/import", files=files, headers={"Idempotency-Key": IMPORT_KEY}
    )


def _waiting(engine: Engine) -> list[str]:
    """What the server's sessions are waiting on a lock for (their statements)."""
    sql = (
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
    )
    return [query for (query,) in hs.rows(engine, sql)]


def _server_sessions(engine: Engine) -> int:
    sql = (
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'"
    )
    return int(hs.scalar(engine, sql))


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.02)


def _last_stock_balance(world: World) -> tuple[int, int]:
    """The (facility, product) balance the import moves last: it updates them in key order, and
    its lines cover every pair of its facilities and products."""
    facilities = sorted({line.split(",", 1)[0] for line in world.csv.splitlines()[1:]})
    sql = "SELECT MAX(id) FROM {} WHERE code IN :codes"
    with world.engine.connect() as conn:
        ids = [
            conn.execute(
                text(sql.format(table)).bindparams(bindparam("codes", expanding=True)), {"codes": codes}
            ).scalar_one()
            for table, codes in (("facilities", facilities), ("products", list(IMPORT_PRODUCTS)))
        ]
    return int(ids[0]), int(ids[1])


def _crash_postgres(world: World) -> tuple[set[str], dict[str, str]]:
    """Hold the locks, send all three, wait until all three wait, SIGKILL, release."""
    facility, product = _last_stock_balance(world)
    balance_lock: Connection = world.engine.connect()
    log_lock: Connection = world.engine.connect()
    flight = InFlight()
    clients = [world.server.client(world.tokens[name]) for name in ("fp.idn", "coordinator", "fp.vnm")]
    try:
        balance_lock.begin()
        found = balance_lock.execute(
            text("SELECT on_hand FROM stock_balances WHERE facility_id = :f AND product_id = :p FOR UPDATE"),
            {"f": facility, "p": product},
        ).all()
        assert found, "the import's last stock balance should exist before it, to be locked"
        log_lock.begin()
        log_lock.execute(text("LOCK TABLE log_entries IN EXCLUSIVE MODE"))
        importer, coordinator, receiver = clients
        _send_import(flight, world, importer)
        flight.send("approval", coordinator, f"/api/v1/allocation/plans/{world.plan}/approve")
        path = f"/api/v1/logistics/shipments/{world.shipment['id']}/receipt"
        flight.send("receipt", receiver, path, json=world.receipt, headers={"Idempotency-Key": RECEIPT_KEY})

        def all_waiting() -> bool:
            queries = " | ".join(_waiting(world.engine))
            return all(
                part in queries for part in ("UPDATE stock_balances", "INSERT INTO log_entries", "log_head")
            )

        _until(all_waiting, "the import, the approval and the receipt blocked mid-transaction")
        world.server.kill()
    finally:
        balance_lock.rollback()
        balance_lock.close()
        log_lock.rollback()
        log_lock.close()
        flight.join()
        for client in clients:
            client.close()
    _until(lambda: _server_sessions(world.engine) == 0, "PostgreSQL ended the killed server's sessions")
    return {"import", "approval", "receipt"}, flight.answers


def _crash_sqlite(world: World, url: str) -> tuple[set[str], dict[str, str]]:
    """Send the import, and kill the server while its uncommitted pages spill into the WAL."""
    database = make_url(url).database
    assert database is not None
    with closing(sqlite3.connect(database)) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so the log's growth is this import's
    wal = Path(f"{database}-wal")
    flight = InFlight()
    with world.server.client(world.tokens["fp.idn"]) as importer:
        _send_import(flight, world, importer)

        def spilling() -> bool:
            assert flight.threads[0].is_alive(), f"the import ended before the kill: {flight.answers}"
            return wal.exists() and wal.stat().st_size > SPILLED_BYTES

        _until(spilling, "the import writing")
        with closing(sqlite3.connect(database)) as reader:
            committed = reader.execute(
                "SELECT COUNT(*) FROM ingest_batches WHERE idempotency_key = ?", (IMPORT_KEY,)
            ).fetchone()[0]
        world.server.kill()
        assert committed == 0, "the import committed before the kill: make it larger"
        flight.join()
    return {"import"}, flight.answers


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crash(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crash]:
    backend: str = request.param
    data_dir: Path = tmp_path_factory.mktemp(f"crash-{backend}")
    day = date.today()
    with hs.fresh_database(backend, data_dir) as url:
        hs.seed_region(url)
        engine = make_engine(url)
        server = hs.Server(url, data_dir, workers=1)
        try:
            identities = [
                hs.Identity("coordinator", Role.REGIONAL_COORDINATOR),
                hs.Identity("fp.vnm", Role.NATIONAL_FOCAL_POINT, "VNM"),
                hs.Identity("fp.phl", Role.NATIONAL_FOCAL_POINT, "PHL"),
                hs.Identity("fp.idn", Role.NATIONAL_FOCAL_POINT, IMPORTER),
            ]
            tokens = hs.issue_tokens(engine, identities)
            server.start()
            plan, shipment = _set_up(server, tokens, engine, day)
            csv, events = _stock_csv(_import_facilities(engine), IMPORT_LINES[backend], day)
            world = World(backend, engine, server, tokens, plan, shipment, _receipt(shipment), csv, events)
            if backend == "postgresql":
                _seed_last_balance(world)
            before = state(engine)
            in_flight, answers = (
                _crash_postgres(world) if backend == "postgresql" else _crash_sqlite(world, url)
            )
            server.start()
            yield Crash(world, in_flight, before, state(engine), answers)
        finally:
            server.stop()
            engine.dispose()


def _seed_last_balance(world: World) -> None:
    """The import's last facility x product already holds a little stock, so its balance row
    exists for the test to lock."""
    facility, product = _last_stock_balance(world)
    code = hs.scalar(world.engine, "SELECT code FROM facilities WHERE id = :id", id=facility)
    product_code = hs.scalar(world.engine, "SELECT code FROM products WHERE id = :id", id=product)
    event = {
        "facility": code,
        "product": product_code,
        "lot_number": "OPENING-STOCK",
        "kind": "receipt",
        "quantity": 100,
        "reason": "opening balance",
    }
    with world.server.client(world.tokens["fp.idn"]) as api:
        _ok(api.post("/api/v1/stock/events", json=event))


# --- the checks ----------------------------------------------------------------------------------


def test_nothing_in_flight_was_half_applied(crash: Crash) -> None:
    """Every table, balance and status is as it was before the requests were sent."""
    assert crash.answers.keys() <= crash.in_flight
    assert all(answer.startswith("no answer") for answer in crash.answers.values()), crash.answers
    changed = {
        key: (crash.before[key], crash.after[key])
        for key in crash.before
        if crash.before[key] != crash.after[key]
    }
    assert changed == {}


def test_the_database_is_consistent_after_the_restart(crash: Crash) -> None:
    assert hs.stock_problems(crash.world.engine) == []
    assert hs.need_problems(crash.world.engine) == []


def test_a_retry_under_the_same_key_applies_each_request_exactly_once(crash: Crash) -> None:
    world = crash.world
    engine = world.engine
    with world.server.client(world.tokens["fp.idn"], timeout=300) as importer:
        files = {"file": ("lmis-idn.csv", world.csv.encode(), "text/csv")}
        headers = {"Idempotency-Key": IMPORT_KEY}
        first = _ok(importer.post("/api/v1/stock/events/import", files=files, headers=headers))
        again = _ok(importer.post("/api/v1/stock/events/import", files=files, headers=headers))
    assert (first["events"], first["replayed"]) == (world.csv_events, False)
    assert (again["batch_id"], again["replayed"]) == (first["batch_id"], True)
    recorded = hs.scalar(engine, "SELECT COUNT(*) FROM stock_events WHERE batch_id = :b", b=first["batch_id"])
    assert recorded == world.csv_events
    if "approval" in crash.in_flight:
        with world.server.client(world.tokens["coordinator"]) as coordinator:
            path = f"/api/v1/allocation/plans/{world.plan}/approve"
            assert _ok(coordinator.post(path))["status"] == "approved"
            assert coordinator.post(path).status_code == 409
        reserved = hs.scalar(
            engine,
            "SELECT SUM(quantity) FROM stock_events WHERE kind = 'reservation' AND reference = :r",
            r=f"plan:{world.plan}",
        )
        units = hs.scalar(
            engine, "SELECT allocated_units FROM allocation_plans WHERE id = :id", id=world.plan
        )
        assert reserved == units
    if "receipt" in crash.in_flight:
        path = f"/api/v1/logistics/shipments/{world.shipment['id']}/receipt"
        headers = {"Idempotency-Key": RECEIPT_KEY}
        with world.server.client(world.tokens["fp.vnm"]) as receiver:
            assert _ok(receiver.post(path, json=world.receipt, headers=headers))["status"] == "received"
            assert _ok(receiver.post(path, json=world.receipt, headers=headers))["status"] == "received"
        arrived = hs.rows(
            engine,
            "SELECT COUNT(DISTINCT batch_id), SUM(quantity) FROM stock_events "
            "WHERE kind = 'transfer_in' AND reference = :r",
            r=f"shipment:{world.shipment['id']}",
        )
        assert arrived == [(1, world.shipment["units"])]
    assert hs.stock_problems(engine) == []
    assert hs.need_problems(engine) == []


def test_the_log_matches_the_database(crash: Crash) -> None:
    """The killed decisions left no entry; the retried ones have exactly one each; it verifies."""
    assert crash.after["log size"] == crash.before["log size"]
    assert hs.log_problems(crash.world.server.url, crash.world.engine) == []


# --- the log's signing key -----------------------------------------------------------------------

#: Made to die by SIGKILL at the worst moment: when the key's file descriptor is opened for
#: writing (the `open` audit event on a bare descriptor), after the file was created and before a
#: byte of the key reached it.
KILLED_WRITING_THE_KEY = """
import os, signal, sys
from healthmesh.config import Settings
from healthmesh.ledger import service

def die_on_fdopen(event, args):
    if event == "open" and isinstance(args[0], int):
        os.kill(os.getpid(), signal.SIGKILL)

settings = Settings(data_dir=sys.argv[1], secret_key="x")
sys.addaudithook(die_on_fdopen)
service.load_signer(settings)
"""


def test_a_kill_while_the_log_key_is_written_leaves_no_half_key(tmp_path: Path) -> None:
    """The signing key is made on first use; a server killed while writing it must not leave a
    key file that no later start can read (the log could never sign a checkpoint again)."""
    killed = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", KILLED_WRITING_THE_KEY, str(tmp_path)], capture_output=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    settings = load_settings(data_dir=tmp_path, secret_key="x")
    signer = ledger.load_signer(settings)
    assert notes.parse_signer_key(ledger.key_path(settings).read_text().strip()).name == signer.name


def _load_key_at_once(settings: Any, workers: int) -> tuple[set[str], list[str]]:
    """`workers` threads loading the log's key at the same moment: the keys read, the errors."""
    barrier = threading.Barrier(workers)
    keys: set[str] = set()
    errors: list[str] = []

    def load() -> None:
        barrier.wait()
        try:
            keys.add(ledger.load_signer(settings).verifier().vkey)
        except Exception as exc:  # collected: the test names them
            errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return keys, errors


def test_workers_making_the_log_key_at_once_all_read_a_whole_one(tmp_path: Path) -> None:
    """Workers started together sign their first checkpoints at once: each must read the same
    complete key, never the file another is still writing (one fresh data directory a trial)."""
    for trial in range(40):
        settings = load_settings(data_dir=tmp_path / str(trial), secret_key="x")
        keys, errors = _load_key_at_once(settings, workers=4)
        assert errors == [], f"trial {trial}"
        assert len(keys) == 1, f"trial {trial}: workers signed with different keys"
