from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from sqlalchemy import select

from server.api.deps import EvidenceDep, SessionDep, get_caller
from server.models import EvidenceRecord

router = APIRouter(prefix="/api/v1/evidence", tags=["evidence"], dependencies=[Depends(get_caller)])


@router.get("/{event_id}", response_class=FileResponse, summary="The annotated JPEG sent with an event",
            responses={200: {"content": {"image/jpeg": {}}}})
def get_evidence(
    event_id: str,
    session: SessionDep,
    store: EvidenceDep,
    variant: Annotated[Literal["frame", "crop"], Query(description="`frame`: annotated full frame; `crop`: the "
                                                                     "object at full resolution.")] = "frame",
) -> FileResponse:
    record = session.scalar(select(EvidenceRecord).where(EvidenceRecord.event_id == event_id,
                                                         EvidenceRecord.variant == variant))
    if record is None:
        raise HTTPException(status_code=404, detail=f"no {variant} evidence for event {event_id}")
    path = store.path(record.sha256)
    if not path.exists():
        raise HTTPException(status_code=410, detail=f"evidence {record.sha256} is recorded but its file is gone")
    return FileResponse(path, media_type=record.content_type, headers={"ETag": record.sha256})
