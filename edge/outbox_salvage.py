"""The outbox's damaged copies: a file a power cut damaged is moved aside, and what of it still reads is copied into a
new outbox, while the outbox stays under its limit (`NoRoom`: the disk's reserve stays free). The copy is recorded in
the new outbox (`salvaging`), with the last row copied, so a copy that the limit or a full disk cuts short goes on
later (the running node's sender goes on as sending frees room, and so does the next start) instead of leaving the
rest of the backlog in a file nobody reads; a copy
read to its end is deleted, for it holds nothing more and the card's room is the outbox's. A page that does not read
costs the messages on it, counted (`dropped_salvage`, as are rows the damage garbled), and the reading goes on past
it; a copy with such pages, or whose damage stops the reading altogether, is kept for a person (sqlite3's .recover
may read more), and so is one set aside by a node from before the record: it was salvaged as far as it read then,
and copying it again would send its messages twice. The new outbox is built, its record committed, before the
damaged file moves (`staged`), so a node killed in the middle leaves what its next start finishes.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIXES = ("", "-wal", "-shm")
"""A SQLite file and what goes with it: a WAL holds writes not yet in the file itself."""
BATCH_ROWS, BATCH_BYTES = 500, 1024 * 1024
"""What the salvage writes in one transaction: little memory for any backlog, and a disk that fills midway costs at
most one batch, which the next start copies again."""

Write = Callable[[str, bytes, str, float], int]
"""The outbox's own write of one message (topic, payload, kind, created) inside the caller's transaction."""


class CutShort(RuntimeError):
    """The copy cannot go on now (the disk full, failing): what was copied is kept and recorded, the rest stays in
    the damaged copy for the next start."""


class NoRoom(Exception):  # noqa: N818 - not an error: the copy waits
    """Raised by the outbox's write when a message does not fit under its limit: the copy stops before it, what was
    copied kept and recorded, and goes on from it as sending frees room."""


def move(source: Path, target: Path) -> None:
    """The file and its WAL, as they are; the file itself last, so that while it is still at `source` the move is
    not done (`finish_setting_aside` finishes it after a kill)."""
    for suffix in reversed(SUFFIXES):
        if (part := Path(f"{source}{suffix}")).exists():
            part.replace(Path(f"{target}{suffix}"))


def remove(path: Path) -> None:
    for suffix in SUFFIXES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def aside_for(path: Path) -> Path:
    """A name for a damaged `path` that no copy still to salvage has (two power cuts in one second, say)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside, number = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while any(Path(f"{aside}{suffix}").exists() for suffix in SUFFIXES):
        number += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
    return aside


def staged(path: Path) -> Path:
    """Where the new outbox that replaces a damaged one is built, its record committed, before the damaged one
    moves: a node killed at any step of the set-aside leaves the backlog findable."""
    return path.with_name(f"{path.name}.new")


