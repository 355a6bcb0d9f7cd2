"""The migrations build exactly the schema the models describe, and a database made before them is refused."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from gridwatch.config_files import ConfigError
from server.db import Database, alembic_config, make_engine, migrate
from server.models import Base


def test_migrations_build_the_models_schema(database_url):
    database = Database(database_url)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_server_default": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
    assert "alembic_version" in inspect(database.engine).get_table_names()


def test_migrations_run_down_and_up_again(database_url):
    """Down to the first revision with a case, its events and steps kept (found by review: on SQLite two downgrades
    rebuilt the cases table, which its events' foreign keys refused), then to nothing, and up again."""
    from sqlalchemy import func, select

    from server.models import CaseRecord
    from server.services.cases import CaseService
    from server.services.dispatch import Dispatcher
    from server.services.evidence import EvidenceStore
    from server.services.ingest import Ingest
    from tests.conftest import DISPATCH
    from tests.factories import event_payload

    url = database_url
    engine = make_engine(url)
    database = Database(url)
    ingest = Ingest(database, CaseService(Dispatcher.from_file(DISPATCH)), EvidenceStore(Path(tempfile.mkdtemp())),
                    publish_case=lambda _message: None)
    assert ingest.handle("gw/v1/nodes/node-a/events/litter", json.dumps(event_payload(
        category="litter", code="0102", label="garbage", score=0.9)).encode()) == "stored"
    for revision in ("0001", "base"):
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
        if revision == "0001":
            with engine.connect() as connection:
                assert connection.scalar(select(func.count()).select_from(CaseRecord.__table__).where(
                    CaseRecord.__table__.c.id > 0)) == 1
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    migrate(engine)
    assert "cases" in inspect(engine).get_table_names()


def test_a_database_from_before_migrations_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE cases (id INTEGER PRIMARY KEY)")
    with pytest.raises(ConfigError, match="made before migrations"):
        Database(f"sqlite:///{path}")


def test_a_city_past_two_billion_events_keeps_storing_them(postgres_server, tmp_path):
    """PostgreSQL's integer ids ran out at 2,147,483,647 rows: some twelve days of 2,000 events a second. The busy
    tables' ids are bigint (migration 0005)."""
    from sqlalchemy import select, text

    from server.models import DeadLetter, EventRecord
    from server.services.cases import CaseService
    from server.services.dispatch import Dispatcher
    from server.services.evidence import EvidenceStore
    from server.services.ingest import Ingest
    from tests.conftest import DISPATCH
    from tests.factories import event_payload

    database = Database(postgres_server.create_database())
    with database.engine.begin() as connection:
        for table in ("events", "dead_letters"):
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {2**31 + 10})"))
    ingest = Ingest(database, CaseService(Dispatcher.from_file(DISPATCH)), EvidenceStore(tmp_path / "e"),
                    publish_case=lambda _message: None)
    topic = "gw/v1/nodes/node-a/events/illegal_parking"
    assert ingest.handle(topic, json.dumps(event_payload()).encode()) == "stored"
    assert ingest.handle(topic, b"{not json") == "dead_letter"
    with database.session() as session:
        assert session.scalar(select(EventRecord.id)) > 2**31
        assert session.scalar(select(DeadLetter.id)) > 2**31


def old_case_row(table) -> dict:  # noqa: ANN001 - a reflected table
    """A value of each required column's type, for a case written before a migration."""
    from datetime import UTC, datetime

    from sqlalchemy import Boolean, DateTime, Float, Integer

    def filler(column):  # noqa: ANN001, ANN202
        kind = type(column.type)
        if issubclass(kind, Boolean):
            return False
        if issubclass(kind, Integer | Float):
            return 0
        if issubclass(kind, DateTime):
            return datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
        return "x"

    return {column.name: filler(column) for column in table.columns
            if not column.nullable and not column.primary_key and column.server_default is None}


