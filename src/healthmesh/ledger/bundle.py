"""A self-contained export of the transparency log, and its offline verification (pure: no
database, no network).

A bundle holds every entry, so its verifier trusts nothing it can recompute: it hashes every
entry body itself, rebuilds the tree, and checks every signed checkpoint against it. The hashes
the log *stored* travel too, as the log's claims, so that tampering with one of them is caught
and named rather than silently recomputed away.

Schema ``healthmesh.ledger.bundle/1``, a JSON object::

    {
      "schema": "healthmesh.ledger.bundle/1",
      "origin": "asean.healthmesh.local/log",
      "log_key": "<the log's verifier key, C2SP format, alg 0x01>",
      "witness_keys": ["<a witness's verifier key, alg 0x04 (cosignature/v1)>", ...],
      "entries": [
        {"index": 0, "kind": "allocation.plan_approved",
         "body": "<the canonical JSON text exactly as stored>",
         "leaf_hash": "<hex: the leaf hash the log stored, SHA-256(0x00 || body)>"},
        ...
      ],
      "checkpoints": [
        {"size": 13, "root_hash": "<hex: the root the log stored when signing>",
         "note": "<the signed note: checkpoint text, blank line, log signature, cosignatures>"},
        ...
      ]
    }

Entries are numbered 0, 1, 2, ... in order; checkpoints are listed by increasing size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from healthmesh.ledger import merkle, notes

__all__ = [
    "SCHEMA",
    "Bundle",
    "BundleError",
    "Entry",
    "Failure",
    "StoredCheckpoint",
    "Summary",
    "checkpoint",
    "dumps",
    "entry",
    "from_json",
    "loads",
    "summarize",
    "verify",
]

SCHEMA = "healthmesh.ledger.bundle/1"
_T = TypeVar("_T")

#: (done, total): called while checking inclusion, which is most of the work on a large log.
Progress = Callable[[int, int], None]


class BundleError(ValueError):
    """The input is not a readable bundle (not JSON, another schema, a field of the wrong type):
    nothing can be verified, as opposed to a bundle that verifies with failures."""


@dataclass(frozen=True)
class Entry:
    index: int
    kind: str
    body: str
    leaf_hash: str  # hex, as stored by the log


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root_hash: str  # hex, as stored by the log
    note: str


@dataclass(frozen=True)
class Bundle:
    origin: str
    log_key: str
    witness_keys: tuple[str, ...]
    entries: tuple[Entry, ...]
    checkpoints: tuple[StoredCheckpoint, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "origin": self.origin,
            "log_key": self.log_key,
            "witness_keys": list(self.witness_keys),
            "entries": [
                {"index": e.index, "kind": e.kind, "body": e.body, "leaf_hash": e.leaf_hash}
                for e in self.entries
            ],
            "checkpoints": [
                {"size": c.size, "root_hash": c.root_hash, "note": c.note} for c in self.checkpoints
            ],
        }


@dataclass(frozen=True, order=True)
class Failure:
    """One failed check: what was checked, on which entry or checkpoint, and what was found."""

    check: str
    where: str
    detail: str


@dataclass(frozen=True)
class Summary:
    """What a clean verification covered, for a one-line report."""

    entries: int
    checkpoints: int
    latest_size: int
    cosignatures: int
    witnesses: int


def entry(index: int, kind: str, body: str, leaf_hash: bytes) -> Entry:
    return Entry(index, kind, body, leaf_hash.hex())


def checkpoint(size: int, root_hash: bytes, note: str) -> StoredCheckpoint:
    return StoredCheckpoint(size, root_hash.hex(), note)


# --- reading and writing --------------------------------------------------------------------


def dumps(bundle: Bundle) -> str:
    return json.dumps(bundle.to_json(), indent=1, ensure_ascii=False) + "\n"


def loads(text: str | bytes) -> Bundle:
    """Parse a bundle file; BundleError when it cannot be read as one."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"not JSON: {exc}") from None
    return from_json(data)


