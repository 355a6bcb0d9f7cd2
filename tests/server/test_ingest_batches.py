"""A batch as the broker delivers it, every kind mixed: images, events and telemetry are each written in one
transaction, and each message still ends in exactly one place (stored, duplicate, or a dead letter with its
reason), as if it had come alone."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gridwatch.contract import SCHEMA_VERSION, Event, event_topic, evidence_topic, telemetry_topic
from server.db import Database
from server.models import DeadLetter, EventRecord, EvidenceRecord, NodeRecord
from server.services.cases import CaseService
from server.services.dispatch import Dispatcher
from server.services.events import EventWriter, Incoming
from server.services.evidence import EvidenceStore
from server.services.ingest import Ingest
from tests.factories import event_payload, jpeg

DISPATCH = Path(__file__).resolve().parents[2] / "config" / "demo" / "dispatch.yaml"


@pytest.fixture
def ingest(database_url, tmp_path):
    return Ingest(Database(database_url), CaseService(Dispatcher.from_file(DISPATCH)), EvidenceStore(tmp_path / "e"),
                  publish_case=lambda _message: None)


def telemetry(node: str, published: int) -> tuple[str, bytes]:
    return telemetry_topic(node), json.dumps({
        "schema_version": SCHEMA_VERSION, "node_id": node, "at": "2026-11-30T09:00:00+00:00", "session": 1,
        "uptime_seconds": 60.0, "events_published": published, "publish_pending": 0}).encode()


def test_a_mixed_batch_ends_each_message_where_it_would_alone(ingest):
    frame, other = jpeg(seed=1), jpeg(seed=2)
    announced = event_payload(evidence={"sha256": hashlib.sha256(frame).hexdigest(), "bytes": len(frame)})
    tampered = event_payload(camera_id="cam-2", evidence={"sha256": hashlib.sha256(frame).hexdigest(),
                                                          "bytes": len(frame)})
    messages = [
        (evidence_topic("node-a", announced["event_id"]), frame),              # its event comes later in the batch
        (event_topic("node-a", "illegal_parking"), json.dumps(announced).encode()),
        (evidence_topic("node-a", announced["event_id"]), frame),              # the same image again
        telemetry("node-a", 1),
        (event_topic("node-a", "illegal_parking"), json.dumps(tampered).encode()),
        (evidence_topic("node-a", tampered["event_id"]), other),               # not what its event announced
        telemetry("node-a", 2),
        telemetry("node-b", 7),
        (telemetry_topic("node-c"), b"{not json"),
        (evidence_topic("node-a", "not-a-uuid"), frame),
    ]
    assert ingest.handle_batch(messages) == ["stored", "stored", "duplicate", "stored", "stored", "dead_letter",
                                             "stored", "stored", "dead_letter", "dead_letter"]
    with ingest.database.session() as session:
        assert session.scalar(select(func.count()).select_from(EventRecord)) == 2
        assert session.scalar(select(func.count()).select_from(EvidenceRecord)) == 1
        reasons = session.scalars(select(DeadLetter.reason).order_by(DeadLetter.id)).all()
        assert len(reasons) == 3
        assert any("differs from" in reason and "announced by the event" in reason for reason in reasons)
        assert any("not valid JSON" in reason for reason in reasons)
        assert any("not an event id" in reason for reason in reasons)
        assert session.get(NodeRecord, "node-a").telemetry["events_published"] == 2, "the latest report wins"
        assert session.get(NodeRecord, "node-b").telemetry["events_published"] == 7
    assert ingest.counts["telemetry"] == 3 and ingest.counts["evidence"] == 1 and ingest.counts["events"] == 2


def test_an_image_stored_by_another_worker_while_its_event_is_written_is_still_checked(ingest):
    """One worker holds an event in its open batch; another is handed an image that is not the one the event
    announces. The image waits for the event's batch, then is refused: it used to be stored, since neither worker
    saw the other's uncommitted row."""
    frame, other = jpeg(seed=1), jpeg(seed=2)
    announced = event_payload(evidence={"sha256": hashlib.sha256(frame).hexdigest(), "bytes": len(frame)})
    second = Ingest(ingest.database, ingest.cases, ingest.evidence, publish_case=lambda _message: None)
    topic = event_topic("node-a", "illegal_parking")
    with ingest.database.session() as first:
        EventWriter(ingest.cases).write(first, [Incoming(0, topic, json.dumps(announced).encode(),
                                                         Event.model_validate(announced))], ingest.clock())
        first.flush()
        outcomes: list[str] = []
        worker = threading.Thread(target=lambda: outcomes.extend(
            second.handle_batch([(evidence_topic("node-a", announced["event_id"]), other)])))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "the image waits for the batch writing its event"
        first.commit()
    worker.join(30)
    assert outcomes == ["dead_letter"]
    with ingest.database.session() as session:
        assert session.scalar(select(func.count()).select_from(EvidenceRecord)) == 0
        assert "differs from" in session.scalar(select(DeadLetter.reason))


