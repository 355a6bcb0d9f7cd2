"""Assessment (考核): how each street chief, unit, grid and camera did, by day, week, month, quarter or year.

Cases are counted in the period they were opened (a cohort), so a month's figures stop moving once its cases are
finished. A case may pass through several units' hands (returned, reassigned, closed and reopened): each turn that
ended before the case did (`CaseRound`) is credited to the group that had it (for `unit`, the turn's unit; for the
other groupings, the case's own group), in the case's period; so no unit clears its record by handing a late case
on, and a reopen does not take back the closure of the turn before. A case's turns are gathered by group first and
the case then counts once in each group's figures, however many of its turns the group had:

- one of the group's cases (and dispatched to it, if it was) when it had a turn it did not give back (回退),
  nor have reassigned, before the turn's deadline: a unit that returns a wrongly routed case in time is not charged
  with it (it counts in `returned`, the cases the group gave back, in time or not), nor one the command centre
  reassigned in time (not in `returned` either); one returned or reassigned late is one of its cases, due and
  late. For a street chief, grid or camera a case dispatched and not void is one of its cases whoever has it; one
  still waiting for an operator is a detection (in `detections` and the false-positive rate), not a case.
- closed when any of its turns closed the case; due when any was (closed, or held past its deadline); on time when
  every one of its turns that was due was on time: one late turn makes the case late for the group
- reworked / extended when any of its turns was

The formulas are the city's:

- closure rate = closed ÷ cases (void ones not counted as cases)
- on-time closure rate = closed on time ÷ (cases due − deferred cases); a case is due once it is closed or its
  deadline has passed, on time when the unit's feedback came before the (extended) deadline. Deferred cases are
  those deferred (缓办) now and due by that turn alone; one deferred and resumed counts like any other, against the
  deadline the resume moved on by the time it stood still. A case whose unit reported back in time is not due
  while the command centre has yet to verify it: the wait is not the unit's.
- rework rate, extension rate = cases reworked / extended at least once ÷ cases dispatched
- mean response = dispatch → accepted; mean handling = accepted → feedback (minutes, each turn's; time deferred left
  out of both)
- false-positive rate = cases voided as false positives ÷ all detections (void ones included). A case voided after
  one of its turns closed it (a reopen then voided) is not a false positive: the detection that led to the closure
  was right; the void concerns the reopen. A void case is not a case, but its earlier turns count as above, and so
  does the turn that returned it when it is voided straight from `returned` (a late return stays a late case).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridwatch.contract import CaseAction, CaseStatus
from server.models import CaseRecord, CaseRound
from server.services.case_records import answered_in_time


class GroupBy(StrEnum):
    STREET_CHIEF = "street_chief"
    UNIT = "unit"
    GRID = "grid"
    CAMERA = "camera"


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


def period_start(day: date, period: Period) -> date:
    if period is Period.DAY:
        return day
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    if period is Period.YEAR:
        return day.replace(month=1, day=1)
    return day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)


def period_label(start: date, period: Period) -> str:
    if period is Period.DAY:
        return start.isoformat()
    if period is Period.WEEK:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if period is Period.MONTH:
        return f"{start.year}-{start.month:02d}"
    if period is Period.YEAR:
        return str(start.year)
    return f"{start.year}-Q{(start.month - 1) // 3 + 1}"


def next_period(start: date, period: Period) -> date:
    if period is Period.DAY:
        return start + timedelta(days=1)
    if period is Period.WEEK:
        return start + timedelta(days=7)
    if period is Period.YEAR:
        return date(start.year + 1, 1, 1)
    months = 1 if period is Period.MONTH else 3
    month = start.month - 1 + months
    return date(start.year + month // 12, month % 12 + 1, 1)


class Indicators(BaseModel):
    """One group's assessment in one period (the formulas: this module's docstring)."""

    group: str
    period: str
    cases: int = 0
    closed: int = 0
    due: int = 0
    deferred: int = 0
    on_time: int = 0
    dispatched: int = 0
    reworked: int = 0
    extended: int = 0
    returned: int = 0
    detections: int = 0
    false_positives: int = 0
    closure_rate: float | None = None
    on_time_closure_rate: float | None = None
    rework_rate: float | None = None
    extension_rate: float | None = None
    false_positive_rate: float | None = None
    mean_response_minutes: float | None = None
    mean_handling_minutes: float | None = None
    rank: int | None = None
    """The group's place in its period (the quarterly ranking): by on-time closure rate, then closure rate, the
    best first, taken exactly (not as rounded here), equal figures sharing a place (1, 2, 2, 4); none for a group
    with nothing due yet, or without an owner (`(none)`)."""

    def finish(self, response: list[float], handling: list[float]) -> Indicators:
        def ratio(part: int, whole: int) -> float | None:
            return round(part / whole, 4) if whole > 0 else None

        self.closure_rate = ratio(self.closed, self.cases)
        self.on_time_closure_rate = ratio(self.on_time, self.due - self.deferred)
        self.rework_rate = ratio(self.reworked, self.dispatched)
        self.extension_rate = ratio(self.extended, self.dispatched)
        self.false_positive_rate = ratio(self.false_positives, self.detections)
        self.mean_response_minutes = round(sum(response) / len(response), 2) if response else None
        self.mean_handling_minutes = round(sum(handling) / len(handling), 2) if handling else None
        return self


def group_of(case: CaseRecord, by: GroupBy) -> str | None:
    if by is GroupBy.STREET_CHIEF:  # two chiefs of one name (王伟) are two people: their phones tell them apart
        phone = case.street_chief_phone
        return f"{case.street_chief_name} ({phone})" if phone and case.street_chief_name else case.street_chief_name
    if by is GroupBy.UNIT:
        return case.unit_id
    if by is GroupBy.GRID:
        return case.grid_id
    return f"{case.node_id}/{case.camera_id}" if case.node_id is not None else None  # a citizen's report: no camera


def assess(cases: Iterable[CaseRecord], by: GroupBy, period: Period, zone: ZoneInfo, now: datetime,
           rounds: Mapping[int, list[CaseRound]] | None = None) -> list[Indicators]:
    """The indicators of every (group, period) the cases fall in, sorted by period then group. Cases without a
    group (e.g. no grid, for `grid`) are counted under `(none)`. `rounds`: by case id, the units' earlier turns."""
    rows: dict[tuple[str, str], Indicators] = {}
    durations: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for case in cases:
        label = period_label(period_start(case.opened_at.astimezone(zone).date(), period), period)
        key = (label, group_of(case, by) or "(none)")
        row = rows.setdefault(key, Indicators(group=key[1], period=label))
        turns = (rounds or {}).get(case.id, [])
        void = case.status == CaseStatus.VOID.value
        row.detections += 1
        # voided after a closure (a reopen then voided): the void is about the reopen, the detection was right
        row.false_positives += void and case.void_reason == "false_positive" and not any(t.closed for t in turns)
        shares: dict[tuple[str, str], Share] = defaultdict(Share)
        for earlier in turns:
            turn_key = (label, (earlier.unit_id if by is GroupBy.UNIT else key[1]) or "(none)")
            shares[turn_key].take(_earlier_turn(earlier))
            _times(earlier, *durations[turn_key])
        if not void or case.returned_at is not None:  # voided from `returned`: the turn that gave it back counts
            shares[key].take(_own_turn(case, turns, by, now))
            _times(case, *durations[key])
        for turn_key, share in shares.items():
            share.add_to(rows.setdefault(turn_key, Indicators(group=turn_key[1], period=label)))
    return _ranked([rows[key].finish(*durations[key]) for key in sorted(rows)])


