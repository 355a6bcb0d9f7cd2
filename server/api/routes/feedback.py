"""Operators' verdicts on detections, and the reviewed detections as training data for the city's models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy import select

from gridwatch.contract import Category
from server.api.deps import EvidenceDep, OperatorDep, SessionDep, get_caller
from server.api.schemas import ReviewIn, ReviewOut
from server.models import DetectionReview
from server.services.feedback import RejectReason, ReviewError, Verdict, export_dataset, review

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


@router.get("/api/v1/training-data", summary="Reviewed detections as a YOLO-format dataset (zip)",
            response_class=Response, responses={200: {"content": {"application/zip": {}}}})
def get_training_data(
    session: SessionDep,
    _caller: OperatorDep,
    store: EvidenceDep,
    classes: Annotated[str, Query(description="Class names in label order, comma-separated, as the model's recipe "
                                              "lists them, e.g. garbage.")],
    category: Annotated[Category | None, Query(description="Only detections of this category.")] = None,
) -> Response:
    names = [name.strip() for name in classes.split(",") if name.strip()]
    if not names or len(set(names)) != len(names):
        raise HTTPException(status_code=422, detail="classes: give distinct class names, comma-separated")
    data, summary = export_dataset(session, store, names, category)
    return Response(data, media_type="application/zip", headers={
        "Content-Disposition": 'attachment; filename="gridwatch-feedback.zip"',
        "X-Positives": str(summary["positives"]), "X-Negatives": str(summary["negatives"]),
        "X-Left-Out": str(len(summary["left_out"]))})
