"""Horizontal ingest: two `gridwatch server` workers share the event stream through an MQTT 5 shared subscription
against one PostgreSQL database. The broker hands each message to one of them (so the events of one violation land
on both, racing to open its case); one worker is SIGKILLed mid-stream and restarted. Every event is stored exactly
once and every violation has exactly one case, by the database's unique constraints, not by luck."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import httpx
import yaml
from sqlalchemy import func, select

from gridwatch.broker import free_port
from gridwatch.contract import event_topic
from server.db import Database
from server.models import CaseRecord, CaseTransition, DeadLetter, EventRecord
from tests.conftest import DISPATCH
from tests.factories import event_payload, wait_until
from tests.server.test_ingest_service import start_server, stored

VIOLATIONS, BEATS = 300, 6  # new, 4 updates, end: 1,800 events


def stream() -> list[dict]:
    """Each violation at its own place (so each is its own case), its messages interleaved with the others'."""
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    out = []
    for beat in range(BEATS):
        kind = "new" if beat == 0 else "end" if beat == BEATS - 1 else "update"
        for n in range(VIOLATIONS):
            out.append(event_payload(violation_id=f"00000000-0000-4000-8000-{n:012d}", type=kind,
                                     camera_id=f"cam-{n}", zone_id="kerb", score=0.8,
                                     location={"lat": 30.2 + n * 0.001, "lon": 120.16},
                                     observed_at=(start + timedelta(seconds=10 * beat)).isoformat()))
    return out


def healthz(port: int) -> dict:
    """The worker's health report, also when it answers 503 (degraded: its database or broker link is down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code != 503:
            raise
        return json.loads(error.read())


def worker_configs(tmp_path, broker, database_url: str, extra: dict | None = None) -> dict[str, tuple]:
    """(config file, API port) of two workers sharing one database and the broker's event stream."""
    configs = {}
    for name in ("worker-1", "worker-2"):
        configs[name] = (tmp_path / f"{name}.yaml", free_port())
        configs[name][0].write_text(yaml.safe_dump({
            "api_port": configs[name][1], "database_url": database_url, "evidence_dir": str(tmp_path / "evidence"),
            "dispatch_config": str(DISPATCH), "mqtt_port": broker.port,
            "mqtt_password": broker.credentials.server_password, "mqtt_client_id": name,
            "ingest_share_group": "ingest", "ingest_batch_size": 50} | (extra or {})))
    return configs


def test_two_workers_share_the_stream_and_a_killed_one_loses_nothing(running_broker, postgres_server, mqtt_client,
                                                                      tmp_path):
    database_url = postgres_server.create_database()
    database = Database(database_url)
    configs = worker_configs(tmp_path, running_broker, database_url)
    workers = {name: start_server(config, port) for name, (config, port) in configs.items()}
    try:
        node = mqtt_client("node-a")
        payloads = stream()
        publisher = threading.Thread(target=lambda: [
            node.client.publish(event_topic("node-a", "illegal_parking"), json.dumps(payload), qos=1).wait_for_publish()
            for payload in payloads])
        publisher.start()
        wait_until(lambda: stored(database) >= len(payloads) // 4, timeout=60)
        workers["worker-1"].send_signal(signal.SIGKILL)  # mid-stream, mid-batch
        workers["worker-1"].wait(10)
        publisher.join(120)
        assert stored(database) < len(payloads), "the kill came too late to test anything"
        workers["worker-1"] = start_server(*configs["worker-1"])  # its session kept what it had not acknowledged

        wait_until(lambda: stored(database) == len(payloads), timeout=120)
        assert healthz(configs["worker-2"][1])["ingest"]["events"] > 0
        assert healthz(configs["worker-1"][1])["ingest"]["events"] > 0, "the restarted worker took its share again"
        with database.session() as session:
            assert session.scalar(select(func.count(func.distinct(EventRecord.event_id)))) == len(payloads)
            assert session.scalar(select(func.count()).select_from(CaseRecord)) == VIOLATIONS, "one case each"
            split = session.scalar(select(func.count()).select_from(
                select(EventRecord.violation_id).group_by(EventRecord.violation_id)
                .having(func.count(func.distinct(EventRecord.case_id)) > 1).subquery()))
            assert split == 0, "no violation's events are spread over two cases"
            assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
            occurrences = set(session.scalars(select(CaseRecord.occurrences)))
            assert occurrences == {BEATS}, "every event counted on its case exactly once"
    finally:
        for worker in workers.values():
            worker.terminate()
            worker.wait(30)


def test_a_console_on_one_worker_sees_the_case_changes_every_worker_makes(running_broker, postgres_server,
                                                                          mqtt_client, api_tokens, tmp_path):
    """The live feed (`/api/v1/live`) of one worker carries the cases the other worker opened too, each change
    once: an operator watching the console must not miss half the city because the broker dealt its detections to
    another worker."""
    database_url = postgres_server.create_database()
    database = Database(database_url)
    configs = worker_configs(tmp_path, running_broker, database_url, {"tokens_file": str(tmp_path / "tokens.yaml")})
    workers = {name: start_server(config, port) for name, (config, port) in configs.items()}
    seen: list[dict] = []
    listening = threading.Event()

    def watch(port: int) -> None:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/live?max_seconds=60", timeout=70,
                          headers={"Authorization": f"Bearer {api_tokens['operator']}"}) as response:
            event = None
            for line in response.iter_lines():
                if line.startswith("retry: "):  # the stream's first frame: its feed is in place
                    listening.set()
                elif line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "case":
                    seen.append(json.loads(line.removeprefix("data: ")))

    try:
        watcher = threading.Thread(target=watch, args=(configs["worker-2"][1],), daemon=True)
        watcher.start()
        assert listening.wait(10)
        node = mqtt_client("node-a")
        start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        for n in range(60):  # each at its own place: 60 cases
            node.client.publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload(
                camera_id=f"cam-{n}", zone_id="kerb", score=0.8, location={"lat": 30.2 + n * 0.001, "lon": 120.16},
                observed_at=start.isoformat())), qos=1).wait_for_publish()
        with database.session() as session:
            wait_until(lambda: session.scalar(select(func.count()).select_from(CaseRecord)) == 60, timeout=60)
        assert healthz(configs["worker-1"][1])["ingest"]["events"] > 0, "worker-1 opened some of the cases"
        with database.session() as session:
            transitions = session.scalar(select(func.count()).select_from(CaseTransition))
        wait_until(lambda: len(seen) >= transitions, timeout=30)
        time.sleep(0.5)  # anything sent twice would be here by now
        assert {message["case_id"] for message in seen} == set(range(1, 61)), "every worker's cases, on one console"
        assert len(seen) == transitions, "each change once"
    finally:
        for worker in workers.values():
            worker.terminate()
            worker.wait(30)
