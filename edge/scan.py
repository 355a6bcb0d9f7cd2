"""`gridwatch edge scan`: run a camera's pipeline over a video file as fast as the machine allows, on video time,
writing the events it would publish (JSON lines) and their evidence (JPEGs), without a broker.

It is the live node's code path with a file sink instead of MQTT, so what a scan finds is what a node would send.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
from tqdm import tqdm

from edge.capture import VideoSource
from edge.config import CameraConfig, NodeConfig
from edge.manifest import DEFAULT_MANIFEST, load_manifest
from edge.pipeline import CameraPipeline
from gridwatch.config_files import read_yaml_mapping, validate
from gridwatch.contract import TopicKind, parse_node_topic

SCAN_NODE_ID = "scan"


@dataclass
class ScanSummary:
    frames_read: int = 0
    frames_detected: int = 0
    video_seconds: float = 0.0
    wall_seconds: float = 0.0
    events: Counter = field(default_factory=Counter)

    @property
    def speed(self) -> float:
        """Video seconds processed per wall-clock second."""
        return self.video_seconds / self.wall_seconds if self.wall_seconds else 0.0


def load_camera(path: Path, video: Path) -> CameraConfig:
    """A camera config (YAML) whose `source` may be left out: the scanned video takes its place."""
    data = read_yaml_mapping(path, "a camera mapping (camera_id, zones, ...)")
    return validate(CameraConfig, {**data, "source": str(video), "realtime": False, "loop": False}, str(path))


class FileSink:
    """Receives what the node would publish: events go to a JSON-lines file, evidence JPEGs to a folder."""

    def __init__(self, out: Path, evidence_dir: Path | None) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self._out = out.open("w", encoding="utf-8")
        self.evidence_dir = evidence_dir
        if evidence_dir:
            evidence_dir.mkdir(parents=True, exist_ok=True)
        self.events: Counter = Counter()

    def __call__(self, topic: str, payload: bytes) -> None:
        parsed = parse_node_topic(topic)
        if parsed.kind is TopicKind.EVIDENCE:
            if self.evidence_dir:
                suffix = f"-{parsed.variant}" if parsed.variant else ""
                (self.evidence_dir / f"{parsed.leaf}{suffix}.jpg").write_bytes(payload)
            return
        event = json.loads(payload)
        self.events[(event["category"], event["type"])] += 1
        self._out.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._out.flush()

    def close(self) -> None:
        self._out.close()


def scan(video: Path, camera: CameraConfig, out: Path, evidence_dir: Path | None = None, model: str | None = None,
         manifest: Path = DEFAULT_MANIFEST, timezone: str | None = None, start: datetime | None = None,
         progress: bool = True) -> ScanSummary:
    node = NodeConfig(node_id=SCAN_NODE_ID, model=model, manifest=manifest, timezone=timezone, cameras=[camera])
    capture = cv2.VideoCapture(str(video))
    total_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    capture.release()
    manifest_data = load_manifest(manifest)
    rates = [min(m.detect_fps, camera.detect_fps or m.detect_fps) for m in manifest_data.models]
    source = VideoSource(str(video), max(rates), realtime=False, loop=False,
                         start_time=start.timestamp() if start else None)
    pipeline = CameraPipeline.build(node, camera, manifest_data, source=source)
    sink = FileSink(out, evidence_dir)
    began = time.perf_counter()
    try:
        with tqdm(total=total_frames, unit="frame", desc=f"scanning {video.name}", disable=not progress) as bar:
            for frame in pipeline.frames():
                pipeline.process(frame, sink)
                bar.update(source.frames_read - bar.n)
                bar.set_postfix(events=sum(sink.events.values()), refresh=False)
    finally:
        sink.close()
    return ScanSummary(frames_read=source.frames_read, frames_detected=pipeline.stats.frames_detected,
                       video_seconds=source.frames_read / fps, wall_seconds=time.perf_counter() - began,
                       events=sink.events)
