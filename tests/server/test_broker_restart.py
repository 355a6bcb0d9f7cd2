"""The broker restarts in the middle of a stream from a node to the server: the node's outbox keeps what the broker
has not acknowledged, the broker keeps the server's session and what it queued for it, and the server resumes that
session. Every event is stored exactly once and every case exists once."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from edge.outbox import EVENT, Outbox
from gridwatch.contract import event_topic
from tests.factories import event_payload, start_node, wait_until

EVENTS, PLACES = 3000, 30


@pytest.mark.one_database
def test_a_broker_restart_mid_stream_stores_every_event_once(running_broker, api, tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    shutdown = start_node(running_broker, tmp_path, outbox, window=50)
    topic = event_topic("node-a", "illegal_parking")

    def stored() -> int:
        return api.get("/healthz").json()["ingest"].get("events", 0)

    def produce() -> None:
        for n in range(EVENTS):
            outbox.put(topic, json.dumps(event_payload(
                event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"restart-{n}")), camera_id=f"kerb-{n % PLACES}",
                location={"lat": 30.27 + (n % PLACES) * 0.001, "lon": 120.16}, score=0.9)).encode(), EVENT)
            time.sleep(0.001)

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        wait_until(lambda: stored() >= EVENTS // 5, timeout=60)
        running_broker.broker.stop()  # mid-stream: some events in flight, some queued for the server
        time.sleep(2)
        running_broker.broker.start()
        producer.join(60)
        wait_until(lambda: outbox.depth == 0, timeout=120)
        wait_until(lambda: stored() == EVENTS, timeout=120)
        time.sleep(1)  # anything counted twice would show now
    finally:
        shutdown()
    assert stored() == EVENTS
    cases = api.get("/api/v1/cases", params={"page_size": 100}).json()
    assert cases["total"] == PLACES, "every case once"
    assert sum(case["occurrences"] for case in cases["items"]) == EVENTS, "every event counted once"
    assert api.get("/api/v1/dead-letters").json()["total"] == 0
