"""Exposed litter (0102): an object (bottle, cup, bag, or a city model's `garbage`) lies still inside a no-litter zone
with nobody near it: not carried, not waiting beside its owner."""

from __future__ import annotations

from edge.rules.stationary import StationaryRule
from edge.rules.tracks import Track
from gridwatch.contract import Category


class LitterRule(StationaryRule):
    category = Category.LITTER
    zone_rule = "no_litter"
    same_kind = (frozenset({"handbag", "backpack", "suitcase"}),)  # COCO calls one rubbish bag each in turn

    def may_fire(self, track: Track, now: float) -> bool:
        return now - track.last_attended >= self.tuning.unattended_seconds

    def counted_from(self, track: Track) -> float:
        """Left lying from when its owner went: a bag put down beside someone who sat there for ten minutes is not
        ten minutes' litter the moment they step away. Only someone who stayed by it counts: on a busy pavement
        people walk past a bottle every minute, and it is no less litter for that."""
        return track.last_attended
