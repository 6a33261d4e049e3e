"""The transparency log in the console: the latest checkpoint and the latest one a witness
cosigned, the entries (newest first, by kind), and for each entry an inclusion check that the
browser computes itself (`ledger.js`: SHA-256 by WebCrypto, RFC 9162 2.1.3.2) against the
checkpoint's root hash.

The page only reads: the checkpoint covering the newest entries is signed when the browser asks
the public API for it (`GET /api/v1/ledger/checkpoint`), as any verifier would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healthmesh.ledger import service
from healthmesh.ledger.models import LogCheckpoint, LogCosignature, LogEntry
from healthmesh.web.console.base import ViewerDep, render
from healthmesh.web.deps import AppSettings, DbSession

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25

#: The kinds of entry the platform writes (docs/transparency.md), for the filter: listing the
#: kinds present would scan the whole log.
KINDS = (
    "allocation.plan_approved",
    "allocation.policy_changed",
    "shipment.dispatched",
    "shipment.received",
    "registry.authorisation_changed",
    "registry.recognition_changed",
    "account.role_changed",
)

#: Body fields worth a glance in the entry list, in this order (the body itself is one click away).
SUMMARY_FIELDS = (
    "plan",
    "policy",
    "version",
    "day",
    "units",
    "shipment",
    "from",
    "to",
    "mode",
    "product",
    "member",
    "status",
    "recognised_authority",
    "account",
)


@dataclass(frozen=True)
class EntryRow:
    index: int
    kind: str
    body: str
    leaf_hash: str
    recorded_at: datetime
    summary: str


@dataclass(frozen=True)
class CheckpointView:
    size: int
    root_b64: str
    note: str
    created_at: datetime
    witnesses: list[tuple[str, datetime]]


def summarise(body: str) -> str:
    """A line saying what the entry is about, from its most telling fields."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "(not JSON)"
    if not isinstance(data, dict):
        return ""
    parts = []
    for key in SUMMARY_FIELDS:
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            parts.append(
                f"{key} {value:,}" if isinstance(value, int) and key == "units" else f"{key} {value}"
            )
    if isinstance(data.get("lines"), list):
        parts.append(f"{len(data['lines']):,} lines")
    if isinstance(data.get("changes"), dict):
        parts.append("changed " + ", ".join(sorted(data["changes"])))
    return " · ".join(parts)


def _view(db: Session, checkpoint: LogCheckpoint | None) -> CheckpointView | None:
    if checkpoint is None:
        return None
    rows = db.execute(
        select(LogCosignature.witness, LogCosignature.received_at)
        .where(LogCosignature.checkpoint_size == checkpoint.size)
        .order_by(LogCosignature.witness)
    )
    return CheckpointView(
        size=checkpoint.size,
        root_b64=service.b64(bytes(checkpoint.root_hash)),
        note=service.cosigned_note(db, checkpoint),
        created_at=checkpoint.created_at,
        witnesses=[(name, at) for name, at in rows],
    )


def _entries(db: Session, kind: str | None, page: int, log_size: int) -> tuple[list[EntryRow], int]:
    """One page of entries, newest first, and how many there are (of that kind)."""
    stmt = select(LogEntry).order_by(LogEntry.index.desc()).limit(PAGE_SIZE)
    if kind:
        stmt = stmt.where(LogEntry.kind == kind).offset((page - 1) * PAGE_SIZE)
        total = db.scalar(select(func.count()).select_from(LogEntry).where(LogEntry.kind == kind)) or 0
    else:
        end = log_size - (page - 1) * PAGE_SIZE  # indices are consecutive: page by range, not offset
        stmt = stmt.where(LogEntry.index < end, LogEntry.index >= end - PAGE_SIZE)
        total = log_size
    found = list(db.scalars(stmt))
    hashes = service.DbNodeStore(db).nodes([(0, entry.index) for entry in found])  # the tree's leaves
    rows = [
        EntryRow(
            index=entry.index,
            kind=entry.kind,
            body=entry.body,
            leaf_hash=hashes[(0, entry.index)].hex() if (0, entry.index) in hashes else "",
            recorded_at=entry.recorded_at,
            summary=summarise(entry.body),
        )
        for entry in found
    ]
    return rows, total


@router.get("/console/ledger", response_class=HTMLResponse)
def ledger_page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    viewer: ViewerDep,
    kind: str | None = Query(default=None, max_length=48),
    page: int = Query(default=1, ge=1, le=1_000_000),
) -> HTMLResponse:
    log_size = service.size(db)
    entries, total = _entries(db, kind or None, page, log_size)
    pages = max(1, -(-total // PAGE_SIZE))
    return render(
        request,
        viewer,
        "console/ledger.html",
        origin=service.load_signer(settings).name,
        log_size=log_size,
        latest=_view(db, service.latest_checkpoint(db)),
        cosigned=_view(db, service.latest_cosigned(db)),
        registered=service.witnesses(db),
        entries=entries,
        total=total,
        kinds=KINDS if not kind or kind in KINDS else (*KINDS, kind),
        chosen_kind=kind or "",
        page=page,
        pages=pages,
        base_url=str(request.base_url).rstrip("/"),
    )
