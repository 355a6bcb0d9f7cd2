from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridwatch.config_files import ConfigError
from gridwatch.contract import Category, Location
from server.services.dispatch import Dispatcher, load_grids
from server.services.duty import (
    Shift,
    TimeWindow,
    WorkingHours,
    add_working_time,
    on_duty,
    taking_over,
    working_time_between,
)

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo" / "dispatch.yaml"
CST = timezone(timedelta(hours=8))
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=CST)


@pytest.fixture(scope="module")
def dispatcher() -> Dispatcher:
    return Dispatcher.from_file(DEMO)


@pytest.mark.parametrize(
    ("category", "location", "unit", "grid", "chief", "minutes"),
    [
        (Category.ILLEGAL_PARKING, Location(lat=30.274, lon=120.155), "traffic-police", "WL-01", "王建国", 30),
        (Category.LITTER, Location(lat=30.274, lon=120.165), "sanitation", "WL-02", "李晓梅", 240),
        (Category.STREET_VENDING, Location(lat=30.274, lon=120.165), "enforcement", "WL-02", "李晓梅", 60),
        (Category.DEVICE_FAULT, Location(lat=30.274, lon=120.155), "operations", "WL-01", "王建国", 240),
        (Category.STREETLIGHT_FAULT, Location(lat=30.274, lon=120.165), "street-lighting", "WL-02", "李晓梅", 1440),
    ],
)
def test_grid_gives_the_chief_and_category_the_unit(dispatcher, category, location, unit, grid, chief, minutes):
    assignment, deadline = dispatcher.assign(category, location, MONDAY_10)
    assert assignment.unit_id == unit and assignment.grid_id == grid
    assert assignment.street_chief.name.startswith(chief)
    assert not assignment.fallback
    assert deadline - MONDAY_10 == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("category", "local_time", "on_duty_name"),
    [
        (Category.STREET_VENDING, "07:00", "赵磊 Zhao Lei"),
        (Category.STREET_VENDING, "12:19", "赵磊 Zhao Lei"),
        (Category.STREET_VENDING, "12:20", "孙婷 Sun Ting"),
        (Category.STREET_VENDING, "22:59", "周强 Zhou Qiang"),
        (Category.STREET_VENDING, "23:30", "赵磊 Zhao Lei"),  # outside every shift: the first of the morning
        (Category.LITTER, "02:00", "郑伟 Zheng Wei"),
        (Category.LITTER, "18:00", "郑伟 Zheng Wei"),
        (Category.LITTER, "06:00", "吴芳 Wu Fang"),
        (Category.ILLEGAL_PARKING, "10:00", None),
    ],
)
def test_the_roster_names_who_is_on_duty(dispatcher, category, local_time, on_duty_name):
    """Found by review: a case that came in after the last shift named nobody, and nobody ever was."""
    hour, minute = map(int, local_time.split(":"))
    now = MONDAY_10.replace(hour=hour, minute=minute)
    assignment, _ = dispatcher.assign(category, Location(lat=30.274, lon=120.165), now)
    assert (assignment.on_duty.name if assignment.on_duty else None) == on_duty_name


@pytest.mark.parametrize(
    ("filed", "minutes", "clock", "due"),
    [
        ("2026-11-23 10:00", 30, "working", "2026-11-23 10:30"),
        ("2026-11-23 22:50", 30, "working", "2026-11-24 07:20"),  # the clock stops at 23:00
        ("2026-11-24 02:00", 30, "working", "2026-11-24 07:30"),  # and starts at 07:00
        ("2026-11-23 21:00", 240, "working", "2026-11-24 09:00"),
        ("2026-11-23 10:00", 16 * 60 * 2, "working", "2026-11-25 10:00"),  # two whole working days
        ("2026-11-23 22:50", 30, "calendar", "2026-11-23 23:20"),
    ],
)
def test_deadlines_count_working_hours(dispatcher, filed, minutes, clock, due):
    start = datetime.fromisoformat(filed).replace(tzinfo=CST)
    assert dispatcher.deadline(start, timedelta(minutes=minutes), clock) == \
        datetime.fromisoformat(due).replace(tzinfo=CST)


