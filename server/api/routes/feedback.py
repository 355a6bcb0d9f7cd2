"""Operators' verdicts on detections, and the reviewed detections as training data for the city's models."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from typing import IO, Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from gridwatch.contract import Category
from server.api.deps import EvidenceDep, OperatorDep, SessionDep, get_caller, moment_problem
from server.api.schemas import ReviewIn, ReviewOut
from server.models import DetectionReview
from server.services.feedback import RejectReason, ReviewError, Verdict, review
from server.services.training_data import export_dataset

router = APIRouter(tags=["feedback"], dependencies=[Depends(get_caller)])


@router.put("/api/v1/events/{event_id}/review", response_model=ReviewOut,
            summary="Confirm or reject a detection (the event that raised it)")
def put_review(event_id: str, body: ReviewIn, session: SessionDep, caller: OperatorDep) -> ReviewOut:
    try:
        record = review(session, event_id, Verdict(body.verdict), RejectReason(body.reason) if body.reason else None,
                        caller.name, body.note)
    except ReviewError as error:
        raise HTTPException(status_code=error.status, detail=str(error)) from None
    return ReviewOut.model_validate(record)


@router.get("/api/v1/events/{event_id}/review", response_model=ReviewOut, summary="The verdict on a detection")
def get_review(event_id: str, session: SessionDep) -> ReviewOut:
    record = session.scalar(select(DetectionReview).where(DetectionReview.event_id == event_id))
    if record is None:
        raise HTTPException(status_code=404, detail=f"event {event_id} has not been reviewed")
    return ReviewOut.model_validate(record)


CHUNK = 1 << 20
"""Bytes of the zip sent at a time."""


@router.get("/api/v1/training-data", summary="Reviewed detections as a YOLO-format dataset (zip)",
            response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}})
def get_training_data(
    session: SessionDep,
    _caller: OperatorDep,
    store: EvidenceDep,
    classes: Annotated[str, Query(description="Class names in label order, comma-separated, as the model's recipe "
                                              "lists them, e.g. garbage.")],
    category: Annotated[Category | None, Query(description="Only detections of this category.")] = None,
    since: Annotated[datetime | None, Query(description=(
        "Only verdicts given (or changed) at or after this time, ISO 8601 with a time zone: what is new since the "
        "last export, whose `until` (export.json, X-Verdicts-Until) this is."))] = None,
) -> StreamingResponse:
    names = [name.strip() for name in classes.split(",") if name.strip()]
    if not names or len(set(names)) != len(names):
        raise HTTPException(status_code=422, detail="classes: give distinct class names, comma-separated")
    if problem := moment_problem("since", since):
        raise HTTPException(status_code=422, detail=problem)
    # on the evidence disk, which holds the crops already (a temporary folder may be memory), and nameless: the
    # file is gone once sent, or once the client goes away, or the server with it
    archive = tempfile.TemporaryFile(dir=store.root)
    try:
        summary = export_dataset(session, store, names, archive, category, since)
        size = archive.tell()
    except BaseException:
        archive.close()
        raise
    headers = {"Content-Disposition": 'attachment; filename="gridwatch-feedback.zip"', "Content-Length": str(size),
               "X-Positives": str(summary["positives"]), "X-Negatives": str(summary["negatives"]),
               "X-Left-Out": str(len(summary["left_out"])), "X-Verdicts-Until": summary["until"]}
    if summary["since"]:
        headers["X-Verdicts-Since"] = summary["since"]
    return StreamingResponse(_sent(archive), media_type="application/zip", headers=headers)


async def _sent(archive: IO[bytes]) -> AsyncIterator[bytes]:
    """The zip a chunk at a time, closed (and so deleted) at its end, or as soon as the client goes away: read here,
    in the event loop's own generator, the cancellation reaches it (a plain generator, run by Starlette in a
    thread, was left suspended, the whole zip held on disk until a garbage collection)."""
    try:
        await run_in_threadpool(archive.seek, 0)
        while chunk := await run_in_threadpool(archive.read, CHUNK):
            yield chunk
    finally:
        archive.close()
