"""Response models of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contract import CaseAssignment

ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    page: int
    page_size: int


class TransitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: str | None
    to_status: str
    at: datetime
    actor: str
    reason: str


class CaseSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    category: str
    code: str
    status: str
    node_id: str
    camera_id: str
    zone_id: str
    label: str
    score: float
    lat: float | None
    lon: float | None
    opened_at: datetime
    updated_at: datetime
    deadline_at: datetime | None
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    dwell_seconds: float
    occurrences: int
    assignment: CaseAssignment | None = None


class EventOut(BaseModel):
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


class CaseDetail(CaseSummary):
    violation_id: str
    events: list[EventOut]
    transitions: list[TransitionOut]
    evidence_urls: list[str]
    crop_urls: list[str]


class DeadLetterOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    received_at: datetime
    topic: str
    node_id: str | None
    reason: str
    payload_size: int
    payload_preview: str
    """The first 500 characters of the payload (invalid UTF-8 replaced), for reading; the raw bytes are kept."""


class NodeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    node_id: str
    state: str
    session: int
    status_at: datetime | None
    last_seen_at: datetime | None
    telemetry: dict[str, Any] | None
    config_status: dict[str, Any] | None = None


class Health(BaseModel):
    status: str
    database: str
    mqtt: str
    ingest: dict[str, int]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["confirmed", "rejected"] = Field(description="The operator's verdict on the detection.")
    reason: Literal["false_positive", "duplicate", "not_our_responsibility", "other"] | None = Field(
        default=None, description="Why it was rejected (required for `rejected`).")
    reviewer: str = Field(min_length=1, max_length=128, description="Who decided.")
    note: str | None = Field(default=None, max_length=2000)


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    verdict: str
    reason: str | None
    reviewer: str
    note: str | None
    at: datetime


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["snapshot", "reload", "restart_camera"] = Field(
        description="snapshot: publish the current frame; reload: re-read the node's config file and manifest; "
                    "restart_camera: reopen a camera's source.")
    camera_id: str | None = Field(default=None, max_length=64, description="Required for restart_camera.")
    sent_by: str = Field(default="operator", min_length=1, max_length=128, description="Who sent it.")


class CommandOut(BaseModel):
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
