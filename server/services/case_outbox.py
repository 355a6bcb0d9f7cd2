"""Case changes on MQTT (`gw/v1/cases/{category}/{case_id}`), sent from a stored outbox (README: Case changes on
MQTT).

Each change's message is written to `case_messages` in the transaction that makes the change, like its webhook
deliveries, and deleted once the broker acknowledged it: paho's memory alone lost a change for good when the worker
restarted while the broker was away, or died between the commit and the publish. A worker hands its own messages
to MQTT right after its commit (`send`), each row held by it (`held_by`, its MQTT client id), and only while its
client is connected; a sender thread takes over what no live worker holds (its own rows from before a restart, a
worker's gone for `LEASE_SECONDS`, rows written behind a case's earlier unsent one), a case's messages always in the
order they were made, each row claimed first (`SKIP LOCKED` on PostgreSQL) so two workers never both send it.
Delivery is at least once: integrators drop a message whose `case_id` and `seq` they have handled already."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from gridwatch.contract import CaseAction, CaseMessage, case_topic
from server.db import Database, begin_writing, first_line
from server.models import CaseOutboxMessage, utcnow

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
"""How long a worker's hold on its messages lasts unless renewed (every quarter of it while the worker lives): a
worker gone for good has its unsent messages taken over by the others this long after."""
POLL_SECONDS = 1.0
"""How often a worker looks for messages it may take over when nothing woke it."""
WINDOW = 1000
"""Messages the sender hands to MQTT before the broker acknowledges them: a long outage's backlog stays in the
table, not in memory. (What a worker's own live path sends while connected is not held back; cut off, it hands
nothing over, and the sender takes it from the table once connected again.)"""
SCAN = 2000
"""Rows read in one look for messages to take."""

class Outgoing(NamedTuple):
    """A message `record` wrote, to hand to `send` once committed."""

    id: int
    case_id: int
    topic: str
    payload: str
    held_by: str | None


Entry = tuple[int, int, str, str]
"""(row id, case id, topic, payload) of a message in hand."""


class Publisher(Protocol):
    connected: threading.Event

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                on_ack: Callable[[bool | None], None] | None = None) -> None: ...


ANSWERS_WAIT = 1.0
"""How long the sender lets the broker's answers gather before it deletes their rows in a transaction of its own:
meanwhile the next transaction that records case changes deletes them with its own writes (`record`), sparing
SQLite's one writer a transaction of its own every few milliseconds under load."""


class Recorded(list):
    """The rows `record` wrote, and the acknowledged rows it deleted in the same transaction (`deleted`)."""

    def __init__(self, rows: list, deleted: tuple[int, ...]) -> None:
        super().__init__(rows)
        self.deleted = deleted


