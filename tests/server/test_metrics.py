"""`/metrics` as Prometheus scrapes it, after real traffic through the broker."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from gridwatch.contract import event_topic
from tests.factories import event_payload, wait_until


def samples(api) -> dict[tuple[str, tuple], float]:
    text = api.get("/metrics", headers={"Authorization": ""}).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_ingest_dead_letters_and_cases(api, mqtt_client):
    node = mqtt_client("node-a")
    node.publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
    node.publish(event_topic("node-a", "illegal_parking"), b'{"broken": ')
    wait_until(lambda: api.get("/api/v1/dead-letters").json()["total"] == 1 and api.get("/api/v1/cases").json()[
        "total"] == 1)
    # a batch's messages are counted once its last part is written, a moment after its case and dead letter show
    figures = wait_until(lambda: (found := samples(api)).get(("gridwatch_ingest_batch_messages_sum", ())) == 2
                         and found)
    assert figures[("gridwatch_ingest_messages_total", (("kind", "events"), ("outcome", "stored")))] == 1
    assert figures[("gridwatch_ingest_messages_total", (("kind", "events"), ("outcome", "dead_letter")))] == 1
    assert figures[("gridwatch_ingest_lag_seconds_count", ())] == 1
    batches = figures[("gridwatch_ingest_batch_messages_count", ())]
    assert 1 <= batches <= 2 and figures[("gridwatch_ingest_batch_messages_sum", ())] == 2, "2 messages, 1 or 2 batches"
    assert figures[("gridwatch_ingest_batch_seconds_count", ())] == batches
    assert figures[("gridwatch_cases", (("status", "dispatched"),))] == 1
    assert figures[("gridwatch_cases", (("status", "closed"),))] == 0
    assert figures[("gridwatch_dead_letters", ())] == 1
    assert figures[("gridwatch_cases_overdue", ())] == 0


def test_a_scrape_while_the_database_is_away_still_brings_the_counters():
    """Found by review: the database's figures failing made the whole page a 500, so the counters went missing in
    the very outage they would show."""
    from prometheus_client import generate_latest

    from server.db import Database
    from server.services.metrics import Metrics

    metrics = Metrics(Database("postgresql+psycopg://gw:gw@127.0.0.1:9/gw", migrate_schema=False))  # nobody there
    metrics.messages_seen({("events", "stored"): 3})
    families = {family.name: family for family in text_string_to_metric_families(generate_latest(
        metrics.registry).decode())}
    assert families["gridwatch_database_up"].samples[0].value == 0
    assert families["gridwatch_ingest_messages"].samples[0].value == 3
    assert "gridwatch_cases" not in families
