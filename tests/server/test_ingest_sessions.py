"""The ingest loop across restarts on the broker session it keeps: what it handled once is not handled again, and
what a session subscribed to before a restart never holds the stream up."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from gridwatch.contract import case_topic, event_topic, status_topic
from server.db import Database
from server.models import DeadLetter
from server.services.cases import CaseService
from server.services.dispatch import Dispatcher
from server.services.evidence import EvidenceStore
from server.services.ingest import Ingest
from server.services.ingest_service import IngestService
from tests.factories import event_payload, wait_until

DISPATCH = Path(__file__).resolve().parents[2] / "config" / "demo" / "dispatch.yaml"


def worker(running_broker, database: Database, tmp_path: Path, feed: list[str] | None = None) -> IngestService:
    """A server worker on the session of client id `test-worker`, kept while it is away, as a server's is."""
    ingest = Ingest(database, CaseService(Dispatcher.from_file(DISPATCH)), EvidenceStore(tmp_path / "evidence"),
                    publish_case=lambda _message: None)
    service = IngestService(ingest, "test-worker", "127.0.0.1", running_broker.port, "gridwatch-server",
                            running_broker.credentials.server_password,
                            case_feed=feed.append if feed is not None else None)
    service.start()
    return service


def dead_letters(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(DeadLetter)) or 0


def test_a_retained_message_is_handled_once_not_at_every_restart(running_broker, mqtt_client, tmp_path):
    """Found by review: every (re)connection of a server resent it every retained message, and each restart added
    another dead letter of a node's one bad status (and made its snapshot look just received)."""
    database = Database(f"sqlite:///{tmp_path / 'gw.db'}")
    node = mqtt_client("node-a")
    node.publish(status_topic("node-a"), b'{"state": "dancing"}', retain=True)
    for restart in range(3):
        service = worker(running_broker, database, tmp_path)
        try:
            if restart == 0:
                wait_until(lambda: dead_letters(database) == 1)
            assert service.drain(5)
        finally:
            service.stop()
    assert dead_letters(database) == 1, "kept once, with its reason"


def test_case_changes_a_worker_followed_before_its_restart_never_hold_up_its_events(running_broker, mqtt_client,
                                                                                  tmp_path):
    """Found by review: a worker whose console followed the case changes kept that subscription in its session; after
    a restart (no console yet) the changes came with no one to take them, were never acknowledged, and after a
    thousand the broker sent the worker nothing more: events included."""
    database = Database(f"sqlite:///{tmp_path / 'gw.db'}")
    first = worker(running_broker, database, tmp_path, feed=[])
    first.follow_cases()
    first.stop()
    restarted = worker(running_broker, database, tmp_path)
    try:
        server = mqtt_client("gridwatch-server")
        for number in range(1100):  # other workers' case changes, or its own coming back
            server.publish(case_topic("litter", number + 1), json.dumps({"case_id": number + 1}))
        node = mqtt_client("node-a")
        assert node.publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload())) == 0
        wait_until(lambda: restarted.ingest.counts["events"] == 1, timeout=30)
    finally:
        restarted.stop()
