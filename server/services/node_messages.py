"""A node's messages other than events, each written in a transaction of its own: evidence that came on its own,
status (online / offline, by session), the answer to a remote config, a command's response, camera snapshots and
telemetry. Each handler returns `stored`, `duplicate` or `ignored`, or raises `Rejected` with the reason."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gridwatch.contract import CommandResponse, ConfigStatus, Event, NodeState, NodeStatus, NodeTelemetry, NodeTopic
from server.db import Database, begin_writing, claim
from server.models import CameraSnapshot, EventRecord, EvidenceRecord, NodeCommand, utcnow
from server.services.checks import Rejected, check_snapshot, evidence_key, mismatch, not_theirs, validate_from
from server.services.events import announced_hashes, images_key
from server.services.evidence import EvidenceStore
from server.services.nodes import Forget, take_telemetry, touch_node

log = logging.getLogger(__name__)


class NodeMessages:
    def __init__(self, database: Database, store: EvidenceStore, counts: dict[str, int], forget: Forget) -> None:
        self.database, self.store, self.counts = database, store, counts
        self.forget = forget
        """`restarts.forget_violations_before`, for a node found to have started again."""

    def handler(self, kind: str) -> Callable[[NodeTopic, bytes], str] | None:
        """The handler of a message kind (`evidence`, `status` …); None for a kind the server does not accept."""
        return {"evidence": self.evidence, "status": self.status, "telemetry": self.telemetry,
                "snapshot": self.snapshot, "config": self.config_status,
                "command": self.command_response}.get(kind)

    def evidence(self, topic: NodeTopic, payload: bytes) -> str:
        event_id, variant, sha256 = evidence_key(topic, payload)
        with self.database.session() as session:
            # a worker writing its event at this moment goes first, or waits for this: one of the two sees the
            # other, and an image that is not the one its event announced is refused
            begin_writing(session)
            claim(session, [images_key(event_id)])
            if session.scalar(select(EvidenceRecord.id).where(EvidenceRecord.event_id == event_id,
                                                              EvidenceRecord.variant == variant)):
                self.counts["duplicates"] += 1
                return "duplicate"
            owner, payload_json = session.execute(select(EventRecord.node_id, EventRecord.payload)
                                                  .where(EventRecord.event_id == event_id)).first() or (None, None)
            if owner is not None and owner != topic.node_id:
                raise Rejected(not_theirs(owner))
            announced = announced_hashes(Event.model_validate(payload_json)).get(variant) if payload_json else None
            if announced and announced != sha256:
                raise Rejected(mismatch(variant, sha256, announced))
            self.store.put(payload, sha256)
            session.add(EvidenceRecord(event_id=event_id, variant=variant, node_id=topic.node_id, sha256=sha256,
                                       bytes=len(payload)))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                self.counts["duplicates"] += 1
                return "duplicate"
        self.counts["evidence"] += 1
        return "stored"

    def status(self, topic: NodeTopic, payload: bytes) -> str:
        if not payload:
            return "ignored"  # a cleared retained status
        status = validate_from(topic, NodeStatus, payload)
        now = utcnow()
        with self.database.session() as session:
            node = touch_node(session, status.node_id, now, seen=status.state is NodeState.ONLINE)
            stale = status.session < node.session or (
                status.session == node.session and node.state == NodeState.OFFLINE.value
            )
            if stale:
                session.commit()
                log.info("ignored %s of %s session %d (current session %d)", status.state.value, status.node_id,
                         status.session, node.session)
                return "ignored"
            node.state, node.session, node.status_at = status.state.value, status.session, status.at or now
            session.commit()
        self.counts["status"] += 1
        return "stored"

    def config_status(self, topic: NodeTopic, payload: bytes) -> str:
        if not payload:
            return "ignored"
        status = validate_from(topic, ConfigStatus, payload)
        with self.database.session() as session:
            node = touch_node(session, status.node_id, utcnow())
            node.config_status = json.loads(status.model_dump_json())
            session.commit()
        return "stored"

    def command_response(self, topic: NodeTopic, payload: bytes) -> str:
        response = validate_from(topic, CommandResponse, payload)
        with self.database.session() as session:
            touch_node(session, response.node_id, utcnow())
            command = session.scalar(select(NodeCommand).where(NodeCommand.request_id == response.request_id,
                                                               NodeCommand.node_id == response.node_id))
            if command is None:
                raise Rejected(f"response to unknown request {response.request_id!r}")
            command.response, command.answered_at = json.loads(response.model_dump_json()), utcnow()
            session.commit()
        return "stored"

    def snapshot(self, topic: NodeTopic, payload: bytes) -> str:
        if not payload:
            return "ignored"  # a cleared retained snapshot
        check_snapshot(topic, payload)
        sha256 = self.store.put(payload)
        with self.database.session() as session:
            touch_node(session, topic.node_id, utcnow(), seen=False)
            snapshot = session.scalar(select(CameraSnapshot).where(CameraSnapshot.node_id == topic.node_id,
                                                                   CameraSnapshot.camera_id == topic.leaf))
            if snapshot is None:
                snapshot = CameraSnapshot(node_id=topic.node_id, camera_id=topic.leaf)
                session.add(snapshot)
            snapshot.sha256, snapshot.bytes, snapshot.received_at = sha256, len(payload), utcnow()
            session.commit()
        return "stored"

    def telemetry(self, topic: NodeTopic, payload: bytes) -> str:
        telemetry = validate_from(topic, NodeTelemetry, payload)
        now = utcnow()
        with self.database.session() as session:
            take_telemetry(session, touch_node(session, telemetry.node_id, now), telemetry, now, self.forget)
            session.commit()
        self.counts["telemetry"] += 1
        return "stored"