def test_weekday_hours_skip_the_weekend():
    weekdays = TimeWindow(start="09:00", end="17:00", days=["mon", "tue", "wed", "thu", "fri"])
    friday_4pm = datetime(2026, 11, 27, 16, 0, tzinfo=CST)
    due = add_working_time(friday_4pm, timedelta(hours=2), weekdays, ZoneInfo("Asia/Shanghai"))
    assert due == datetime(2026, 11, 30, 10, 0, tzinfo=CST)  # Monday
    night = Shift(name="night", start="22:00", end="06:00", days=["sat"], staff={"name": "A"})
    assert on_duty([night], datetime(2026, 11, 29, 3, 0, tzinfo=CST), ZoneInfo("Asia/Shanghai")).name == "A"
    assert on_duty([night], datetime(2026, 11, 30, 3, 0, tzinfo=CST), ZoneInfo("Asia/Shanghai")) is None


NATIONAL_DAY = WorkingHours(start="09:00", end="18:00", days=["mon", "tue", "wed", "thu", "fri"],
                            holidays=[f"2026-10-0{day}" for day in range(1, 8)], make_up_days=["2026-10-10"])


@pytest.mark.parametrize(
    ("filed", "hours", "due"),
    [
        ("2026-09-30 17:00", 2, "2026-10-08 10:00"),  # the clock stops for the whole Golden Week
        ("2026-10-09 17:00", 2, "2026-10-10 10:00"),  # a Saturday worked in its place (调休)
        ("2026-10-03 12:00", 1, "2026-10-08 10:00"),  # filed on a holiday: nothing runs until the week is over
    ],
)
def test_deadlines_stop_on_holidays_and_run_on_make_up_days(filed, hours, due):
    start = datetime.fromisoformat(filed).replace(tzinfo=CST)
    assert add_working_time(start, timedelta(hours=hours), NATIONAL_DAY, ZoneInfo("Asia/Shanghai")) == \
        datetime.fromisoformat(due).replace(tzinfo=CST)
    assert working_time_between(start, datetime.fromisoformat(due).replace(tzinfo=CST), NATIONAL_DAY,
                                ZoneInfo("Asia/Shanghai")) == timedelta(hours=hours)


def test_a_dispatch_config_with_holidays_sets_deadlines_by_them(tmp_path):
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(
        'working_hours: {start: "07:00", end: "23:00"}',
        'working_hours: {start: "07:00", end: "23:00", holidays: [2026-10-01]}'))
    dispatcher = Dispatcher.from_file(tmp_path / "dispatch.yaml")
    eve = datetime(2026, 9, 30, 22, 30, tzinfo=CST)
    assert dispatcher.deadline(eve, timedelta(minutes=60)) == datetime(2026, 10, 2, 7, 30, tzinfo=CST)


@pytest.mark.parametrize(
    ("level", "street", "contact"),
    [(1, "武林街道 Wulin Street Office", "陈志强 Chen Zhiqiang"), (1, "elsewhere", None),
     (2, "武林街道 Wulin Street Office", "下城区城管指挥中心 District command centre")],
)
def test_escalation_goes_to_the_street_office_then_the_district(dispatcher, level, street, contact):
    person = dispatcher.escalation_contact(level, street)
    assert (person.name if person else None) == contact


@pytest.mark.parametrize("location", [None, Location(lat=31.0, lon=121.0)])
def test_outside_every_grid_goes_to_the_fallback_unit(dispatcher, location):
    assignment, _ = dispatcher.assign(Category.ILLEGAL_PARKING, location, MONDAY_10)
    assert assignment.fallback and assignment.unit_id == "command-centre" and assignment.street_chief is None


def test_unknown_unit_in_config_is_named(tmp_path):
    (tmp_path / "grids.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (tmp_path / "dispatch.yaml").write_text(
        "grids: grids.geojson\nunits: {a: {name: A}}\ncategories: {litter: {unit: b, deadline_minutes: 5}}\n"
        "fallback_unit: a\n"
    )
    with pytest.raises(ConfigError, match="categories.litter.unit: unknown unit 'b'"):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


