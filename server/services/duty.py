"""Time as the city counts it: deadlines in working hours, and who is on duty in a unit's shifts.

Pure functions of the time passed in (always time-zone aware), so a test can walk a week of shifts in a millisecond.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import combinations
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridwatch.config_files import LocalTime
from gridwatch.contract import Person

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAYS_AHEAD = 21
"""Days ahead `taking_over` looks for the next shift: a week, and the longest run of holidays after it."""
CLOSED_DAYS = 400
"""Days in a row without working hours after which hours are taken as never open: a configuration mistake, not a
loop for ever. Counted from the last open day, not from the start: a year of working minutes in hours of 16 a day
takes 549 days."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_days(days: list[str]) -> list[str]:
    if not days:  # hours that never open: every deadline on them would fail at dispatch, not here
        raise ValueError(f"give at least one day ({', '.join(WEEKDAYS)})")
    unknown = [day for day in days if day not in WEEKDAYS]
    if unknown:
        raise ValueError(f"unknown day(s) {unknown}; use {', '.join(WEEKDAYS)}")
    return days


class TimeWindow(_Config):
    start: LocalTime = Field(description="Local time it starts, e.g. 07:00.")
    end: LocalTime = Field(description="Local time it ends; before `start` means it runs past midnight.")
    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS), description="Days it starts on: mon … sun.")

    _days = field_validator("days")(_check_days)

    def spans(self, day: datetime) -> list[tuple[datetime, datetime]]:
        """The window's spans that start on `day`'s date (local), as aware datetimes."""
        if WEEKDAYS[day.weekday()] not in self.days:
            return []
        return self._span(day)

    def _span(self, day: datetime) -> list[tuple[datetime, datetime]]:
        start = datetime.combine(day.date(), self.start, day.tzinfo)
        end = datetime.combine(day.date(), self.end, day.tzinfo)
        if end <= start:
            end += timedelta(days=1)
        return [(start, end)]


class WorkingHours(TimeWindow):
    """The hours a unit's deadlines run, with the city's calendar: public holidays, and the weekend days worked in
    their place (调休, make-up working days)."""

    holidays: list[date] = Field(default_factory=list, description="Dates without working hours whatever their "
                                                                   "weekday, e.g. [2026-10-01, 2026-10-02].")
    make_up_days: list[date] = Field(default_factory=list, description="Dates worked whatever their weekday (调休), "
                                                                       "e.g. [2026-10-10].")

    @model_validator(mode="after")
    def _one_or_the_other(self) -> WorkingHours:
        both = sorted(set(self.holidays) & set(self.make_up_days))
        if both:
            raise ValueError(f"{', '.join(map(str, both))}: both a holiday and a make-up day")
        return self

    def spans(self, day: datetime) -> list[tuple[datetime, datetime]]:
        return self.kept(self, day)

    def kept(self, window: TimeWindow, day: datetime) -> list[tuple[datetime, datetime]]:
        """`window`'s spans starting on `day` as this calendar keeps them: none on a holiday, on a make-up day
        whatever the weekday, else by the window's days."""
        if day.date() in self.holidays:
            return []
        return window._span(day) if day.date() in self.make_up_days else TimeWindow.spans(window, day)


class Shift(TimeWindow):
    name: str = Field(description="e.g. early, day, late.")
    staff: Person = Field(description="Who is on duty (name and phone), named in the assignment.")
    keeps_calendar: bool = Field(default=False, description=(
        "true: the shift keeps the city's calendar (`working_hours.holidays` and `make_up_days`), as office staff "
        "do: off on holidays, on on make-up days whatever its `days` (it needs `working_hours`); false: its `days` "
        "alone, as street crews."))

    def on(self, day: datetime, calendar: WorkingHours | None) -> list[tuple[datetime, datetime]]:
        """The shift's spans starting on `day`, with the city's `calendar` where the shift keeps it."""
        return calendar.kept(self, day) if self.keeps_calendar and calendar is not None else self.spans(day)

    def covers(self, moment: datetime, calendar: WorkingHours | None) -> bool:
        """Whether `moment` (local) is in one of the shift's spans, one that began the day before included.
        Compared in UTC: Python compares times of one zone on the wall clock, so in the hour repeated as
        daylight-saving time ends a shift that had ended was on duty again."""
        instant = moment.astimezone(UTC)
        return any(start <= instant < end for offset in (-1, 0)
                   for start, end in _in_utc(self.on(moment + timedelta(days=offset), calendar)))


