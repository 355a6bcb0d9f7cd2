"""Node and camera configuration: YAML validated by pydantic; a wrong key is an error that names it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from shapely.geometry import Polygon

from edge.health_config import HealthConfig
from edge.manifest import DEFAULT_MANIFEST
from edge.schedule import TimeWindow
from edge.streetlight_config import StreetlightConfig
from gridwatch.config_files import load_yaml_model, read_secret
from gridwatch.contract import DEFAULT_EVENT_CODES, NODE_ID_PATTERN, Category, EventCode, Location
from gridwatch.mqtt import check_ca_file

DEFAULT_MODEL = "yolo11n.pt"
MODEL_ENV = "GRIDWATCH_MODEL"

log = logging.getLogger(__name__)

ZoneRule = Literal["no_parking", "no_vending", "no_litter", "vending_allowed"]
Point = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


RESERVED_ZONE_IDS = frozenset({"camera", "lamp"})
"""What camera-health and streetlight faults name as their zone (edge/health.py, edge/streetlight.py): a zone of
that id would take their events over (its code, place and outline)."""


class ZoneConfig(_Config):
    zone_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Unique within the camera.")
    rule: ZoneRule = Field(
        description="`no_parking`: vehicles staying still; `no_vending`: stalls with people around them; "
                    "`no_litter`: unattended objects left lying; `vending_allowed`: where (and when, by its schedule) "
                    "vending is permitted even inside a no-vending zone."
    )
    polygon: list[Point] = Field(
        min_length=3, description="Corners in frame coordinates normalised to 0..1, (0, 0) the top left."
    )
    dwell_seconds: float = Field(default=180.0, gt=0, description="How long a vehicle stays still before it counts.")
    location: Location | None = Field(default=None, description="Where the zone is; defaults to the camera's.")
    code: EventCode | None = Field(default=None, description="Event code for this zone (letters, digits, `.`, `_`, "
                                                             "`-`; up to 16); defaults to the category's.")
    schedule: list[TimeWindow] = Field(
        default_factory=list,
        description="When the rule applies, e.g. [{days: [mon, tue, wed, thu, fri], start: '07:00', end: '19:00'}]; "
                    "empty: always.",
    )

    @field_validator("zone_id")
    @classmethod
    def _not_reserved(cls, zone_id: str) -> str:
        if zone_id in RESERVED_ZONE_IDS:
            raise ValueError(f"{zone_id!r} is the zone id of the device's own faults; name the zone otherwise")
        return zone_id

    @field_validator("polygon")
    @classmethod
    def _a_simple_polygon(cls, polygon: list[Point]) -> list[Point]:
        """Refused here, with the key's path, not when the camera starts."""
        shape = Polygon(polygon)
        if not shape.is_valid or shape.area <= 0:
            raise ValueError("the polygon is self-intersecting or has no area")
        return polygon


