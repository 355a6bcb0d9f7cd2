"""Ingest and the REST API against a real Mosquitto and a real SQLite file."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from gridwatch.contract import MAX_EVENT_BYTES, event_topic, evidence_topic, status_topic
from tests.factories import event_payload, jpeg, wait_until


def cases(api) -> list[dict]:
    return api.get("/api/v1/cases").json()["items"]


def dead_letters(api) -> list[dict]:
    return api.get("/api/v1/dead-letters").json()["items"]


def publish_event(node, payload: dict, topic: str | None = None) -> None:
    reason = node.publish(topic or event_topic(payload["node_id"], payload["category"]), json.dumps(payload))
    assert not reason.is_failure


def test_event_with_evidence_becomes_a_dispatched_case(api, mqtt_client):
    integrator = mqtt_client("integrator")
    integrator.subscribe("gw/v1/cases/#")
    node = mqtt_client("node-a")
    image, object_crop = jpeg(), jpeg(width=16, height=12, seed=1)
    payload = event_payload(evidence={
        "sha256": hashlib.sha256(image).hexdigest(), "bytes": len(image),
        "crop": {"sha256": hashlib.sha256(object_crop).hexdigest(), "bytes": len(object_crop)},
    })
    node.publish(evidence_topic("node-a", payload["event_id"]), image)
    publish_event(node, payload)
    node.publish(evidence_topic("node-a", payload["event_id"], crop=True), object_crop)  # after the event: fine too

    [case] = wait_until(lambda: cases(api))
    detail = api.get(f"/api/v1/cases/{case['id']}").json()
    assert detail["status"] == "dispatched"
    assert detail["category"] == "illegal_parking" and detail["code"] == "0505"
    assert detail["assignment"]["unit_id"] == "traffic-police"
    assert detail["assignment"]["street_chief"]["name"].startswith("王建国")
    assert [t["to_status"] for t in detail["transitions"]] == ["collected", "registered", "dispatched"]
    assert all(t["actor"] and t["reason"] for t in detail["transitions"])
    download = api.get(detail["evidence_urls"][0])
    assert download.status_code == 200 and download.content == image
    assert download.headers["content-type"] == "image/jpeg"
    crop_urls = wait_until(lambda: api.get(f"/api/v1/cases/{case['id']}").json()["crop_urls"])
    assert api.get(crop_urls[0]).content == object_crop

    messages = [json.loads(m.payload) for m in integrator.collect(0.7)]
    assert [m["status"] for m in messages] == ["collected", "registered", "dispatched"]
    assert messages[-1]["assignment"]["unit_name"].endswith("Traffic police")
    assert messages[-1]["case_id"] == case["id"]


def test_duplicates_change_nothing_and_a_violation_stays_one_case(api, mqtt_client):
    node = mqtt_client("node-a")
    first = event_payload()
    publish_event(node, first)
    publish_event(node, first)  # redelivered
    publish_event(node, event_payload(type="update", violation_id=first["violation_id"]))
    publish_event(node, event_payload(type="end", violation_id=first["violation_id"],
                                      observed_at="2026-11-23T09:20:00+08:00"))
    case = wait_until(lambda: (c := cases(api)) and c[0]["ended_at"] and c[0])
    assert len(cases(api)) == 1
    detail = api.get(f"/api/v1/cases/{case['id']}").json()
    assert [e["type"] for e in detail["events"]] == ["new", "update", "end"]
    assert detail["occurrences"] == 3
    assert api.get("/healthz").json()["ingest"]["duplicates"] == 1


BAD_MESSAGES = [
    ("not json", lambda p: b"{not json", "not valid JSON"),
    ("not utf-8", lambda p: b"\xff\xfe\x00garbage", "not UTF-8"),
    ("missing field", lambda p: json.dumps({k: v for k, v in p.items() if k != "zone_id"}).encode(), "zone_id"),
    ("unknown field", lambda p: json.dumps({**p, "colour": "red"}).encode(), "colour: unknown field"),
    ("naive time", lambda p: json.dumps({**p, "observed_at": "2026-11-23T09:03:00"}).encode(), "observed_at"),
    ("spoofed node", lambda p: json.dumps({**p, "node_id": "node-b"}).encode(), "does not match 'node-a'"),
    ("oversized", lambda p: json.dumps({**p, "label": "x" * MAX_EVENT_BYTES}).encode(), "exceeds"),
    ("array", lambda p: b"[1, 2, 3]", "invalid payload"),
]


@pytest.mark.parametrize(("name", "make", "reason"), BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES])
def test_malformed_event_is_dead_lettered_and_the_loop_goes_on(api, mqtt_client, name, make, reason):
    node = mqtt_client("node-a")
    payload = make(event_payload())
    node.publish(event_topic("node-a", "illegal_parking"), payload)
    publish_event(node, event_payload())  # the next good message is still handled

    wait_until(lambda: cases(api))
    [letter] = dead_letters(api)
    assert reason in letter["reason"], letter["reason"]
    assert letter["topic"] == event_topic("node-a", "illegal_parking")
    assert letter["node_id"] == "node-a"
    assert letter["payload_size"] == len(payload)


def test_wrong_category_topic_and_bad_evidence_are_dead_lettered(api, mqtt_client):
    node = mqtt_client("node-a")
    node.publish(event_topic("node-a", "litter"), json.dumps(event_payload()))
    node.publish(evidence_topic("node-a", uuid.uuid4()), b"GIF89a not a jpeg")
    node.publish(evidence_topic("node-a", "not-a-uuid"), jpeg())
    assert node.publish("gw/v1/nodes/node-a/weather", b"{}").is_failure, "no node topic: the broker refuses it"
    letters = wait_until(lambda: len(d := dead_letters(api)) == 3 and d)
    reasons = " | ".join(letter["reason"] for letter in letters)
    for expected in ("category 'illegal_parking' does not match 'litter'", "not a JPEG", "not an event id"):
        assert expected in reasons


@pytest.mark.one_database
def test_the_health_check_says_so_while_messages_wait_and_nothing_is_written(api, mqtt_client, server_settings,
                                                                             monkeypatch):
    """Found by review: with another process holding SQLite's write lock (or a full disk), the database answered
    reads and the health check said ok while nothing was written."""
    import sqlite3

    from server.api.routes import health

    monkeypatch.setattr(health, "STALLED_SECONDS", 1.0)  # a minute in service
    holder = sqlite3.connect(server_settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        mqtt_client("node-a").publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
        stalled = wait_until(lambda: (answer := api.get("/healthz")).status_code == 503 and answer.json())
        assert stalled["database"] == "ok" and stalled["writing"].startswith("stalled: 1 messages wait")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_until(lambda: (answer := api.get("/healthz")).status_code == 200 and answer.json()["ingest"]["events"] == 1,
               timeout=60)


@pytest.mark.one_database
def test_the_first_message_after_a_quiet_spell_is_not_taken_for_a_stall(api, mqtt_client, server_settings):
    """Found by review: `stalled` counted from the last batch written, so after a quiet night the first message,
    waiting its turn, made the health check answer 503 at once."""
    import sqlite3

    service = api.app.state.ingest_service
    service.ingest.written_at -= 3600  # an hour with nothing to write
    holder = sqlite3.connect(server_settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the message waits its turn
    try:
        mqtt_client("node-a").publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
        wait_until(lambda: service.inbox.unfinished_tasks >= 1)
        answer = api.get("/healthz")
        assert (answer.status_code, answer.json()["writing"]) == (200, "ok")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_late_last_will_does_not_override_a_newer_online(api, mqtt_client):
    node = mqtt_client("node-a")
    node.publish(status_topic("node-a"), json.dumps({"node_id": "node-a", "state": "online", "session": 2,
                                                     "at": "2026-11-23T09:00:00+08:00"}))
    node.publish(status_topic("node-a"), json.dumps({"node_id": "node-a", "state": "offline", "session": 1}))
    node.publish(status_topic("node-b"), b"")  # a cleared retained status is not an error
    wait_until(lambda: api.get("/healthz").json()["ingest"]["status"] >= 1)
    wait_until(lambda: node.collect(0.3) == [])
    [record] = api.get("/api/v1/nodes").json()
    assert record["state"] == "online" and record["session"] == 2
    node.publish(status_topic("node-a"), json.dumps({"node_id": "node-a", "state": "offline", "session": 2}))
    wait_until(lambda: api.get("/api/v1/nodes").json()[0]["state"] == "offline")
    assert dead_letters(api) == []


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/api/v1/cases/999", 404, "case 999 does not exist"),
        ("/api/v1/cases?status=bogus", 422, "status"),
        ("/api/v1/cases?page=0", 422, "page"),
        ("/api/v1/cases?sort=colour", 422, "sort"),
        ("/api/v1/evidence/unknown", 404, "no frame evidence for event unknown"),
        ("/api/v1/evidence/unknown?variant=thumbnail", 422, "variant"),
        ("/api/v1/cases/abc", 422, "case_id"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(api, url, status, message):
    response = api.get(url)
    assert response.status_code == status
    assert message in json.dumps(response.json())


def test_case_list_filters_and_pages(api, mqtt_client):
    node = mqtt_client("node-a")
    for index in range(5):
        publish_event(node, event_payload(category="illegal_parking" if index % 2 == 0 else "litter",
                                          code="0505" if index % 2 == 0 else "0102", camera_id=f"cam-{index}",
                                          location={"lat": 30.2742 + index * 0.001, "lon": 120.1652}),
                      topic=event_topic("node-a", "illegal_parking" if index % 2 == 0 else "litter"))
    wait_until(lambda: api.get("/api/v1/cases").json()["total"] == 5)
    parking = api.get("/api/v1/cases", params={"category": "illegal_parking"}).json()
    assert parking["total"] == 3 and {c["category"] for c in parking["items"]} == {"illegal_parking"}
    page = api.get("/api/v1/cases", params={"page": 2, "page_size": 2, "sort": "id"}).json()
    assert [c["id"] for c in page["items"]] == [3, 4]
    assert api.get("/api/v1/cases", params={"status": "dispatched"}).json()["total"] == 5
    litter = api.get("/api/v1/cases", params={"category": "litter"}).json()["items"]
    assert {c["assignment"]["unit_id"] for c in litter} == {"sanitation"}


def test_a_crop_that_does_not_match_its_announcement_is_dead_lettered(api, mqtt_client):
    node = mqtt_client("node-a")
    image, object_crop = jpeg(), jpeg(seed=2)
    payload = event_payload(evidence={"sha256": hashlib.sha256(image).hexdigest(), "bytes": len(image),
                                      "crop": {"sha256": "0" * 64, "bytes": len(object_crop)}})
    publish_event(node, payload)
    node.publish(evidence_topic("node-a", payload["event_id"], crop=True), object_crop)
    [letter] = wait_until(lambda: dead_letters(api))
    assert "(crop)" in letter["reason"] and "differs" in letter["reason"]
