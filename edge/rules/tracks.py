"""What a rule remembers of each tracked object, and how two boxes or an object and the people around it relate."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass
class Membership:
    inside: bool = False
    streak: int = 0
    entered_at: float = 0.0


@dataclass
class Track:
    track_id: int
    label: str
    box: NDArray[np.float64]
    last_seen: float
    reference_anchor: NDArray[np.float64]
    reference_box: NDArray[np.float64]
    still_since: float
    scores: deque[float]
    recent_boxes: deque[NDArray[np.float64]]
    zones: dict[str, Membership] = field(default_factory=dict)
    moving_frames: int = 0
    moving_since: float | None = None
    last_person_near: float = float("-inf")
    near_since: float = float("-inf")
    """When the person near it now came (people seen near it at each of the rule's looks, or with no break longer than
    `NEAR_GAP`)."""
    near_look: int = -1
    """The rule's look that last saw someone near it."""
    last_attended: float = float("-inf")
    """When someone who stayed by it (`attending_seconds` at least: its owner, not a passer-by) was last near."""
    last_exempt: float = float("-inf")
    """When the object was last allowed where it is (`StationaryRule.exempt`): its dwell counts from then."""
    seen_look: int = 0
    """The rule's look (`StationaryRule.process` call) that last saw it."""

    @property
    def median_score(self) -> float:
        return statistics.median(self.scores)

    @property
    def steady_box(self) -> NDArray[np.float64]:
        """Median of the last few boxes: what is published, so a one-frame glitch changes nothing."""
        return np.median(np.stack(self.recent_boxes), axis=0)



def containment(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """How much of the smaller of two boxes lies within the larger (1.0: entirely). A parked car half hidden by a
    passer-by shows a smaller box inside the one it had, and a whole one around a half view: high containment where
    the IoU is low."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    if width <= 0 or height <= 0 or smaller <= 0:
        return 0.0
    return float(width * height / smaller)


def people_near(box: NDArray[np.float64], people: NDArray[np.float64], factor: float) -> bool:
    """Whether any person's box meets `box` grown by `factor` of its width and height on every side."""
    if len(people) == 0:
        return False
    grow_x, grow_y = (box[2] - box[0]) * factor, (box[3] - box[1]) * factor
    x1, y1, x2, y2 = box[0] - grow_x, box[1] - grow_y, box[2] + grow_x, box[3] + grow_y
    return bool(np.any((people[:, 0] <= x2) & (people[:, 2] >= x1) & (people[:, 1] <= y2) & (people[:, 3] >= y1)))
