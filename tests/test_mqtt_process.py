"""gridwatch.mqtt_process: an MqttClient whose paho client runs in a child process must behave as one in-process
(handlers by subscription, acknowledged publishes, a persistent session), live exactly as long as its parent, and
come back by itself when its child dies."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time

from gridwatch.broker import SERVER_USER
from gridwatch.mqtt import MqttClient
from tests.factories import wait_until

EVENTS = "gw/v1/nodes/node-a/events/litter"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def server_client(running_broker, client_id: str = "process-test", **kwargs) -> MqttClient:
    return MqttClient(client_id, "127.0.0.1", running_broker.port, SERVER_USER,
                      running_broker.credentials.server_password, network_process=True, **kwargs)


def test_messages_reach_the_handler_of_the_subscription_that_delivered_them(running_broker, mqtt_client):
    events, everything = queue.Queue(), queue.Queue()
    client = server_client(running_broker)
    client.subscribe(EVENTS, lambda message: events.put((message.topic, bytes(message.payload))))
    client.subscribe("gw/v1/nodes/+/status", lambda message: everything.put(bytes(message.payload)))
    client.start()
    try:
        assert client._client._child.pid != os.getpid()  # the paho client is elsewhere
        node = mqtt_client("node-a")
        assert node.publish(EVENTS, b"pile") == 0
        assert node.publish("gw/v1/nodes/node-a/status", b"online") == 0
        assert events.get(timeout=10) == (EVENTS, b"pile")
        assert everything.get(timeout=10) == b"online"
        assert events.empty()
        # and the other way: a QoS 1 publish is awaited until the broker acknowledges it
        integrator = mqtt_client("integrator")
        integrator.subscribe("gw/v1/cases/#")
        client.publish("gw/v1/cases/litter/1", b'{"case": 1}')
        assert client.flush(10)
        assert integrator.wait_for(lambda message: message.topic == "gw/v1/cases/litter/1").payload == b'{"case": 1}'
    finally:
        client.stop()


def test_the_network_process_ends_with_its_parent_even_a_killed_one(running_broker, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(f"""
import sys, time
sys.path.insert(0, {str(os.getcwd())!r})
from gridwatch.mqtt import MqttClient
client = MqttClient("doomed", "127.0.0.1", {running_broker.port}, {SERVER_USER!r},
                    {running_broker.credentials.server_password!r}, network_process=True)
client.start()
print(client._client._child.pid, flush=True)
time.sleep(600)
""")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    wait_until(lambda: not alive(child), timeout=10)


def test_a_dead_network_process_is_replaced_and_the_session_goes_on(running_broker, mqtt_client):
    received = queue.Queue()
    client = server_client(running_broker, session_expiry_seconds=600, manual_ack=True)

    def handle(message) -> None:
        received.put(bytes(message.payload))
        client.ack(message)

    client.subscribe(EVENTS, handle)
    client.start()
    try:
        node = mqtt_client("node-a")
        assert node.publish(EVENTS, b"before") == 0
        assert received.get(timeout=10) == b"before"
        time.sleep(0.5)  # its acknowledgement on its way to the broker (unacknowledged, it would come again)
        first = client._client._child.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not client.connected.is_set(), timeout=10)
        assert node.publish(EVENTS, b"while away") == 0  # kept by the broker in the session
        client.publish("gw/v1/nodes/node-a/config", b"{}", qos=1)  # awaited, sent again by the next process
        wait_until(lambda: client.connected.is_set(), timeout=20)
        assert client._client._child.pid != first
        assert received.get(timeout=10) == b"while away"
        assert client.flush(10)
        assert node.publish(EVENTS, b"after") == 0
        assert received.get(timeout=10) == b"after"
        time.sleep(0.5)
        assert received.empty(), "each message handled once"
    finally:
        client.stop()


def test_a_stop_signal_to_the_process_group_leaves_the_network_process_to_its_parent(running_broker, mqtt_client):
    """Ctrl-C reaches every process of the group and `systemctl stop` every process of the service: the parent
    stops gracefully, acknowledging the batch in hand, so its network process must not die first."""
    received = queue.Queue()
    client = server_client(running_broker, session_expiry_seconds=600, manual_ack=True)
    client.subscribe(EVENTS, lambda message: received.put(message))
    client.start()
    try:
        child = client._client._child.pid
        os.kill(child, signal.SIGINT)
        os.kill(child, signal.SIGTERM)
        node = mqtt_client("node-a")
        assert node.publish(EVENTS, b"in hand") == 0
        message = received.get(timeout=10)
        time.sleep(0.5)
        assert alive(child) and client._client._child.pid == child and client.connected.is_set()
        client.ack(message)  # the graceful stop's last acknowledgement reaches the broker
    finally:
        client.stop()
    again = server_client(running_broker, session_expiry_seconds=600, manual_ack=True)
    again.subscribe(EVENTS, lambda message: received.put(message))
    again.start()
    try:
        time.sleep(1)
        assert received.empty(), "acknowledged before the stop, so not sent again"
    finally:
        again.stop()
