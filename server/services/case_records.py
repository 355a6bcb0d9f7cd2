"""What a case's steps write on the case (the figures assessment counts, the assignment) and the message each step
publishes for integrators."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import object_session

from gridwatch.contract import (
    SCHEMA_VERSION,
    CaseAction,
    CaseAssignment,
    CaseMessage,
    CaseStatus,
    Category,
    Location,
    Person,
)
from server.models import CaseRecord, CaseRound, CaseTransition

A, S = CaseAction, CaseStatus


def record_kpi(case: CaseRecord, action: CaseAction, after: CaseStatus, now: datetime, reason: str) -> None:
    if action is A.ACCEPT and case.accepted_at is None:
        case.accepted_at = now
    elif action is A.FEEDBACK:
        case.feedback_at = now
    elif action is A.REWORK:
        case.rework_count += 1
        case.verified_at = None
    elif action is A.RETURN:
        case.return_count += 1
        case.returned_at = now
    elif action is A.DEFER:
        case.deferred_at, case.was_deferred = now, True
    if after is S.VERIFIED:
        case.verified_at = now
    elif after is S.CLOSED:
        case.closed_at = now
        case.on_time = answered_in_time(case)

def not_before_last_change(case: CaseRecord, now: datetime) -> datetime:
    """The moment of a change of `case` read as `now`, or its last change's if that is later. A batch of events, a
    sweep or a citizen's report reads the clock before it waits for the case's lock, an operator's step after taking
    it: a batch that waited behind a step commits after it, and stamped as it read the clock it went back in time
    (its verification before the feedback it followed, the case's `updated_at` too)."""
    return case.updated_at if case.updated_at is not None and case.updated_at > now else now


def answered_in_time(case: CaseRecord) -> bool:
    """Whether the unit's feedback came by the (extended) deadline: what makes a closure on time."""
    return bool(case.feedback_at and case.deadline_at and case.feedback_at <= case.deadline_at)


def end_pause(case: CaseRecord, now: datetime) -> None:
    """A deferral ends (`resume`): the time the case stood still is neither the unit's response time (not yet
    accepted) nor its handling time (accepted)."""
    if case.deferred_at:
        paused = (now - case.deferred_at).total_seconds()
        if case.accepted_at is None:
            case.response_paused_seconds += paused
        else:
            case.handling_paused_seconds += paused
    case.deferred_at = None


def end_round(case: CaseRecord, action: CaseAction, now: datetime) -> None:
    """Before a new dispatch of a case some unit has had: that unit's turn, kept (`CaseRound`), since the case's
    own columns are about to hold the next one's. A turn the unit ended by returning the case ended then; one whose
    case was verified (checked done, not yet closed) counts as closed, on time if the feedback was."""
    if case.dispatched_at is None:
        return
    session = object_session(case)
    earlier = (0, 0)
    if session is not None and case.id is not None:
        earlier = tuple(value or 0 for value in session.execute(
            select(func.sum(CaseRound.reworked), func.sum(CaseRound.extended)).where(CaseRound.case_id == case.id)
        ).one())
    closed = case.closed_at is not None or case.verified_at is not None
    case.rounds.add(CaseRound(
        unit_id=case.unit_id, dispatched_at=case.dispatched_at, deadline_at=case.deadline_at,
        accepted_at=case.accepted_at, feedback_at=case.feedback_at, ended_at=case.returned_at or now,
        ended_by=action.value, closed=closed,
        on_time=(case.on_time if case.closed_at is not None else answered_in_time(case)) if closed else None,
        response_paused_seconds=case.response_paused_seconds, handling_paused_seconds=case.handling_paused_seconds,
        reworked=case.rework_count - earlier[0],
        extended=case.extension_count - earlier[1]))


def assign(case: CaseRecord, assignment: CaseAssignment) -> None:
    case.grid_id, case.community, case.street = assignment.grid_id, assignment.community, assignment.street
    chief = assignment.street_chief
    case.street_chief_name, case.street_chief_phone = (chief.name, chief.phone) if chief else (None, None)
    case.unit_id, case.unit_name, case.fallback = assignment.unit_id, assignment.unit_name, assignment.fallback
    case.unit_phone = assignment.unit_phone
    duty = assignment.on_duty
    case.on_duty_name, case.on_duty_phone = (duty.name, duty.phone) if duty else (None, None)

def case_assignment(case: CaseRecord) -> CaseAssignment | None:
    if case.unit_id is None:
        return None
    chief = Person(name=case.street_chief_name, phone=case.street_chief_phone) if case.street_chief_name else None
    duty = Person(name=case.on_duty_name, phone=case.on_duty_phone) if case.on_duty_name else None
    return CaseAssignment(grid_id=case.grid_id, community=case.community, street=case.street,
                          street_chief=chief, unit_id=case.unit_id, unit_name=case.unit_name or case.unit_id,
                          fallback=case.fallback, on_duty=duty, unit_phone=case.unit_phone)

def case_message(case: CaseRecord, transition: CaseTransition) -> CaseMessage:
    """The message of one step. Its `seq` is the step's row id: given once the case is locked, in the transaction
    that commits the step, so a case's next step, waiting for that lock, gets a higher one."""
    if transition.id is None and (session := object_session(transition)) is not None:
        session.flush()  # the step's row, and its id
    dispatched = transition.to_status == S.DISPATCHED.value
    # a step before dispatch names no unit or deadline, though the batch that made it dispatched the case at once
    # (its messages are built after all its steps): an integrator would read a unit sent it before it was
    unassigned = transition.to_status in (S.COLLECTED.value, S.REGISTERED.value)
    return CaseMessage(
        schema_version=SCHEMA_VERSION,
        case_id=case.id,
        category=Category(case.category),
        code=case.code,
        status=S(transition.to_status),
        previous_status=S(transition.from_status) if transition.from_status else None,
        action=A(transition.action),
        changed_at=transition.at,
        seq=transition.id,
        changed_by=transition.actor,
        reason=transition.reason,
        violation_id=case.violation_id,
        source=case.source,
        description=case.description,
        node_id=case.node_id,
        camera_id=case.camera_id,
        zone_id=case.zone_id,
        location=Location(lat=case.lat, lon=case.lon) if case.lat is not None else None,
        assignment=case_assignment(case) if (dispatched or case.unit_id) and not unassigned else None,
        deadline_at=case.deadline_at if case.unit_id and not unassigned else None,
        opened_at=case.opened_at,
        escalation_level=case.escalation_level,
    )
