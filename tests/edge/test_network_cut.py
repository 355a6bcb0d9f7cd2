"""The network between a street cabinet and the broker is cut (a proxy the test controls drops every connection and
refuses new ones) for as long as the node takes to make 10,000 events; they wait in the node's outbox on disk and,
once the link is back, reach the server: every event stored exactly once, every case once, nothing dead-lettered."""

from __future__ import annotations

import json
import uuid

from edge.outbox import EVENT, Outbox
from gridwatch.contract import event_topic
from tests.factories import event_payload, start_node, wait_until
from tests.netcut import CuttableProxy

BEFORE, OFFLINE, PLACES = 200, 10_000, 20


def events(first: int, count: int) -> list[bytes]:
    """Each its own violation at one of PLACES kerbs, so they join PLACES cases."""
    return [json.dumps(event_payload(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cut-{n}")), camera_id=f"kerb-{n % PLACES}", zone_id="kerb",
        location={"lat": 30.27 + (n % PLACES) * 0.001, "lon": 120.16}, score=0.9)).encode()
        for n in range(first, first + count)]


def test_a_node_cut_off_for_10000_events_loses_none_and_none_count_twice(running_broker, api, tmp_path):
    proxy = CuttableProxy(running_broker.port)
    outbox = Outbox(tmp_path / "outbox.db")
    shutdown = start_node(running_broker, tmp_path, outbox, window=50, port=proxy.port)
    link = shutdown.link
    topic = event_topic("node-a", "illegal_parking")

    def stored() -> int:
        return api.get("/healthz").json()["ingest"].get("events", 0)

    try:
        for payload in events(0, BEFORE):
            outbox.put(topic, payload, EVENT)
        wait_until(lambda: stored() == BEFORE, timeout=60)
        wait_until(lambda: outbox.depth == 0, timeout=30)  # and the node has the broker's acknowledgements of all

        proxy.cut()
        wait_until(lambda: not link.connected.is_set(), timeout=30)
        for payload in events(BEFORE, OFFLINE):
            outbox.put(topic, payload, EVENT)
        assert outbox.depth == OFFLINE, "nothing got through the cut; all of it waits on disk"
        assert stored() == BEFORE

        proxy.restore()
        wait_until(lambda: outbox.depth == 0, timeout=180)
        wait_until(lambda: stored() == BEFORE + OFFLINE, timeout=120)
    finally:
        shutdown()
        proxy.close()
    cases = api.get("/api/v1/cases", params={"page_size": 100}).json()
    assert cases["total"] == PLACES, "every case once"
    assert sum(case["occurrences"] for case in cases["items"]) == BEFORE + OFFLINE, "every event counted once"
    assert api.get("/api/v1/dead-letters").json()["total"] == 0
