"""Commands from the command centre (`gw/v1/nodes/{id}/command`): snapshot now, reload, restart a camera. Every
command gets an answer on `command/response` with its request id, also when it cannot be read or carried out."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
from pydantic import ValidationError

from edge.config import CameraConfig, NodeConfig, load_node_config
from edge.manifest import Manifest, load_manifest
from edge.pipeline import CameraPipeline
from edge.reconfigure import RECONFIGURING, reconfigure_all
from gridwatch.config_files import ConfigError, format_validation_error
from gridwatch.contract import (
    SCHEMA_VERSION,
    Command,
    CommandAction,
    CommandResponse,
    ConfigStatus,
    SnapshotRef,
    snapshot_topic,
)

log = logging.getLogger(__name__)

RESTART_WAIT_SECONDS = 10.0
Publish = Callable[[str, bytes], None]


class CommandFailed(Exception):
    pass


class CommandHandler:
    def __init__(self, config: NodeConfig, pipelines: dict[str, CameraPipeline], publish_snapshot: Publish,
                 config_path: Path | None = None,
                 reload_cameras: Callable[[dict[str, CameraConfig], Manifest], ConfigStatus | None] | None = None,
                 overrides: Callable[[NodeConfig], NodeConfig] | None = None) -> None:
        self.config = config
        self.overrides = overrides
        """What the command line changed of the file's config (`--source`, `--model`): laid over it again at a
        reload, which would otherwise see the file differ from the node it runs and refuse."""
        self.pipelines = pipelines
        self.publish_snapshot = publish_snapshot
        """Publishes a JPEG retained at QoS 1 (the latest snapshot of a camera is what a zone editor draws on)."""
        self.config_path = config_path
        self.reload_cameras = reload_cameras
        """Switches the cameras to the reloaded file's with the remote config in force laid over them, in one step
        (`RemoteConfigurator.reload`); without it, to the file's alone."""

    def handle(self, payload: bytes) -> CommandResponse:
        try:
            command = Command.model_validate_json(payload)
        except ValidationError as error:
            request_id = request_id_of(payload)
            return self._response(request_id, "unknown", False, format_validation_error(error, "command"))
        try:
            if command.camera_id is not None and command.camera_id not in self.pipelines:
                raise CommandFailed(f"no camera {command.camera_id} on this node ({', '.join(self.pipelines)})")
            if command.action is CommandAction.SNAPSHOT:
                snapshots, missing = self.snapshot(command.camera_id)
                detail = "; ".join([f"{len(snapshots)} snapshot(s) published", *missing])
                return self._response(command.request_id, command.action, True, detail, snapshots)
            if command.action is CommandAction.RELOAD:
                return self._response(command.request_id, command.action, True, self.reload())
            return self._response(command.request_id, command.action, True, self.restart(command.camera_id))
        except CommandFailed as error:
            log.warning("command %s (%s) failed: %s", command.request_id, command.action.value, error)
            return self._response(command.request_id, command.action, False, str(error))

    def snapshot(self, camera_id: str | None) -> tuple[list[SnapshotRef], list[str]]:
        """Each camera's latest frame (or the one named), and what of the others the answer names: those that have
        delivered none yet, and those no longer delivering (a live camera offline: its last frame is not the street
        now, and the one retained stays as it is). All of them missing, or the one named, is a failure; one camera
        missing of several does not hold up the others'."""
        refs, dark, offline = [], [], []
        for pipeline_id, pipeline in self.pipelines.items():
            if camera_id not in (None, pipeline_id):
                continue
            image = pipeline.last_image
            if image is None:
                dark.append(pipeline_id)
                continue
            if not pipeline.delivering():
                offline.append(pipeline_id)
                continue
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise CommandFailed(f"camera {pipeline_id}: JPEG encoding failed")
            jpeg = encoded.tobytes()
            topic = snapshot_topic(self.config.node_id, pipeline_id)
            self.publish_snapshot(topic, jpeg)
            refs.append(SnapshotRef(camera_id=pipeline_id, topic=topic, sha256=hashlib.sha256(jpeg).hexdigest(),
                                    bytes=len(jpeg)))
        missing = ([f"no frame yet from {', '.join(dark)}"] if dark else []) + (
            [f"{', '.join(offline)} not delivering frames (not snapshotted)"] if offline else [])
        if dark and not offline and not refs:
            raise CommandFailed(f"{'camera' if len(dark) == 1 else 'cameras'} {', '.join(dark)}: no frame delivered "
                                f"yet")
        if missing and not refs:
            raise CommandFailed(f"no snapshot taken: {'; '.join(missing)}")
        return refs, missing

    def reload(self) -> str:
        """The configuration file and the manifest again: zones, rules, rates, tuning and models change in place;
        a camera added, removed or given another source needs a restart and is refused, changing nothing."""
        with RECONFIGURING:  # a remote config arriving meanwhile waits
            return self._reload()

    def _reload(self) -> str:
        if self.config_path is None:
            raise CommandFailed("this node was not started from a configuration file")
        try:
            fresh = load_node_config(self.config_path)
            if self.overrides is not None:
                fresh = self.overrides(fresh)
            manifest = load_manifest(fresh.manifest)
        except ConfigError as error:
            raise CommandFailed(f"not reloaded: {error}") from None
        changed = sorted(key for key in type(fresh).model_fields  # reload applies cameras; the rest needs a restart
                         if key != "cameras" and getattr(fresh, key) != getattr(self.config, key))
        if changed:
            raise CommandFailed(f"not reloaded: {', '.join(changed)} changed; restart the node to apply "
                                f"node settings (reload applies cameras: zones, rules, rates, tuning, models)")
        cameras = {camera.camera_id: camera for camera in fresh.cameras}
        if set(cameras) != set(self.pipelines):
            raise CommandFailed(f"not reloaded: cameras changed ({', '.join(sorted(cameras))} in the file, "
                                f"{', '.join(sorted(self.pipelines))} running); restart the node to add or remove one")
        moved = [cid for cid, camera in cameras.items() if (camera.source, camera.realtime, camera.loop) != (
            (running := self.pipelines[cid].camera).source, running.realtime, running.loop)]
        if moved:
            raise CommandFailed(f"not reloaded: the source (source, realtime, loop) of {', '.join(moved)} changed; "
                                f"restart the node")
        try:
            for camera_id, camera in cameras.items():
                self.pipelines[camera_id].check_served(camera, manifest)
            if self.reload_cameras is None:
                reconfigure_all(self.pipelines, cameras, manifest)
                status = None
            else:  # the command centre's remote config stays in force over the file
                status = self.reload_cameras(cameras, manifest)
        except ConfigError as error:
            raise CommandFailed(f"not reloaded: {error}") from None
        done = f"reloaded {self.config_path.name}: {len(cameras)} camera(s)"
        if status is not None:
            done += f"; remote config {status.config_version} {status.state.value}" + (
                f": {status.reason}" if status.reason else " over it")
        return done

    def restart(self, camera_id: str) -> str:
        source = self.pipelines[camera_id].source
        restarts = source.restarts
        source.request_restart()
        deadline = time.monotonic() + RESTART_WAIT_SECONDS
        while time.monotonic() < deadline:
            if source.restarts > restarts:
                return f"camera {camera_id} reopened"
            time.sleep(0.05)
        raise CommandFailed(f"camera {camera_id} did not reopen within {RESTART_WAIT_SECONDS:.0f} s "
                            f"(a live source keeps retrying)")

    def _response(self, request_id: str, action: str, ok: bool, detail: str,
                  snapshots: list[SnapshotRef] | None = None) -> CommandResponse:
        return CommandResponse(schema_version=SCHEMA_VERSION, node_id=self.config.node_id, request_id=request_id,
                               action=str(action), ok=ok, detail=detail, snapshots=snapshots or [],
                               at=datetime.now(UTC))


def request_id_of(payload: bytes) -> str:
    """The request id of a command that failed validation, when it can be read at all."""
    import json

    try:
        value = json.loads(payload).get("request_id")
    except (ValueError, AttributeError):
        return "unknown"
    return value if isinstance(value, str) and 0 < len(value) <= 64 else "unknown"
