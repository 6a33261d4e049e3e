"""A real HealthMesh server in a subprocess, and the checks that say nothing was lost, for the
hardening tests (`test_concurrency.py`, `test_crash_recovery.py`).

The server is `healthmesh serve` (the production entry point: migrations, uvicorn workers) in
its own process group, so `kill()` can SIGKILL it and every worker at once, as a power cut or
the OOM killer would. Its database is a fresh one made for the test (a PostgreSQL database
dropped afterwards, or a SQLite file), seeded with the demo region's registry and users; each
test client gets its own account and API token.

The checks read the database directly and recount from the event log, so they judge the
server's work without trusting its projections or its answers.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from healthmesh import cli, migrate
from healthmesh.accounts.access import Role
from healthmesh.accounts.models import ApiToken, User
from healthmesh.accounts.security import hash_password, new_token, token_digest
from healthmesh.db import make_engine, make_sessionmaker, unit_of_work
from healthmesh.demo import seed as demo_seed
from healthmesh.ledger import bundle
from healthmesh.registry.models import Facility, Jurisdiction
from healthmesh.supply import rules
from healthmesh.supply.enums import OUTBOUND, EventKind
from tests.conftest import new_database

STARTUP_SECONDS = 60.0
SECRET_KEY = "hardening-tests-secret-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fresh_database(backend: str, directory: Path) -> AbstractContextManager[str]:
    """An empty database URL for a served region (`conftest.new_database`)."""
    return new_database(backend, directory, "hardening")


def seed_region(url: str) -> None:
    """Migrate and seed the demo region's registry (members, 400 facilities, the reserve depots,
    products, regulatory decisions, users), as `healthmesh demo --no-history` does."""
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as db:
            demo_seed.seed_demo(db, seed=2026)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Identity:
    """An account the test makes: its role, and its scope by ISO3 and facility code."""

    username: str
    role: Role
    member: str | None = None
    facility: str | None = None


def issue_tokens(engine: Engine, identities: list[Identity]) -> dict[str, str]:
    """An API token for each identity (the account is created unless it exists): username -> token."""
    tokens: dict[str, str] = {}
    password_hash = hash_password(secrets.token_urlsafe(16))
    with unit_of_work(make_sessionmaker(engine)) as db:
        for identity in identities:
            user = db.scalar(select(User).where(User.username == identity.username))
            if user is None:
                user = User(
                    username=identity.username,
                    full_name=identity.username,
                    password_hash=password_hash,
                    role=identity.role,
                    jurisdiction_id=_member_id(db, identity.member),
                    facility_id=_facility_id(db, identity.facility),
                )
                db.add(user)
                db.flush()
            raw = new_token("at")
            db.add(ApiToken(user_id=user.id, name="hardening", prefix=raw[:12], token_hash=token_digest(raw)))
            tokens[identity.username] = raw
    return tokens


def _member_id(db: Session, iso3: str | None) -> int | None:
    if iso3 is None:
        return None
    return db.scalar(select(Jurisdiction.id).where(Jurisdiction.iso3 == iso3))


def _facility_id(db: Session, code: str | None) -> int | None:
    if code is None:
        return None
    return db.scalar(select(Facility.id).where(Facility.code == code))


class Server:
    """`healthmesh serve` on a free loopback port, in its own process group; its output goes to
    `server.log` in the data directory (read it when a request failed)."""

    def __init__(self, database_url: str, data_dir: Path, workers: int = 1) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        """Start and wait until `/healthz` answers (a new port each time: a killed server's port
        may linger)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "HEALTHMESH_DATABASE_URL": self.database_url,
            "HEALTHMESH_DATA_DIR": str(self.data_dir),
            "HEALTHMESH_SECRET_KEY": SECRET_KEY,
        }
        command = [sys.executable, "-m", "healthmesh.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command,
                env=env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the server did not answer within {STARTUP_SECONDS:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server and all its workers: no shutdown handler, no commit, no cleanup."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):  # already gone
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """A graceful shutdown (SIGTERM), a kill if it takes over 15 s."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def client(self, token: str, timeout: float = 60.0) -> httpx.Client:
        # Idle connections dropped after 2 s, before uvicorn closes them (5 s): a request sent on a
        # connection the server is closing at that instant is reset, which is no answer at all.
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            limits=httpx.Limits(keepalive_expiry=2.0),
        )

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def tracebacks(self) -> list[str]:
        """Every traceback the server logged (an unhandled error is a 500)."""
        if not self.log_path.exists():
            return []
        log = self.log_path.read_text(errors="replace")
        return [chunk[:3000] for chunk in log.split("Traceback (most recent call last):")[1:]]


@contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- what the database says ----------------------------------------------------------------------

#: Kinds that take units out of the region's stock for good (consumed, discarded, lost on the road).
OUT_OF_THE_SYSTEM = ("issue", "write_off", "expiry_writeoff", "transit_loss")


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def stock_problems(engine: Engine) -> list[str]:
    """Everything that says stock was created, lost or promised twice; empty when all is well.

    * Every lot's events, replayed in order through the ledger's own rules (`supply.rules.apply`),
      are all allowed (no balance ever went negative or promised more than it held) and end at
      the lot's projection; the projection also equals a SQL sum of the events' deltas, and each
      delta is what its event's kind and quantity say.
    * Conservation over the whole region: units received plus net adjustments equal units on
      hand, plus on the road (sent and neither arrived nor lost), plus issued, written off or
      lost; and the units on the road per the events equal those on shipments on the road.
    * No lot reserves more than it holds, and every reservation is accounted for by approved
      plan lines not yet dispatched, or quarantine.
    """
    problems = _replay_problems(engine)
    problems += _projection_problems(engine)
    problems += _delta_problems(engine)
    problems += _conservation_problems(engine)
    problems += _reservation_problems(engine)
    return problems


def _replay_problems(engine: Engine) -> list[str]:
    balances: dict[int, rules.Balance] = defaultdict(rules.Balance)
    out = []
    events = "SELECT id, lot_id, kind, quantity, reserved_delta FROM stock_events ORDER BY lot_id, id"
    for event, lot, kind, quantity, reserved_delta in rows(engine, events):
        kind = EventKind(kind)
        try:
            balances[lot] = rules.apply(
                balances[lot], kind, quantity, kind in OUTBOUND and reserved_delta != 0
            )
        except rules.RefusedMovement as exc:
            out.append(f"event {event} on lot {lot} could not have happened: {exc}")
    projected = {
        lot: rules.Balance(on_hand, reserved)
        for lot, on_hand, reserved in rows(engine, "SELECT lot_id, on_hand, reserved FROM lot_balances")
    }
    for lot in sorted(set(balances) | set(projected)):
        replayed, stored = balances.get(lot, rules.Balance()), projected.get(lot, rules.Balance())
        if replayed != stored:
            out.append(f"lot {lot}: replaying its events gives {replayed}, its balance says {stored}")
    return out


def _projection_problems(engine: Engine) -> list[str]:
    mismatched = rows(
        engine,
        """
        SELECT b.lot_id, b.on_hand, b.reserved, COALESCE(e.on_hand, 0), COALESCE(e.reserved, 0)
        FROM lot_balances b
        LEFT JOIN (SELECT lot_id, SUM(on_hand_delta) AS on_hand, SUM(reserved_delta) AS reserved
                   FROM stock_events GROUP BY lot_id) e ON e.lot_id = b.lot_id
        WHERE b.on_hand <> COALESCE(e.on_hand, 0) OR b.reserved <> COALESCE(e.reserved, 0)
        """,
    )
    orphans = scalar(
        engine,
        "SELECT COUNT(DISTINCT lot_id) FROM stock_events "
        "WHERE lot_id NOT IN (SELECT lot_id FROM lot_balances)",
    )
    facility = rows(
        engine,
        """
        SELECT s.facility_id, s.product_id, s.on_hand, s.reserved, COALESCE(l.on_hand, 0),
               COALESCE(l.reserved, 0)
        FROM stock_balances s
        LEFT JOIN (SELECT facility_id, product_id, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved
                   FROM lot_balances GROUP BY facility_id, product_id) l
               ON l.facility_id = s.facility_id AND l.product_id = s.product_id
        WHERE s.on_hand <> COALESCE(l.on_hand, 0) OR s.reserved <> COALESCE(l.reserved, 0)
        """,
    )
    out = [f"lot {r[0]}: balance {r[1]}/{r[2]} reserved, events say {r[3]}/{r[4]}" for r in mismatched]
    out += [f"{orphans} lot(s) with events but no balance row"] if orphans else []
    out += [f"facility {r[0]} product {r[1]}: {r[2]}/{r[3]}, its lots say {r[4]}/{r[5]}" for r in facility]
    return out


def _delta_problems(engine: Engine) -> list[str]:
    """Each event's stored deltas against its kind (see `supply.rules.deltas`)."""
    bad = rows(
        engine,
        """
        SELECT id, kind, quantity, on_hand_delta, reserved_delta FROM stock_events WHERE NOT (
            (kind IN ('receipt', 'transfer_in') AND on_hand_delta = quantity AND reserved_delta = 0)
         OR (kind = 'adjustment' AND on_hand_delta = quantity AND reserved_delta = 0)
         OR (kind IN ('issue', 'transfer_out', 'expiry_writeoff', 'write_off')
             AND on_hand_delta = -quantity AND reserved_delta IN (0, -quantity))
         OR (kind = 'reservation' AND on_hand_delta = 0 AND reserved_delta = quantity)
         OR (kind = 'release' AND on_hand_delta = 0 AND reserved_delta = -quantity)
         OR (kind = 'transit_loss' AND on_hand_delta = 0 AND reserved_delta = 0))
        """,
    )
    return [f"event {r[0]} ({r[1]} of {r[2]}) moved on hand by {r[3]} and reserved by {r[4]}" for r in bad]


def totals_by_kind(engine: Engine) -> Counter[str]:
    return Counter(
        {
            kind: int(units)
            for kind, units in rows(engine, "SELECT kind, SUM(quantity) FROM stock_events GROUP BY kind")
        }
    )


def _conservation_problems(engine: Engine) -> list[str]:
    kinds = totals_by_kind(engine)
    on_hand = int(scalar(engine, "SELECT COALESCE(SUM(on_hand), 0) FROM lot_balances"))
    on_the_road_events = kinds["transfer_out"] - kinds["transfer_in"] - kinds["transit_loss"]
    on_the_road_shipments = int(
        scalar(
            engine,
            """
            SELECT COALESCE(SUM(l.quantity), 0) FROM shipment_lines l JOIN shipments s ON s.id = l.shipment_id
            WHERE s.status IN ('dispatched', 'in_transit', 'delivered')
            """,
        )
    )
    came_in = kinds["receipt"] + kinds["adjustment"]
    went_out = sum(kinds[k] for k in OUT_OF_THE_SYSTEM)
    out = []
    if came_in != on_hand + on_the_road_events + went_out:
        out.append(
            f"conservation: {came_in} received != {on_hand} on hand + {on_the_road_events} on the road "
            f"+ {went_out} issued, written off or lost ({dict(kinds)})"
        )
    if on_the_road_events != on_the_road_shipments:
        out.append(
            f"on the road: the events say {on_the_road_events}, shipments on the road carry "
            f"{on_the_road_shipments}"
        )
    return out


def _reservation_problems(engine: Engine) -> list[str]:
    """Per lot, what is reserved is what is promised: units of approved allocation plans not yet
    on a shipment that left or was cancelled, units held for shipments still being prepared (a
    mutual-aid transfer reserves when planned), and stock held in quarantine."""
    over = rows(
        engine, "SELECT lot_id, on_hand, reserved FROM lot_balances WHERE reserved > on_hand OR on_hand < 0"
    )
    promised: dict[int, int] = defaultdict(int)
    for sql in (
        """
        SELECT a.lot_id, SUM(a.quantity) FROM allocation_lines a
        JOIN allocation_plans p ON p.id = a.plan_id AND p.status = 'approved'
        WHERE NOT EXISTS (
            SELECT 1 FROM shipment_lines sl JOIN shipments s ON s.id = sl.shipment_id
            WHERE sl.allocation_line_id = a.id AND s.status NOT IN ('planned', 'picked'))
        GROUP BY a.lot_id
        """,
        """
        SELECT sl.lot_id, SUM(sl.quantity) FROM shipment_lines sl JOIN shipments s ON s.id = sl.shipment_id
        WHERE sl.from_reservation AND sl.allocation_line_id IS NULL AND s.status IN ('planned', 'picked')
        GROUP BY sl.lot_id
        """,
        """
        SELECT lot_id, SUM(reserved_delta) FROM stock_events WHERE reference LIKE 'quarantine:%'
        GROUP BY lot_id
        """,
    ):
        for lot_id, units in rows(engine, sql):
            promised[lot_id] += int(units)
    reserved = {
        lot: int(units)
        for lot, units in rows(engine, "SELECT lot_id, reserved FROM lot_balances WHERE reserved <> 0")
    }
    out = [f"lot {r[0]} reserves {r[2]} of {r[1]} on hand" for r in over]
    for lot_id in sorted(set(promised) | set(reserved)):
        if promised.get(lot_id, 0) != reserved.get(lot_id, 0):
            out.append(
                f"lot {lot_id} reserves {reserved.get(lot_id, 0)} but plans, shipments being prepared "
                f"and quarantine account for {promised.get(lot_id, 0)}"
            )
    return out


def need_problems(engine: Engine) -> list[str]:
    """No need allocated beyond its quantity, or allocated while it may not be; each need's
    allocated units are what approved plans gave it less what shipments gave back."""
    out = [
        f"need {r[0]} ({r[1]}): {r[3]} allocated, {r[4]} fulfilled of {r[2]}"
        for r in rows(
            engine,
            """
            SELECT id, status, quantity, quantity_allocated, quantity_fulfilled FROM needs
            WHERE quantity_allocated > quantity OR quantity_fulfilled > quantity_allocated
               OR quantity_allocated < 0
               OR (status IN ('draft', 'submitted', 'endorsed', 'rejected', 'cancelled')
                   AND quantity_allocated <> 0)
            """,
        )
    ]
    approved = {
        need: int(units)
        for need, units in rows(
            engine,
            """
            SELECT a.need_id, SUM(a.quantity) FROM allocation_lines a
            JOIN allocation_plans p ON p.id = a.plan_id AND p.status = 'approved' GROUP BY a.need_id
            """,
        )
    }
    returned = {
        need: int(units)
        for need, units in rows(
            engine,
            """
            SELECT sl.need_id, SUM(CASE WHEN s.status IN ('cancelled', 'lost') THEN sl.quantity
                                        ELSE sl.rejected END)
            FROM shipment_lines sl JOIN shipments s ON s.id = sl.shipment_id
            WHERE sl.need_id IS NOT NULL GROUP BY sl.need_id
            """,
        )
    }
    for need, allocated, fulfilled in rows(
        engine, "SELECT id, quantity_allocated, quantity_fulfilled FROM needs"
    ):
        expected = max(approved.get(need, 0) - returned.get(need, 0), fulfilled)
        if need in approved and allocated != expected:
            out.append(f"need {need}: {allocated} allocated, approved plans less returns say {expected}")
    return out


# --- the transparency log ------------------------------------------------------------------------


def verify_log(url: str) -> tuple[int, str]:
    """`healthmesh ledger verify URL`: the exit code and what it printed."""
    result = CliRunner().invoke(cli.app, ["ledger", "verify", url])
    return result.exit_code, result.output


def log_entries(url: str) -> list[bundle.Entry]:
    """Every entry the server publishes, through its public API (what a member would fetch)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        return list(cli.fetch_bundle(http).entries)


def decisions_in_log(entries: list[bundle.Entry]) -> Counter[tuple[str, str]]:
    """(kind, subject) per entry: the plan id of an approval, the shipment code of a dispatch or
    receipt; a count above 1 is a decision logged twice."""
    import json

    out: Counter[tuple[str, str]] = Counter()
    for entry in entries:
        body = json.loads(entry.body)
        subject = body.get("plan") if entry.kind.startswith("allocation.") else body.get("shipment")
        out[(entry.kind, str(subject))] += 1
    return out


def decisions_in_database(engine: Engine) -> Counter[tuple[str, str]]:
    """The committed decisions the log must hold, one entry each."""
    out: Counter[tuple[str, str]] = Counter()
    for (plan,) in rows(engine, "SELECT id FROM allocation_plans WHERE status = 'approved'"):
        out[("allocation.plan_approved", str(plan))] += 1
    for shipment, dispatched, received in rows(
        engine, "SELECT id, dispatched_at, received_at FROM shipments"
    ):
        code = f"SHP-{shipment:06d}"  # as `Shipment.code` names it
        if dispatched is not None:
            out[("shipment.dispatched", code)] += 1
        if received is not None:
            out[("shipment.received", code)] += 1
    return out


def log_problems(server_url: str, engine: Engine) -> list[str]:
    """The log verifies, and holds exactly one entry per committed decision and nothing else."""
    code, output = verify_log(server_url)
    out = [] if code == 0 else [f"ledger verify exited {code}:\n{output}"]
    logged = decisions_in_log(log_entries(server_url))
    expected = decisions_in_database(engine)
    for key in sorted(set(logged) | set(expected)):
        if logged[key] != expected[key]:
            out.append(f"{key[0]} {key[1]}: {logged[key]} log entries, {expected[key]} in the database")
    size = scalar(engine, "SELECT COALESCE(MAX(size), 0) FROM log_head")
    if size != sum(logged.values()):
        out.append(f"log_head says {size} entries, the API serves {sum(logged.values())}")
    return out
