"""Response models of the REST API."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from gridwatch.contract import CaseAction, CaseAssignment, Category, Location

ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    page: int
    page_size: int


class _Schema(BaseModel):
    """What the API's bodies share: a field's docstring is its description in the OpenAPI document (integrators
    generate clients from it), as a `Field(description=…)` is."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class TransitionOut(_Schema):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(validation_alias="id", description="The step's number, its message's `seq`: higher, newer.")
    action: str
    from_status: str | None
    to_status: str
    at: datetime
    actor: str
    reason: str


class CaseSummary(_Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    category: str
    code: str
    status: str
    source: str = "camera"
    node_id: str | None
    camera_id: str | None
    zone_id: str | None
    description: str | None = None
    address: str | None = None
    label: str
    score: float
    lat: float | None
    lon: float | None
    opened_at: datetime
    updated_at: datetime
    seq: int | None = None
    """The `seq` of the case's latest step: of this and a message of the case, the higher `seq` is the newer."""
    deadline_at: datetime | None
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    dwell_seconds: float
    occurrences: int
    assignment: CaseAssignment | None = None
    grid_id: str | None = None
    """The unit grid the case lies in, known from its position (before dispatch too; the assignment names it
    once dispatched)."""
    escalation_level: int = 0
    """0: with the grid; 1: escalated to the street office; 2: to the district (from 0 where no street office is
    there to tell: a case outside every grid)."""
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    feedback_at: datetime | None = None
    verified_at: datetime | None = None
    closed_at: datetime | None = None
    on_time: bool | None = None
    rework_count: int = 0
    extension_count: int = 0
    void_reason: str | None = None


class EventOut(_Schema):
    event_id: str
    type: str
    observed_at: datetime
    received_at: datetime
    dwell_seconds: float
    score: float
    box: dict[str, float]
    evidence_url: str | None
    """Download link of the annotated JPEG; null until the image has arrived."""
    crop_url: str | None = None
    """Download link of the object crop (full resolution, undrawn); null when there is none."""


class ReportOut(_Schema):
    """A citizen's report of the case (Open311)."""

    at: datetime
    via: str
    description: str
    address: str | None = None
    reporter: dict[str, str] | None = Field(
        default=None, description="Contact details as given (name, phone, email); to the command centre only.")
    media_url: str | None = Field(
        default=None, description="A link to the citizen's photo, as the report gave it (GeoReport `media_url`; "
                                  "not fetched); to the command centre only.")


class PhotoOut(_Schema):
    """A photo people took of the case (field staff reporting back, an operator)."""

    id: int
    stage: str = Field(description="`before` (as found), `after` (as left) or `other`.")
    caption: str | None
    actor: str = Field(description="Who added it.")
    at: datetime
    content_type: str
    bytes: int
    url: str | None = Field(description="Download link (operators, supervisors and the case's field staff; null for "
                                       "other callers, who may not see photos).")

    @classmethod
    def of(cls, photo: Any, picture: bool = True) -> PhotoOut:
        """From a `CasePhoto` row; without `picture` (a caller refused photos) no link to it."""
        return cls(id=photo.id, stage=photo.stage, caption=photo.caption, actor=photo.actor, at=photo.at,
                   content_type=photo.content_type, bytes=photo.bytes,
                   url=f"/api/v1/cases/{photo.case_id}/photos/{photo.id}" if picture else None)


class CaseDetail(CaseSummary):
    violation_id: str
    events: list[EventOut] = Field(description=(
        "The case's events, first to last: every one with evidence, and the latest 500 (a car parked for days "
        "sends a heartbeat a minute); GET /api/v1/cases/{id}/events pages through them all."))
    events_total: int = Field(description="All the case's events, whether listed here or not.")
    transitions: list[TransitionOut] = Field(description=(
        "The case's steps, first to last: the latest 500 (an open case at a busy place gains a `join` with each "
        "sighting); GET /api/v1/cases/{id}/transitions pages through them all."))
    transitions_total: int = Field(description="All the case's steps, whether listed here or not.")
    reports: list[ReportOut] = Field(default_factory=list, description="Citizen reports of the case, first to last.")
    evidence_urls: list[str]
    crop_urls: list[str]
    photos: list[PhotoOut] = Field(default_factory=list, description="Photos people added, first to last.")
    allowed_actions: list[str] = Field(description="What the caller may do to the case now.")


class ActionIn(_Schema):
    model_config = ConfigDict(extra="forbid")

    action: CaseAction = Field(description="file, dispatch, reassign, accept, return, extend, defer, resume, "
                                           "feedback, rework, verify, close or void (README: the workflow table).")
    reason: str | None = Field(default=None, max_length=2000,
                               description="Why; required for reassign, return, extend, defer, rework and void.")
    unit_id: str | None = Field(default=None, max_length=64,
                                description="dispatch / reassign: the unit to take it (default: the route's).")
    extend_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 90,
                                         description="extend: working minutes added to the deadline.")
    void_reason: Literal["false_positive", "duplicate", "not_our_responsibility", "other"] | None = Field(
        default=None, description="void: why the case is void.")
    location: Location | None = Field(
        default=None, description="file / dispatch: where a case reported without a position (a hotline's report "
                                  "giving an address) is; the route goes by the grid there.")

    @model_validator(mode="after")
    def _fields_of_the_action(self) -> ActionIn:
        """A field the action does not take is refused, not ignored: a caller sending `extend_minutes` with a
        `dispatch` meant something the server would not have done."""
        if given := [name for name, actions in ACTION_FIELDS.items()
                     if getattr(self, name) is not None and self.action not in actions]:
            raise ValueError(f"{', '.join(given)}: not taken by {self.action.value} (" + "; ".join(
                f"{name}: {', '.join(sorted(a.value for a in ACTION_FIELDS[name]))}" for name in given) + ")")
        return self


