"""A seeded fuzzer over every topic a node may write, through the real broker into the running server: valid
messages of each kind, mutated (bytes flipped, cut, padded, fields of the wrong type, deep nesting, oversized,
another node's id, invalid UTF-8) or replayed. Every message must end in exactly one place — stored, a duplicate,
ignored, or the dead letters — the server must keep answering, and what it refused must all be in the dead letters.
The counts are printed."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter

import pytest

from gridwatch.contract import (
    SCHEMA_VERSION,
    command_response_topic,
    config_status_topic,
    event_topic,
    evidence_topic,
    snapshot_topic,
    status_topic,
    telemetry_topic,
)
from tests.factories import event_payload, jpeg, wait_until

MESSAGES = 400
SEED = 20261130


def valid(rng: random.Random) -> tuple[str, bytes]:
    """A well-formed message of a random kind from node-a."""
    kind = rng.choice(["event", "event", "evidence", "status", "telemetry", "config_status", "response", "snapshot"])
    if kind == "event":
        return event_topic("node-a", "illegal_parking"), json.dumps(event_payload(camera_id=f"cam-{rng.randrange(5)}",
                                                                                   score=0.3)).encode()
    if kind == "evidence":
        image = jpeg(seed=rng.randrange(1000))
        return evidence_topic("node-a", event_payload()["event_id"]), image
    if kind == "snapshot":
        return snapshot_topic("node-a", "cam-1"), jpeg(seed=rng.randrange(1000))
    if kind == "status":
        return status_topic("node-a"), json.dumps({"schema_version": SCHEMA_VERSION, "node_id": "node-a",
                                                   "state": "online", "session": rng.randrange(1, 5)}).encode()
    if kind == "telemetry":
        return telemetry_topic("node-a"), json.dumps({
            "schema_version": SCHEMA_VERSION, "node_id": "node-a", "at": "2026-11-30T09:00:00+00:00", "session": 1,
            "uptime_seconds": 5.0, "events_published": rng.randrange(100), "publish_pending": 0}).encode()
    if kind == "config_status":
        return config_status_topic("node-a"), json.dumps({
            "schema_version": SCHEMA_VERSION, "node_id": "node-a", "config_version": "v1", "state": "applied",
            "at": "2026-11-30T09:00:00+00:00"}).encode()
    return command_response_topic("node-a"), json.dumps({
        "schema_version": SCHEMA_VERSION, "node_id": "node-a", "request_id": f"r-{rng.randrange(99)}",
        "action": "snapshot", "ok": True, "at": "2026-11-30T09:00:00+00:00"}).encode()


def wrong_type(rng: random.Random) -> object:
    return rng.choice([None, 7, -1e308, "x" * rng.randrange(1, 300), [], {"a": [1]}, True, "\u0000", "💥"])


def mutate(rng: random.Random, payload: bytes) -> bytes:
    how = rng.choice(["flip", "cut", "pad", "type", "nest", "huge", "utf8", "spoof", "keep"])
    if how == "flip" and payload:
        data = bytearray(payload)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if how == "cut":
        return payload[:rng.randrange(len(payload) + 1)]
    if how == "pad":
        return payload + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    if how == "nest":
        depth = rng.choice([50, 5000])
        return b"[" * depth + payload + b"]" * depth
    if how == "huge":  # past the server's limit for a node's JSON, inside the broker's 8 MiB
        return payload + b" " * (1024 * 1024)
    if how == "utf8":
        return b"\xff\xfe" + payload
    try:
        body = json.loads(payload)
    except ValueError:
        return payload  # a JPEG: kept as it is
    if how == "type" and isinstance(body, dict) and body:
        key = rng.choice(sorted(body))
        body[key] = wrong_type(rng)
    elif how == "spoof" and isinstance(body, dict):
        body["node_id"] = rng.choice(["node-b", "NODE A", "", "node-a" * 20])
    return json.dumps(body).encode()


def counts(api) -> Counter:
    """What became of the messages, from the server's own metrics: (kind, outcome) -> count."""
    found = Counter()
    for kind, outcome, value in re.findall(r'^gridwatch_ingest_messages_total\{kind="(\w+)",outcome="(\w+)"\} (\S+)$',
                                           api.get("/metrics").text, re.MULTILINE):
        found[(kind, outcome)] += int(float(value))
    return found


@pytest.mark.one_database
def test_a_seeded_fuzzer_over_every_topic_never_crashes_the_server_and_loses_nothing(api, mqtt_client):
    rng = random.Random(SEED)
    node = mqtt_client("node-a")
    sent: list[tuple[str, bytes]] = []
    for _ in range(MESSAGES):
        topic, payload = valid(rng)
        payload = mutate(rng, payload)
        sent.append((topic, payload))
        if rng.random() < 0.1:
            sent.append((topic, payload))  # replayed as it was
    refused_by_broker = sum(node.publish(topic, payload).is_failure for topic, payload in sent)
    assert refused_by_broker == 0, "a node may write all of this in its own tree; the server must judge it"
    wait_until(lambda: sum(counts(api).values()) == len(sent), timeout=120)
    outcome = Counter()
    for (_kind, result), number in counts(api).items():
        outcome[result] += number
    print(f"fuzzer: {len(sent)} messages, seed {SEED}: {dict(outcome)}; "
          f"by kind: {dict(Counter(kind for kind, _ in counts(api).elements()))}")
    assert set(outcome) <= {"stored", "duplicate", "ignored", "dead_letter"}
    assert api.get("/healthz").status_code == 200, "the server still answers"
    assert api.get("/api/v1/dead-letters").json()["total"] == outcome["dead_letter"] > 0, "every refusal is kept"
    assert outcome["stored"] > 0 and outcome["duplicate"] > 0, "the fuzzer reached the good paths too"
    hashes = {hashlib.sha256(payload).hexdigest() for _topic, payload in sent}
    assert len(hashes) < len(sent), "some messages were replays"
