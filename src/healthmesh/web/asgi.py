"""ASGI entry point for uvicorn: `uvicorn healthmesh.web.asgi:app`.

A served worker warms its analytics cache before it accepts connections and keeps it warm (see
`supply.warmer`), then freezes what it holds out of the garbage collector's full collections;
the application built for tests (`create_app`) does neither.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from healthmesh.supply.warmer import Warmer
from healthmesh.web.app import create_app

app = create_app()
_inner_lifespan = app.router.lifespan_context


def _freeze_what_lives_on() -> None:
    """Move every object alive after the warm-up (the modules, the app, the warmed cache: ~215,000
    objects) out of the garbage collector's sight. A full collection walks every tracked object:
    ~120 ms here, paid by whichever request triggers it, a few times a minute under load. Frozen,
    it walks only what requests made since (CPython's `gc.freeze`, meant for this)."""
    gc.collect()
    gc.freeze()


@asynccontextmanager
async def _lifespan(served: FastAPI) -> AsyncIterator[None]:
    warmer = await asyncio.to_thread(Warmer(served.state.engine).start)
    _freeze_what_lives_on()
    try:
        async with _inner_lifespan(served):
            yield
    finally:
        await asyncio.to_thread(warmer.stop)


app.router.lifespan_context = _lifespan
