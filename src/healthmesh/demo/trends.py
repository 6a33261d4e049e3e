"""The demo's trend history: the weekly snapshots a running platform would have taken."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session

from healthmesh.supply import snapshots

WEEKS = 12


def seed_trends(db: Session, today: date) -> int:
    """A snapshot a week over the demo's 12 weeks, and today's; returns how many days."""
    days = [today - timedelta(days=7 * week) for week in range(WEEKS, -1, -1)]
    for day in days:
        snapshots.take_snapshot(db, day)
    return len(days)