def test_unknown_key_in_config_is_named(tmp_path):
    text = DEMO.read_text().replace("fallback_unit:", "fallback_units:")
    (tmp_path / "dispatch.yaml").write_text(text)
    with pytest.raises(ConfigError, match="fallback_units: unknown key"):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [("timezone: Asia/Shanghai", "timezone: Mars/Olympus", "timezone: unknown time zone 'Mars/Olympus'"),
     ('working_hours: {start: "07:00", end: "23:00"}', 'working_hours: {start: "07:00", end: "23:00", days: [mon, '
      'funday]}', "working_hours.days: .*funday"),
     ("deadline_minutes: 30, auto_file_score: 0.5", "deadline_minutes: 30, auto_file_score: 5", "auto_file_score"),
     ('working_hours: {start: "07:00", end: "23:00"}', 'working_hours: {start: "07:00", end: "23:00", days: []}',
      "working_hours.days: .*at least one day"),
     ('working_hours: {start: "07:00", end: "23:00"}', 'working_hours: {start: "07:00", end: "23:00", holidays: '
      '[2026-10-10], make_up_days: [2026-10-10]}', "2026-10-10: both a holiday and a make-up day"),
     ('working_hours: {start: "07:00", end: "23:00"}', 'working_hours: {start: "07:00", end: "23:00", holidays: '
      '[2026-13-01]}', "working_hours.holidays.0"),
     ('working_hours: {start: "07:00", end: "23:00"}', 'working_hours: {start: "07:00+08:00", end: "23:00"}',
      "working_hours.start: .*takes no UTC offset")],
)
def test_bad_duty_settings_are_named(tmp_path, replace, by, message):
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(replace, by))
    with pytest.raises(ConfigError, match=message):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


def test_working_time_across_a_change_of_daylight_saving_time_is_real_time():
    """Found by review: working time was added and measured on the wall clock, so on the night the clocks go back
    four working hours took five real ones, and nine real hours counted as eight."""
    berlin = ZoneInfo("Europe/Berlin")
    always = TimeWindow(start="00:00", end="00:00")  # round the clock
    night = TimeWindow(start="22:00", end="06:00")
    start = datetime(2026, 10, 24, 23, 0, tzinfo=berlin)  # the clocks go back at 03:00 on the 25th
    due = add_working_time(start, timedelta(hours=4), always, berlin)
    assert due.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=4)
    assert working_time_between(datetime(2026, 10, 24, 22, 0, tzinfo=berlin),
                                datetime(2026, 10, 25, 6, 0, tzinfo=berlin), night, berlin) == timedelta(hours=9)


def test_a_shift_that_ended_is_not_on_duty_again_in_the_hour_the_clocks_go_back():
    """Found by review: shifts were compared on the wall clock, so in the hour repeated as daylight-saving time
    ends, a night shift ending at 02:30 (summer time) was on duty again at 02:15 (winter time), 45 minutes later."""
    berlin = ZoneInfo("Europe/Berlin")
    shifts = [Shift(name="night", start="22:00", end="02:30", staff={"name": "Night"}),
              Shift(name="day", start="02:30", end="22:00", staff={"name": "Day"})]
    names = [on_duty(shifts, datetime.fromisoformat(at), berlin).name
             for at in ("2026-10-25T00:15:00+00:00", "2026-10-25T00:45:00+00:00", "2026-10-25T01:15:00+00:00")]
    assert names == ["Night", "Day", "Day"]  # 02:15 summer time, 02:45 summer time, 02:15 winter time
    office = [Shift(name="office", start="02:30", end="03:30", staff={"name": "Office"})]
    assert taking_over(office, datetime.fromisoformat("2026-10-25T01:45:00+00:00"), berlin).name == "Office"


def _grid_feature(coordinates: list, **properties) -> dict:
    return {"type": "Feature", "properties": {"grid_id": "G1", "street": "Wulin", **properties},
            "geometry": {"type": "Polygon", "coordinates": [coordinates]}}


LON_LAT = [[120.15, 30.27], [120.16, 30.27], [120.16, 30.28], [120.15, 30.28], [120.15, 30.27]]


