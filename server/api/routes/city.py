"""The city at a glance: grid polygons, and every camera with where it is, its node's state and its open cases."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from shapely.geometry import mapping
from sqlalchemy import func, select

from server.api.deps import SessionDep, get_caller
from server.api.schemas import CameraOut
from server.models import CaseRecord, NodeRecord
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
    # each camera's latest case (where it stands, when it last reported): read from the cases, which every event
    # updates, not from the events themselves (a city's events table grows by millions a day)
    latest = dict(((node, camera), (last_id, seen)) for node, camera, last_id, seen in session.execute(
        select(CaseRecord.node_id, CaseRecord.camera_id, func.max(CaseRecord.id), func.max(CaseRecord.last_seen_at))
        .where(CaseRecord.node_id.is_not(None)).group_by(CaseRecord.node_id, CaseRecord.camera_id)))
    where = {case.id: case for case in session.scalars(
        select(CaseRecord).where(CaseRecord.id.in_([last_id for last_id, _ in latest.values()])))}
    open_cases = dict(((node, camera), count) for node, camera, count in session.execute(
        select(CaseRecord.node_id, CaseRecord.camera_id, func.count()).where(
            CaseRecord.status.in_([s.value for s in OPEN])).group_by(CaseRecord.node_id, CaseRecord.camera_id)))
    nodes = {node.node_id: node for node in session.scalars(select(NodeRecord))}
    result = []
    seen = set(latest)
    for node in nodes.values():  # cameras that have not raised anything yet, from their node's telemetry
        for camera in (node.telemetry or {}).get("cameras", []):
            if (node.node_id, camera.get("camera_id")) not in seen and camera.get("camera_id"):
                result.append(CameraOut(node_id=node.node_id, camera_id=camera["camera_id"], lat=None, lon=None,
                                        last_event_at=None, open_cases=0, node_state=node.state,
                                        fps=camera.get("fps_in")))
    for (node_id, camera_id), (last_id, last_seen) in latest.items():
        node = nodes.get(node_id)
        telemetry = next((c for c in ((node.telemetry or {}).get("cameras", []) if node else [])
                          if c.get("camera_id") == camera_id), {})
        case = where[last_id]
        result.append(CameraOut(
            node_id=node_id, camera_id=camera_id, lat=case.lat, lon=case.lon, last_event_at=last_seen,
            open_cases=open_cases.get((node_id, camera_id), 0), node_state=node.state if node else "unknown",
            fps=telemetry.get("fps_in")))
    return sorted(result, key=lambda camera: (camera.node_id, camera.camera_id))
