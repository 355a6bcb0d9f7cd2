"""A rule's event as the contract's `Event`, published with its evidence: the annotated frame and, for a `new`, an
undrawn crop of the object, each before the event that announces it, so the server finds them stored."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from zoneinfo import ZoneInfo

from edge.capture import Frame
from edge.config import CameraConfig, NodeConfig
from edge.evidence import Evidence, annotate, crop
from edge.rules import RuleEvent
from edge.schedule import local_time
from edge.zones import Zone
from gridwatch.contract import (
    SCHEMA_VERSION,
    Box,
    Category,
    Event,
    EventType,
    EvidenceImage,
    EvidenceRef,
    ModelInfo,
    event_topic,
    evidence_topic,
)

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]


def publish_rule_event(rule_event: RuleEvent, frame: Frame | None, publish: Publish, model: ModelInfo,
                       node: NodeConfig, camera: CameraConfig, zone: Zone | None,
                       timezone: ZoneInfo | None) -> Event:
    """`zone` is None for a camera-health fault (the whole picture); `frame` None for an event without a picture
    (an interrupted `end`, an offline camera)."""
    event_id = uuid.uuid4()
    evidence = object_crop = None
    if frame is not None and rule_event.type in (EventType.NEW, EventType.END):
        evidence, object_crop = _pictures(rule_event, frame, zone, timezone, camera.camera_id)
    x1, y1, x2, y2 = rule_event.box
    event = Event(
        schema_version=SCHEMA_VERSION,
        event_id=event_id,
        violation_id=rule_event.violation_id,
        type=rule_event.type,
        node_id=node.node_id,
        camera_id=camera.camera_id,
        zone_id=rule_event.zone_id,
        category=rule_event.category,
        code=(zone.config.code if zone else None) or node.event_codes[rule_event.category],
        label=rule_event.label,
        track_id=rule_event.track_id if rule_event.category is not Category.DEVICE_FAULT else None,
        started_at=local_time(rule_event.started_at, timezone),
        observed_at=local_time(rule_event.observed_at, timezone),
        dwell_seconds=round(rule_event.dwell_seconds, 3),
        score=round(min(1.0, max(0.0, rule_event.score)), 4),
        box=Box(x1=x1, y1=y1, x2=x2, y2=y2),
        location=(zone.config.location if zone else None) or camera.location,
        model=model,
        evidence=EvidenceRef(
            sha256=evidence.sha256, bytes=len(evidence.jpeg),
            crop=EvidenceImage(sha256=object_crop.sha256, bytes=len(object_crop.jpeg),
                               region=Box.from_corners(*object_crop.region)) if object_crop else None,
        ) if evidence else None,
        interrupted=rule_event.interrupted or None,
    )
    if evidence:
        publish(evidence_topic(node.node_id, event_id), evidence.jpeg)
    if object_crop:
        publish(evidence_topic(node.node_id, event_id, crop=True), object_crop.jpeg)
    publish(event_topic(node.node_id, event.category), event.wire())
    log.info("%s %s %s %s zone=%s track=%d dwell=%.0fs (%s)", camera.camera_id, event.category.value,
             event.type.value, event.violation_id, event.zone_id, rule_event.track_id,
             rule_event.dwell_seconds, rule_event.reason)
    return event



def _pictures(rule_event: RuleEvent, frame: Frame, zone: Zone | None, timezone: ZoneInfo | None,
              camera_id: str) -> tuple[Evidence | None, Evidence | None]:
    """The annotated frame and, for a `new`, the object's crop; a picture that cannot be made (OpenCV refusing to
    encode a frame) is left out, said in the log, and the event goes without it. Raised, it lost the event after
    the rule had changed its state (an `end` never sent, its case open for good) and every other event of the
    frame."""
    def made(what: str, make: Callable[[], Evidence]) -> Evidence | None:
        try:
            return make()
        except Exception:
            log.exception("%s: the %s of %s %s could not be made; the event goes without it", camera_id, what,
                          rule_event.type.value, rule_event.violation_id)
            return None

    caption = f"{rule_event.label} {rule_event.dwell_seconds:.0f}s {rule_event.type.value}"
    evidence = made("frame", lambda: annotate(frame.image, zone, rule_event.box, caption,
                                              local_time(frame.timestamp, timezone)))
    if evidence is None or rule_event.type is not EventType.NEW or rule_event.category is Category.DEVICE_FAULT:
        return evidence, None  # (an event announces a crop only with its frame)
    return evidence, made("crop", lambda: crop(frame.image, rule_event.box))
