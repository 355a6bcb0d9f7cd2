"""An edge node: per camera, capture → detect and track → zone rules → evidence → MQTT; plus node telemetry."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from edge.capture import Frame, VideoSource
from edge.comms import NodeLink
from edge.config import CameraConfig, NodeConfig
from edge.detect import Detector
from edge.evidence import annotate
from edge.rules.parking import IllegalParkingRule, RuleEvent
from edge.zones import Zone
from gridwatch.contract import (
    SCHEMA_VERSION,
    Box,
    CameraTelemetry,
    Event,
    EventType,
    EvidenceRef,
    NodeTelemetry,
    event_topic,
    evidence_topic,
    telemetry_topic,
)

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]


def local_time(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp).astimezone()


@dataclass
class CameraStats:
    frames_detected: int = 0
    started: float = field(default_factory=time.monotonic)


class CameraPipeline:
    """One camera: its source, detector and tracker, zones and rules."""

    def __init__(self, node: NodeConfig, camera: CameraConfig, detector: Detector, source: VideoSource) -> None:
        self.node = node
        self.camera = camera
        self.detector = detector
        self.source = source
        self.zones = {zone.zone_id: Zone(zone) for zone in camera.zones}
        self.rule = IllegalParkingRule(list(self.zones.values()), camera.tuning, camera.vehicle_labels)
        self.stats = CameraStats()
        self.finished = threading.Event()
        self.error: Exception | None = None

    def run(self, stop: threading.Event, publish: Publish) -> None:
        try:
            for frame in self.source.frames():
                if stop.is_set():
                    break
                detections = self.detector.track(frame.image)
                self.stats.frames_detected += 1
                for rule_event in self.rule.process(detections, frame.timestamp):
                    self._publish(rule_event, frame, publish)
        except Exception as error:  # reported in telemetry and logs; the node keeps its other cameras
            self.error = error
            log.exception("camera %s stopped", self.camera.camera_id)
        finally:
            self.finished.set()

    def _publish(self, rule_event: RuleEvent, frame: Frame, publish: Publish) -> None:
        zone = self.zones[rule_event.zone_id]
        event_id = uuid.uuid4()
        evidence = None
        if rule_event.type in (EventType.NEW, EventType.END):
            caption = f"{rule_event.label} {rule_event.dwell_seconds:.0f}s {rule_event.type.value}"
            evidence = annotate(frame.image, zone, rule_event.box, caption, local_time(frame.timestamp))
        x1, y1, x2, y2 = rule_event.box
        event = Event(
            schema_version=SCHEMA_VERSION,
            event_id=event_id,
            violation_id=rule_event.violation_id,
            type=rule_event.type,
            node_id=self.node.node_id,
            camera_id=self.camera.camera_id,
            zone_id=rule_event.zone_id,
            category=rule_event.category,
            code=zone.config.code or self.node.event_codes[rule_event.category],
            label=rule_event.label,
            track_id=rule_event.track_id,
            started_at=local_time(rule_event.started_at),
            observed_at=local_time(rule_event.observed_at),
            dwell_seconds=round(rule_event.dwell_seconds, 3),
            score=round(min(1.0, max(0.0, rule_event.score)), 4),
            box=Box(x1=x1, y1=y1, x2=x2, y2=y2),
            location=zone.config.location or self.camera.location,
            model=self.detector.info,
            evidence=EvidenceRef(sha256=evidence.sha256, bytes=len(evidence.jpeg)) if evidence else None,
        )
        if evidence:
            publish(evidence_topic(self.node.node_id, event_id), evidence.jpeg)
        publish(event_topic(self.node.node_id, event.category), event.model_dump_json().encode())
        log.info("%s %s %s zone=%s track=%d dwell=%.0fs (%s)", event.category.value, event.type.value,
                 event.violation_id, event.zone_id, rule_event.track_id, rule_event.dwell_seconds, rule_event.reason)

    def telemetry(self) -> CameraTelemetry:
        elapsed = max(1e-6, time.monotonic() - self.stats.started)
        return CameraTelemetry(
            camera_id=self.camera.camera_id,
            frames_read=self.source.frames_read,
            frames_detected=self.stats.frames_detected,
            fps_in=round(self.source.frames_read / elapsed, 2),
            fps_detected=round(self.stats.frames_detected / elapsed, 2),
            active_violations=self.rule.active_violations,
        )


class EdgeNode:
    def __init__(self, config: NodeConfig, link: NodeLink, pipelines: list[CameraPipeline]) -> None:
        self.config = config
        self.link = link
        self.pipelines = pipelines
        self.started = time.monotonic()

    @classmethod
    def build(cls, config: NodeConfig) -> EdgeNode:
        model = config.resolved_model()
        log.info("node %s: loading model %s for %d camera(s)", config.node_id, model, len(config.cameras))
        pipelines = [
            CameraPipeline(
                config,
                camera,
                Detector(model, labels=camera.vehicle_labels),
                VideoSource(camera.source, camera.detect_fps, realtime=camera.realtime, loop=camera.loop),
            )
            for camera in config.cameras
        ]
        link = NodeLink(config.node_id, config.mqtt, config.state_dir)
        return cls(config, link, pipelines)

    def publish(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload, qos=1)

    def publish_telemetry(self) -> None:
        telemetry = NodeTelemetry(
            schema_version=SCHEMA_VERSION,
            node_id=self.config.node_id,
            at=datetime.now().astimezone(),
            session=self.link.session,
            uptime_seconds=round(time.monotonic() - self.started, 1),
            events_published=self.link.published,
            publish_pending=self.link.pending,
            cameras=[pipeline.telemetry() for pipeline in self.pipelines],
        )
        self.link.publish(telemetry_topic(self.config.node_id), telemetry.model_dump_json().encode(), qos=0)

    def run(self, stop: threading.Event) -> int:
        """Run until `stop` is set or every camera's source has ended; returns a process exit code."""
        self.link.start()
        threads = [
            threading.Thread(target=p.run, args=(stop, self.publish), name=f"camera-{p.camera.camera_id}", daemon=True)
            for p in self.pipelines
        ]
        for thread in threads:
            thread.start()
        next_telemetry = time.monotonic()
        try:
            while not stop.is_set() and not all(p.finished.is_set() for p in self.pipelines):
                if time.monotonic() >= next_telemetry:
                    self.publish_telemetry()
                    next_telemetry = time.monotonic() + self.config.telemetry_seconds
                stop.wait(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            if self.link.connected.is_set():
                self.publish_telemetry()
            flushed = self.link.stop_gracefully()
            if not flushed:
                log.error("stopped with %d publishes unacknowledged by the broker", self.link.pending)
        return 1 if any(p.error for p in self.pipelines) or not flushed else 0