def add_working_time(start: datetime, allowed: timedelta, hours: TimeWindow | None, zone: ZoneInfo) -> datetime:
    """The moment `allowed` of working time after `start`: the clock stops outside `hours` (None: it never stops),
    and on its holidays. A case filed at 22:50 with 30 minutes and working hours 07:00–23:00 is due at 07:20 next
    day."""
    if hours is None:
        return start + allowed
    local, moment = start.astimezone(zone), start.astimezone(UTC)
    left = allowed
    day = local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    closed = 0
    while closed < CLOSED_DAYS:
        spans = _in_utc(hours.spans(day))
        closed = 0 if spans else closed + 1
        for span_start, span_end in spans:
            begin = max(span_start, moment)
            if begin >= span_end:
                continue
            if begin + left <= span_end:
                return (begin + left).astimezone(start.tzinfo)
            left -= span_end - begin
        day += timedelta(days=1)
    raise ValueError("working hours never open: check `working_hours.days`")


def working_time_before(end: datetime, span: timedelta, hours: TimeWindow | None, zone: ZoneInfo) -> datetime:
    """The moment `span` of working time before `end`, the mirror of `add_working_time`: a case 15 working minutes
    overdue at 22:45 with working hours 07:00–23:00, resumed at 07:05, is due at 06:50 (15 minutes overdue still)."""
    if hours is None or span <= timedelta(0):
        return end - span
    local, moment = end.astimezone(zone), end.astimezone(UTC)
    left = span
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    closed = 0
    while closed < CLOSED_DAYS:
        spans = _in_utc(hours.spans(day))
        closed = 0 if spans else closed + 1
        for span_start, span_end in reversed(spans):
            finish = min(span_end, moment)
            if finish <= span_start:
                continue
            if finish - left >= span_start:
                return (finish - left).astimezone(end.tzinfo)
            left -= finish - span_start
        day -= timedelta(days=1)
    raise ValueError("working hours never open: check `working_hours.days`")


def working_time_between(start: datetime, end: datetime, hours: TimeWindow | None, zone: ZoneInfo) -> timedelta:
    """The working time from `start` to `end` (none if `end` is not later): the part of it inside `hours`."""
    if end <= start:
        return timedelta(0)
    if hours is None:
        return end - start
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    day = local_start.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    total = timedelta(0)
    while day <= local_end:
        for span_start, span_end in _in_utc(hours.spans(day)):
            overlap = min(span_end, end.astimezone(UTC)) - max(span_start, start.astimezone(UTC))
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


def _in_utc(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Local spans in UTC, for arithmetic: Python adds and subtracts datetimes of one time zone on the wall clock,
    so across a change of daylight-saving time a span's length and a deadline were an hour out."""
    return [(start.astimezone(UTC), end.astimezone(UTC)) for start, end in spans]


def overlaps(shifts: list[Shift]) -> list[tuple[int, int, str]]:
    """Where two shifts of a roster are on at once in a week, by their `days` (a holiday or make-up day aside):
    (0, 1, "17:00-18:00 on mon, tue") for the first two. The first listed is on duty then, which the city may not
    have meant; shifts that meet, one ending as the next starts, do not overlap."""
    monday = datetime(2024, 1, 1)  # any Monday: on the wall clock, as rosters are written
    week = [[span for offset in range(-1, 7) for span in shift.spans(monday + timedelta(days=offset))]
            for shift in shifts]
    found = []
    for first, second in combinations(range(len(shifts)), 2):
        shared: dict[str, set[int]] = {}
        for (first_start, first_end), (second_start, second_end) in (
                (a, b) for a in week[first] for b in week[second]):
            start, end = max(first_start, second_start), min(first_end, second_end)
            if start < end and monday <= start < monday + timedelta(days=7):  # each once a week
                shared.setdefault(f"{start:%H:%M}-{end:%H:%M}", set()).add(start.weekday())
        found += [(first, second, f"{hours} on {', '.join(WEEKDAYS[day] for day in sorted(days))}")
                  for hours, days in shared.items()]
    return found


def on_duty(shifts: list[Shift], moment: datetime, zone: ZoneInfo,
            calendar: WorkingHours | None = None) -> Person | None:
    """The person whose shift covers `moment`; the first listed wins where shifts overlap. `calendar` holds the
    city's holidays and make-up days, for the shifts that keep them."""
    local = moment.astimezone(zone)
    return next((shift.staff for shift in shifts if shift.covers(local, calendar)), None)


def taking_over(shifts: list[Shift], moment: datetime, zone: ZoneInfo,
                calendar: WorkingHours | None = None) -> Person | None:
    """Who has a case that comes in at `moment`: the person on duty, or outside every shift the person of the next
    one to start, who finds it waiting (a stall at 23:30 goes to the 07:00 shift, not to nobody; a case filed on
    the eve of a week of holidays, to the office shift after them)."""
    if (now := on_duty(shifts, moment, zone, calendar)) is not None or not shifts:
        return now
    local = moment.astimezone(zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    instant = moment.astimezone(UTC)
    starts = [(start, shift.staff) for offset in range(HOLIDAYS_AHEAD) for shift in shifts
              for start, _end in _in_utc(shift.on(day + timedelta(days=offset), calendar)) if start > instant]
    return min(starts, key=lambda start_staff: start_staff[0])[1] if starts else None
