"""When an overdue case is escalated, and who is told: at its deadline the street office of its grid, then, still
overdue `district_after_minutes` later on the category's clock, the district. One level a sweep, so the street office
is told before the district, also of a case first seen late. A case with no street office to tell (outside every
grid, or the dispatch rules name no office for its street) goes to the district at its deadline.

A pure function of the case, the dispatch rules and the time passed in: the sweep (server/services/cases.py) takes
the step it gives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gridwatch.contract import Category
from server.models import CaseRecord
from server.services.dispatch import Dispatcher


@dataclass(frozen=True)
class Escalation:
    level: int
    reason: str


def escalation_due(dispatcher: Dispatcher, case: CaseRecord, now: datetime) -> Escalation | None:
    """The escalation `case`, overdue at `now`, is due, if any. Raises what a case of a category this worker does not
    know, or a deadline that cannot be placed, raises: the sweep leaves that case and goes on."""
    config = dispatcher.config
    later = timedelta(minutes=config.escalation.district_after_minutes if config else 120)
    # the district's wait runs on the category's clock, as the deadline did (no unit works at night)
    clock = dispatcher.clock_of(Category(case.category))
    working = clock == "working" and config is not None
    try:
        district_at = dispatcher.deadline(case.deadline_at, later, clock)
        late = dispatcher.time_left(case.deadline_at, now, clock)  # on the clock the deadline ran on
    except (ValueError, OverflowError):  # past the calendar's end: the calendar clock's
        district_at, late = case.deadline_at + later, now - case.deadline_at
    level = min(case.escalation_level + 1, 2 if district_at <= now else 1)
    if level <= case.escalation_level:
        return None
    contact, why = dispatcher.escalation_contact(level, case.street), ""
    if contact is None and level == 1 and (district := dispatcher.escalation_contact(2, None)) is not None:
        # no street office to tell: the district now, not after its wait with no one told
        level, contact = 2, district
        why = f" (no street office to tell: {_no_office(case)})"
    to = ("district" if level == 2 else f"street office {case.street or '(no grid)'}") + (
        f": {contact.name} {contact.phone or ''}".rstrip() if contact else "")
    return Escalation(level, f"overdue by {late.total_seconds() / 60:.0f} {'working ' if working else ''}min; "
                             f"escalated to {to}{why}")


def _no_office(case: CaseRecord) -> str:
    if case.grid_id is None:
        return "outside every grid"
    if case.street is None:
        return f"grid {case.grid_id} names no street"
    return f"no head of {case.street} in escalation.street_offices"
