"""The operator console (static files under /console) and what it needs besides the REST API: who is calling, and
a live stream of case changes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse

from server.api.deps import Caller
from server.api.schemas import CallerOut
from server.core.security import TokenStore
from server.services.live import LiveFeed

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
    caller: Caller,
    max_seconds: Annotated[float, Query(ge=0, le=3600, description="End the stream after this long; the browser "
                                                                    "reconnects by itself.")] = 300,
    after: Annotated[str | None, Query(max_length=64, description=(
        "The last `id` seen: the changes since are sent first, or `event: resync` when they cannot all be (another "
        "worker, or too long ago). The `Last-Event-ID` header does the same."))] = None,
) -> StreamingResponse:
    feed: LiveFeed = request.app.state.live
    since = after or request.headers.get("last-event-id")
    tokens: TokenStore = request.app.state.tokens

    def revoked() -> bool:  # out of the tokens file, or another role or unit now: what it may see changed
        return not tokens.holds(caller)

    return StreamingResponse(feed.frames(request.is_disconnected, max_seconds, after=since, revoked=revoked),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
