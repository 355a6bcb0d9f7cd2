"""The child half of gridwatch.mqtt_process: a paho client that does what its parent says and tells it what
happens (`python -m gridwatch.mqtt_child FD`, FD its end of the socket pair). What goes up is pickled as
gridwatch.mqtt_process's classes, which the parent has too."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
from multiprocessing.connection import Connection
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gridwatch.mqtt_process import FORWARD_EVERY, Link, Outcome, Received, Settings
from gridwatch.mqtt_reads import BufferedClient

log = logging.getLogger("gridwatch.mqtt_child")


def run(connection: Connection) -> None:
    """The child: a paho client that does what the parent says and tells it what happens."""
    # Ctrl-C reaches the whole process group and `systemctl stop` the whole cgroup: the child is its parent's to
    # stop (after the batch in hand is acknowledged), or ends with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    first = pickle.loads(connection.recv_bytes())  # the settings, and what the parent asked for meanwhile
    settings: Settings = first[0][1]
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    up = Link(connection)
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5,
                            manual_ack=settings.manual_ack)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.ca_certs:
        client.tls_set(ca_certs=settings.ca_certs)
    if settings.will:
        client.will_set(*settings.will)
    client.reconnect_delay_set(*settings.reconnect_delay)
    client.max_queued_messages_set(0)
    client.suppress_exceptions = True  # a callback that raises must not end paho's thread
    ours: dict[int, int] = {}  # paho's message id -> the parent's (a SUBSCRIBE's: -id)
    early: dict[int, Any] = {}  # acknowledged before `ours` knew the id (SUBACKs under -id)
    lock = threading.Lock()
    received: list[Received] = []

    def on_message(_client, _userdata, message: mqtt.MQTTMessage) -> None:
        identifiers = getattr(message.properties, "SubscriptionIdentifier", None) if message.properties else None
        received.append(Received(message.mid, message.qos, message.topic, bytes(message.payload), message.retain,
                                 SimpleNamespace(SubscriptionIdentifier=identifiers) if identifiers else None))
        if len(received) >= FORWARD_EVERY:  # a busy socket keeps paho's loop reading: the parent waits for none
            flush_received()

    def on_publish(_client, _userdata, mid, reason_code, _properties) -> None:
        if not client.acknowledges(mid):  # a QoS 0 message written: the parent awaits nothing of it
            return
        outcome = Outcome.of(reason_code)
        with lock:
            parent_mid = ours.pop(mid, None)
            if parent_mid is None:
                early[mid] = outcome
                return
        up.put(("published", parent_mid, outcome))

    def flush_received(*_args: Any) -> None:
        """Messages go up in a batch per turn of paho's loop (at most `FORWARD_EVERY`), not one by one."""
        nonlocal received
        if received:
            batch, received = received, []
            up.put(("messages", batch))

    def on_subscribe(_client, _userdata, mid, reason_codes, _properties) -> None:
        outcomes = [Outcome.of(code) for code in reason_codes]
        with lock:
            parent_mid = ours.pop(-mid, None)
            if parent_mid is None:
                early[-mid] = outcomes
                return
        up.put(("subscribed", parent_mid, outcomes))

    client.on_message = on_message
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.on_connect = lambda _c, _u, flags, rc, _p: (flush_received(), up.put(
        ("connected", Outcome.of(rc), bool(flags.session_present))))
    client.on_disconnect = lambda _c, _u, _f, rc, _p: (flush_received(), up.put(("disconnected", Outcome.of(rc))))
    original_loop_read = client.loop_read

    def loop_read(max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = original_loop_read(max_packets)
        flush_received()
        return rc

    client.loop_read = loop_read  # type: ignore[method-assign]
    properties = None
    if settings.session_expiry:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = settings.session_expiry
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive,
                         clean_start=settings.clean_start, properties=properties)
    client.loop_start()
    sender = threading.Thread(target=up.send_forever, name="to-parent", daemon=True)
    sender.start()
    commands = first[1:]
    while True:
        for command in commands:
            if command[0] == "stop":
                client.loop_stop()
                up.close()
                sender.join(5)
                os._exit(0)
            try:
                _obey(client, command, lock, ours, early, up)
            except Exception as error:  # the parent checks what paho refuses; should something still be, say so
                log.exception("the network process could not %s", command[0])
                _refused(command, error, up)
        try:
            commands = pickle.loads(connection.recv_bytes())
        except (EOFError, OSError):
            os._exit(0)  # the parent is gone: no DISCONNECT, so its will goes out and its session waits


def _obey(client: mqtt.Client, command: tuple, lock: threading.Lock, ours: dict[int, int],
          early: dict[int, Any], up: Link) -> None:
    kind = command[0]
    if kind == "ack":
        client.ack(command[1], command[2])
    elif kind == "publish":
        _, parent_mid, topic, payload, qos, retain = command
        # paho may run on_publish holding its own lock, so ours is never held across this call
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if not qos:
            return
        with lock:
            outcome = early.pop(info.mid, None)
            if outcome is None:
                ours[info.mid] = parent_mid
        if outcome is not None:  # acknowledged before the ids were paired
            up.put(("published", parent_mid, outcome))
    elif kind == "subscribe":
        _, parent_mid, topic_filter, qos, identifier, retain_handling = command
        subscription = None
        if identifier:
            subscription = Properties(PacketTypes.SUBSCRIBE)
            subscription.SubscriptionIdentifier = identifier
        mid = client.subscribe(topic_filter, options=SubscribeOptions(qos=qos, retainHandling=retain_handling),
                               properties=subscription)[1]
        with lock:
            outcomes = early.pop(-mid, None)  # SUBACKs are kept under the negative id
            if outcomes is None:
                ours[-mid] = parent_mid
        if outcomes is not None:
            up.put(("subscribed", parent_mid, outcomes))
    elif kind == "disconnect":
        client.disconnect()


def _refused(command: tuple, error: Exception, up: Link) -> None:
    """Tell the parent that a publish or subscribe it awaits will not happen."""
    outcome = Outcome(-1, True, f"refused by the network process: {type(error).__name__}: {error}")
    if command[0] == "publish" and command[4]:
        up.put(("published", command[1], outcome))
    elif command[0] == "subscribe":
        up.put(("subscribed", command[1], [outcome]))

if __name__ == "__main__":
    run(Connection(int(sys.argv[1])))
