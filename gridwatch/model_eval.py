"""A city model at the edge's operating point: how many of the labelled objects it finds at the score the rules
count, and how many boxes of that class it draws on clean streets.

mAP summarises every threshold; a node acts at one. These figures are the ones an operator lives with: recall is the
share of garbage a camera would report, false boxes per clean frame the noise it would make on an empty street.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from edge.detections import covered_share
from edge.tiles import detect_tiled
from gridwatch import citydata

OPERATING_SCORE = 0.35
"""The median score the edge's rules need before an object counts (edge config `tuning.min_score`)."""
SUPPRESSING_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck", "bench")
"""A box of the city class lying mostly on one of these is taken for it, not for garbage."""

BoxArray = NDArray[np.float64]  # (n, 4) x1, y1, x2, y2 normalised


@dataclass(frozen=True)
class Sample:
    name: str
    image: NDArray[np.uint8]
    truth: BoxArray
    """Boxes of the evaluated class; empty on a clean frame."""


class CityDetector:
    """Boxes of one class at the operating score, optionally minus those lying on a person or vehicle, which the
    model itself (when it learned those classes) or a second model beside it (`suppressor`) sees."""

    def __init__(self, weights: Path | str, target: str, suppressor: Path | str | None = None,
                 score: float = OPERATING_SCORE, imgsz: int = 640, tiles: int = 1) -> None:
        from ultralytics import YOLO

        self.model = YOLO(str(weights), task="detect")
        if target not in self.model.names.values():
            raise ValueError(f"{weights} has no class {target!r} ({', '.join(self.model.names.values())})")
        self.target = target
        self.suppressor = YOLO(str(suppressor), task="detect") if suppressor else None
        self.score = score
        self.imgsz = imgsz
        self.tiles = tiles
        """As the manifest's `tiles`: the model also looks at a grid of parts of the image (`edge.tiles`)."""

    def _rows(self, model, image: NDArray[np.uint8]) -> NDArray[np.float32]:  # noqa: ANN001 - a YOLO
        return model.predict(image, conf=self.score, imgsz=self.imgsz, verbose=False)[0].boxes.data.cpu().numpy()

    def boxes(self, image: NDArray[np.uint8]) -> BoxArray:
        height, width = image.shape[:2]
        scale = np.array([width, height, width, height], dtype=np.float64)
        rows = detect_tiled(lambda part: self._rows(self.model, part), image, self.tiles)
        names = [self.model.names[int(c)] for c in rows[:, 5]]
        boxes = rows[:, :4].astype(np.float64) / scale
        mine = boxes[[name == self.target for name in names]] if len(names) else np.zeros((0, 4))
        if self.suppressor is not None:
            other = self._rows(self.suppressor, image)
            others = other[:, :4].astype(np.float64)[
                [self.suppressor.names[int(c)] in SUPPRESSING_CLASSES for c in other[:, 5]]] / scale
        else:
            others = boxes[[name in SUPPRESSING_CLASSES for name in names]] if len(names) else np.zeros((0, 4))
        return mine[[covered_share(box, others) <= 0.5 for box in mine]] if len(others) else mine


def iou_matrix(a: BoxArray, b: BoxArray) -> NDArray[np.float64]:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(found: BoxArray, truth: BoxArray, iou: float) -> tuple[int, int, int]:
    """Greedy one-to-one matching by IoU: (true positives, false positives, missed)."""
    overlaps = iou_matrix(found, truth)
    used: set[int] = set()
    hits = 0
    for index in np.argsort(-overlaps.max(axis=1)) if len(truth) else []:
        for candidate in np.argsort(-overlaps[index]):
            if overlaps[index, candidate] < iou:
                break
            if candidate not in used:
                used.add(int(candidate))
                hits += 1
                break
    return hits, len(found) - hits, len(truth) - hits


