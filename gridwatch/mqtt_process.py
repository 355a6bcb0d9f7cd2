"""paho's network work in a child process, for a process too busy to share its GIL with it.

A server worker's batch writer and paho's network thread share one GIL: receiving, decoding and acknowledging
thousands of messages a second took a quarter of the worker's time (py-spy), time its batch writer waited for.
`ProcessClient` stands in for paho's `Client` in `MqttClient` (the calls and callbacks it uses, nothing more): the
real client runs in a child process (gridwatch/mqtt_child.py), on a core of its own, and the two speak
over a socket pair in pickled batches, a batch of events a wake-up each way. The parent keeps every decision
(subscriptions, which handler, acknowledgements after commit, publishes awaited).

The child lives for its parent: the parent gone (killed, too), it exits at once without a DISCONNECT, so the broker
keeps the session's unacknowledged messages for the next one and sends the will, as for a killed process. The child
gone, the parent starts another, which connects and resumes the session; what the parent still awaits from the
old one (publishes not yet acknowledged) it sends again.
"""

from __future__ import annotations

import logging
import pickle
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)

RESTART_SECONDS = 1.0
"""Wait before replacing a dead child; doubled for each one that died within `SHORT_LIFE_SECONDS` of its start (a
setting the child cannot use, say), up to `RESTART_MAX_SECONDS`."""
RESTART_MAX_SECONDS = 60.0
SHORT_LIFE_SECONDS = 10.0
FORWARD_EVERY = 100
"""Received messages go up to the parent at the end of each turn of paho's loop, or every this many: while the
socket has data paho's loop keeps reading (once, 4,700 messages before its turn ended, the parent idle meanwhile)."""


@dataclass(frozen=True)
class Outcome:
    """A reason code as the parent's callbacks read it."""

    value: int
    is_failure: bool
    text: str

    def __str__(self) -> str:
        return self.text

    @classmethod
    def of(cls, reason_code: Any) -> Outcome:
        if reason_code is None or isinstance(reason_code, int):
            code = int(reason_code or 0)
            return cls(code, code != 0, mqtt.error_string(code) if code else "Success")
        return cls(int(reason_code.value), bool(reason_code.is_failure), str(reason_code))


