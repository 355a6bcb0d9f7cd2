"""What nodes publish and are sent: events, evidence, status, telemetry, configs and commands, with the schema
version and the size limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator


def _storable(moment: datetime) -> datetime:
    try:
        year = moment.astimezone(UTC).year
    except OverflowError:  # before year 1 or after 9999 in UTC
        year = 0
    if not 1970 <= year <= 9998:
        raise ValueError("a time from 1970 to 9998")
    return moment


Moment = Annotated[AwareDatetime, AfterValidator(_storable)]
"""A time with its zone, from 1970 to 9998 in UTC: what a database stores and arithmetic on it survives (year 1 at
+05:00 lies before year 1; 9999-12-31 at -05:00 after 9999)."""

SCHEMA_VERSION = "1.6"
"""1.1 added the evidence crop (`evidence.crop`, topic `.../evidence/{event_id}/crop`); 1.2 added the remote
config's `manifest` (model roll-out), the crop's `region`, commands and snapshots; 1.3 the whole case workflow
(statuses after `dispatched`, the `action` of a case message, the person on duty and the escalation level); 1.4 an
event's `interrupted` (an `end` sent because the node stopped watching, not because the object left); 1.5 the unit's
duty phone in a case's assignment; 1.6 a case message's `seq` (of two of one case, the higher is the newer). Older
payloads stay valid."""
TOPIC_ROOT = "gw/v1"

NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""Node ids double as broker user names and topic levels, so they exclude `/`, `+`, `#` and spaces."""

_NODE_ID_RE = re.compile(NODE_ID_PATTERN)

MAX_EVENT_BYTES = 64 * 1024
MAX_EVIDENCE_BYTES = 8 * 1024 * 1024


class Category(StrEnum):
    ILLEGAL_PARKING = "illegal_parking"
    STREET_VENDING = "street_vending"
    LITTER = "litter"
    DEVICE_FAULT = "device_fault"
    """A camera that is black, frozen, covered or moved from its view (1.1); `label` names the fault."""
    STREETLIGHT_FAULT = "streetlight_fault"
    """A smart streetlight off at night, on by day, with power or voltage out of range, or a silent controller
    (1.2); `camera_id` is the lamp, `zone_id` is `lamp`, `label` names the fault."""


DEFAULT_EVENT_CODES: dict[Category, str] = {
    Category.ILLEGAL_PARKING: "0505",
    Category.STREET_VENDING: "0501",
    Category.LITTER: "0102",
    Category.DEVICE_FAULT: "DEV-CAM",
    Category.STREETLIGHT_FAULT: "DEV-LAMP",
}
"""National classification codes (CJ/T 214 style); cities override them in configuration."""


class EventType(StrEnum):
    NEW = "new"
    UPDATE = "update"
    END = "end"


NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN, description="Node id; also its broker user name.")]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
EventCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,16}$", description="City event code, e.g. 0505.")]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    # no Infinity or NaN: JSON has neither, JSON out would carry them as null, and no bound holds them
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Box(_Strict):
    """Bounding box in coordinates normalised to the frame: (0, 0) top left, (1, 1) bottom right."""

    x1: Unit
    y1: Unit
    x2: Unit
    y2: Unit

    @classmethod
    def from_corners(cls, x1: float, y1: float, x2: float, y2: float) -> Box:
        """Clamped into the frame, so rounding at its edges never makes an invalid box."""
        x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in (x1, y1, x2, y2))
        return cls(x1=x1, y1=y1, x2=max(x1, x2), y2=max(y1, y2))

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError("box corners must satisfy x1 <= x2 and y1 <= y2")
        return self


class Location(_Strict):
    """WGS84 position of what was seen (the zone, or the camera when the zone has none)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class ModelInfo(_Strict):
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=100)


class EvidenceImage(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(gt=0, le=MAX_EVIDENCE_BYTES)
    region: Box | None = Field(default=None, description="Where the crop lies in the frame, so the event's box can "
                                                         "be placed in it, e.g. for training data (1.2).")


class EvidenceRef(_Strict):
    """Announces the JPEGs published under the same `event_id`: the annotated full frame on the evidence topic, and
    (from 1.1) a full-resolution crop of the object, unannotated so a plate stays readable, on `.../crop`."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_type: Literal["image/jpeg"] = "image/jpeg"
    bytes: int = Field(gt=0, le=MAX_EVIDENCE_BYTES)
    crop: EvidenceImage | None = None