def _ranked(rows: list[Indicators]) -> list[Indicators]:
    """`rank` filled in, within each period, on the exact rates (the counts' fractions), not the rounded ones: 25,995
    on time of 26,000 and 24,996 of 25,000 both read 0.9998, and the second did better."""
    def merit(row: Indicators) -> tuple[Fraction, Fraction]:
        return (Fraction(row.on_time, row.due - row.deferred), Fraction(row.closed, row.cases or 1))

    by_period: dict[str, list[Indicators]] = defaultdict(list)
    for row in rows:
        if row.on_time_closure_rate is not None and row.group != "(none)":
            by_period[row.period].append(row)
    for ranked in by_period.values():
        ranked.sort(key=merit, reverse=True)
        for place, row in enumerate(ranked, start=1):
            row.rank = place if place == 1 or merit(row) != merit(ranked[place - 2]) else ranked[place - 2].rank
    return rows


class Turn(NamedTuple):
    """One unit's turn at a case, as assessment judges it."""

    held: bool
    """One of the group's cases: not given back (回退) nor reassigned before its deadline (for a street chief, grid or
    camera, the case in hand is once dispatched)."""
    returned: bool
    dispatched: bool
    reworked: bool
    extended: bool
    closed: bool
    due: bool
    on_time: bool
    deferred: bool = False
    """Deferred (缓办) now: only the case's own turn can be."""


