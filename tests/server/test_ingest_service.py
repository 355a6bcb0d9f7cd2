"""The ingest loop's promise: a message is acknowledged to the broker only once its batch is committed, so a
server killed mid-batch loses nothing (the broker sends the rest again) and stores nothing twice."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from gridwatch.broker import free_port, wait_for_port
from gridwatch.contract import event_topic, evidence_topic
from server.db import Database
from server.models import CaseRecord, DeadLetter, EventRecord, EvidenceRecord
from server.services.cases import CaseService
from server.services.dispatch import Dispatcher
from server.services.events import POSTPONED
from server.services.evidence import EvidenceStore
from server.services.ingest import Ingest
from server.services.ingest_service import PATIENCE, IngestService
from server.services.metrics import Metrics
from tests.factories import event_payload, jpeg, wait_until

REPO = Path(__file__).resolve().parents[2]
DISPATCH = REPO / "config" / "demo" / "dispatch.yaml"


def start_server(config: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "gridwatch", "--log-level", "WARNING", "server", "--config",
                               str(config)], cwd=REPO)
    wait_for_port("127.0.0.1", port, 60, server)

    def subscribed() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:  # noqa: S310
            return json.loads(response.read())["mqtt"] == "connected"

    wait_until(subscribed, timeout=30)
    time.sleep(0.5)  # the subscription's acknowledgement follows the connection
    return server


def stored(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(EventRecord)) or 0


def test_a_server_killed_mid_batch_loses_nothing_and_stores_nothing_twice(server_settings, mqtt_client, tmp_path):
    config, port = tmp_path / "server.yaml", free_port()
    config.write_text(yaml.safe_dump({"api_port": port,
        "database_url": server_settings.database_url, "evidence_dir": str(tmp_path / "evidence"),
        "dispatch_config": str(server_settings.dispatch_config), "mqtt_port": server_settings.mqtt_port,
        "mqtt_password": server_settings.mqtt_password.get_secret_value(), "mqtt_client_id": "server-under-test"}))
    database = Database(server_settings.database_url)
    server = start_server(config, port)
    try:
        node = mqtt_client("node-a")
        payloads = [event_payload(camera_id=f"cam-{i % 40}", zone_id=f"zone-{i % 40}",
                                  location={"lat": 30.27 + (i % 40) * 0.001, "lon": 120.16}) for i in range(3000)]
        for payload in payloads:
            node.client.publish(event_topic("node-a", "illegal_parking"), json.dumps(payload), qos=1)
        wait_until(lambda: stored(database) > 0, timeout=30)
        server.send_signal(signal.SIGKILL)  # mid-stream, without a chance to finish anything
        server.wait(10)
        before_restart = stored(database)
        assert before_restart < 3000, "the kill came too late to test anything"

        server = start_server(config, port)
        wait_until(lambda: stored(database) == 3000, timeout=120)
        time.sleep(1)
        assert stored(database) == 3000
        with database.session() as session:
            assert session.scalar(select(func.count(func.distinct(EventRecord.event_id)))) == 3000
            assert session.scalar(select(func.count()).select_from(CaseRecord)) == 40, "one case per place"
    finally:
        server.terminate()
        server.wait(30)


def test_a_stopping_server_ends_its_open_console_streams_instead_of_waiting_for_them(server_settings, api_tokens,
                                                                                     tmp_path):
    """A console's live stream lasts minutes: a server asked to stop (SIGTERM, as a service manager does) must not
    wait for it, or the manager's own timeout kills it mid-batch."""
    config, port = tmp_path / "server.yaml", free_port()
    config.write_text(yaml.safe_dump({"api_port": port,
        "database_url": server_settings.database_url, "evidence_dir": str(tmp_path / "evidence"),
        "dispatch_config": str(server_settings.dispatch_config), "mqtt_port": server_settings.mqtt_port,
        "mqtt_password": server_settings.mqtt_password.get_secret_value(), "mqtt_client_id": "server-under-test",
        "tokens_file": str(server_settings.tokens_file)}))
    server = start_server(config, port)
    ended = threading.Event()

    def watch() -> None:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/live?max_seconds=600", timeout=None,
                          headers={"Authorization": f"Bearer {api_tokens['operator']}"}) as response:
            for _line in response.iter_lines():
                pass
        ended.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        time.sleep(1)  # the stream is open
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then raises the signal it caught again: a SIGTERM exit status
        assert server.wait(20) in (0, -signal.SIGTERM), "stopped, well before the stream's own end"
        assert ended.wait(5), "the console's stream was ended (its browser reconnects by itself)"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


