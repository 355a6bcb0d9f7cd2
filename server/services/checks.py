"""What a node's message must be to be accepted: each check raises `Rejected` with the reason the dead letter keeps.

A JSON message must be UTF-8, within its size limit, valid against its contract model (unknown fields refused) and
name the node whose topic it came on; an event's category must match its topic; an image must be a JPEG within its
limit, on a topic naming a real event id or camera."""

from __future__ import annotations

import hashlib
import re
import uuid

from pydantic import ValidationError

from gridwatch.config_files import validation_problems
from gridwatch.contract import MAX_EVENT_BYTES, MAX_EVIDENCE_BYTES, Event, NodeTopic

_CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_JPEG_MAGIC = b"\xff\xd8\xff"


class Rejected(Exception):
    """A message that cannot be used; its text is the reason kept with the dead letter."""


def describe_validation_error(error: ValidationError, shown: int = 8) -> str:
    problems = validation_problems(error, unknown="unknown field")
    more = len(problems) - shown
    return "invalid payload: " + "; ".join(problems[:shown]) + (f"; and {more} more" if more > 0 else "")


def validate(model, payload: bytes, limit: int):  # noqa: ANN001, ANN201 - generic over contract models
    if len(payload) > limit:
        raise Rejected(f"payload of {len(payload)} bytes exceeds the {limit}-byte limit")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected(f"payload is not UTF-8: {error}") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise Rejected(f"payload is not valid JSON: {error.errors()[0]['msg']}") from None
        raise Rejected(describe_validation_error(error)) from None


def validate_from(topic: NodeTopic, model, payload: bytes):  # noqa: ANN001, ANN201 - contract models
    """A node's JSON message, which must name the node whose topic it came on (no node speaks for another)."""
    message = validate(model, payload, MAX_EVENT_BYTES)
    if message.node_id != topic.node_id:
        raise Rejected(f"node_id {message.node_id!r} in the payload does not match {topic.node_id!r} in the topic")
    return message


def checked_event(topic: NodeTopic, payload: bytes) -> Event:
    event = validate_from(topic, Event, payload)
    if event.category.value != topic.leaf:
        raise Rejected(f"category {event.category.value!r} does not match {topic.leaf!r} in the topic")
    return event


def evidence_key(topic: NodeTopic, payload: bytes) -> tuple[str, str, str]:
    """(event id, variant, SHA-256) of an evidence message."""
    try:
        event_id = str(uuid.UUID(topic.leaf or ""))
    except ValueError:
        raise Rejected(f"evidence topic names {topic.leaf!r}, not an event id") from None
    if len(payload) > MAX_EVIDENCE_BYTES:
        raise Rejected(f"evidence of {len(payload)} bytes exceeds the {MAX_EVIDENCE_BYTES}-byte limit")
    if not payload.startswith(_JPEG_MAGIC):
        raise Rejected("evidence is not a JPEG image")
    return event_id, topic.variant or "frame", hashlib.sha256(payload).hexdigest()


def check_snapshot(topic: NodeTopic, payload: bytes) -> None:
    """A camera's snapshot: a JPEG within the evidence limit, on a topic naming a valid camera id."""
    if len(payload) > MAX_EVIDENCE_BYTES:
        raise Rejected(f"snapshot of {len(payload)} bytes exceeds the {MAX_EVIDENCE_BYTES}-byte limit")
    if not payload.startswith(_JPEG_MAGIC):
        raise Rejected("snapshot is not a JPEG image")
    if not _CAMERA_ID_RE.fullmatch(topic.leaf or ""):
        raise Rejected(f"invalid camera id {topic.leaf!r} in the snapshot topic")


def mismatch(variant: str, sha256: str, announced: str) -> str:
    return f"evidence ({variant}) SHA-256 {sha256} differs from {announced} announced by the event"


def not_theirs(owner: str) -> str:
    return f"evidence for an event of node {owner}: a node sends images of its own events only"