class Event(_Strict):
    """One message about one violation. `new`, `update` and `end` of a violation share `violation_id`;
    every message has its own globally unique `event_id`, so a redelivered message is recognised."""

    schema_version: str = Field(pattern=r"^1\.\d+$", description="Contract schema version.")
    event_id: UUID
    violation_id: UUID
    type: EventType
    node_id: NodeId
    camera_id: Identifier
    zone_id: Identifier
    category: Category
    code: EventCode
    label: str = Field(min_length=1, max_length=64, description="Detector class of the object, e.g. car.")
    track_id: int | None = Field(default=None, ge=0)
    started_at: Moment = Field(description="When the object was first seen still inside the zone.")
    observed_at: Moment = Field(description="When this message's observation was made.")
    dwell_seconds: float = Field(ge=0)
    score: Unit
    box: Box
    location: Location | None = None
    model: ModelInfo
    evidence: EvidenceRef | None = None
    interrupted: Literal[True] | None = Field(default=None, description=(
        "On an `end` only (1.4): the node stopped watching (it is shutting down, its camera failed or lost its "
        "picture, its zones were reconfigured) or the zone's rule stopped applying to the object (its hours ended), "
        "so the violation is closed without saying the object left. The server counts the "
        "violation as ended but does not verify its case by it; a camera that sees the object again starts a new "
        "violation. Absent otherwise."))

    @model_validator(mode="after")
    def _chronological(self) -> Event:
        if self.observed_at < self.started_at:
            raise ValueError("observed_at is earlier than started_at")
        if self.interrupted and self.type is not EventType.END:
            raise ValueError("interrupted: only an `end` is interrupted")
        return self

    def wire(self) -> bytes:
        """The payload as published: `interrupted` only where it is set, so a server of 1.3 reads every other
        event as before."""
        return self.model_dump_json(exclude=None if self.interrupted else {"interrupted"}).encode()


SESSION_MAX = 2**31 - 1
"""A node's session number fits the database's integer (a node counts its connections: never near it)."""


class NodeState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class NodeStatus(_Strict):
    """Retained availability. `session` grows with every connection of the node, so a last will from an older
    connection (`offline`, lower session) never overrides a newer `online`."""

    node_id: NodeId
    state: NodeState
    session: int = Field(ge=0, le=SESSION_MAX, description="The node's connection count since it was installed.")
    at: Moment | None = Field(default=None, description="Absent in the last will, which is written early.")


class CameraTelemetry(_Strict):
    camera_id: Identifier
    frames_read: int = Field(ge=0)
    frames_detected: int = Field(ge=0)
    fps_in: float = Field(ge=0)
    fps_detected: float = Field(ge=0)
    active_violations: int = Field(ge=0)
    detect_ms: float = Field(default=0.0, ge=0, description="Mean detection latency per frame, milliseconds (1.1).")
    faults: list[str] = Field(default_factory=list, description="Camera-health faults now raised (1.1).")
    reconnects: int = Field(default=0, ge=0, description="Times a live source was reopened after failing (1.1).")
    source_ok: bool = Field(default=True, description="False while the source delivers no frames (1.1).")
    error: str | None = Field(default=None, description="Why the camera's pipeline stopped, if it did (1.1).")


class LampTelemetry(_Strict):
    """One smart streetlight's latest reading (1.2)."""

    lamp_id: Identifier
    controller_ok: bool = Field(description="False while the lamp controller does not answer.")
    lamp_on: bool | None = None
    power_w: float | None = Field(default=None, ge=0)
    voltage_v: float | None = Field(default=None, ge=0)
    ambient_lux: float | None = Field(default=None, ge=0)
    read_at: Moment | None = Field(default=None, description="When the last good reading was taken.")
    faults: list[str] = Field(default_factory=list, description="Faults now raised.")


