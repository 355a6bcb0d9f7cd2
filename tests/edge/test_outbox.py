"""The durable outbox: nothing lost when the broker goes away or the node restarts."""

from __future__ import annotations

import json
import threading

from edge.comms import NodeLink
from edge.config import MqttConfig
from edge.outbox import EVENT, EVIDENCE, Outbox, OutboxSender
from gridwatch.contract import event_topic
from tests.factories import wait_until

TOPIC = event_topic("node-a", "litter")


def test_messages_survive_a_restart_in_order(tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    for index in range(5):
        outbox.put(TOPIC, f"event {index}".encode(), EVENT)
    outbox.acknowledge(outbox.pending()[0].id)
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    assert [m.payload for m in reopened.pending()] == [f"event {i}".encode() for i in range(1, 5)]
    assert reopened.size_bytes == 4 * len(b"event 1")


def test_when_full_the_oldest_evidence_goes_first_and_every_drop_is_counted(tmp_path):
    outbox = Outbox(tmp_path / "outbox.db", max_bytes=1000)
    outbox.put("e/1", b"x" * 100, EVENT)
    outbox.put("v/1", b"j" * 400, EVIDENCE)
    outbox.put("v/2", b"j" * 400, EVIDENCE)
    outbox.put("e/2", b"x" * 100, EVENT)  # 1,000 bytes: full
    outbox.put("e/3", b"x" * 100, EVENT)  # needs room: the oldest evidence goes
    assert [m.topic for m in outbox.pending()] == ["e/1", "v/2", "e/2", "e/3"]
    outbox.put("e/4", b"x" * 800, EVENT)  # more: the other evidence, then the oldest event
    assert [m.topic for m in outbox.pending()] == ["e/2", "e/3", "e/4"]
    assert outbox.counters() == {"dropped_evidence": 2, "dropped_event": 1}
    assert outbox.size_bytes <= 1000


def start_node(running_broker, tmp_path, outbox: Outbox):
    link = NodeLink("node-a", MqttConfig(port=running_broker.port,
                                         password=running_broker.credentials.nodes["node-a"]), tmp_path)
    sender = OutboxSender(outbox, link, window=10)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    link.start()
    thread.start()

    def shutdown() -> None:
        stop.set()
        thread.join(5)
        link.stop()

    return shutdown


def persistent_subscriber(mqtt_client):
    """The server role with a persistent session, as the real ingest has: it misses nothing across a restart."""
    subscriber = mqtt_client("gridwatch-server")
    subscriber.subscribe("gw/v1/nodes/node-a/events/#")
    return subscriber


def test_a_broker_restart_mid_stream_loses_no_event(running_broker, mqtt_client, tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    received: list[int] = []
    subscriber = persistent_subscriber(mqtt_client)
    shutdown = start_node(running_broker, tmp_path, outbox)
    try:
        for index in range(100):
            outbox.put(TOPIC, json.dumps({"n": index}).encode(), EVENT)
        wait_until(lambda: outbox.depth == 0, timeout=20)
        running_broker.broker.stop()
        for index in range(100, 300):  # produced while the broker is away: kept on disk
            outbox.put(TOPIC, json.dumps({"n": index}).encode(), EVENT)
        assert outbox.depth == 200
        running_broker.broker.start()
        subscriber.close()
        subscriber = persistent_subscriber(mqtt_client)
        wait_until(lambda: outbox.depth == 0, timeout=60)
    finally:
        shutdown()
    received = [json.loads(m.payload)["n"] for m in subscriber.collect(1.0)]
    assert set(range(100, 300)) <= set(received), "every event made while the broker was down arrives"
    assert received == sorted(received), "in the order they were made"


def test_a_node_restarted_with_a_backlog_sends_it_first(running_broker, mqtt_client, tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    for index in range(50):  # written by a node that could not send before it was stopped
        outbox.put(TOPIC, json.dumps({"n": index}).encode(), EVENT)
    outbox.close()
    subscriber = persistent_subscriber(mqtt_client)
    restarted = Outbox(tmp_path / "outbox.db")
    shutdown = start_node(running_broker, tmp_path, restarted)
    try:
        restarted.put(TOPIC, json.dumps({"n": 50}).encode(), EVENT)
        wait_until(lambda: restarted.depth == 0, timeout=20)
    finally:
        shutdown()
    assert [json.loads(m.payload)["n"] for m in subscriber.collect(1.0)] == list(range(51))
