from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import func, select

from gridwatch.contract import CaseStatus, Category
from server.api.deps import SessionDep
from server.api.schemas import CaseDetail, CaseSummary, EventOut, Page, TransitionOut
from server.models import CaseRecord, EvidenceRecord
from server.services.cases import CaseService

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

_SORTS = {"opened_at": CaseRecord.opened_at, "updated_at": CaseRecord.updated_at, "id": CaseRecord.id}


def summary(case: CaseRecord) -> CaseSummary:
    return CaseSummary.model_validate(case).model_copy(update={"assignment": CaseService.assignment(case)})


@router.get("", response_model=Page[CaseSummary], summary="List cases, newest first")
def list_cases(
    session: SessionDep,
    status: Annotated[CaseStatus | None, Query(description="Only cases in this status.")] = None,
    category: Annotated[Category | None, Query(description="Only cases of this category.")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    sort: Annotated[str, Query(pattern="^-?(opened_at|updated_at|id)$", description="Field; '-' for descending.")]
    = "-opened_at",
) -> Page[CaseSummary]:
    query = select(CaseRecord)
    if status is not None:
        query = query.where(CaseRecord.status == status.value)
    if category is not None:
        query = query.where(CaseRecord.category == category.value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = _SORTS[sort.lstrip("-")]
    order = (column.desc(), CaseRecord.id.desc()) if sort.startswith("-") else (column.asc(), CaseRecord.id.asc())
    rows = session.scalars(query.order_by(*order).offset((page - 1) * page_size).limit(page_size)).all()
    return Page(items=[summary(case) for case in rows], total=total, page=page, page_size=page_size)


@router.get("/{case_id}", response_model=CaseDetail, summary="One case with its events, evidence and history")
def get_case(case_id: int, session: SessionDep) -> CaseDetail:
    case = session.get(CaseRecord, case_id)
    if case is None:
        raise HTTPException(status_code=404, detail=f"case {case_id} does not exist")
    event_ids = [event.event_id for event in case.events]
    stored = {
        (row.event_id, row.variant)
        for row in session.execute(
            select(EvidenceRecord.event_id, EvidenceRecord.variant).where(EvidenceRecord.event_id.in_(event_ids))
        )
    }
    events = [
        EventOut(
            event_id=event.event_id,
            type=event.type,
            observed_at=event.observed_at,
            received_at=event.received_at,
            dwell_seconds=event.payload["dwell_seconds"],
            score=event.payload["score"],
            box=event.payload["box"],
            evidence_url=f"/api/v1/evidence/{event.event_id}" if (event.event_id, "frame") in stored else None,
            crop_url=f"/api/v1/evidence/{event.event_id}?variant=crop" if (event.event_id, "crop") in stored
            else None,
        )
        for event in case.events
    ]
    return CaseDetail(
        **summary(case).model_dump(),
        violation_id=case.violation_id,
        events=events,
        transitions=[TransitionOut.model_validate(t) for t in case.transitions],
        evidence_urls=[e.evidence_url for e in events if e.evidence_url],
        crop_urls=[e.crop_url for e in events if e.crop_url],
    )
