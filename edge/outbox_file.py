"""The outbox's SQLite file: opened in WAL mode, every page of it checked, its tables and indexes made (what an outbox
from before lacks, added), and what SQLite's errors mean for it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge import outbox_salvage as salvage


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


def connect(path: Path) -> sqlite3.Connection:
    """The outbox at `path`, opened, checked (`Malformed`: reads the whole file once) and its tables made; closed
    again if any of it fails."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        _prepare(db)
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    if (found := [row[0] for row in db.execute("PRAGMA quick_check")]) != ["ok"]:
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
