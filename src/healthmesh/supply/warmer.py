"""Keep a worker's analytics cache warm, so no request pays for loading it.

At continent scale a worker's first region-wide board loads every member's stock statistics (about
5 s), and each member is reloaded every 10-15 minutes (`summary.TTL_SECONDS`) by whichever request
finds it due. A served worker instead loads today's window before it accepts connections (the ASGI
lifespan start), then a daemon thread reloads members shortly before they fall due, one at a time,
and applies committed changes between requests. A new day is a new window: the thread loads it at
midnight. It also sums each member page's trend weeks from the snapshots, at start and after each
snapshot taken. Requests then find the cache ready; the cache stays exact either way (see
`summary`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import date

from sqlalchemy import Engine, select

from healthmesh.db import make_sessionmaker
from healthmesh.registry.models import Product
from healthmesh.supply import snapshots, summary
from healthmesh.supply.analytics import Window

log = logging.getLogger(__name__)

#: Seconds between two ticks of the thread; a tick with nothing due is one small query.
TICK_SECONDS = 5.0
#: Members due within this many seconds are reloaded by the thread, ahead of any request.
LEAD_SECONDS = 120.0


def warm_now(engine: Engine, today: date | None = None) -> int:
    """Load today's default window (what the console and the API's defaults ask for); returns
    the members loaded (0 when the cache is off or already warm)."""
    cache = summary.cache_for_engine(engine)
    if cache is None:
        return 0
    return cache.warm(Window(today or date.today()), lead_seconds=LEAD_SECONDS)


def warm_trends(engine: Engine, today: date | None = None) -> int:
    """Sum the past weeks of every member's trend (the snapshots of its most issued products over
    its national facilities), as its page will ask for them; returns the members done. A first
    view of a member's page then does not pay for it (~60 ms, Nigeria's ~250 ms)."""
    cache = summary.cache_for_engine(engine)
    if cache is None:
        return 0
    day = today or date.today()
    with make_sessionmaker(engine)() as db:
        stats = cache.stats(db, Window(day), members=None)
        if stats is None:
            return 0
        codes = {p: code for p, code in db.execute(select(Product.id, Product.code))}
        national: dict[int, list[int]] = defaultdict(list)
        for f, (member, kind) in stats.member_of.items():
            if kind == summary.NATIONAL:
                national[member].append(f)
        days = snapshots.trend_days(day)[:-1]
        done = 0
        for member, table in stats.totals.items():
            issued = table[summary.NATIONAL, :, summary.ISSUED].tolist()
            used = snapshots.trend_products({p: units for p, units in enumerate(issued) if units}, codes)
            if used and national[member]:
                snapshots.on_hand_by_day(db, sorted(national[member]), used, days)
                done += 1
        return done


class Warmer:
    """A daemon thread that ticks `warm_now` until stopped, and sums the members' trends again
    after a snapshot is taken (or a new day begins)."""

    def __init__(self, engine: Engine, tick_seconds: float = TICK_SECONDS) -> None:
        self.engine = engine
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analytics-warmer", daemon=True)
        self._trends_for: tuple[object, ...] | None = None

    def start(self) -> Warmer:
        started = time.monotonic()
        loaded = warm_now(self.engine)
        self._warm_trends_if_due()
        log.info("analytics cache warm: %d members in %.1f s", loaded, time.monotonic() - started)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _warm_trends_if_due(self) -> None:
        cache = summary.cache_for_engine(self.engine)
        if cache is None:
            return
        due = (date.today(), cache.versions.get("snapshot", 0), cache.registry)
        if due != self._trends_for:
            warm_trends(self.engine)
            self._trends_for = due

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                warm_now(self.engine)
                self._warm_trends_if_due()
            except Exception:  # a failed tick (database restarting) must not end the thread
                log.exception("analytics warm-up tick failed; retrying in %.0f s", self.tick_seconds)
