"""Every server test that uses a database runs on SQLite and on a real PostgreSQL server, except those marked
`one_database`: checks decided before any query (request validation, the role table), which run on SQLite only so
the suite stays inside CI's time."""

from __future__ import annotations

import pytest

from tests.server.city import make_city


def pytest_generate_tests(metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        one = metafunc.definition.get_closest_marker("one_database") is not None
        metafunc.parametrize("database_url", ["sqlite"] if one else ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def city(tmp_path, database_url):
    """The case engine on the test's database, with a clock the test moves (tests/server/city.py)."""
    return make_city(tmp_path, database_url)
