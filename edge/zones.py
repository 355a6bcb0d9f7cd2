"""Polygon zones in normalised frame coordinates, judged by the bottom-centre anchor of each box."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon

from edge.config import ZoneConfig
from edge.schedule import Schedule


class Zone:
    """A validated polygon that answers which anchors lie inside it, as a boolean mask."""

    def __init__(self, config: ZoneConfig, timezone: ZoneInfo | None = None) -> None:
        polygon = Polygon(config.polygon)
        if not polygon.is_valid or polygon.area <= 0:
            raise ValueError(f"zone {config.zone_id!r}: polygon is self-intersecting or has no area")
        shapely.prepare(polygon)
        self.config = config
        self.polygon = polygon
        self.schedule = Schedule(config.schedule, timezone)

    def active(self, timestamp: float) -> bool:
        """Whether the zone's rule is in force at `timestamp` (seconds since the epoch)."""
        return self.schedule.active(timestamp)

    @property
    def zone_id(self) -> str:
        return self.config.zone_id

    def contains(self, anchors: NDArray[np.float64]) -> NDArray[np.bool_]:
        """`anchors` is an (N, 2) array of normalised x, y; points on the edge count as inside."""
        if len(anchors) == 0:
            return np.zeros(0, dtype=bool)
        return shapely.intersects_xy(self.polygon, anchors[:, 0], anchors[:, 1])

    def pixel_outline(self, width: int, height: int) -> NDArray[np.int32]:
        points = np.asarray(self.config.polygon, dtype=np.float64) * (width, height)
        return points.round().astype(np.int32)


def bottom_centres(boxes_xyxyn: NDArray[np.float64]) -> NDArray[np.float64]:
    """Where an object touches the ground: the middle of its box's lower edge (Frigate's zone anchor)."""
    if len(boxes_xyxyn) == 0:
        return np.zeros((0, 2))
    return np.stack([(boxes_xyxyn[:, 0] + boxes_xyxyn[:, 2]) / 2, boxes_xyxyn[:, 3]], axis=1)
