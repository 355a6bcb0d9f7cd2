"""The production topology in small: two sites' Mosquitto brokers bridged to the city's core broker, two
`gridwatch server` workers sharing the stream from the core (MQTT 5 shared subscription) on one PostgreSQL database.
The core broker restarts mid-stream: the sites keep what their nodes publish meanwhile, the core keeps what was on
its way to the workers. Every event is stored exactly once and every violation has exactly one case."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import yaml
from sqlalchemy import func, select

from gridwatch.broker import free_port
from gridwatch.contract import NodeStatus, event_topic, status_topic
from server.db import Database
from server.models import CaseRecord, DeadLetter, EventRecord
from tests.bridges import start_city, stop_city
from tests.conftest import DISPATCH, Subscriber
from tests.factories import event_payload, wait_until
from tests.server.test_ingest_service import start_server, stored
from tests.server.test_workers import healthz

NODES = ("node-a", "node-b")  # one per site
VIOLATIONS, BEATS = 100, 6  # per node: new, 4 updates, end → 1,200 events in all


def stream(node: str, site: int) -> list[dict]:
    """The node's violations, each at its own place, their messages interleaved."""
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    return [event_payload(violation_id=f"00000000-0000-4000-8{site:03d}-{n:012d}", node_id=node,
                          type="new" if beat == 0 else "end" if beat == BEATS - 1 else "update",
                          camera_id=f"cam-{n}", zone_id="kerb", score=0.8,
                          location={"lat": 30.2 + n * 0.001, "lon": 120.16 + site * 0.01},
                          observed_at=(start + timedelta(seconds=10 * beat)).isoformat())
            for beat in range(BEATS) for n in range(VIOLATIONS)]


def publish(client: Subscriber, node: str, payloads: list[dict]) -> None:
    for payload in payloads:
        client.client.publish(event_topic(node, "illegal_parking"), json.dumps(payload), qos=1).wait_for_publish()


def test_two_bridged_sites_and_two_workers_store_every_event_once_across_a_core_restart(postgres_server, tmp_path):
    city = start_city(tmp_path / "brokers", [[NODES[0]], [NODES[1]]])
    database_url = postgres_server.create_database()
    database = Database(database_url)
    workers, ports = [], []
    try:
        for name in ("worker-1", "worker-2"):
            config, port = tmp_path / f"{name}.yaml", free_port()
            config.write_text(yaml.safe_dump({
                "api_port": port, "database_url": database_url, "evidence_dir": str(tmp_path / "evidence"),
                "dispatch_config": str(DISPATCH), "mqtt_port": city.core.port,
                "mqtt_password": city.core_accounts.server_password, "mqtt_client_id": name,
                "ingest_share_group": "ingest", "ingest_batch_size": 50}))
            workers.append(start_server(config, port))
            ports.append(port)
        watcher = city.client(city.core, city.core_accounts, "gridwatch-server")
        watcher.subscribe("gw/v1/nodes/+/status")
        publishers = []
        for site, (node, (broker, accounts)) in enumerate(zip(NODES, city.sites, strict=True)):
            client = city.client(broker, accounts, node)
            online = NodeStatus(node_id=node, state="online", session=1).model_dump_json()
            wait_until(lambda client=client, node=node, online=online: not client.publish(
                       status_topic(node), online).is_failure
                       and any(m.topic == status_topic(node) for m in watcher.collect(0.3)),
                       timeout=20)  # the bridges connect a moment after their brokers start
            publishers.append(threading.Thread(target=publish, args=(client, node, stream(node, site))))
        total = len(NODES) * VIOLATIONS * BEATS
        for publisher in publishers:
            publisher.start()
        wait_until(lambda: stored(database) >= total // 5, timeout=60)
        city.core.stop()  # mid-stream: both bridges and both workers lose the core
        for publisher in publishers:
            publisher.join(120)  # the sites acknowledge what their nodes publish meanwhile
        assert stored(database) < total, "the restart came too late to test anything"
        city.core.start()

        wait_until(lambda: stored(database) == total, timeout=120)
        with database.session() as session:
            assert session.scalar(select(func.count(func.distinct(EventRecord.event_id)))) == total
            assert session.scalar(select(func.count()).select_from(CaseRecord)) == VIOLATIONS * len(NODES)
            assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
            assert set(session.scalars(select(CaseRecord.occurrences))) == {BEATS}, "each event counted once"
            assert dict(session.execute(select(EventRecord.node_id, func.count()).group_by(EventRecord.node_id))
                        .all()) == {node: VIOLATIONS * BEATS for node in NODES}
        wait_until(lambda: all(healthz(port)["mqtt"] == "connected" for port in ports), timeout=30)
        assert all(healthz(port)["ingest"]["events"] > 0 for port in ports), "both workers took a share"
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        stop_city(city)
