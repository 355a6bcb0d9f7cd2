from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from server.api.deps import SessionDep
from server.api.schemas import NodeOut
from server.models import NodeRecord

router = APIRouter(prefix="/api/v1/nodes", tags=["nodes"])


@router.get("", response_model=list[NodeOut], summary="Edge nodes with their availability and latest telemetry")
def list_nodes(session: SessionDep) -> list[NodeOut]:
    return [NodeOut.model_validate(n) for n in session.scalars(select(NodeRecord).order_by(NodeRecord.node_id))]
