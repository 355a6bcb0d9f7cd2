"""The reviewed detections as a YOLO-format dataset (`GET /api/v1/training-data`).

Each exported image is the event's unannotated crop; its label is the event's box placed in the crop through the
crop's `region`. A confirmed detection, and one rejected as a duplicate or as not our responsibility (the object was
really there), is a positive; one rejected as a false positive is a negative (an image with nothing to find) where it
says nothing of the exported classes is there: exported by its category (a litter case voided as a false positive has
no garbage), or, without one, a detection of one of the classes (a stall voided as a false positive may well be a
pile of garbage, which COCO calls an umbrella: not an image without garbage).
Detections that cannot be exported are listed with the reason in `export.json`, never left out silently.

A city keeps years of verdicts, and their crops at the camera's resolution run to gigabytes: the zip is written to
a file a page of verdicts at a time (never whole in memory), its JPEGs stored as they are (compressing a JPEG again
costs time and saves nothing), and `since` exports only the verdicts given since the last export.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from PIL import JpegImagePlugin
from sqlalchemy import Row, and_, select
from sqlalchemy.orm import Session

from gridwatch.contract import Category, Event
from server.models import DetectionReview, EventRecord, EvidenceRecord, utcnow
from server.services.evidence import EvidenceStore
from server.services.feedback import OBJECT_WAS_THERE, RejectReason, Verdict

MIN_SIDE = 10
"""Pixels a crop needs on each side: ultralytics drops a smaller image as corrupt (`image size … <10 pixels`), so a
positive under it (a bag far down the street) would teach nothing and be counted as if it did."""
PAGE = 500
"""Verdicts read at a time: one query for them, their events and their crops."""


def training_label(event: Event, class_id: int) -> str:
    """`class cx cy w h` of the event's box inside its crop; `LeftOut` when the crop has no region (nodes before
    schema 1.2) or the box, clamped to the crop and written to six places, has no width or height there (a box a
    frame's edge cut to nothing, which the contract allows): training refuses a label without an area, and with it
    the whole export."""
    region = event.evidence.crop.region if event.evidence and event.evidence.crop else None
    width, height = (region.x2 - region.x1, region.y2 - region.y1) if region is not None else (0.0, 0.0)
    if width <= 0 or height <= 0:
        raise LeftOut("its crop has no region (node older than schema 1.2)")

    def inside(value: float, start: float, size: float) -> float:
        return min(1.0, max(0.0, (value - start) / size))

    x1, x2 = inside(event.box.x1, region.x1, width), inside(event.box.x2, region.x1, width)
    y1, y2 = inside(event.box.y1, region.y1, height), inside(event.box.y2, region.y1, height)
    label = f"{class_id} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n"
    if float(label.split()[3]) <= 0 or float(label.split()[4]) <= 0:
        raise LeftOut("its box has no width or height inside its crop")
    return label


class LeftOut(ValueError):
    """Why a detection cannot be a training image."""


SETTLE = timedelta(minutes=5)
"""How far before its moment an export's `until` lies: longer than any transaction writing a verdict takes."""


def export_dataset(session: Session, store: EvidenceStore, classes: Sequence[str], into: IO[bytes],
                   category: Category | None = None, since: datetime | None = None) -> dict[str, Any]:
    """Write into `into` a zip of images/ and labels/ (YOLO format, `classes` in label order) and export.json, and
    return export.json's content: the range of verdicts taken (`since`, given or null, to `until`, the export's
    moment, which the next export passes as its `since`), the counts, every verdict exported with its time, and every
    one left out, with the reason. A verdict changed since an earlier export comes again, as it stands now. The
    export holds every verdict committed, but its `until` lies `SETTLE` before now: a verdict is stamped as its
    transaction writes it, and one still uncommitted as this export reads (an operator's step, a batch waiting for
    its locks) would otherwise fall between this export and the next, since=until. The next export repeats the last
    minutes' verdicts instead, which training takes once (the last export listed wins)."""
    now = utcnow()
    until = now - SETTLE
    summary: dict[str, Any] = {"classes": list(classes), "category": category.value if category else None,
                               "since": _utc(since) if since else None, "until": _utc(until),
                               "positives": 0, "negatives": 0, "exported": [], "left_out": []}
    with zipfile.ZipFile(into, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.mkdir("images")  # there when unzipped, also for an export with nothing in it
        archive.mkdir("labels")
        for row in _reviewed(session, category, since, now):
            event = Event.model_validate(row.payload)
            entry = {"event_id": row.event_id, "verdict": row.verdict, "reject_reason": row.reason,
                     "at": _utc(row.at)}
            positive = row.verdict == Verdict.CONFIRMED or row.reason in OBJECT_WAS_THERE
            left_out = _why_left_out(row.reason, event, classes, positive, by_category=category is not None)
            path = store.path(row.crop) if row.crop else None
            if left_out is None:
                left_out = _crop_problem(path)
            label = ""
            if left_out is None and positive:
                try:
                    label = training_label(event, classes.index(event.label))
                except LeftOut as why:
                    left_out = str(why)
            if left_out is not None:
                summary["left_out"].append({**entry, "reason": left_out})
                continue
            archive.write(path, f"images/{row.event_id}.jpg", compress_type=zipfile.ZIP_STORED)
            archive.writestr(f"labels/{row.event_id}.txt", label)
            summary["positives" if label else "negatives"] += 1
            summary["exported"].append(entry)
        archive.writestr("export.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _reviewed(session: Session, category: Category | None, since: datetime | None, until: datetime) -> Iterator[Row]:
    """The verdicts given from `since` to before `until`, each with its event's payload and its crop's SHA-256 (None
    when it never came), a page at a time in the order they were first given."""
    query = select(DetectionReview.id, DetectionReview.event_id, DetectionReview.verdict, DetectionReview.reason,
                   DetectionReview.at, EventRecord.payload, EvidenceRecord.sha256.label("crop")) \
        .join(EventRecord, EventRecord.event_id == DetectionReview.event_id) \
        .outerjoin(EvidenceRecord, and_(EvidenceRecord.event_id == DetectionReview.event_id,
                                        EvidenceRecord.variant == "crop")) \
        .where(DetectionReview.at < until)
    if category is not None:
        query = query.where(EventRecord.category == category.value)
    if since is not None:
        query = query.where(DetectionReview.at >= since)
    last = 0
    while rows := session.execute(query.where(DetectionReview.id > last).order_by(DetectionReview.id)
                                  .limit(PAGE)).all():
        yield from rows
        last = rows[-1].id


def _utc(moment: datetime) -> str:
    """A moment as export.json and the headers give it: in UTC, written with Z, so that `until` goes into the next
    export's URL as it is (a '+' there reads as a space)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _crop_problem(path: Path | None) -> str | None:
    """Why the crop at `path` cannot be a training image, or None. Only its header is read."""
    if path is None or not path.exists():
        return "its crop was never received"
    try:
        with JpegImagePlugin.JpegImageFile(path) as image:  # the JPEG parser alone: see server/services/photos.py
            width, height = image.size
    except (OSError, SyntaxError, ValueError) as error:
        return f"its crop is not a JPEG that reads ({error})"
    if width < MIN_SIDE or height < MIN_SIDE:
        return f"its crop is {width}x{height} px, under {MIN_SIDE} px on a side: training drops it as corrupt"
    return None


def _why_left_out(reason: str | None, event: Event, classes: Sequence[str], positive: bool,
                  by_category: bool) -> str | None:
    if reason == RejectReason.OTHER:
        return "rejected for another reason: whether the object was there is not known"
    if positive and event.label not in classes:
        return f"its label {event.label!r} is not among the exported classes"
    if not positive and not by_category and event.label not in classes:
        return (f"a false {event.category.value} ({event.label!r}) may still show one of the exported classes: "
                f"export by category to use it as an image with nothing to find")
    return None
