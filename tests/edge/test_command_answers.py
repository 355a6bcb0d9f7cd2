"""Answers to the command centre's commands at the edge: kept in the outbox, in a lane of their own sent before
events (edge/outbox.py `ANSWER`, edge/node.py), so one made while the broker is away still arrives."""

from __future__ import annotations

import json
import threading

from edge.config import NodeConfig
from edge.node import EdgeNode
from edge.outbox import EVENT, Outbox
from tests.factories import wait_until


def test_an_answer_leaves_before_the_event_backlog_and_never_pushes_an_event_out(tmp_path):
    """Found by review: command answers queued behind hours of events after an outage (someone at the console waits
    for each), and a full outbox made room for one by dropping an event."""
    from edge.outbox import ANSWER, OutboxSender

    class Wire:  # the MQTT client's side of the sender: what it is handed, in order
        connected = threading.Event()

        def __init__(self) -> None:
            self.connected.set()
            self.handed: list[str] = []

        def publish(self, topic, payload, qos, on_ack) -> None:  # noqa: ANN001
            self.handed.append(topic)

    outbox = Outbox(tmp_path / "outbox.db", max_bytes=1000)
    for index in range(10):
        outbox.put(f"e/{index}", b"x" * 100, EVENT)  # full of events
    assert outbox.put("a/1", b"a" * 50, ANSWER) is None, "no room: the answer is dropped, not an event"
    assert [m.topic for m in outbox.pending()] == [f"e/{index}" for index in range(10)]
    assert outbox.counters() == {"dropped_answer": 1}
    outbox.acknowledge(outbox.pending()[0].id)
    outbox.put("a/2", b"a" * 50, ANSWER)
    wire = Wire()
    OutboxSender(outbox, wire, window=4)._hand_over()
    assert wire.handed == ["a/2", "e/1", "e/2", "e/3"], "the answer first, then the backlog"


def test_a_command_answered_while_the_broker_is_away_reaches_the_server_after_the_node_restarts(
        running_broker, mqtt_client, tmp_path):
    """Found by review: command answers were published from memory only, so one made while the broker was away
    (a camera restart takes seconds) was lost with the node's next stop, and the command centre waited for it for
    ever. They now go through the outbox, like events."""
    from gridwatch.contract import command_response_topic

    server = mqtt_client("gridwatch-server")  # a persistent session, as the server has
    server.subscribe(command_response_topic("node-a"))
    config = NodeConfig.model_validate({
        "node_id": "node-a", "state_dir": str(tmp_path), "telemetry_seconds": 60,
        "mqtt": {"port": running_broker.port, "password": running_broker.credentials.nodes["node-a"]},
        "streetlights": [{"lamp_id": "lamp-7", "adapter": {"type": "simulated", "ambient_lux": 800}}]})

    def run_node() -> tuple[EdgeNode, threading.Event, threading.Thread]:
        node = EdgeNode.build(config)
        stop = threading.Event()
        thread = threading.Thread(target=node.run, args=(stop,), daemon=True)
        thread.start()
        wait_until(lambda: node.link.connected.is_set(), timeout=15)
        return node, stop, thread

    node, stop, thread = run_node()
    running_broker.broker.stop()
    wait_until(lambda: not node.link.connected.is_set(), timeout=15)
    node.link._answer(json.dumps({"schema_version": "1.2", "request_id": "snap-1", "action": "snapshot"}).encode())
    assert node.outbox.depth == 1, "the answer waits on disk"
    stop.set()
    thread.join(30)  # the node stops (its last flush finds no broker)

    running_broker.broker.start()
    server.close()
    server = mqtt_client("gridwatch-server")
    server.subscribe(command_response_topic("node-a"))
    node, stop, thread = run_node()
    try:
        answer = json.loads(server.wait_for(lambda m: b"snap-1" in m.payload, timeout=20).payload)
        assert answer["ok"] and answer["action"] == "snapshot"
    finally:
        stop.set()
        thread.join(30)
