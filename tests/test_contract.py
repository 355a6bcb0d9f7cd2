from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from gridwatch.contract import (
    Category,
    Event,
    NodeTopic,
    TopicError,
    TopicKind,
    case_topic,
    event_topic,
    evidence_topic,
    parse_node_topic,
    status_topic,
)
from tests.factories import CST, event_payload


def test_topics_round_trip():
    event_id = uuid.uuid4()
    assert parse_node_topic(event_topic("node-a", Category.LITTER)) == NodeTopic("node-a", TopicKind.EVENTS, "litter")
    assert parse_node_topic(evidence_topic("node-a", event_id)) == NodeTopic("node-a", TopicKind.EVIDENCE,
                                                                              str(event_id))
    assert parse_node_topic(status_topic("node-a")) == NodeTopic("node-a", TopicKind.STATUS)
    assert case_topic("street_vending", 12) == "gw/v1/cases/street_vending/12"


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("gw/v2/nodes/node-a/status", "not a node topic"),
        ("gw/v1/nodes/Node A/status", "invalid node id"),
        ("gw/v1/nodes/node-a/weather", "unknown node topic kind"),
        ("gw/v1/nodes/node-a/events/fireworks", "unknown category"),
        ("gw/v1/nodes/node-a/events", "malformed events topic"),
        ("gw/v1/nodes/node-a/status/extra", "malformed status topic"),
    ],
)
def test_bad_topics_are_refused_with_a_reason(topic, reason):
    with pytest.raises(TopicError, match=reason):
        parse_node_topic(topic)


def test_a_valid_event_keeps_its_time_zone():
    event = Event.model_validate(event_payload())
    assert event.observed_at.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"started_at": "2026-11-23T09:00:00"}, "started_at"),  # no time zone
        ({"box": {"x1": 0.5, "y1": 0.2, "x2": 0.3, "y2": 0.4}}, "box"),
        ({"score": 1.5}, "score"),
        ({"type": "begin"}, "type"),
        ({"category": "fireworks"}, "category"),
        ({"surprise": 1}, "surprise"),
        ({"observed_at": datetime(2026, 11, 23, 8, 0, tzinfo=CST).isoformat()}, "observed_at"),
    ],
)
def test_invalid_events_name_the_problem(overrides, field):
    with pytest.raises(ValidationError) as error:
        Event.model_validate(event_payload(**overrides))
    assert field in str(error.value)


def test_asyncapi_document_matches_the_contract():
    """docs/asyncapi.yaml is what integrators read; regenerate it with `python -m gridwatch.asyncapi`."""
    from pathlib import Path

    import yaml

    from gridwatch.asyncapi import build, render

    committed = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
    assert committed.read_text() == render(), "docs/asyncapi.yaml is stale: python -m gridwatch.asyncapi > docs/..."
    document = yaml.safe_load(committed.read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {status_topic("{node_id}"), "gw/v1/nodes/{node_id}/events/{category}",
            "gw/v1/nodes/{node_id}/evidence/{event_id}", "gw/v1/cases/{category}/{case_id}"} <= addresses
    assert set(Event.model_fields) == set(document["components"]["schemas"]["Event"]["properties"])
    assert build()["operations"]["sendNodeStatus"]["bindings"]["mqtt"] == {"qos": 1, "retain": True,
                                                                          "bindingVersion": "0.2.0"}
    jpegs = {name for name, message in document["components"]["messages"].items()
             if message["contentType"] == "image/jpeg"}
    assert jpegs == {"Evidence", "EvidenceCrop", "Snapshot"}, "found by review: a snapshot was documented as JSON"
    assert all(document["components"]["messages"][name]["payload"]["format"] == "binary" for name in jpegs)
