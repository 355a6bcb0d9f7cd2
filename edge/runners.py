"""One manifest model on one camera: the detector it runs (shared by the node's cameras, its tracker each camera's
own) and the rules its classes serve, at the model's own rate."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.background import BackgroundModel
from edge.detect import Detector, ModelRegistry
from edge.detections import Detections
from edge.manifest import BACKGROUND_WEIGHTS, ManifestModel
from edge.rules import StationaryRule


def make_detector(weights: str, labels: list[str], registry: ModelRegistry | None = None) -> Detector | BackgroundModel:
    """The manifest's `weights: background` selects the background model; anything else is a YOLO model, shared
    through `registry` by every camera of a node (each keeping its own tracker)."""
    if weights == BACKGROUND_WEIGHTS:
        return BackgroundModel()
    return registry.detector(weights, labels) if registry else Detector(weights, labels)


@dataclass
class ModelRunner:
    """One manifest model on one camera: its detector (with the tracker's memory of this view) and its rules."""

    spec: ManifestModel
    detector: Detector | BackgroundModel
    rules: list[StationaryRule]
    interval: float
    next_due: float = float("-inf")
    last_run: float = float("-inf")
    last_seen: Detections = field(default_factory=Detections)
    """What the detector saw at `last_run`, for the models that yield to its classes."""

    def due(self, timestamp: float) -> bool:
        return timestamp + 1e-6 >= self.next_due
