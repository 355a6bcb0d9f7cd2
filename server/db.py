"""Engine, schema and sessions. The schema is Alembic's migrations (server/migrations), applied at start-up, so a
database made by any earlier version is brought up to date. SQLite (the default) runs in WAL mode so the API reads
while ingest writes; PostgreSQL is `postgresql+psycopg://user:password@host/db`."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Engine,
    String,
    any_,
    bindparam,
    create_engine,
    event,
    inspect,
    make_url,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from gridwatch.config_files import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class JsonText(str):
    """A JSON column's value already serialised (pydantic's `model_dump_json`, in Rust): stored as it is, not
    turned into a dict and serialised again, which costs a busy ingest more than its database write."""

    __slots__ = ()


def one_of(session: Session, column: ColumnElement, values: Iterable[object]) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`, a single parameter: psycopg parses a statement's
    text again each time it has more than 50 parameters, which for a batch's lookups of hundreds of ids cost more
    than running them."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        # text of any length: cast to the column's VARCHAR(n)[], a longer value would be cut to n and match the row
        # that begins like it
        element = String() if isinstance(column.type, String) else column.type
        return column == any_(bindparam(None, values, type_=ARRAY(element)))
    return column.in_(values)


def claim(session: Session, keys: Iterable[str], wait: bool = True) -> set[str] | None:
    """On PostgreSQL, a lock on each of `keys` (advisory, held until this transaction ends), so that two workers'
    transactions writing rows for one key take turns, and a read after the lock sees what the other committed.
    Waiting, every key is locked (taken in one fixed order, so two workers never wait in a circle) and all are
    returned; not waiting, only the keys no other transaction holds are locked and returned. None on SQLite: one
    writer at a time already, nothing to claim."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    number_of = {key: int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
                 for key in keys}
    if not number_of:
        return set()
    numbers = bindparam("keys", sorted(set(number_of.values())), type_=ARRAY(BigInteger))
    if wait:
        session.execute(text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(:keys) AS k").bindparams(numbers))
        return set(number_of)
    held = {number for number, locked in session.execute(
        text("SELECT k, pg_try_advisory_xact_lock(k) FROM unnest(:keys) AS k").bindparams(numbers)) if locked}
    return {key for key, number in number_of.items() if number in held}


def begin_writing(session: Session) -> None:
    """On SQLite, the transaction takes the database's write lock now (`BEGIN IMMEDIATE`), before it reads what it
    will change: what it reads then stays true until it commits, since no other connection can commit meanwhile.
    (Python's sqlite3 opens a transaction only at the first write, so a read before it sees a state another
    connection may change before this one writes: an operator's step and a detection at once would each write over
    the other's status.) On PostgreSQL nothing: the rows to change are read `FOR UPDATE` instead."""
    if session.get_bind().dialect.name != "sqlite":
        return
    connection = session.connection()
    if not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


_AWAY_SQLSTATES = ("08", "57P", "53100", "53300", "57014", "55P03", "40P01", "40001", "25006")
"""PostgreSQL's errors of a server away, full or busy for now (SQLSTATE prefixes): connection exceptions, shutting
down or starting, disk full, too many connections, a statement or lock timeout, a deadlock or serialization failure
that outlasted its retries, and a server that takes no writes (a standby the address still reaches after a
failover: psycopg raises it as an InternalError)."""
_AWAY_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL", "SQLITE_READONLY",
                "SQLITE_PROTOCOL")
"""SQLite's errors of a file another process holds or the disk refuses (name prefixes: SQLITE_IOERR_WRITE …)."""


def database_away(error: Exception) -> bool:
    """The database cannot be reached or written for now (restarting, locked, connection lost, disk full): nothing
    is wrong with the messages, so the batch is written again later instead of anything going to the dead letters.
    Not an error that would come again on every try (a statement the database refuses, a transaction taking more
    locks than it has room for): that batch goes a message at a time instead of stalling ingest for ever."""
    if isinstance(error, InterfaceError | PoolTimeout) or (
            isinstance(error, DBAPIError) and error.connection_invalidated):
        return True  # (every pooled connection busy: the others' requests, for now)
    if not isinstance(error, DBAPIError):
        return False
    if (name := getattr(error.orig, "sqlite_errorname", None)) is not None:
        return name.startswith(_AWAY_SQLITE)
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is None:  # no server answered at all
        return isinstance(error, OperationalError)
    return sqlstate.startswith(_AWAY_SQLSTATES)


