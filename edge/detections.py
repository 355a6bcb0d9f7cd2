"""The detector's output for one frame, as plain arrays the rules can use without ultralytics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Detections:
    boxes: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 4)))
    """(N, 4) x1, y1, x2, y2 normalised to the frame."""
    scores: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    labels: tuple[str, ...] = ()
    track_ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Tracker ids; -1 where the tracker has not confirmed the object yet."""

    def __post_init__(self) -> None:
        count = len(self.boxes)
        if not (len(self.scores) == len(self.labels) == len(self.track_ids) == count):
            raise ValueError("boxes, scores, labels and track_ids must have the same length")

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, mask: NDArray[np.bool_]) -> Detections:
        return Detections(
            boxes=self.boxes[mask],
            scores=self.scores[mask],
            labels=tuple(label for label, keep in zip(self.labels, mask, strict=True) if keep),
            track_ids=self.track_ids[mask],
        )


def box_iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return float(intersection / union) if union > 0 else 0.0


def covered_share(box: NDArray[np.float64], others: NDArray[np.float64]) -> float:
    """The largest share of `box` (x1, y1, x2, y2) that one of `others` covers."""
    if not len(others):
        return 0.0
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-9)
    return float((width * height).max() / area)
