"""The transparency log on the database: append decisions in the caller's transaction, serve
proofs from stored subtree hashes, sign checkpoints that never contradict an earlier one, and
collect witnesses' cosignatures.

Appends lock the single `log_head` row, so concurrent transactions get consecutive leaf indices
and a rolled-back transaction leaves no gap: the entry commits or vanishes with the change it
records.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, insert, or_, select
from sqlalchemy.orm import Session

from healthmesh.config import Settings
from healthmesh.db import utcnow
from healthmesh.errors import Conflict, FieldError, InvalidInput, NotFound
from healthmesh.ledger import merkle, notes
from healthmesh.ledger.models import LogCheckpoint, LogCosignature, LogEntry, LogHead, LogNode, LogWitness

HEAD_ID = 1
CHUNK = 500
ENTRIES = cast(Table, LogEntry.__table__)
NODES = cast(Table, LogNode.__table__)
KEY_FILE = "ledger.skey"


# -- entries ----------------------------------------------------------------------------------


def canonical(kind: str, payload: Mapping[str, Any], at: datetime) -> bytes:
    """The entry as canonical JSON: sorted keys, no spaces, UTF-8, times to the second in UTC.
    Values are strings, integers, booleans, lists and objects (no floats: they do not round-trip
    identically everywhere)."""
    document = {"kind": kind, "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **payload}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@functools.lru_cache(maxsize=64)
def _node_query(count: int) -> Select[int, int, bytes]:
    """A read of `count` nodes by primary key, built once per count (and so compiled once). Written
    as OR-ed equalities: SQLite plans a row-value IN list as a scan of the whole table."""
    keys = [
        and_(LogNode.level == bindparam(f"l{i}"), LogNode.index == bindparam(f"i{i}")) for i in range(count)
    ]
    return select(LogNode.level, LogNode.index, LogNode.hash).where(or_(*keys))


class DbNodeStore:
    """`merkle.NodeStore` over `log_nodes`: one batched primary-key read of the keys a proof needs."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def nodes(self, keys: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start : start + CHUNK]
            params: dict[str, int] = {}
            for i, (level, index) in enumerate(chunk):
                params[f"l{i}"], params[f"i{i}"] = level, index
            for level, index, value in self.db.execute(_node_query(len(chunk)), params):
                found[(int(level), int(index))] = bytes(value)
        return found


def _lock_head(db: Session) -> LogHead:
    head = db.scalar(select(LogHead).where(LogHead.id == HEAD_ID).with_for_update())
    if head is None:
        head = LogHead(id=HEAD_ID, size=0)
        db.add(head)
        db.flush()
    return head


def append(db: Session, kind: str, payload: Mapping[str, Any]) -> int:
    """Append one entry in the caller's transaction; returns its leaf index."""
    return append_many(db, [(kind, payload)])[0]


