"""Remote configuration: the server's retained `config` message changes a node's zones, schedules, rates, tuning and
health checks without a restart. Everything is validated before anything changes; a refused config leaves the node
on its last good one, which is kept on disk and applied again at the next start.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from edge.config import CameraConfig
from edge.manifest import Manifest, load_manifest
from edge.reconfigure import RECONFIGURING, reconfigure_all
from edge.zones import Zone
from gridwatch.config_files import ConfigError, format_validation_error
from gridwatch.contract import ConfigState, ConfigStatus, RemoteConfig
from gridwatch.durable import replace_durably

log = logging.getLogger(__name__)

REMOTE_KEYS = frozenset({"zones", "detect_fps", "motion_gating", "idle_detect_seconds", "tuning", "health",
                         "location"})
"""What the command centre may change. The source and the camera id stay with whoever installed the node."""


MERGED_KEYS = frozenset({"tuning", "health"})
"""Sections a config changes key by key: the keys it names, over what runs (the rest stays as it is, not the
defaults). Any other key it names replaces the camera's (its zones, its location)."""


class Refused(ValueError):
    pass


def merged_settings(running: dict, settings: dict) -> dict:
    """A camera's `settings` laid over what it runs, `running` (both in the node config's own format)."""
    merged = {**running, **settings}
    for key in MERGED_KEYS & set(settings):
        if isinstance(settings[key], dict) and isinstance(running.get(key), dict):
            merged[key] = {**running[key], **settings[key]}
    return merged


