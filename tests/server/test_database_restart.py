"""PostgreSQL crashes and comes back while the server ingests a stream: the batch in hand is written again once
the database is back (never dead-lettered, never acknowledged before it is committed), so every event is stored
exactly once and every case exists once."""

from __future__ import annotations

import json
import threading

import yaml
from sqlalchemy import func, select

from gridwatch.broker import free_port
from gridwatch.contract import event_topic
from server.db import Database
from server.models import CaseRecord, DeadLetter, EventRecord
from tests.conftest import DISPATCH
from tests.factories import event_payload, wait_until
from tests.postgres import PostgresServer
from tests.server.test_ingest_service import start_server

EVENTS, PLACES = 2400, 40


def test_a_postgresql_crash_mid_stream_loses_nothing(running_broker, mqtt_client, tmp_path):
    postgres = PostgresServer(durable=True).start()
    server = None
    try:
        database = Database(postgres.create_database())

        def stored() -> int:
            try:
                with database.session() as session:
                    return session.scalar(select(func.count()).select_from(EventRecord)) or 0
            except Exception:  # the database is down right now
                return -1

        config, port = tmp_path / "server.yaml", free_port()
        config.write_text(yaml.safe_dump({
            "api_port": port, "database_url": database.engine.url.render_as_string(hide_password=False),
            "evidence_dir": str(tmp_path / "evidence"), "dispatch_config": str(DISPATCH),
            "mqtt_port": running_broker.port, "mqtt_password": running_broker.credentials.server_password,
            "mqtt_client_id": "server-under-test", "ingest_batch_size": 100}))
        server = start_server(config, port)
        node = mqtt_client("node-a")
        payloads = [event_payload(camera_id=f"cam-{i % PLACES}", zone_id=f"zone-{i % PLACES}",
                                  location={"lat": 30.27 + (i % PLACES) * 0.001, "lon": 120.16})
                    for i in range(EVENTS)]
        publisher = threading.Thread(target=lambda: [
            node.client.publish(event_topic("node-a", "illegal_parking"), json.dumps(p), qos=1).wait_for_publish()
            for p in payloads])
        publisher.start()
        wait_until(lambda: stored() >= EVENTS // 5, timeout=60)
        postgres.crash_and_restart(down_seconds=3)
        publisher.join(120)
        assert 0 <= stored() < EVENTS or stored() == -1, "the crash came too late to test anything"

        wait_until(lambda: stored() == EVENTS, timeout=120)
        with database.session() as session:
            assert session.scalar(select(func.count(func.distinct(EventRecord.event_id)))) == EVENTS
            assert session.scalar(select(func.count()).select_from(CaseRecord)) == PLACES, "one case per place"
            assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0, "nothing misfiled as bad"
            assert set(session.scalars(select(CaseRecord.occurrences))) == {EVENTS // PLACES}
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        postgres.stop()