@dataclass
class Share:
    """One case's part in one group's figures: the group's turns at it gathered, so that the case counts once
    (found by review: a case closed on time, reopened and closed again read due 2, on time 2 for its one case)."""

    held: bool = False
    returned: bool = False
    dispatched: bool = False
    reworked: bool = False
    extended: bool = False
    closed: bool = False
    judged: bool = False
    """A turn was due and is not deferred now."""
    late: bool = False
    """One of those was not closed on time."""
    deferred: bool = False
    """A turn was due and is deferred now."""

    def take(self, turn: Turn) -> None:
        self.returned |= turn.returned
        if not turn.held:  # given back in time: neither one of the group's cases nor due
            return
        self.held = True
        self.dispatched |= turn.dispatched
        self.reworked |= turn.reworked
        self.extended |= turn.extended
        self.closed |= turn.closed
        if turn.due and turn.deferred:
            self.deferred = True
        elif turn.due:
            self.judged = True
            self.late |= not turn.on_time

    def add_to(self, row: Indicators) -> None:
        row.cases += self.held
        row.returned += self.returned
        row.dispatched += self.dispatched
        row.reworked += self.reworked
        row.extended += self.extended
        row.closed += self.closed
        row.due += self.judged or self.deferred
        row.deferred += self.deferred and not self.judged  # out of the rate only if nothing else made it due
        row.on_time += self.judged and not self.late


def _earlier_turn(turn: CaseRound) -> Turn:
    """A turn that ended before the case did: due if it closed the case or was held past its deadline (late,
    whoever has the case now). One the unit returned, or the command centre took away (reassigned), before its
    deadline was not the unit's."""
    past = turn.deadline_at is not None and turn.deadline_at <= turn.ended_at
    returned = turn.ended_by == CaseAction.DISPATCH.value  # a dispatch ends only a returned case's turn
    taken_away = turn.ended_by == CaseAction.REASSIGN.value
    return Turn(held=past or not (returned or taken_away), returned=returned, dispatched=True,
                reworked=turn.reworked > 0, extended=turn.extended > 0, closed=turn.closed, due=turn.closed or past,
                on_time=bool(turn.closed and turn.on_time))


def _own_turn(case: CaseRecord, turns: list[CaseRound], by: GroupBy, now: datetime) -> Turn:
    """The turn in hand (the case's own columns): for a case its unit returned, the turn ended when it gave it back
    (it is with the command centre since, or was voided there: then, like an earlier turn, it is the group's case
    only if given back late)."""
    closed = case.status == CaseStatus.CLOSED.value
    dispatched = case.dispatched_at is not None
    void = case.status == CaseStatus.VOID.value
    returned = case.status in RETURNED_OR_VOID and case.returned_at is not None
    past = case.deadline_at is not None and case.deadline_at <= (case.returned_at if returned else now)
    # for a street chief, grid or camera, a case is theirs once dispatched (it lies in their grid, before their
    # camera, from the start, but one waiting for an operator, or voided before dispatch, was never sent to anyone:
    # a detection, not a case of theirs)
    held = (past or not returned) if by is GroupBy.UNIT or void else dispatched
    return Turn(held=held, returned=returned, dispatched=dispatched,
                reworked=dispatched and case.rework_count - sum(turn.reworked for turn in turns) > 0,
                extended=dispatched and case.extension_count - sum(turn.extended for turn in turns) > 0,
                closed=closed, due=dispatched and (closed or (past and not _awaits_check(case))),
                on_time=bool(closed and case.on_time), deferred=case.status == CaseStatus.DEFERRED.value)


