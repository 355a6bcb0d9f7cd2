"""Photos of a case: field staff report back with the street as they left it; operators may add one too."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse

from gridwatch.contract import CaseStatus
from server.api.deps import BigRowId, CaseWorker, EvidenceDep, PictureViewer, RowId, SessionDep, get_caller
from server.api.pictures import picture
from server.api.routes.cases import _case
from server.api.schemas import PhotoOut
from server.core.security import Role, TokenEntry
from server.models import CasePhoto, CaseRecord, utcnow
from server.services.photos import PhotoRefused, Stage, add_photo
from server.services.workflow import IN_UNIT

router = APIRouter(prefix="/api/v1/cases", tags=["cases"], dependencies=[Depends(get_caller)])
FIELD_STAGES = IN_UNIT | {CaseStatus.FEEDBACK, CaseStatus.DEFERRED}
"""While field staff may add photos: the case is in their unit's hands, or just reported back."""


async def photo_body(request: Request) -> bytes:
    """The request body, read no further than `photo_max_bytes` (413 past it)."""
    limit = request.app.state.settings.photo_max_bytes
    too_large = HTTPException(status_code=413, detail=f"a photo may be at most {limit:,} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _field_staff_of(caller: TokenEntry, case: CaseRecord) -> None:
    """Field staff see and add the photos of their own unit's cases only (as its evidence)."""
    if caller.role is Role.FIELD_STAFF and (caller.unit is None or caller.unit != case.unit_id):
        raise HTTPException(status_code=403, detail=f"case {case.id} is assigned to {case.unit_id}, not to your "
                                                    f"unit {caller.unit or '(none)'}")


@router.post("/{case_id}/photos", response_model=PhotoOut, status_code=201,
             summary="Add a photo to a case: the JPEG or PNG bytes as the body (Content-Type image/jpeg or image/png)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                 "image/png": {"schema": {"type": "string", "format": "binary"}}}}},
             responses={409: {"description": "Field staff: the case is not in their unit's hands; or the case "
                                             "holds the most photos it keeps."},
                        413: {"description": "Larger than photo_max_bytes."},
                        422: {"description": "Not a JPEG or PNG that decodes, or too many megapixels."}})
def add(case_id: RowId, caller: CaseWorker, session: SessionDep, store: EvidenceDep,
        data: Annotated[bytes, Depends(photo_body)],
        stage: Annotated[Stage, Query(description="`after` (as left: with a feedback), `before` (as found) or "
                                                  "`other`.")] = Stage.AFTER,
        caption: Annotated[str | None, Query(max_length=500, description="What it shows.")] = None) -> PhotoOut:
    case = _case(session, case_id)
    _field_staff_of(caller, case)
    if caller.role is Role.FIELD_STAFF and CaseStatus(case.status) not in FIELD_STAGES:
        raise HTTPException(status_code=409, detail=f"case {case_id} is {case.status}: field staff add photos while "
                                                    f"it is {', '.join(sorted(s.value for s in FIELD_STAGES))}")
    try:
        photo = add_photo(session, store, case, data, stage, caption, caller.name, utcnow())
    except PhotoRefused as refused:
        raise HTTPException(status_code=refused.status_code, detail=str(refused)) from None
    session.commit()
    return PhotoOut.of(photo)


@router.get("/{case_id}/photos/{photo_id}", response_class=FileResponse, summary="A photo of the case",
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
def get_photo(case_id: RowId, photo_id: BigRowId, request: Request, session: SessionDep, store: EvidenceDep,
              caller: PictureViewer) -> Response:
    photo = session.get(CasePhoto, photo_id)
    if photo is None or photo.case_id != case_id:
        raise HTTPException(status_code=404, detail=f"case {case_id} has no photo {photo_id}")
    _field_staff_of(caller, _case(session, case_id))
    path = store.path(photo.sha256)
    if not path.exists():
        raise HTTPException(status_code=410, detail=f"photo {photo.sha256} is recorded but its file is gone")
    return picture(request, path, photo.content_type, photo.sha256)
