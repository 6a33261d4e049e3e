"""Benchmark: the transparency log (issue 6) - durable appends on SQLite and PostgreSQL, one at a
time and batched, then inclusion and consistency proofs at 1,000,000 entries, with the same
entries through `pymerkle` in the same run for comparison.

    .venv/bin/python -m bench.ledger                      # 1,000,000 entries, SQLite and PostgreSQL
    .venv/bin/python -m bench.ledger --quick              # 50,000 entries: a smoke run
    .venv/bin/python -m bench.ledger --entries 200000 --backends sqlite

Each backend gets a fresh database migrated by `healthmesh.migrate.upgrade` and the product's
engine (`healthmesh.db.make_engine`: SQLite in WAL with synchronous=NORMAL; PostgreSQL with the
server's own fsync settings, printed). Entries are `shipment.dispatched` decisions shaped like
the ones logistics records (shipment, plan, from/to facility codes, mode, time, 1-5 lines of
product, lot and quantity), appended through `healthmesh.ledger.service`, the real path:

- one at a time: `--single` appends (2,000), each `service.append` in its own committed
  transaction (`unit_of_work`, as one request or command does);
- batched: `--batched` entries (100,000) as `service.append_many` of `--batch` (1,000) entries,
  one committed transaction per batch; then the log is built on, in the same batches, to
  `--entries` leaves (1,000,000), and that build's rate is shown as well;
- proofs at that size: `--proofs` (2,000) inclusion proofs of random leaves through
  `service.inclusion_proof` and as many consistency proofs between random sizes through
  `service.consistency_proof`, each timed with its own session (connection checkout, the size
  check, the one batched read of `log_nodes`), then verified with `merkle.verify_inclusion` /
  `merkle.verify_consistency` (timed separately; the roots and leaf hashes they need are read
  beforehand, untimed).

Then, once, in memory: the entries of the first backend (read back from its `log_entries`, so
byte for byte the same) through `merkle.MemoryStore`, and the same entries through pymerkle's
`InmemoryTree` and `SqliteTree` (sha256 with the 0x00/0x01 leaf/node prefixes, its default and
RFC 9162's; its SQLite file set to WAL + synchronous=NORMAL like ours, each append or batch
committed). The run checks that pymerkle's roots, our database root and our in-memory root agree,
and that the audit paths are the same hashes. pymerkle (GPL-3.0) is an optional comparison only,
never a dependency of the project: `.venv/bin/pip install pymerkle` (7.0.0) to include it.

Targets (issue 6): at least 5,000 durable appends/s batched, and inclusion proofs under 2 ms at
1,000,000 entries.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from bench.common import Stopwatch, database, machine
from healthmesh.db import make_sessionmaker, unit_of_work
from healthmesh.ledger import merkle, service
from healthmesh.ledger.models import LogEntry, LogNode

try:
    pymerkle: Any = importlib.import_module("pymerkle")
except ImportError:
    pymerkle = None

KIND = "shipment.dispatched"
APPEND_TARGET = 5_000  # durable appends/s, batched
PROOF_TARGET_MS = 2.0  # inclusion proof at 1,000,000 entries

Item = tuple[str, dict[str, Any]]
P = ParamSpec("P")
T = TypeVar("T")
U = TypeVar("U")


# -- entries ----------------------------------------------------------------------------------


def entries(seed: int = 2026) -> Iterator[Item]:
    """Endless `shipment.dispatched` payloads like logistics appends: depots ship to hospitals."""
    rng = random.Random(seed)
    modes = ["road", "road", "road", "air", "sea", "rail"]
    number = 0
    while True:
        number += 1
        day, minute = divmod(number // 7, 1440)
        yield (
            KIND,
            {
                "shipment": f"SHP-{number:06d}",
                "plan": 1 + number // 400,
                "from": f"NGA-DE-{rng.randrange(40):04d}",
                "to": f"NGA-HO-{rng.randrange(5000):04d}",
                "mode": rng.choice(modes),
                "dispatched_at": f"2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T"
                f"{minute // 60:02d}:{minute % 60:02d}:00+00:00",
                "lines": [
                    {
                        "product": f"PPE-{rng.randrange(200):03d}",
                        "lot": f"L{rng.randrange(100_000):05d}",
                        "quantity": rng.randint(1, 5_000),
                    }
                    for _ in range(rng.randint(1, 5))
                ],
            },
        )


def take(source: Iterator[Item], count: int) -> list[Item]:
    return [next(source) for _ in range(count)]


# -- figures ----------------------------------------------------------------------------------


@dataclass
class Samples:
    """Durations in seconds; summaries in ms or µs."""

    values: list[float] = field(default_factory=list)

    def median_ms(self) -> float:
        return statistics.median(self.values) * 1e3

    def p99_ms(self) -> float:
        return statistics.quantiles(self.values, n=100, method="inclusive")[98] * 1e3

    def median_us(self) -> float:
        return statistics.median(self.values) * 1e6

    def p99_us(self) -> float:
        return statistics.quantiles(self.values, n=100, method="inclusive")[98] * 1e6


def settle() -> None:
    """Collect, then freeze what exists, so that a series does not pay for scanning the objects
    earlier phases left (1,000,000 bodies, another tree): each pays only for its own garbage."""
    gc.collect()
    gc.freeze()


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def timed(samples: Samples, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    start = time.perf_counter()
    result = call(*args, **kwargs)
    samples.values.append(time.perf_counter() - start)
    return result


@dataclass
class Figures:
    """One implementation on one store; None where it does not apply."""

    name: str
    single_rate: float | None = None
    single: Samples | None = None
    late_single_rate: float | None = None
    late_single: Samples | None = None
    batched_rate: float | None = None
    build_rate: float | None = None
    inclusion: Samples | None = None
    inclusion_verify: Samples | None = None
    consistency: Samples | None = None
    consistency_verify: Samples | None = None
    root: bytes | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    entries: int
    single: int
    batched: int
    batch: int
    proofs: int
    seed: int
    late_single: int = 200
    seconds_cap: float = 20.0

    def inclusion_indices(self, size: int) -> list[int]:
        rng = random.Random(self.seed + 1)
        return [rng.randrange(size) for _ in range(self.proofs)]

    def consistency_pairs(self, size: int) -> list[tuple[int, int]]:
        """Random 1 <= old < new <= size, as a witness catching up from some checkpoint asks."""
        rng = random.Random(self.seed + 2)
        pairs = []
        for _ in range(self.proofs):
            new = rng.randint(2, size)
            pairs.append((rng.randint(1, new - 1), new))
        return pairs


# -- healthmesh on a database -----------------------------------------------------------------


def server_settings(engine: Engine, backend: str) -> str:
    with engine.connect() as conn:
        if backend == "sqlite":
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
                int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
            ]
            return f"SQLite {sqlite3.sqlite_version}, journal_mode={mode}, synchronous={sync}"
        version = conn.execute(text("SHOW server_version")).scalar()
        fsync = conn.execute(text("SHOW fsync")).scalar()
        commit = conn.execute(text("SHOW synchronous_commit")).scalar()
        method = conn.execute(text("SHOW wal_sync_method")).scalar()
        return f"PostgreSQL {version}, fsync={fsync}, synchronous_commit={commit}, wal_sync_method={method}"


def append_one(factory: sessionmaker[Session], kind: str, payload: dict[str, Any]) -> None:
    with unit_of_work(factory) as db:
        service.append(db, kind, payload)


def append_batches(factory: sessionmaker[Session], source: Iterator[Item], count: int, batch: int) -> float:
    """`count` entries as committed batches of `batch`; returns the seconds taken (generating the
    payloads excluded)."""
    seconds = 0.0
    done = 0
    while done < count:
        items = take(source, min(batch, count - done))
        watch = Stopwatch()
        with unit_of_work(factory) as db:
            service.append_many(db, items)
        seconds += watch.seconds
        done += len(items)
    return seconds


def run_database(backend: str, plan: Plan, keep_bodies: bool) -> tuple[Figures, str, list[bytes] | None]:
    figures = Figures(f"healthmesh {backend}")
    with database(backend) as engine:
        settings = server_settings(engine, backend)
        factory = make_sessionmaker(engine)
        source = entries(plan.seed)

        settle()
        figures.single = Samples()
        for kind, payload in take(source, plan.single):
            timed(figures.single, append_one, factory, kind, payload)
        figures.single_rate = plan.single / sum(figures.single.values)

        batched = min(plan.batched, plan.entries - plan.single)
        figures.batched_rate = batched / append_batches(factory, source, batched, plan.batch)
        rest = plan.entries - plan.single - batched
        if rest > 0:
            seconds = append_batches(factory, source, rest, plan.batch)
            figures.build_rate = rest / seconds
        with factory() as db:
            size = service.size(db)
        assert size == plan.entries, (size, plan.entries)

        prove_on_database(factory, plan, figures, size)
        bodies = read_bodies(factory, size) if keep_bodies else None

        # one at a time again, now on the full log (a production log is large)
        settle()
        figures.late_single = Samples()
        for kind, payload in capped(take(source, plan.late_single), plan.seconds_cap):
            timed(figures.late_single, append_one, factory, kind, payload)
        figures.late_single_rate = len(figures.late_single.values) / sum(figures.late_single.values)
    return figures, settings, bodies


def prove_on_database(factory: sessionmaker[Session], plan: Plan, figures: Figures, size: int) -> None:
    """Proofs through the service; verified against roots a verifier would hold, here computed
    in memory from the stored leaf hashes (untimed, and checked against the database's root)."""
    with factory() as db:
        stmt = (  # the leaf hashes: level 0 of the tree
            select(LogNode.hash)
            .where(LogNode.level == 0)
            .order_by(LogNode.index)
            .execution_options(yield_per=50_000)
        )
        leaves = [bytes(value) for value in db.scalars(stmt)]
        figures.root = service.root(db, size)
    reference = merkle.MemoryStore()
    for start in range(0, size, 10_000):
        reference.append(leaves[start : start + 10_000])
    assert merkle.root(size, reference) == figures.root, "database root differs from its leaves' root"
    settle()

    def inclusion(index: int) -> list[bytes]:
        with factory() as db:
            return service.inclusion_proof(db, index, size)

    def consistency(old: int, new: int) -> list[bytes]:
        with factory() as db:
            return service.consistency_proof(db, old, new)

    figures.inclusion, figures.inclusion_verify = Samples(), Samples()
    for index in capped(plan.inclusion_indices(size), plan.seconds_cap):
        proof = timed(figures.inclusion, inclusion, index)
        root = merkle.root(size, reference)
        timed(figures.inclusion_verify, merkle.verify_inclusion, leaves[index], index, size, proof, root)
    figures.consistency, figures.consistency_verify = Samples(), Samples()
    for old, new in capped(plan.consistency_pairs(size), plan.seconds_cap):
        proof = timed(figures.consistency, consistency, old, new)
        roots = merkle.root(old, reference), merkle.root(new, reference)
        timed(figures.consistency_verify, merkle.verify_consistency, old, new, *roots, proof)
    note_caps(figures, plan)


def capped(items: Sequence[U], seconds: float, minimum: int = 100) -> Iterator[U]:
    """The items, until `seconds` have passed (at least `minimum` of them)."""
    watch = Stopwatch()
    for count, item in enumerate(items):
        if count >= minimum and watch.seconds > seconds:
            return
        yield item


def note_caps(figures: Figures, plan: Plan) -> None:
    for what, samples in (("inclusion", figures.inclusion), ("consistency", figures.consistency)):
        if samples is not None and len(samples.values) < plan.proofs:
            figures.notes.append(
                f"only {len(samples.values):,} of {plan.proofs:,} {what} proofs measured "
                f"(stopped after {plan.seconds_cap:g} s)"
            )


def read_bodies(factory: sessionmaker[Session], size: int) -> list[bytes]:
    """The log's entries as stored, in order: the exact bytes each leaf hashes."""
    with factory() as db:
        stmt = select(LogEntry.body).order_by(LogEntry.index).execution_options(yield_per=20_000)
        bodies = [body.encode() for body in db.scalars(stmt)]
    assert len(bodies) == size
    return bodies


def build_in_phases(
    figures: Figures, batches: Callable[[int, int], None], done: int, plan: Plan, size: int
) -> None:
    """Leaves [done, size) in batches, timed as the database runs are: the first `plan.batched`,
    then the rest."""
    batched = min(plan.batched, size - done)
    watch = Stopwatch()
    batches(done, done + batched)
    figures.batched_rate = batched / watch.seconds
    if done + batched < size:
        watch = Stopwatch()
        batches(done + batched, size)
        figures.build_rate = (size - done - batched) / watch.seconds


# -- in memory: MemoryStore -------------------------------------------------------------------


def run_memory(bodies: Sequence[bytes], plan: Plan) -> tuple[Figures, merkle.MemoryStore]:
    figures = Figures("healthmesh MemoryStore")
    size = len(bodies)
    store = merkle.MemoryStore()
    settle()
    single = Samples()
    count = min(plan.single, size)
    for body in bodies[:count]:
        timed(single, store.append, [merkle.leaf_hash(body)])
    figures.single, figures.single_rate = single, count / sum(single.values)

    def batches(start: int, end: int) -> None:
        for first in range(start, end, plan.batch):
            chunk = bodies[first : min(first + plan.batch, end)]
            store.append([merkle.leaf_hash(body) for body in chunk])

    build_in_phases(figures, batches, count, plan, size)
    figures.root = merkle.root(size, store)
    settle()

    indices = plan.inclusion_indices(size)
    pairs = plan.consistency_pairs(size)
    roots = {n: merkle.root(n, store) for n in {size, *(n for pair in pairs for n in pair)}}
    figures.inclusion, figures.inclusion_verify = Samples(), Samples()
    for index in indices:
        proof = timed(figures.inclusion, merkle.inclusion_proof, index, size, store)
        leaf = merkle.leaf_hash(bodies[index])
        timed(figures.inclusion_verify, merkle.verify_inclusion, leaf, index, size, proof, roots[size])
    figures.consistency, figures.consistency_verify = Samples(), Samples()
    for old, new in pairs:
        proof = timed(figures.consistency, merkle.consistency_proof, old, new, store)
        timed(figures.consistency_verify, merkle.verify_consistency, old, new, roots[old], roots[new], proof)
    return figures, store


# -- pymerkle ---------------------------------------------------------------------------------


def run_pymerkle(
    tree: Any, name: str, bodies: Sequence[bytes], plan: Plan, store: merkle.MemoryStore
) -> Figures:
    """The same entries through a pymerkle tree (its indices count from 1). Proof paths are
    compared with ours: pymerkle's inclusion path is [leaf hash, *our audit path]."""
    figures = Figures(name)
    size = len(bodies)
    count = min(plan.single, size)
    settle()
    single = Samples()
    for body in bodies[:count]:
        timed(single, tree.append_entry, body)
    figures.single, figures.single_rate = single, count / sum(single.values)

    def batches(start: int, end: int) -> None:
        # SqliteTree.append_entries is its bulk append, one transaction per call; InmemoryTree's
        # is a loop over append_entry
        for first in range(start, end, plan.batch):
            tree.append_entries(bodies[first : min(first + plan.batch, end)])

    build_in_phases(figures, batches, count, plan, size)
    assert tree.get_size() == size
    figures.root = tree.get_root()
    settle()

    indices = plan.inclusion_indices(size)
    pairs = plan.consistency_pairs(size)
    roots = {n: merkle.root(n, store) for n in {size, *(n for pair in pairs for n in pair)}}
    same_paths = True
    figures.inclusion, figures.inclusion_verify = Samples(), Samples()
    for index in capped(indices, plan.seconds_cap):
        proof = timed(figures.inclusion, tree.prove_inclusion, index + 1, size)
        leaf = merkle.leaf_hash(bodies[index])
        timed(figures.inclusion_verify, pymerkle.verify_inclusion, leaf, roots[size], proof)
        same_paths = same_paths and proof.path == [leaf, *merkle.inclusion_proof(index, size, store)]
    figures.consistency, figures.consistency_verify = Samples(), Samples()
    for old, new in capped(pairs, plan.seconds_cap):
        proof = timed(figures.consistency, tree.prove_consistency, old, new)
        timed(figures.consistency_verify, pymerkle.verify_consistency, roots[old], roots[new], proof)
    note_caps(figures, plan)
    figures.notes.append(
        f"inclusion paths {'identical to' if same_paths else 'DIFFERENT from'} ours (after its leaf hash)"
    )
    return figures


def run_pymerkle_trees(bodies: Sequence[bytes], plan: Plan, store: merkle.MemoryStore) -> list[Figures]:
    memory = run_pymerkle(
        pymerkle.InmemoryTree(algorithm="sha256"), "pymerkle InmemoryTree", bodies, plan, store
    )
    with tempfile.TemporaryDirectory() as folder:
        tree = pymerkle.SqliteTree(str(Path(folder) / "pymerkle.sqlite3"), algorithm="sha256")
        tree.con.execute("PRAGMA journal_mode=WAL")  # as durable as ours, no more
        tree.con.execute("PRAGMA synchronous=NORMAL")
        try:
            disk = run_pymerkle(tree, "pymerkle SqliteTree", bodies, plan, store)
            hits, misses = tree.hits, tree.misses
        finally:
            tree.close()
    disk.notes.append(f"subroot cache {hits:,} hits, {misses:,} misses over its proofs")
    return [memory, disk]


# -- report -----------------------------------------------------------------------------------


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def ms(samples: Samples | None) -> str:
    return "-" if samples is None else f"{samples.median_ms():.3f} / {samples.p99_ms():.3f}"


def us(samples: Samples | None) -> str:
    return "-" if samples is None else f"{samples.median_us():.0f} / {samples.p99_us():.0f}"


def table(title: str, columns: Sequence[Figures], plan: Plan) -> None:
    rows: list[tuple[str, Callable[[Figures], str]]] = [
        (f"appends/s, one at a time ({plan.single:,})", lambda f: rate(f.single_rate)),
        ("  latency per append ms, median / p99", lambda f: ms(f.single)),
        (
            f"appends/s, one at a time at {plan.entries:,} ({plan.late_single:,})",
            lambda f: rate(f.late_single_rate),
        ),
        ("  latency per append ms, median / p99", lambda f: ms(f.late_single)),
        (f"appends/s, batched by {plan.batch:,} ({plan.batched:,})", lambda f: rate(f.batched_rate)),
        (f"appends/s, batched, rest of build to {plan.entries:,}", lambda f: rate(f.build_rate)),
        ("inclusion proof ms, median / p99", lambda f: ms(f.inclusion)),
        ("  verify inclusion µs, median / p99", lambda f: us(f.inclusion_verify)),
        ("consistency proof ms, median / p99", lambda f: ms(f.consistency)),
        ("  verify consistency µs, median / p99", lambda f: us(f.consistency_verify)),
    ]
    width = 44
    print(f"\n{title}")
    print(f"{'':<{width}}" + "".join(f"{f.name:>26}" for f in columns))
    for label, cell in rows:
        print(f"{label:<{width}}" + "".join(f"{cell(f):>26}" for f in columns))
    for f in columns:
        for note in f.notes:
            print(f"  {f.name}: {note}")


def verdicts(database_figures: Sequence[Figures], plan: Plan) -> None:
    print()
    for f in database_figures:
        assert f.batched_rate is not None
        assert f.inclusion is not None
        sustained = min(r for r in (f.batched_rate, f.build_rate) if r is not None)
        ok = sustained >= APPEND_TARGET
        print(
            f"target: {f.name} durable appends batched >= {APPEND_TARGET:,}/s: "
            f"{'met' if ok else 'MISSED'} ({sustained:,.0f}/s, the lower of the two batched figures)"
        )
        p99 = f.inclusion.p99_ms()
        label = f"{f.name} inclusion proof < {PROOF_TARGET_MS:g} ms at {plan.entries:,} entries"
        full = "" if plan.entries >= 1_000_000 else " (below the issue's 1,000,000: not the target size)"
        print(
            f"target: {label}: {'met' if p99 < PROOF_TARGET_MS else 'MISSED'} "
            f"(median {f.inclusion.median_ms():.3f} ms, p99 {p99:.3f} ms){full}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size built and proved at")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--single", type=int, default=2_000, help="appends one per transaction")
    parser.add_argument("--batched", type=int, default=100_000, help="entries measured batched")
    parser.add_argument("--batch", type=int, default=1_000, help="entries per append_many")
    parser.add_argument("--proofs", type=int, default=2_000, help="proofs of each kind")
    parser.add_argument("--late-single", type=int, default=200, help="single appends on the full log")
    parser.add_argument("--cap", type=float, default=20.0, help="seconds per proof or late-append series")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--no-pymerkle", action="store_true", help="skip the in-memory and pymerkle runs")
    parser.add_argument("--quick", action="store_true", help="50,000 entries, 500 single, 20,000 batched")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.single, args.batched, args.proofs, args.late_single = 50_000, 500, 20_000, 500, 100
    plan = Plan(
        args.entries,
        args.single,
        args.batched,
        args.batch,
        args.proofs,
        args.seed,
        args.late_single,
        args.cap,
    )
    if plan.entries < plan.single + 2:
        parser.error("--entries must exceed --single")

    print(
        f"transparency log benchmark: {plan.entries:,} entries ({KIND}), {plan.single:,} single appends, "
        f"{plan.batched:,} batched by {plan.batch:,}, {plan.proofs:,} proofs of each kind; {machine()}"
    )
    print(f"start: {load()}")
    if pymerkle is None:
        print("pymerkle is not installed: no comparison (.venv/bin/pip install pymerkle)")
    else:
        print(f"pymerkle {pymerkle.__version__} (GPL-3.0, optional comparison only)")

    database_figures: list[Figures] = []
    bodies: list[bytes] | None = None
    for backend in args.backends.split(","):
        watch = Stopwatch()
        figures, settings, read = run_database(backend, plan, keep_bodies=bodies is None)
        bodies = bodies or read
        database_figures.append(figures)
        print(f"{backend}: {settings}; {watch.seconds:.0f} s; {load()}")

    in_memory: list[Figures] = []
    store: merkle.MemoryStore | None = None
    if bodies is not None and not args.no_pymerkle:
        watch = Stopwatch()
        memory, store = run_memory(bodies, plan)
        in_memory.append(memory)
        if pymerkle is not None:
            in_memory.extend(run_pymerkle_trees(bodies, plan, store))
        print(f"in memory and pymerkle: {watch.seconds:.0f} s; {load()}")

    by_name = {f.name: f for f in in_memory}
    for f in database_figures:
        columns = [f]
        if f.name == "healthmesh sqlite" and "pymerkle SqliteTree" in by_name:
            columns.append(by_name["pymerkle SqliteTree"])
        table(
            f"{f.name} - log built to {plan.entries:,} entries, each append or batch committed", columns, plan
        )
    if in_memory:
        table(f"in memory - the first backend's {plan.entries:,} entries, byte for byte", in_memory, plan)

    if store is not None:
        first = database_figures[0]
        print(f"\nroot at {plan.entries:,}: {first.name} {first.root.hex() if first.root else '-'}")
        for f in in_memory:
            same = f.root == first.root
            print(f"  {f.name:<24} {'matches' if same else 'DIFFERS'}")
    verdicts(database_figures, plan)


if __name__ == "__main__":
    main()
