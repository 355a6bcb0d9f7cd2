"""A background model of the empty street that reports what appeared and stayed: a pile dumped, a stall set up.

Two running averages of a small grey copy of the frame: a long-term one (minutes) that remembers the street, and a
short-term one (seconds) that soon absorbs anything that stopped moving. A pixel that differs from the long-term
background but no longer from the short-term one belongs to something that arrived and stayed; blobs of such pixels
are reported as "unknown object" detections, with ids kept by position, so the stall and litter rules can judge
them like anything a detector names. The long-term background does not learn where such objects lie, so a pile stays
reported until it is gone. What is there when the model starts (benches, bins, planters) is background: furniture is
never reported. When such a thing leaves, the street it hid differs from the background too: a "ghost". Its edge is
seamless in the frame and not in the background (an object that arrived is the other way round), so it is learnt
at once as the street, not reported. Objects a detector already names (people, vehicles, bags) are excluded by the
pipeline.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.capture import analysis_grey
from edge.detections import Detections, box_iou
from gridwatch.contract import ModelInfo

UNKNOWN_OBJECT = "unknown object"
GHOST_BAND = 3
"""Pixels of the bands inside and outside a new blob's edge compared to tell a ghost (see `_forget_if_ghost`)."""


class BackgroundModel:
    def __init__(self, long_seconds: float = 600.0, short_seconds: float = 4.0, threshold: int = 30,
                 min_area: float = 0.0015, lighting_fraction: float = 0.5) -> None:
        self.long_seconds = long_seconds
        self.short_seconds = short_seconds
        self.threshold = threshold
        self.min_area = min_area
        self.lighting_fraction = lighting_fraction
        self.info = ModelInfo(name="background", version="dual-1")
        self._long: NDArray[np.float32] | None = None
        self._short: NDArray[np.float32] | None = None
        self._last_time: float | None = None
        self._last_grey: NDArray[np.float32] | None = None
        self._tracks: dict[int, NDArray[np.float64]] = {}
        self._next_id = 1
        self.exclude: NDArray[np.float64] = np.zeros((0, 4))
        """Boxes (normalised) of objects a detector already named; set by the pipeline before each call."""
        self.relearned = False
        """Whether the last call learnt the street afresh (the light changed): what it reported before is now part of
        the street, unseen but not gone, so the rules must not take it for gone."""

    def update(self, image: NDArray[np.uint8], timestamp: float,
               grey: NDArray[np.float32] | None = None) -> Detections:
        """`grey`: the frame's `analysis_grey`, when the caller already has it."""
        grey = analysis_grey(image) if grey is None else grey
        self._last_grey = grey
        self.relearned = False
        if self._long is None or self._long.shape != grey.shape or self._last_time is None:
            if self._long is not None and self._tracks:  # another picture size (a substream switched): what it
                self._tracks.clear()  # reported is learnt into the street now, unseen but not gone, as after the
                self.relearned = True  # light changed
            self._long, self._short, self._last_time = grey.copy(), grey.copy(), timestamp
            return Detections()
        elapsed = max(0.0, timestamp - self._last_time)
        self._last_time = timestamp
        long_diff = cv2.absdiff(grey, self._long) > self.threshold
        if np.count_nonzero(long_diff) / long_diff.size >= self.lighting_fraction:
            self._long, self._short = grey.copy(), grey.copy()  # the light changed, not the street: relearn
            self._tracks.clear()
            self.relearned = True
            return Detections()
        short_diff = cv2.absdiff(grey, self._short) > self.threshold
        static = (long_diff & ~short_diff).astype(np.uint8)
        static = cv2.morphologyEx(static, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        static = cv2.morphologyEx(static, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))

        short_rate = min(1.0, elapsed / self.short_seconds)
        cv2.accumulateWeighted(grey, self._short, short_rate)
        long_rate = min(1.0, elapsed / self.long_seconds)
        # Where something stays, the street behind it is not relearnt: the object is reported until it goes.
        cv2.accumulateWeighted(grey, self._long, long_rate, mask=(static == 0).astype(np.uint8))
        return self._blobs(static, grey)

    def is_new(self, box: NDArray[np.float64], min_fraction: float = 0.25) -> bool:
        """Whether the object in `box` differs from the street as learnt: it arrived after the model started.
        Furniture that was always there (a café's umbrellas, benches, planters) is not new. True until the model has
        seen a frame, so nothing is hidden before it knows the street."""
        if self._long is None or self._last_grey is None:
            return True
        height, width = self._long.shape
        x1, y1 = int(box[0] * width), int(box[1] * height)
        x2, y2 = max(x1 + 1, int(np.ceil(box[2] * width))), max(y1 + 1, int(np.ceil(box[3] * height)))
        region = cv2.absdiff(self._last_grey[y1:y2, x1:x2], self._long[y1:y2, x1:x2]) > self.threshold
        return region.size > 0 and float(np.count_nonzero(region)) / region.size >= min_fraction

    def _blobs(self, static: NDArray[np.uint8], grey: NDArray[np.float32]) -> Detections:
        height, width = static.shape
        count, labels, stats, _centroids = cv2.connectedComponentsWithStats(static, connectivity=8)
        boxes = []
        for index in range(1, count):
            x, y, w, h, area = stats[index]
            if area / static.size < self.min_area:
                continue
            box = np.array([x / width, y / height, (x + w) / width, (y + h) / height])
            if any(box_iou(box, known) > 0.3 for known in self.exclude):
                continue
            new = not any(box_iou(box, tracked) > 0.3 for tracked in self._tracks.values())
            if new and self._forget_if_ghost(labels, index, (x, y, w, h), grey):
                continue
            boxes.append(box)
        ids = self._assign_ids(boxes)
        if not boxes:
            return Detections()
        return Detections(boxes=np.array(boxes), scores=np.ones(len(boxes)),
                          labels=tuple(UNKNOWN_OBJECT for _ in boxes), track_ids=np.array(ids, dtype=np.int64))

    def _forget_if_ghost(self, labels: NDArray[np.int32], index: int, bounds: tuple[int, int, int, int],
                         grey: NDArray[np.float32]) -> bool:
        """Whether new blob `index` is the street uncovered where something the background held left: in the frame
        the blob's edge is seamless (a band just inside it looks like a band just outside), in the background it is
        not. An object that arrived is the other way round. A ghost is learnt into the background at once. Only a
        new blob is judged: one reported already is never unlearnt. The test errs towards reporting: on cobbles or
        stripes an uncovered patch breaks into pieces that do not look seamless, and stays reported (an operator
        voids its case) rather than a real bag on such ground ever being learnt away."""
        x, y, w, h = bounds
        pad = GHOST_BAND + 2
        top, left = max(0, y - pad), max(0, x - pad)
        bottom, right = min(labels.shape[0], y + h + pad), min(labels.shape[1], x + w + pad)
        blob = (labels[top:bottom, left:right] == index).astype(np.uint8)
        kernel = np.ones((2 * GHOST_BAND + 1, 2 * GHOST_BAND + 1), np.uint8)
        inner = (blob > 0) & (cv2.erode(blob, kernel) == 0)
        outer = (cv2.dilate(blob, kernel) > 0) & (blob == 0)
        if not inner.any() or not outer.any():
            return False

        def seam(image: NDArray[np.float32]) -> float:
            """1 - the intersection of the grey histograms of the two bands: 0 seamless, 1 nothing alike."""
            part = image[top:bottom, left:right]
            inside, outside = (np.histogram(part[band], bins=16, range=(0, 256))[0] / np.count_nonzero(band)
                               for band in (inner, outer))
            return 1.0 - float(np.minimum(inside, outside).sum())

        assert self._long is not None
        in_frame = seam(grey)
        if not (in_frame < 0.35 and seam(self._long) > in_frame + 0.3):
            return False
        inside = blob > 0
        self._long[top:bottom, left:right][inside] = grey[top:bottom, left:right][inside]
        return True

    def _assign_ids(self, boxes: list[NDArray[np.float64]]) -> list[int]:
        """Keep an object's id while its blob stays roughly in place."""
        ids, tracks = [], {}
        free = dict(self._tracks)
        for box in boxes:
            best = max(free.items(), key=lambda item: box_iou(box, item[1]), default=None)
            if best is not None and box_iou(box, best[1]) > 0.3:
                track_id = best[0]
                del free[track_id]
            else:
                track_id, self._next_id = self._next_id, self._next_id + 1
            ids.append(track_id)
            tracks[track_id] = box
        self._tracks = tracks
        return ids