@pytest.mark.parametrize(("grids", "message"), [
    ({"type": "Feature", "geometry": None}, "FeatureCollection"),
    ([], "FeatureCollection"),
    ({"type": "FeatureCollection", "features": [_grid_feature([[y, x] for x, y in LON_LAT])]},
     r"features.0 \(G1\): coordinates outside .*\[lon, lat\]"),
    ({"type": "FeatureCollection", "features": [_grid_feature(LON_LAT, streetchief={"name": "Li"})]},
     "streetchief: unknown key; did you mean street_chief"),
    ({"type": "FeatureCollection", "features": [{**_grid_feature(LON_LAT), "properties": {"street": "Wulin"}}]},
     r"features.0.properties.grid_id: Field required$"),  # found by review: pydantic's own repr, with a web link
])
def test_grids_that_would_route_nothing_are_refused_with_the_reason(tmp_path, grids, message):
    """Found by review: a single Feature or a list loaded as no grids (or crashed unnamed), grids in [lat, lon]
    loaded and matched no point on Earth, and a misspelt `streetchief` left the grid without its chief: every case
    of them went to the fallback unit, silently."""
    (tmp_path / "grids.geojson").write_text(json.dumps(grids))
    (tmp_path / "dispatch.yaml").write_text("grids: grids.geojson\nunits: {a: {name: A}}\nfallback_unit: a\n")
    with pytest.raises(ConfigError, match=message):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


def test_a_street_office_of_no_grid_is_named(tmp_path):
    (tmp_path / "grids.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        _grid_feature(LON_LAT, OBJECTID=7, community_id="c9", NAME="x", name="x", street_chief_phone="1")]}))  # a GIS
    # tool's own attributes are fine, however close to ours
    (tmp_path / "dispatch.yaml").write_text("grids: grids.geojson\nunits: {a: {name: A}}\nfallback_unit: a\n"
                                            "escalation: {street_offices: {Wulln: {name: Zhao}}}\n")
    with pytest.raises(ConfigError, match="escalation.street_offices: 'Wulln' is the street of no grid"):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


OFFICE = Shift(name="office", start="09:00", end="18:00", days=["mon", "tue", "wed", "thu", "fri"],
               staff={"name": "Office"}, keeps_calendar=True)
CREW = Shift(name="crew", start="09:00", end="18:00", days=["mon", "tue", "wed", "thu", "fri"], staff={"name": "Crew"})


@pytest.mark.parametrize(
    ("moment", "office", "crew"),
    [
        ("2026-09-30 10:00", "Office", "Crew"),  # an ordinary Wednesday
        ("2026-10-01 10:00", None, "Crew"),  # National Day, a Thursday: the office is closed, the crew works its days
        ("2026-10-10 10:00", "Office", None),  # a Saturday worked in place of a holiday (调休): the office is open
        ("2026-10-11 10:00", None, None),  # an ordinary Sunday
    ],
)
def test_shifts_that_keep_the_city_calendar_are_off_on_holidays_and_on_on_make_up_days(moment, office, crew):
    at = datetime.fromisoformat(moment).replace(tzinfo=CST)
    for shift, expected in ((OFFICE, office), (CREW, crew)):
        person = on_duty([shift], at, ZoneInfo("Asia/Shanghai"), NATIONAL_DAY)
        assert (person.name if person else None) == expected


def test_a_case_filed_before_a_week_of_holidays_goes_to_the_office_shift_after_them():
    eve = datetime(2026, 9, 30, 19, 0, tzinfo=CST)  # the office shift has ended; Golden Week starts tomorrow
    evening = Shift(name="evening", start="18:00", end="20:00", days=["mon", "tue", "wed", "thu", "fri"],
                    staff={"name": "Evening"}, keeps_calendar=True)
    on_the_eve = taking_over([OFFICE, evening], eve, ZoneInfo("Asia/Shanghai"), NATIONAL_DAY)
    assert on_the_eve.name == "Evening"
    later = eve.replace(hour=21)
    # the next office day is Thursday 8 October: not 1 October, a holiday, whatever its weekday
    assert taking_over([evening, OFFICE], later, ZoneInfo("Asia/Shanghai"), NATIONAL_DAY).name == "Office"
    assert taking_over([evening, OFFICE], later, ZoneInfo("Asia/Shanghai"), None).name == "Office"


def test_the_dispatcher_names_the_person_on_duty_by_the_city_calendar(tmp_path):
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    office = ('- {name: office, start: "09:00", end: "18:00", days: [mon, tue, wed, thu, fri], keeps_calendar: true, '
              'staff: {name: Office}}\n      ')
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(
        'working_hours: {start: "07:00", end: "23:00"}',
        'working_hours: {start: "07:00", end: "23:00", holidays: [2026-10-01]}').replace(
        '- {name: day, start: "05:00"', office + '- {name: day, start: "05:00"'))
    dispatcher = Dispatcher.from_file(tmp_path / "dispatch.yaml")
    place = Location(lat=30.274, lon=120.165)  # a sanitation grid
    for moment, person in ((datetime(2026, 9, 30, 10, 0, tzinfo=CST), "Office"),  # listed first, on duty
                           (datetime(2026, 10, 1, 10, 0, tzinfo=CST), "吴芳 Wu Fang")):  # a holiday: the crew's
        assignment, _ = dispatcher.assign(Category.LITTER, place, moment)
        assert assignment.on_duty.name == person


