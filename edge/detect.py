"""Detection and tracking with ultralytics YOLO (ByteTrack), returned as plain `Detections`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edge.detections import Detections
from gridwatch.contract import ModelInfo

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.yaml"
"""Written by `gridwatch models train` beside a city model's weights and exports: its name and version, which the
node reports with every event and in telemetry."""


class ModelError(RuntimeError):
    """The detector model cannot be loaded; the message says what to set."""


class Detector:
    """One model and one tracker for one camera: the tracker's memory belongs to the view it follows."""

    def __init__(self, model: str, labels: list[str] | None = None, confidence: float = 0.25,
                 tracker: str = "bytetrack.yaml") -> None:
        from ultralytics import YOLO  # imported here: loading torch takes seconds, config checks should not

        path = Path(model)
        try:
            # An export folder (OpenVINO, ...) carries no task in its name; detection is the only task we run.
            self._model = YOLO(model, task="detect")
            # A warm-up pass builds the tracking predictor, so neither reading the class names nor the first
            # frame loads the model a second time.
            self._model.track(np.zeros((64, 64, 3), dtype=np.uint8), persist=True, verbose=False, tracker=tracker)
        except (ConnectionError, FileNotFoundError, OSError, RuntimeError) as error:
            raise ModelError(
                f"cannot load detector model {model!r}: {error}. Models named without a path download on first use; "
                f"offline, set $GRIDWATCH_MODEL (or `model:` in the node config) to local weights or an export "
                f"folder such as ../shared/models/yolo11n_int8_openvino_model"
            ) from None
        self._names: dict[int, str] = dict(self._model.names)
        self._classes = None
        if labels is not None:
            unknown = sorted(set(labels) - set(self._names.values()))
            if unknown:
                log.warning("model %s has no classes %s; they will never be detected", model, unknown)
            self._classes = [index for index, name in self._names.items() if name in labels]
        self.confidence = confidence
        self.tracker = tracker
        self.info = self._identity(path, model)

    @staticmethod
    def _identity(path: Path, model: str) -> ModelInfo:
        """A city model's name and version from the `identity.yaml` its training wrote beside the weights and
        exports; else the export's metadata (ultralytics version and date), else the ultralytics version."""
        import yaml

        for identity in (path.parent / IDENTITY_FILE, path / IDENTITY_FILE):
            if path.exists() and identity.is_file():
                data = yaml.safe_load(identity.read_text(encoding="utf-8")) or {}
                if data.get("name") and data.get("version"):
                    return ModelInfo(name=str(data["name"]), version=str(data["version"]))
        name = path.name.removesuffix(".pt") or model
        metadata = path / "metadata.yaml" if path.is_dir() else None
        if metadata and metadata.exists():
            data = yaml.safe_load(metadata.read_text(encoding="utf-8")) or {}
            date = str(data.get("date", "unknown"))[:10]
            return ModelInfo(name=name, version=f"{data.get('version', 'unknown')}@{date}")
        import ultralytics

        return ModelInfo(name=name, version=f"ultralytics-{ultralytics.__version__}")

    def track(self, frame: NDArray[np.uint8]) -> Detections:
        results = self._model.track(frame, persist=True, verbose=False, conf=self.confidence,
                                    classes=self._classes, tracker=self.tracker)
        boxes = results[0].boxes
        if boxes is None or len(boxes) == 0:
            return Detections()
        ids = boxes.id
        return Detections(
            boxes=boxes.xyxyn.cpu().numpy().astype(np.float64),
            scores=boxes.conf.cpu().numpy().astype(np.float64),
            labels=tuple(self._names[int(c)] for c in boxes.cls.cpu().numpy()),
            track_ids=(ids.cpu().numpy().astype(np.int64) if ids is not None
                       else np.full(len(boxes), -1, dtype=np.int64)),
        )
