"""The node's broker link against a real Mosquitto: birth, last will, sessions, broker restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

from edge.comms import NodeLink
from edge.config import MqttConfig
from gridwatch.contract import config_topic, status_topic
from tests.factories import wait_until


def retained_status(mqtt_client, node_id: str = "node-a") -> dict:
    watcher = mqtt_client("integrator")
    watcher.subscribe(status_topic(node_id))
    message = watcher.wait_for(lambda m: True, timeout=10)  # retained, or live if it came after we subscribed
    return json.loads(message.payload)


def test_birth_is_renewed_with_a_higher_session_after_a_broker_restart(running_broker, mqtt_client, tmp_path):
    config = MqttConfig(port=running_broker.port, password=running_broker.credentials.nodes["node-a"])
    link = NodeLink("node-a", config, tmp_path)
    link.start()
    try:
        first = retained_status(mqtt_client)
        assert first["state"] == "online"
        running_broker.broker.stop()
        running_broker.broker.start()
        wait_until(lambda: link.connected.is_set(), timeout=30)
        second = wait_until(lambda: (s := retained_status(mqtt_client)) and s["session"] > first["session"] and s)
        assert second["state"] == "online"
    finally:
        link.stop_gracefully(flush_seconds=2)
    assert retained_status(mqtt_client)["state"] == "offline", "a clean stop says offline"


def test_session_numbers_grow_across_restarts_of_the_process(running_broker, tmp_path):
    config = MqttConfig(port=running_broker.port, password=running_broker.credentials.nodes["node-a"])
    sessions = [NodeLink("node-a", config, tmp_path).session for _ in range(3)]
    assert sessions == sorted(set(sessions))


NODE_SCRIPT = """
import sys, time
from pathlib import Path
from edge.comms import NodeLink
from edge.config import MqttConfig
link = NodeLink("node-a", MqttConfig(port=int(sys.argv[1]), password=sys.argv[2]), Path(sys.argv[3]))
link.start()
print(link.session, flush=True)
time.sleep(120)
"""


def test_a_crashed_node_is_reported_offline_by_its_last_will(running_broker, mqtt_client, tmp_path):
    node = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(NODE_SCRIPT), str(running_broker.port),
         running_broker.credentials.nodes["node-a"], str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    session = int(node.stdout.readline())
    wait_until(lambda: retained_status(mqtt_client)["state"] == "online")
    node.send_signal(signal.SIGKILL)
    node.wait()
    status = wait_until(lambda: (s := retained_status(mqtt_client))["state"] == "offline" and s, timeout=15)
    assert status["session"] == session


def test_retained_config_survives_a_broker_restart(running_broker, mqtt_client):
    server = mqtt_client("gridwatch-server")
    assert not server.publish(config_topic("node-a"), b'{"zones": []}', retain=True).is_failure
    running_broker.broker.stop()
    running_broker.broker.start()
    node = mqtt_client("node-a")
    node.subscribe(config_topic("node-a"))
    assert node.wait_for(lambda m: True).payload == b'{"zones": []}'