class CaseOutbox:
    def __init__(self, database: Database, sender: str, clock: Callable[[], datetime] = utcnow,
                 lease_seconds: float = LEASE_SECONDS, poll_seconds: float = POLL_SECONDS) -> None:
        """`sender` is this worker's MQTT client id: unique per worker, and the same after a restart, so a worker
        takes back at once what it held before."""
        self.database = database
        self.sender = sender
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.client: Publisher | None = None
        """The MQTT client (`attach`); without one nothing is sent and the rows wait."""
        self.wakeup = threading.Event()
        self._lock = threading.RLock()
        self._handed: dict[int, Entry] = {}
        """Messages with the MQTT client, until their rows are deleted (their acknowledgement came)."""
        self._lost: list[Entry] = []
        """Handed, then lost with the broker's session: handed again before anything else."""
        self._answers: deque[tuple[int, bool | None]] = deque()
        """(row id, the broker's answer) as they come, from the client's thread; taken in under the lock."""
        self._acknowledged: set[int] = set()
        """Rows the broker has (or refused for good), still to delete."""
        self._look = True
        """Whether the next round looks for messages to take (at start, after a reconnection, for rows written
        behind another)."""
        self._renewed_at: datetime | None = None
        """When this worker last renewed its hold (connected) or released it (cut off)."""
        self._cut_off_since: datetime | None = None
        """When the sender first found the MQTT client not connected, since it last was."""
        self._looked_at = 0.0
        """When the sender last looked (monotonic)."""
        self._stop = threading.Event()
        self._closed = True
        self._thread: threading.Thread | None = None

    # ---- in the transaction of the change ----------------------------------------------------------------------

    def record(self, session: Session, messages: Sequence[CaseMessage]) -> list[Outgoing]:
        """Write `messages` to the outbox inside the caller's transaction (before its commit); hand the rows to
        `send` once it committed. A case's message is held by this worker, to send at once, unless an earlier one of
        its case is still waiting for another sender: then it waits its turn (the sender thread takes it). Stopped
        or cut off from the broker, this worker holds none: whichever worker is connected takes them."""
        if not messages:
            return []
        with self._lock:
            self._take_answers()
            done = tuple(sorted(self._acknowledged))
        if done:  # what the broker has, deleted here rather than in a write transaction of the sender's own
            session.execute(delete(CaseOutboxMessage).where(CaseOutboxMessage.id.in_(done)))
        if not self.sending:
            return Recorded(self._add(session, messages, behind=None), done)
        # a case this transaction opened (`collect`) has no earlier message: a batch of new cases asks nothing
        case_ids = {message.case_id for message in messages} - {
            message.case_id for message in messages if message.action is CaseAction.COLLECT}
        earlier = session.execute(select(CaseOutboxMessage.id, CaseOutboxMessage.case_id)
                                  .where(CaseOutboxMessage.case_id.in_(case_ids))).all() if case_ids else []
        with self._lock:  # (one lost with the broker's session is handed again before anything else: in hand)
            self._take_answers()
            in_hand = set(self._handed) | {entry[0] for entry in self._lost}
        behind = {case_id for row_id, case_id in earlier if row_id not in in_hand}
        return Recorded(self._add(session, messages, behind), done)

    def _add(self, session: Session, messages: Sequence[CaseMessage],
             behind: set[int] | None) -> list[Outgoing]:
        """The rows, held by this worker but those of a case in `behind` (None: none held)."""
        now = self.clock()
        values = []
        for message in messages:
            held = behind is not None and message.case_id not in behind
            values.append({"case_id": message.case_id, "topic": case_topic(message.category, message.case_id),
                           "payload": message.model_dump_json(), "created_at": now,
                           "held_by": self.sender if held else None, "held_until": now + self.lease if held else None})
        # one statement for them all, not an ORM object each: a batch of new cases writes three rows a case
        ids = session.scalars(insert(CaseOutboxMessage).returning(CaseOutboxMessage.id, sort_by_parameter_order=True),
                              values).all()
        return [Outgoing(row_id, value["case_id"], value["topic"], value["payload"], value["held_by"])
                for row_id, value in zip(ids, values, strict=True)]

    # ---- after the commit ------------------------------------------------------------------------------------------

    def send(self, rows: Iterable[Outgoing]) -> None:
        """Hand this worker's committed messages to MQTT now; those written behind another wake the sender."""
        if deleted := getattr(rows, "deleted", ()):
            self._forget(deleted)
        rows = list(rows)
        if not rows:
            return
        mine = [(row.id, row.case_id, row.topic, row.payload) for row in rows if row.held_by == self.sender]
        if len(mine) < len(rows):
            self.wake(look=True)
        if self._closed and mine:  # written as it stopped: another worker sends them
            self._release([entry[0] for entry in mine])
            return
        if not self.sending:  # cut off: the rows wait in the table, not in paho's memory; taken on reconnecting
            return
        try:
            with self._lock:
                self._take_answers()
                self._hand_lost_and(mine)
        except Exception as error:  # the sender takes them up, in order, in its next round
            log.warning("case messages not handed to MQTT (%s: %s); the sender tries again", type(error).__name__,
                        error)
            self.wake(look=True)

    @property
    def sending(self) -> bool:
        """Started, and its MQTT client connected: what this worker holds goes out."""
        client = self.client
        return not self._closed and client is not None and client.connected.is_set()

    def wake(self, look: bool = False) -> None:
        """Let the sender run a round now; `look`: and look for messages to take (after a reconnection, say)."""
        if look:
            self._look = True
        self.wakeup.set()

    # ---- the sender thread -----------------------------------------------------------------------------------------

    def attach(self, client: Publisher) -> None:
        self.client = client

    def start(self) -> None:
        self._closed = False
        self._stop.clear()
        self._look = True
        self._thread = threading.Thread(target=self._run, name="case-outbox", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop handing messages to MQTT (before the client disconnects); what is written from now on is held by
        none."""
        self._closed = True
        self._stop.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending; once the MQTT client is disconnected (paho's memory of them gone), the rows the broker
        acknowledged are deleted and the others released, so that any worker sends them at once: a worker that
        replaces this one under another client id waited a lease for them, and every later change of their cases
        behind them. (Sent again should the broker have had one: a duplicate, never a loss.)"""
        self.close(timeout)
        try:
            self._delete_acknowledged()
        except Exception as error:  # sent again by the next start: a duplicate, not a loss
            log.warning("acknowledged case messages not deleted at the stop (%s)", first_line(error))
        try:
            self._release()
        except Exception as error:  # the lease runs out instead
            log.warning("case messages not released at the stop (%s); other workers take them once their lease "
                        "runs out", first_line(error))

    @property
    def in_hand(self) -> int:
        """Messages with the MQTT client, not yet deleted."""
        with self._lock:
            return len(self._handed)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.run_round()
                failures = 0
            except Exception as error:  # the database away, say: the next round tries again, a little later
                failures += 1
                log.warning("case outbox round failed (%d in a row): %s: %s", failures, type(error).__name__,
                            first_line(error))
                self._look = True
                self._stop.wait(min(30.0, 0.5 * 2 ** failures))
                continue
            if self.wakeup.wait(self.poll_seconds):  # answers came: deleted together, mostly by the next
                self._stop.wait(0.05 if self._look else ANSWERS_WAIT)  # transaction recording case changes
            self.wakeup.clear()

    def run_round(self) -> None:
        """Delete what the broker acknowledged, renew this worker's hold, and take and send what may be taken."""
        with self._lock:
            self._take_answers()
            self._hand_lost_and([])
        self._delete_acknowledged()
        now = self.clock()
        self._keep_hold(now)
        due = self._look or time.monotonic() - self._looked_at >= self.poll_seconds
        if due and self.sending:
            self._look, self._looked_at = False, time.monotonic()
            self._take_and_send(now)

    def _keep_hold(self, now: datetime) -> None:
        """Renew this worker's hold every quarter of a lease while its MQTT client is connected, and only then: a
        worker cut off from the broker whose database still answered (expired credentials, an ACL change for its
        client id, one broker node down) held its cases' messages for ever, and every later change of those cases
        behind them. Cut off, its hold lapses, and a lease on it is released (again every quarter of a lease, for
        a row committed as the cut came), so that a connected worker sends them, each case's in order."""
        if self.sending:
            if self._cut_off_since is not None:  # connected again: renewed at once
                self._cut_off_since, self._renewed_at = None, None
            if self._renewed_at is None or now - self._renewed_at >= self.lease / 4:
                self._update_hold(held_until=now + self.lease)
                self._renewed_at = now
            return
        if self._cut_off_since is None:
            self._cut_off_since, self._renewed_at = now, None
        elif now - self._cut_off_since >= self.lease and (
                self._renewed_at is None or now - self._renewed_at >= self.lease / 4):
            if released := self._release():
                log.warning("case outbox: cut off from the broker since %s; %d case messages released to the "
                            "connected workers", self._cut_off_since.isoformat(timespec="seconds"), released)
            self._renewed_at = now

    def _release(self, row_ids: list[int] | None = None) -> int:
        """Leave this worker's rows (or those of `row_ids` it holds) to any worker; how many. paho may still send
        one it had in hand: a duplicate at most, never a loss."""
        return self._update_hold(row_ids, held_by=None, held_until=None)

    def _update_hold(self, row_ids: list[int] | None = None, **values: object) -> int:
        statement = update(CaseOutboxMessage).where(CaseOutboxMessage.held_by == self.sender)
        if row_ids is not None:
            statement = statement.where(CaseOutboxMessage.id.in_(row_ids))
        with self.database.session() as session:
            changed = session.execute(statement.values(**values)).rowcount
            session.commit()
        return changed

    def _take_and_send(self, now: datetime) -> None:
        with self._lock:
            room = WINDOW - len(self._handed)
            handed = set(self._handed)
        if room <= 0:
            self._look = True  # the next round, once answers made room
            return
        columns = (CaseOutboxMessage.id, CaseOutboxMessage.case_id, CaseOutboxMessage.held_by,
                   CaseOutboxMessage.held_until)
        with self.database.session() as session:
            seen = session.execute(select(*columns).order_by(CaseOutboxMessage.id).limit(SCAN)).all()
        wanted = self._takeable(seen, handed, now, room)
        if not wanted:
            return
        with self.database.session() as session:
            begin_writing(session)
            # as they are now, and only those no other sender is claiming this moment
            locked = session.scalars(select(CaseOutboxMessage).where(CaseOutboxMessage.id.in_(wanted))
                                     .order_by(CaseOutboxMessage.id).with_for_update(skip_locked=True)).all()
            fresh = {row.id: (row.id, row.case_id, row.held_by, row.held_until) for row in locked}
            current = [fresh.get(row[0], row) for row in seen]
            taken = set(self._takeable(current, handed, now, room, claimable=set(fresh)))
            entries = []
            for row in locked:
                if row.id in taken:
                    row.held_by, row.held_until = self.sender, now + self.lease
                    entries.append((row.id, row.case_id, row.topic, row.payload))
            session.commit()
        if entries:
            log.info("case outbox: sending %d waiting case messages", len(entries))
        with self._lock:
            self._take_answers()
            self._hand_lost_and(entries)

    def _takeable(self, rows: Iterable[tuple[int, int, str | None, datetime | None]], handed: set[int],
                  now: datetime, room: int, claimable: set[int] | None = None) -> list[int]:
        """The ids, in order, that this worker may send now: in each case, from its first row not already in hand,
        those free (no live holder but this worker) until one is not (held by a live worker, or not `claimable`)."""
        blocked: set[int] = set()
        taken: list[int] = []
        for row_id, case_id, held_by, held_until in rows:
            if case_id in blocked or row_id in handed:
                continue
            free = held_by is None or held_by == self.sender or held_until is None or held_until < now
            if not free or (claimable is not None and row_id not in claimable):
                blocked.add(case_id)
                continue
            taken.append(row_id)
            if len(taken) >= room:
                break
        return taken

    # ---- with the MQTT client ------------------------------------------------------------------------------------

    def _hand_lost_and(self, entries: Iterable[Entry]) -> None:
        """Under the lock: hand to MQTT what the broker lost with its session, then `entries`; cut off from the
        broker, nothing (what was lost waits in hand until the client is connected again, before anything else;
        `entries` wait in the table)."""
        if not self.sending:
            return
        self._hand(self._lost_in_order())
        self._hand(entries)

    def _hand(self, entries: Iterable[Entry]) -> None:
        """Under the lock: publish each entry not in hand already, in order; an error stops the rest (the sender
        takes them up in their turn)."""
        client = self.client
        if client is None or self._closed:
            return
        for entry in sorted(entries):
            row_id = entry[0]
            if row_id in self._handed:
                continue
            client.publish(entry[2], entry[3].encode(), qos=1,
                           on_ack=lambda accepted, row_id=row_id: self._answered(row_id, accepted))
            self._handed[row_id] = entry

    def _answered(self, row_id: int, accepted: bool | None) -> None:
        """The broker's answer (the client's thread: no lock taken here, `_take_answers` takes it in)."""
        self._answers.append((row_id, accepted))
        self.wakeup.set()

    def _take_answers(self) -> None:
        """Under the lock."""
        while self._answers:
            row_id, accepted = self._answers.popleft()
            if accepted is None:  # lost with the broker's session: sent again, before any later one of its case
                if (entry := self._handed.pop(row_id, None)) is not None:
                    self._lost.append(entry)
                continue
            if accepted is False:  # refused (not authorised): it would never get through
                log.error("the broker refused case message %d; dropped", row_id)
            self._acknowledged.add(row_id)

    def _lost_in_order(self) -> list[Entry]:
        lost, self._lost = self._lost, []
        return lost

    def _delete_acknowledged(self) -> None:
        with self._lock:
            self._take_answers()
            done = sorted(self._acknowledged)
        if not done:
            return
        with self.database.session() as session:
            session.execute(delete(CaseOutboxMessage).where(CaseOutboxMessage.id.in_(done)))
            session.commit()
        self._forget(done)

    def _forget(self, deleted: Iterable[int]) -> None:
        with self._lock:
            for row_id in deleted:
                self._acknowledged.discard(row_id)
                self._handed.pop(row_id, None)
