from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from server.api.deps import OperatorDep, PageNumber, PageSize, SessionDep, get_caller
from server.api.schemas import DeadLetterOut, Page
from server.models import DeadLetter

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"], dependencies=[Depends(get_caller)])


@router.get("", response_model=Page[DeadLetterOut], summary="Messages that were refused, with the reason")
def list_dead_letters(
    session: SessionDep,
    _caller: OperatorDep,
    node_id: Annotated[str | None, Query(max_length=64, description="Only messages from this node's topics.")] = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> Page[DeadLetterOut]:
    query = select(DeadLetter)
    if node_id is not None:
        query = query.where(DeadLetter.node_id == node_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(DeadLetter.id.desc()).offset((page - 1) * page_size).limit(page_size)
    ).all()
    items = [
        DeadLetterOut(id=row.id, received_at=row.received_at, topic=row.topic, node_id=row.node_id,
                      reason=row.reason, payload_size=len(row.payload),
                      payload_preview=row.payload[:2000].decode("utf-8", errors="replace")[:500])
        for row in rows
    ]
    return Page(items=items, total=total, page=page, page_size=page_size)
