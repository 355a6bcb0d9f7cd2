"""Cheap motion detection on a small grey copy of the frame, so the detector runs only when something moves.

A running-average background (Frigate's approach) absorbs sensor noise and slow light changes; a sudden change over
most of the picture (lights on, a cloud) is taken as lighting, not motion, and the background is relearned.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.capture import analysis_grey


class MotionDetector:
    def __init__(self, threshold: int = 25, min_fraction: float = 0.002, lighting_fraction: float = 0.6,
                 learning_rate: float = 0.05) -> None:
        self.threshold = threshold
        self.min_fraction = min_fraction
        self.lighting_fraction = lighting_fraction
        self.learning_rate = learning_rate
        self._background: NDArray[np.float32] | None = None
        self.last_fraction = 0.0

    def moved(self, image: NDArray[np.uint8], grey: NDArray[np.float32] | None = None) -> bool:
        """Whether enough of the picture changed since the background learnt so far; updates the background.
        `grey`: the frame's `analysis_grey`, when the caller already has it."""
        grey = analysis_grey(image) if grey is None else grey
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
