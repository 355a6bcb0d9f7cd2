"""Assessment of a case that passed through several turns (returned, reassigned, closed and reopened): each group
counts the case once and keeps what its earlier turns did; driven through the case engine as the `city` fixture
keeps its turns."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from server.services.assessment import GroupBy, Indicators, Period, assess, load_cases, load_rounds

CST = timezone(timedelta(hours=8))
ZONE = ZoneInfo("Asia/Shanghai")


def rows_by(city, by: GroupBy = GroupBy.UNIT) -> dict[str, Indicators]:
    """November's rows as a supervisor reads them, by group."""
    since, until = datetime(2026, 11, 1, tzinfo=CST), datetime(2026, 12, 1, tzinfo=CST)
    with city.database.session() as session:
        return {row.group: row for row in assess(load_cases(session, since, until), by, Period.MONTH, ZONE,
                                                 city.clock.now, load_rounds(session, since, until))}


def close(city) -> None:
    for action in ("accept", "feedback", "verify", "close"):
        city.act(action)


@pytest.mark.parametrize(("by", "group"), [(GroupBy.UNIT, "sanitation"), (GroupBy.GRID, "WL-02"),
                                           (GroupBy.STREET_CHIEF, "李晓梅 Li Xiaomei (0571-8700-0102)"),
                                           (GroupBy.CAMERA, "node-a/cam-1")])
def test_a_case_closed_reopened_and_closed_again_counts_once(city, by, group):
    """Found by review: one case closed on time twice read cases 1, closed 1, due 2, on time 2, dispatched 2."""
    city.detect()
    close(city)
    city.clock.advance(minutes=5)
    city.detect()  # reopened, back to sanitation
    close(city)
    row = rows_by(city, by)[group]
    assert (row.cases, row.closed, row.due, row.on_time, row.dispatched) == (1, 1, 1, 1, 1)
    assert (row.closure_rate, row.on_time_closure_rate) == (1.0, 1.0)


def test_a_case_reworked_then_reopened_has_a_rework_rate_of_one(city):
    """Found by review: reworked once, closed, reopened: 1 reworked of 2 dispatched, a rework rate of 0.5 for the
    unit's one case, which was reworked."""
    city.detect()
    city.act("accept")
    city.act("feedback")
    city.act("rework", reason="the pile is still there")
    city.act("feedback")
    city.act("verify")
    city.act("close")
    city.clock.advance(minutes=5)
    city.detect()  # reopened
    assert (rows_by(city)["sanitation"].rework_rate, rows_by(city, GroupBy.GRID)["WL-02"].rework_rate) == (1.0, 1.0)


def test_one_late_turn_makes_the_case_late_for_its_group(city):
    """Found by review: held six hours past its deadline by sanitation, reassigned and closed on time by
    enforcement, the grid's one case read on time 1 of due 2: half on time."""
    city.detect()
    city.clock.advance(hours=6)
    city.act("reassign", unit_id="enforcement", reason="enforcement's street")
    close(city)
    grid = rows_by(city, GroupBy.GRID)["WL-02"]
    assert (grid.cases, grid.due, grid.on_time, grid.on_time_closure_rate) == (1, 1, 0, 0.0)
    units = rows_by(city)
    assert (units["sanitation"].on_time_closure_rate, units["enforcement"].on_time_closure_rate) == (0.0, 1.0)
