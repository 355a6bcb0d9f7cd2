"""One paho-mqtt client wrapper for every GridWatch process.

Subscriptions are (re)made inside `on_connect`, so they survive broker restarts (Frigate's users' top complaint);
QoS 1 publishes are counted until the broker acknowledges them, so a process can flush before it stops.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gridwatch import mqtt_properties
from gridwatch.config_files import ConfigError
from gridwatch.mqtt_process import ProcessClient
from gridwatch.mqtt_reads import BufferedClient

log = logging.getLogger(__name__)
mqtt_properties.install()  # paho's MQTT 5 properties, cheap to receive

MessageHandler = Callable[[mqtt.MQTTMessage], None]


@functools.cache
def topic_filter_pattern(*topic_filters: str) -> re.Pattern[str]:
    """One compiled pattern whose `fullmatch` says whether any of the MQTT topic filters matches a topic name (`+`
    one level, `#` this level and those below, neither a `$...` topic; a `$share/GROUP/` prefix is dropped). paho's
    `topic_matches_sub` builds a matcher tree at every call: a worker asked it three times a message and spent a
    fifth of its network thread there."""
    alternatives = []
    for topic_filter in topic_filters:
        if topic_filter.startswith("$share/"):
            topic_filter = topic_filter.split("/", 2)[2]
        pattern = r"(?!\$)" if topic_filter[:1] in ("+", "#") else ""
        for index, level in enumerate(topic_filter.split("/")):
            separator = "/" if index else ""
            if level == "#":
                pattern += "(?:/.*)?" if index else ".*"
            else:
                pattern += separator + ("[^/]*" if level == "+" else re.escape(level))
        alternatives.append(f"(?:{pattern})")
    return re.compile("|".join(alternatives), re.DOTALL)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def check_ca_file(path: Path, key: str) -> None:
    """ConfigError naming `key` unless `path` holds CA certificates TLS can load."""
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"{key} {path}: cannot load the broker's CA certificate from it ({why})") from None


class MqttClient:
    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        keepalive: int = 30,
        session_expiry_seconds: int = 0,
        manual_ack: bool = False,
        tls_ca_file: Path | None = None,
        network_process: bool = False,
        retained_once: bool = False,
    ) -> None:
        """`session_expiry_seconds` > 0 keeps the broker session (subscriptions, queued QoS 1 messages) while the
        client is away, with clean start off. `manual_ack`: a received QoS 1 message is acknowledged only by
        `ack(message)`, so one the process dies holding is sent again by the broker. `tls_ca_file`: connect with
        TLS, trusting the broker's certificate only if this CA signed it (and it names the host).
        `network_process`: paho's network work runs in a child process (gridwatch.mqtt_process), for a process
        whose own work would otherwise share its GIL with it. `retained_once`: a retained message comes when a
        subscription is made, not again each time a kept session reconnects (MQTT 5 Retain Handling 1), for a
        client that has handled it already (the server: else every restart handled every node's status and
        snapshot again)."""
        self.client_id = client_id
        self.host, self.port, self.keepalive = host, port, keepalive
        self.session_expiry_seconds = session_expiry_seconds
        self.retain_handling = 1 if retained_once else 0
        network = ProcessClient if network_process else BufferedClient
        self._client = network(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                               manual_ack=manual_ack)
        if username:
            self._client.username_pw_set(username, password)
        if tls_ca_file is not None:  # TLS, the broker's certificate checked against this CA and the host name
            check_ca_file(tls_ca_file, "tls_ca_file")
            self._client.tls_set(ca_certs=str(tls_ca_file))
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.max_queued_messages_set(0)  # never drop a publish while the broker is away
        self._client.suppress_exceptions = True  # and should a callback still raise, paho's thread goes on
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._awaiting_subacks: set[int] = set()
        """Message ids of the SUBSCRIBEs made on connecting: `connected` is set once the broker answered them all."""
        self._suback_waiters: dict[int, threading.Event] = {}
        """Message id -> what a `subscribe` made while connected waits on."""
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        """Topic filter -> (QoS, handler); each filter is subscribed with its own MQTT 5 subscription identifier
        (its position here, from 1), so a message matching several filters reaches the handler of the one that
        delivered it."""
        self._pending: dict[int, tuple[str, Callable[[bool], None] | None]] = {}
        """Message id -> (topic, callback) of QoS 1 publishes the broker has not acknowledged yet."""
        self._early_acks: dict[int, object] = {}
        self._forgotten: set[int] = set()
        """Message ids of publishes the broker lost with its session (`_session_lost`): their late answers are not
        acknowledgements."""
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._stopping = False
        self.refused: deque[tuple[str, str]] = deque(maxlen=100)
        """(topic, reason) of the last publishes the broker refused (e.g. not authorised); only the last 100, since
        a broker refusing every event of a node would otherwise fill the memory in months."""

    # ---- hooks for subclasses -------------------------------------------------------------------------------------

    def on_connected(self) -> None:
        """Called on every (re)connection, after subscriptions were renewed."""

    def on_disconnected(self) -> None:
        """Called on every loss of connection, before paho reconnects."""

    # ---- public API -----------------------------------------------------------------------------------------------

    def set_will(self, will: Will) -> None:
        self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1, wait: float = 0.0) -> bool:
        """Also takes MQTT 5 shared subscriptions, `$share/GROUP/filter`: the broker gives each message to one
        client of the group. Connected, waits up to `wait` seconds for the broker's acknowledgement: True once it
        came (what is published from then on reaches us); not connected, the subscription is made on connecting."""
        acknowledged = threading.Event()
        with self._lock:
            self._subscriptions[topic_filter] = (qos, handler)
            if not self.connected.is_set():
                return False
            self._suback_waiters[self._subscribe(topic_filter, qos)] = acknowledged
        return acknowledged.wait(wait)

    def _subscribe(self, topic_filter: str, qos: int) -> int:
        """Subscribes; returns the SUBSCRIBE's message id."""
        properties = Properties(PacketTypes.SUBSCRIBE)
        properties.SubscriptionIdentifier = list(self._subscriptions).index(topic_filter) + 1
        options = SubscribeOptions(qos=qos, retainHandling=self.retain_handling)
        return self._client.subscribe(topic_filter, options=options, properties=properties)[1]

    def start(self, wait_seconds: float | None = 10.0) -> None:
        properties = None
        if self.session_expiry_seconds:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_expiry_seconds
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive,
                                   clean_start=not self.session_expiry_seconds, properties=properties)
        self._client.loop_start()
        if wait_seconds and not self.connected.wait(wait_seconds):
            log.warning("%s: broker %s:%d not reachable yet; publishing continues once it is",
                        self.client_id, self.host, self.port)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                on_ack: Callable[[bool | None], None] | None = None) -> None:
        """Queue a publish; with QoS 1 or 2, `on_ack(accepted)` runs once the broker answers (False: it refused;
        None: it lost the message with its session, `_session_lost`)."""
        # paho may run on_publish while holding its own lock, so ours is never held across this call.
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if qos == 0:
            return
        with self._lock:
            self._forgotten.discard(info.mid)  # paho gave the id anew: no late answer of an old packet can come
            early = self._early_acks.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = (topic, on_ack)
        if early is not None:
            self._acknowledged(topic, early, on_ack)

    def ack(self, message: mqtt.MQTTMessage) -> None:
        """Acknowledge a received message (with `manual_ack`); thread-safe."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged every QoS 1 publish; False if some are still pending."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.pending == 0

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Disconnect cleanly; `final` is a retained message (e.g. an `offline` status) sent first."""
        self._stopping = True
        if final and self.connected.is_set():
            self.publish(final[0], final[1], qos=1, retain=True)
            self.flush(5)
        self._client.disconnect()
        self._client.loop_stop()

    # ---- paho callbacks -------------------------------------------------------------------------------------------

    def _on_connect(self, client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("%s: broker refused connection: %s", self.client_id, reason_code)
            return
        if flags is not None and not flags.session_present:
            self._session_lost()
        with self._lock:
            self._awaiting_subacks = {self._subscribe(topic_filter, qos)
                                      for topic_filter, (qos, _handler) in list(self._subscriptions.items())}
        log.info("%s: connected to %s:%d", self.client_id, self.host, self.port)
        if not self._awaiting_subacks:
            self._ready()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        for reason_code in reason_codes:
            if reason_code.is_failure:
                log.error("%s: broker refused a subscription: %s", self.client_id, reason_code)
        with self._lock:
            waiting = mid in self._awaiting_subacks
            self._awaiting_subacks.discard(mid)
            done = waiting and not self._awaiting_subacks
            if (waiter := self._suback_waiters.pop(mid, None)) is not None:
                waiter.set()
        if done:
            self._ready()

    def _ready(self) -> None:
        """Connected and every subscription acknowledged: what is published to them from now on reaches us."""
        self._guarded(self.on_connected)  # the birth message goes out before anyone is told we are connected
        self.connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if self._stopping:
            log.info("%s: disconnected", self.client_id)
        elif self.connected.is_set():
            log.warning("%s: disconnected (%s); reconnecting", self.client_id, reason_code)
        self.connected.clear()
        if not self._stopping:
            self._guarded(self.on_disconnected)

    def _session_lost(self) -> None:
        """The broker kept no session of ours (it crashed before saving it, or the session expired). A QoS 2 message
        it had received (PUBREC) but not completed went with it, yet paho sends its PUBREL again and takes the
        broker's answer for a delivery; so every publish still awaiting its answer is told `on_ack(None)`: not
        delivered, send it again. The answers to the old packets are ignored."""
        with self._lock:
            lost = list(self._pending.values())
            self._forgotten |= set(self._pending)
            self._pending.clear()
        if lost:
            log.warning("%s: the broker kept no session: %d publishes it had not acknowledged go again",
                        self.client_id, len(lost))
        for _topic, on_ack in lost:
            if on_ack is not None:
                self._guarded(on_ack, None)

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties) -> None:
        if not self._client.acknowledges(mid):  # a QoS 0 message written: nothing awaits it
            return
        with self._lock:
            if mid in self._forgotten:
                self._forgotten.discard(mid)
                return
            entry = self._pending.pop(mid, None)
            if entry is None:  # acknowledged before publish() returned
                self._early_acks[mid] = reason_code
                return
        self._acknowledged(entry[0], reason_code, entry[1])

    def _acknowledged(self, topic: str, reason_code, on_ack: Callable[[bool], None] | None) -> None:
        if reason_code.is_failure:
            self.refused.append((topic, str(reason_code)))
            log.error("%s: broker refused publish to %s: %s", self.client_id, topic, reason_code)
        if on_ack is not None:
            self._guarded(on_ack, not reason_code.is_failure)

    def _guarded(self, callback: Callable[..., None], *args: object) -> None:
        """Run one of our callbacks on paho's network thread: an error in it (a full disk under the outbox, say)
        is logged, not raised into paho, whose thread it would end, leaving the client looking connected with
        nothing more sent or acknowledged."""
        try:
            callback(*args)
        except Exception:
            log.exception("%s: %s failed", self.client_id, getattr(callback, "__name__", callback))

    def _handler_for(self, message: mqtt.MQTTMessage) -> MessageHandler | None:
        handlers = list(self._subscriptions.values())
        identifiers = getattr(message.properties, "SubscriptionIdentifier", None) if message.properties else None
        for identifier in identifiers or ():
            if 0 < identifier <= len(handlers):
                return handlers[identifier - 1][1]
        for topic_filter, (_qos, handler) in list(self._subscriptions.items()):  # one may be added meanwhile
            if topic_filter_pattern(topic_filter).fullmatch(message.topic):
                return handler
        return None

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        handler = self._handler_for(message)
        if handler is None:  # a subscription a kept session still holds from before a restart, say: acknowledged,
            # or the broker stopped sending anything once a thousand such were unacknowledged
            log.info("%s: no handler for %s; acknowledged and dropped", self.client_id, message.topic)
            self.ack(message)
            return
        try:
            handler(message)
        except Exception:  # a handler's bug must not stop the network loop
            log.exception("%s: handler for %s failed", self.client_id, message.topic)
