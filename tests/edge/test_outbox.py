"""The durable outbox: nothing lost when the broker goes away or the node restarts."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from edge import node as node_module
from edge.config import NodeConfig
from edge.node import EdgeNode
from edge.outbox import EVENT, EVIDENCE, Outbox
from gridwatch.contract import event_topic, evidence_topic, telemetry_topic
from tests.edge.stream_node import event_id as stream_event_id
from tests.factories import start_node, wait_until

REPO = Path(__file__).resolve().parents[2]


def stream_event_ids(numbers: list[int]) -> list[str]:
    return [stream_event_id(number) for number in numbers]

TOPIC = event_topic("node-a", "litter")


def test_a_damaged_outbox_is_kept_aside_and_the_node_starts_with_a_new_one(tmp_path):
    """Found by review: an outbox file damaged by a power cut raised on every start, and the node watched nothing
    until someone deleted it."""
    damaged = tmp_path / "outbox.db"
    damaged.write_bytes(bytes(range(256)) * 32)
    outbox = Outbox(damaged)
    outbox.put(TOPIC, b"after the damage", EVENT)
    assert [message.payload for message in outbox.pending()] == [b"after the damage"]
    outbox.close()
    kept = [path for path in tmp_path.iterdir() if path.name.startswith("outbox.db.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(range(256)) * 32, "kept for salvage"


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


def test_an_image_never_pushes_an_event_out_and_what_cannot_fit_is_refused_counted(tmp_path):
    """Found by review: with no evidence left to drop, a new image pushed out event records (an `end` lost leaves
    its case open for good), and an image larger than the whole outbox emptied it and was stored anyway."""
    outbox = Outbox(tmp_path / "outbox.db", max_bytes=1000)
    for index in range(8):
        outbox.put(f"e/{index}", b"x" * 100, EVENT)
    assert outbox.put("v/1", b"j" * 500, EVIDENCE) is None, "no image to make room among: the image is dropped"
    assert outbox.put("v/2", b"j" * 200, EVIDENCE) is not None
    assert outbox.put("v/3", b"j" * 5000, EVIDENCE) is None
    assert outbox.put("e/big", b"x" * 5000, EVENT) is None, "larger than the whole outbox: nothing is dropped for it"
    assert [m.topic for m in outbox.pending()] == [f"e/{index}" for index in range(8)] + ["v/2"]
    assert outbox.counters() == {"dropped_evidence": 2, "dropped_event": 1}
    assert outbox.size_bytes == 1000


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
        assert shutdown.sender.delivered[EVENT] == 51, "telemetry's events_published: what the broker took"
    finally:
        shutdown()
    assert [json.loads(m.payload)["n"] for m in subscriber.collect(1.0)] == list(range(51))


def test_a_broker_stopped_mid_stream_delivers_every_event_and_its_evidence_exactly_once(running_broker, mqtt_client,
                                                                                       tmp_path):
    """QoS 2 from the outbox to a subscriber with a persistent session: the broker keeps its half of every
    handshake across the restart, paho the other, so nothing is lost and nothing repeated."""
    subscriber = mqtt_client("integrator", session_expiry=3600)
    subscriber.subscribe("gw/v1/nodes/node-a/events/#", qos=2)
    subscriber_all = mqtt_client("gridwatch-server", session_expiry=3600)
    subscriber_all.subscribe("gw/v1/nodes/node-a/evidence/#", qos=2)
    outbox = Outbox(tmp_path / "outbox.db")
    shutdown = start_node(running_broker, tmp_path, outbox, qos=2)
    evidence = bytes(range(256)) * 80  # 20 kB, as a small JPEG
    produced = threading.Event()

    def stream() -> None:  # 300 events with evidence, 100 a second, while the broker goes and comes back
        for index in range(300):
            outbox.put(f"gw/v1/nodes/node-a/evidence/{index}", evidence, EVIDENCE)
            outbox.put(TOPIC, json.dumps({"n": index}).encode(), EVENT)
            time.sleep(0.01)
        produced.set()

    producer = threading.Thread(target=stream, daemon=True)
    try:
        producer.start()
        def past_a_third() -> bool:  # one read: the head may be acknowledged between two
            head = outbox.pending(limit=1)
            return bool(head) and head[0].id > 100

        wait_until(past_a_third, timeout=10)
        running_broker.broker.stop()  # mid-stream, messages in flight
        time.sleep(2)
        running_broker.broker.start()
        assert produced.wait(30)
        wait_until(lambda: outbox.depth == 0, timeout=60)
    finally:
        shutdown()
    events = Counter(json.loads(m.payload)["n"] for m in subscriber.collect(2.0))
    images = Counter(m.topic for m in subscriber_all.collect(1.0) if m.payload == evidence)
    assert sorted(events) == list(range(300)) and set(events.values()) == {1}, "every event, exactly once"
    assert len(images) == 300 and set(images.values()) == {1}, "every evidence image, exactly once"


def test_a_node_killed_mid_stream_and_restarted_loses_nothing_and_the_server_stores_each_event_once(
        running_broker, api, tmp_path):
    args = [sys.executable, "-m", "tests.edge.stream_node", str(tmp_path / "node"), str(running_broker.port),
            running_broker.credentials.nodes["node-a"], "400"]
    (tmp_path / "node").mkdir()
    first = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True)
    for line in first.stdout:  # mid-stream: a fifth made, some sent, some in flight
        if line.strip() == "80":
            break
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    made_before = int((tmp_path / "node" / "next").read_text())
    assert 80 <= made_before < 400
    second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and second.stdout.strip().endswith("drained"), second.stderr[-2000:]

    def stored() -> int:
        """Events stored: what the cases counted (all 400 violations stand at one kerb, so they join one case)."""
        return sum(case["occurrences"] for case in api.get("/api/v1/cases", params={"page_size": 500}).json()["items"])

    wait_until(lambda: stored() == 400, timeout=60)
    time.sleep(1)  # anything late would show now
    assert stored() == 400, "each event once, none twice"
    health = api.get("/healthz").json()["ingest"]
    print("ingest counts", health, "made before the kill", made_before)
    assert health["events"] >= 400 and health["evidence"] == 400, "every event's evidence, stored once"
    assert api.get("/api/v1/dead-letters").json()["total"] == 0
    some = stream_event_ids([0, 79, 80, 399])
    assert all(api.get(f"/api/v1/evidence/{event_id}").status_code == 200 for event_id in some)


@pytest.mark.parametrize("qos", [1, 2])
def test_a_message_the_broker_refuses_leaves_the_outbox_counted_and_the_rest_goes_on(running_broker, mqtt_client,
                                                                                      tmp_path, qos):
    """node-a may not write node-b's topics: that event would never get through, so it must neither block the
    outbox nor pass for delivered (at QoS 2 paho took the broker's refusal for a delivery)."""
    subscriber = persistent_subscriber(mqtt_client)
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put(event_topic("node-b", "litter"), b'{"n": "foreign"}', EVENT)
    outbox.put(TOPIC, b'{"n": 1}', EVENT)
    shutdown = start_node(running_broker, tmp_path, outbox, qos=qos)
    try:
        wait_until(lambda: outbox.depth == 0, timeout=20)
    finally:
        shutdown()
    assert outbox.counters() == {"refused_event": 1}
    assert [m.payload for m in subscriber.collect(1.0)] == [b'{"n": 1}']


def test_an_outbox_that_fails_now_and_then_stops_neither_the_sender_nor_the_link(running_broker, mqtt_client,
                                                                                 tmp_path, monkeypatch):
    """A disk that refuses a read or a delete once (full, failing): the message whose delete failed stays for the
    next start, and everything else still goes and is acknowledged (an error raised into paho's thread ended it)."""
    subscriber = persistent_subscriber(mqtt_client)
    outbox = Outbox(tmp_path / "outbox.db")
    failures = {"pending": 1, "acknowledge": 1}
    for name in failures:
        real = getattr(outbox, name)

        def failing_once(*args, _real=real, _name=name, **kwargs):
            if failures[_name]:
                failures[_name] -= 1
                raise sqlite3.OperationalError("database or disk is full")
            return _real(*args, **kwargs)

        monkeypatch.setattr(outbox, name, failing_once)
    for index in range(5):
        outbox.put(TOPIC, json.dumps({"n": index}).encode(), EVENT)
    shutdown = start_node(running_broker, tmp_path, outbox)
    try:
        wait_until(lambda: outbox.depth == 1, timeout=20)
        outbox.put(TOPIC, json.dumps({"n": 5}).encode(), EVENT)
        wait_until(lambda: outbox.depth == 1, timeout=20)
        assert shutdown.link.connected.is_set()
    finally:
        shutdown()
    assert [json.loads(m.payload)["n"] for m in subscriber.collect(1.0)] == list(range(6))
    assert [json.loads(m.payload)["n"] for m in outbox.pending()] == [0]  # its delete failed: it goes again


def test_a_node_whose_outbox_cannot_store_keeps_running_and_reports_what_it_lost(running_broker, mqtt_client,
                                                                                  tmp_path):
    server = mqtt_client("gridwatch-server")
    server.subscribe(telemetry_topic("node-a"))
    config = NodeConfig.model_validate({
        "node_id": "node-a", "state_dir": str(tmp_path), "telemetry_seconds": 0.5,
        "mqtt": {"port": running_broker.port, "password": running_broker.credentials.nodes["node-a"]},
        "streetlights": [{"lamp_id": "lamp-7", "poll_seconds": 0.2, "fault_seconds": 0.5, "adapter": {
            "type": "simulated", "ambient_lux": 0.5, "failures": [{"fault": "lamp_out", "start_seconds": 1}]}}]})
    node = EdgeNode.build(config)
    node.outbox.close()  # its disk gone
    stop = threading.Event()
    thread = threading.Thread(target=node.run, args=(stop,), daemon=True)
    thread.start()
    try:
        telemetry = json.loads(server.wait_for(lambda m: b"unstored_event" in m.payload, timeout=20).payload)
        assert telemetry["dropped"] == {"unstored_event": 1}
        # found by review: the count took in every message the node sent (its status, telemetry, replies)
        assert telemetry["events_published"] == 0, "no event reached the broker: none is counted"
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(15)


def test_what_a_thread_still_busy_at_shutdown_writes_is_kept_for_the_next_start(running_broker, tmp_path,
                                                                                monkeypatch):
    """Found by review: a stopping node closed its outbox while a camera was still in its frame (a slow model), so
    the `end`s it wrote as it stopped were lost, counted in telemetry that had already gone."""
    monkeypatch.setattr(node_module, "STOP_GRACE_SECONDS", 0.2)
    config = NodeConfig.model_validate({
        "node_id": "node-a", "state_dir": str(tmp_path), "mqtt": {
            "port": running_broker.port, "password": running_broker.credentials.nodes["node-a"]},
        "streetlights": [{"lamp_id": "lamp-7", "adapter": {"type": "simulated"}}]})
    node = EdgeNode.build(config)
    finished = threading.Event()

    def slow_to_stop(stop: threading.Event) -> None:  # the lamps' thread, in the middle of a slow step
        stop.wait()
        time.sleep(1.0)
        node.publish(TOPIC, b'{"n": "interrupted"}')
        finished.set()

    monkeypatch.setattr(node, "run_streetlights", slow_to_stop)
    stop = threading.Event()
    runner = threading.Thread(target=node.run, args=(stop,), daemon=True)
    runner.start()
    wait_until(lambda: node.link.connected.is_set(), timeout=20)
    stop.set()
    runner.join(30)
    assert finished.wait(10) and not node.unstored, "stored, not lost"
    assert [m.payload for m in Outbox(tmp_path / "node-a" / "outbox.db").pending()] == [b'{"n": "interrupted"}']


def test_after_an_outage_fresh_events_go_ahead_of_the_evidence_backlog_and_evidence_still_flows(
        running_broker, mqtt_client, tmp_path):
    """Hours of evidence images wait in the outbox; a violation seen now reaches the server in the first handful of
    messages, not after every image. And a flood of events does not hold evidence back: it keeps its share."""
    subscriber = mqtt_client("gridwatch-server")
    subscriber.subscribe("gw/v1/nodes/node-a/events/#")
    subscriber.subscribe("gw/v1/nodes/node-a/evidence/#")
    outbox = Outbox(tmp_path / "outbox.db")
    for index in range(120):  # the backlog of an outage
        outbox.put(evidence_topic("node-a", f"old-{index}"), b"\xff\xd8" + bytes(20_000), EVIDENCE)
    for index in range(3):  # seen now
        outbox.put(TOPIC, json.dumps({"n": index}).encode(), EVENT)
    for index in range(3, 200):  # and then a flood of events
        outbox.put(TOPIC, json.dumps({"n": index}).encode(), EVENT)
    shutdown = start_node(running_broker, tmp_path, outbox, window=10)
    try:
        wait_until(lambda: outbox.depth == 0, timeout=30)
    finally:
        shutdown()
    received = subscriber.collect(1.0)
    kinds = ["evidence" if "/evidence/" in m.topic else "event" for m in received]
    events = [json.loads(m.payload)["n"] for m in received if "/events/" in m.topic]
    assert Counter(kinds) == {"event": 200, "evidence": 120}, "everything arrives once"
    assert events == list(range(200)), "events keep their order"
    assert kinds[:3] == ["event"] * 3, "the fresh events come first"
    first_half = kinds[:160]
    assert first_half.count("evidence") >= 20, "evidence keeps flowing while events flood"
    assert kinds.index("evidence") < 10


def test_a_broker_that_crashes_in_the_middle_of_a_qos2_handshake_loses_no_event(running_broker, mqtt_client,
                                                                               tmp_path):
    """Found by review: the broker had the event (PUBREC) and crashed before the handshake's end, losing its state.
    paho sent its PUBREL again, the broker answered it for a packet it no longer knew, and the outbox deleted an
    event nobody had received. A broker that kept no session (CONNACK) now gets every unanswered message again."""
    import paho.mqtt.client as mqtt

    outbox = Outbox(tmp_path / "outbox.db")
    shutdown = start_node(running_broker, tmp_path, outbox, qos=2)
    paho = shutdown.link._client
    release = paho._send_pubrel
    received_by_broker = threading.Event()

    def held(*_args, **_kwargs):  # the broker has the event; the node's PUBREL is not out yet
        received_by_broker.set()
        return mqtt.MQTT_ERR_SUCCESS

    paho._send_pubrel = held
    try:
        wait_until(shutdown.link.connected.is_set)
        outbox.put(TOPIC, b'{"n": 1}', EVENT)
        assert received_by_broker.wait(10)
        running_broker.broker.process.kill()  # a crash: its half of the handshake is gone with it
        running_broker.broker.process.wait(10)
        paho._send_pubrel = release
        running_broker.broker.start()
        subscriber = persistent_subscriber(mqtt_client)  # the node waits a second before it reconnects
        wait_until(lambda: outbox.depth == 0, timeout=30)
        received = [json.loads(m.payload)["n"] for m in subscriber.collect(1.5)]
    finally:
        shutdown()
    assert received == [1], "delivered, and once"
