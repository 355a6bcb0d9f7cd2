"""The benchmarks' fleet writes MQTT on the wire itself (bench/fleet.py): it must deliver exactly what it is given,
as each node, in each node's order, and fail loudly when the broker refuses a publish, or every figure measured
with it would be fiction."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from gridwatch.contract import event_topic, evidence_topic

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from fleet import WireFleet  # noqa: E402


def test_every_message_arrives_whole_in_each_nodes_order_with_the_send_time_of_each_new_violation(
        running_broker, mqtt_client):
    server = mqtt_client("gridwatch-server")
    server.subscribe("gw/v1/nodes/#")
    nodes = ("node-a", "node-b")
    fleet = WireFleet(running_broker.port, {node: running_broker.credentials.nodes[node] for node in nodes})
    messages = []
    for index in range(300):  # payloads up to 150 KB: a socket takes them in several writes
        node = nodes[index % 2]
        topic = evidence_topic(node, f"event-{index}") if index % 7 == 0 else event_topic(node, "litter")
        messages.append((index, topic, f"{index}:".encode() + bytes([index % 256]) * (index * 500),
                         f"violation-{index}" if index % 10 == 0 else ""))
    began = time.perf_counter()
    sent = fleet.run(messages, began, 0.0)
    fleet.close()

    assert set(sent) == {f"violation-{index}" for index in range(0, 300, 10)}
    assert all(began <= at <= time.perf_counter() for at in sent.values())
    received = server.collect(2)
    assert len(received) == len(messages)
    for node in nodes:
        expected = [(topic, payload) for _index, topic, payload, _violation in messages if f"/{node}/" in topic]
        assert [(message.topic, message.payload) for message in received if f"/{node}/" in message.topic] == expected


def test_a_publish_the_broker_refuses_fails_the_run(running_broker):
    fleet = WireFleet(running_broker.port, {"node-a": running_broker.credentials.nodes["node-a"]})
    fleet.nodes["node-b"] = fleet.nodes["node-a"]  # node-a's connection speaks for node-b: the ACL forbids it
    try:
        with pytest.raises(RuntimeError, match="refused 1 of"):
            fleet.run([(0, event_topic("node-a", "litter"), b"{}", ""),
                       (1, event_topic("node-b", "litter"), b"{}", "")], time.perf_counter(), 0.0)
    finally:
        fleet.close()


def test_a_wrong_password_is_refused_at_connect(running_broker):
    with pytest.raises(ConnectionError, match="refused"):
        WireFleet(running_broker.port, {"node-a": "not-its-password"})