class RuleTuning(_Config):
    """Knobs shared by a camera's rules; the defaults suit street cameras at 2-10 detections a second."""

    min_score: float = Field(default=0.35, ge=0, le=1, description="Median detector score an object needs to count.")
    score_window: int = Field(default=7, ge=1, description="How many recent scores the median is taken over.")
    zone_inertia_frames: int = Field(
        default=3, ge=1,
        description="Consecutive frames an anchor must be inside (or outside) to enter (or leave), and an object "
                    "must move before it counts as moving.",
    )
    move_seconds: float = Field(
        default=1.0, ge=0, le=30,
        description="And for at least this long: a passer-by hiding part of a parked car for a moment is not the car "
                    "driving off.")
    still_tolerance: float = Field(
        default=0.12, gt=0, le=1, description="How far (as a fraction of box height) an object may drift and be still."
    )
    still_iou: float = Field(
        default=0.6, gt=0, le=1,
        description="A box overlapping its parked position this much is still, even if its anchor jumped "
                    "(partial occlusion, a shadow, the frame edge).",
    )
    still_containment: float = Field(
        default=0.85, gt=0, le=1,
        description="When the smaller of the object's box and its parked box lies this much within the larger, it is "
                    "the same object partly hidden (or whole again): still, and a new track found there takes over "
                    "the violation; unless the larger box, a new track's, reaches lower in the frame by more than "
                    "still_tolerance: something nearer, standing in front of it (a taxi stopped by a parked car).",
    )
    lost_seconds: float = Field(
        default=10.0, gt=0, description="How long an unseen object is remembered at least (its track, its time "
                                        "standing still before its dwell is up; see lost_looks).",
    )
    lost_looks: int = Field(
        default=15, ge=1,
        description="And for at least this many looks of the model that sees it: a model that looks seldom and misses "
                    "an object now and then (the litter model, a look every 2 s) has not lost it after lost_seconds "
                    "of misses (but never past hidden_seconds). A model looking 5 times a second at a scene where "
                    "something moves: lost_seconds decides; a still scene is looked at every idle_detect_seconds "
                    "(2 s): 30 s.",
    )
    hidden_seconds: float = Field(
        default=60.0, gt=0, description="How long an object with a violation may stay unseen while something seen "
                                        "stands over its place (a bus stopped in front of a parked car, a crowd) "
                                        "before the violation ends as the object gone; found again at its place "
                                        "meanwhile, it keeps its violation. With its place in view, lost_seconds "
                                        "and lost_looks.",
    )
    heartbeat_seconds: float = Field(default=60.0, gt=0, description="At most one unchanged `update` per this period.")
    rematch_iou: float = Field(
        default=0.5, gt=0, le=1, description="Box overlap at which a new track takes over a lost violation."
    )
    near_factor: float = Field(
        default=1.0, ge=0,
        description="A person is near an object when their boxes meet once the object's box is grown by this many "
                    "of its own widths and heights on every side.",
    )
    vendor_seconds: float = Field(
        default=120.0, gt=0, description="A stall counts only if a person was near it within this many seconds."
    )
    unattended_seconds: float = Field(
        default=30.0, gt=0, description="Litter counts only once no person has been near it for this many seconds."
    )
    attending_seconds: float = Field(
        default=5.0, ge=0, description="A person near litter keeps it attended (its owner) once they have stayed "
                                       "by it this long (seen near it with no break over 3 s, or at each of the "
                                       "model's looks where it looks less often); people walking past do not reset "
                                       "its count.",
    )


