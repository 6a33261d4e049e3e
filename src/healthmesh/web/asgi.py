"""ASGI entry point for uvicorn: `uvicorn healthmesh.web.asgi:app`.

A served worker warms its analytics cache before it accepts connections and keeps it warm (see
`supply.warmer`); the application built for tests (`create_app`) does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from healthmesh.supply.warmer import Warmer
from healthmesh.web.app import create_app

app = create_app()
_inner_lifespan = app.router.lifespan_context


@asynccontextmanager
async def _lifespan(served: FastAPI) -> AsyncIterator[None]:
    warmer = await asyncio.to_thread(Warmer(served.state.engine).start)
    try:
        async with _inner_lifespan(served):
            yield
    finally:
        await asyncio.to_thread(warmer.stop)


app.router.lifespan_context = _lifespan
