"""The migrations build exactly the schema the models describe, and a database made before them is refused."""

from __future__ import annotations

import sqlite3

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
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert "alembic_version" in inspect(database.engine).get_table_names()


def test_migrations_run_down_and_up_again(database_url):
    url = database_url
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    migrate(engine)
    assert "cases" in inspect(engine).get_table_names()


def test_a_database_from_before_migrations_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE cases (id INTEGER PRIMARY KEY)")
    with pytest.raises(ConfigError, match="made before migrations"):
        Database(f"sqlite:///{path}")
