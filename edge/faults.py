"""Device faults that come and go: a condition becomes a fault once it has lasted the hold time, and the fault ends
once the condition has been gone as long, so a single bad reading is never a case. Shared by camera health and
streetlights; clock-free (`now` comes in), so tests run hours in milliseconds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from edge.rules.violations import RuleEvent
from gridwatch.contract import Category, EventType

FULL_FRAME = (0.0, 0.0, 1.0, 1.0)


LONGEST_GAP = 600.0
"""Seconds between two looks past which (and past three holds, and two of the periods looks are taken at) what was
seen before says nothing of the time between: the clock stepped forward (NTP setting a board without a real-time
clock), or nothing looked. Timing starts again."""


def unwatched(last: float | None, now: float, hold: float, period: float = 0.0) -> bool:
    """Whether the time from `last` to `now` went unobserved: a step of the clock or a pause, not a condition held.
    `period`: how often looks are taken (a lamp read every 15 minutes is watched from one reading to the next)."""
    return last is not None and now - last > max(LONGEST_GAP, 3 * hold, 2 * period)


@dataclass
class _Fault:
    since: float | None = None      # when the condition was first seen in a row
    cleared_since: float | None = None
    violation_id: uuid.UUID | None = None
    started_at: float = 0.0
    looked_at: float | None = None  # the last look


@dataclass
class FaultTracker:
    category: Category
    zone_id: str
    """What the events name as their zone: `camera`, `lamp`."""
    _faults: dict[str, _Fault] = field(default_factory=dict)

    def track(self, kind: str, present: bool | None, now: float, hold: float, raised: str,
              cleared: str, period: float = 0.0) -> list[RuleEvent]:
        """`present`: the condition holds at `now`; None: it cannot be told now (a lamp's failure to light, by day),
        and nothing changes: a fault raised stays raised, not cleared by what cannot show it. `raised` and
        `cleared` are the events' reasons; `period`, how often the condition is looked at (`unwatched`)."""
        fault = self._faults.setdefault(kind, _Fault())
        # the clock stepped back (NTP): a time kept from before the step would hold the fault back for its length
        fault.since = min(fault.since, now) if fault.since is not None else None
        fault.cleared_since = min(fault.cleared_since, now) if fault.cleared_since is not None else None
        if unwatched(fault.looked_at, now, hold, period):  # stepped forward: a condition seen then is timed from now
            fault.since = now if fault.since is not None else None
            fault.cleared_since = now if fault.cleared_since is not None else None
        fault.looked_at = now
        if present is None:
            return []
        if present:
            fault.cleared_since = None
            fault.since = fault.since if fault.since is not None else now
            if fault.violation_id is None and now - fault.since >= hold:
                fault.violation_id, fault.started_at = uuid.uuid4(), fault.since
                return [self._event(EventType.NEW, kind, fault, now, f"{raised} for {now - fault.since:.0f} s")]
            return []
        fault.since = None
        if fault.violation_id is None:
            return []
        fault.cleared_since = fault.cleared_since if fault.cleared_since is not None else now
        if now - fault.cleared_since < hold:
            return []
        event = self._event(EventType.END, kind, fault, now, cleared)
        fault.violation_id, fault.cleared_since = None, None
        return [event]

    def track_timed(self, kind: str, present: bool, now: float, since: float, raised: str,
                    cleared: str) -> list[RuleEvent]:
        """For a condition the caller has already timed (silence: there is no reading to time it on): raised at
        once, dated back to `since`, and ended as soon as it is gone."""
        fault = self._faults.setdefault(kind, _Fault())
        if present and fault.violation_id is None:
            fault.violation_id, fault.started_at = uuid.uuid4(), since
            return [self._event(EventType.NEW, kind, fault, now, raised)]
        if not present and fault.violation_id is not None:
            event = self._event(EventType.END, kind, fault, now, cleared)
            fault.violation_id = None
            return [event]
        return []

    def interrupt(self, now: float, reason: str) -> list[RuleEvent]:
        """An interrupted `end` for every fault raised (the node stops watching), and every condition forgotten."""
        events = [replace(self._event(EventType.END, kind, fault, now, reason), interrupted=True)
                  for kind, fault in self._faults.items() if fault.violation_id is not None]
        self._faults.clear()
        return events

    def _event(self, event_type: EventType, kind: str, fault: _Fault, now: float, reason: str) -> RuleEvent:
        return RuleEvent(event_type, fault.violation_id, self.category, self.zone_id, kind, 0, fault.started_at, now,
                         1.0, FULL_FRAME, reason)

    @property
    def active(self) -> list[str]:
        return [kind for kind, fault in self._faults.items() if fault.violation_id is not None]