class RemoteConfigurator:
    def __init__(self, node_id: str, pipelines: dict, store: Path) -> None:  # noqa: ANN001 - camera_id -> pipeline
        self.node_id = node_id
        self.pipelines = pipelines
        self.store = store
        self.current_version: str | None = None
        self._in_force: bytes | None = None
        """The config in force as it came: what a `reload` lays over the file again (its copy on disk may have
        failed to be written)."""
        self.own_manifest: Manifest | None = next(iter(pipelines.values())).manifest if pipelines else None
        """The manifest the node started with (None on a node without cameras)."""

    def apply(self, payload: bytes) -> ConfigStatus:
        with RECONFIGURING:
            return self._apply(payload)

    def _apply(self, payload: bytes) -> ConfigStatus:
        version = "unknown"
        try:
            try:
                remote = RemoteConfig.model_validate_json(payload)
            except ValidationError as error:
                raise Refused(format_validation_error(error, "config")) from None
            version = remote.config_version
            if version == self.current_version:
                # Redelivered on every reconnect (it is retained): already in force, and re-applying would reset
                # the open violations of its zones.
                return self._status(version, ConfigState.APPLIED, None)
            manifest = self._manifest(remote.manifest)
            cameras = self._validated(remote, manifest)
            try:  # models loaded for every camera before any switches: a model that will not load changes none
                reconfigure_all(self.pipelines, cameras, manifest)
            except ConfigError as error:
                raise Refused(str(error)) from None
        except Refused as error:
            log.warning("refused remote config %s: %s", version, error)
            return self._status(version, ConfigState.REFUSED, str(error))
        self.current_version, self._in_force = version, payload  # in force now, whatever becomes of the disk copy
        log.info("applied remote config %s to %s", version, ", ".join(cameras) or "no camera")
        try:
            replace_durably(self.store, payload)
        except OSError as error:  # in force, but a restart would start on the one before until the broker resends
            log.error("remote config %s applied but not kept on disk (%s); after a restart the node runs on the "
                      "last kept one until the broker delivers this one again", version, error)
        return self._status(version, ConfigState.APPLIED, None)

    def reload(self, cameras: dict[str, CameraConfig], own_manifest: Manifest) -> ConfigStatus | None:
        """A `reload`: the file's `cameras` (and its manifest, now the node's own: a config naming no manifest keeps
        the reloaded models) with the config in force laid over them, switched to in one step, so that what the
        config sets over the file is not changed and changed back (the open violations of its zones carry on). A
        config that no longer fits the reloaded file is refused, and the file's cameras take over alone. Raises
        ConfigError when even those cannot be applied (nothing changes)."""
        with RECONFIGURING:  # the node's manifest is the reloaded one only once its cameras run on it
            version, payload = self.current_version, self._in_force
            if version is None or payload is None:
                reconfigure_all(self.pipelines, cameras, own_manifest)
                self.own_manifest = own_manifest
                return None
            try:
                try:
                    remote = RemoteConfig.model_validate_json(payload)
                except ValidationError as error:
                    raise Refused(format_validation_error(error, "config")) from None
                manifest = self._manifest(remote.manifest, own_manifest)
                overlaid = self._validated(remote, manifest, base=cameras)
                try:
                    reconfigure_all(self.pipelines, overlaid, manifest)
                except ConfigError as error:
                    raise Refused(str(error)) from None
            except Refused as error:
                log.warning("remote config %s does not fit the reloaded file: %s; the file's cameras run", version,
                            error)
                reconfigure_all(self.pipelines, cameras, own_manifest)
                self.own_manifest = own_manifest
                self.current_version = self._in_force = None
                return self._status(version, ConfigState.REFUSED, str(error))
            self.own_manifest = own_manifest
            return self._status(version, ConfigState.APPLIED, None)

    def restore(self) -> ConfigStatus | None:
        """Apply the last good config kept on disk (at start, before the broker's retained copy arrives)."""
        if not self.store.exists():
            return None
        return self.apply(self.store.read_bytes())

    def _manifest(self, name: str | None, own: Manifest | None = None) -> Manifest:
        """The manifest the config names, from beside the node's own (where models are installed); the node's own
        (`own`, a reload's, else the one it runs) when it names none, so a roll-out ends by publishing a config
        without `manifest`."""
        if not self.pipelines:
            raise Refused("this node has no cameras to configure")
        if name is None:
            return own or self.own_manifest
        path = next(iter(self.pipelines.values())).node.manifest.parent / name
        try:
            return load_manifest(path)
        except ConfigError as error:
            raise Refused(f"manifest: {error}") from None

    def _validated(self, remote: RemoteConfig, manifest: Manifest,
                   base: dict[str, CameraConfig] | None = None) -> dict[str, CameraConfig]:
        """The new config of each camera it changes: those it names, and all of them when the models change. Laid
        over `base` (a reloaded file's cameras) where given, else over what each camera runs."""
        unknown = sorted(set(remote.cameras) - set(self.pipelines))
        if unknown:
            raise Refused(f"cameras.{unknown[0]}: this node has no such camera ({', '.join(self.pipelines)})")
        cameras = {}
        for camera_id, pipeline in self.pipelines.items():
            same_models = pipeline.manifest == manifest and pipeline.models_current()
            start = (base or {}).get(camera_id, pipeline.camera)
            if camera_id not in remote.cameras and same_models and start == pipeline.camera:
                continue  # untouched: its open violations carry on
            settings = remote.cameras.get(camera_id, {})
            forbidden = sorted(set(settings) - REMOTE_KEYS)
            if forbidden:
                raise Refused(f"cameras.{camera_id}: {', '.join(forbidden)} cannot be changed remotely "
                              f"(allowed: {', '.join(sorted(REMOTE_KEYS))})")
            merged = merged_settings(json.loads(start.model_dump_json()), settings)
            try:
                camera = CameraConfig.model_validate(merged)
                for zone in camera.zones:
                    Zone(zone)  # geometry checks: self-intersecting polygons are refused here, not mid-stream
                pipeline.check_served(camera, manifest)
            except ValidationError as error:
                raise Refused(format_validation_error(error, "config", prefix=f"cameras.{camera_id}.")) from None
            except ValueError as error:
                raise Refused(f"cameras.{camera_id}: {error}") from None
            if camera == pipeline.camera and same_models:
                continue  # named again as it is (the server sends every camera's zones with each change)
            cameras[camera_id] = camera
        return cameras

    def _status(self, version: str, state: ConfigState, reason: str | None) -> ConfigStatus:
        return ConfigStatus(node_id=self.node_id, config_version=version, state=state, reason=reason,
                            at=datetime.now(UTC))
