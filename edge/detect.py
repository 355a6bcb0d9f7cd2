"""Detection and tracking with ultralytics YOLO (ByteTrack), returned as plain `Detections`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edge.detections import Detections
from edge.tiles import detect_tiled
from gridwatch.contract import ModelInfo

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.yaml"
"""Written by `gridwatch models train` beside a city model's weights and exports: its name and version, which the
node reports with every event and in telemetry."""


class ModelError(RuntimeError):
    """The detector model cannot be loaded; the message says what to set."""


def weights_stamp(weights: str) -> int | None:
    """When the weights at `weights` last changed (for an export folder, its newest file); None for a name to
    download. A model retrained into its folder (as `make model-litter` does) has a new stamp: a reload or a
    rollout loads it instead of carrying on with the old one under the new one's name."""
    path = Path(weights)
    if not path.exists():
        return None
    files = [path, *path.iterdir()] if path.is_dir() else [path]
    return max(file.stat().st_mtime_ns for file in files)


def still_current(detector: object, weights: str) -> bool:
    """Whether a loaded detector still runs the weights at `weights` as they are on disk now."""
    shared = getattr(detector, "shared", None)  # the background model has no weights to change
    return shared is None or shared.stamp == weights_stamp(weights)


def adopt_library_log(name: str) -> None:
    """A library that prints through a handler of its own (ultralytics: to stdout) logs through the node's instead:
    one format, and one JSON object a line with `--log-format json`."""
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True


class SharedModel:
    """One loaded model that every camera of a node detects with (a node of eight cameras loads it once). Calls are
    serialised; with `batch_window` > 0 the frames that cameras hand in within that window go through the model in
    one batched call, which pays on models with a dynamic batch (PyTorch, a GPU), not on a static batch-1 export."""

    def __init__(self, model: str, batch_window: float = 0.0, max_batch: int = 8) -> None:
        from ultralytics import YOLO  # imported here: loading torch takes seconds, config checks should not

        adopt_library_log("ultralytics")
        self.path = Path(model)
        self.stamp = weights_stamp(model)
        try:
            # An export folder (OpenVINO, ...) carries no task in its name; detection is the only task we run.
            self._model = YOLO(model, task="detect")
            # A warm-up pass builds the predictor, so neither reading the class names nor the first frame loads
            # the model a second time.
            self._model.predict(np.zeros((64, 64, 3), dtype=np.uint8), verbose=False)
        except (ConnectionError, FileNotFoundError, OSError, RuntimeError) as error:
            raise ModelError(
                f"cannot load detector model {model!r}: {error}. Models named without a path download on first use; "
                f"offline, set $GRIDWATCH_MODEL (or `model:` in the node config) to local weights or an export "
                f"folder such as ../shared/models/yolo11n_int8_openvino_model"
            ) from None
        self.names: dict[int, str] = dict(self._model.names)
        self.info = Detector.identity(self.path, model)
        self.batch_window = batch_window
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
        self.calls = 0
        """Model calls made (a batch is one), for telemetry and tests."""

    def predict(self, image: NDArray[np.uint8], classes: list[int] | None, confidence: float):  # noqa: ANN201
        """The ultralytics result for one frame."""
        if self.batch_window <= 0:
            with self._lock:
                self.calls += 1
                return self._model.predict(image, conf=confidence, classes=classes, verbose=False)[0]
        request = _Request(image, classes, confidence)
        with self._queue_lock:
            self._queue.append(request)
            leader = len(self._queue) == 1
        if leader:  # the first caller waits for others to join, then runs the batch for all of them
            time.sleep(self.batch_window)
            with self._queue_lock:
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                if self._queue:
                    threading.Thread(target=self._run_rest, daemon=True).start()
            self._run(batch)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _run_rest(self) -> None:
        """What the leader's batch left, a batch at a time, until the queue is empty: a caller that finds the queue
        not empty waits for whoever is running it, so nothing may be left in it (more than two batches' worth of
        cameras at once stranded the rest for good)."""
        while True:
            with self._queue_lock:
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            if not batch:
                return
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        # One call per (classes, confidence): cameras of one manifest model share both.
        groups: dict[tuple, list[_Request]] = {}
        for request in batch:
            groups.setdefault((tuple(request.classes or ()), request.confidence), []).append(request)
        for (classes, confidence), requests in groups.items():
            try:
                with self._lock:
                    self.calls += 1
                    results = self._model.predict([r.image for r in requests], conf=confidence,
                                                  classes=list(classes) or None, verbose=False)
                for request, result in zip(requests, results, strict=True):
                    request.result = result
            except Exception as error:  # handed to every camera of the batch, which raise it
                for request in requests:
                    request.error = error
            finally:
                for request in requests:
                    request.done.set()


