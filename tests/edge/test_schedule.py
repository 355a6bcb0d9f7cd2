from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.config import RuleTuning, ZoneConfig
from edge.rules.parking import IllegalParkingRule
from edge.schedule import Schedule, TimeWindow
from edge.zones import Zone
from tests.edge.test_parking_rule import PARKED, seen, types

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEKDAYS_DAYTIME = TimeWindow(days=["mon", "tue", "wed", "thu", "fri"], start="07:00", end="19:00")
NIGHT = TimeWindow(start="22:00", end="06:00")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


@pytest.mark.parametrize(
    ("window", "moment", "active"),
    [
        (WEEKDAYS_DAYTIME, "2026-11-23 07:00", True),    # Monday, opening minute
        (WEEKDAYS_DAYTIME, "2026-11-23 18:59", True),
        (WEEKDAYS_DAYTIME, "2026-11-23 19:00", False),   # end is exclusive
        (WEEKDAYS_DAYTIME, "2026-11-23 06:59", False),
        (WEEKDAYS_DAYTIME, "2026-11-28 12:00", False),   # Saturday
        (NIGHT, "2026-11-23 23:30", True),
        (NIGHT, "2026-11-24 05:59", True),                # the morning after
        (NIGHT, "2026-11-24 12:00", False),
        (TimeWindow(days=["fri"], start="22:00", end="02:00"), "2026-11-28 01:00", True),   # Friday night, Sat 1am
        (TimeWindow(days=["fri"], start="22:00", end="02:00"), "2026-11-29 01:00", False),  # Saturday night
    ],
)
def test_windows(window, moment, active):
    assert Schedule([window], SHANGHAI).active(at(moment)) is active


def test_no_windows_means_always():
    assert Schedule([], SHANGHAI).active(at("2026-11-29 03:00"))


def test_parking_counts_only_while_the_zone_is_in_force_and_dwell_starts_at_its_opening():
    kerb = Zone(ZoneConfig(zone_id="school-gate", rule="no_parking", polygon=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)],
                           dwell_seconds=300, schedule=[WEEKDAYS_DAYTIME]), SHANGHAI)
    rule = IllegalParkingRule([kerb], RuleTuning(), ["car"])
    start = at("2026-11-23 06:50")  # parked ten minutes before the zone opens, stays until 19:10
    events = []
    for index in range(int(12.4 * 3600)):  # one frame a second is plenty here
        now = start + index
        events.extend((now, e) for e in rule.process(seen((1, PARKED, 0.8, "car")), now))
    new = [(t, e) for t, e in events if e.type.value == "new"]
    ends = [(t, e) for t, e in events if e.type.value == "end"]
    assert len(new) == 1 and new[0][0] == pytest.approx(at("2026-11-23 07:05"), abs=3)
    assert len(ends) == 1 and ends[0][0] == pytest.approx(at("2026-11-23 19:00"), abs=3)
    assert "schedule" in ends[0][1].reason
    assert types(events)[-1] == "end"
