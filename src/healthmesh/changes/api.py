"""Server-Sent Events: stock and need changes (and, for region-wide roles, each daily snapshot
taken), as they are committed, filtered to the subscriber's scope.

The stream reads the change outbox, so it works with any number of API workers and on both
databases. A client resumes after a drop with the standard `Last-Event-ID` header.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Permission, Principal
from healthmesh.changes import service
from healthmesh.registry.schemas import Position
from healthmesh.web.deps import require

router = APIRouter(prefix="/api/v1", tags=["changes"])

KEEP_ALIVE_SECONDS = 15.0
Subscriber = Annotated[Principal, Depends(require(Permission.STOCK_READ))]


def get_sessionmaker(request: Request) -> Callable[[], AbstractContextManager[Session]]:
    """Sessions for the stream's polls: each poll is its own short read, not the request's transaction."""
    factory: Callable[[], AbstractContextManager[Session]] = request.app.state.stream_sessions
    return factory


def _frame(event_id: int, topic: str, payload: dict[str, object]) -> str:
    return f"id: {event_id}\nevent: {topic}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


@router.get("/stream", response_class=StreamingResponse)
async def stream(
    request: Request,
    principal: Subscriber,
    last_event_id: Annotated[Position | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[Position | None, Query(description="Start after this change id (default: now)")] = None,
    max_seconds: Annotated[
        float, Query(gt=0, le=3600, description="Close after this long; clients reconnect")
    ] = 300,
    poll_seconds: Annotated[float, Query(ge=0.05, le=10)] = 1.0,
) -> StreamingResponse:
    """Stock and need changes you may see, as `text/event-stream`."""
    factory = get_sessionmaker(request)

    def read(after_id: int) -> tuple[int, list[str]]:
        with factory() as db:
            if after_id < 0:
                return service.latest_id(db), []
            cursor, rows = service.visible_window(db, principal, after_id)
            return cursor, [_frame(row.id, row.topic, row.payload) for row in rows]

    async def events() -> AsyncIterator[str]:
        cursor = last_event_id if last_event_id is not None else after if after is not None else -1
        if cursor < 0:
            cursor, _ = await run_in_threadpool(read, -1)
        yield f"retry: 2000\nid: {cursor}\n\n"
        deadline = time.monotonic() + max_seconds
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return
            cursor, frames = await run_in_threadpool(read, cursor)
            for frame in frames:
                yield frame
            if frames:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEP_ALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(poll_seconds)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
