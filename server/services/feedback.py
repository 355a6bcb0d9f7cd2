"""Operator feedback into models: verdicts on detections, the ground truth `server/services/training_data.py`
exports as a YOLO dataset that `gridwatch models train --extra` (or `--feedback`) learns from.

A verdict comes from an operator (`PUT /api/v1/events/{event_id}/review`, or filing or voiding a case), or from the
case workflow: a round of a case that people saw through to the end (the unit's feedback, then verified by an
operator or by the camera seeing it gone) confirms the detection that raised it, so that the detections confident
enough to file themselves become positives too, not only the doubtful ones an operator looked at. Either is written
on the detection the decision is about: the first event of the case's current round (`round_detection`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import case as sa_case
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridwatch.contract import CaseAction, CaseMessage, EventType
from server.db import begin_writing, claim
from server.models import CaseRecord, CaseTransition, DetectionReview, EventRecord


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class RejectReason(StrEnum):
    FALSE_POSITIVE = "false_positive"
    DUPLICATE = "duplicate"
    NOT_OUR_RESPONSIBILITY = "not_our_responsibility"
    OTHER = "other"


OBJECT_WAS_THERE = {RejectReason.DUPLICATE, RejectReason.NOT_OUR_RESPONSIBILITY}


class ReviewError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def review(session: Session, event_id: str, verdict: Verdict, reason: RejectReason | None, reviewer: str,
           note: str | None = None, commit: bool = True) -> DetectionReview:
    """Record (or change) the verdict on the detection `event_id` (`commit=False`: in the caller's transaction).
    Two verdicts on one detection at once (a double click, two operators) take turns: the second changes the
    first's row instead of making another, which the unique event id refused with a 500."""
    begin_writing(session)
    claim(session, {review_key(event_id)})
    if session.scalar(select(EventRecord.id).where(EventRecord.event_id == event_id)) is None:
        raise ReviewError(404, f"no event {event_id}")
    if verdict is Verdict.REJECTED and reason is None:
        raise ReviewError(422, "a rejection needs a reason: " + ", ".join(r.value for r in RejectReason))
    if verdict is Verdict.CONFIRMED and reason is not None:
        raise ReviewError(422, "a confirmation takes no reason")
    record = session.scalar(select(DetectionReview).where(DetectionReview.event_id == event_id))
    if record is None:
        record = DetectionReview(event_id=event_id)
        session.add(record)
    record.verdict, record.reason, record.reviewer, record.note = verdict.value, reason, reviewer, note
    record.at = datetime.now(UTC)
    if commit:
        session.commit()
    return record


def review_key(event_id: str) -> str:
    """What a verdict on `event_id` claims (`claim`) while it is written: two at once take turns."""
    return f"review:{event_id}"


def round_detection(session: Session, case_id: int) -> str | None:
    """The detection a decision on case `case_id` is about: the first sighting of its current round. A finished case
    reopens when a camera sees something at its place again, and the operator voiding it then judges what the camera
    saw this time, not the detection that raised the case (filed and cleaned up: real garbage, which the verdict
    written on it once made an image with nothing to find). A round after a reopening starts with what was seen at or
    after the moment the case was finished (the one the reopening compared against). Never an `end` (a late one of the
    round before, delivered with the new sighting from a node's backlog, has no picture of anything); in the first
    round, the sighting of the violation that raised the case before another camera's that joined it (a node's
    backlog, or a clock behind, may put that one earlier). None when the round has no sighting (a citizen's report
    reopened it, or raised it)."""
    sightings = select(EventRecord.event_id).where(EventRecord.case_id == case_id,
                                                   EventRecord.type != EventType.END.value)
    reopened = session.scalar(select(func.max(CaseTransition.id)).where(
        CaseTransition.case_id == case_id, CaseTransition.action == CaseAction.REOPEN.value))
    if reopened is not None:
        # a case reopens only from verified or closed: the step before the reopening finished it
        finished = session.scalar(select(CaseTransition.at).where(
            CaseTransition.case_id == case_id, CaseTransition.id < reopened).order_by(CaseTransition.id.desc())
            .limit(1))
        if finished is not None:
            sightings = sightings.where(EventRecord.observed_at >= finished)
        return session.scalar(sightings.order_by(EventRecord.observed_at, EventRecord.id).limit(1))
    raiser = select(CaseRecord.violation_id).where(CaseRecord.id == case_id).scalar_subquery()
    return session.scalar(sightings.order_by(sa_case((EventRecord.violation_id == raiser, 0), else_=1),
                                             EventRecord.observed_at, EventRecord.id).limit(1))


SEEN_THROUGH = frozenset({CaseAction.VERIFY, CaseAction.CLOSE})
"""Steps that end a round confirmed by people: verified after the unit's feedback (by an operator, or by the camera
seeing the object gone once the unit said it was dealt with), or closed (a case verified before verdicts were
written this way)."""


def confirm_seen_through(session: Session, messages: Iterable[CaseMessage]) -> None:
    """A case round that `messages` end verified or closed confirms its detection, unless it has a verdict already
    (an operator's, which always stands). The reviewer is who verified or closed it (`system` for the camera), the
    note the step, its time the verdict's. In the caller's transaction, after its events are written."""
    confirmed: set[int] = set()
    for message in messages:
        if message.action not in SEEN_THROUGH or message.case_id in confirmed:
            continue
        confirmed.add(message.case_id)
        if (event_id := round_detection(session, message.case_id)) is None:
            continue
        claim(session, {review_key(event_id)})
        if session.scalar(select(DetectionReview.id).where(DetectionReview.event_id == event_id)) is not None:
            continue
        session.add(DetectionReview(event_id=event_id, verdict=Verdict.CONFIRMED.value, reviewer=message.changed_by,
                                    note=f"case {message.case_id} {message.status.value}: {message.reason}",
                                    at=message.changed_at))
