"""The operator console (static files under /console) and what it needs besides the REST API: who is calling, and
a live stream of case changes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse

from server.api.deps import Caller
from server.api.schemas import CallerOut
from server.services.live import CLOSED, RESYNC, LiveFeed

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
router = APIRouter(tags=["console"])


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get("/api/v1/me", response_model=CallerOut, summary="Who the token belongs to: name, role and unit")
def me(caller: Caller) -> CallerOut:
    return CallerOut(name=caller.name, role=caller.role.value, unit=caller.unit)


@router.get("/api/v1/live", summary="Server-Sent Events: every case change as it happens (`event: case`)",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def live(
    request: Request,
    _caller: Caller,
    max_seconds: Annotated[float, Query(ge=0, le=3600, description="End the stream after this long; the browser "
                                                                    "reconnects by itself.")] = 300,
) -> StreamingResponse:
    feed: LiveFeed = request.app.state.live

    async def stream():  # noqa: ANN202 - an async generator of SSE frames
        deadline = time.monotonic() + max_seconds
        async with feed.subscription() as queue:
            yield "retry: 2000\n\n"
            while time.monotonic() < deadline and not await request.is_disconnected():
                wait = min(15.0, max(0.01, deadline - time.monotonic()))
                try:
                    data = await asyncio.wait_for(queue.get(), timeout=wait)
                except TimeoutError:
                    yield ": still here\n\n"
                    continue
                if data == CLOSED:
                    break
                yield "event: resync\ndata: {}\n\n" if data == RESYNC else f"event: case\ndata: {data}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