class Postponing:
    """Stands in for `Ingest` (this tests the service's loop alone): an event that says `held` is postponed, as if
    another worker held its case, until a batch waits for it."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[bytes], bool]] = []
        self.publish_case = None

    def handle_batch(self, messages: list[tuple[str, bytes]], patient: bool = True,
                     outcomes: list[str] | None = None) -> list[str]:
        self.batches.append(([payload for _topic, payload in messages], patient))
        return [POSTPONED if payload == b"held" and not patient else "stored" for _topic, payload in messages]


def test_a_postponed_event_goes_with_the_next_batches_until_one_waits_for_it(running_broker, mqtt_client):
    ingest = Postponing()
    service = IngestService(ingest, "test-ingest", "127.0.0.1", running_broker.port, "gridwatch-server",
                            running_broker.credentials.server_password)
    service.start()
    try:
        node = mqtt_client("node-a")
        assert node.publish(event_topic("node-a", "illegal_parking"), b"held") == 0
        wait_until(lambda: any(patient for _payloads, patient in ingest.batches))
        assert node.publish(event_topic("node-a", "illegal_parking"), b"after") == 0
        wait_until(lambda: any(b"after" in payloads for payloads, _patient in ingest.batches))
        assert service.drain(10), "every message written and acknowledged, the postponed one too"
    finally:
        service.stop()
    tries = [patient for payloads, patient in ingest.batches if b"held" in payloads]
    assert tries == [False] * PATIENCE + [True], f"set aside {PATIENCE} times, then a batch waits for it"
    assert all(payloads.count(b"held") <= 1 for payloads, _patient in ingest.batches)
    assert [payloads for payloads, _patient in ingest.batches if b"after" in payloads] == [[b"after"]]


class InOrder:
    """Stands in for `Ingest`: a batch holding `poison` fails as a whole (and `poison` alone too); `held` is
    postponed the first time, as if another worker held its case for a moment."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.held_before = False
        self.publish_case = None

    def handle_batch(self, messages: list[tuple[str, bytes]], patient: bool = True,
                     outcomes: list[str] | None = None) -> list[str]:
        if any(payload == b"poison" for _topic, payload in messages):
            raise ValueError("a bug met this message")
        results = []
        for _topic, payload in messages:
            if payload == b"held" and not self.held_before:
                self.held_before = True
                results.append(POSTPONED)
            else:
                self.stored.append(payload)
                results.append("stored")
        return results

    def set_aside(self, topic: str, payload: bytes, error: Exception) -> str:
        return "set_aside"


def test_a_batch_written_message_by_message_keeps_a_violations_order_past_a_postponed_one():
    """After a batch failed and went message by message, a postponed `update` was followed by its violation's `end`,
    written first; now the `end` waits with it for the next batch."""
    ingest = InOrder()
    service = IngestService(ingest, "test-ingest", "127.0.0.1", free_port(), "gridwatch-server", "unused")
    topic = event_topic("node-a", "illegal_parking")

    def message(payload: bytes) -> mqtt.MQTTMessage:
        made = mqtt.MQTTMessage(topic=topic.encode())
        made.payload = payload
        return made

    first = service._write([message(b"poison"), message(b"held"), message(b"end")], patient=False)
    assert first == ["set_aside", POSTPONED, POSTPONED]
    assert service._write([message(b"held"), message(b"end")], patient=False) == ["stored", "stored"]
    assert ingest.stored == [b"held", b"end"], "the violation's messages written in the order they came"


def test_a_message_that_fails_for_another_reason_than_the_database_holds_up_no_other(running_broker, mqtt_client,
                                                                                     tmp_path):
    """A batch that fails for a bug, or a row the database refuses even as a dead letter, was retried for ever,
    its good messages with it: now each goes on its own, and one that fails alone too is set aside on disk."""
    ingest = Ingest(Database(f"sqlite:///{tmp_path / 'gw.db'}"), CaseService(Dispatcher.from_file(DISPATCH)),
                    EvidenceStore(tmp_path / "evidence"), publish_case=lambda _message: None)
    real = ingest.handle_batch

    def failing_on_poison(messages, patient=True, outcomes=None):
        if any(payload == b"poison" for _topic, payload in messages):
            raise ValueError("a bug met this message")
        return real(messages, patient, outcomes)

    ingest.handle_batch = failing_on_poison
    service = IngestService(ingest, "test-ingest", "127.0.0.1", running_broker.port, "gridwatch-server",
                            running_broker.credentials.server_password)
    service.start()
    try:
        node = mqtt_client("node-a")
        topic = event_topic("node-a", "illegal_parking")
        for payload in (json.dumps(event_payload()).encode(), b"poison", json.dumps(event_payload()).encode()):
            assert node.publish(topic, payload) == 0
        assert service.drain(20), "every message written or set aside, and acknowledged"
        assert node.publish(topic, json.dumps(event_payload()).encode()) == 0
        assert service.drain(20)
    finally:
        service.stop()
    assert stored(ingest.database) == 3
    [kept] = (tmp_path / "evidence" / "set-aside").glob("*.json")
    assert json.loads(kept.read_text()) == {"topic": topic, "reason": "ValueError: a bug met this message", "bytes": 6}
    assert kept.with_suffix(".payload").read_bytes() == b"poison"
    assert ingest.counts["set_aside"] == 1


