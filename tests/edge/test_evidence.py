from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np

from edge.config import ZoneConfig
from edge.evidence import annotate, crop
from edge.zones import Zone


def test_evidence_is_a_jpeg_of_the_frame_with_box_zone_and_time():
    frame = np.full((480, 640, 3), 90, dtype=np.uint8)
    zone = Zone(ZoneConfig(zone_id="kerb", rule="no_parking", polygon=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)]))
    evidence = annotate(frame, zone, (0.25, 0.55, 0.5, 0.9), "car 181s new",
                        datetime(2026, 11, 23, 9, 3, tzinfo=UTC))
    image = cv2.imdecode(np.frombuffer(evidence.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == frame.shape
    assert len(evidence.sha256) == 64
    b, g, r = (int(v) for v in image[int(0.9 * 480), int(0.375 * 640)])  # bottom edge of the box: red
    assert r > 180 and g < 120 and b < 120
    b, g, r = (int(v) for v in image[240, 320])  # the zone's top edge: yellow
    assert r > 180 and g > 150 and b < 120
    assert np.array_equal(frame, np.full((480, 640, 3), 90, dtype=np.uint8)), "the source frame is untouched"


def test_the_crop_is_the_object_at_full_resolution_and_undrawn():
    ys, xs = np.mgrid[0:1080, 0:1920]
    frame = np.stack([(xs // 8) % 256, (ys // 4) % 256, ((xs + ys) // 16) % 256], axis=2).astype(np.uint8)
    evidence = crop(frame, (0.5, 0.5, 0.6, 0.6), margin=0.0)
    image = cv2.imdecode(np.frombuffer(evidence.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (108, 192, 3), "a tenth of a 1080p frame keeps every pixel"
    assert np.abs(image.astype(int) - frame[540:648, 960:1152].astype(int)).mean() < 12, "the same pixels (JPEG)"