def test_grids_drawn_over_each_other_are_named_and_the_first_in_the_file_takes_the_case(tmp_path, caplog):
    """Found by review: a case where two grids overlapped went to whichever came first in the file, with nothing
    said when the grids were loaded; grids that only share a border are as a city draws them, and are not named."""
    east = [[lon + 0.005, lat] for lon, lat in LON_LAT]  # half over G1
    beside = [[lon + 0.015, lat] for lon, lat in LON_LAT]  # shares G2's east border
    (tmp_path / "grids.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        _grid_feature(LON_LAT), _grid_feature(east, grid_id="G2"), _grid_feature(beside, grid_id="G3")]}))
    with caplog.at_level(logging.WARNING, logger="server.services.dispatch"):
        grids = load_grids(tmp_path / "grids.geojson")
    [warning] = [record.getMessage() for record in caplog.records]
    assert "grids G1 and G2 overlap (50 % of the smaller)" in warning and "goes to G1" in warning
    both = Dispatcher(None, grids).grid_at(Location(lat=30.275, lon=120.158))
    assert both is not None and both.properties.grid_id == "G1"


def test_working_hours_written_without_quotes_are_the_hours_they_say(tmp_path):
    """Found by review: YAML 1.1 reads 23:00 unquoted as the number 1380 (base 60), a time of 00:23 UTC."""
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(
        'working_hours: {start: "07:00", end: "23:00"}', "working_hours: {start: 07:00, end: 23:00}"))
    hours = Dispatcher.from_file(tmp_path / "dispatch.yaml").config.working_hours
    assert (hours.start, hours.end) == (time(7, 0), time(23, 0))


@pytest.mark.parametrize(("replace", "by", "key"), [
    ("deadline_minutes: 30,", "deadline_minutes: .inf,", "categories.illegal_parking.deadline_minutes"),
    ("deadline_minutes: 30,", "deadline_minutes: 1e10,", "categories.illegal_parking.deadline_minutes"),
    ("fallback_deadline_minutes: 240", "fallback_deadline_minutes: .inf", "fallback_deadline_minutes"),
    ("fallback_deadline_minutes: 240", "fallback_deadline_minutes: 1e10", "fallback_deadline_minutes"),
    ("district_after_minutes: 120", "district_after_minutes: .inf", "escalation.district_after_minutes"),
    ("district_after_minutes: 120", "district_after_minutes: .nan", "escalation.district_after_minutes"),
    ("district_after_minutes: 120", "district_after_minutes: 527041", "escalation.district_after_minutes"),
    ("repeat_window_minutes: 30", "repeat_window_minutes: .inf", "repeat_window_minutes"),
])
def test_times_that_are_not_a_number_or_past_a_year_are_refused_with_their_key(tmp_path, replace, by, key):
    """Found by review: `district_after_minutes: .inf` loaded, and every sweep then raised OverflowError, rolled
    back, and escalated no case at all; `deadline_minutes: .inf` (or 1e10, past the year 9999) dead-lettered every
    detection of its category."""
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(replace, by))
    with pytest.raises(ConfigError, match=rf"{key}: "):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


def test_a_deadline_of_a_year_of_working_minutes_is_placed_in_the_working_hours(tmp_path):
    """The longest deadline the configuration takes, a year of minutes, in working hours of 16 a day runs past 400
    calendar days: placed there, not given up as if the hours never opened."""
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(
        "deadline_minutes: 240, auto_file_score: 0.6", "deadline_minutes: 527040, auto_file_score: 0.6"))
    dispatcher = Dispatcher.from_file(tmp_path / "dispatch.yaml")
    _, deadline = dispatcher.assign(Category.LITTER, Location(lat=30.274, lon=120.165), MONDAY_10)
    assert dispatcher.time_left(MONDAY_10, deadline) == timedelta(days=366)


