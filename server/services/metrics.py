"""Prometheus metrics of the server (`GET /metrics`): ingest rate and lag, dead letters, cases by status, overdue
cases, webhook deliveries and case messages waiting for the broker. Counters count in-process; the case figures are
read from the database at scrape time, so every worker reports the same truth about cases."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, create_engine, func, literal, null, select, union_all

from gridwatch.contract import CaseStatus
from server.db import POSTGRES_TIMEOUTS, Database
from server.models import CaseOutboxMessage, CaseRecord, DeadLetter, WebhookDelivery, utcnow
from server.services.workflow import IN_UNIT

log = logging.getLogger(__name__)

FIGURES_TIMEOUT_SECONDS = 4.0
"""The most the database's figures may take on PostgreSQL (with a second's wait for the connection): well inside
Prometheus's default scrape timeout (10 s)."""


class DatabaseCollector(Collector):
    def __init__(self, database: Database) -> None:
        self.database = database
        self._engine: Engine | None = None

    def engine(self) -> Engine:
        """On PostgreSQL an engine of the scrape's own: one connection, given up on after a second's wait and
        `FIGURES_TIMEOUT_SECONDS` of query, so that neither requests holding every pooled connection (held up
        behind a migration's lock) nor the lock itself can hang the scrape past Prometheus's timeout. SQLite's
        readers wait for no writer: the database's own engine."""
        if self._engine is None:
            engine = self.database.engine
            if engine.dialect.name == "postgresql":
                engine = create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=1, pool_pre_ping=True,
                                       hide_parameters=True, connect_args=POSTGRES_TIMEOUTS | {
                                           "connect_timeout": 2, "tcp_user_timeout": 4000,
                                           "options": f"-c statement_timeout={int(FIGURES_TIMEOUT_SECONDS * 1000)}"})
            self._engine = engine
        return self._engine

    def close(self) -> None:
        if self._engine is not None and self._engine is not self.database.engine:
            self._engine.dispose()
        self._engine = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The database's figures and `gridwatch_database_up`; with the database away, that 0 alone, so that a scrape
        still brings the in-process counters (a failed collector made the whole page a 500, in the very outage)."""
        try:
            figures = list(self._figures())
        except Exception as error:  # noqa: BLE001 - whatever the driver raises, the rest of the page stands
            log.warning("metrics: the database figures could not be read (%s: %s)", type(error).__name__, error)
            yield GaugeMetricFamily("gridwatch_database_up", "Whether the database answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("gridwatch_database_up", "Whether the database answered this scrape.", value=1)
        yield from figures

    def _figures(self) -> Iterator[GaugeMetricFamily]:
        late = [s.value for s in IN_UNIT | {CaseStatus.RETURNED}]
        figures = union_all(  # one statement: one time limit for all of it
            select(literal("cases"), CaseRecord.status, func.count()).group_by(CaseRecord.status),
            select(literal("overdue"), null(), func.count()).select_from(CaseRecord).where(
                CaseRecord.status.in_(late), CaseRecord.deadline_at < utcnow()),
            select(literal("dead"), null(), func.count()).select_from(DeadLetter),
            select(literal("deliveries"), WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status),
            select(literal("unsent"), null(), func.count()).select_from(CaseOutboxMessage))
        with self.engine().connect() as connection:
            rows = connection.execute(figures).all()
        by_status = {status: count for kind, status, count in rows if kind == "cases"}
        deliveries = {status: count for kind, status, count in rows if kind == "deliveries"}
        overdue = sum(count for kind, _status, count in rows if kind == "overdue")
        dead = sum(count for kind, _status, count in rows if kind == "dead")
        unsent = sum(count for kind, _status, count in rows if kind == "unsent")
        cases = GaugeMetricFamily("gridwatch_cases", "Cases by workflow status.", labels=["status"])
        for status in CaseStatus:
            cases.add_metric([status.value], by_status.get(status.value, 0))
        yield cases
        yield GaugeMetricFamily("gridwatch_cases_overdue", "Cases with their unit past the deadline.", value=overdue)
        yield GaugeMetricFamily("gridwatch_dead_letters", "Refused messages kept in the dead-letter store.",
                                value=dead)
        webhooks = GaugeMetricFamily("gridwatch_webhook_deliveries", "Webhook deliveries by state.",
                                     labels=["status"])
        for status in ("pending", "delivered", "failed"):
            webhooks.add_metric([status], deliveries.get(status, 0))
        yield webhooks
        yield GaugeMetricFamily("gridwatch_case_messages_unsent", "Case changes' MQTT messages the broker has not "
                                "acknowledged yet (the outbox; a few in flight, more while the broker is away).",
                                value=unsent)


class Metrics:
    def __init__(self, database: Database) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("gridwatch_ingest_messages", "MQTT messages by kind and what became of them.",
                                ["kind", "outcome"], registry=self.registry)
        self.lag = Histogram("gridwatch_ingest_lag_seconds", "From an event's observation at the node to its "
                             "case being stored.", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                             registry=self.registry)
        self.batch_seconds = Histogram("gridwatch_ingest_batch_seconds", "Time to write one batch of messages, "
                                       "every kind of it committed.", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                               0.5, 1, 2.5, 5, 10),
                                       registry=self.registry)
        self.batch_messages = Histogram("gridwatch_ingest_batch_messages", "Messages in one written batch.",
                                        buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500), registry=self.registry)
        self.retries = Counter("gridwatch_ingest_batch_retries", "Batches of events written again because another "
                               "worker wrote the same rows first (or the two waited on each other's locks).",
                               registry=self.registry)
        self.last_commit = Gauge("gridwatch_ingest_last_commit_timestamp_seconds", "When this worker last committed "
                                 "a batch (Unix time): with a backlog, time() minus it is how long ingest has been "
                                 "stuck, which the lag of stored events cannot show.", registry=self.registry)
        self.backlog = Gauge("gridwatch_ingest_backlog_messages", "Messages this worker has received from the broker "
                             "and not yet written (the broker's own queue for it comes on top).",
                             registry=self.registry)
        self.figures = DatabaseCollector(database)
        self.registry.register(self.figures)

    def close(self) -> None:
        """Let go of the scrape's own database connection (`DatabaseCollector.engine`)."""
        self.figures.close()

    def watch_backlog(self, depth: Callable[[], int]) -> None:
        """Reads the ingest service's backlog at each scrape."""
        self.backlog.set_function(depth)

    def messages_seen(self, counts: Mapping[tuple[str, str], int]) -> None:
        """A batch's messages, counted by (kind, outcome)."""
        for (kind, outcome), count in counts.items():
            self.messages.labels(kind, outcome).inc(count)

    def batch(self, messages: int, seconds: float) -> None:
        """A batch written: with the ingest rate, where a worker's time goes (few large slow batches: the database;
        many small ones: the messages come slower than it writes)."""
        self.batch_messages.observe(messages)
        self.batch_seconds.observe(seconds)
        self.last_commit.set(time.time())