class SlowDisk(EvidenceStore):
    """An evidence store whose disk stalls until the test lets it go on."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writing, self.go_on = threading.Event(), threading.Event()

    def put(self, data: bytes, sha256: str | None = None) -> str:
        self.writing.set()
        assert self.go_on.wait(60)
        return super().put(data, sha256)


def test_an_image_on_a_slow_disk_holds_up_no_other_writer(tmp_path):
    """On SQLite a transaction that writes takes the database's one write lock: an image's file written inside it
    kept every other writer (a worker's next batch of events, an operator's step) waiting for the disk."""
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    disk = SlowDisk(tmp_path / "e")
    images = Ingest(Database(url), CaseService(Dispatcher.from_file(DISPATCH)), disk, publish_case=lambda _m: None)
    events = Ingest(Database(url), CaseService(Dispatcher.from_file(DISPATCH)), EvidenceStore(tmp_path / "e"),
                    publish_case=lambda _m: None)
    frame, event = jpeg(), event_payload()
    outcomes: dict[str, str] = {}
    image_writer = threading.Thread(target=lambda: outcomes.update(
        image=images.handle(evidence_topic("node-a", event["event_id"]), frame)))
    image_writer.start()
    assert disk.writing.wait(10)
    event_writer = threading.Thread(target=lambda: outcomes.update(
        event=events.handle(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()).encode())))
    event_writer.start()
    event_writer.join(10)
    meanwhile = outcomes.get("event")
    disk.go_on.set()
    image_writer.join(30)
    event_writer.join(30)
    assert meanwhile == "stored", "the event batch went in while the image's disk stalled"
    assert outcomes["image"] == "stored"
    assert disk.path(hashlib.sha256(frame).hexdigest()).read_bytes() == frame


@pytest.mark.parametrize("together", [True, False], ids=["in its event's batch", "alone, later"])
def test_an_image_of_another_nodes_event_is_a_dead_letter_not_its_evidence(ingest, together, caplog):
    """Found by review: an image on node-b's evidence topic for node-a's event was filed as that event's evidence
    (served with it to operators): only the hashes were compared, never whose event it was."""
    frame = jpeg(seed=3)
    event = event_payload(evidence={"sha256": hashlib.sha256(frame).hexdigest(), "bytes": len(frame)})
    event_message = (event_topic("node-a", "illegal_parking"), json.dumps(event).encode())
    image_message = (evidence_topic("node-b", event["event_id"]), frame)
    if together:
        assert ingest.handle_batch([event_message, image_message]) == ["stored", "dead_letter"]
    else:
        assert ingest.handle(*event_message) == "stored"
        assert ingest.handle(*image_message) == "dead_letter"
    assert ingest.handle(evidence_topic("node-a", event["event_id"]), frame) == "stored", "its own node's image"
    with ingest.database.session() as session:
        assert session.scalar(select(EvidenceRecord.node_id)) == "node-a"
        assert "an event of node node-a" in session.scalar(select(DeadLetter.reason))
    assert "one by one" not in caplog.text, "each batch of images written as a batch, not after a failure"


@pytest.mark.parametrize("together", [False, True])
def test_a_copy_of_an_event_announcing_another_image_decides_nothing_and_no_image_is_lost(ingest, together):
    """Found by review: an event sent again with the same id but announcing another picture (a node re-sending an
    edited copy) is a duplicate, yet its hashes replaced the stored event's: its picture was kept as the evidence,
    and the event's own picture, arriving after, was called a duplicate and dropped, neither kept nor a dead letter."""
    genuine, other = jpeg(seed=1), jpeg(seed=2)
    event = event_payload(evidence={"sha256": hashlib.sha256(genuine).hexdigest(), "bytes": len(genuine)})
    copy = {**event, "evidence": {"sha256": hashlib.sha256(other).hexdigest(), "bytes": len(other)}}
    topic, images = event_topic("node-a", "illegal_parking"), evidence_topic("node-a", event["event_id"])
    if together:
        assert ingest.handle_batch([(topic, json.dumps(event).encode()), (topic, json.dumps(copy).encode()),
                                    (images, other)]) == ["stored", "duplicate", "dead_letter"]
    else:
        assert ingest.handle(topic, json.dumps(event).encode()) == "stored"
        assert ingest.handle_batch([(topic, json.dumps(copy).encode()), (images, other)]) == ["duplicate",
                                                                                                "dead_letter"]
    assert ingest.handle(images, genuine) == "stored"
    assert ingest.handle(images, genuine) == "duplicate", "the same picture sent again"
    assert ingest.handle(images, other) == "dead_letter", "another picture for a kept one: refused, with the reason"
    with ingest.database.session() as session:
        assert session.scalar(select(EvidenceRecord.sha256)) == hashlib.sha256(genuine).hexdigest()
        reasons = session.scalars(select(DeadLetter.reason)).all()
    assert len(reasons) == 2 and "kept already with SHA-256" in reasons[-1]
