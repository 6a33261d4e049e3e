"""Publish changes (inside the writer's transaction) and read them back for a subscriber."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal, ScopeKind
from healthmesh.changes.models import ChangeEvent
from healthmesh.db import utcnow


@dataclass(frozen=True)
class Change:
    topic: str
    jurisdiction_id: int | None
    facility_id: int | None
    payload: dict[str, Any]


def publish(db: Session, changes: Iterable[Change]) -> None:
    rows = [
        {
            "topic": change.topic,
            "jurisdiction_id": change.jurisdiction_id,
            "facility_id": change.facility_id,
            "payload": change.payload,
            "created_at": utcnow(),
        }
        for change in changes
    ]
    if rows:
        db.execute(insert(ChangeEvent), rows)


def latest_id(db: Session) -> int:
    return db.scalar(select(func.max(ChangeEvent.id))) or 0


def visible_window(
    db: Session, principal: Principal, after_id: int, window: int = 500
) -> tuple[int, list[ChangeEvent]]:
    """The next `window` changes after `after_id`, filtered to what this principal may see, and
    the newest id scanned (the subscriber's new cursor, even when it may see none of them)."""
    upper = db.scalar(
        select(ChangeEvent.id)
        .where(ChangeEvent.id > after_id)
        .order_by(ChangeEvent.id)
        .offset(window - 1)
        .limit(1)
    ) or db.scalar(select(func.max(ChangeEvent.id)).where(ChangeEvent.id > after_id))
    if upper is None:
        return after_id, []
    stmt = (
        select(ChangeEvent).where(ChangeEvent.id > after_id, ChangeEvent.id <= upper).order_by(ChangeEvent.id)
    )
    if principal.scope is ScopeKind.JURISDICTION:
        stmt = stmt.where(ChangeEvent.jurisdiction_id == principal.jurisdiction_id)
    elif principal.scope is ScopeKind.FACILITY:
        stmt = stmt.where(ChangeEvent.facility_id == principal.facility_id)
    return upper, list(db.scalars(stmt))