@pytest.mark.parametrize(("replace", "by", "key", "lines"), [
    ("  command-centre:", '  enforcement: {name: "城管执法"}\n  command-centre:', "enforcement",
     (13, 26)),
    ("  device_fault:", "  litter: {unit: enforcement, deadline_minutes: 60}\n  device_fault:", "litter", (32, 33)),
])
def test_a_key_written_twice_is_refused_with_both_its_lines(tmp_path, replace, by, key, lines):
    """Found by review: YAML's loader kept the last of two equal keys, silently: a second `enforcement:` block
    replaced the first and its roster was gone, a second `litter:` sent litter to another unit."""
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(replace, by, 1))
    first, second = lines
    with pytest.raises(ConfigError, match=rf"'{key}' .*line {first}\b.*line {second}\b"):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


def test_two_grids_of_one_grid_id_are_refused_naming_both(tmp_path):
    """Found by review: two grids with one grid_id loaded, and the cases of both were counted as one grid's in the
    assessment, the case lists and the public board."""
    east = [[lon + 0.02, lat] for lon, lat in LON_LAT]
    (tmp_path / "grids.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        _grid_feature(LON_LAT), _grid_feature(east, grid_id="G2"), _grid_feature(east, grid_id="G1")]}))
    with pytest.raises(ConfigError, match=r"features.0.properties.grid_id and features.2.properties.grid_id: "
                                          r"both 'G1'"):
        load_grids(tmp_path / "grids.geojson")


def test_a_grid_of_a_street_without_an_office_head_is_named(tmp_path):
    """Found by review: only the street offices were checked against the grids' streets, not the grids against the
    offices, so a grid whose `street` was misspelt loaded, and its overdue cases were escalated to no one."""
    (tmp_path / "grids.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        _grid_feature(LON_LAT), _grid_feature([[lon + 0.02, lat] for lon, lat in LON_LAT], grid_id="G2",
                                              street="Wulln")]}))
    (tmp_path / "dispatch.yaml").write_text("grids: grids.geojson\nunits: {a: {name: A}}\nfallback_unit: a\n"
                                            "escalation: {street_offices: {Wulin: {name: Zhao}}}\n")
    with pytest.raises(ConfigError, match=r"features.1.properties.street: 'Wulln' \(grid G2\) has no head in "
                                          r"escalation.street_offices \(there: 'Wulin'\)"):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


def test_shifts_of_one_unit_that_overlap_are_named_and_the_first_listed_is_on_duty(tmp_path, caplog):
    """Found by review: two shifts of one unit that overlapped loaded without a word, and the first listed always
    had the cases of the hours they shared."""
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(
        '{name: day, start: "05:00", end: "17:00"', '{name: day, start: "05:00", end: "18:00", days: [mon, tue]'))
    with caplog.at_level(logging.WARNING, logger="server.services.dispatch"):
        dispatcher = Dispatcher.from_file(tmp_path / "dispatch.yaml")
    [warning] = [record.getMessage() for record in caplog.records]
    assert ("units.sanitation.shifts: 0 (day) and 1 (night) overlap 17:00-18:00 on mon, tue; the first listed, "
            "day, is on duty then") in warning
    assignment, _ = dispatcher.assign(Category.LITTER, Location(lat=30.274, lon=120.165), MONDAY_10.replace(hour=17))
    assert assignment.on_duty.name == "吴芳 Wu Fang"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="server.services.dispatch"):
        Dispatcher.from_file(DEMO)  # shifts that meet end to start (12:20) or round midnight do not overlap
    assert not caplog.records


def test_a_shift_keeping_the_city_calendar_without_one_is_refused(tmp_path):
    """Found by review: `keeps_calendar: true` with `working_hours: null` loaded, and did nothing: there is no
    calendar of holidays and make-up days to keep."""
    (tmp_path / "grids.geojson").write_text((DEMO.parent / "grids.geojson").read_text())
    (tmp_path / "dispatch.yaml").write_text(DEMO.read_text().replace(
        'working_hours: {start: "07:00", end: "23:00"}', "working_hours: null").replace(
        '{name: night, start: "17:00"', '{name: night, keeps_calendar: true, start: "17:00"'))
    with pytest.raises(ConfigError, match=r"units.sanitation.shifts.1.keeps_calendar: true needs working_hours"):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")
