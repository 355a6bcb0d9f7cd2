"""The outbox's SQLite file: opened in WAL mode, every page of it checked, its tables and indexes made (what an outbox
from before lacks, added), and what SQLite's errors mean for it."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from edge import outbox_salvage as salvage

log = logging.getLogger(__name__)


class Malformed(sqlite3.DatabaseError):
    """A page the outbox's first reads do not touch is damaged (an index, what the node watched), found by SQLite's
    check of every page at the start: the outbox is set aside and salvaged like one that does not open at all."""

    sqlite_errorname = "SQLITE_CORRUPT"


def error_name(error: sqlite3.Error) -> str:
    return getattr(error, "sqlite_errorname", "") or ""


def damaged(error: sqlite3.Error) -> bool:
    return error_name(error).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def disk_full(error: sqlite3.Error) -> bool:
    """SQLite's full disk, or its failing write that a full disk may be (the WAL's index at an open)."""
    return error_name(error).startswith(("SQLITE_FULL", "SQLITE_IOERR"))


CLOSED_MARK = ".closed"
"""Beside the outbox, a file saying the node closed it: nothing was being written when it stopped."""


def mark_closed(path: Path) -> None:
    """Says, durably, that the outbox at `path` was closed (after its connection is)."""
    mark = Path(f"{path}{CLOSED_MARK}")
    with mark.open("wb") as file:
        os.fsync(file.fileno())
    _sync_folder(path.parent)


def take_closed_mark(path: Path) -> bool:
    """Whether the outbox at `path` was closed by its node when it last ran; the mark is taken away (durably) before
    anything is written, so a power cut in this run leaves none."""
    mark = Path(f"{path}{CLOSED_MARK}")
    if not mark.exists():
        return False
    mark.unlink()
    _sync_folder(path.parent)
    return True


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _Connection(sqlite3.Connection):
    """Remembers whether SQLite met damage in the file as it ran (`damage_met`): such an outbox is not marked
    closed, so its next start checks every page and salvages it. SQLite steps to a statement's first row in
    `execute` and to the rest as they are read, so both are watched (`_Cursor`)."""

    damage_met = False

    def cursor(self, factory: type[sqlite3.Cursor] | None = None) -> sqlite3.Cursor:
        return super().cursor(factory or _Cursor)

    def execute(self, *args) -> sqlite3.Cursor:  # noqa: ANN002 - sqlite3's own
        return self.cursor().execute(*args)

    def executemany(self, *args) -> sqlite3.Cursor:  # noqa: ANN002 - sqlite3's own
        return self.cursor().executemany(*args)


class _Cursor(sqlite3.Cursor):
    def _watched(self, read, *args):  # noqa: ANN001, ANN002, ANN202 - sqlite3's own
        try:
            return read(*args)
        except sqlite3.DatabaseError as error:
            if damaged(error):
                self.connection.damage_met = True
            raise

    def execute(self, *args) -> sqlite3.Cursor:  # noqa: ANN002
        return self._watched(super().execute, *args)

    def executemany(self, *args) -> sqlite3.Cursor:  # noqa: ANN002
        return self._watched(super().executemany, *args)

    def __next__(self):  # noqa: ANN204
        return self._watched(super().__next__)

    def fetchone(self):  # noqa: ANN201
        return self._watched(super().fetchone)

    def fetchmany(self, *args):  # noqa: ANN002, ANN201
        return self._watched(super().fetchmany, *args)

    def fetchall(self):  # noqa: ANN201
        return self._watched(super().fetchall)


def connect(path: Path, check: bool = True) -> sqlite3.Connection:
    """The outbox at `path`, opened, checked (`Malformed`: reads the whole file once; not `check`, for one its node
    closed, which only a power cut or a failing card damages while it is written, and 512 MB take tens of seconds
    on an SD card) and its tables made; closed again if any of it fails."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, factory=_Connection)
    try:
        began = time.monotonic()
        _prepare(db, check)
        if check and path.stat().st_size > 0:
            log.info("outbox %s: every page checked in %.1f s (its node did not close it when it last ran)", path,
                     time.monotonic() - began)
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection, check: bool) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    if check and (found := [row[0] for row in db.execute("PRAGMA quick_check")]) != ["ok"]:
        raise Malformed(f"database disk image is malformed: {'; '.join(found[:3])}")
    db.execute("PRAGMA synchronous=FULL")  # an acknowledged put survives a power cut
    db.execute(
        "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
        "payload BLOB NOT NULL, kind TEXT NOT NULL, bytes INTEGER NOT NULL, created REAL NOT NULL)"
    )
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    for column in ("event_type", "violation"):  # an outbox from before they were kept: its rows have none
        if column not in columns:
            db.execute(f"ALTER TABLE outbox ADD COLUMN {column} TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS outbox_lane ON outbox (kind, id)")
    db.execute("CREATE INDEX IF NOT EXISTS outbox_violation ON outbox (violation, id)")
    db.execute("CREATE INDEX IF NOT EXISTS outbox_heartbeats ON outbox (id) WHERE event_type = 'update'")
    db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS watching (violation TEXT PRIMARY KEY, topic TEXT NOT NULL, "
               "payload BLOB NOT NULL)")
    """The latest event of each violation the node has not ended: what a node killed while watching left open
    (`Outbox.left_open`)."""
    salvage.create_table(db)
    db.execute("CREATE TABLE IF NOT EXISTS answered (request_id TEXT PRIMARY KEY, payload BLOB NOT NULL)")
    """The node's last answers to commands, by request id (`edge/outbox_answers.py`)."""
