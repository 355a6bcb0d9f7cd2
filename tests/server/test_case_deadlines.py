"""Deadlines on the city's clocks: working hours and round the clock, escalation of overdue cases grid → street →
district, extension, deferral and resumption (the `city` fixture: tests/server/city.py)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from gridwatch.contract import DEFAULT_EVENT_CODES, Category
from server.core.security import Role
from server.models import CaseRecord
from tests.server.city import CST


def test_overdue_cases_escalate_to_the_street_office_then_the_district(city):
    city.detect(category="illegal_parking", code="0505", label="car")  # 30 minutes
    assert city.ingest.sweep(city.clock.advance(minutes=29)) == 0
    assert city.ingest.sweep(city.clock.advance(minutes=2)) == 1
    assert city.case().escalation_level == 1
    assert "escalated to street office 武林街道 Wulin Street Office: 陈志强 Chen Zhiqiang" in \
        city.case().transitions[-1].reason
    assert city.ingest.sweep(city.clock.advance(minutes=60)) == 0
    assert city.ingest.sweep(city.clock.advance(minutes=60)) == 1
    assert city.case().escalation_level == 2 and "district" in city.case().transitions[-1].reason
    assert city.messages[-1].escalation_level == 2 and city.messages[-1].action.value == "escalate"
    assert city.ingest.sweep(city.clock.advance(days=1)) == 0


def test_the_district_is_told_on_the_working_clock_the_deadline_ran_on(city):
    """Found by review: a case due at 22:30, with units working 07:00-23:00, went to the district at 00:30, when no
    unit could have acted on it; its two hours run on the same clock as its deadline, so until 08:30."""
    city.clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=CST)
    city.detect(category="illegal_parking", code="0505", label="car")  # 30 working minutes: due 22:30
    assert city.ingest.sweep(city.clock.advance(minutes=31)) == 1 and city.case().escalation_level == 1
    assert city.ingest.sweep(city.clock.advance(hours=2)) == 0, "00:31: the night is not the unit's"
    assert city.ingest.sweep(city.clock.advance(hours=7, minutes=58)) == 0, "08:29"
    assert city.ingest.sweep(city.clock.advance(minutes=2)) == 1 and city.case().escalation_level == 2
    # found by review: the district read "overdue by 601 min", the night counted, though its two hours ran on
    # the working clock
    assert city.case().transitions[-1].reason.startswith("overdue by 121 working min; escalated to district")


def test_two_workers_sweeping_at_once_escalate_an_overdue_case_once(city):
    city.detect(category="illegal_parking", code="0505", label="car")  # 30 minutes
    now = city.clock.advance(minutes=31)
    with city.database.session() as session:
        first = city.ingest.cases.sweep(session, now)  # worker 1's sweep, not yet committed
        second = threading.Thread(target=city.ingest.sweep, args=(now,))  # worker 2's, meanwhile
        second.start()
        second.join(timeout=1)
        session.commit()
    second.join(timeout=30)
    assert len(first) == 1
    assert [action for action, _ in city.actions()].count("escalate") == 1  # before: escalated twice


def test_a_deferred_case_does_not_escalate_and_its_clock_stops(city):
    city.detect(category="illegal_parking", code="0505", label="car")
    deadline = city.case().deadline_at
    city.clock.advance(minutes=10)
    city.act("defer", Role.SUPERVISOR, reason="road closed for a parade")
    assert city.ingest.sweep(city.clock.advance(hours=3)) == 0
    city.act("resume", Role.SUPERVISOR)
    assert city.case().deadline_at == deadline + timedelta(hours=3)
    assert city.case().was_deferred


def test_extension_moves_the_deadline_in_working_time_and_is_counted(city):
    city.clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=CST)
    city.detect(category="illegal_parking", code="0505", label="car")
    assert city.case().deadline_at == datetime(2026, 11, 23, 22, 30, tzinfo=CST)
    city.act("extend", Role.SUPERVISOR, reason="tow truck busy", extend_minutes=60)
    assert city.case().deadline_at == datetime(2026, 11, 24, 7, 30, tzinfo=CST)
    assert city.case().extension_count == 1


def test_resuming_a_deferred_case_gives_back_the_working_time_it_had_left(city):
    city.clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=CST)
    city.detect(category="illegal_parking", code="0505", label="car")
    city.act("extend", Role.SUPERVISOR, reason="tow truck busy", extend_minutes=60)
    assert city.case().deadline_at == datetime(2026, 11, 24, 7, 30, tzinfo=CST)
    city.clock.now = datetime(2026, 11, 23, 22, 10, tzinfo=CST)
    city.act("defer", Role.SUPERVISOR, reason="road closed for a parade")  # 50 + 30 working minutes left
    city.clock.now = datetime(2026, 11, 24, 10, 0, tzinfo=CST)
    city.act("resume", Role.SUPERVISOR)
    assert city.case().deadline_at == datetime(2026, 11, 24, 11, 20, tzinfo=CST), \
        "80 working minutes from 10:00 (the wall clock's 11 h 50 min made it 19:20)"


def test_resuming_a_case_deferred_while_overdue_keeps_it_as_overdue_on_the_working_clock(city):
    """Found by review: 15 working minutes overdue when deferred at 22:45, resumed at 07:05, the wall clock moved
    its deadline to 06:50 next morning: 5 working minutes overdue, and the district told later."""
    city.clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=CST)
    city.detect(category="illegal_parking", code="0505", label="car")  # due 22:30 (units work 07:00-23:00)
    city.clock.now = datetime(2026, 11, 23, 22, 45, tzinfo=CST)
    city.act("defer", Role.SUPERVISOR, reason="road closed for a parade")
    city.clock.now = datetime(2026, 11, 24, 7, 5, tzinfo=CST)
    city.act("resume", Role.SUPERVISOR)
    assert city.case().deadline_at == datetime(2026, 11, 23, 22, 50, tzinfo=CST), "15 working minutes before 07:05"


def test_extending_a_calendar_clock_case_adds_calendar_time_and_its_escalation_starts_again(city):
    city.clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=CST)
    city.detect(category="device_fault", code=DEFAULT_EVENT_CODES[Category.DEVICE_FAULT], label="covered",
                zone_id="camera")
    assert city.case().deadline_at == datetime(2026, 11, 24, 2, 0, tzinfo=CST)  # 240 minutes, round the clock
    assert city.ingest.sweep(city.clock.advance(hours=4, minutes=30)) == 1
    assert city.case().escalation_level == 1, "told the street office"
    city.act("extend", Role.SUPERVISOR, reason="a ladder truck is needed", extend_minutes=60)
    assert city.case().deadline_at == datetime(2026, 11, 24, 3, 0, tzinfo=CST), "not 08:00 in working hours"
    assert city.case().escalation_level == 0
    city.clock.now = datetime(2026, 11, 24, 3, 30, tzinfo=CST)
    assert city.ingest.sweep(city.clock.now) == 1
    assert city.case().escalation_level == 1, "past the new deadline, the street office is told first again"


def test_a_case_first_seen_long_overdue_is_told_to_the_street_office_before_the_district(city):
    """Found by review: a sweep that met a case 150 minutes overdue (a rework after the deadline, a server that was
    down) escalated it to the district at once; the street office was never told."""
    city.detect(category="illegal_parking", code="0505", label="car")  # due in 30 minutes
    assert city.ingest.sweep(city.clock.advance(minutes=180)) == 1
    assert city.case().escalation_level == 1 and "street office" in city.case().transitions[-1].reason
    assert city.ingest.sweep(city.clock.advance(seconds=30)) == 1
    assert city.case().escalation_level == 2


def test_without_a_dispatch_configuration_the_unit_an_operator_names_takes_the_case(city):
    """Found by review: with no `dispatch_config` (the default), dispatch or reassign to a unit answered 200 and
    gave the case back to the command centre, its deadline restarted; a returned case went back to whoever had
    returned it."""
    from server.services.dispatch import Dispatcher

    city.ingest.cases.dispatcher = Dispatcher(None, [])
    city.detect()
    assert (city.case().unit_id, city.case().fallback) == ("command-centre", True)
    city.act("return", reason="for the parks department")
    city.act("dispatch", unit_id="parks")
    assert (city.case().status, city.case().unit_id, city.case().unit_name, city.case().fallback) == (
        "dispatched", "parks", "parks", False)


def test_a_case_that_cannot_be_escalated_leaves_the_other_overdue_cases_escalated(city, caplog):
    """Found by review: one case that failed to escalate raised out of the sweep, whose transaction rolled back, so
    no overdue case was escalated at that sweep or any later one. Here a case of a category this worker does not
    know (written by a newer worker during an upgrade): it is named in the log and left; the other is told."""
    city.detect(category="illegal_parking", code="0505", label="car")  # 30 minutes
    city.detect(category="illegal_parking", code="0505", label="car", camera_id="cam-2",
                location={"lat": 30.274, "lon": 120.155})  # another grid, WL-01
    assert city.cases() == 2
    with city.database.session() as session:
        session.get(CaseRecord, 1).category = "bicycle_parking"
        session.commit()
    with caplog.at_level(logging.ERROR, logger="server.services.cases"):
        assert city.ingest.sweep(city.clock.advance(minutes=31)) == 1
    assert (city.case(1).escalation_level, city.case(2).escalation_level) == (0, 1)
    assert "case 1: not escalated" in caplog.text
    assert city.ingest.sweep(city.clock.advance(minutes=120)) == 1 and city.case(2).escalation_level == 2


def test_a_case_outside_every_grid_goes_to_the_district_at_its_deadline(city):
    """Found by review: a case outside every grid has no street office, yet was "escalated to street office (no
    grid)" at its deadline, telling no one, and the district heard of it only two hours later."""
    city.detect(category="illegal_parking", code="0505", label="car", location={"lat": 31.0, "lon": 121.0})
    assert city.case().fallback and city.case().street is None  # the command centre's, 240 working minutes
    assert city.ingest.sweep(city.clock.advance(minutes=239)) == 0
    assert city.ingest.sweep(city.clock.advance(minutes=2)) == 1
    assert city.case().escalation_level == 2
    assert city.case().transitions[-1].reason == (
        "overdue by 1 working min; escalated to district: 下城区城管指挥中心 District command centre 0571-8700-0001 "
        "(no street office to tell: outside every grid)")
    assert city.messages[-1].escalation_level == 2
    assert city.ingest.sweep(city.clock.advance(hours=3)) == 0
