"""Node rows: made on a node's first message (by whichever worker meets it first), seen as messages come."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gridwatch.contract import NodeTelemetry
from server.db import one_of
from server.models import NodeRecord

Forget = Callable[[Session, str, datetime], int]
"""`server.services.restarts.forget_violations_before`."""


def ensure_nodes(session: Session, node_ids: set[str]) -> None:
    """Rows for nodes seen for the first time, made with INSERT … ON CONFLICT DO NOTHING: two workers meeting a new
    node at once both go on (the second waits for the first's commit) instead of one failing on the key."""
    if not node_ids:
        return
    dialect = session.get_bind().dialect.name
    upsert = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}.get(dialect)
    if upsert is None:  # another database: touch_node makes the row, and a clash is retried
        return
    session.execute(upsert(NodeRecord).values([{"node_id": node_id, "state": "unknown", "session": 0}
                                               for node_id in sorted(node_ids)]).on_conflict_do_nothing())


def load_nodes(session: Session, node_ids: set[str]) -> dict[str, NodeRecord]:
    """The rows of a batch's nodes in one query, the missing ones made first (one statement more)."""
    nodes = {node.node_id: node
             for node in session.scalars(select(NodeRecord).where(one_of(session, NodeRecord.node_id, node_ids)))}
    if missing := node_ids - set(nodes):
        ensure_nodes(session, missing)
        nodes |= {node.node_id: node for node in session.scalars(select(NodeRecord)
                                                                 .where(one_of(session, NodeRecord.node_id, missing)))}
    return nodes


SEEN_EVERY = timedelta(seconds=30)
"""A node's `last_seen_at` moves at most this often: a row every worker would otherwise write with every batch
(holding its lock until commit) is how workers end up waiting for each other."""


def touch_node(session: Session, node_id: str, now: datetime, seen: bool = True,
               held: dict[str, NodeRecord] | None = None) -> NodeRecord:
    """The node's row, created on first sight; `held` keeps rows of a batch at hand (the session's identity map
    holds clean rows only weakly, so without it every event would load its node again)."""
    node = held.get(node_id) if held is not None else None
    node = node or session.get(NodeRecord, node_id)
    if node is None:
        node = NodeRecord(node_id=node_id, state="unknown", session=0)
        session.add(node)
    if seen and (node.last_seen_at is None or now - node.last_seen_at >= SEEN_EVERY):
        node.last_seen_at = now
    if held is not None:
        held[node_id] = node
    return node


def take_telemetry(session: Session, node: NodeRecord, telemetry: NodeTelemetry, now: datetime,
                   forget: Forget) -> None:
    """The node's latest report. A node that started again since its last one (killed, or its power lost) never
    ended what it watched: its violations from before no longer keep its cases open (`forget`)."""
    if (started := restarted_at(node.telemetry, telemetry)) is not None:
        forget(session, node.node_id, started)
    node.telemetry, node.telemetry_at = json.loads(telemetry.model_dump_json()), now


def restarted_at(previous: dict | None, telemetry: NodeTelemetry) -> datetime | None:
    """When the node's process started, if it started again since its `previous` report: its uptime (a monotonic
    clock, deaf to the wall clock's steps) went down."""
    try:
        if previous is None or telemetry.uptime_seconds >= float(previous["uptime_seconds"]):
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return telemetry.at - timedelta(seconds=telemetry.uptime_seconds)
