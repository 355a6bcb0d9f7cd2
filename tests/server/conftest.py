"""Every server test that uses a database runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations


def pytest_generate_tests(metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        metafunc.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
