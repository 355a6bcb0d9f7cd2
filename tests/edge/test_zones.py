from __future__ import annotations

import numpy as np
import pytest

from edge.config import ZoneConfig
from edge.zones import Zone, bottom_centres


def zone(polygon) -> Zone:
    return Zone(ZoneConfig(zone_id="z", rule="no_parking", polygon=polygon))


def test_anchors_inside_outside_and_on_the_edge():
    square = zone([(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)])
    anchors = np.array([[0.5, 0.5], [0.1, 0.5], [0.8, 0.5], [0.5, 0.95]])
    assert square.contains(anchors).tolist() == [True, False, True, False]


def test_bottom_centre_decides_not_the_box():
    # A tall truck whose box reaches into the zone but whose wheels stand outside it is not in the zone.
    kerb = zone([(0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.0, 0.5)])
    boxes = np.array([[0.4, 0.1, 0.6, 0.7], [0.4, 0.1, 0.6, 0.45]])
    assert kerb.contains(bottom_centres(boxes)).tolist() == [False, True]


def test_self_intersecting_polygon_is_refused():
    with pytest.raises(ValueError, match="self-intersecting"):
        zone([(0.1, 0.1), (0.9, 0.9), (0.9, 0.1), (0.1, 0.9)])
