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


def test_a_node_whose_session_file_cannot_be_written_or_was_lost_still_starts_above_its_old_sessions(tmp_path):
    """Found by review: a full disk made the node's start fail on the session file (the service restarting it
    over and over), and a lost or emptied file started the count at 1, below the sessions the server had seen, so
    it took the node's statuses for stale ones and showed it offline."""
    from edge.comms import SessionCounter

    path = tmp_path / "node-a" / "session"
    clock = [1_800_000_000.0]
    counter = SessionCounter(path, clock=lambda: clock[0])
    before = [counter.next(), counter.next()]
    assert before[1] > before[0] >= 1_800_000_000

    path.write_text("")  # emptied by a power cut
    after = SessionCounter(path, clock=lambda: clock[0] + 60).next()
    assert after > before[1], "above every session before"

    path.with_suffix(".tmp").mkdir()  # the disk will not take the file
    unsaved = SessionCounter(path, clock=lambda: clock[0] + 120)
    assert unsaved.next() < unsaved.next(), "it starts and counts on, in memory"


def test_a_clock_past_2038_neither_stops_this_start_nor_every_start_after_it(tmp_path):
    """Found by review: one boot with the clock past January 2038 (a real-time clock's garbage) saved a session
    number the contract refuses; the node failed that start and, the counter only growing, every one after it."""
    from edge.comms import SessionCounter
    from gridwatch.contract import SESSION_MAX

    path = tmp_path / "node-a" / "session"
    wrong = SessionCounter(path, clock=lambda: 2_208_988_800.0).next()  # 2040
    assert 0 < wrong <= SESSION_MAX
    path.write_text(str(SESSION_MAX + 5))  # what the code before left on disk
    fixed = SessionCounter(path, clock=lambda: 1_800_000_000.0).next()
    assert fixed == 1_800_000_000
