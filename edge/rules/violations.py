"""What a rule raises and keeps: the events of a violation (`RuleEvent`: `new`, `update`, `end`), each open
violation's state, and when something stands in front of one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gridwatch.contract import Category, EventType


@dataclass(frozen=True)
class RuleEvent:
    type: EventType
    violation_id: uuid.UUID
    category: Category
    zone_id: str
    label: str
    track_id: int
    started_at: float
    observed_at: float
    score: float
    box: tuple[float, float, float, float]
    reason: str
    interrupted: bool = False
    """An `end` because the node stopped watching, not because the object left (`StationaryRule.interrupt`)."""

    def __post_init__(self) -> None:
        # the node's clock stepped back (NTP) since the violation started: the event is dated at its start rather
        # than before it, which the contract refuses (and an `end` refused is a case that never closes)
        if self.observed_at < self.started_at:
            object.__setattr__(self, "observed_at", self.started_at)

    @property
    def dwell_seconds(self) -> float:
        return max(0.0, self.observed_at - self.started_at)


@dataclass
class OpenViolation:
    """A violation a rule has raised and not yet ended."""

    violation_id: uuid.UUID
    zone_id: str
    track_id: int
    label: str
    started_at: float
    box: NDArray[np.float64]
    score: float
    last_seen: float
    published_box: NDArray[np.float64]
    published_at: float
    covered_at: float | None = None
    """When something seen stood over its place last (a bus stopped in front of the parked car, a crowd)."""
    seen_look: int = 0
    """The rule's look that last saw its object."""
    alongside: dict[int, tuple[float, float]] = field(default_factory=dict)
    """Track ids seen at its place in the same frames as its object, with when first and last: for long, a car
    parked beside it (`ObjectIdentity._beside`), not its object found again."""


COVERED = 0.5
"""Of a violation's box, what another object's box must cover for the object to count as hidden behind it."""


def covered(box: NDArray[np.float64], others: NDArray[np.float64]) -> bool:
    if not len(others):
        return False
    width = np.clip(np.minimum(others[:, 2], box[2]) - np.maximum(others[:, 0], box[0]), 0, None)
    height = np.clip(np.minimum(others[:, 3], box[3]) - np.maximum(others[:, 1], box[1]), 0, None)
    area = max(1e-9, float((box[2] - box[0]) * (box[3] - box[1])))
    return bool((width * height / area).max() >= COVERED)
