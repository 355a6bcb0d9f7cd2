"""A camera pipeline with scripted detectors standing in for YOLO, and frames fed to it on a simulated clock."""

from __future__ import annotations

import numpy as np

from edge.capture import Frame
from edge.config import NodeConfig
from edge.detections import Detections
from edge.manifest import Manifest
from edge.pipeline import CameraPipeline
from gridwatch.contract import Event, ModelInfo

FRAME = np.zeros((48, 64, 3), dtype=np.uint8)
BAG = (0.60, 0.80, 0.64, 0.86)
OWNER = (0.62, 0.55, 0.68, 0.88)


class ScriptedDetector:
    def __init__(self, name: str, script) -> None:
        self.info = ModelInfo(name=name, version="test")
        self.script, self.calls = script, []

    def track(self, image, tiles: int = 1) -> Detections:
        self.calls.append(len(self.calls))
        self.tiles = tiles
        return self.script(len(self.calls))


def detections(*objects, score: float = 0.8) -> Detections:
    if not objects:
        return Detections()
    return Detections(boxes=np.array([o[1] for o in objects], dtype=np.float64),
                      scores=np.array([score] * len(objects)), labels=tuple(o[0] for o in objects),
                      track_ids=np.array([o[2] for o in objects], dtype=np.int64))


def build(owner_leaves_after_call: int, motion_gating: bool = False, city_tiles: int = 1):
    manifest = Manifest.model_validate({"models": [
        {"name": "coco", "detect_fps": 5, "people": ["person"], "categories": {"illegal_parking": ["car"]}},
        {"name": "city", "weights": "city.pt", "detect_fps": 0.5, "categories": {"litter": ["garbage"]},
         "tiles": city_tiles},
    ]})
    node = NodeConfig.model_validate({"node_id": "n1", "event_codes": {"litter": "0102-07"}, "cameras": [{
        "camera_id": "c1", "source": "rtsp://x", "motion_gating": motion_gating, "health": {"enabled": False},
        "zones": [
            {"zone_id": "street", "rule": "no_litter", "polygon": [[0, 0.4], [1, 0.4], [1, 1], [0, 1]],
             "dwell_seconds": 20},
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 0.3]], "dwell_seconds": 600}],
    }]})
    coco = ScriptedDetector("coco", lambda n: detections(("person", OWNER, 1)) if n <= owner_leaves_after_call
                            else detections())
    city = ScriptedDetector("city", lambda n: detections(("garbage", BAG, 1)))
    factory = {"city.pt": city}
    pipeline = CameraPipeline.build(node, node.cameras[0], manifest,
                                    detector_factory=lambda weights, labels: factory.get(weights, coco),
                                    source=object())
    return pipeline, coco, city


def feed(pipeline, seconds: float, fps: float = 10, image=lambda index: FRAME):
    published: list[tuple[str, bytes]] = []
    for index in range(int(seconds * fps)):
        pipeline.process(Frame(image(index), 1000.0 + index / fps, index), lambda t, p: published.append((t, p)))
    return published


def litter_events(published: list[tuple[str, bytes]]) -> list[Event]:
    return [Event.model_validate_json(payload) for topic, payload in published
            if topic == "gw/v1/nodes/n1/events/litter"]
