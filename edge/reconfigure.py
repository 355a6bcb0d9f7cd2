"""Reconfiguring a node's cameras together: every camera takes its new config, or none does."""

from __future__ import annotations

import logging
import threading

from edge.config import CameraConfig
from edge.detect import ModelError
from edge.manifest import Manifest
from edge.pipeline import CameraPipeline
from gridwatch.config_files import ConfigError

log = logging.getLogger(__name__)

RECONFIGURING = threading.RLock()
"""Held by whatever reads the cameras' configs to change them (a `reload` command, a remote config): two at once take
turns, so neither builds on a config the other is replacing, and the cameras never run a mix of the two."""


def reconfigure_all(pipelines: dict[str, CameraPipeline], cameras: dict[str, CameraConfig],
                    manifest: Manifest | None = None) -> None:
    """Every camera in `cameras` takes its new config, or none does: all are prepared, their models loaded, before
    any switches. A model that will not load (corrupt weights, an export for another runtime) raises ConfigError
    naming the camera, and every camera runs on as it was."""
    with RECONFIGURING:
        prepared = {}
        for camera_id, camera in cameras.items():
            try:
                prepared[camera_id] = pipelines[camera_id].prepare(camera, manifest)
            except ConfigError:
                raise
            except ModelError as error:
                raise ConfigError(f"cameras.{camera_id}: {error}") from None
            except Exception as error:  # whatever else loading a model raises: refused, never half-applied
                log.exception("preparing camera %s for its new config failed", camera_id)
                raise ConfigError(f"cameras.{camera_id}: cannot load its models: {type(error).__name__}: "
                                  f"{error}") from None
        for camera_id, new in prepared.items():
            pipelines[camera_id].adopt(new)
