"""Camera health on synthetic pictures with a simulated clock (one check a second)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.health import CameraHealth
from edge.health_config import HealthConfig
from gridwatch.contract import Category

HOLD = 30


def scene(seed: int = 0, shift: int = 0, noise: bool = True) -> np.ndarray:
    """A street-like picture with plenty of edges; `shift` pans the view sideways by that many pixels."""
    base_rng = np.random.default_rng(42)
    image = np.full((480, 640, 3), 110, dtype=np.uint8)
    for _ in range(40):
        x, y = int(base_rng.integers(0, 600)), int(base_rng.integers(0, 440))
        w, h = int(base_rng.integers(20, 120)), int(base_rng.integers(20, 120))
        cv2.rectangle(image, (x, y), (x + w, y + h), tuple(int(c) for c in base_rng.integers(0, 255, 3)), -1)
    if shift:
        image = np.roll(image, shift, axis=1)
    if noise:
        rng = np.random.default_rng(seed)
        image = np.clip(image.astype(np.int16) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
    return image


def run(health: CameraHealth, seconds: int, picture, start: float = 0.0):
    events = []
    for second in range(seconds):
        events.extend((start + second, e) for e in health.observe(picture(second), start + second))
    return events


@pytest.mark.parametrize(
    ("fault", "picture"),
    [
        ("black", lambda s: np.full((480, 640, 3), 3, dtype=np.uint8)),
        ("covered", lambda s: cv2.GaussianBlur(np.full((480, 640, 3), 140, dtype=np.uint8), (31, 31), 0)),
        ("frozen", lambda s: scene(seed=999)),          # the very same frame, over and over
        ("moved", lambda s: scene(seed=s, shift=230)),  # turned away from its calibrated view
    ],
)
def test_a_fault_is_raised_after_it_lasts_and_ended_after_recovery(fault, picture):
    health = CameraHealth(HealthConfig(fault_seconds=HOLD))
    assert run(health, 60, lambda s: scene(seed=s)) == [], "a healthy camera raises nothing"
    bad = run(health, 45, picture, start=60)
    good = run(health, 45, lambda s: scene(seed=1000 + s), start=105)
    assert [(e.type.value, e.label) for _, e in bad] == [("new", fault)]
    assert bad[0][0] == pytest.approx(60 + HOLD, abs=1.01)
    assert bad[0][1].category is Category.DEVICE_FAULT
    assert [(e.type.value, e.label) for _, e in good] == [("end", fault)]
    assert good[0][1].violation_id == bad[0][1].violation_id


def test_people_passing_and_a_brief_glitch_are_not_faults():
    health = CameraHealth(HealthConfig(fault_seconds=HOLD))

    def busy(second: int) -> np.ndarray:
        image = scene(seed=second)
        x = (second * 37) % 560
        image[200:420, x:x + 60] = (40, 40, 200)  # someone walking through
        if second == 70:
            image[:] = 0  # one black frame: a glitch, not a fault
        return image

    assert run(health, 200, busy) == []


def test_a_camera_whose_picture_size_changes_learns_its_new_view_instead_of_failing_on_every_frame():
    """Found by review: calibrated on one size, a camera switched to its substream (another size) made every
    health check raise, and its pipeline failed and restarted for good."""
    health = CameraHealth(HealthConfig(fault_seconds=HOLD))
    assert run(health, 60, lambda s: scene(seed=s)) == []
    smaller = lambda s: cv2.resize(scene(seed=s), (352, 288))  # noqa: E731 - a CIF substream
    assert run(health, 120, smaller, start=60) == [], "the new view learnt: no fault, no error"
    moved = run(health, 60, lambda s: cv2.resize(scene(seed=s, shift=230), (352, 288)), start=180)
    assert [(event.type.value, event.label) for _, event in moved] == [("new", "moved")], "and watched"


def test_a_picture_that_shows_no_street_by_turns_black_and_covered_is_a_fault_until_the_street_is_back():
    """Found by review: each condition had its timer, restarted whenever another one was seen: a dark lens cover
    whose brightness hovers at `black_level` read black, covered, black… for ten minutes, raised no fault, and the
    rules' open violations were neither judged nor ended all that while."""
    health = CameraHealth(HealthConfig(fault_seconds=HOLD))
    run(health, 60, lambda s: scene(seed=s))
    dark = run(health, 600, lambda s: np.full((480, 640, 3), 11 if s % 2 else 13, dtype=np.uint8), start=60)
    assert [e.type.value for _, e in dark] == ["new"], "raised once, and kept while blind"
    assert dark[0][1].label in ("black", "covered") and dark[0][0] == pytest.approx(60 + HOLD, abs=1.01)
    back = run(health, 45, lambda s: scene(seed=1000 + s), start=660)
    assert [(e.type.value, e.violation_id) for _, e in back] == [("end", dark[0][1].violation_id)]