def recall_precision(detector: CityDetector, samples: Iterable[Sample], iou: float = 0.5) -> dict:
    """Recall and precision at the operating score; `found` also counts a labelled object as seen when a box
    overlaps it by IoU 0.1 (boxes drawn by eye round piles differently from the model)."""
    totals = {"hits": 0, "false": 0, "missed": 0, "loose_hits": 0, "objects": 0, "images": 0}
    for sample in samples:
        found = detector.boxes(sample.image)
        hits, false, missed = match(found, sample.truth, iou)
        loose_hits = match(found, sample.truth, 0.1)[0]
        for key, value in (("hits", hits), ("false", false), ("missed", missed), ("loose_hits", loose_hits),
                           ("objects", len(sample.truth)), ("images", 1)):
            totals[key] += value
    return {
        "images": totals["images"], "objects": totals["objects"], "score": detector.score, "iou": iou,
        "recall": round(totals["hits"] / max(totals["objects"], 1), 4),
        "precision": round(totals["hits"] / max(totals["hits"] + totals["false"], 1), 4),
        "found": round(totals["loose_hits"] / max(totals["objects"], 1), 4),
    }


def false_boxes_per_frame(detector: CityDetector, frames: Sequence[tuple[str, NDArray[np.uint8]]]) -> dict:
    """Boxes of the class per clean frame, overall and by source (the frame name before its last `#`)."""
    by_source: dict[str, list[int]] = {}
    for name, image in tqdm(frames, desc="clean frames", unit="frame", leave=False):
        by_source.setdefault(name.split("#")[0], []).append(len(detector.boxes(image)))
    counts = [count for values in by_source.values() for count in values]
    return {
        "frames": len(counts), "score": detector.score,
        "false_boxes_per_frame": round(float(np.mean(counts)) if counts else 0.0, 4),
        "frames_with_a_false_box": round(float(np.mean([c > 0 for c in counts])) if counts else 0.0, 4),
        "by_source": {source: {"frames": len(values), "false_boxes_per_frame": round(float(np.mean(values)), 4)}
                      for source, values in by_source.items()},
    }


def validation_samples(dataset: Path, target_class: int = 0) -> list[Sample]:
    """The validation photos of a training run's dataset (its val.txt), with their boxes of `target_class`."""
    samples = []
    for line in (dataset / "val.txt").read_text().split():
        image_path = Path(line)
        image = cv2.imread(str(image_path))
        labels = citydata.read_labels(dataset / "labels" / f"{image_path.stem}.txt", 10_000)
        truth = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                          for cls, cx, cy, w, h in labels if cls == target_class]).reshape(-1, 4)
        samples.append(Sample(image_path.stem, image, truth))
    return samples


def clean_frames(validation: Sequence[Sample], street_video: Path | None, street_images: Sequence[Path],
                 video_region: tuple[float, float, float, float] = (0.6, 0.0, 1.0, 0.5), video_frames: int = 40,
                 seed: int = 0) -> list[tuple[str, NDArray[np.uint8]]]:
    """Clean street frames the model never trained on: whole clean images, a garbage-free region of a street video
    (`video_region` as x1, y1, x2, y2 fractions), and crops of the validation photos away from their garbage."""
    frames = [(f"{path.stem}#0", image) for path in street_images if (image := cv2.imread(str(path))) is not None]
    if street_video is not None:
        x1, y1, x2, y2 = video_region
        for name, frame in citydata.negative_frames([street_video], video_frames):
            height, width = frame.shape[:2]
            frames.append((f"{street_video.stem}#{name}",
                           frame[int(y1 * height):int(y2 * height), int(x1 * width):int(x2 * width)]))
    rng = np.random.default_rng(seed)
    for sample in validation:
        labels = [(0, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]) for b in sample.truth]
        for number, crop in enumerate(citydata.clean_crops(sample.image, labels, 1, rng)):
            frames.append((f"validation-photo-crops#{sample.name}-{number}", crop))
    return frames
