"""A durable outbox: every event and its evidence is written to SQLite before it is published, and removed only when
the broker acknowledges it (QoS 1 PUBACK). paho-mqtt keeps its session in memory only, so a node that restarts, or
is cut off for hours, would otherwise lose what it had not sent.

Answers to the command centre's commands leave first (someone waits for each), then events in the order they were
written, and before evidence: after an outage, a fresh violation does not wait behind hours of evidence images
(evidence keeps a fifth of the sender's window, so a flood of events never starves it either; each lane keeps its own
order). When the outbox reaches its size limit it makes room by the stated policy (`edge/outbox_policy.py`) — the
oldest evidence first, then, for a new event only, the oldest events: an image or an answer never pushes out an
event record, since an image is an attachment and an event (an `end` above all) is what a case follows; an image or
answer that finds no room among the images, or any message larger than the whole outbox, is not stored — and counts
everything it drops, so nothing is lost silently; the counts go out in telemetry. A message the broker refuses (not
authorised, say: it would never get through) leaves the outbox too, counted and logged the same way. Its limit comes
down to what the disk has room for, and a disk other programs fill all the same releases the ballast kept beside it
for the room the policy makes (`edge/outbox_disk.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge import outbox_file
from edge import outbox_salvage as salvage
from edge.outbox_disk import Disk
from edge.outbox_policy import ANSWER as ANSWER  # the lanes, for the outbox's callers
from edge.outbox_policy import EVENT, LANES, count, make_room
from edge.outbox_policy import EVIDENCE as EVIDENCE

log = logging.getLogger(__name__)

SALVAGE_RETRY_SECONDS = 30.0
"""How long a running node waits to try again a salvage the disk cut short."""
SALVAGE_ROOM = 2 * salvage.BATCH_BYTES
"""The room an outbox has at least while damaged copies wait to be salvaged, out of the disk's reserve if need be: a
copy holds the room the outbox had until it is read to its end, and its backlog goes through the new outbox a batch
at a time as it is sent, so a node whose outbox had all the disk it could take still records and salvages."""
_FULL = object()
"""What `_store` returns when the disk refused the transaction, the room it made rolled back."""
WAL_PAGES = 1000
"""SQLite's own checkpoint of the WAL, at 1,000 pages (4 MB), while the ballast is in place."""
MORE_AT_MOST = 64
"""Messages a full disk pushes out beyond a new message's own bytes before the message is dropped: a page of small
events, which a page freed needs; past that the disk refuses the commit itself (its WAL), which no drop helps."""


class OutboxError(RuntimeError):
    """The outbox cannot be opened (its file held by another process, its disk failing or full): the node does not
    start rather than start without what it holds."""


def _event_meta(payload: bytes) -> tuple[str | None, str | None]:
    """An event's type and violation id, read from its payload (None, None for what is not one)."""
    try:
        event = json.loads(payload)
        return str(event["type"]), str(event["violation_id"])
    except (ValueError, KeyError, TypeError):
        return None, None


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    payload: bytes
    kind: str


