"""Where a new violation repeats an earlier case: the keys two workers claim before opening a case must be shared by
any two violations that would repeat each other, so they take turns instead of opening two cases at one place."""

from __future__ import annotations

import math
import random
from datetime import timedelta

from gridwatch.contract import Category, Location
from server.services.places import Repeats, metres

REPEATS = Repeats(timedelta(minutes=30), radius_m=15)


def place(lat: float, lon: float, view=("node-a", "cam-1", "gate"), category=Category.ILLEGAL_PARKING):
    return category, Location(lat=lat, lon=lon), view


def test_any_two_violations_within_the_radius_share_a_key_wherever_the_grid_falls():
    rng = random.Random(7)
    for _ in range(5_000):
        lat, lon = rng.uniform(-60, 60), rng.uniform(-179, 179)
        bearing, distance = rng.uniform(0, 2 * math.pi), rng.uniform(0, 14.9)
        other = (lat + distance * math.cos(bearing) / 111_000,
                 lon + distance * math.sin(bearing) / (111_000 * math.cos(math.radians(lat))))
        assert metres(lat, lon, *other) < 15.0
        shared = set(REPEATS.keys(place(lat, lon))) & set(REPEATS.keys(place(*other, view=("node-b", "cam-9", "x"))))
        assert shared, (lat, lon, other)


def test_places_far_apart_or_of_another_category_claim_nothing_in_common():
    here = set(REPEATS.keys(place(30.27, 120.15)))
    assert 1 <= len(here) <= 4
    assert not here & set(REPEATS.keys(place(30.28, 120.15)))  # 1.1 km north
    assert not here & set(REPEATS.keys(place(30.27, 120.15, category=Category.LITTER)))


def test_a_violation_without_a_position_claims_its_camera_view():
    unplaced = (Category.ILLEGAL_PARKING, None, ("node-a", "cam-1", "gate"))
    assert REPEATS.keys(unplaced) == REPEATS.keys(unplaced)
    assert REPEATS.keys(unplaced) != REPEATS.keys((Category.ILLEGAL_PARKING, None, ("node-a", "cam-2", "gate")))
