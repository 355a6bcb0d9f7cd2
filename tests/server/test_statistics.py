"""Planner statistics for young tables: a table that has more than doubled since PostgreSQL last analysed it is
analysed by ingest itself, once, and again only when it has doubled again."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import insert, text

from server.db import Database
from server.models import EventRecord, utcnow
from server.services.statistics import MIN_ROWS, PlannerStatistics


def _add_events(database: Database, count: int) -> None:
    now = utcnow()
    rows = [{"event_id": str(uuid.uuid4()), "violation_id": str(uuid.uuid4()), "type": "new", "node_id": "node-a",
             "camera_id": "cam-1", "zone_id": "kerb", "category": "illegal_parking", "code": "0301",
             "started_at": now, "observed_at": now, "received_at": now, "payload": "{}"} for _ in range(count)]
    with database.session() as session:
        session.execute(insert(EventRecord), rows)
        session.commit()


def _analysed_rows(database: Database) -> float | None:
    """What the planner believes the events table holds, or None if it was never analysed."""
    with database.session() as session:
        analysed, rows = session.execute(text(
            "SELECT s.last_analyze, c.reltuples FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.relname = 'events'")).one()
    return rows if analysed is not None else None


def _refresh_until_analysed(statistics: PlannerStatistics, timeout: float = 30) -> list[str]:
    """The table's change counters reach `pg_stat_user_tables` within seconds of the commit, not at once."""
    deadline = time.monotonic() + timeout
    while not (analysed := statistics.refresh()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return analysed


def test_a_young_table_is_analysed_when_it_has_doubled_and_not_again_until_it_doubles_again(postgres_server):
    database = Database(postgres_server.create_database())
    statistics = PlannerStatistics(database, every_seconds=0)
    _add_events(database, MIN_ROWS // 2)
    time.sleep(1.5)
    assert statistics.refresh() == [], "too small to matter yet"
    assert _analysed_rows(database) is None

    _add_events(database, MIN_ROWS)
    assert "events" in _refresh_until_analysed(statistics)
    assert _analysed_rows(database) == MIN_ROWS // 2 + MIN_ROWS, "the planner now knows how many rows there are"
    time.sleep(1.5)
    assert "events" not in statistics.refresh(), "unchanged since: not analysed again"

    _add_events(database, 2 * MIN_ROWS)
    assert _refresh_until_analysed(statistics) == ["events"]
    assert _analysed_rows(database) == MIN_ROWS // 2 + 3 * MIN_ROWS


def test_sqlite_needs_no_analysis(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'gridwatch.db'}")
    _add_events(database, 2 * MIN_ROWS)
    assert PlannerStatistics(database, every_seconds=0).refresh() == []


def test_a_failure_is_logged_not_raised_and_not_tried_again_at_once(caplog):
    from gridwatch.broker import free_port

    database = Database(f"postgresql+psycopg://gridwatch@127.0.0.1:{free_port()}/gone", migrate_schema=False)
    statistics = PlannerStatistics(database, every_seconds=0)
    assert statistics.refresh() == []  # ingest's batch is committed already: nothing may be thrown at it
    assert "planner statistics not refreshed" in caplog.text
    caplog.clear()
    assert statistics.refresh() == []
    assert caplog.text == "", "waits before the next try"
