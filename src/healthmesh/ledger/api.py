"""The transparency log's public API: checkpoints, entries, inclusion and consistency proofs, keys.

Everything here is public and needs no secret to verify: a member (or anyone) fetches a
checkpoint, checks its signatures against the published keys, and checks any entry's inclusion
and any two checkpoints' consistency with the proofs served here.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Le
from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from healthmesh.config import Settings
from healthmesh.db import begin_write
from healthmesh.errors import NotFound
from healthmesh.ledger import service
from healthmesh.web.deps import DbSession, Public, get_settings

router = APIRouter(prefix="/api/v1/ledger", tags=["transparency log"], dependencies=[Public])
NOTE = "text/plain; charset=utf-8"
SettingsDep = Annotated[Settings, Depends(get_settings)]
#: A size of, or an index into, the log: a trillion entries is far beyond any real log, and keeps
#: every position derived from it (start + 1000, tree nodes) inside the database's BIGINT.
LogSize = Annotated[int, Ge(0), Le(2**40)]


class EntryOut(BaseModel):
    index: int
    kind: str
    body: str
    leaf_hash: str


class InclusionOut(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    proof: list[str]  # base64 hashes, RFC 9162 order


class ConsistencyOut(BaseModel):
    old_size: int
    new_size: int
    proof: list[str]


@router.get("/checkpoint", response_class=PlainTextResponse)
def checkpoint(
    db: DbSession,
    settings: SettingsDep,
    cosigned: Annotated[bool, Query(description="The newest checkpoint a witness cosigned")] = False,
) -> PlainTextResponse:
    """The latest checkpoint as a C2SP signed note (tlog-checkpoint), with its cosignatures.
    A tree that grew since the last checkpoint is signed now (after a consistency check)."""
    if cosigned:
        found = service.latest_cosigned(db)
        if found is None:
            raise NotFound("no checkpoint has been cosigned yet")
    else:
        begin_write(db)  # it may sign a new head: take the write lock before the first read
        found = service.publish_checkpoint(db, service.load_signer(settings))
    return PlainTextResponse(service.cosigned_note(db, found), media_type=NOTE)


@router.get("/checkpoints/{size}", response_class=PlainTextResponse)
def checkpoint_of_size(size: LogSize, db: DbSession) -> PlainTextResponse:
    return PlainTextResponse(service.cosigned_note(db, service.checkpoint_at(db, size)), media_type=NOTE)


@router.get("/entries", response_model=list[EntryOut])
def entries(
    db: DbSession,
    start: Annotated[LogSize, Query()] = 0,
    end: Annotated[LogSize | None, Query(description="Exclusive; at most 1,000 entries per call")] = None,
) -> list[EntryOut]:
    stop = end if end is not None else start + 1000
    return [EntryOut(**row) for row in service.entries_with_hashes(db, start, stop)]


@router.get("/proofs/inclusion", response_model=InclusionOut)
def inclusion(
    db: DbSession, index: Annotated[LogSize, Query()], size: Annotated[LogSize, Query(ge=1)]
) -> InclusionOut:
    proof = service.inclusion_proof(db, index, size)
    entry = service.entries_with_hashes(db, index, index + 1)
    return InclusionOut(
        index=index, tree_size=size, leaf_hash=entry[0]["leaf_hash"], proof=service.proof_lines(proof)
    )


@router.get("/proofs/consistency", response_model=ConsistencyOut)
def consistency(
    db: DbSession, old: Annotated[LogSize, Query()], new: Annotated[LogSize, Query()]
) -> ConsistencyOut:
    return ConsistencyOut(
        old_size=old, new_size=new, proof=service.proof_lines(service.consistency_proof(db, old, new))
    )


@router.get("/keys")
def keys(db: DbSession, settings: SettingsDep) -> dict[str, Any]:
    """The log's verifier key and the registered witnesses' (C2SP verifier-key format)."""
    return service.public_keys(settings, db)
