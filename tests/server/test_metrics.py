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


def test_a_worker_stuck_behind_the_database_shows_its_backlog_and_when_it_last_wrote(api, mqtt_client):
    """Found by review: the lag of stored events froze while nothing was stored, so a worker stuck behind a locked
    database looked as healthy as an idle one, and its queue of received messages was nowhere to be seen."""
    import time

    from sqlalchemy import create_engine

    node = mqtt_client("node-a")
    node.publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
    wait_until(lambda: samples(api).get(("gridwatch_ingest_batch_messages_sum", ())) == 1)
    wrote = samples(api)[("gridwatch_ingest_last_commit_timestamp_seconds", ())]
    assert abs(time.time() - wrote) < 30 and samples(api)[("gridwatch_ingest_backlog_messages", ())] == 0

    url = api.app.state.settings.database_url
    holder = create_engine(url).connect()
    try:  # another program holds the database's write lock: ingest waits for it
        if url.startswith("sqlite"):
            holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            holder.exec_driver_sql("BEGIN")
            holder.exec_driver_sql("LOCK TABLE events IN EXCLUSIVE MODE")
        for _ in range(5):
            node.publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
        stuck = wait_until(lambda: (found := samples(api))[("gridwatch_ingest_backlog_messages", ())] >= 4 and found)
        assert stuck[("gridwatch_ingest_last_commit_timestamp_seconds", ())] == wrote, "nothing written since"
    finally:
        holder.rollback()
        holder.close()
    wait_until(lambda: samples(api)[("gridwatch_ingest_backlog_messages", ())] == 0, timeout=40)
    assert samples(api)[("gridwatch_ingest_last_commit_timestamp_seconds", ())] > wrote


def test_a_scrape_answers_in_time_while_another_program_holds_a_table_locked(api):
    """Found by review: on PostgreSQL a table held locked (a migration, a VACUUM FULL) hung every scrape until the
    lock went, past Prometheus's timeout: the page, counters and all, went missing. Now the database's figures give
    up after a few seconds (`gridwatch_database_up` 0); SQLite's readers are never held by a writer."""
    import threading
    import time

    from sqlalchemy import create_engine

    url = api.app.state.settings.database_url
    holder = create_engine(url).connect()
    answer: dict = {}

    def scrape() -> None:
        began = time.monotonic()
        answer["samples"] = samples(api)
        answer["seconds"] = time.monotonic() - began

    try:
        if url.startswith("sqlite"):
            holder.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            holder.exec_driver_sql("BEGIN")
            holder.exec_driver_sql("LOCK TABLE dead_letters IN ACCESS EXCLUSIVE MODE")
        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        scraper.join(timeout=9)
        assert not scraper.is_alive(), "the scrape still waits for the lock"
    finally:
        holder.rollback()
        holder.close()
    assert answer["seconds"] < 9 and ("gridwatch_ingest_batch_messages_count", ()) in answer["samples"]
    assert answer["samples"][("gridwatch_database_up", ())] == (1 if url.startswith("sqlite") else 0)