def _recorded_aside(new: Path) -> Path | None:
    """The damaged copy a staged outbox was built for (its newest record); None for one a kill cut short before
    its record was committed."""
    try:
        db = sqlite3.connect(new, isolation_level=None)
        try:
            row = db.execute("SELECT aside FROM salvaging ORDER BY rowid DESC LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None
    return new.parent / row[0] if row else None


def finish_setting_aside(path: Path) -> None:
    """At a start, what a node killed while it set a damaged outbox aside left half done: a staged outbox with its
    record goes on (the damaged one moved to the recorded name, what of it is not there yet, then the staged one
    to `path`); one without a record is deleted, the damaged one still at `path` to be set aside again."""
    new = staged(path)
    if not new.exists():
        return
    try:
        if (aside := _recorded_aside(new)) is None:
            remove(new)
            return
        move(path, aside)
        move(new, path)
    except OSError as error:
        raise CutShort(f"the damaged copy set aside at the last start cannot be moved ({error})") from None
    log.error("outbox %s: a start killed while it set the damaged copy %s aside is finished", path, aside)


def set_aside(path: Path, open_new: Callable[[Path], sqlite3.Connection]) -> Path:
    """Moves the damaged outbox `path` aside for a new one, returning where it went. The new one is built
    (`open_new`) and its record committed (`begin`) under another name (`staged`) before the damaged file moves,
    then takes its place: a node killed at any step leaves what the next start finishes
    (`finish_setting_aside`). A new one that cannot be built (a full disk, say) leaves the damaged file as it was,
    for the next start (`CutShort`)."""
    aside, new = aside_for(path), staged(path)
    try:
        remove(new)
        db = open_new(new)
        try:
            begin(db, path, aside)
        finally:
            db.close()
    except (sqlite3.Error, OSError) as starting:
        remove(new)
        raise CutShort(f"a new one cannot be started beside it ({starting}); it was left as it was") from None
    try:
        move(path, aside)
        move(new, path)
    except OSError as moving:
        raise CutShort(f"setting it aside stopped ({moving}); the next start finishes it") from None
    return aside


def create_table(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS salvaging (aside TEXT PRIMARY KEY, after_rowid INTEGER NOT NULL, "
               "copied INTEGER NOT NULL)")


def _read_only(aside: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{aside}?mode=ro", uri=True)


def begin(db: sqlite3.Connection, damaged: Path, aside: Path) -> None:
    """Records that `damaged`, to be moved to `aside`, is to be salvaged into `db` (a new outbox), with what the
    node watched (its `new`s sent long ago, so a salvaged `end` then ends its violation here too) and the counts of
    what it dropped, as far as they read, in one transaction: a disk too full for it leaves nothing half done. The
    copies it was itself still salvaging (a second power cut before the first copy was done) go on first, where
    they had got to, for they would otherwise be left unread for good."""
    counters: list[tuple[str, int]] = []
    watching: list[tuple[str, str, bytes]] = []
    salvaging: list[tuple[str, int, int]] = []
    with contextlib.suppress(sqlite3.DatabaseError):
        old = _read_only(damaged)
        try:
            with contextlib.suppress(sqlite3.DatabaseError):
                counters = old.execute("SELECT name, value FROM counters").fetchall()
            with contextlib.suppress(sqlite3.DatabaseError):
                watching = old.execute("SELECT violation, topic, payload FROM watching").fetchall()
            with contextlib.suppress(sqlite3.DatabaseError):
                salvaging = old.execute("SELECT aside, after_rowid, copied FROM salvaging ORDER BY rowid").fetchall()
        finally:
            old.close()
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT OR REPLACE INTO watching (violation, topic, payload) VALUES (?, ?, ?)", watching)
        db.executemany("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", counters)
        db.executemany("INSERT OR REPLACE INTO salvaging (aside, after_rowid, copied) VALUES (?, ?, ?)", salvaging)
        db.execute("INSERT OR REPLACE INTO salvaging (aside, after_rowid, copied) VALUES (?, 0, 0)", (aside.name,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def pending(db: sqlite3.Connection, directory: Path) -> list[tuple[Path, int, int]]:
    """(damaged copy, last row copied, messages copied) of each copy not yet read to its end."""
    return [(directory / name, after, copied) for name, after, copied in
            db.execute("SELECT aside, after_rowid, copied FROM salvaging ORDER BY rowid").fetchall()]


def advance(db: sqlite3.Connection, aside: Path, after: int, copied: int) -> None:
    """Inside the transaction that wrote those rows: the record never runs ahead of what was copied."""
    db.execute("UPDATE salvaging SET after_rowid = ?, copied = ? WHERE aside = ?", (after, copied, aside.name))


def finish(db: sqlite3.Connection, aside: Path) -> None:
    db.execute("DELETE FROM salvaging WHERE aside = ?", (aside.name,))


class DamagedRows:
    """The messages of a damaged copy after row `after`, in order, one at a time (a backlog larger than the node's
    memory stays on disk), as far as they read. Past a page that does not read (`_past`) the scan goes on, the
    ids between read one by one: those that do not read are counted in `skipped` (at most what the damage took:
    an id sent and deleted before it reads no better). `stopped` is the error that ended them early, when nothing
    past it reads, None otherwise; `reached`: the last id read or gone past."""

    def __init__(self, aside: Path, after: int) -> None:
        self.aside = aside
        self.after = self.reached = after
        self.skipped = 0
        self.stopped: sqlite3.Error | None = None

    def __iter__(self) -> Iterator[tuple[int, str, bytes, str, float]]:
        try:
            old = _read_only(self.aside)
        except sqlite3.DatabaseError as error:
            self.stopped = error
            return
        try:
            while True:
                try:
                    for row in old.execute("SELECT rowid, topic, payload, kind, created FROM outbox NOT INDEXED "
                                           "WHERE rowid > ? ORDER BY rowid", (self.reached,)):
                        self.reached = row[0]
                        yield row
                    return
                except sqlite3.DatabaseError as error:
                    if (resume := _past(old, self.reached)) is None:
                        self.stopped = error
                        return
                    stopped_at, skipped, reason = self.reached, self.skipped, str(error)
                yield from self._one_by_one(old, resume)
                log.error("the damaged outbox copy %s: ids %d to %d do not read as a run (%s); %d of them not at all",
                          self.aside, stopped_at + 1, resume, reason, self.skipped - skipped)
        finally:
            old.close()

    def _one_by_one(self, old: sqlite3.Connection, until: int) -> Iterator[tuple[int, str, bytes, str, float]]:
        """Each id up to `until` on its own: the scan loses the row before a page that does not read (it reads a
        row ahead), and a seek past the page may pass rows that read."""
        for rowid in range(self.reached + 1, until + 1):
            try:
                row = old.execute("SELECT rowid, topic, payload, kind, created FROM outbox WHERE rowid = ?",
                                  (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                self.skipped += 1
                row = None
            self.reached = rowid
            if row is not None:
                yield row


def _seeks(old: sqlite3.Connection, after: int) -> bool:
    """Whether the way to the first row after `after` reads."""
    try:
        old.execute("SELECT rowid FROM outbox NOT INDEXED WHERE rowid > ? ORDER BY rowid LIMIT 1", (after,)).fetchone()
    except sqlite3.DatabaseError:
        return False
    return True


def _past(old: sqlite3.Connection, after: int) -> int | None:
    """The smallest id past the damage met after row `after` that a scan reads on from (probed ahead by doubling
    steps, then halved back: a damaged page hides a run of ids); None when nothing past it reads or the last id is
    not known (the copy is then kept for a person)."""
    last = None
    for query in ("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'", "SELECT MAX(rowid) FROM outbox"):
        with contextlib.suppress(sqlite3.DatabaseError):
            if (row := old.execute(query).fetchone()) is not None and row[0] is not None:
                last = int(row[0])
                break
    if last is None or last <= after:
        return None
    unreadable, step = after, 1
    while not _seeks(old, readable := min(after + step, last)):
        if readable == last:
            return None
        unreadable, step = readable, step * 2
    while readable - unreadable > 1:
        middle = (readable + unreadable) // 2
        if _seeks(old, middle):
            readable = middle
        else:
            unreadable = middle
    return readable


def go_on(db: sqlite3.Connection, directory: Path, write: Write, kinds: tuple[str, ...],
          budget: int | None = None) -> tuple[int, bool]:
    """What still reads of each damaged copy not yet read to its end (set aside at this start, or at one a full
    disk cut short) goes into the outbox `db` after what it holds; a copy read to its end is deleted. `budget`: at
    most about that many messages copied at this call (a running node holds its outbox no longer than that; what
    is left waits for the next call). Returns how many copies it took up, and whether every one is done. `kinds`:
    the outbox's lanes, the only kinds a message is sent by."""
    try:
        records = pending(db, directory)
        for aside, after, copied in records:
            if aside.exists():
                if not _take_up(db, DamagedRows(aside, after), copied, write, kinds, budget):
                    return len(records), False
            else:
                log.warning("the damaged outbox copy %s to salvage is gone; %d message(s) of it were salvaged",
                            aside, copied)
            finish(db, aside)
    except sqlite3.Error as error:  # the record itself, on a full disk: a later try goes on
        raise CutShort(f"salvaging its damaged copies stopped ({error}); what is left of them waits for room") from None
    return len(records), True


def _take_up(db: sqlite3.Connection, rows: DamagedRows, copied: int, write: Write, kinds: tuple[str, ...],
             budget: int | None) -> bool:
    """Whether the copy was read to its end (not stopped by `budget`)."""
    copied, ended = _copy(db, rows, copied, write, kinds, budget)
    if not ended:
        return False
    if rows.skipped and rows.stopped is None:
        log.error("the damaged outbox copy %s salvaged, %d message(s) in all, up to %d lost to pages that do not "
                  "read; the copy is kept for a person to recover or delete", rows.aside, copied, rows.skipped)
        return True
    if rows.stopped is not None:
        log.error("reading the damaged outbox copy %s stopped at %d message(s) salvaged (%s); the rest cannot be "
                  "read here, and the copy is kept for a person to recover or delete", rows.aside, copied,
                  rows.stopped)
        return True
    try:
        remove(rows.aside)
        log.error("the damaged outbox copy %s salvaged, %d message(s) in all; deleted", rows.aside, copied)
    except OSError as error:  # salvaged all the same: what is left is a file a person may delete
        log.error("the damaged outbox copy %s salvaged, %d message(s) in all; it cannot be deleted (%s)",
                  rows.aside, copied, error)
    return True


def _lose(db: sqlite3.Connection, lost: int) -> None:
    """Messages of a damaged copy that cannot be salvaged, counted in telemetry (`dropped_salvage`) in the
    transaction that records how far the copy got, so none is counted twice."""
    if lost:
        db.execute("INSERT INTO counters (name, value) VALUES ('dropped_salvage', ?) "
                   "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (lost,))


def _copy(db: sqlite3.Connection, rows: DamagedRows, copied: int, write: Write, kinds: tuple[str, ...],
          budget: int | None = None) -> tuple[int, bool]:
    """`rows` into `db` a batch a transaction, each recording how far the copy got; the messages copied in all, and
    whether the rows ran out (not `budget`, counted in messages copied at this call, a batch at a time, nor the
    outbox's room: `NoRoom`). A row the damage garbled (a payload that is no bytes, a kind that is no lane: never
    sendable, and held against the limit for good) is counted lost, not copied."""
    started = kept = copied
    batch_bytes, lost, skipped, ended = 0, 0, rows.skipped, False
    reading = iter(rows)
    try:
        db.execute("BEGIN IMMEDIATE")
        for rowid, topic, payload, kind, created in reading:
            if not (isinstance(topic, str) and isinstance(payload, bytes) and kind in kinds):
                lost += 1
                continue
            try:
                write(topic, payload, kind, float(created))
            except (sqlite3.IntegrityError, ValueError, OverflowError, TypeError):
                lost += 1
                continue
            except NoRoom:
                rows.reached = rowid - 1  # the next call starts at this row
                break
            copied, batch_bytes = copied + 1, batch_bytes + len(payload)
            if copied - kept >= BATCH_ROWS or batch_bytes >= BATCH_BYTES:
                advance(db, rows.aside, rows.reached, copied)
                _lose(db, lost + rows.skipped - skipped)
                db.execute("COMMIT")
                kept, batch_bytes, lost, skipped = copied, 0, 0, rows.skipped
                if budget is not None and copied - started >= budget:
                    return copied, False
                db.execute("BEGIN IMMEDIATE")
        else:
            ended = True
        advance(db, rows.aside, rows.reached, copied)
        _lose(db, lost + rows.skipped - skipped)
        db.execute("COMMIT")
    except sqlite3.Error as error:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise CutShort(f"salvaging its damaged copy {rows.aside} stopped ({error}) with {kept} message(s) "
                       f"salvaged; the rest stays there until there is room for it (free some disk if it is "
                       f"full)") from None
    finally:
        reading.close()  # its read-only connection, also when the budget or an error ends the copy early
    return copied, ended