class CameraConfig(_Config):
    camera_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Unique within the node.")
    source: str = Field(description="Video file path, rtsp:// or http:// URL, or a USB camera index such as `0`.")
    location: Location | None = Field(default=None, description="Camera position (WGS84), used for dispatch.")
    detect_fps: float | None = Field(
        default=None, gt=0,
        description="Cap on detections per second for this camera; default: each manifest model's own rate.",
    )
    realtime: bool = Field(default=True, description="Play files at their own frame rate, as a live camera would.")
    loop: bool = Field(default=False, description="Start a file again at its end (demos and soak tests).")
    motion_gating: bool = Field(
        default=True, description="Run the detectors only when something moves (plus every idle_detect_seconds)."
    )
    idle_detect_seconds: float = Field(
        default=2.0, gt=0,
        description="With motion gating, how often a still scene is still looked at, to keep parked objects tracked.",
    )
    tuning: RuleTuning = Field(default_factory=RuleTuning, description="Rule sensitivity (table below).")
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="Camera health: black, covered, frozen, moved (table below)."
    )
    zones: list[ZoneConfig] = Field(min_length=1, description="Polygon zones with their rules (table below).")

    @field_validator("zones")
    @classmethod
    def _unique_zone_ids(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        ids = [zone.zone_id for zone in zones]
        duplicates = sorted({zone_id for zone_id in ids if ids.count(zone_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate zone_id: {', '.join(duplicates)}")
        return zones


class MqttConfig(_Config):
    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(default=None, description="Broker account; defaults to the node id.")
    password: SecretStr | None = Field(default=None, description="Broker password (or use password_file).")
    password_file: Path | None = Field(default=None, description="File holding the broker password.")
    qos: Literal[1, 2] = Field(
        default=2, description="QoS of events and evidence: 2 delivers each exactly once, also across a broker's "
                               "clean restart (it saves its half at shutdown and every autosave_interval); 1 may "
                               "repeat one (the server recognises it).")
    keepalive: int = Field(default=30, ge=5, description="Seconds; the broker declares the node gone after 1.5x.")
    tls_ca_file: Path | None = Field(
        default=None, description="Connect with TLS (to the broker's TLS port), trusting this CA certificate only.")

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return read_secret(self.password_file, "mqtt.password_file")
        return os.environ.get("GRIDWATCH_MQTT_PASSWORD")


class NodeConfig(_Config):
    node_id: str = Field(pattern=NODE_ID_PATTERN, description="Unique node id; also its broker user name.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection (table below).")
    model: str | None = Field(
        default=None, description=f"Detector weights or export folder. ${MODEL_ENV} overrides; default {DEFAULT_MODEL}."
    )
    manifest: Path = Field(
        default=DEFAULT_MANIFEST, description="Model manifest: which classes serve which category, at what rate "
                                              "(default: the repository's models/coco.yaml)."
    )
    timezone: str | None = Field(
        default=None, description="IANA time zone of zone schedules and event times, e.g. Asia/Shanghai; "
                                  "default: the system's."
    )
    state_dir: Path = Field(default=Path(".gridwatch/edge"), description=(
        "Where the node keeps its state: the session counter, and per node the outbox (outbox.db, up to "
        "`outbox_max_mb`) and the last good remote config."))
    telemetry_seconds: float = Field(default=30.0, gt=0, description="Period of telemetry messages.")
    batch_window_ms: float = Field(
        default=0.0, ge=0, le=200,
        description="Every camera detects with one shared copy of each model; frames handed in within this window "
                    "go through it in one batched call (pays with PyTorch on a GPU; 0: one frame at a time).")
    outbox_max_mb: float = Field(
        default=512.0, gt=0,
        description="Size of the on-disk outbox; when full, the oldest evidence goes first, then heartbeats a "
                    "later event of their violation supersedes, then (for a new event only) the oldest events, each "
                    "counted in telemetry.",
    )
    event_codes: dict[Category, EventCode] = Field(
        default_factory=lambda: {category: code for category, code in DEFAULT_EVENT_CODES.items()},
        description="City event code per category.",
    )
    cameras: list[CameraConfig] = Field(default_factory=list, description="The cameras this node watches (table "
                                                                          "below).")
    streetlights: list[StreetlightConfig] = Field(
        default_factory=list, description="Smart streetlights this node reads (table below); a streetlight node may "
                                          "carry cameras too.")

    @model_validator(mode="after")
    def _unique_devices(self) -> NodeConfig:
        if not self.cameras and not self.streetlights:
            raise ValueError("a node needs at least one camera or streetlight")
        ids = [camera.camera_id for camera in self.cameras] + [light.lamp_id for light in self.streetlights]
        if duplicates := sorted({device for device in ids if ids.count(device) > 1}):
            raise ValueError(f"camera_id and lamp_id values must be unique: {', '.join(duplicates)} used twice")
        return self

    @field_validator("event_codes")
    @classmethod
    def _every_category_coded(cls, codes: dict[Category, str]) -> dict[Category, str]:
        """A city that renames some codes keeps the national ones for the rest."""
        return {**DEFAULT_EVENT_CODES, **codes}

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r}") from None
        return name

    def zoneinfo(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None

    def resolved_model(self) -> str:
        return os.environ.get(MODEL_ENV) or self.model or DEFAULT_MODEL


def _beside(config_file: Path, relative: str, key: str) -> str:
    """`relative` from the config file's folder; where only the working directory has it (where versions before
    2026-12-07 looked: an outbox, a clip), from there, with a warning to move it."""
    beside = config_file.parent / relative
    if not beside.exists() and Path(relative).exists():
        log.warning("%s %s: using %s, found from the working directory as before; move it beside %s (relative paths "
                    "are taken from the file's folder now)", key, relative, Path(relative).resolve(), config_file)
        return relative
    return str(beside)


def load_node_config(path: Path) -> NodeConfig:
    """Load and validate; relative paths in the file are relative to the file."""
    config = load_yaml_model(path, NodeConfig)
    if config.mqtt.password_file and not config.mqtt.password_file.is_absolute():
        config.mqtt.password_file = path.parent / config.mqtt.password_file
    if config.mqtt.tls_ca_file and not config.mqtt.tls_ca_file.is_absolute():
        config.mqtt.tls_ca_file = path.parent / config.mqtt.tls_ca_file
    if not config.manifest.is_absolute():
        config.manifest = path.parent / config.manifest
    if "state_dir" in config.model_fields_set and not config.state_dir.is_absolute():
        config.state_dir = Path(_beside(path, str(config.state_dir), "state_dir"))
    if config.model and not Path(config.model).is_absolute() and (path.parent / config.model).exists():
        config.model = str(path.parent / config.model)  # else a name ultralytics may download (yolo11n.pt)
    for index, camera in enumerate(config.cameras):  # a video file; not an rtsp:// URL nor a USB camera's index
        if "://" not in camera.source and not camera.source.isdigit() and not Path(camera.source).is_absolute():
            camera.source = _beside(path, camera.source, f"cameras.{index}.source")
    if config.mqtt.tls_ca_file is not None:  # at start, not at the first connection, minutes later
        check_ca_file(config.mqtt.tls_ca_file, "mqtt.tls_ca_file")
    return config
