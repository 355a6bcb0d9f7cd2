"""The city at a glance: grid polygons, and every camera with where it is, its node's state and its open cases."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from shapely.geometry import mapping
from sqlalchemy import func, select

from server.api.deps import SessionDep, get_caller
from server.api.schemas import CameraOut
from server.models import CaseRecord, EventRecord, NodeRecord
from server.services.dispatch import Dispatcher
from server.services.workflow import OPEN

router = APIRouter(prefix="/api/v1", tags=["city"], dependencies=[Depends(get_caller)])


@router.get("/grids", summary="Unit grids as GeoJSON (polygons with grid id, community, street, street chief)")
def grids(request: Request) -> dict:
    dispatcher: Dispatcher = request.app.state.ingest.cases.dispatcher
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(grid.geometry),
         "properties": grid.properties.model_dump(mode="json", exclude_none=True)} for grid in dispatcher.grids]}


@router.get("/cameras", response_model=list[CameraOut],
            summary="Every camera a node reports or an event came from: position, last event, open cases, node state")
def cameras(session: SessionDep) -> list[CameraOut]:
    last = (select(EventRecord.node_id, EventRecord.camera_id, func.max(EventRecord.id).label("last_id"))
            .group_by(EventRecord.node_id, EventRecord.camera_id).subquery())
    rows = session.execute(select(EventRecord).join(last, EventRecord.id == last.c.last_id)).scalars().all()
    open_cases = dict(((node, camera), count) for node, camera, count in session.execute(
        select(CaseRecord.node_id, CaseRecord.camera_id, func.count()).where(
            CaseRecord.status.in_([s.value for s in OPEN])).group_by(CaseRecord.node_id, CaseRecord.camera_id)))
    nodes = {node.node_id: node for node in session.scalars(select(NodeRecord))}
    result = []
    seen = {(event.node_id, event.camera_id) for event in rows}
    for node in nodes.values():  # cameras that have not raised anything yet, from their node's telemetry
        for camera in (node.telemetry or {}).get("cameras", []):
            if (node.node_id, camera.get("camera_id")) not in seen and camera.get("camera_id"):
                result.append(CameraOut(node_id=node.node_id, camera_id=camera["camera_id"], lat=None, lon=None,
                                        last_event_at=None, open_cases=0, node_state=node.state,
                                        fps=camera.get("fps_in")))
    for event in sorted(rows, key=lambda e: (e.node_id, e.camera_id)):
        node = nodes.get(event.node_id)
        telemetry = next((c for c in ((node.telemetry or {}).get("cameras", []) if node else [])
                          if c.get("camera_id") == event.camera_id), {})
        location = event.payload.get("location") or {}
        result.append(CameraOut(
            node_id=event.node_id, camera_id=event.camera_id, lat=location.get("lat"), lon=location.get("lon"),
            last_event_at=event.observed_at, open_cases=open_cases.get((event.node_id, event.camera_id), 0),
            node_state=node.state if node else "unknown", fps=telemetry.get("fps_in")))
    return sorted(result, key=lambda camera: (camera.node_id, camera.camera_id))
