"""Zone rules: small pure units that turn tracked detections, nearby people and the time into violation events."""

from __future__ import annotations

from edge.config import RuleTuning
from edge.rules.litter import LitterRule
from edge.rules.parking import IllegalParkingRule
from edge.rules.stationary import StationaryRule
from edge.rules.vending import StreetVendingRule
from edge.rules.violations import RuleEvent
from edge.zones import Zone
from gridwatch.contract import Category

RULES: dict[Category, type[StationaryRule]] = {
    Category.ILLEGAL_PARKING: IllegalParkingRule,
    Category.STREET_VENDING: StreetVendingRule,
    Category.LITTER: LitterRule,
}


def build_rules(zones: list[Zone], tuning: RuleTuning, categories: dict[Category, list[str]]) -> list[StationaryRule]:
    """One rule per category the model serves, for the camera's zones; a category with no zone of its kind is
    skipped, so a camera with only no-parking zones costs nothing for stalls and litter."""
    rules = []
    for category, labels in categories.items():
        rule = RULES[category](zones, tuning, labels)
        if rule.zones:
            rules.append(rule)
    return rules


__all__ = ["RULES", "RuleEvent", "StationaryRule", "build_rules"]
