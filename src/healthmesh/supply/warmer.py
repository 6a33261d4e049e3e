"""Keep a worker's analytics cache warm, so no request pays for loading it.

At continent scale a worker's first region-wide board loads every member's stock statistics (about
5 s), and each member is reloaded every 10-15 minutes (`summary.TTL_SECONDS`) by whichever request
finds it due. A served worker instead loads today's window before it accepts connections (the ASGI
lifespan start), then a daemon thread reloads members shortly before they fall due, one at a time,
and applies committed changes between requests. A new day is a new window: the thread loads it at
midnight. Requests then find the cache ready; the cache stays exact either way (see `summary`).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import date

from sqlalchemy import Engine

from healthmesh.supply import summary
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


class Warmer:
    """A daemon thread that ticks `warm_now` until stopped."""

    def __init__(self, engine: Engine, tick_seconds: float = TICK_SECONDS) -> None:
        self.engine = engine
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analytics-warmer", daemon=True)

    def start(self) -> Warmer:
        started = time.monotonic()
        loaded = warm_now(self.engine)
        log.info("analytics cache warm: %d members in %.1f s", loaded, time.monotonic() - started)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                warm_now(self.engine)
            except Exception:  # a failed tick (database restarting) must not end the thread
                log.exception("analytics warm-up tick failed; retrying in %.0f s", self.tick_seconds)
