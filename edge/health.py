"""Camera health: a picture that is black, frozen, covered or moved from its calibrated view is a `device_fault`,
raised once the condition has lasted `fault_seconds` and ended once it has been gone as long.

Pure and clock-free like the rules: `observe(image, now)` returns the fault events; tests run hours in milliseconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.capture import small_grey
from edge.faults import FaultTracker
from edge.health_config import HealthConfig
from edge.rules.violations import RuleEvent
from gridwatch.contract import Category

log = logging.getLogger(__name__)

CAMERA_ZONE = "camera"
BLIND = ("black", "covered", "frozen", "moved")
"""What keeps a picture from showing the street, in the order one is named before the others."""


@dataclass
class CameraHealth:
    config: HealthConfig
    width: int = 160
    _reference_edges: NDArray[np.uint8] | None = None
    _previous: NDArray[np.uint8] | None = None
    _faults: FaultTracker = field(default_factory=lambda: FaultTracker(Category.DEVICE_FAULT, CAMERA_ZONE))
    _blind_since: float | None = None
    """Since when the picture has shown no street, whichever of `BLIND` kept it from it."""
    blind: str | None = None
    """What keeps the last picture checked from showing the street (`black`, `covered`, `frozen`, `moved`), fault
    raised or not yet: no rule judges such a picture, where every object would seem gone (or still, when frozen)."""

    def calibrate(self, image: NDArray[np.uint8]) -> None:
        """Take this picture as the camera's proper view (done with the first good frame)."""
        self._reference_edges = cv2.dilate(cv2.Canny(small_grey(image, self.width), 60, 150), np.ones((3, 3), np.uint8))

    def observe(self, image: NDArray[np.uint8], now: float) -> list[RuleEvent]:
        grey = small_grey(image, self.width)
        if self._reference_edges is not None and self._reference_edges.shape != grey.shape:
            # another picture size (a substream, the camera reconfigured or replaced): a new view to learn, not a
            # comparison that fails on every frame
            log.info("camera picture is now %dx%d: its view is learnt again", image.shape[1], image.shape[0])
            self._reference_edges = self._previous = None
        brightness = float(grey.mean())
        detail = float(cv2.Laplacian(grey, cv2.CV_64F).var())
        black = brightness < self.config.black_level
        covered = not black and detail < self.config.covered_detail
        # Identical frames are a frozen stream only when there is a picture to freeze (black stays black).
        frozen = (not (black or covered) and self._previous is not None
                  and bool(np.array_equal(grey, self._previous)))
        self._previous = grey
        if self._reference_edges is None and not (black or covered):
            self.calibrate(image)
        similarity = self._similarity(grey)
        moved = not (black or covered) and similarity < self.config.moved_similarity
        events = []
        conditions = tuple(zip(BLIND, (black, covered, frozen, moved), strict=True))
        self.blind = next((kind for kind, present in conditions if present), None)
        raised = set(self._faults.active)
        for kind, present in conditions:
            # a fault raised stays while the picture shows no street by another of these conditions (a dark lens
            # cover reads black, then covered): it ends once the street is back
            events.extend(self._track(kind, None if not present and self.blind and kind in raised else present, now))
        if self.blind is None:
            self._blind_since = None
        elif self._blind_since is None:
            self._blind_since = now
        elif not raised & set(BLIND) and not events and now - self._blind_since >= self.config.fault_seconds:
            # no one condition held fault_seconds, they took turns: the street unseen all along is the fault
            events = self._faults.track_timed(self.blind, True, now, self._blind_since,
                                              f"picture {self.blind}, or otherwise showing no street, for "
                                              f"{now - self._blind_since:.0f} s", "picture back to normal")
        return events

    def _similarity(self, grey: NDArray[np.uint8]) -> float:
        if self._reference_edges is None:
            return 1.0
        edges = cv2.Canny(grey, 60, 150) > 0
        reference = self._reference_edges > 0
        if edges.sum() == 0:
            return 0.0
        return float((edges & reference).sum() / edges.sum())

    def observe_offline(self, silent: bool, now: float) -> list[RuleEvent]:
        """`silent`: the caller has already seen no frame for `fault_seconds` (there is no frame to time it on), so
        the fault is raised at once, dated back to when the silence began, and ended as soon as frames return."""
        return self._faults.track_timed("offline", silent, now, now - self.config.fault_seconds,
                                        "no frames from the camera", "frames again")

    def _track(self, kind: str, present: bool, now: float) -> list[RuleEvent]:
        return self._faults.track(kind, present, now, self.config.fault_seconds, f"picture {kind}",
                                  "picture back to normal")

    def interrupt(self, now: float, reason: str) -> list[RuleEvent]:
        return self._faults.interrupt(now, reason)

    @property
    def active_faults(self) -> list[str]:
        return self._faults.active
