"""Hands the outbox's messages to the MQTT client, in order, a window at a time, and deletes each once the broker
has it."""

from __future__ import annotations

import logging
import threading

from edge.outbox import ANSWER, EVENT, EVIDENCE, LANES, Outbox, OutboxMessage

log = logging.getLogger(__name__)


class OutboxSender:
    """Hands outbox messages to the MQTT client, events before evidence (each in order), at most `window`
    unacknowledged at a time (so hours of backlog stay on disk, not in memory), and deletes each once the broker has
    it (PUBACK, or PUBCOMP at QoS 2).
    Within one process every message is handed over once: paho itself resends what was in flight after a reconnect.
    After a restart of the node everything still in the outbox goes again (the server recognises a repeated
    `event_id`)."""

    def __init__(self, outbox: Outbox, client, window: int = 50, qos: int = 2) -> None:  # noqa: ANN001 - MqttClient
        """`qos` 2 (the default) delivers each message exactly once across a broker's clean restart, the broker
        keeping its half of the handshake in its persistence; 1 may repeat one, which the server recognises by
        `event_id`. A broker that crashes loses what it took since its last save (broker_config: every 30 s)."""
        self.outbox = outbox
        self.client = client
        self.window = window
        self.qos = qos
        self._last_handed = dict.fromkeys(LANES, 0)
        """The newest message of each lane handed over in this process."""
        self._in_flight = dict.fromkeys(LANES, 0)
        self.evidence_share = max(1, window // 5)
        """Evidence in flight the sender keeps room for while events wait: a flood of events never starves it."""
        self._lock = threading.Lock()
        self.refused = 0
        self.delivered = dict.fromkeys(LANES, 0)
        """Messages of each lane the broker took in this process (telemetry's `events_published`)."""
        self._lost: list[OutboxMessage] = []
        """Handed over, then lost with the broker's session: each lane starts again from the first of them."""

    def _acked(self, message: OutboxMessage, accepted: bool | None) -> None:
        if accepted is None:  # the broker lost it with its session: handed over again, in its turn
            with self._lock:
                self._in_flight[message.kind] -= 1
                self._lost.append(message)
            self.outbox.wakeup.set()
            return
        try:
            if accepted:
                self.outbox.acknowledge(message.id)
            else:  # refused (not authorised): it would never get through, so no zombie; counted in telemetry
                self.outbox.refuse(message.id, "refused by the broker")
        finally:  # a failed delete (the disk, say) leaves the message to go again after a restart
            with self._lock:
                self._in_flight[message.kind] -= 1
                if accepted:
                    self.delivered[message.kind] += 1
                else:
                    self.refused += 1
            self.outbox.wakeup.set()

    def run(self, stop: threading.Event) -> None:
        """Until `stop`; an error (the outbox's disk, say) is logged and the next turn tries again, a little later
        each time (up to 30 s), so the sender never ends while the node runs."""
        failures = 0
        while not stop.is_set():
            self.outbox.wakeup.clear()
            try:
                self._hand_over()
                if self.outbox.salvaging:  # what a full disk left of a damaged copy, as sending frees room
                    self.outbox.salvage_more()
            except Exception:
                failures += 1
                log.exception("outbox: handing messages to MQTT failed (%d in a row); trying again", failures)
                stop.wait(min(30.0, 0.5 * 2 ** failures))
                continue
            failures = 0
            self.outbox.wakeup.wait(0.5)

    def _hand_over(self) -> None:
        with self._lock:
            for message in self._lost:
                self._last_handed[message.kind] = min(self._last_handed[message.kind], message.id - 1)
            self._lost.clear()
            room = self.window - sum(self._in_flight.values())
            evidence_room = max(0, min(room, self.evidence_share - self._in_flight[EVIDENCE]))
        if room <= 0 or not self.client.connected.is_set():
            return
        answers = self.outbox.pending(after_id=self._last_handed[ANSWER], limit=room, kind=ANSWER)
        room -= len(answers)
        events = self.outbox.pending(after_id=self._last_handed[EVENT], limit=room, kind=EVENT) if room > 0 else []
        evidence = self.outbox.pending(after_id=self._last_handed[EVIDENCE], kind=EVIDENCE,
                                       limit=max(room - len(events), min(room, evidence_room))) if room > 0 else []
        for message in answers + events[:room - len(evidence)] + evidence:
            with self._lock:
                self._in_flight[message.kind] += 1
            try:
                self.client.publish(message.topic, message.payload, qos=self.qos,
                                    on_ack=lambda ok, m=message: self._acked(m, ok))
            except ValueError as error:  # the client refuses the message itself (its topic, say): never sendable
                with self._lock:
                    self._in_flight[message.kind] -= 1
                self.outbox.refuse(message.id, str(error))
            except BaseException:
                with self._lock:
                    self._in_flight[message.kind] -= 1
                raise  # not handed: the next turn tries it again
            self._last_handed[message.kind] = message.id
