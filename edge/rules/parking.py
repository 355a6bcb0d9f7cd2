"""Illegal parking (0505): a vehicle stays still inside a no-parking zone, during its hours, for the dwell time."""

from __future__ import annotations

from edge.rules.stationary import StationaryRule
from gridwatch.contract import Category


class IllegalParkingRule(StationaryRule):
    category = Category.ILLEGAL_PARKING
    zone_rule = "no_parking"
    same_kind = (frozenset({"car", "truck", "bus"}),)  # COCO calls a van either; a motorcycle is another object
