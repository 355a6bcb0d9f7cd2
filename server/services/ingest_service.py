"""The server's broker connection: subscribes in on_connect, hands messages to `Ingest` in batches, acknowledges
each message to the broker only once what it carried is committed, and publishes case changes.

Messages wait in a queue for the batch worker: it takes what has arrived (up to `batch_size`; after a quiet spell
waiting at most `batch_wait_seconds` for more once one is there), writes it in one transaction and then
acknowledges every message of the batch. Events whose case another worker is writing at that moment come back
postponed: they are kept, unacknowledged, and written with the next batch (after `PATIENCE` such turns, that batch
waits for the other worker instead), so that workers sharing a stream write side by side rather than queue behind
each other's locks. paho's network work (packets in and out, acknowledgements) runs in a child process
(gridwatch.mqtt_process), so the batch writer does not share the process's GIL with it. A server killed mid-batch has
acknowledged none of it, so the broker sends it again (its session outlives the process) and idempotent ingest
stores each event once. Stopping finishes the batch in hand.

Several workers share the stream with `share_group`: the node tree is read through the MQTT 5 shared subscription
`$share/GROUP/gw/v1/nodes/#`, so the broker gives each message to one worker of the group. Retained state (node
status, config status, snapshots) is not given to shared subscriptions when they are made, so every worker also
subscribes to those topics itself and handles them (idempotently); their copies on the shared stream are skipped.
Given a `case_outbox`, the case changes go out through it (server/services/case_outbox.py): stored with the change,
sent right after the commit, deleted once the broker has them, and sent again after a restart or a reconnection if
the broker did not take them. Given a `case_feed` (the consoles' live feed), a worker reads every case change on
`gw/v1/cases/#`, its own and the other workers', and hands it on, from its first console on (`follow_cases`): a
worker no console has opened pays nothing for it.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from gridwatch.contract import SUBSCRIBE_ALL_NODES, TOPIC_ROOT, CaseMessage, case_topic
from gridwatch.mqtt import MqttClient, topic_filter_pattern
from server.db import database_away, first_line
from server.services.case_outbox import CaseOutbox
from server.services.events import POSTPONED
from server.services.ingest import Ingest

log = logging.getLogger(__name__)

RETAINED_STATE = (f"{TOPIC_ROOT}/nodes/+/status", f"{TOPIC_ROOT}/nodes/+/config/status",
                  f"{TOPIC_ROOT}/nodes/+/snapshot/+")
"""What nodes publish retained: every worker reads it itself."""
_RETAINED_STATE = topic_filter_pattern(*RETAINED_STATE)
CASES = f"{TOPIC_ROOT}/cases/#"
SWITCH_INTERVAL_SECONDS = 0.0005
STOP_SECONDS = 30.0
"""How long a stop waits for the batch in hand (a database slow or away holds it) before disconnecting."""
PATIENCE = 4
"""Batches a postponed event may be set aside for before a batch waits for the worker holding its case."""


class IngestService(MqttClient):
    def __init__(self, ingest: Ingest, client_id: str, host: str, port: int, username: str,
                 password: str | None, batch_size: int = 500, batch_wait_seconds: float = 0.02,
                 share_group: str | None = None, tls_ca_file: Path | None = None,
                 case_feed: Callable[[str], None] | None = None, case_outbox: CaseOutbox | None = None) -> None:
        super().__init__(client_id=client_id, host=host, port=port, username=username, password=password,
                         session_expiry_seconds=24 * 3600, manual_ack=True, tls_ca_file=tls_ca_file,
                         network_process=True, retained_once=True)
        self.ingest = ingest
        self.batch_size = batch_size
        self.batch_wait = batch_wait_seconds
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._halt = threading.Event()
        self._received_at_stop = 0
        self._disconnected = False
        self._worker = threading.Thread(target=self._run, name="ingest-batches", daemon=True)
        ingest.publish_case = self.publish_case
        if share_group is None:
            self.subscribe(SUBSCRIBE_ALL_NODES, self._received)
        else:
            self.subscribe(f"$share/{share_group}/{SUBSCRIBE_ALL_NODES}", self._shared)
            for topic_filter in RETAINED_STATE:
                self.subscribe(topic_filter, self._received)
        self.case_feed = case_feed
        self.case_outbox = case_outbox
        if case_outbox is not None:
            case_outbox.attach(self)

    def on_connected(self) -> None:
        if self.case_outbox is not None:  # what waits in the outbox goes now (paho resends what it had in hand)
            self.case_outbox.wake(look=True)

    def follow_cases(self, wait: float = 2.0) -> None:
        """Read the case changes back from the broker for the `case_feed` from now on; the first call waits up to
        `wait` seconds for the broker to confirm it (any thread)."""
        if self.case_feed is not None and CASES not in self._subscriptions:
            self.subscribe(CASES, self._case_changed, wait=wait)

    def _case_changed(self, message: mqtt.MQTTMessage) -> None:
        self.ack(message)
        if self.case_feed is not None:
            self.case_feed(message.payload.decode("utf-8", errors="replace"))

    def _shared(self, message: mqtt.MQTTMessage) -> None:
        if _RETAINED_STATE.fullmatch(message.topic):
            self.ack(message)  # this worker's own subscription to it delivers it too
        else:
            self._received(message)

    def _received(self, message: mqtt.MQTTMessage) -> None:
        if not self.inbox.unfinished_tasks:  # the first after a quiet spell: ingest has been waiting, not stuck
            self.ingest.written_at = time.monotonic()  # (the health check's `stalled` counts from here)
        self.inbox.put(message)

    def start(self, wait_seconds: float | None = 10.0) -> None:
        # the thread taking messages from the network process and the batch writer share the GIL: the writer gives
        # it up at every database round trip and image hash, and with Python's default 5 ms switch interval it then
        # waits up to that long to get it back from a thread handing over thousands of messages a second
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
        self._worker.start()
        if self.case_outbox is not None:
            self.case_outbox.start()
        super().start(wait_seconds)

    def _next_batch(self, room: int, idle: bool) -> list[mqtt.MQTTMessage]:
        """Up to `room` messages: what is waiting. `idle` (nothing else in hand), it waits up to 0.2 s for the
        first, and if nothing else is waiting then, up to `batch_wait` for more, so that a burst after a quiet
        spell is written in one go. With messages waiting, it never waits: what arrives while a batch is written is
        the next batch, so batches grow with the load by themselves and a busy worker never idles."""
        batch: list[mqtt.MQTTMessage] = []
        if idle:
            try:
                batch.append(self.inbox.get(timeout=0.2))
            except queue.Empty:
                return []
        deadline = time.monotonic() + (self.batch_wait if idle and self.inbox.empty() else 0.0)
        while len(batch) < room:
            try:
                batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        carried: list[tuple[mqtt.MQTTMessage, int]] = []  # postponed messages, and how many times
        left: int | None = None  # once stopping: how many of the messages received before the stop are still to write
        while True:
            if left is None and self._halt.is_set():
                left = self._received_at_stop
            room = max(1, self.batch_size - len(carried))
            if left is not None:  # the broker goes on sending as batches are acknowledged: what came later waits
                room = min(room, left)  # for the next session, unacknowledged
            fresh = self._next_batch(room, idle=not carried) if room > 0 else []
            if left is not None:
                left -= len(fresh)
            batch = carried + [(message, 0) for message in fresh]
            if not batch:
                if left is not None:
                    return
                continue
            outcomes = self._write([message for message, _ in batch],  # stopping, a batch waits for its locks
                                   patient=left is not None or any(turns >= PATIENCE for _, turns in batch))
            carried = []
            for (message, turns), outcome in zip(batch, outcomes or [None] * len(batch), strict=True):
                if outcome == POSTPONED:
                    carried.append((message, turns + 1))
                    continue
                if outcomes is not None:
                    self.ack(message)
                self.inbox.task_done()

    def _write(self, batch: list[mqtt.MQTTMessage], patient: bool) -> list[str] | None:
        """Writes the batch, trying again (1 s, 2 s, … 30 s apart) while the database is away (Ingest dead-letters
        what it cannot use); a batch that fails for another reason is written a message at a time
        (`_one_by_one`). None if the server stopped first; the batch is then unacknowledged and the broker sends it
        again to the next session."""
        wait = 1.0
        outcomes = [""] * len(batch)  # filled in as each part of the batch commits; a try again skips those
        while True:
            try:
                try:
                    return self.ingest.handle_batch([(message.topic, message.payload) for message in batch], patient,
                                                    outcomes)
                except Exception as error:
                    if database_away(error):
                        raise
                    log.exception("a batch of %d messages failed; writing them one by one", len(batch))
                    return self._one_by_one(batch, patient, outcomes)
            except Exception as error:
                log.error("a batch of %d messages could not be written (%s: %s); trying again in %.0f s",
                          len(batch), type(error).__name__, first_line(error), wait)
                if self._halt.wait(wait):
                    return None
                wait = min(30.0, wait * 2)

    def _one_by_one(self, batch: list[mqtt.MQTTMessage], patient: bool, outcomes: list[str]) -> list[str]:
        """A batch that failed for a reason other than the database being away: each message on its own, so that
        one cannot hold the others up (retried as a whole, it would be retried for ever); one that fails on its
        own too is set aside on disk with the reason (`Ingest.set_aside`) and acknowledged. The messages the batch
        had already written (`outcomes`) keep their outcome."""
        postponed: set[str] = set()  # after one postponed message, the later ones of its topic too, in order
        for index, message in enumerate(batch):  # (a violation's messages share their topic)
            if outcomes[index]:
                pass
            elif message.topic in postponed:
                outcomes[index] = POSTPONED
            else:
                try:
                    outcomes[index] = self.ingest.handle_batch([(message.topic, message.payload)], patient)[0]
                except Exception as error:
                    if database_away(error):
                        raise  # the rest of the batch again once it is back
                    outcomes[index] = self.ingest.set_aside(message.topic, message.payload, error)
            if outcomes[index] == POSTPONED:
                postponed.add(message.topic)
        return outcomes

    def drain(self, timeout: float) -> bool:
        """Wait until every received message is written and acknowledged; False if time ran out."""
        deadline = time.monotonic() + timeout
        while self.inbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.inbox.unfinished_tasks

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Finish the batch in hand and the messages received before the stop, then disconnect. What the broker
        sends meanwhile (it goes on as batches are acknowledged) is left unacknowledged: the broker sends it again
        to the next session. Nothing is published once disconnected."""
        self._received_at_stop = self.inbox.qsize()
        self._halt.set()
        self._worker.join(STOP_SECONDS)
        if self._worker.is_alive():
            log.warning("the batch in hand was not written within %.0f s of the stop; what it holds is not "
                        "acknowledged, and the broker sends it again to the next session", STOP_SECONDS)
        self.flush(5)  # the case changes and acknowledgements of the last batch
        if self.case_outbox is not None:  # nothing more handed to MQTT; what is written from now on is held by none
            self.case_outbox.close()
        self._disconnected = True
        super().stop(final)
        if self.case_outbox is not None:  # disconnected: deletes what the broker acknowledged, releases the rest
            self.case_outbox.stop()

    def publish_case(self, message: CaseMessage) -> None:
        if self._disconnected:  # a batch outlasting the stop: its webhooks are queued, its MQTT message cannot go
            log.warning("case %s changed after the disconnect: not published on MQTT", message.case_id)
            return
        self.publish(case_topic(message.category, message.case_id), message.model_dump_json().encode(), qos=1)