def test_a_batch_tried_again_after_the_database_went_away_mid_way_writes_nothing_twice(running_broker, mqtt_client,
                                                                                       tmp_path, monkeypatch):
    """A batch's events are committed, then the database goes away while its images are written, and the worker
    tries the batch again: the refused event's dead letter and the stored event's count stay as they were (the
    refusal was dead-lettered a second time, and the stored event counted again as a duplicate)."""
    database = Database(f"sqlite:///{tmp_path / 'gw.db'}")
    metrics = Metrics(database)
    ingest = Ingest(database, CaseService(Dispatcher.from_file(DISPATCH)), EvidenceStore(tmp_path / "evidence"),
                    publish_case=lambda _message: None, metrics=metrics)
    real_put = ingest.evidence.put

    def away_once(payload: bytes, sha256: str) -> None:
        monkeypatch.setattr(ingest.evidence, "put", real_put)
        raise OperationalError("INSERT INTO evidence …", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(ingest.evidence, "put", away_once)
    frame = jpeg(seed=1)
    event = event_payload(evidence={"sha256": hashlib.sha256(frame).hexdigest(), "bytes": len(frame)})
    service = IngestService(ingest, "test-ingest", "127.0.0.1", running_broker.port, "gridwatch-server",
                            running_broker.credentials.server_password, batch_wait_seconds=2.0)
    service.start()  # the three arrive within the batch's wait: one batch
    try:
        node = mqtt_client("node-a")
        assert node.publish(event_topic("node-a", "illegal_parking"), json.dumps(event).encode()) == 0
        assert node.publish(event_topic("node-a", "illegal_parking"), b'{"not": "an event"}') == 0
        assert node.publish(evidence_topic("node-a", event["event_id"]), frame) == 0
        wait_until(lambda: ingest.counts["dead_letters"])  # the batch is in hand: its first try wrote this
        assert service.drain(20), "written after one try again, and acknowledged"
    finally:
        service.stop()
    with ingest.database.session() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 1
        assert session.scalar(select(func.count()).select_from(EvidenceRecord)) == 1
    assert stored(ingest.database) == 1
    assert (ingest.counts["events"], ingest.counts["duplicates"], ingest.counts["dead_letters"]) == (1, 0, 1)
    seen = {tuple(sample.labels.values()): sample.value for family in metrics.registry.collect()
            if family.name == "gridwatch_ingest_messages" for sample in family.samples
            if sample.name.endswith("_total")}
    assert seen == {("events", "stored"): 1, ("events", "dead_letter"): 1, ("evidence", "stored"): 1}, \
        "/metrics counts each message once, in the try that wrote it"


def test_a_stop_under_a_backlog_writes_what_had_come_and_publishes_nothing_after_the_disconnect(monkeypatch):
    """Found by review: a stop never stopped taking messages; under a backlog the broker kept the inbox full as
    batches were acknowledged, the 10 s wait ran out, the server disconnected, and the writer went on committing
    batches whose case changes and acknowledgements went into a closed link: on the next start those messages were
    duplicates, so their case changes were never published at all."""
    from itertools import count
    from types import SimpleNamespace

    from gridwatch.mqtt import MqttClient

    log: list[tuple[str, bool]] = []
    disconnected = threading.Event()

    def handle_batch(messages, patient=True, outcomes=None):  # noqa: ANN001, ANN202, ARG001 - Ingest's signature
        time.sleep(0.2)  # one batch's transaction
        for _ in messages:
            service.publish_case(SimpleNamespace(case_id=1, category="litter"))
        return ["stored"] * len(messages)

    service = IngestService(SimpleNamespace(handle_batch=handle_batch), "test-ingest", "127.0.0.1", free_port(),
                            "gridwatch-server", "unused", batch_size=50)
    monkeypatch.setattr(service, "publish", lambda *_args, **_kwargs: log.append(("publish", disconnected.is_set())))
    monkeypatch.setattr(service, "ack", lambda _message: log.append(("ack", disconnected.is_set())))
    monkeypatch.setattr(service, "flush", lambda _timeout: True)
    monkeypatch.setattr(MqttClient, "stop", lambda _self, final=None: disconnected.set())
    numbers, feeding = count(), threading.Event()

    def broker() -> None:  # keeps the in-flight window full: a backlog
        while not feeding.is_set():
            if service.inbox.qsize() < 100:
                service.inbox.put(mqtt.MQTTMessage(topic=f"gw/v1/nodes/n/events/litter/{next(numbers)}".encode()))
            time.sleep(0.001)

    threading.Thread(target=broker, daemon=True).start()
    service._worker.start()
    time.sleep(0.5)
    began = time.monotonic()
    service.stop()
    took = time.monotonic() - began
    time.sleep(0.5)
    feeding.set()
    assert not service._worker.is_alive() and took < 5, f"the stop took {took:.1f} s"
    assert not [kind for kind, after in log if after], "nothing published or acknowledged after the disconnect"
    assert service.inbox.qsize() > 0, "what came after the stop is left for the broker to send again"