def unstorable_text(error: BaseException) -> str | None:
    """Why a request's text could not be stored, when that is what went wrong: a lone UTF-16 surrogate (JSON's
    "\\ud800" parses, but is no character either database takes) or, on PostgreSQL, a NUL character."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, UnicodeEncodeError) and "surrogate" in str(error):
            return "text holds a lone UTF-16 surrogate (e.g. \\ud800), which is no character: send valid Unicode"
        if "NUL (0x00)" in str(error) or "contain NUL" in str(error):
            return "text holds a NUL character (\\u0000), which the database does not store"
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
        seen += 1
    return None


def first_line(error: Exception) -> str:
    """An error's first line for a log line: a database error's text goes on with the statement and its parameters."""
    return str(error).splitlines()[0] if str(error) else ""


def met_another_worker(error: Exception) -> bool:
    """Another worker wrote the same rows between this one's read and its write (a unique key refused it), or the
    two waited for each other's locks and the database broke the circle: written again, the batch goes in."""
    return isinstance(error, IntegrityError) or getattr(getattr(error, "orig", None), "sqlstate", None) in (
        "40P01", "40001")  # deadlock detected, serialization failure


def _ids_before_insert(session: Session, _context: object, _instances: object) -> None:
    """PostgreSQL: a flush's new rows of one table (two or more) get their ids from the table's sequence in one
    round trip first, so that the ORM writes them with one prepared `executemany` instead of `INSERT … VALUES
    (…), (…) … RETURNING id` with thousands of parameters, which psycopg parses anew each time (its statement cache
    stops at 50 parameters): for a batch of a hundred new cases and five hundred steps, most of the write."""
    waiting: dict[object, list[object]] = defaultdict(list)
    for instance in session.new:
        state = inspect(instance)
        column = state.mapper.local_table.autoincrement_column
        if column is not None and len(state.mapper.primary_key) == 1 and \
                getattr(instance, state.mapper.get_property_by_column(column).key) is None:
            waiting[state.mapper].append(state)
    connection = session.connection()
    for mapper, states in waiting.items():
        if len(states) < 2:
            continue
        column = mapper.local_table.autoincrement_column
        ids = connection.execute(text("SELECT nextval(pg_get_serial_sequence(:table, :column)) "
                                      "FROM generate_series(1, :count)"),
                                 {"table": mapper.local_table.name, "column": column.name, "count": len(states)})
        key = mapper.get_property_by_column(column).key
        for state, (id_,) in zip(sorted(states, key=lambda state: state.insert_order), ids, strict=True):
            setattr(state.obj(), key, id_)


def _to_json(value: object) -> str:
    return value if isinstance(value, JsonText) else json.dumps(value)


POSTGRES_TIMEOUTS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                     "keepalives_count": 3, "tcp_user_timeout": 30_000}
"""A PostgreSQL server cut off (a network partition, not a refusal) is found within half a minute, in a connect or
on a connection in the pool, and answered as away, instead of holding a request, a health check or a batch for as
long as the system's TCP gives up (minutes)."""


def make_engine(url: str) -> Engine:
    """The database's engine. A statement's parameters stay out of its errors' text, which goes to the logs:
    they hold webhook secrets, citizens' phone numbers and the like."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               json_serializer=_to_json, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # noqa: ANN001 - DBAPI objects
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    else:
        engine = create_engine(url, pool_pre_ping=True, json_serializer=_to_json, hide_parameters=True,
                               connect_args=POSTGRES_TIMEOUTS)
    return engine


def _shown(url: str) -> str:
    """The URL without its password, for a message."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, all of it or none: a start that fails or is killed half way leaves the
    database as it was, and the next start runs the migrations again. On PostgreSQL an advisory lock lets many
    workers start at once; on SQLite the migrations hold the write lock (`BEGIN IMMEDIATE`), without which Python's
    sqlite3 commits each schema change as it runs it."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(4711)")
        elif engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        tables = set(inspect(connection).get_table_names())
        if "cases" in tables and "alembic_version" not in tables:
            raise ConfigError(f"{engine.url.render_as_string(hide_password=True)}: this database was made before "
                              "migrations existed; move it away (or export what you need) and start again")
        config = alembic_config(engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


class Database:
    def __init__(self, url: str, migrate_schema: bool = True) -> None:
        try:
            self.engine = make_engine(url)
            if migrate_schema:
                migrate(self.engine)
        except (ArgumentError, NoSuchModuleError, ImportError) as error:
            raise ConfigError(f"database_url {_shown(url)}: not a database GridWatch can use ({first_line(error)}); "
                              "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB") from None
        except OperationalError as error:
            raise ConfigError(f"database_url {_shown(url)}: cannot open it ({first_line(error.orig or error)})"
                              ) from None
        except CommandError as error:  # a revision this release does not have: a later release made the schema
            raise ConfigError(f"database_url {_shown(url)}: its schema is newer than this GridWatch's "
                              f"({first_line(error)}); run the release that made it, or restore a backup made "
                              "before it") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if self.engine.dialect.name == "postgresql":
            event.listen(self.sessions, "before_flush", _ids_before_insert)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session
