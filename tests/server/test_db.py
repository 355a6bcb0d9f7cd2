"""server.db on both databases: which errors mean the database is away for now (the batch waits and is written
again) and which come again on every try (the batch goes a message at a time); lookups by a list of values."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from server.db import Database, database_away, one_of
from server.models import NodeRecord


def refusal(database: Database, statement: str) -> DBAPIError:
    with database.session() as session, pytest.raises(DBAPIError) as raised:
        session.execute(text(statement))
    return raised.value


def test_a_statement_the_database_refuses_is_not_the_database_being_away(database_url):
    """Found by review: every OperationalError counted as the database away, so a batch SQLite refused for good
    (`no such column`, `too many SQL variables`) or PostgreSQL refused for taking too many locks was tried again
    every few seconds for ever, and ingest stood still behind it."""
    database = Database(database_url)
    assert not database_away(refusal(database, "SELECT no_such_column FROM cases"))
    assert not database_away(refusal(database, "SELECT 1/0 FROM no_such_table"))


@pytest.mark.one_database
def test_a_sqlite_file_another_writer_holds_is_away_for_now(tmp_path):
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    holder, waiter = Database(url), Database(url)
    waiter.engine.dispose()
    with holder.engine.connect() as connection:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        with waiter.engine.connect() as other:
            other.connection.dbapi_connection.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(DBAPIError) as raised:
                other.exec_driver_sql("BEGIN IMMEDIATE")
        connection.exec_driver_sql("ROLLBACK")
    assert "locked" in str(raised.value) and database_away(raised.value)


def test_a_connection_the_server_ends_is_away_for_now(postgres_server):
    database = Database(postgres_server.create_database())
    with database.engine.connect() as victim:
        pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with database.engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            victim.exec_driver_sql("SELECT 1")
    assert database_away(raised.value)


def test_a_database_error_keeps_the_statements_values_out_of_its_text(database_url):
    """Found by review: an error's text, logged whole, went on with the statement's parameters: a webhook's signing
    secret, a receiver's token, a citizen's phone number."""
    database = Database(database_url)
    with database.session() as session, pytest.raises(DBAPIError) as raised:
        session.execute(text("SELECT :secret FROM no_such_table"), {"secret": "gw-secret-1234"})
    assert "gw-secret-1234" not in str(raised.value)


def test_a_server_that_takes_no_writes_is_away_for_now(postgres_server):
    """Found by review: after a failover the address may reach the old primary, now a standby taking no writes;
    psycopg raises that as an InternalError (25006), which was not taken as away, so ingest set every message aside
    on disk and acknowledged it, out of the pipeline."""
    url = postgres_server.create_database()
    database = Database(url)
    with database.engine.connect() as connection:
        connection.exec_driver_sql("SET default_transaction_read_only = on")
        connection.commit()
        with pytest.raises(DBAPIError) as raised:
            connection.exec_driver_sql("INSERT INTO dead_letters (topic, reason, payload, received_at) "
                                       "VALUES ('t', 'r', 'p'::bytea, now())")
    assert database_away(raised.value)


@pytest.mark.one_database
def test_every_pooled_connection_busy_is_away_for_now(tmp_path):
    """Found by review: with every pooled connection held by requests, the pool's time-out was taken as a message's
    fault, and the batch was set aside instead of written again."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    engine = create_engine(f"sqlite:///{tmp_path / 'gw.db'}", pool_size=1, max_overflow=0, pool_timeout=0.1)
    with engine.connect(), pytest.raises(PoolTimeout) as raised:
        engine.connect()
    assert database_away(raised.value)


def test_a_lookup_by_a_list_finds_only_the_values_given(database_url):
    """Found by review: on PostgreSQL the list was cast to the column's VARCHAR(64)[], which cut a longer value to
    64 characters, so it found the row whose id began like it."""
    database = Database(database_url)
    node = "n" * 64
    with database.session() as session:
        session.add(NodeRecord(node_id=node))
        session.commit()
        found = session.scalars(select(NodeRecord.node_id).where(one_of(session, NodeRecord.node_id,
                                                                       [node + "-second", "other"]))).all()
        assert found == []
        assert session.scalars(select(NodeRecord.node_id).where(one_of(session, NodeRecord.node_id, [node]))).all() \
            == [node]
