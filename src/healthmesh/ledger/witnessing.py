"""The pure decision of a C2SP tlog-witness ``add-checkpoint`` request (https://c2sp.org/tlog-witness).

The witness keeps, per log origin, the latest checkpoint it cosigned and the log keys it trusts.
Given that state, the request body and the time, ``add_checkpoint`` answers either a cosignature
(with the new state, which the caller MUST persist atomically with the check, or two racing
requests could roll the log back) or a refusal with the spec's HTTP status:

* 400 malformed request, or old size above the checkpoint size;
* 404 unknown origin;
* 403 no signature from a trusted log key verifies;
* 409 old size is not the size last cosigned (body: that size and a newline, content type
  ``text/x.tlog.size``), or the same size with another root hash (a split view);
* 422 the consistency proof does not verify.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from healthmesh.ledger.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency
from healthmesh.ledger.notes import (
    MAX_TREE_SIZE,
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
)

__all__ = [
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "Cosigned",
    "LogState",
    "Refused",
    "RequestError",
    "add_checkpoint",
    "handle_add_checkpoint",
    "parse_add_checkpoint",
]

MAX_PROOF_LINES = 63
"""Clients MUST NOT send more (a proof in a tree of at most 2**64 leaves is shorter)."""
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

_OLD_LINE = re.compile(r"old (0|[1-9][0-9]*)\Z", re.ASCII)


class RequestError(ValueError):
    """The add-checkpoint body is malformed (answered with 400)."""


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed add-checkpoint request; ``checkpoint`` is NOT yet verified."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str
    checkpoint: Checkpoint


@dataclass(frozen=True)
class LogState:
    """What the witness keeps for one origin: the trusted log keys and the latest cosigned
    checkpoint (size 0 with the empty-tree root when it never cosigned one)."""

    origin: str
    verifiers: tuple[Verifier, ...]
    size: int = 0
    root_hash: bytes = EMPTY_ROOT

    @classmethod
    def from_vkeys(
        cls, origin: str, vkeys: Sequence[str], size: int = 0, root_hash: bytes = EMPTY_ROOT
    ) -> LogState:
        """State from stored plain data: the trusted log verifier keys as strings."""
        return cls(origin, tuple(parse_verifier_key(vkey) for vkey in vkeys), size, root_hash)


@dataclass(frozen=True)
class Cosigned:
    """200: the cosignature line(s), and the state to persist before answering."""

    body: str
    state: LogState
    status: int = 200
    content_type: str = TEXT_CONTENT_TYPE


@dataclass(frozen=True)
class Refused:
    """A refusal. ``evidence`` marks a request validly signed by the log that still fails
    (split view, bad proof): worth keeping as possible proof of log misbehaviour."""

    status: int
    reason: str
    body: str
    content_type: str = TEXT_CONTENT_TYPE
    evidence: bool = False


def _refuse(status: int, reason: str, *, evidence: bool = False) -> Refused:
    return Refused(status, reason, reason + "\n", evidence=evidence)


def _decode_proof_line(line: str, position: int) -> bytes:
    try:
        raw = base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise RequestError(f"proof line {position} is not base64") from exc
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode("ascii") != line:
        raise RequestError(f"proof line {position} is not the canonical base64 of a {HASH_SIZE}-byte hash")
    return raw


def parse_add_checkpoint(body: str | bytes) -> AddCheckpoint:
    """Parse ``old <size>\\n``, up to 63 base64 proof lines, an empty line, then the signed
    checkpoint note. Raises RequestError (400) on any deviation."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError("request body is not UTF-8") from exc
    head, separator, note = body.partition("\n\n")
    if not separator:
        raise RequestError("request has no empty line before the checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.match(lines[0])
    if not match:
        raise RequestError(f"first line {lines[0][:40]!r} is not 'old <size>'")
    old_size = int(match.group(1))
    if old_size > MAX_TREE_SIZE:
        raise RequestError(f"old size {old_size} is out of range")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise RequestError(f"request has {len(lines) - 1} proof lines, more than {MAX_PROOF_LINES}")
    proof = tuple(_decode_proof_line(line, i) for i, line in enumerate(lines[1:]))
    try:
        checkpoint = parse_checkpoint(parse_note(note).body)
    except NoteError as exc:
        raise RequestError(f"checkpoint: {exc}") from exc
    return AddCheckpoint(old_size, proof, note, checkpoint)


def add_checkpoint(
    request: AddCheckpoint, log: LogState | None, witness: Signer | Sequence[Signer], timestamp: int
) -> Cosigned | Refused:
    """Decide one add-checkpoint request against the witness's state for its origin (None when
    the origin is unknown), in the order the spec lists its checks."""
    checkpoint = request.checkpoint
    if log is None or log.origin != checkpoint.origin:
        return _refuse(404, f"unknown log origin {checkpoint.origin!r}")
    try:
        body, _ = open_note(request.note, log.verifiers)
    except NoteError as exc:
        return _refuse(403, f"checkpoint not signed by a trusted key of the log: {exc}")
    if request.old_size > checkpoint.size:
        reason = f"old size {request.old_size} is larger than the checkpoint size {checkpoint.size}"
        return _refuse(400, reason)
    if request.old_size != log.size:
        reason = f"old size {request.old_size} is not the latest cosigned size {log.size}"
        return Refused(409, reason, f"{log.size}\n", SIZE_CONTENT_TYPE)
    refusal = _check_extends(request, log)
    if refusal is not None:
        return refusal
    signers = (witness,) if isinstance(witness, Signer) else tuple(witness)
    lines = "".join(s.cosign(body, timestamp).line() for s in signers)
    return Cosigned(lines, replace(log, size=checkpoint.size, root_hash=checkpoint.root_hash))


def _check_extends(request: AddCheckpoint, log: LogState) -> Refused | None:
    """The checkpoint must extend the latest cosigned one: same size means same root (else a
    split view, 409); larger needs a verifying consistency proof (else 422)."""
    checkpoint = request.checkpoint
    if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
        return _refuse(422, "a checkpoint of size 0 must carry the empty-tree root hash", evidence=True)
    if checkpoint.size == log.size:
        if request.proof:
            return _refuse(422, "consistency proof between equal sizes must be empty", evidence=True)
        if checkpoint.root_hash != log.root_hash:
            reason = f"checkpoint of size {checkpoint.size} has another root hash than the one cosigned"
            return _refuse(409, reason, evidence=True)
        return None
    try:
        verify_consistency(log.size, checkpoint.size, log.root_hash, checkpoint.root_hash, request.proof)
    except ProofError as exc:
        return _refuse(422, f"consistency proof does not verify: {exc}", evidence=True)
    return None


def handle_add_checkpoint(
    body: str | bytes, logs: Mapping[str, LogState], witness: Signer | Sequence[Signer], timestamp: int
) -> Cosigned | Refused:
    """Parse, look the origin up, decide: the whole request in one pure call."""
    try:
        request = parse_add_checkpoint(body)
    except RequestError as exc:
        return _refuse(400, f"malformed request: {exc}")
    return add_checkpoint(request, logs.get(request.checkpoint.origin), witness, timestamp)
