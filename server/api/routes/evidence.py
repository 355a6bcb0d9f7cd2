from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import select

from server.api.deps import EvidenceDep, PictureViewer, SessionDep, get_caller
from server.api.pictures import picture
from server.core.security import Role
from server.models import CaseRecord, EventRecord, EvidenceRecord

router = APIRouter(prefix="/api/v1/evidence", tags=["evidence"], dependencies=[Depends(get_caller)])


@router.get("/{event_id}", response_class=FileResponse, summary="The annotated JPEG sent with an event",
            responses={200: {"content": {"image/jpeg": {}}}})
def get_evidence(
    event_id: str,
    request: Request,
    session: SessionDep,
    store: EvidenceDep,
    caller: PictureViewer,
    variant: Annotated[Literal["frame", "crop"], Query(description="`frame`: annotated full frame; `crop`: the "
                                                                     "object at full resolution.")] = "frame",
) -> Response:
    record = session.scalar(select(EvidenceRecord).where(EvidenceRecord.event_id == event_id,
                                                         EvidenceRecord.variant == variant))
    if record is None:
        raise HTTPException(status_code=404, detail=f"no {variant} evidence for event {event_id}")
    if caller.role is Role.FIELD_STAFF:
        unit = session.scalar(select(CaseRecord.unit_id).join(EventRecord, EventRecord.case_id == CaseRecord.id)
                              .where(EventRecord.event_id == event_id))
        if unit is None or unit != caller.unit:
            raise HTTPException(status_code=403, detail=f"field staff of {caller.unit or 'no unit'} may not see "
                                                        "the evidence of another unit's case")
    path = store.path(record.sha256)
    if not path.exists():
        raise HTTPException(status_code=410, detail=f"evidence {record.sha256} is recorded but its file is gone")
    return picture(request, path, record.content_type, record.sha256)
