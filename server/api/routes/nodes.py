from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridwatch.contract import SCHEMA_VERSION, Command, RemoteConfig, command_topic, config_topic
from server.api.deps import EvidenceDep, OperatorDep, PictureViewer, SessionDep, get_caller
from server.api.pictures import ASK_AGAIN, picture
from server.api.schemas import CommandIn, CommandOut, NodeOut, RemoteConfigOut, ZonesIn
from server.core.security import Role
from server.db import begin_writing
from server.models import CameraSnapshot, CaseRecord, NodeCommand, NodeRecord
from server.services.workflow import OPEN

router = APIRouter(prefix="/api/v1/nodes", tags=["nodes"], dependencies=[Depends(get_caller)])


@router.get("", response_model=list[NodeOut], summary="Edge nodes with their availability and latest telemetry")
def list_nodes(session: SessionDep) -> list[NodeOut]:
    return [NodeOut.model_validate(n) for n in session.scalars(select(NodeRecord).order_by(NodeRecord.node_id))]


@router.post("/{node_id}/commands", response_model=CommandOut, status_code=202,
             summary="Send a command (snapshot, reload, restart_camera); the node's answer follows")
def send_command(node_id: str, body: CommandIn, session: SessionDep, request: Request,
                 caller: OperatorDep) -> CommandOut:
    if session.get(NodeRecord, node_id) is None:
        raise HTTPException(status_code=404, detail=f"no node {node_id} has ever connected")
    service = request.app.state.ingest_service
    if service is None or not service.connected.is_set():
        raise HTTPException(status_code=503, detail="the server is not connected to the broker; try again")
    try:
        command = Command(schema_version=SCHEMA_VERSION, request_id=uuid.uuid4().hex, action=body.action,
                          camera_id=body.camera_id, sent_at=datetime.now(UTC))
    except ValidationError as error:
        raise HTTPException(status_code=422, detail=[e["msg"] for e in error.errors()]) from None
    record = NodeCommand(request_id=command.request_id, node_id=node_id, action=command.action.value,
                         camera_id=command.camera_id, sent_by=caller.name)
    session.add(record)
    session.commit()
    service.publish(command_topic(node_id), command.model_dump_json().encode(), qos=1)
    return CommandOut.model_validate(record)


@router.get("/{node_id}/commands/{request_id}", response_model=CommandOut, summary="A command and its answer")
def get_command(node_id: str, request_id: str, session: SessionDep) -> CommandOut:
    record = session.scalar(select(NodeCommand).where(NodeCommand.node_id == node_id,
                                                      NodeCommand.request_id == request_id))
    if record is None:
        raise HTTPException(status_code=404, detail=f"no command {request_id} for node {node_id}")
    return CommandOut.model_validate(record)


@router.get("/{node_id}/cameras/{camera_id}/snapshot", response_class=FileResponse,
            summary="The camera's latest snapshot (send a snapshot command for a fresh one)",
            responses={200: {"content": {"image/jpeg": {}}}})
def get_snapshot(node_id: str, camera_id: str, request: Request, session: SessionDep, store: EvidenceDep,
                 caller: PictureViewer) -> Response:
    snapshot = session.scalar(select(CameraSnapshot).where(CameraSnapshot.node_id == node_id,
                                                           CameraSnapshot.camera_id == camera_id))
    if snapshot is None or not store.path(snapshot.sha256).exists():
        raise HTTPException(status_code=404, detail=f"no snapshot of camera {camera_id} of node {node_id}")
    if caller.role is Role.FIELD_STAFF and (caller.unit is None or session.scalar(  # as for evidence
            select(CaseRecord.id).where(CaseRecord.node_id == node_id, CaseRecord.camera_id == camera_id,
                                        CaseRecord.unit_id == caller.unit,
                                        CaseRecord.status.in_([status.value for status in OPEN])).limit(1)) is None):
        raise HTTPException(status_code=403, detail=f"field staff see the pictures of their unit's cases only: "
                                                    f"camera {camera_id} has no open case of unit {caller.unit}")
    return picture(request, store.path(snapshot.sha256), "image/jpeg", snapshot.sha256, ASK_AGAIN)