class NodeTelemetry(_Strict):
    schema_version: str = Field(pattern=r"^1\.\d+$")
    node_id: NodeId
    at: Moment
    session: int = Field(ge=0, le=SESSION_MAX, description="The node's connection count since it was installed.")
    uptime_seconds: float = Field(ge=0, le=1e10)  # 300 years
    events_published: int = Field(ge=0)
    publish_pending: int = Field(ge=0)
    outbox_depth: int = Field(default=0, ge=0, description="Messages on disk not yet acknowledged (1.1).")
    outbox_bytes: int = Field(default=0, ge=0, description="Their size (1.1).")
    dropped: dict[str, int] = Field(default_factory=dict, description=(
        "Messages the outbox let go, by reason and kind (event, evidence): dropped_KIND when full (dropped_update: a "
        "heartbeat a later event of its violation superseded), refused_KIND when the broker refused them and "
        "dropped_salvage what of an outbox a power cut damaged could not be read back, since "
        "install; unstored_KIND that it could not store (its disk), since the node started (1.1)."))
    cpu_percent: float | None = Field(default=None, ge=0, description="Process CPU, % of one core (1.1).")
    memory_mb: float | None = Field(default=None, ge=0, description="Resident memory of the node (1.1).")
    temperature_c: float | None = Field(default=None, description="Hottest thermal zone, where readable (1.1).")
    models: list[ModelInfo] = Field(default_factory=list, description="Models the node runs (1.1).")
    config_version: str | None = Field(default=None, description="Remote config in force, if any (1.1).")
    cameras: list[CameraTelemetry] = Field(default_factory=list)
    lamps: list[LampTelemetry] = Field(default_factory=list, description="Smart streetlights of the node (1.2).")


class Person(_Strict):
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=64)


class RemoteConfig(_Strict):
    """Retained on `gw/v1/nodes/{node_id}/config` by the server (1.1). Per camera, the settings to change — zones,
    schedules, rates, tuning, health — in the node config's own format; the node validates them before applying."""

    schema_version: str = Field(pattern=r"^1\.\d+$")
    config_version: str = Field(min_length=1, max_length=64, description="Chosen by the sender; echoed in the answer.")
    cameras: dict[Identifier, dict] = Field(
        default_factory=dict, description="camera_id -> settings to change: `tuning` and `health` key by key (the "
                                          "keys not named stay as the camera runs them), any other key whole.")
    manifest: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\.ya?ml$",
        description="A model manifest among those installed beside the node's own (e.g. city.yaml), to roll a "
                    "model out to some nodes first; absent: the node's own manifest (1.2).")


class ConfigState(StrEnum):
    APPLIED = "applied"
    REFUSED = "refused"


class ConfigStatus(_Strict):
    """The node's answer on `gw/v1/nodes/{node_id}/config/status` (retained, 1.1)."""

    node_id: NodeId
    config_version: str
    state: ConfigState
    reason: str | None = Field(default=None, description="Why it was refused, naming the offending keys.")
    at: Moment


class CommandAction(StrEnum):
    SNAPSHOT = "snapshot"
    """Publish the camera's current frame (every camera's, when none is named) on its retained snapshot topic."""
    RELOAD = "reload"
    """Read the node's configuration file and model manifest again and apply them without a restart."""
    RESTART_CAMERA = "restart_camera"
    """Close and reopen one camera's video source (after its camera was power-cycled, say)."""


class Command(_Strict):
    """Sent by the server on `gw/v1/nodes/{node_id}/command` (QoS 1, not retained; 1.2). A node away when it is sent
    receives it on return (persistent session); its answer carries the same `request_id`."""

    schema_version: str = Field(pattern=r"^1\.\d+$")
    request_id: Identifier = Field(description="Chosen by the sender; echoed in the response.")
    action: CommandAction
    camera_id: Identifier | None = Field(default=None, description="The camera; required for restart_camera.")
    sent_at: Moment | None = None

    @model_validator(mode="after")
    def _camera_named(self) -> Command:
        if self.action is CommandAction.RESTART_CAMERA and self.camera_id is None:
            raise ValueError("restart_camera needs a camera_id")
        return self


class SnapshotRef(_Strict):
    camera_id: Identifier
    topic: str = Field(description="Where the JPEG is retained: gw/v1/nodes/{node_id}/snapshot/{camera_id}.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(gt=0, le=MAX_EVIDENCE_BYTES)


class CommandResponse(_Strict):
    """The node's answer on `gw/v1/nodes/{node_id}/command/response` (1.2), sent through the node's outbox at its
    `mqtt.qos`, ahead of its events: one made while the broker is away arrives when it is back."""

    schema_version: str = Field(pattern=r"^1\.\d+$")
    node_id: NodeId
    request_id: str = Field(min_length=1, max_length=64,
                            description="The command's; `unknown` when the command could not be read at all.")
    action: str = Field(max_length=64)
    ok: bool
    detail: str | None = Field(default=None, description="What was done, or why it could not be.")
    snapshots: list[SnapshotRef] = Field(default_factory=list)
    at: Moment