class Outbox:
    def __init__(self, path: Path, max_bytes: int = 512 * 1024 * 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`max_bytes` is the configured limit (outbox_max_mb); the disk may allow less (`max_bytes`, the property).
        `clock` times the disk's measures (tests pass their own)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.configured_max_bytes = max_bytes
        self._clock = clock
        self._disk = Disk(path, clock)
        self._ceiling = max_bytes
        """What the disk has room for: what the outbox holds, its file's free pages and the disk's room
        (`Disk.room`), as last measured."""
        self._lock = threading.Lock()
        try:
            salvage.finish_setting_aside(path)
            self._closed_cleanly = outbox_file.take_closed_mark(path)  # else every page is checked at the open
            try:
                self._open()
            except sqlite3.OperationalError as error:  # a disk others filled: the WAL's index needs the ballast's room
                if not (outbox_file.disk_full(error) and self._disk.release()):
                    raise
                self._open()
        except salvage.CutShort as error:
            raise OutboxError(f"outbox {path}: {error}") from None
        except sqlite3.DatabaseError as error:
            if (damaged := getattr(self, "_db", None)) is not None:
                damaged.close()
            if not outbox_file.damaged(error):
                # full, locked by another process, failing: what it holds is sound, so the node waits for it
                raise OutboxError(f"outbox {path} cannot be opened ({error}); nothing in it was touched") from None
            self._set_aside(error)
        self._salvage_tried = float("-inf")
        self._salvage_room: int | None = None
        """The room left when the salvage last stopped for want of it: it goes on once there is more."""
        self._salvage_left = bool(salvage.pending(self._db, self.path.parent))
        self._measure_the_disk()
        self._salvage_left = self._salvage(watch=True)
        """Damaged copies the start's salvage left (the outbox's room, a full disk): the node starts with what was
        copied, and the sender goes on with the rest as sending frees room (`salvage_more`)."""
        if self._ceiling < self.configured_max_bytes:
            log.warning("outbox %s: the disk has room for %.1f MB of it, not the %.1f MB set (outbox_max_mb)",
                        self.path, self._ceiling / 2**20, self.configured_max_bytes / 2**20)
        self.wakeup = threading.Event()

    def _set_aside(self, error: sqlite3.Error) -> None:
        """A damaged file (a power cut on a cheap SD card) is moved aside and a new one started with the record of
        what to salvage (`salvage.set_aside`; copied by `salvage.go_on` at this start and, should the disk fill
        meanwhile, the next): a damaged index or page costs the messages on it, not the whole backlog."""
        try:
            aside = salvage.set_aside(self.path, self._opened)
            self._open()
        except (salvage.CutShort, sqlite3.Error, OSError) as stopped:
            self._db.close()
            raise OutboxError(f"outbox {self.path} is damaged ({error}); {stopped}") from None
        log.error("outbox %s cannot be read (%s); moved to %s, and a new one started with what of it still reads",
                  self.path, error, aside)

    def _opened(self, path: Path) -> sqlite3.Connection:
        """The new outbox `salvage.set_aside` builds, opened as this one is."""
        self._open(path)
        return self._db

    def _open(self, path: Path | None = None) -> None:
        """Opened (`outbox_file.connect`) and what it holds summed; closed again if any of it fails."""
        self._db = outbox_file.connect(path or self.path, check=not (path is None and self._closed_cleanly))
        try:
            [self._page_size] = self._db.execute("PRAGMA page_size").fetchone()
            self._sizes = self._held()
            """Bytes held of each kind, kept in step with the table (summing it reads every image)."""
        except BaseException:
            self._db.close()
            raise

    def _held(self) -> dict[str, int]:
        return dict.fromkeys(LANES, 0) | dict(self._db.execute(
            "SELECT kind, COALESCE(SUM(bytes), 0) FROM outbox GROUP BY kind").fetchall())

    @property
    def max_bytes(self) -> int:
        """The limit in force: the configured one, or the disk's room if less (but `SALVAGE_ROOM` while salvaging).
        The disk never asks for less than the outbox holds: its rows' pages are its own to reuse, and dropping them
        would free no disk."""
        salvaging = SALVAGE_ROOM if self._salvage_left else 0
        return min(self.configured_max_bytes, max(self._ceiling, self._size, salvaging))

    def _measure_the_disk(self) -> None:
        """What the disk has room for now (`Disk.room`: its free space less the reserve and the ballast), besides
        what the outbox holds and the free pages of its own file (left by what was acknowledged, reused before the
        file grows). A measure that fails lets the last one stand a while."""
        if (room := self._disk.room()) is not None:
            [free_pages] = self._db.execute("PRAGMA freelist_count").fetchone()
            self._ceiling = self._size + free_pages * self._page_size + room
        self._checkpoint_every(WAL_PAGES if self._disk.held else 1)

    def _checkpoint_every(self, pages: int) -> None:
        """SQLite moves its WAL into the outbox's file once the WAL holds `pages` (and then writes it again from its
        start): at every commit while the ballast is out, so the WAL needs no more of the disk than it has."""
        self._db.execute(f"PRAGMA wal_autocheckpoint = {pages}")

    def _release_ballast(self) -> bool:
        """The ballast released for a disk found full (`Disk.release`); whether there was one."""
        if not self._disk.release():
            return False
        self._checkpoint_every(1)
        return True

    def _limit_for(self, incoming: int) -> int:
        """The limit a message of `incoming` bytes meets, the disk measured again when its last measure is stale
        (`DISK_CHECK_SECONDS`) or the message meets it (a disk freed since is used again at once)."""
        if self._disk.stale or self._size + incoming > self._ceiling:
            self._measure_the_disk()
        return self.max_bytes

    def put(self, topic: str, payload: bytes, kind: str) -> int | None:
        """Stores the message and returns its id; None when the size limit leaves it no room (counted as
        `dropped_KIND` and logged). A disk that turns out full anyway (other programs filled it) releases the
        ballast (`Disk.release`), makes room for this message's bytes among what it may push out, by the same
        policy, one more message at a time while it still does not fit (freed bytes free no page while other rows
        share it; `MORE_AT_MOST`), and is measured again at the next put."""
        with self._lock:
            limit = self._limit_for(len(payload))
            stored = self._store(topic, payload, kind, limit, f"outbox full ({limit} bytes)")
            more = 0
            while stored is _FULL:
                self._release_ballast()
                if more > MORE_AT_MOST:
                    stored = self._drop(topic, payload, kind, "the disk is full")
                    break
                stored = self._store(topic, payload, kind, self._size, "the disk is full", more)
                more += 1
        if not isinstance(stored, int):
            return None
        self.wakeup.set()
        return stored

    def _store(self, topic: str, payload: bytes, kind: str, limit: int, reason: str,
               more: int = 0) -> int | None | object:
        """The room made (`make_room`, `more` messages beyond it) and the message written in one transaction, so
        a message that still finds no room leaves what it would have pushed out in place (`_drop`): `_FULL` when
        the disk refused the transaction, at the message's pages or, in WAL mode, at the commit, room and all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            victims = make_room(self._db, self._sizes, len(payload), kind, limit, more)
            if victims is not None:
                message_id = self._write(topic, payload, kind, time.time())
                self._db.execute("COMMIT")
        except BaseException as error:
            if self._db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                self._db.execute("ROLLBACK")
            if isinstance(error, sqlite3.OperationalError) and outbox_file.error_name(error).startswith("SQLITE_FULL"):
                return _FULL
            raise
        if victims is None:
            self._db.execute("ROLLBACK")
            return self._drop(topic, payload, kind, reason)
        for victim_kind, size, counter, victim_topic in victims:
            self._sizes[victim_kind] -= size
            log.error("%s: dropped the %s %s for a new %s", reason, "superseded heartbeat"
                      if counter == "dropped_update" else f"oldest {victim_kind}", victim_topic, kind)
        self._sizes[kind] = self._sizes.get(kind, 0) + len(payload)
        return message_id

    def _drop(self, topic: str, payload: bytes, kind: str, reason: str) -> None:
        """Counted as `dropped_KIND`; a disk too full for even the count (the ballast released) raises, and the
        node counts the message unstored (in memory)."""
        self._on_the_disk(lambda: count(self._db, f"dropped_{kind}"))
        log.error("%s: the new %s %s (%d bytes) finds no room; dropped", reason, kind, topic, len(payload))

    def _on_the_disk(self, write: Callable[[], object]) -> None:
        """`write`, done again once when a full disk releases the ballast for it (`Disk.release`)."""
        try:
            write()
        except sqlite3.OperationalError as error:
            if not (outbox_file.disk_full(error) and self._release_ballast()):
                raise
            write()

    def _write(self, topic: str, payload: bytes, kind: str, created: float, watch: bool = True) -> int:
        """One message's rows, inside the caller's transaction; the caller adds its bytes to `_sizes` once
        committed. `watch`: the node's open violations (`watching`) follow the event."""
        event_type, violation = _event_meta(payload) if kind == EVENT else (None, None)
        cursor = self._db.execute(
            "INSERT INTO outbox (topic, payload, kind, bytes, created, event_type, violation) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (topic, payload, kind, len(payload), created, event_type, violation))
        if not watch:
            pass
        elif violation is not None and event_type == "end":
            self._db.execute("DELETE FROM watching WHERE violation = ?", (violation,))
        elif violation is not None:
            self._db.execute("INSERT OR REPLACE INTO watching (violation, topic, payload) VALUES (?, ?, ?)",
                             (violation, topic, payload))
        return int(cursor.lastrowid)

    @property
    def salvaging(self) -> bool:
        """Whether damaged copies wait to be salvaged further (`salvage_more`)."""
        return self._salvage_left

    def salvage_more(self, budget: int = salvage.BATCH_ROWS) -> bool:
        """About `budget` more messages of the damaged copies the start left unread (the outbox's limit, a full
        disk), after what the outbox holds (the sender calls it between its turns, so the outbox is held a batch
        at a time), once the outbox has more room than when the copy last stopped for want of it; a try that the
        disk still cuts short waits `SALVAGE_RETRY_SECONDS` for the next. Their violations were ended as
        interrupted at the start, so what is copied now leaves `watching` as it is: a late heartbeat of one does
        not bring it back to be ended again. Whether more is left."""
        with self._lock:
            if not self._salvage_left or self._clock() - self._salvage_tried < SALVAGE_RETRY_SECONDS or (
                    self._salvage_room is not None and self._limit_for(0) - self._size <= self._salvage_room):
                return self._salvage_left
            held = self._size
            self._salvage_left = self._salvage(watch=False, budget=budget)
            copied = self._size != held
        if not self._salvage_left:
            log.warning("outbox %s: the damaged copies' salvage is done", self.path)
        if copied:
            self.wakeup.set()
        return self._salvage_left

    def _salvage(self, watch: bool, budget: int | None = None) -> bool:
        """The damaged copies (`salvage.go_on`), copied while the outbox stays under its limit (the disk measured:
        its reserve stays free, but for `SALVAGE_ROOM`); the first message that does not fit waits for the room
        sending frees (logged once), and a disk that cuts the copy short all the same waits
        `SALVAGE_RETRY_SECONDS`. Whether more is left."""
        stopped_for_room, self._salvage_room = self._salvage_room, None
        limit, held = self._limit_for(0), self._size

        def write(topic: str, payload: bytes, kind: str, created: float) -> int:
            nonlocal held
            if len(payload) > self.configured_max_bytes:
                raise ValueError("larger than the whole outbox")  # lost, counted
            if held + len(payload) > limit:
                self._salvage_room = limit - held
                raise salvage.NoRoom
            held += len(payload)
            return self._write(topic, payload, kind, created, watch)

        try:
            taken_up, done = salvage.go_on(self._db, self.path.parent, write, LANES, budget)
        except salvage.CutShort as error:
            taken_up, done, self._salvage_tried = 1, False, self._clock()
            log.log(logging.ERROR if watch else logging.WARNING, "outbox %s: %s; the node goes on with what was "
                    "salvaged, and the rest as sending frees room", self.path, error)
        else:
            self._salvage_tried = float("-inf")
        if taken_up:
            self._sizes = self._held()
        if self._salvage_room is not None and stopped_for_room is None:
            log.warning("outbox %s: its limit (%d bytes, the disk's reserve left free) has no room for more of the "
                        "damaged copies now; the rest is salvaged as sending frees room", self.path, limit)
        return not done

    def left_open(self) -> list[tuple[str, bytes]]:
        """(topic, latest event) of each violation whose `end` never came: at a start, what the node was watching
        when it was killed or lost its power, for it to end as interrupted."""
        with self._lock:
            return [(topic, bytes(payload)) for topic, payload in
                    self._db.execute("SELECT topic, payload FROM watching ORDER BY rowid")]

    def pending(self, after_id: int = 0, limit: int = 100, kind: str | None = None) -> list[OutboxMessage]:
        """The oldest messages not yet acknowledged (of one `kind`, or all), in order, starting after `after_id`."""
        with self._lock:
            lane, params = ("kind = ? AND ", (kind,)) if kind is not None else ("", ())
            rows = self._db.execute(f"SELECT id, topic, payload, kind FROM outbox WHERE {lane}id > ? ORDER BY id "  # noqa: S608
                                    "LIMIT ?", (*params, after_id, limit)).fetchall()
        return [OutboxMessage(row[0], row[1], bytes(row[2]), row[3]) for row in rows]

    def acknowledge(self, message_id: int) -> None:
        with self._lock:
            row = self._db.execute("SELECT bytes, kind FROM outbox WHERE id = ?", (message_id,)).fetchone()
            if row is not None:
                self._on_the_disk(lambda: self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,)))
                self._sizes[row[1]] = self._sizes.get(row[1], 0) - row[0]

    def refuse(self, message_id: int, reason: str) -> None:
        """The broker (or the MQTT client) will never take this message: drop it, counted as `refused_KIND`, in one
        transaction (a count the disk refuses leaves the message, to go again at the next start, not gone
        uncounted)."""
        with self._lock:
            row = self._db.execute("SELECT bytes, kind, topic FROM outbox WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return
            self._on_the_disk(lambda: self._refuse(message_id, row[1]))
            self._sizes[row[1]] = self._sizes.get(row[1], 0) - row[0]
        log.error("refused: %s %s (%s); dropped from the outbox", row[1], row[2], reason)

    def _refuse(self, message_id: int, kind: str) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
            count(self._db, f"refused_{kind}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                self._db.execute("ROLLBACK")
            raise

    @property
    def depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    @property
    def _size(self) -> int:
        return sum(self._sizes.values())

    @property
    def size_bytes(self) -> int:
        return self._size

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if not getattr(self._db, "damage_met", True):
                outbox_file.mark_closed(self.path)

