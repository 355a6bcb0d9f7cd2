"""Operator feedback into models: verdicts on detections, and the reviewed detections as a YOLO-format dataset that
`gridwatch models train --extra` (or `--feedback`) learns from.

Each exported image is the event's unannotated crop; its label is the event's box placed in the crop through the
crop's `region`. A confirmed detection, and one rejected as a duplicate or as not our responsibility (the object was
really there), is a positive; one rejected as a false positive is a negative (an image with nothing to find) where it
says nothing of the exported classes is there: exported by its category (a litter case voided as a false positive has
no garbage), or, without one, a detection of one of the classes (a stall voided as a false positive may well be a
pile of garbage, which COCO calls an umbrella: not an image without garbage).
Detections that cannot be exported are listed with the reason in `export.json`, never left out silently.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridwatch.contract import CaseAction, CaseMessage, Category, Event
from server.db import begin_writing, claim
from server.models import CaseTransition, DetectionReview, EventRecord, EvidenceRecord
from server.services.evidence import EvidenceStore


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
    """The detection a decision on case `case_id` is about: the first event of its current round. A finished case
    reopens when a camera sees something at its place again, and the operator voiding it then judges what the camera
    saw this time, not the detection that raised the case (filed and cleaned up: real garbage, which the verdict
    written on it once made an image with nothing to find). A round after a reopening starts with the events received
    since, seen after the moment the case was finished (the one the reopening compared against: a late event of the
    round before, delivered with the new one from a node's backlog, is not this round's). None when the round has no
    detection (a citizen's report reopened it)."""
    query = select(EventRecord.event_id).where(EventRecord.case_id == case_id)
    reopened = session.execute(select(CaseTransition.id, CaseTransition.at).where(
        CaseTransition.case_id == case_id, CaseTransition.action == CaseAction.REOPEN.value)
        .order_by(CaseTransition.id.desc()).limit(1)).first()
    if reopened is not None:
        query = query.where(EventRecord.received_at >= reopened.at)
        # a case reopens only from verified or closed: the step before the reopening finished it
        finished = session.scalar(select(CaseTransition.at).where(
            CaseTransition.case_id == case_id, CaseTransition.id < reopened.id)
            .order_by(CaseTransition.id.desc()).limit(1))
        if finished is not None:
            query = query.where(EventRecord.observed_at >= finished)
    return session.scalar(query.order_by(EventRecord.observed_at, EventRecord.id).limit(1))


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


def training_label(event: Event, class_id: int) -> str | None:
    """`class cx cy w h` of the event's box inside its crop, or None when the crop has no region (nodes before
    schema 1.2)."""
    region = event.evidence.crop.region if event.evidence and event.evidence.crop else None
    if region is None:
        return None
    width, height = region.x2 - region.x1, region.y2 - region.y1
    if width <= 0 or height <= 0:
        return None

    def inside(value: float, start: float, size: float) -> float:
        return min(1.0, max(0.0, (value - start) / size))

    x1, x2 = inside(event.box.x1, region.x1, width), inside(event.box.x2, region.x1, width)
    y1, y2 = inside(event.box.y1, region.y1, height), inside(event.box.y2, region.y1, height)
    return f"{class_id} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n"


def export_dataset(session: Session, store: EvidenceStore, classes: Sequence[str],
                   category: Category | None = None) -> tuple[bytes, dict]:
    """A zip of images/ and labels/ (YOLO format, `classes` in label order) and export.json with the counts and
    every reviewed detection left out, with the reason."""
    query = select(DetectionReview, EventRecord).join(EventRecord, EventRecord.event_id == DetectionReview.event_id)
    if category is not None:
        query = query.where(EventRecord.category == category.value)
    summary: dict = {"classes": list(classes), "category": category.value if category else None,
                     "positives": 0, "negatives": 0, "left_out": []}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for verdict, record in session.execute(query.order_by(DetectionReview.id)).all():
            event = Event.model_validate(record.payload)
            positive = verdict.verdict == Verdict.CONFIRMED or verdict.reason in OBJECT_WAS_THERE
            left_out = _why_left_out(verdict, event, classes, positive, by_category=category is not None)
            crop = session.scalar(select(EvidenceRecord).where(EvidenceRecord.event_id == record.event_id,
                                                                EvidenceRecord.variant == "crop"))
            if left_out is None and (crop is None or not store.path(crop.sha256).exists()):
                left_out = "its crop was never received"
            label = training_label(event, classes.index(event.label)) if left_out is None and positive else ""
            if label is None:
                left_out = "its crop has no region (node older than schema 1.2)"
            if left_out is not None:
                summary["left_out"].append({"event_id": record.event_id, "reason": left_out})
                continue
            archive.write(store.path(crop.sha256), f"images/{record.event_id}.jpg")
            archive.writestr(f"labels/{record.event_id}.txt", label)
            summary["positives" if label else "negatives"] += 1
        archive.writestr("export.json", json.dumps(summary, indent=2) + "\n")
    return buffer.getvalue(), summary


def _why_left_out(verdict: DetectionReview, event: Event, classes: Sequence[str], positive: bool,
                  by_category: bool) -> str | None:
    if verdict.reason == RejectReason.OTHER:
        return "rejected for another reason: whether the object was there is not known"
    if positive and event.label not in classes:
        return f"its label {event.label!r} is not among the exported classes"
    if not positive and not by_category and event.label not in classes:
        return (f"a false {event.category.value} ({event.label!r}) may still show one of the exported classes: "
                f"export by category to use it as an image with nothing to find")
    return None
