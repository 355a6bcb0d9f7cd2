"""The FastAPI application; the MQTT ingest service runs beside it for the app's lifetime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridwatch.config_files import ConfigError
from server.api.routes import (
    assessment,
    cases,
    city,
    console,
    dead_letters,
    evidence,
    feedback,
    health,
    nodes,
    open311,
    photos,
)
from server.api.routes import webhooks as webhook_routes
from server.api.schemas import API_ERRORS
from server.core.config import ServerSettings
from server.core.security import LoginThrottle, TokenEntry, TokenStore
from server.db import Database, database_away, first_line, unstorable_text
from server.services.case_outbox import CaseOutbox
from server.services.cases import CaseService
from server.services.dispatch import Dispatcher
from server.services.evidence import EvidenceStore
from server.services.ingest import Ingest
from server.services.ingest_service import IngestService
from server.services.live import LiveFeed
from server.services.metrics import Metrics
from server.services.webhooks import Webhooks

log = logging.getLogger(__name__)


def create_app(settings: ServerSettings) -> FastAPI:
    dispatcher = Dispatcher.from_file(settings.dispatch_config)  # the files first: a mistake in one is named
    def units_known(entries: list[TokenEntry]) -> None:
        for entry in entries:
            if entry.unit is not None and not dispatcher.has_unit(entry.unit):
                raise ConfigError(f"tokens_file {settings.tokens_file}: {entry.name}'s unit {entry.unit!r} is not a "
                                  f"unit of dispatch_config ({', '.join(sorted(dispatcher.config.units))})")

    tokens = TokenStore.from_file(settings.tokens_file, units_known)  # before the database is touched
    evidence_store = EvidenceStore(settings.evidence_dir)
    database = Database(settings.database_url)
    webhooks = Webhooks(database, settings.webhook_max_attempts, settings.webhook_retry_base_seconds,
                        settings.webhook_retry_max_seconds, settings.webhook_timeout_seconds)
    metrics = Metrics(database)
    live = LiveFeed()
    # case changes go to MQTT from an outbox stored with them, held under the worker's own client id
    outbox = CaseOutbox(database, settings.mqtt_client_id) if settings.ingest_enabled else None
    ingest = Ingest(database, CaseService(dispatcher), evidence_store, publish_case=lambda _message: None,
                    webhooks=webhooks, metrics=metrics, outbox=outbox)
    service = None
    if settings.ingest_enabled:  # the consoles see every worker's case changes, read back from the broker
        service = IngestService(ingest, settings.mqtt_client_id, settings.mqtt_host, settings.mqtt_port,
                                settings.mqtt_username, settings.resolved_mqtt_password(),
                                settings.ingest_batch_size, settings.ingest_batch_wait_ms / 1000,
                                settings.ingest_share_group, settings.mqtt_tls_ca_file, case_feed=live.publish_json,
                                case_outbox=outbox)
        live.on_listen = service.follow_cases
        metrics.watch_backlog(lambda: service.inbox.unfinished_tasks)
    else:  # no broker: this process's own changes
        ingest.listeners.append(live.publish)

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(settings.sweep_interval_seconds)
            try:
                await asyncio.to_thread(ingest.sweep)
            except Exception:  # the next sweep tries again; the error is in the log
                log.exception("deadline sweep failed")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if service is not None:
            service.start(wait_seconds=10)
        sweeper = asyncio.create_task(sweep_forever())
        webhooks.start()
        yield
        sweeper.cancel()
        webhooks.stop()
        if service is not None:
            service.stop()  # finishes the batch in hand and publishes its case changes
        metrics.close()

    app = FastAPI(
        title="GridWatch",
        version="0.1.0",
        summary="Cases from street cameras, dispatched to the people responsible.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.evidence = evidence_store
    app.state.ingest = ingest
    app.state.ingest_service = service
    app.state.tokens = tokens
    app.state.login_throttle = LoginThrottle(settings.login_failures_per_minute)
    app.state.webhooks = webhooks
    app.state.metrics = metrics
    app.state.live = live
    for module in (health, open311):
        app.include_router(module.router)
    for module in (cases, photos, dead_letters, evidence, nodes, feedback, assessment, webhook_routes, city, console):
        app.include_router(module.router, responses=API_ERRORS)
    app.mount("/console", StaticFiles(directory=console.CONSOLE_DIR, html=True), name="console")
    app.add_middleware(open311.XmlTwin)

    def georeport(request: Request) -> bool:
        """Under /open311/, every answer that is not the endpoint's own is in GeoReport's error list too."""
        return request.url.path.startswith("/open311/")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if georeport(request):  # an unknown path or format (.xml), a wrong method
            return open311.error(error.status_code, f"{error.detail}: {request.method} {request.url.path} "
                                                    "(GeoReport v2 here: services, requests, as .json)")
        return await http_exception_handler(request, error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if georeport(request):
            return open311.error(400, "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}"
                                                for e in error.errors()))
        try:
            return await request_validation_exception_handler(request, error)
        except (ValueError, UnicodeEncodeError):  # the input it echoes holds what JSON cannot: NaN, a lone surrogate
            def plain(text: object) -> str:
                return str(text).encode("utf-8", "backslashreplace").decode()
            return JSONResponse(status_code=422, content={"detail": [
                {"type": e["type"], "loc": [plain(part) for part in e["loc"]], "msg": plain(e["msg"])}
                for e in error.errors()]})

    @app.exception_handler(UnicodeEncodeError)
    @app.exception_handler(StatementError)
    @app.exception_handler(PoolTimeout)
    async def _refused_by_the_database(request: Request, error: Exception) -> JSONResponse:
        if problem := unstorable_text(error):  # the request's fault, found only when the database refused it
            return JSONResponse(status_code=422, content={"detail": problem})
        if database_away(error):  # busy, restarting, full: the caller tries again, nothing was changed
            log.warning("database away on %s %s: %s", request.method, request.url.path, first_line(error))
            answer = "the database is busy or away; nothing was changed, try again"
            response = (open311.error(503, answer) if georeport(request)
                        else JSONResponse(status_code=503, content={"detail": answer}))
            response.headers["Retry-After"] = "5"
            return response
        return await _unexpected(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Never a bare 500 page: log the bug, answer with a message (still a 500: the fault is ours).
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if georeport(request):
            return open311.error(500, f"internal error: {type(error).__name__}")
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(error).__name__}"})

    return app