@dataclass(slots=True)
class Received:
    """A received PUBLISH as `MqttClient` reads it."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    retain: bool
    properties: SimpleNamespace | None


@dataclass
class Settings:
    """What the child needs to make its paho client."""

    client_id: str
    manual_ack: bool
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    reconnect_delay: tuple[int, int] = (1, 120)
    will: tuple[str, bytes, int, bool] | None = None
    host: str = ""
    port: int = 0
    keepalive: int = 60
    clean_start: bool = True
    session_expiry: int = 0
    log_level: int = logging.WARNING


@dataclass
class Link:
    """One end of the socket pair, with a thread that sends what is queued in batches."""

    connection: Connection
    queued: list[tuple] = field(default_factory=list)
    wake: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def put(self, item: tuple) -> None:
        with self.wake:
            self.queued.append(item)
            if len(self.queued) == 1:
                self.wake.notify()

    def send_forever(self) -> None:
        while True:
            with self.wake:
                while not self.queued and not self.closed:
                    self.wake.wait()
                if not self.queued:
                    return
                batch, self.queued = self.queued, []
            try:
                self.connection.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
            except OSError:
                return

    def close(self) -> None:
        with self.wake:
            self.closed = True
            self.wake.notify()


class ProcessClient:
    """The subset of paho's `Client` that `MqttClient` uses, with the client itself in a child process."""

    def __init__(self, _api_version: Any, client_id: str, protocol: int = mqtt.MQTTv5, manual_ack: bool = False):
        if protocol != mqtt.MQTTv5:
            raise ValueError("ProcessClient speaks MQTT 5 only")
        self.settings = Settings(client_id=client_id, manual_ack=manual_ack,
                                 log_level=logging.getLogger().getEffectiveLevel())
        self.on_connect: Callable | None = None
        self.on_disconnect: Callable | None = None
        self.on_message: Callable | None = None
        self.on_publish: Callable | None = None
        self.on_subscribe: Callable | None = None
        self._lock = threading.Lock()
        self._next_mid = 0
        self._unacknowledged: dict[int, tuple] = {}
        """Our message id -> the publish command, until the child reports the broker's answer."""
        self._link: Link | None = None
        self._child: subprocess.Popen | None = None
        self._stopping = False
        self._restart_timer: threading.Timer | None = None
        self._short_lives = 0
        """Children in a row that died soon after their start: each waits twice as long to be replaced."""

    # ---- configuration, before loop_start ----------------------------------------------------------------------

    def username_pw_set(self, username: str, password: str | None = None) -> None:
        self.settings.username, self.settings.password = username, password

    def tls_set(self, ca_certs: str) -> None:
        ssl.create_default_context(cafile=ca_certs)  # a missing or broken CA file fails here, as with paho itself
        self.settings.ca_certs = ca_certs

    def reconnect_delay_set(self, min_delay: int = 1, max_delay: int = 120) -> None:
        self.settings.reconnect_delay = (min_delay, max_delay)

    def max_queued_messages_set(self, queue_size: int) -> None:
        if queue_size != 0:
            raise ValueError("the child never drops a publish: its queue is unbounded")

    def will_set(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> None:
        self.settings.will = (topic, payload.encode() if isinstance(payload, str) else payload, qos, retain)

    def connect_async(self, host: str, port: int = 1883, keepalive: int = 60, clean_start: bool = True,
                      properties: Properties | None = None) -> None:
        self.settings.host, self.settings.port, self.settings.keepalive = host, port, keepalive
        self.settings.clean_start = clean_start
        self.settings.session_expiry = getattr(properties, "SessionExpiryInterval", 0) if properties else 0

    # ---- running -----------------------------------------------------------------------------------------------

    def loop_start(self) -> None:
        self._spawn()

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> SimpleNamespace:
        payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        # what paho's publish refuses is refused here, in the caller, as in-process (in the child it would end it)
        if not topic:
            raise ValueError("Invalid topic.")
        mqtt.Client._raise_for_invalid_topic(topic.encode())
        if qos not in (0, 1, 2):
            raise ValueError("Invalid QoS level.")
        if len(payload) > 268435455:
            raise ValueError("Payload too large.")
        with self._lock:
            self._next_mid = self._next_mid % 2_000_000_000 + 1
            mid = self._next_mid
            command = ("publish", mid, topic, payload, qos, retain)
            if qos:
                self._unacknowledged[mid] = command
            link = self._link
        if link is not None:
            link.put(command)
        return SimpleNamespace(rc=mqtt.MQTT_ERR_SUCCESS, mid=mid)

    def ack(self, mid: int, qos: int) -> None:
        if self._link is not None:
            self._link.put(("ack", mid, qos))

    def subscribe(self, topic_filter: str, qos: int = 0, options: SubscribeOptions | None = None,
                  properties: Properties | None = None) -> tuple[mqtt.MQTTErrorCode, int]:
        identifier = getattr(properties, "SubscriptionIdentifier", None) if properties else None
        if options is not None:
            qos = options.QoS
        if qos not in (0, 1, 2) or mqtt.Client._filter_wildcard_len_check(topic_filter.encode()):
            raise ValueError(f"invalid subscription {topic_filter!r} (QoS {qos})")
        with self._lock:
            self._next_mid = self._next_mid % 2_000_000_000 + 1
            mid = self._next_mid
        command = ("subscribe", mid, topic_filter, qos,
                   identifier[0] if isinstance(identifier, list) else identifier,
                   options.retainHandling if options is not None else 0)
        if self._link is not None:
            self._link.put(command)
        return mqtt.MQTT_ERR_SUCCESS, mid

    def disconnect(self) -> None:
        if self._link is not None:
            self._link.put(("disconnect",))

    def acknowledges(self, _mid: int) -> bool:
        """The child reports the broker's acknowledgements of QoS 1 and 2 messages only
        (`BufferedClient.acknowledges`)."""
        return True

    def loop_stop(self) -> None:
        with self._lock:  # a child being started now sees this and stops itself (`_spawn`)
            self._stopping = True
            link, child, timer = self._link, self._child, self._restart_timer
        if timer is not None:
            timer.cancel()
        if link is not None:
            link.put(("stop",))
            link.close()
        if child is not None:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    # ---- the child ---------------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            child = subprocess.Popen([sys.executable, "-m", "gridwatch.mqtt_child", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        link = Link(Connection(ours.detach()))
        link.put(("settings", self.settings))
        with self._lock:
            if self._stopping:  # loop_stop came meanwhile and did not see this one
                link.put(("stop",))
                link.close()
                threading.Thread(target=link.send_forever, daemon=True).start()
                return
            self._link, self._child = link, child
            resend = list(self._unacknowledged.values())
        for command in resend:  # what the child before did not see acknowledged
            link.put(command)
        threading.Thread(target=link.send_forever, name=f"{self.settings.client_id}-to-network", daemon=True).start()
        threading.Thread(target=self._read, args=(link, child), name=f"{self.settings.client_id}-from-network",
                         daemon=True).start()

    def _read(self, link: Link, child: subprocess.Popen) -> None:
        started = time.monotonic()
        try:
            while True:
                for event in pickle.loads(link.connection.recv_bytes()):
                    try:
                        self._dispatch(event)
                    except Exception:  # a callback's bug must not stop what comes after it
                        log.exception("%s: handling %s from the network process failed", self.settings.client_id,
                                      event[0])
        except (EOFError, OSError):
            pass
        finally:
            link.close()
        if self._stopping:
            return
        self._short_lives = self._short_lives + 1 if time.monotonic() - started < SHORT_LIFE_SECONDS else 0
        wait = min(RESTART_MAX_SECONDS, RESTART_SECONDS * 2 ** max(0, self._short_lives - 1))
        log.error("%s: the MQTT network process ended (exit status %s); starting another in %.0f s",
                  self.settings.client_id, child.wait(), wait)
        if self.on_disconnect is not None:
            self.on_disconnect(self, None, None, Outcome(-1, True, "network process ended"), None)
        self._schedule_restart(wait)

    def _schedule_restart(self, wait: float) -> None:
        with self._lock:
            if not self._stopping:
                self._restart_timer = threading.Timer(wait, self._restart)
                self._restart_timer.daemon = True
                self._restart_timer.start()

    def _restart(self) -> None:
        try:
            self._spawn()
        except Exception:  # e.g. no file descriptors left: try again later, never give up on the session
            log.exception("%s: could not start the MQTT network process", self.settings.client_id)
            self._schedule_restart(RESTART_MAX_SECONDS)

    def _dispatch(self, event: tuple) -> None:
        kind = event[0]
        if kind == "messages":
            if self.on_message is not None:
                for message in event[1]:
                    self.on_message(self, None, message)
        elif kind == "published":
            with self._lock:
                self._unacknowledged.pop(event[1], None)
            if self.on_publish is not None:
                self.on_publish(self, None, event[1], event[2], None)
        elif kind == "subscribed":
            if self.on_subscribe is not None:
                self.on_subscribe(self, None, event[1], event[2], None)
        elif kind == "connected" and self.on_connect is not None:
            self.on_connect(self, None, SimpleNamespace(session_present=event[2]), event[1], None)
        elif kind == "disconnected" and self.on_disconnect is not None:
            self.on_disconnect(self, None, None, event[1], None)