ACTION_FIELDS = {"unit_id": {CaseAction.DISPATCH, CaseAction.REASSIGN}, "extend_minutes": {CaseAction.EXTEND},
                 "void_reason": {CaseAction.VOID}, "location": {CaseAction.FILE, CaseAction.DISPATCH}}
"""The fields only some actions take (`reason` goes with any)."""


class DeadLetterOut(_Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    received_at: datetime
    topic: str
    node_id: str | None
    reason: str
    payload_size: int
    payload_preview: str
    """The first 500 characters of the payload (invalid UTF-8 replaced), for reading; the raw bytes are kept."""


class NodeOut(_Schema):
    model_config = ConfigDict(from_attributes=True)

    node_id: str
    state: str
    session: int
    status_at: datetime | None
    last_seen_at: datetime | None
    telemetry: dict[str, Any] | None
    config_status: dict[str, Any] | None = None
    remote_config: dict[str, Any] | None = None


class Health(_Schema):
    status: str
    database: str
    mqtt: str
    writing: str = Field(description="`ok`, or `stalled: …` while messages wait and no batch has gone through for "
                                     "a minute (a database that reads but takes no writes: locked, full).")
    ingest: dict[str, int]


class ReviewIn(_Schema):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["confirmed", "rejected"] = Field(description="The operator's verdict on the detection.")
    reason: Literal["false_positive", "duplicate", "not_our_responsibility", "other"] | None = Field(
        default=None, description="Why it was rejected (required for `rejected`).")
    note: str | None = Field(default=None, max_length=2000)


class ReviewOut(_Schema):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    verdict: str
    reason: str | None
    reviewer: str
    note: str | None
    at: datetime


class CommandIn(_Schema):
    model_config = ConfigDict(extra="forbid")

    action: Literal["snapshot", "reload", "restart_camera"] = Field(
        description="snapshot: publish the current frame; reload: re-read the node's config file and manifest; "
                    "restart_camera: reopen a camera's source.")
    camera_id: str | None = Field(default=None, max_length=64, description="Required for restart_camera.")


class CommandOut(_Schema):
    model_config = ConfigDict(from_attributes=True)

    request_id: str
    node_id: str
    action: str
    camera_id: str | None
    sent_by: str
    sent_at: datetime
    response: dict[str, Any] | None = Field(description="The node's answer; null until it comes (a node that is "
                                                        "away answers when it returns).")
    answered_at: datetime | None


class BoardStreet(_Schema):
    street: str
    grids: list[dict[str, str | None]]


class BoardUnit(_Schema):
    unit_id: str
    name: str
    phone: str | None


class BoardOut(_Schema):
    streets: list[BoardStreet]
    units: list[BoardUnit]


class WebhookIn(_Schema):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="http(s) URL that receives a signed POST per case change.")
    categories: list[Category] = Field(default_factory=list, description="Only these categories; empty: all.")
    actions: list[CaseAction] = Field(default_factory=list,
                                      description="Only these case actions (e.g. dispatch, close); empty: all.")
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url")
    @classmethod
    def _reachable_name(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        """A host name no HTTP client can encode (an empty or over-long label) would fail every delivery."""
        try:
            (url.host or "").encode("idna")
        except UnicodeError as error:
            raise ValueError(f"host {url.host!r} is not a valid name: {error}") from None
        return url


class WebhookOut(_Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    categories: list[str]
    actions: list[str]
    description: str | None
    active: bool
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Verify X-GridWatch-Signature with it; shown only now.")


class DeliveryOut(_Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subscription_id: int
    case_id: int
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class CallerOut(_Schema):
    name: str
    role: str
    unit: str | None


class CameraOut(_Schema):
    node_id: str
    camera_id: str
    lat: float | None
    lon: float | None
    last_event_at: datetime | None
    open_cases: int
    node_state: str
    fps: float | None = None


ZONES_DEPTH = 8
"""How deep a zone's settings nest (zone → schedule → window → days): deeper is no zone."""


def _plain_json(value: object, path: str, depth: int = 0) -> None:
    """What the node will be sent as JSON, as it was given: no NaN or infinity (JSON has none: sent as null), no
    lone surrogate (no UTF-8 for it), nested no deeper than `ZONES_DEPTH`. ValueError names where."""
    if depth > ZONES_DEPTH:
        raise ValueError(f"{path}: nested deeper than {ZONES_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: {value} is not a number JSON can carry")
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{path}: text with a lone surrogate (no UTF-8 for it)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _plain_json(key, path, depth + 1)
            _plain_json(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _plain_json(item, f"{path}.{index}", depth + 1)


class ZonesIn(_Schema):
    model_config = ConfigDict(extra="forbid")

    zones: list[dict[str, Any]] = Field(max_length=50, description="The camera's zones in the node config's format "
                                                                   "(zone_id, rule, polygon, dwell_seconds, schedule); "
                                                                   "they replace the camera's zones.")

    @field_validator("zones")
    @classmethod
    def _sendable(cls, zones: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _plain_json(zones, "zones")
        return zones


class RemoteConfigOut(_Schema):
    node_id: str
    config_version: str
    cameras: dict[str, dict[str, Any]]
    status: dict[str, Any] | None = Field(description="The node's answer to the latest version it has seen: "
                                                      "applied, or refused with the reason.")


class Problem(_Schema):
    """An error's body."""

    detail: str | list[dict[str, Any]] = Field(description=(
        "What is wrong: a sentence naming the field or the rule, or, for a request that does not parse, one entry "
        "per field (`type`, `loc`, `msg`)."))


API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No token, or one the server does not know."},
    403: {"model": Problem, "description": "The caller's role may not do this; the detail names who may."},
    404: {"model": Problem, "description": "No such case, node, event or subscription."},
    422: {"model": Problem, "description": "A field or parameter the server refuses, named in the detail."},
    429: {"model": Problem, "description": "Too many unknown tokens from this address; see Retry-After."},
    503: {"model": Problem, "description": "The database is busy or away; nothing was changed, try again "
                                           "(Retry-After)."},
}
"""The errors every API route may answer (Open311's have GeoReport's own form)."""
