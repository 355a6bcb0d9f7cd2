from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from server.api.deps import SessionDep
from server.api.schemas import Health

router = APIRouter(tags=["health"])
STALLED_SECONDS = 60.0
"""How long messages may wait with no batch written before the health check says ingest is stalled: a database that
answers reads but takes no writes (another process holding SQLite's lock, a full disk) looked healthy."""


@router.get("/healthz", response_model=Health, summary="Liveness of the API, its database and broker link")
def healthz(request: Request, response: Response, session: SessionDep) -> Health:
    try:
        session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as error:  # reported, not raised: health checks answer
        database = f"error: {type(error).__name__}"
    service = request.app.state.ingest_service
    mqtt = "disabled" if service is None else ("connected" if service.connected.is_set() else "disconnected")
    writing = "ok"
    if service is not None and (waiting := service.inbox.unfinished_tasks) and \
            (still := time.monotonic() - service.ingest.written_at) >= STALLED_SECONDS:
        writing = f"stalled: {waiting} messages wait, no batch written for {still:.0f} s"
    healthy = database == "ok" and mqtt != "disconnected" and writing == "ok"
    if not healthy:
        response.status_code = 503
    counts = dict(service.ingest.counts) if service is not None else {}
    return Health(status="ok" if healthy else "degraded", database=database, mqtt=mqtt, writing=writing,
                  ingest=counts)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics: ingest, lag, dead letters, cases",
            responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
