"""The log's side of witnessing: send each registered witness the latest checkpoint with a
consistency proof from the size it last cosigned, and keep the cosignatures it returns."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from healthmesh.config import Settings
from healthmesh.ledger import notes, service
from healthmesh.ledger.models import LogCheckpoint, LogWitness
from healthmesh.ledger.witness_app import ADD_CHECKPOINT

#: (url, body) -> (status, content type, text); httpx by default, a test client in tests.
Post = Callable[[str, str], tuple[int, str, str]]
SIZE_CONTENT_TYPE = "text/x.tlog.size"


class Unreachable(OSError):
    """The witness did not answer (connection refused, timeout, TLS failure, ...)."""


def _http_post(url: str, body: str) -> tuple[int, str, str]:
    import httpx

    try:
        response = httpx.post(url, content=body.encode(), timeout=10.0)
    except httpx.HTTPError as exc:  # one witness down must not cost the others' cosignatures
        raise Unreachable(str(exc) or exc.__class__.__name__) from exc
    return response.status_code, response.headers.get("content-type", ""), response.text


def _ask(db: Session, witness: LogWitness, checkpoint: LogCheckpoint, post: Post) -> service.WitnessResult:
    """One witness, with one retry when it tells us the size it really holds (409 + size)."""
    for _ in range(2):
        old = min(witness.last_size, checkpoint.size)
        url = witness.url.rstrip("/") + ADD_CHECKPOINT
        try:
            status, content_type, text = post(url, service.add_checkpoint_request(db, checkpoint, old))
        except OSError as exc:
            return service.WitnessResult(witness.name, False, f"unreachable: {exc}")
        if status == 200:
            try:
                service.record_cosignature(db, witness, checkpoint, text)
            except notes.NoteError as exc:
                return service.WitnessResult(witness.name, False, f"bad cosignature: {exc}")
            return service.WitnessResult(witness.name, True, f"cosigned size {checkpoint.size}")
        if status == 409 and content_type.startswith(SIZE_CONTENT_TYPE) and text.strip().isdigit():
            witness.last_size = int(text.strip())
            continue
        return service.WitnessResult(witness.name, False, f"refused with {status}: {text.strip()}")
    return service.WitnessResult(witness.name, False, "kept answering with another size")


def collect(db: Session, settings: Settings, post: Post | None = None) -> list[service.WitnessResult]:
    """Publish the current checkpoint and gather a cosignature from every reachable witness."""
    checkpoint = service.publish_checkpoint(db, service.load_signer(settings))
    send = post or _http_post
    return [_ask(db, witness, checkpoint, send) for witness in service.witnesses(db) if witness.url]
