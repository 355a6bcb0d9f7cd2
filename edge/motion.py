"""Cheap motion detection on a small grey copy of the frame, so the detector runs only when something moves.

A running-average background (Frigate's approach) absorbs sensor noise and slow light changes; a sudden change over
most of the picture (lights on, a cloud) is taken as lighting, not motion, and the background is relearned.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray


class MotionDetector:
    def __init__(self, threshold: int = 25, min_fraction: float = 0.002, lighting_fraction: float = 0.6,
                 width: int = 320, learning_rate: float = 0.05) -> None:
        self.threshold = threshold
        self.min_fraction = min_fraction
        self.lighting_fraction = lighting_fraction
        self.width = width
        self.learning_rate = learning_rate
        self._background: NDArray[np.float32] | None = None
        self.last_fraction = 0.0

    def _small_grey(self, image: NDArray[np.uint8]) -> NDArray[np.float32]:
        height, width = image.shape[:2]
        scale = self.width / width
        small = cv2.resize(image, (self.width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return cv2.GaussianBlur(grey, (5, 5), 0).astype(np.float32)

    def moved(self, image: NDArray[np.uint8]) -> bool:
        """Whether enough of the picture changed since the background learnt so far; updates the background."""
        grey = self._small_grey(image)
        if self._background is None or self._background.shape != grey.shape:
            self._background = grey
            return True
        difference = cv2.absdiff(grey, self._background)
        changed = float(np.count_nonzero(difference > self.threshold)) / difference.size
        self.last_fraction = changed
        if changed >= self.lighting_fraction:
            self._background = grey  # lighting changed: relearn, and let the detector look once
            return True
        cv2.accumulateWeighted(grey, self._background, self.learning_rate)
        return changed >= self.min_fraction
