"""Cases from events, and every step of a case after that.

All the messages of one violation belong to one case; a violation at the place and of the category of an open case
joins it, and one at a recently closed case's place reopens it. A detection scoring high enough for its category
files and dispatches itself; a lower one waits for an operator. After the unit's feedback, the camera that raised the
case verifies it: the object gone (every violation ended) verifies and closes it, the object seen again sends it
back for rework. Every change is a `CaseTransition` (who, when, why) and a `CaseMessage` for integrators.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from gridwatch.contract import (
    DEFAULT_EVENT_CODES,
    CaseAction,
    CaseMessage,
    CaseStatus,
    Category,
    Event,
    EventType,
    Location,
)
from server.core.security import Role
from server.db import begin_writing, claim, database_away
from server.models import CaseRecord, CaseTransition, EventRecord
from server.services.case_records import (
    assign,
    case_message,
    end_pause,
    end_round,
    not_before_last_change,
    record_kpi,
)
from server.services.dispatch import Dispatcher, address_key
from server.services.escalation import escalation_due
from server.services.places import Nearby, Repeats, reported_at
from server.services.workflow import IN_UNIT, OPEN, WorkflowError, allowed_actions, next_status

SYSTEM_ACTOR = "system"

log = logging.getLogger(__name__)

A, S = CaseAction, CaseStatus


class CaseService:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        config = dispatcher.config
        self.repeats = Repeats(timedelta(minutes=config.repeat_window_minutes if config else 30),
                               config.repeat_radius_m if config else 15)

    # ---- from the cameras ------------------------------------------------------------------------------------------

    def apply_event(self, session: Session, event: Event, now: datetime, case: CaseRecord | None,
                    first_of_violation: bool, nearby: Nearby,
                    ended_before: bool = False) -> tuple[CaseRecord, list[CaseTransition]]:
        """The case `event` belongs to — `case` (its violation's, or None for a violation not seen before), or one
        opened, joined or reopened as the rules say (a lost `new` still opens one from its `update` or `end`) —
        and the changes it made; build their messages (`message`) once the session is flushed. Never flushes by
        itself, so a batch of events is written in one go. `nearby` holds the cases the event's place may repeat
        (`Repeats.nearby`); a case opened here joins it for the rest of the batch. `ended_before`: the event's
        violation has had its `end` already (an interrupted `end` may come before the `new`, from another worker),
        so another is no violation fewer, and its first event no open violation."""
        changes: list[CaseTransition] = []
        if case is None:
            case = self.repeats.of(event.category, event.location, (event.node_id, event.camera_id, event.zone_id),
                                   now, nearby)
            if case is not None and S(case.status) in OPEN:  # a finished one is reopened below
                changes.append(self._step(case, A.JOIN, SYSTEM_ACTOR, now,
                                          f"{event.label} at the same place ({event.camera_id}/{event.zone_id}) "
                                          f"joins this case"))
        if case is None:
            case = self._open(session, event, now, changes)
            nearby.add(case)
        now = not_before_last_change(case, now)  # the batch may have waited for the case behind an operator's step
        # only what changes is set: every set of a mapped attribute costs, and heartbeats change little
        case.occurrences += 1
        if event.observed_at > case.last_seen_at:
            case.last_seen_at = event.observed_at
        if event.dwell_seconds > case.dwell_seconds:
            case.dwell_seconds = event.dwell_seconds
        if event.score > case.score:
            case.score = event.score
        case.updated_at = now
        status = S(case.status)
        if event.type is EventType.END:
            if not first_of_violation and not ended_before:
                case.open_violations = max(0, case.open_violations - 1)
            # every violation of the case has ended: the object is gone. Not so after an interrupted end (the node
            # stopped watching: restart, camera failure, new zones): the case is neither ended nor verified by it
            if case.open_violations == 0 and not event.interrupted:
                case.ended_at = event.observed_at
                if status is S.FEEDBACK and (event.node_id, event.camera_id) == (case.node_id, case.camera_id):
                    changes += self._verify_by_camera(case, now)
        elif case.ended_at is not None and event.observed_at <= case.ended_at:
            # seen before the end already applied (workers may write one violation's events out of order, a node
            # sends its backlog late): an occurrence, but no sign the object is back, so no rework and no reopening.
            # The first event of another object there then is one more open violation, though: the case was not
            # over at that end (counted, its own `end` later left the count one short, and the case closed early)
            if first_of_violation and not ended_before:
                case.open_violations += 1
                case.ended_at = None
        else:
            if first_of_violation and not ended_before:
                case.open_violations += 1
            if case.ended_at is not None:
                case.ended_at = None
            # what the camera saw before the unit's feedback (or the case's verification or closing), delivered
            # late, is no sign of the object after it: no rework charged to the unit, no reopening
            if status is S.FEEDBACK and not self._seen_before(event, case.feedback_at):
                changes.append(self._step(case, A.REWORK, SYSTEM_ACTOR, now,
                                          f"camera {event.camera_id} still sees {event.label} after the feedback"))
            elif status in (S.VERIFIED, S.CLOSED) and not self._seen_before(
                    event, case.closed_at if status is S.CLOSED else case.verified_at):
                changes += self._reopen(case, now, f"camera {event.camera_id} sees {event.label} again")
            elif status is S.COLLECTED and self._files_itself(case, score := self._detected_score(case, event)):
                changes += self._file_and_dispatch(case, now, f"score {score:.2f} reached the filing threshold")
        return case, changes

    @staticmethod
    def _seen_gone_by_raiser(case: CaseRecord) -> bool:
        """Every violation of the case has ended, the last by the camera that raised it: what verifies a case in
        feedback as that `end` comes (`apply_event`), so also when it came before the feedback. Not when the last to
        end was another camera's, whichever came first, the feedback or that `end`."""
        session = object_session(case)
        if case.ended_at is None or session is None:
            return False
        return session.scalar(select(EventRecord.id).where(
            EventRecord.case_id == case.id, EventRecord.type == EventType.END.value,
            EventRecord.observed_at == case.ended_at, EventRecord.node_id == case.node_id,
            EventRecord.camera_id == case.camera_id).limit(1)) is not None

    @staticmethod
    def _seen_before(event: Event, moment: datetime | None) -> bool:
        return moment is not None and event.observed_at < moment

    def _open(self, session: Session, event: Event, now: datetime, changes: list[CaseTransition]) -> CaseRecord:
        case = CaseRecord(
            violation_id=str(event.violation_id), category=event.category.value, code=event.code,
            status=S.COLLECTED.value, node_id=event.node_id, camera_id=event.camera_id, zone_id=event.zone_id,
            label=event.label, score=event.score,
            lat=event.location.lat if event.location else None, lon=event.location.lon if event.location else None,
            opened_at=now, updated_at=now, started_at=event.started_at, last_seen_at=event.observed_at,
            dwell_seconds=event.dwell_seconds, occurrences=0, open_violations=0,
        )
        self._place(case)
        session.add(case)
        changes.append(self._step(case, A.COLLECT, f"camera {event.camera_id}", now,
                                  f"{event.label} {event.type.value} in zone {event.zone_id}, "
                                  f"dwell {event.dwell_seconds:.0f} s, score {event.score:.2f}"))
        if self._files_itself(case):
            changes += self._file_and_dispatch(case, now, "filed automatically from a camera detection")
        else:
            threshold = self.dispatcher.auto_file_score(Category(case.category))
            changes[-1].reason += (", waits for an operator" if threshold is None
                                   else f", below {threshold:.2f}: waits for an operator")
        return case

    def _place(self, case: CaseRecord) -> None:
        """The grid (community, street, chief) where the case lies, as soon as its position is known: a case waiting
        for an operator, or voided before dispatch, is its grid's too."""
        grid = self.dispatcher.grid_at(Location(lat=case.lat, lon=case.lon) if case.lat is not None else None)
        if grid is not None:
            props, chief = grid.properties, grid.properties.street_chief
            case.grid_id, case.community, case.street = props.grid_id, props.community, props.street
            case.street_chief_name, case.street_chief_phone = (chief.name, chief.phone) if chief else (None, None)

    def _files_itself(self, case: CaseRecord, score: float | None = None) -> bool:
        threshold = self.dispatcher.auto_file_score(Category(case.category))
        return threshold is not None and (case.score if score is None else score) >= threshold

    @staticmethod
    def _detected_score(case: CaseRecord, event: Event) -> float:
        """What a detector made of the case: a citizen's report's 1.0 says a person saw it, so a doubtful detection
        joining one waits with it for the operator, as in the other order, rather than filing it on that 1.0."""
        return event.score if case.source == "open311" else case.score

    def _file_and_dispatch(self, case: CaseRecord, now: datetime, why: str,
                           actor: str = SYSTEM_ACTOR) -> list[CaseTransition]:
        case.filed_by = actor
        return [self._step(case, A.FILE, actor, now, why), self._dispatch(case, now, A.DISPATCH, actor)]

    def _dispatch(self, case: CaseRecord, now: datetime, action: CaseAction, actor: str,
                  unit_id: str | None = None, why: str | None = None) -> CaseTransition:
        location = Location(lat=case.lat, lon=case.lon) if case.lat is not None else None
        assignment, deadline = self.dispatcher.assign(Category(case.category), location, now, unit_id)
        end_round(case, action, now)  # the turn of the unit before, if one had it: kept for its assessment
        assign(case, assignment)
        # a new round: its acceptance and its feedback are yet to come (the last round's feedback, kept, made a
        # handling time that ran backwards once this round was accepted)
        case.deadline_at, case.dispatched_at, case.accepted_at, case.feedback_at = deadline, now, None, None
        case.returned_at = None
        case.response_paused_seconds = case.handling_paused_seconds = 0.0
        case.escalation_level = 0
        target = assignment.unit_name + (f", street chief {assignment.street_chief.name}"
                                         if assignment.street_chief else "")
        if assignment.on_duty:
            target += f", on duty {assignment.on_duty.name}"
        default = "no grid or category route matched; fallback unit" if assignment.fallback else "auto-dispatch"
        return self._step(case, action, actor, now, f"{why or default}: {target}")

    def _verify_by_camera(self, case: CaseRecord, now: datetime) -> list[CaseTransition]:
        why = f"camera {case.camera_id} sees the {case.label} gone"
        return [self._step(case, A.VERIFY, SYSTEM_ACTOR, now, why),
                self._step(case, A.CLOSE, SYSTEM_ACTOR, now, "verified by the camera that raised it")]

    def _reopen(self, case: CaseRecord, now: datetime, why: str) -> list[CaseTransition]:
        unit_id = case.unit_id
        if unit_id is not None and not self.dispatcher.has_unit(unit_id):
            why += f"; unit {unit_id!r} is no longer in the dispatch configuration, so the route chooses"
            unit_id = None
        elif case.fallback:  # no route covered it: the route chooses again (a fallback, with its own deadline)
            unit_id = None
        reopened = self._dispatch(case, now, A.REOPEN, SYSTEM_ACTOR, unit_id=unit_id, why=why)  # the closed turn kept
        case.closed_at = case.on_time = case.verified_at = None
        return [reopened]

    # ---- from citizens (Open311) -------------------------------------------------------------------------------

    def open_report(self, session: Session, category: Category, location: Location | None, description: str,
                    address: str | None, reporter: dict, via: str, now: datetime,
                    media_url: str | None = None) -> tuple[CaseRecord, list[CaseMessage], bool]:
        """A citizen report: it joins (or reopens) the case already at that place, else opens one that waits for
        an operator to confirm, like a doubtful detection. Returns the case, the changes and whether it joined.
        A report with an address but no position (a hotline's caller names a street) is placed by the city's
        address register (`Dispatcher.located`) when it has the address; else it joins an open case of its category
        reported at the same address, or its case waits without a position, for the operator to place it when
        filing (`act`), since only a position finds the grid."""
        why = f"citizen report via {via}: {description[:300]}"
        placed = None
        if location is None and (location := self.dispatcher.located(address)) is not None:
            placed = f"; placed at {address} by the city's address register"
        begin_writing(session)
        if location is None:
            claim(session, [f"address:{category.value}:{address_key(address or '')}"])  # two calls at once: one case
            case = reported_at(session, category, address or "")
        else:
            claim(session, self.repeats.keys((category, location, None)))  # a worker opening a case there goes first
            case = self.repeats.of(category, location, None, now,
                                   self.repeats.nearby(session, [(category, location, None)], now))
        if case is not None:
            session.refresh(case, with_for_update=True)  # a worker's batch changing it meanwhile waits for this
            if S(case.status) is S.VOID:  # an operator voided it since: the report opens a case of its own
                case = None
        report = {"at": now.isoformat(), "via": via, "description": description, "address": address,
                  "reporter": reporter or None, "media_url": media_url}  # whole: the step's reason holds 300 of it
        if case is not None:
            now = not_before_last_change(case, now)  # it may have waited for the case behind a step stamped later
            change = (self._step(case, A.JOIN, via, now, why) if S(case.status) in OPEN
                      else self._reopen(case, now, why)[0])
            case.reports = [*(case.reports or []), report]  # a new list: the ORM sees a change of the column
            case.ended_at = None  # the camera saw it gone before the citizen saw it: that proves nothing now
            session.flush()
            return case, [case_message(case, change)], True
        case = CaseRecord(
            violation_id=str(uuid.uuid4()), category=category.value, code=DEFAULT_EVENT_CODES[category],
            status=S.COLLECTED.value, source="open311", description=description, address=address,
            reporter=reporter or None, reports=[report], label=category.value, score=1.0,
            lat=location.lat if location else None, lon=location.lon if location else None,
            opened_at=now, updated_at=now, started_at=now, last_seen_at=now, occurrences=1)
        self._place(case)
        session.add(case)
        waits = (placed or "") + "; waits for an operator" + (" to place it" if location is None else "")
        change = self._step(case, A.COLLECT, via, now, why + waits)
        session.flush()
        return case, [case_message(case, change)], False

    # ---- from people (the API) ---------------------------------------------------------------------------------

    def act(self, case: CaseRecord, action: CaseAction, actor: str, role: Role | None, now: datetime,
            reason: str | None = None, unit_id: str | None = None, extend_minutes: float | None = None,
            void_reason: str | None = None, location: Location | None = None) -> list[CaseMessage]:
        """An operator's, supervisor's or field worker's step. Raises WorkflowError (403, 409, 422). `location`
        places a case reported without a position as it is filed or dispatched: the route goes by the grid there."""
        status, now = S(case.status), not_before_last_change(case, now)  # another server's clock may run behind
        if location is not None and case.lat is not None:
            raise WorkflowError(422, f"location: case {case.id} has its position already ({case.lat}, {case.lon}); "
                                     f"only a case reported without one is placed", [])
        if action is A.VOID:
            next_status(status, action, role, void_reason or "unsaid")  # who may, and when, before what is missing
            if void_reason is None:
                raise WorkflowError(422, "void needs void_reason: false_positive, duplicate, not_our_responsibility "
                                         "or other", allowed_actions(status, role))
            reason = f"{void_reason}: {reason}" if reason else void_reason
        next_status(status, action, role, reason)  # refuse before changing anything
        why = reason or action.value
        changes: list[CaseTransition] = []
        if action is A.VOID:
            case.void_reason = void_reason
        if location is not None:
            case.lat, case.lon = location.lat, location.lon
            self._place(case)
            why += f"; placed at {location.lat:.6f}, {location.lon:.6f}"
        if action is A.FILE:
            changes = self._file_and_dispatch(case, now, f"confirmed by an operator: {why}", actor)
        elif action in (A.DISPATCH, A.REASSIGN):
            if unit_id is not None and not self.dispatcher.has_unit(unit_id):
                raise WorkflowError(422, f"unit_id: no unit {unit_id!r} in the dispatch configuration", [])
            if action is A.REASSIGN and unit_id in (None, case.unit_id):  # it would only restart the deadline
                raise WorkflowError(422, f"unit_id: reassign names another unit than {case.unit_id}, which has the "
                                         f"case (a new turn restarts its deadline; more time is `extend`)", [])
            if status is S.RETURNED and unit_id in (None, case.unit_id):  # 回退: the unit said it is not theirs
                raise WorkflowError(422, f"unit_id: {case.unit_id} returned this case as not theirs; name the unit "
                                         f"to take it", [])
            changes = [self._dispatch(case, now, action, actor, unit_id, why)]
        elif action is A.EXTEND:
            if not extend_minutes or extend_minutes <= 0:
                raise WorkflowError(422, "extend needs extend_minutes > 0", [])
            try:  # on the category's own clock: a streetlight's calendar hours, the others' working hours
                deadline = self.dispatcher.deadline(case.deadline_at or now, timedelta(minutes=extend_minutes),
                                                    self.dispatcher.clock_of(Category(case.category)))
            except (ValueError, OverflowError) as error:
                raise WorkflowError(422, f"extend_minutes: {extend_minutes:g} minutes cannot be placed in the "
                                         f"working hours ({error})", []) from None
            case.deadline_at = deadline
            if deadline > now:
                case.escalation_level = 0  # a new deadline: past it, the street office is told again first
            case.extension_count += 1
            changes = [self._step(case, action, actor, now, f"{why} (+{extend_minutes:g} min)")]
        elif action is A.RESUME:
            if case.deferred_at and case.deadline_at:
                # the clock stood still while deferred: what was left of it then, on the category's clock, is left now
                clock, dispatcher = self.dispatcher.clock_of(Category(case.category)), self.dispatcher
                try:
                    if case.deadline_at > case.deferred_at:
                        case.deadline_at = dispatcher.deadline(
                            now, dispatcher.time_left(case.deferred_at, case.deadline_at, clock), clock)
                    else:  # overdue when deferred: as overdue as it was then, on the same clock
                        case.deadline_at = dispatcher.before(
                            now, dispatcher.time_left(case.deadline_at, case.deferred_at, clock), clock)
                except (ValueError, OverflowError) as error:
                    raise WorkflowError(422, f"resume: the time left cannot be placed in the working hours "
                                             f"({error})", []) from None
            end_pause(case, now)
            if case.accepted_at is None:  # deferred before it was accepted: resumed, the unit is on it now
                case.accepted_at = now
            changes = [self._step(case, action, actor, now, why)]
        else:
            changes = [self._step(case, action, actor, now, why)]
        if action is A.FEEDBACK and self._seen_gone_by_raiser(case):
            changes += self._verify_by_camera(case, now)  # the camera already saw it gone
        return [case_message(case, change) for change in changes]

    # ---- the clock ---------------------------------------------------------------------------------------------

    def sweep(self, session: Session, now: datetime) -> list[CaseMessage]:
        """Escalate overdue cases: at the deadline to the street office, later to the district. A case that cannot
        be escalated is logged and left as it was; the others are escalated all the same."""
        steps = []
        begin_writing(session)
        # a case another worker's sweep or batch holds is left to the next sweep (SKIP LOCKED): two workers'
        # sweeps never escalate one case twice
        overdue = session.scalars(select(CaseRecord).where(
            CaseRecord.status.in_([s.value for s in IN_UNIT | {S.RETURNED}]), CaseRecord.deadline_at < now,
            CaseRecord.escalation_level < 2).with_for_update(skip_locked=True)).all()
        for case in overdue:
            try:
                if (due := escalation_due(self.dispatcher, case, now)) is None:
                    continue
                with session.begin_nested():  # a step that fails half-way leaves the case as it was
                    case.escalation_level = due.level
                    step = self._step(case, A.ESCALATE, SYSTEM_ACTOR, now, due.reason)
                steps.append((case, step))
            except Exception as error:
                if database_away(error):
                    raise  # the database's, not the case's: the sweep is tried again whole
                # one case (of a category this worker does not know, say) never stops the others' escalation
                log.exception("case %s: not escalated; left as it was", case.id)
        return [case_message(case, step) for case, step in steps]  # once the cases are read: the steps written

    # ---- records and messages ----------------------------------------------------------------------------------

    def _step(self, case: CaseRecord, action: CaseAction, actor: str, now: datetime, reason: str) -> CaseTransition:
        now = not_before_last_change(case, now)  # a sweep's, read before it waited for the case (and every path's)
        before = None if action is A.COLLECT else S(case.status)
        after = S.COLLECTED if before is None else next_status(before, action, None, reason)
        transition = CaseTransition(action=action.value, from_status=before.value if before else None,
                                    to_status=after.value, at=now, actor=actor, reason=reason)
        # the case's timeline is not loaded for this (a busy case has thousands of steps), nor its relationship
        # touched when the case already has its id
        if case.id is None:
            transition.case = case
        else:
            transition.case_id = case.id
        if (session := object_session(case)) is not None:
            session.add(transition)
        case.status, case.updated_at = after.value, now
        record_kpi(case, action, after, now, reason)
        return transition