def test_a_citizens_case_from_before_0006_keeps_its_report(database_url):
    """Migration 0006 moves each citizen case's first report into `reports`, where the API shows them."""
    from datetime import UTC, datetime

    from sqlalchemy import JSON, MetaData, insert, select

    engine = make_engine(database_url)
    migrate(engine, "0005")
    cases = MetaData()
    cases.reflect(engine, only=["cases"])
    table = cases.tables["cases"]
    row = old_case_row(table)
    row |= {"source": "open311", "description": "bags by the bin", "address": "Wulin Road 12",
            "reporter": {"phone": "139-1111-1111"}}
    if not isinstance(table.c.reporter.type, JSON):
        row["reporter"] = json.dumps(row["reporter"])
    with engine.begin() as connection:
        connection.execute(insert(table), row)
    migrate(engine)
    with Database(database_url).session() as session:
        from server.models import CaseRecord

        [reports] = session.scalars(select(CaseRecord.reports)).all()
    assert [(r["description"], r["address"], r["reporter"]) for r in reports] == [
        ("bags by the bin", "Wulin Road 12", {"phone": "139-1111-1111"})]
    assert datetime.fromisoformat(reports[0]["at"]) == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def test_a_case_verified_before_0007_keeps_its_repeat_window_from_its_verification(database_url):
    """Migration 0007 gives each verified case the time of its last verification step."""
    from datetime import UTC, datetime

    from sqlalchemy import MetaData, insert, select

    engine = make_engine(database_url)
    migrate(engine, "0006")
    tables = MetaData()
    tables.reflect(engine, only=["cases", "case_transitions"])
    cases, steps = tables.tables["cases"], tables.tables["case_transitions"]
    with engine.begin() as connection:
        for status in ("verified", "handling"):
            row = old_case_row(cases) | {"status": status, "violation_id": status}
            case_id = connection.execute(insert(cases).values(row)).inserted_primary_key[0]
            for hour, action in ((2, "verify"), (3, "rework"), (4, "verify")):
                connection.execute(insert(steps).values(old_case_row(steps) | {
                    "case_id": case_id, "action": action, "at": datetime(2026, 11, 25, hour, tzinfo=UTC)}))
    migrate(engine)
    with Database(database_url).session() as session:
        from server.models import CaseRecord

        verified = dict(session.execute(select(CaseRecord.status, CaseRecord.verified_at)).all())
    assert verified == {"verified": datetime(2026, 11, 25, 4, tzinfo=UTC), "handling": None}


def test_stepping_back_before_0007_keeps_the_cases_and_the_webhook_deliveries(database_url):
    """Found by review: on SQLite, dropping a column rebuilt the table, and with foreign keys on, dropping the old
    copy deleted every webhook delivery (0008) or was refused (0007, cases have steps)."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from server.models import CaseRecord, CaseTransition, WebhookDelivery, WebhookSubscription

    database = Database(database_url)
    moment = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    with database.session() as session:
        case = CaseRecord(violation_id="v1", category="litter", code="0102", status="verified", node_id="n",
                          camera_id="c", zone_id="z", label="garbage", score=0.9, opened_at=moment, updated_at=moment,
                          started_at=moment, last_seen_at=moment, verified_at=moment)
        session.add(case)
        session.flush()
        session.add(CaseTransition(case_id=case.id, action="verify", to_status="verified", at=moment, actor="op",
                                   reason="gone"))
        hook = WebhookSubscription(url="http://receiver.test/hook", secret="s" * 32, created_by="test")
        session.add(hook)
        session.flush()
        session.add(WebhookDelivery(subscription_id=hook.id, case_id=case.id, event="case.verify", payload="{}",
                                    next_attempt_at=moment))
        session.commit()
    engine = make_engine(database_url)
    with engine.begin() as connection:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    with engine.connect() as connection:
        counts = [connection.execute(select(func.count()).select_from(table)).scalar_one()
                  for table in (CaseRecord.__table__, CaseTransition.__table__, WebhookDelivery.__table__)]
    assert counts == [1, 1, 1]
    migrate(engine)
    with Database(database_url).session() as session:
        assert session.scalars(select(CaseRecord.verified_at)).one() == moment, "0007 fills it in again"


def test_a_start_that_fails_half_way_through_a_migration_leaves_the_database_as_it_was(database_url):
    """Found by review: on SQLite each schema change was committed as it ran, so a migration failing (or a start
    killed) after its first change left that change without its version, and every later start failed on it
    (`duplicate column name: verified_at`)."""
    from sqlalchemy import text

    engine = make_engine(database_url)
    migrate(engine, "0006")
    with engine.begin() as connection:  # 0007 adds cases.verified_at, then makes this index: it will fail there
        connection.execute(text("CREATE INDEX ix_case_transitions_case_id ON case_transitions (id)"))
    with pytest.raises(Exception, match="ix_case_transitions_case_id"):
        migrate(engine)
    assert "verified_at" not in {column["name"] for column in inspect(engine).get_columns("cases")}
    with engine.begin() as connection:  # the operator removes the obstacle and starts again
        connection.execute(text("DROP INDEX ix_case_transitions_case_id"))
    migrate(engine)
    assert "verified_at" in {column["name"] for column in inspect(engine).get_columns("cases")}
