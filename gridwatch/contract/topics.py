"""Topic names: where each message of the contract goes, and the parsing of a node's topic."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from gridwatch.contract.payloads import _NODE_ID_RE, TOPIC_ROOT, Category


def status_topic(node_id: str) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/status"


def telemetry_topic(node_id: str) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/telemetry"


def event_topic(node_id: str, category: Category | str) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/events/{Category(category).value}"


def evidence_topic(node_id: str, event_id: UUID | str, crop: bool = False) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/evidence/{event_id}" + ("/crop" if crop else "")


def config_topic(node_id: str) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/config"


def config_status_topic(node_id: str) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/config/status"


def command_topic(node_id: str) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/command"


def command_response_topic(node_id: str) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/command/response"


def snapshot_topic(node_id: str, camera_id: str) -> str:
    return f"{TOPIC_ROOT}/nodes/{node_id}/snapshot/{camera_id}"


def case_topic(category: Category | str, case_id: int) -> str:
    return f"{TOPIC_ROOT}/cases/{Category(category).value}/{case_id}"


SUBSCRIBE_EVENTS = f"{TOPIC_ROOT}/nodes/+/events/+"
SUBSCRIBE_ALL_NODES = f"{TOPIC_ROOT}/nodes/#"
"""What the server subscribes to: everything nodes may write, so nothing they send goes unaccounted."""


class TopicKind(StrEnum):
    STATUS = "status"
    TELEMETRY = "telemetry"
    EVENTS = "events"
    EVIDENCE = "evidence"
    CONFIG = "config"
    COMMAND = "command"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class NodeTopic:
    node_id: str
    kind: TopicKind
    leaf: str | None = None
    """The category of an events topic, the event id of an evidence topic, the camera of a snapshot topic."""
    variant: str | None = None
    """`crop` for an evidence crop, `status` of a config, `response` of a command; else None."""


class TopicError(ValueError):
    pass


def parse_node_topic(topic: str) -> NodeTopic:
    """Split a `gw/v1/nodes/...` topic, raising `TopicError` with the reason when it is not one of ours."""
    parts = topic.split("/")
    if parts[:3] != ["gw", "v1", "nodes"] or len(parts) < 5:
        raise TopicError(f"not a node topic: {topic!r}")
    node_id, kind_name, rest = parts[3], parts[4], parts[5:]
    if not _NODE_ID_RE.fullmatch(node_id):  # `$` alone would let a trailing newline through
        raise TopicError(f"invalid node id in topic: {node_id!r}")
    try:
        kind = TopicKind(kind_name)
    except ValueError:
        raise TopicError(f"unknown node topic kind {kind_name!r}") from None
    variant = None
    if kind is TopicKind.EVIDENCE and len(rest) == 2 and rest[1] == "crop":
        rest, variant = rest[:1], "crop"
    elif kind is TopicKind.CONFIG and rest == ["status"]:
        rest, variant = [], "status"
    elif kind is TopicKind.COMMAND and rest == ["response"]:
        rest, variant = [], "response"
    needs_leaf = kind in (TopicKind.EVENTS, TopicKind.EVIDENCE, TopicKind.SNAPSHOT)
    if needs_leaf != (len(rest) == 1) or len(rest) > 1:
        raise TopicError(f"malformed {kind.value} topic: {topic!r}")
    leaf = rest[0] if rest else None
    if kind is TopicKind.EVENTS:
        try:
            Category(leaf)
        except ValueError:
            raise TopicError(f"unknown category {leaf!r} in topic") from None
    return NodeTopic(node_id=node_id, kind=kind, leaf=leaf, variant=variant)