def append_many(db: Session, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
    """Append entries in order, in the caller's transaction, with their new subtree hashes."""
    if not items:
        return []
    head = _lock_head(db)
    size = head.size
    now = utcnow()
    bodies = [canonical(kind, payload, now) for kind, payload in items]
    leaves = [merkle.leaf_hash(body) for body in bodies]
    nodes = merkle.new_nodes(size, leaves, DbNodeStore(db))
    rows = [
        {"index": size + i, "kind": kind, "body": body.decode(), "recorded_at": now}
        for i, ((kind, _), body) in enumerate(zip(items, bodies, strict=True))
    ]
    for start in range(0, len(rows), CHUNK):
        db.execute(insert(ENTRIES), rows[start : start + CHUNK])
    node_rows = [{"level": level, "index": index, "hash": value} for (level, index), value in nodes.items()]
    for start in range(0, len(node_rows), CHUNK):
        db.execute(insert(NODES), node_rows[start : start + CHUNK])
    head.size = size + len(items)
    db.flush()
    return list(range(size, size + len(items)))


def size(db: Session) -> int:
    return db.scalar(select(LogHead.size).where(LogHead.id == HEAD_ID)) or 0


def root(db: Session, tree_size: int | None = None) -> bytes:
    current = size(db)
    tree_size = current if tree_size is None else tree_size
    _check_range("size", tree_size, current)
    return merkle.root(tree_size, DbNodeStore(db))


def _check_range(field: str, value: int, current: int) -> None:
    if value < 0 or value > current:
        raise InvalidInput.on(field, f"{value} is outside the log (size {current})")


def entries(db: Session, start: int, end: int) -> list[LogEntry]:
    """Entries [start, end), at most 1,000 at a time."""
    current = size(db)
    if start < 0 or end < start:
        raise InvalidInput.on("start", "must be >= 0 and <= end")
    end = min(end, current, start + 1000)
    stmt = select(LogEntry).where(LogEntry.index >= start, LogEntry.index < end).order_by(LogEntry.index)
    return list(db.scalars(stmt))


def _beyond_the_log(db: Session, field: str, tree_size: int) -> InvalidInput:
    return InvalidInput.on(field, f"{tree_size} is outside the log (size {size(db)})")


def inclusion_proof(db: Session, index: int, tree_size: int) -> list[bytes]:
    """One read of O(log n) nodes; a size beyond the log shows as nodes that do not exist yet, so
    the head is read only to word that error (a round trip saved on every proof)."""
    if tree_size < 1:
        raise InvalidInput.on("size", "must be at least 1")
    if not 0 <= index < tree_size:
        raise InvalidInput.on("index", f"{index} is not in a tree of size {tree_size}")
    try:
        return merkle.inclusion_proof(index, tree_size, DbNodeStore(db))
    except merkle.MissingNodeError:
        raise _beyond_the_log(db, "size", tree_size) from None


def consistency_proof(db: Session, old_size: int, new_size: int) -> list[bytes]:
    if not 0 <= old_size <= new_size:
        raise InvalidInput.on("old_size", f"must be between 0 and {new_size}")
    if old_size in (0, new_size) and new_size > size(db):  # empty proofs read no node
        raise _beyond_the_log(db, "new_size", new_size)
    try:
        return merkle.consistency_proof(old_size, new_size, DbNodeStore(db))
    except merkle.MissingNodeError:
        raise _beyond_the_log(db, "new_size", new_size) from None


# -- checkpoints ------------------------------------------------------------------------------


def origin(settings: Settings) -> str:
    """The name a new log key gets, which is then the origin line of every checkpoint it signs
    (configured, or derived from the region's name; changing it later does not rename the key)."""
    return settings.ledger_origin or f"{settings.region_name.lower()}.healthmesh.local/log"


def key_path(settings: Settings) -> Path:
    return settings.ensure_data_dir() / "keys" / KEY_FILE


def load_signer(settings: Settings) -> notes.Signer:
    """The log's signing key, generated once at setup into the data directory (mode 0600),
    never into the database: whoever can read the database must not be able to sign."""
    path = key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_key(path, notes.generate_key(origin(settings))[0])
    return notes.parse_signer_key(path.read_text().strip())


def _write_key(path: Path, skey: str) -> None:
    """Write the key whole to a private temporary file, sync it, then link it into place: the key
    file appears complete or not at all, so neither a worker starting at the same moment nor a
    restart after a kill halfway ever reads a partial key. If another process linked its key
    first, theirs is kept."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".ledger-key-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(skey + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the link itself survives a power cut
        finally:
            os.close(directory)
    finally:
        os.unlink(temporary)


def latest_checkpoint(db: Session) -> LogCheckpoint | None:
    return db.scalar(select(LogCheckpoint).order_by(LogCheckpoint.size.desc()).limit(1))


def publish_checkpoint(db: Session, signer: notes.Signer) -> LogCheckpoint:
    """Sign the current tree head, unless the latest checkpoint already covers it. Before signing,
    prove the new head consistent with the last one signed: the log never signs a fork."""
    head = _lock_head(db)
    latest = latest_checkpoint(db)
    if latest is not None and latest.size == head.size:
        return latest
    store = DbNodeStore(db)
    new_root = merkle.root(head.size, store)
    if latest is not None:
        proof = merkle.consistency_proof(latest.size, head.size, store)
        try:
            merkle.verify_consistency(latest.size, head.size, bytes(latest.root_hash), new_root, proof)
        except merkle.ProofError as exc:
            raise Conflict(
                f"refusing to sign: the tree of size {head.size} is not consistent with checkpoint "
                f"{latest.size} ({exc})",
                [FieldError("checkpoint", "inconsistent")],
            ) from None
    body = notes.checkpoint_body(signer.name, head.size, new_root)  # the origin is the key's name
    checkpoint = LogCheckpoint(
        size=head.size, root_hash=new_root, note=notes.sign_note(body, signer.name, signer.private_key)
    )
    db.add(checkpoint)
    db.flush()
    return checkpoint


def cosigned_note(db: Session, checkpoint: LogCheckpoint) -> str:
    """The checkpoint with the log's signature and every witness cosignature collected."""
    lines = [
        row.line
        for row in db.scalars(
            select(LogCosignature)
            .where(LogCosignature.checkpoint_size == checkpoint.size)
            .order_by(LogCosignature.witness)
        )
    ]
    return checkpoint.note + "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def latest_cosigned(db: Session) -> LogCheckpoint | None:
    """The newest checkpoint at least one witness cosigned."""
    stmt = (
        select(LogCheckpoint)
        .join(LogCosignature, LogCosignature.checkpoint_size == LogCheckpoint.size)
        .order_by(LogCheckpoint.size.desc())
        .limit(1)
    )
    return db.scalar(stmt)


def checkpoint_at(db: Session, tree_size: int) -> LogCheckpoint:
    checkpoint = db.get(LogCheckpoint, tree_size)
    if checkpoint is None:
        raise NotFound(f"no checkpoint of size {tree_size}")
    return checkpoint


# -- witnesses --------------------------------------------------------------------------------


def register_witness(db: Session, vkey: str, url: str) -> LogWitness:
    """Trust a member's witness: its cosignatures will be collected and published."""
    try:
        verifier = notes.parse_verifier_key(vkey)
    except notes.NoteError as exc:
        raise InvalidInput.on("verifier_key", str(exc)) from None
    if verifier.alg != notes.ALG_COSIGNATURE_V1:
        raise InvalidInput.on("verifier_key", "a witness key is a cosignature/v1 key (algorithm 0x04)")
    witness = db.get(LogWitness, verifier.name)
    if witness is None:
        witness = LogWitness(name=verifier.name, verifier_key=vkey, url=url, last_size=0)
        db.add(witness)
    elif witness.verifier_key != vkey:
        raise Conflict(
            f"witness {verifier.name} is registered with another key: its past cosignatures are checked "
            "against that key, so a new key needs a new name",
            [FieldError("verifier_key", "another key is registered under this name")],
        )
    else:
        witness.url = url
    db.flush()
    return witness


@dataclass(frozen=True)
class WitnessResult:
    witness: str
    ok: bool
    detail: str


def add_checkpoint_request(db: Session, checkpoint: LogCheckpoint, old_size: int) -> str:
    """The body of a C2SP tlog-witness add-checkpoint request: old size, consistency proof, note."""
    proof = merkle.consistency_proof(old_size, checkpoint.size, DbNodeStore(db)) if old_size else []
    lines = [f"old {old_size}"] + [b64(node) for node in proof]
    return "\n".join(lines) + "\n\n" + checkpoint.note


def record_cosignature(db: Session, witness: LogWitness, checkpoint: LogCheckpoint, response: str) -> None:
    """Check a witness's answer against its key and the checkpoint, then keep it."""
    body = notes.parse_note(checkpoint.note).body
    verifier = notes.parse_verifier_key(witness.verifier_key)
    kept = []
    for line in response.splitlines():
        if not line.strip():
            continue
        notes.verify_cosignature(body, line, verifier)  # raises NoteError naming the failure
        kept.append(line)
    if not kept:
        raise notes.NoteError(f"{witness.name} answered without a cosignature")
    existing = db.get(LogCosignature, (checkpoint.size, witness.name))
    if existing is None:
        db.add(LogCosignature(checkpoint_size=checkpoint.size, witness=witness.name, line=kept[0]))
    witness.last_size = checkpoint.size
    db.flush()


def witnesses(db: Session) -> list[LogWitness]:
    return list(db.scalars(select(LogWitness).order_by(LogWitness.name)))


def public_keys(settings: Settings, db: Session) -> dict[str, Any]:
    """The keys a verifier needs: the log's and every registered witness's."""
    return {
        "origin": load_signer(settings).name,
        "log": load_signer(settings).verifier().vkey,
        "witnesses": [w.verifier_key for w in witnesses(db)],
    }


def entries_with_hashes(db: Session, start: int, end: int) -> list[dict[str, Any]]:
    """Entries [start, end) with the leaf hash the tree holds for each (level 0 of `log_nodes`)."""
    rows = entries(db, start, end)
    hashes = DbNodeStore(db).nodes([(0, entry.index) for entry in rows])
    return [
        {
            "index": entry.index,
            "kind": entry.kind,
            "body": entry.body,
            "leaf_hash": hashes[(0, entry.index)].hex() if (0, entry.index) in hashes else "",
        }
        for entry in rows
    ]


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def timestamp_now() -> int:
    return int(datetime.now(UTC).timestamp())


def proof_lines(values: Iterable[bytes]) -> list[str]:
    return [b64(value) for value in values]