def _times(turn: CaseRecord | CaseRound, response: list[float], handling: list[float]) -> None:
    """A turn's response (dispatch → accepted) and handling (accepted → feedback) in minutes, less the time it
    stood deferred in each."""
    if turn.accepted_at and turn.dispatched_at:
        response.append(((turn.accepted_at - turn.dispatched_at).total_seconds()
                         - (turn.response_paused_seconds or 0)) / 60)
    if turn.feedback_at and turn.accepted_at:
        handling.append(((turn.feedback_at - turn.accepted_at).total_seconds()
                         - (turn.handling_paused_seconds or 0)) / 60)


def _awaits_check(case: CaseRecord) -> bool:
    """The unit reported back before its deadline and the command centre has not yet verified it."""
    return case.status in AWAITING_CHECK and answered_in_time(case)


AWAITING_CHECK = {CaseStatus.FEEDBACK.value, CaseStatus.VERIFIED.value}
RETURNED_OR_VOID = {CaseStatus.RETURNED.value, CaseStatus.VOID.value}
"""Where a case its unit returned may be: with the command centre, or voided there."""

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet takes a cell beginning with for a formula (OWASP's CSV injection)."""


def _cell(value: object) -> object:
    """A value as a spreadsheet shows it: text that would start a formula (a unit or chief named `=HYPERLINK(…)` in
    the city's files) is quoted with a leading apostrophe; numbers as they are."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value


ASSESSED = (CaseRecord.id, CaseRecord.opened_at, CaseRecord.status, CaseRecord.void_reason, CaseRecord.dispatched_at,
            CaseRecord.accepted_at, CaseRecord.feedback_at, CaseRecord.deadline_at, CaseRecord.on_time,
            CaseRecord.rework_count, CaseRecord.extension_count, CaseRecord.response_paused_seconds,
            CaseRecord.handling_paused_seconds, CaseRecord.street_chief_name,
            CaseRecord.street_chief_phone, CaseRecord.unit_id, CaseRecord.grid_id, CaseRecord.node_id,
            CaseRecord.camera_id, CaseRecord.returned_at)
"""What `assess` reads of a case: a quarter of a city's cases (300,000) as these columns, not as whole records with
their reports and descriptions."""


def load_rounds(session: Session, start: datetime, end: datetime) -> dict[int, list[CaseRound]]:
    """The earlier turns of the cases opened in [start, end), by case id, in order."""
    turns: dict[int, list[CaseRound]] = defaultdict(list)
    for turn in session.scalars(select(CaseRound).join(CaseRecord, CaseRecord.id == CaseRound.case_id).where(
            CaseRecord.opened_at >= start, CaseRecord.opened_at < end).order_by(CaseRound.id)):
        turns[turn.case_id].append(turn)
    return turns


def load_cases(session: Session, start: datetime, end: datetime) -> Iterable[CaseRecord]:
    """The cases opened in [start, end), as rows of the `ASSESSED` columns (read like records), streamed."""
    return session.execute(select(*ASSESSED).where(CaseRecord.opened_at >= start, CaseRecord.opened_at < end)
                           .execution_options(yield_per=2000))


def to_csv(rows: list[Indicators]) -> str:
    """With a byte-order mark first: spreadsheet programs then read the names (李晓梅) as UTF-8, not as mojibake."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.DictWriter(out, fieldnames=list(Indicators.model_fields))
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _cell(value) for name, value in row.model_dump().items()})
    return out.getvalue()