@dataclass
class _Request:
    image: NDArray[np.uint8]
    classes: list[int] | None
    confidence: float
    result: object = None
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)


class ModelRegistry:
    """The node's shared models, one per weights: `detector(weights, labels)` gives a camera its own tracker on the
    shared model."""

    def __init__(self, batch_window: float = 0.0) -> None:
        self.batch_window = batch_window
        self.models: dict[str, SharedModel] = {}
        self._lock = threading.Lock()

    def shared(self, weights: str) -> SharedModel:
        with self._lock:
            model = self.models.get(weights)
            if model is None or model.stamp != weights_stamp(weights):  # new, or retrained in place since
                model = self.models[weights] = SharedModel(weights, self.batch_window)
            return model

    def detector(self, weights: str, labels: list[str] | None) -> Detector:
        return Detector(self.shared(weights), labels)


class Detector:
    """A camera's view of a (shared) model: its own tracker, whose memory belongs to the view it follows."""

    def __init__(self, model: str | SharedModel, labels: list[str] | None = None, confidence: float = 0.25,
                 tracker: str = "bytetrack.yaml") -> None:
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        self.shared = model if isinstance(model, SharedModel) else SharedModel(model)
        self._names = self.shared.names
        self._classes = None
        if labels is not None:
            unknown = sorted(set(labels) - set(self._names.values()))
            if unknown:
                log.warning("model %s has no classes %s; they will never be detected", self.shared.path, unknown)
            self._classes = [index for index, name in self._names.items() if name in labels]
        self.confidence = confidence
        self.tracker_config = tracker
        self._tracker = BYTETracker(args=IterableSimpleNamespace(**YAML.load(check_yaml(tracker))))
        self.info = self.shared.info

    def rows(self, image: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The model's boxes of this camera's classes in `image`: x1, y1, x2, y2 in pixels, score, class."""
        return self.shared.predict(image, self._classes, self.confidence).boxes.data.cpu().numpy()

    @staticmethod
    def identity(path: Path, model: str) -> ModelInfo:
        """A city model's name and version from the `identity.yaml` its training wrote in its export folder, or
        beside its weights and exports (there, only for weights named after it: a COCO export in the same models
        folder is not the city model); else the export's metadata (ultralytics version and date), else the
        ultralytics version."""
        import yaml

        for identity, own in ((path / IDENTITY_FILE, True), (path.parent / IDENTITY_FILE, False)):
            if path.exists() and identity.is_file():
                data = yaml.safe_load(identity.read_text(encoding="utf-8")) or {}
                name = str(data.get("name") or "")
                if name and data.get("version") and (own or path.name.startswith((f"{name}.", f"{name}_"))):
                    return ModelInfo(name=name, version=str(data["version"]))
        name = path.name.removesuffix(".pt") or model
        metadata = path / "metadata.yaml" if path.is_dir() else None
        if metadata and metadata.exists():
            data = yaml.safe_load(metadata.read_text(encoding="utf-8")) or {}
            date = str(data.get("date", "unknown"))[:10]
            return ModelInfo(name=name, version=f"{data.get('version', 'unknown')}@{date}")
        import ultralytics

        return ModelInfo(name=name, version=f"ultralytics-{ultralytics.__version__}")

    def track(self, frame: NDArray[np.uint8], tiles: int = 1) -> Detections:
        """This camera's tracked objects in `frame`, seen whole and, with `tiles` > 1, also a tile at a time
        (`edge.tiles`)."""
        if tiles > 1:
            from ultralytics.engine.results import Boxes

            rows = detect_tiled(self.rows, frame, tiles)
            seen = Boxes(rows, frame.shape[:2])
        else:
            seen = self.shared.predict(frame, self._classes, self.confidence).boxes.cpu().numpy()
        tracks = self._tracker.update(seen, frame)
        if len(tracks) == 0:
            return Detections()
        # rows: x1, y1, x2, y2, track id, score, class, index of the detection
        height, width = frame.shape[:2]
        boxes = tracks[:, :4].astype(np.float64) / np.array([width, height, width, height], dtype=np.float64)
        return Detections(
            boxes=np.clip(boxes, 0.0, 1.0),
            scores=tracks[:, 5].astype(np.float64),
            labels=tuple(self._names[int(c)] for c in tracks[:, 6]),
            track_ids=tracks[:, 4].astype(np.int64),
        )