def from_json(data: object) -> Bundle:
    """Check the shape (not the content: that is `verify`'s job) and build the Bundle."""
    top = _object(data, "bundle")
    schema = top.get("schema")
    if schema != SCHEMA:
        raise BundleError(f"not a {SCHEMA} bundle (schema {schema!r})")
    return Bundle(
        origin=_field(top, "origin", str, "bundle"),
        log_key=_field(top, "log_key", str, "bundle"),
        witness_keys=tuple(
            _typed(key, str, f"witness_keys[{i}]")
            for i, key in enumerate(_field(top, "witness_keys", list, "bundle"))
        ),
        entries=tuple(_entry(item, i) for i, item in enumerate(_field(top, "entries", list, "bundle"))),
        checkpoints=tuple(
            _checkpoint(item, i) for i, item in enumerate(_field(top, "checkpoints", list, "bundle"))
        ),
    )


def _entry(item: object, position: int) -> Entry:
    where = f"entries[{position}]"
    obj = _object(item, where)
    return Entry(
        index=_field(obj, "index", int, where),
        kind=_field(obj, "kind", str, where),
        body=_field(obj, "body", str, where),
        leaf_hash=_field(obj, "leaf_hash", str, where),
    )


def _checkpoint(item: object, position: int) -> StoredCheckpoint:
    where = f"checkpoints[{position}]"
    obj = _object(item, where)
    return StoredCheckpoint(
        size=_field(obj, "size", int, where),
        root_hash=_field(obj, "root_hash", str, where),
        note=_field(obj, "note", str, where),
    )


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise BundleError(f"{where} is not a JSON object")
    return value


def _field(obj: Mapping[str, object], name: str, kind: type[_T], where: str) -> _T:
    if name not in obj:
        raise BundleError(f"{where} has no {name!r}")
    return _typed(obj[name], kind, f"{where}.{name}")


def _typed(value: object, kind: type[_T], where: str) -> _T:
    # bool is an int in Python, never in a bundle
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(f"{where} is not a {kind.__name__}")
    return value


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class _Head:
    """A checkpoint whose note parsed and whose size is within the entries."""

    size: int
    root: bytes


class _Trees:
    """The tree of the entries' own hashes and, where it differs, the tree of the log's stored
    leaf hashes (the one its proofs are built from). A proof is taken from the first of the two
    that explains the signed roots, which localises a failure: an edited body fails inclusion
    alone, and a wrong stored hash spoils no proof at all."""

    def __init__(self, own: Sequence[bytes], stored: Sequence[bytes] | None) -> None:
        self.size = len(own)
        self.own = _store(own)
        self.stored = _store(stored) if stored is not None and list(stored) != list(own) else None
        self._sizes_by_root: dict[bytes, int] | None = None

    def root(self, size: int) -> bytes:
        return merkle.root(size, self.own)

    def explaining(self, *heads: _Head) -> merkle.NodeStore:
        for store in (self.own, self.stored):
            if store is not None and all(merkle.root(h.size, store) == h.root for h in heads):
                return store
        return self.own

    def explains(self, head: _Head) -> bool:
        store = self.explaining(head)
        return merkle.root(head.size, store) == head.root

    def size_of(self, root: bytes) -> int | None:
        """The prefix of the entries whose root this is, if any (built once, on first failure)."""
        if self._sizes_by_root is None:
            self._sizes_by_root = {merkle.root(n, self.own): n for n in range(self.size + 1)}
        return self._sizes_by_root.get(root)


def _store(leaves: Sequence[bytes]) -> merkle.MemoryStore:
    store = merkle.MemoryStore()
    store.append(leaves)
    return store


class _Report:
    def __init__(self) -> None:
        self.failures: list[Failure] = []

    def fail(self, check: str, where: str, detail: str) -> None:
        self.failures.append(Failure(check, where, detail))


def verify(bundle: Bundle, progress: Progress | None = None) -> list[Failure]:
    """Every check on every entry and checkpoint; ALL failures, in the order found (an empty
    list means the bundle is exactly what the log signed and the witnesses cosigned)."""
    report = _Report()
    log_key = _log_key(bundle.log_key, report)
    witnesses = _witness_keys(bundle.witness_keys, report)
    own, stored = _entries(bundle.entries, report)
    trees = _Trees(own, stored)
    heads: list[_Head] = []
    for stored_checkpoint in bundle.checkpoints:
        head = _check_checkpoint(bundle.origin, stored_checkpoint, log_key, witnesses, trees, report)
        if head is not None:
            heads.append(head)
    if not bundle.checkpoints:
        report.fail("checkpoint signature", "bundle", "the bundle has no checkpoint: nothing in it is signed")
    heads.sort()
    _check_consistency(heads, trees, report)
    _check_inclusion(heads[-1] if heads else None, own, trees, report, progress)
    return report.failures


