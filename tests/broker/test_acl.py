"""The broker's roles, checked against a real Mosquitto started from broker_config/."""

from __future__ import annotations

import pytest

from gridwatch.contract import (
    case_topic,
    command_response_topic,
    command_topic,
    config_status_topic,
    config_topic,
    event_topic,
    evidence_topic,
    snapshot_topic,
    status_topic,
    telemetry_topic,
)

PUBLISH_MATRIX = [
    ("node-a", event_topic("node-a", "illegal_parking"), True),
    ("node-a", telemetry_topic("node-a"), True),
    ("node-a", "gw/v1/nodes/node-a/evidence/123", True),
    ("node-a", evidence_topic("node-a", "123", crop=True), True),
    ("node-a", snapshot_topic("node-a", "cam-1"), True),
    ("node-a", config_status_topic("node-a"), True),
    ("node-a", command_response_topic("node-a"), True),
    # found by review: a node could overwrite the config the server keeps retained for it, and command itself
    ("node-a", config_topic("node-a"), False),
    ("node-a", command_topic("node-a"), False),
    ("node-a", "gw/v1/nodes/node-a/weather", False),
    ("node-a", event_topic("node-b", "illegal_parking"), False),
    ("node-a", status_topic("node-b"), False),
    ("node-a", case_topic("litter", 1), False),
    ("node-a", "gw/v1/nodes/node-a-evil/events/litter", False),
    # found by review: evidence/# let a node's password keep any number of retained 8 MiB messages below it
    ("node-a", "gw/v1/nodes/node-a/evidence/123/crop/more", False),
    ("node-a", "gw/v1/nodes/node-a/evidence/123/frame", False),
    ("integrator", case_topic("litter", 1), False),
    ("integrator", event_topic("node-a", "litter"), False),
    ("integrator", "gw/v1/nodes/integrator/events/litter", False),
    ("gridwatch-server", case_topic("litter", 1), True),
    ("gridwatch-server", config_topic("node-a"), True),
]


@pytest.mark.parametrize(("user", "topic", "allowed"), PUBLISH_MATRIX)
def test_publish_rights(mqtt_client, user, topic, allowed):
    watcher = mqtt_client("gridwatch-server")
    watcher.subscribe("gw/#")
    reason = mqtt_client(user).publish(topic, b"{}")
    assert reason.is_failure is (not allowed), f"{user} -> {topic}: {reason}"
    delivered = [m.topic for m in watcher.collect(0.5)]
    assert (topic in delivered) is allowed


def test_integrator_reads_cases_events_and_status(mqtt_client):
    integrator = mqtt_client("integrator")
    integrator.subscribe("gw/v1/cases/#")
    integrator.subscribe("gw/v1/nodes/+/events/#")
    integrator.subscribe("gw/v1/nodes/+/status")
    integrator.subscribe("gw/v1/nodes/+/config")
    server = mqtt_client("gridwatch-server")
    server.publish(case_topic("litter", 5), b"case")
    server.publish(config_topic("node-a"), b"config")
    mqtt_client("node-a").publish(event_topic("node-a", "litter"), b"event")
    mqtt_client("node-b").publish(status_topic("node-b"), b"status")
    received = {m.topic for m in integrator.collect(0.7)}
    assert received == {case_topic("litter", 5), event_topic("node-a", "litter"), status_topic("node-b")}


def test_a_node_reads_only_its_own_config(mqtt_client):
    server = mqtt_client("gridwatch-server")
    server.publish(config_topic("node-a"), b"for a", retain=True)
    server.publish(config_topic("node-b"), b"for b", retain=True)
    node_a = mqtt_client("node-a")
    node_a.subscribe("gw/v1/nodes/+/config")
    assert [(m.topic, m.payload) for m in node_a.collect(0.7)] == [(config_topic("node-a"), b"for a")]


@pytest.mark.parametrize(("user", "password"), [(None, None), ("node-a", "wrong"), ("nobody", "x")])
def test_anonymous_and_wrong_passwords_are_refused(running_broker, user, password):
    from tests.conftest import Subscriber

    client = Subscriber(running_broker.port, user, password, client_id="intruder")
    try:
        assert client.reason.is_failure
    finally:
        client.close()


FAMILIES = {
    "status": status_topic("node-a"), "telemetry": telemetry_topic("node-a"),
    "events": event_topic("node-a", "litter"),
    "evidence": evidence_topic("node-a", "6f1c1c7e-6a0c-4f64-9d4e-0f6f1f7f2a11"),
    "config": config_topic("node-a"), "config/status": config_status_topic("node-a"),
    "command": command_topic("node-a"), "command/response": command_response_topic("node-a"),
    "snapshot": snapshot_topic("node-a", "cam-1"), "cases": case_topic("litter", 1),
}
"""One topic of each family, in node-a's tree (and a case)."""
EVERY = set(FAMILIES)
NODE_SENDS = {"status", "telemetry", "events", "evidence", "config/status", "command/response", "snapshot"}
DESIGN = {  # account -> (families it may publish to, families it may read), as broker_config/acl says
    "gridwatch-server": (EVERY, EVERY),
    "integrator": (set(), {"cases", "events", "status"}),
    "bridge": (NODE_SENDS, {"config", "command", "cases"}),  # a site's broker: what nodes send up, what comes down
    "node-a": (NODE_SENDS, {"config", "command", "status"}),  # never its own config or commands
    "node-b": (set(), set()),  # another node: nothing in node-a's tree
}


@pytest.mark.parametrize("user", sorted(DESIGN))
def test_every_account_publishes_exactly_where_the_design_says(mqtt_client, user):
    watcher = mqtt_client("gridwatch-server")
    watcher.subscribe("gw/#")
    client = mqtt_client(user)
    refused = {family for family, topic in FAMILIES.items() if client.publish(topic, b"{}").is_failure}
    delivered = {m.topic for m in watcher.collect(0.7)}
    allowed = DESIGN[user][0]
    assert EVERY - refused == allowed, "the broker acknowledges exactly the allowed publishes"
    assert {family for family, topic in FAMILIES.items() if topic in delivered} == allowed


@pytest.mark.parametrize("user", sorted(DESIGN))
def test_every_account_reads_exactly_what_the_design_says(mqtt_client, user):
    client = mqtt_client(user)
    for topic in FAMILIES.values():
        client.subscribe(topic)
    server = mqtt_client("gridwatch-server")
    for topic in FAMILIES.values():
        server.publish(topic, b"{}")
    received = {m.topic for m in client.collect(0.7)}
    assert {family for family, topic in FAMILIES.items() if topic in received} == DESIGN[user][1]