def _remote_out(node: NodeRecord) -> RemoteConfigOut:
    desired = node.remote_config or {"config_version": "", "cameras": {}}
    status = node.config_status if node.config_status and node.config_status.get("config_version") == desired[
        "config_version"] else None
    return RemoteConfigOut(node_id=node.node_id, config_version=desired["config_version"],
                           cameras=desired.get("cameras", {}), status=status)


@router.get("/{node_id}/config", response_model=RemoteConfigOut,
            summary="The remote config last sent to the node, and the node's answer to it")
def get_remote_config(node_id: str, session: SessionDep) -> RemoteConfigOut:
    node = session.get(NodeRecord, node_id)
    if node is None:
        raise HTTPException(status_code=404, detail=f"no node {node_id} has ever connected")
    return _remote_out(node)


@router.put("/{node_id}/cameras/{camera_id}/zones", response_model=RemoteConfigOut, status_code=202,
            summary="Replace a camera's zones: sent to the node as its retained remote config; it applies or "
                    "refuses them (GET .../config shows which)")
def put_zones(node_id: str, camera_id: str, body: ZonesIn, session: SessionDep, request: Request,
              caller: OperatorDep) -> RemoteConfigOut:
    return _change_cameras(session, request, node_id, camera_id, caller.name, {"zones": body.zones})


@router.delete("/{node_id}/cameras/{camera_id}/zones", response_model=RemoteConfigOut, status_code=202,
               summary="Stop sending a camera's settings: its entry leaves the remote config (the node keeps what "
                       "it has until its own file or a later config changes it)")
def delete_zones(node_id: str, camera_id: str, session: SessionDep, request: Request,
                 caller: OperatorDep) -> RemoteConfigOut:
    return _change_cameras(session, request, node_id, camera_id, caller.name, None)


def _change_cameras(session: Session, request: Request, node_id: str, camera_id: str, by: str,
                    settings: dict | None) -> RemoteConfigOut:
    """The node's remote config with `camera_id`'s settings merged in (None: its entry dropped), saved and sent.
    The node's row is locked meanwhile and the config published before the commit, so that two operators' changes
    at once neither lose one another nor reach the broker in the other order (its retained copy is the last)."""
    service = request.app.state.ingest_service
    if service is None or not service.connected.is_set():
        raise HTTPException(status_code=503, detail="the server is not connected to the broker; try again")
    begin_writing(session)
    node = session.get(NodeRecord, node_id, with_for_update=True, populate_existing=True)
    if node is None:
        raise HTTPException(status_code=404, detail=f"no node {node_id} has ever connected")
    desired = dict(node.remote_config or {"cameras": {}})
    cameras = dict(desired.get("cameras", {}))
    if settings is None:
        if cameras.pop(camera_id, None) is None:
            raise HTTPException(status_code=404, detail=f"the remote config of node {node_id} has no camera "
                                                        f"{camera_id}")
    else:
        reported = [camera["camera_id"] for camera in (node.telemetry or {}).get("cameras", [])]
        if reported and camera_id not in reported:  # the node would refuse the whole config for it
            raise HTTPException(status_code=422, detail=f"node {node_id} has no camera {camera_id} (its telemetry "
                                                        f"names {', '.join(sorted(reported))})")
        cameras[camera_id] = {**cameras.get(camera_id, {}), **settings}
    version = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%f}-{by}"[:64]
    try:
        config = RemoteConfig(schema_version=SCHEMA_VERSION, config_version=version, cameras=cameras,
                              manifest=desired.get("manifest"))
    except ValidationError as error:
        raise HTTPException(status_code=422, detail=[e["msg"] for e in error.errors()]) from None
    node.remote_config = json.loads(config.model_dump_json(exclude_none=True))
    service.publish(config_topic(node_id), config.model_dump_json(exclude_none=True).encode(), qos=1, retain=True)
    session.commit()
    return _remote_out(node)