def _log_key(vkey: str, report: _Report) -> notes.Verifier | None:
    try:
        verifier = notes.parse_verifier_key(vkey)
    except notes.NoteError as exc:
        report.fail("log key", "bundle", str(exc))
        return None
    if verifier.alg != notes.ALG_ED25519:
        report.fail("log key", "bundle", f"{verifier.name} is not an Ed25519 note-signing key (alg 0x01)")
        return None
    return verifier


def _witness_keys(vkeys: Sequence[str], report: _Report) -> dict[str, dict[bytes, notes.Verifier]]:
    """Witness verifiers by name, then key id (a witness may have rotated its key)."""
    out: dict[str, dict[bytes, notes.Verifier]] = {}
    for position, vkey in enumerate(vkeys, start=1):
        try:
            verifier = notes.parse_verifier_key(vkey)
        except notes.NoteError as exc:
            report.fail("witness key", f"witness key {position}", str(exc))
            continue
        if verifier.alg != notes.ALG_COSIGNATURE_V1:
            report.fail(
                "witness key",
                f"witness {verifier.name}",
                "not a cosignature/v1 key (alg 0x04): it cannot cosign",
            )
            continue
        out.setdefault(verifier.name, {})[verifier.key_id] = verifier
    return out


def _entries(entries: Sequence[Entry], report: _Report) -> tuple[list[bytes], list[bytes] | None]:
    """Hash every body; return those leaf hashes and the stored ones (None if any is unusable)."""
    own: list[bytes] = []
    stored: list[bytes] | None = []
    for position, item in enumerate(entries):
        where = f"entry {item.index}"
        if item.index != position:
            report.fail("entry index", where, f"listed at position {position}: entries must run 0, 1, 2, ...")
        leaf = merkle.leaf_hash(item.body.encode("utf-8", "surrogatepass"))
        own.append(leaf)
        claimed = _hash(item.leaf_hash)
        if claimed is None:
            report.fail(
                "entry hash", where, f"stored leaf hash {item.leaf_hash[:80]!r} is not 32 bytes of hex"
            )
            stored = None
        elif claimed != leaf:
            report.fail(
                "entry hash", where, f"the body hashes to {_short(leaf)}, the log stored {_short(claimed)}"
            )
        if stored is not None and claimed is not None:
            stored.append(claimed)
        _check_kind(item, where, report)
    return own, stored


def _check_kind(item: Entry, where: str, report: _Report) -> None:
    """The stored kind is a copy of the body's: a changed copy would mislead whoever filters on it."""
    try:
        document = json.loads(item.body)
    except ValueError:
        report.fail("entry body", where, "the body is not JSON")
        return
    recorded = document.get("kind") if isinstance(document, dict) else None
    if recorded != item.kind:
        report.fail("entry kind", where, f"listed as {item.kind!r}, the body records {recorded!r}")


def _check_checkpoint(
    origin: str,
    stored: StoredCheckpoint,
    log_key: notes.Verifier | None,
    witnesses: Mapping[str, Mapping[bytes, notes.Verifier]],
    trees: _Trees,
    report: _Report,
) -> _Head | None:
    """Signature, origin, cosignatures, size and root of one checkpoint; its head when usable
    for the consistency and inclusion checks (parsed, and no larger than the entries)."""
    try:
        note = notes.parse_note(stored.note)
        signed = notes.parse_checkpoint(note.body)
    except notes.NoteError as exc:
        report.fail("checkpoint format", f"checkpoint {stored.size}", str(exc))
        return None
    where = f"checkpoint {signed.size}"
    if log_key is not None:
        try:
            notes.open_note(stored.note, [log_key])
        except notes.NoteError as exc:
            report.fail("checkpoint signature", where, str(exc))
    if signed.origin != origin:
        report.fail("origin", where, f"signed for {signed.origin!r}, the bundle is the log {origin!r}")
    _check_cosignatures(note, where, witnesses, report)
    if stored.size != signed.size:
        report.fail(
            "checkpoint size", where, f"listed as size {stored.size}, the signed note says {signed.size}"
        )
    claimed = _hash(stored.root_hash)
    if claimed is None:
        report.fail("checkpoint root", where, f"stored root {stored.root_hash[:80]!r} is not 32 bytes of hex")
    elif claimed != signed.root_hash:
        report.fail(
            "checkpoint root",
            where,
            f"the log stored {_short(claimed)}, the note signs {_short(signed.root_hash)}",
        )
    if signed.size > trees.size:
        report.fail("checkpoint size", where, f"signs {signed.size} entries, the bundle has {trees.size}")
        return None
    _check_root(signed, where, trees, report)
    return _Head(signed.size, signed.root_hash)


