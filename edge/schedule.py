"""When a zone's rule applies: windows of weekdays and times of day, in the node's time zone.

"07:00-19:00 on weekdays" is `{days: [mon, tue, wed, thu, fri], start: "07:00", end: "19:00"}`; a window whose end is
before its start runs overnight ("22:00"-"06:00" belongs to the day it starts on). No windows: always active.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridwatch.config_files import LocalTime

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimeWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1,
                                description="Days the window starts on (mon ... sun); default every day.")
    start: LocalTime = Field(description="Start, local time, e.g. 07:00.")
    end: LocalTime = Field(description="End, local time; before `start` for a window that runs overnight.")

    @field_validator("end")
    @classmethod
    def _not_empty(cls, end: time, info) -> time:  # noqa: ANN001 - pydantic's ValidationInfo
        if info.data.get("start") == end:
            raise ValueError("start and end are equal; omit the schedule for a rule that always applies")
        return end

    def contains(self, moment: datetime) -> bool:
        clock = moment.timetz().replace(tzinfo=None)
        if self.start < self.end:
            return WEEKDAYS[moment.weekday()] in self.days and self.start <= clock < self.end
        if clock >= self.start:  # overnight window, evening part: the day it started
            return WEEKDAYS[moment.weekday()] in self.days
        if clock < self.end:  # overnight window, morning part: it started yesterday
            return WEEKDAYS[(moment - timedelta(days=1)).weekday()] in self.days
        return False


class Schedule:
    """A zone's windows in one time zone; `active(timestamp)` takes seconds since the epoch."""

    def __init__(self, windows: list[TimeWindow], timezone: ZoneInfo | None) -> None:
        self.windows = windows
        self.timezone = timezone

    def active(self, timestamp: float) -> bool:
        if not self.windows:
            return True
        moment = datetime.fromtimestamp(timestamp, self.timezone) if self.timezone else \
            datetime.fromtimestamp(timestamp).astimezone()
        return any(window.contains(moment) for window in self.windows)


def local_time(timestamp: float, timezone: ZoneInfo | None) -> datetime:
    """`timestamp` in the node's time zone (the system's when none is set), as events carry it."""
    return datetime.fromtimestamp(timestamp, timezone) if timezone else datetime.fromtimestamp(timestamp).astimezone()
