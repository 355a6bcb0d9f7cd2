"""Street vending (0501/0504): a stall (umbrella, table, cart, goods) stays still inside a no-vending zone with people
around it, outside the places and hours where vending is allowed ("定时、定点、定区域")."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edge.config import RuleTuning
from edge.rules.stationary import StationaryRule, judged_by
from edge.rules.tracks import Track
from edge.zones import Zone
from gridwatch.contract import Category


class StreetVendingRule(StationaryRule):
    category = Category.STREET_VENDING
    zone_rule = "no_vending"

    def __init__(self, zones: list[Zone], tuning: RuleTuning, labels) -> None:  # noqa: ANN001 - any iterable
        super().__init__(zones, tuning, labels)
        self.allowed = [zone for zone in zones if zone.config.rule == "vending_allowed"]

    def context(self) -> tuple:
        return tuple(sorted((zone.zone_id, str(judged_by(zone))) for zone in self.allowed))

    def may_fire(self, track: Track, now: float) -> bool:
        """A table nobody stands at is furniture or rubbish, not a stall: someone must have been by it lately."""
        return now - track.last_person_near <= self.tuning.vendor_seconds

    def exempt(self, anchor: NDArray[np.float64], now: float) -> str | None:
        for zone in self.allowed:
            if zone.active(now) and zone.contains(anchor[np.newaxis, :])[0]:
                return f"inside designated vending area {zone.zone_id} during its hours"
        return None