def _check_root(signed: notes.Checkpoint, where: str, trees: _Trees, report: _Report) -> None:
    computed = trees.root(signed.size)
    if computed == signed.root_hash:
        return
    other = trees.size_of(signed.root_hash)
    if other is not None:
        detail = f"the signed root is the root of the first {other} entries, not of {signed.size}"
        report.fail("checkpoint size", where, detail)
    else:
        detail = (
            f"the first {signed.size} entries hash to {_short(computed)}, "
            f"the note signs {_short(signed.root_hash)}"
        )
        report.fail("checkpoint root", where, detail)


def _check_cosignatures(
    note: notes.Note, where: str, witnesses: Mapping[str, Mapping[bytes, notes.Verifier]], report: _Report
) -> None:
    """Every signature line under a witness's name must verify with that witness's key. Lines
    under other names (the log's own, strangers') are not cosignatures of a known witness."""
    for signature in note.signatures:
        keys = witnesses.get(signature.name)
        if keys is None:
            continue
        at = f"{where}, witness {signature.name}"
        verifier = keys.get(signature.key_id)
        if verifier is None:
            known = ", ".join(k.hex() for k in keys)
            report.fail(
                "cosignature", at, f"made with key id {signature.key_id.hex()}, the witness's is {known}"
            )
            continue
        try:
            notes.verify_cosignature(note.body, signature.line(), verifier)
        except notes.NoteError as exc:
            report.fail("cosignature", at, str(exc))


def _check_consistency(heads: Sequence[_Head], trees: _Trees, report: _Report) -> None:
    """Each checkpoint must extend the one before: the log never signed two histories."""
    for old, new in pairwise(heads):
        store = trees.explaining(old, new)
        proof = merkle.consistency_proof(old.size, new.size, store)
        try:
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except merkle.ProofError as exc:
            report.fail("consistency", f"checkpoints {old.size} -> {new.size}", str(exc))


def _check_inclusion(
    latest: _Head | None, own: Sequence[bytes], trees: _Trees, report: _Report, progress: Progress | None
) -> None:
    """Every entry's own hash must be proven in the latest checkpoint, and none may lie beyond it."""
    covered = latest.size if latest is not None else 0
    if latest is not None and not trees.explains(latest):
        detail = (
            "neither the entries nor the log's stored leaf hashes lead to its signed root: no entry is proven"
        )
        report.fail("inclusion", f"checkpoint {latest.size}", detail)
    elif latest is not None:
        store = trees.explaining(latest)
        for index in range(latest.size):
            proof = merkle.inclusion_proof(index, latest.size, store)
            try:
                merkle.verify_inclusion(own[index], index, latest.size, proof, latest.root)
            except merkle.ProofError as exc:
                detail = f"its body is not the leaf the checkpoint signs ({exc})"
                report.fail("inclusion", f"entry {index} in checkpoint {latest.size}", detail)
            if progress is not None and (index % 1024 == 1023 or index == latest.size - 1):
                progress(index + 1, latest.size)
    if len(own) > covered:
        where = f"entries {covered}..{len(own) - 1}"
        report.fail("inclusion", where, "not covered by any signed checkpoint")


def _hash(text: str) -> bytes | None:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == merkle.HASH_SIZE else None


def _short(value: bytes) -> str:
    return value.hex()[:16] + "..."


def summarize(bundle: Bundle) -> Summary:
    """Counts for the report of a clean bundle (cosignature lines under a witness's name)."""
    witness_names: set[str] = set()
    for vkey in bundle.witness_keys:
        try:
            witness_names.add(notes.parse_verifier_key(vkey).name)
        except notes.NoteError:
            continue
    cosignatures = 0
    for stored in bundle.checkpoints:
        try:
            cosignatures += sum(s.name in witness_names for s in notes.parse_note(stored.note).signatures)
        except notes.NoteError:
            continue
    sizes = [c.size for c in bundle.checkpoints]
    return Summary(len(bundle.entries), len(sizes), max(sizes, default=0), cosignatures, len(witness_names))
