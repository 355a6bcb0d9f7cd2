from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from server.api.deps import SessionDep
from server.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness of the API, its database and broker link")
def healthz(request: Request, response: Response, session: SessionDep) -> Health:
    try:
        session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as error:  # reported, not raised: health checks answer
        database = f"error: {type(error).__name__}"
    service = request.app.state.ingest_service
    mqtt = "disabled" if service is None else ("connected" if service.connected.is_set() else "disconnected")
    healthy = database == "ok" and mqtt != "disconnected"
    if not healthy:
        response.status_code = 503
    counts = dict(service.ingest.counts) if service is not None else {}
    return Health(status="ok" if healthy else "degraded", database=database, mqtt=mqtt, ingest=counts)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics: ingest, lag, dead letters, cases",
            responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
