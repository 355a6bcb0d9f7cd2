"""The MQTT ingest service: events, evidence, node status and telemetry from the broker into the database.

Every message ends in exactly one place: stored, recognised as a duplicate (changes nothing), or kept in the
dead-letter table with the reason and the raw payload; one that cannot be written even there (a bug) is set aside on
disk with the reason (`set_aside`). A bad message never stops the loop.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gridwatch.contract import (
    CaseMessage,
    NodeTelemetry,
    TopicError,
    parse_node_topic,
)
from server.db import Database, database_away, met_another_worker
from server.models import (
    DeadLetter,
    EventRecord,
    utcnow,
)
from server.services import action_keys
from server.services.case_outbox import CaseOutbox, Outgoing
from server.services.cases import CaseService
from server.services.checks import (
    Rejected,
    checked_event,
    evidence_key,
    validate_from,
)
from server.services.events import POSTPONED, EventWriter, Incoming, announced_hashes
from server.services.evidence import EvidenceStore
from server.services.feedback import confirm_seen_through
from server.services.images import Image, store_images
from server.services.metrics import Metrics
from server.services.node_messages import NodeMessages
from server.services.nodes import SEEN_EVERY, load_nodes, take_telemetry, touch_node
from server.services.restarts import forget_violations_before
from server.services.statistics import PlannerStatistics
from server.services.webhooks import Webhooks

log = logging.getLogger(__name__)

WRITTEN_OR_LATER = ("stored", "duplicate", POSTPONED)
"""What an event may become other than a dead letter."""

def _kind_of(topic: str) -> str:
    """`events`, `evidence`, `status` … for metrics labels; `other` for topics outside the node tree."""
    parts = topic.split("/")
    return parts[4] if len(parts) > 4 and parts[:3] == ["gw", "v1", "nodes"] and parts[4] in _KINDS else "other"


_KINDS = {"events", "evidence", "status", "telemetry", "config", "command", "snapshot"}


def _node_of(topic: str) -> str | None:
    try:
        return parse_node_topic(topic).node_id
    except TopicError:
        return None


class Ingest:
    """Turns MQTT messages into database rows; independent of the network so it can be driven directly. Events
    are written a batch at a time, in one transaction; a batch that fails is retried one event at a time, so one
    bad event costs only itself."""

    def __init__(self, database: Database, cases: CaseService, evidence: EvidenceStore,
                 publish_case: Callable[[CaseMessage], None], clock: Callable[[], datetime] = utcnow,
                 webhooks: Webhooks | None = None, metrics: Metrics | None = None,
                 outbox: CaseOutbox | None = None) -> None:
        """`outbox`: case changes go to MQTT through it, stored with the change (the server); without one, to
        `publish_case` after the commit (tests of the case engine)."""
        self.clock = clock
        self.webhooks = webhooks
        self.outbox = outbox
        self.metrics = metrics
        self.database = database
        self.cases = cases
        self.evidence = evidence
        self.publish_case = publish_case
        self.writer = EventWriter(cases)
        self.listeners: list[Callable[[CaseMessage], None]] = []
        """Also told of every committed case change (the consoles' live feed)."""
        self._marked: dict[str, datetime] = {}
        """When this worker last marked each node seen: an event-only batch from nodes marked within
        `SEEN_EVERY` needs no node transaction at all."""
        self.counts = {"events": 0, "duplicates": 0, "evidence": 0, "dead_letters": 0, "status": 0, "telemetry": 0,
                       "set_aside": 0}
        self.node_messages = NodeMessages(database, evidence, self.counts, forget_violations_before)
        self.written_at = time.monotonic()
        """When a batch last went through (monotonic): with messages waiting, how long ingest has been stuck."""
        self.statistics = PlannerStatistics(database)

    def handle(self, topic: str, payload: bytes) -> str:
        """Returns what became of the message: `stored`, `duplicate`, `ignored` or `dead_letter`."""
        return self.handle_batch([(topic, payload)])[0]

    def handle_batch(self, messages: list[tuple[str, bytes]], patient: bool = True,
                     outcomes: list[str] | None = None) -> list[str]:
        """What became of each message, in order. The batch is written a kind at a time, each kind in one
        transaction: the events first, then their images (checked against what the events announce, so an event
        is never visible later than its evidence), then the nodes' telemetry (the latest of each node; every one is
        counted), then the rest one by one, in their order. Not `patient`, events whose case another worker is
        writing come back `postponed` (`EventWriter.write`): the caller hands them in again with a later batch.

        `outcomes`, when given, is filled in as each part commits, and a message that has one already is not
        written again: a batch retried after the database went away in its images' part neither dead-letters its
        refused events twice nor counts its events again as duplicates."""
        began = time.perf_counter()
        outcomes = [""] * len(messages) if outcomes is None else outcomes
        done = [bool(outcome) for outcome in outcomes]
        run: list[Incoming] = []
        by_kind: dict[str, list[int]] = {"evidence": [], "telemetry": [], "other": []}
        kinds = [_kind_of(topic) for topic, _payload in messages]
        for index, (topic, payload) in enumerate(messages):
            kind = kinds[index]
            if done[index]:
                continue
            if kind != "events":
                by_kind.get(kind, by_kind["other"]).append(index)
                continue
            try:
                run.append(Incoming(index, topic, payload, checked_event(parse_node_topic(topic), payload)))
            except (Rejected, TopicError) as error:
                outcomes[index] = self._dead_letter(topic, _node_of(topic), payload, str(error))
            except Exception as error:  # a bug must not lose the message or stop ingest
                log.exception("ingest failed on %s", topic)
                outcomes[index] = self._dead_letter(topic, _node_of(topic), payload,
                                                    f"internal error: {type(error).__name__}: {error}")
        # a try again: the events an earlier try handled (stored, postponed) still say what their images must be
        earlier = self._parsed(messages, [index for index, before in enumerate(done)
                                          if before and kinds[index] == "events"])
        try:
            self._store_events(run, outcomes, patient)
            # what the batch's events announce, as stored: a copy sent again (a duplicate) may announce other images,
            # and is not the event kept; the first copy is. A duplicate's images are checked against the stored event
            announced: dict[str, dict[str, str]] = {}
            for item in earlier + run:
                if outcomes[item.index] != "duplicate":
                    announced.setdefault(item.event_id, announced_hashes(item.event))
            self._store_evidence(messages, by_kind["evidence"], outcomes, announced)
            self._store_nodes(messages, by_kind["telemetry"], outcomes, {
                item.event.node_id for item in earlier + run if outcomes[item.index] == "stored"})
            for index in by_kind["other"]:
                outcomes[index] = self._handle(*messages[index])
        finally:  # what committed is counted once, in the try that wrote it, even if a later part failed
            if self.metrics is not None:
                self.metrics.messages_seen(Counter((kind, outcome) for kind, outcome, before
                                                   in zip(kinds, outcomes, done, strict=True)
                                                   if outcome and not before))
        if self.metrics is not None:
            self.metrics.batch(len(messages), time.perf_counter() - began)
        self.written_at = time.monotonic()
        self.statistics.refresh()  # never raises: the batch is committed
        return outcomes

    @staticmethod
    def _parsed(messages: list[tuple[str, bytes]], indices: list[int]) -> list[Incoming]:
        """The events at `indices` that parse (those that did not are dead letters already)."""
        parsed = []
        for index in indices:
            topic, payload = messages[index]
            try:
                parsed.append(Incoming(index, topic, payload, checked_event(parse_node_topic(topic), payload)))
            except Exception:  # noqa: S112 - refused when it came first: its dead letter is written
                continue
        return parsed

    def _store_evidence(self, messages: list[tuple[str, bytes]], indices: list[int], outcomes: list[str],
                        announced: dict[str, dict[str, str]]) -> None:
        """A batch's images in one transaction; `announced` holds the hashes the batch's own events announce."""
        checked = []
        for index in indices:
            topic, payload = messages[index]
            try:
                parsed = parse_node_topic(topic)
                checked.append(Image(index, topic, parsed, payload, *evidence_key(parsed, payload)))
            except (Rejected, TopicError) as error:
                outcomes[index] = self._dead_letter(topic, _node_of(topic), payload, str(error))
        if not checked:
            return
        try:
            results = store_images(self.database, self.evidence, checked, announced, self._letter)
        except Exception as error:  # e.g. another worker stored one of them first: one at a time, each on its own
            if database_away(error):
                raise
            log.warning("a batch of %d images failed (%s: %s); writing them one by one", len(checked),
                        type(error).__name__, error)
            for image in checked:
                outcomes[image.index] = self._handle(*messages[image.index])
            return
        for index, outcome in results.items():
            outcomes[index] = outcome
            self.counts[{"stored": "evidence", "duplicate": "duplicates"}.get(outcome, "dead_letters")] += 1

    def _store_nodes(self, messages: list[tuple[str, bytes]], indices: list[int], outcomes: list[str],
                     seen: set[str]) -> None:
        """A batch's node rows in one short transaction of their own: each node that sent events is seen, and each
        node's row takes its latest telemetry. Not in the events' transaction: a node's row is one that every
        worker writes, and held there until that long transaction commits it kept the others waiting."""
        latest: dict[str, NodeTelemetry] = {}
        good = []
        for index in indices:
            topic, payload = messages[index]
            try:
                telemetry = validate_from(parse_node_topic(topic), NodeTelemetry, payload)
            except (Rejected, TopicError) as error:
                outcomes[index] = self._dead_letter(topic, _node_of(topic), payload, str(error))
                continue
            latest[telemetry.node_id] = telemetry
            good.append(index)
        now = utcnow()
        seen = {node_id for node_id in seen
                if node_id not in self._marked or now - self._marked[node_id] >= SEEN_EVERY}
        if not good and not seen:
            return
        try:
            with self.database.session() as session:
                nodes = load_nodes(session, set(latest) | seen)
                for node_id in seen - set(latest):
                    touch_node(session, node_id, now, held=nodes)
                for node_id, telemetry in latest.items():
                    take_telemetry(session, touch_node(session, node_id, now, held=nodes), telemetry, now,
                                   forget_violations_before)
                session.commit()
            self._marked.update(dict.fromkeys(seen | set(latest), now))
        except Exception as error:
            if database_away(error):
                raise
            log.warning("a batch of %d telemetry reports failed (%s: %s); writing them one by one", len(good),
                        type(error).__name__, error)
            for index in good:
                outcomes[index] = self._handle(*messages[index])
            return
        for index in good:
            outcomes[index] = "stored"
            self.counts["telemetry"] += 1

    def _store_events(self, run: list[Incoming], outcomes: list[str], patient: bool = True,
                      retries: int = 2) -> None:
        if not run:
            return
        now = self.clock()
        try:
            with self.database.session() as session:
                results, messages = self.writer.write(session, run, now, patient)
                confirm_seen_through(session, messages)  # a camera verified a case: its detection was real
                for item, result in zip(run, results, strict=True):
                    if result not in WRITTEN_OR_LATER:
                        session.add(self._letter(item.topic, item.event.node_id, item.payload, result))
                outgoing = self.record_changes(session, messages)
                session.commit()
        except Exception as error:
            if met_another_worker(error) and retries:
                # e.g. another worker wrote a case of one of these violations between our read and our write (the
                # unique violation id refused ours): it is there now, so written again the events join it
                log.info("%d events met another worker's write (%s); writing them again", len(run),
                         type(error).__name__)
                if self.metrics is not None:
                    self.metrics.retries.inc()
                self._store_events(run, outcomes, patient, retries - 1)
                return
            if database_away(error):
                raise
            if len(run) > 1:  # find the one that cannot be written; the others go in
                log.warning("a batch of %d events failed (%s: %s); writing them one by one", len(run),
                            type(error).__name__, error)
                postponed: set[str] = set()
                for item in run:
                    if item.violation_id in postponed:  # after one postponed, its violation's later events too:
                        outcomes[item.index] = POSTPONED  # written before it, an `end` would precede its `update`
                        continue
                    self._store_events([item], outcomes, patient)
                    if outcomes[item.index] == POSTPONED:
                        postponed.add(item.violation_id)
                return
            outcomes[run[0].index] = self._single_failure(run[0], error)
            return
        for item, result in zip(run, results, strict=True):
            outcomes[item.index] = result if result in WRITTEN_OR_LATER else "dead_letter"
            if result != POSTPONED:
                self.counts[{"stored": "events", "duplicate": "duplicates"}.get(result, "dead_letters")] += 1
            if result == "stored" and self.metrics is not None:
                self.metrics.lag.observe(max(0.0, (self.clock() - item.event.observed_at).total_seconds()))
        self.announce(messages, outgoing)

    def _single_failure(self, item: Incoming, error: Exception) -> str:
        """An event that could not be written on its own: the same event arriving twice at once (another worker
        wrote it first), or a dead letter with the reason."""
        if isinstance(error, IntegrityError) and self._stored(item):
            self.counts["duplicates"] += 1
            return "duplicate"
        log.error("event %s could not be stored: %s: %s", item.event.event_id, type(error).__name__, error)
        return self._dead_letter(item.topic, item.event.node_id, item.payload,
                                 f"internal error: {type(error).__name__}: {error}")

    def _stored(self, item: Incoming) -> bool:
        with self.database.session() as session:
            return session.scalar(select(EventRecord.id).where(EventRecord.event_id == item.event_id)) \
                is not None

    def _handle(self, topic: str, payload: bytes) -> str:
        node_id = None
        try:
            parsed = parse_node_topic(topic)
            node_id = parsed.node_id
            kind = parsed.kind.value
            if kind in ("config", "command") and parsed.variant not in ("status", "response"):
                return "ignored"  # server -> node configuration or command, published by the server itself
            handler = self.node_messages.handler(kind)
            if handler is None:
                raise Rejected(f"the server does not accept {kind} messages")
            try:
                return handler(parsed, payload)
            except Exception as error:  # another worker made the same row (a node first seen, a snapshot) just now
                if not met_another_worker(error):
                    raise
                return handler(parsed, payload)
        except (Rejected, TopicError) as error:
            return self._dead_letter(topic, node_id, payload, str(error))
        except Exception as error:  # a bug must not lose the message or stop ingest
            if database_away(error):
                raise
            log.exception("ingest failed on %s", topic)
            return self._dead_letter(topic, node_id, payload, f"internal error: {type(error).__name__}: {error}")

    def sweep(self, now: datetime | None = None) -> int:
        """Escalate overdue cases and publish the changes; returns how many changed. Then forget the case actions'
        idempotency keys past their day (`action_keys.prune`), in a transaction of their own."""
        now = now or self.clock()
        with self.database.session() as session:
            messages = self.cases.sweep(session, now)
            outgoing = self.record_changes(session, messages)
            session.commit()
        self.announce(messages, outgoing)
        with self.database.session() as session:
            action_keys.prune(session, now)
            session.commit()
        return len(messages)

    def record_changes(self, session: Session, messages: list[CaseMessage]) -> list[Outgoing]:
        """Store case changes' webhook deliveries and MQTT messages in the transaction that makes them (call before
        commit), so that neither is lost with the process; hand what it returns to `announce` once committed."""
        if self.webhooks is not None:
            self.webhooks.enqueue(session, messages)
        return self.outbox.record(session, messages) if self.outbox is not None else []

    def announce(self, messages: list[CaseMessage], outgoing: list[Outgoing]) -> None:
        """Publish committed case changes on `gw/v1/cases/{category}/{case_id}`: `outgoing`, the rows
        `record_changes` stored, go right away through the outbox, which deletes each once the broker has it."""
        if self.outbox is not None:
            self.outbox.send(outgoing)
        for message in messages:
            if self.outbox is None:
                self.publish_case(message)
            for listener in self.listeners:
                listener(message)

    # ---- message kinds --------------------------------------------------------------------------------------------

    # ---- helpers --------------------------------------------------------------------------------------------------

    @staticmethod
    def _letter(topic: str, node_id: str | None, payload: bytes, reason: str) -> DeadLetter:
        log.warning("dead letter on %s: %s", topic, reason)
        # text columns of PostgreSQL hold no NUL; the raw payload (bytes) keeps everything
        return DeadLetter(topic=topic.replace("\x00", "\\0"), node_id=node_id[:64] if node_id else None,
                          reason=reason.replace("\x00", "\\0"), payload=payload)

    def set_aside(self, topic: str, payload: bytes, error: Exception) -> str:
        """The last resort for a message that fails on its own for a reason other than the database being away
        (a bug, a row the database refuses even as a dead letter): kept on disk with the reason
        (`EvidenceStore.set_aside`), so the caller can acknowledge it and go on."""
        reason = f"{type(error).__name__}: {error}"
        kept = self.evidence.set_aside(topic, payload, reason)
        log.error("a message on %s could not be written even as a dead letter (%s); kept in %s", topic, reason, kept)
        self.counts["set_aside"] += 1
        if self.metrics is not None:
            self.metrics.messages_seen({(_kind_of(topic), "set_aside"): 1})
        return "set_aside"

    def _dead_letter(self, topic: str, node_id: str | None, payload: bytes, reason: str) -> str:
        with self.database.session() as session:
            session.add(self._letter(topic, node_id, payload, reason))
            session.commit()
        self.counts["dead_letters"] += 1
        return "dead_letter"
