"""The outbox's lanes, and what gives way among them when it is full: the oldest evidence first, then, for a new
event only, heartbeats a later event of their violation supersedes, then the oldest events. An image or an answer
never pushes out an event record: an image is an attachment, and an event (an `end` above all) is what a case
follows. Every message dropped is counted, for telemetry."""

from __future__ import annotations

import sqlite3

EVENT, EVIDENCE, ANSWER = "event", "evidence", "answer"
"""The outbox's lanes: events, their images, and answers to the command centre's commands (sent first: someone is
waiting for them, and they are few and small)."""
LANES = (EVENT, EVIDENCE, ANSWER)
OLDEST = "SELECT id, bytes, topic FROM outbox WHERE kind = ? ORDER BY id LIMIT 1"
SUPERSEDED_HEARTBEAT = (
    "SELECT id, bytes, topic FROM outbox AS o WHERE event_type = 'update' AND EXISTS "
    "(SELECT 1 FROM outbox AS later WHERE later.violation = o.violation AND later.id > o.id) ORDER BY id LIMIT 1")
"""The oldest heartbeat a later event of its violation supersedes, read through the heartbeats' own index
(`outbox_heartbeats`; only events have an `event_type`): a full outbox asks at every put, and through all its events
that took 31 ms a put with 100,000 of them held, the camera's thread waiting."""
Dropped = tuple[str, int, str, str]
"""A message dropped: its kind, bytes, counter and topic."""


def make_room(db: sqlite3.Connection, sizes: dict[str, int], incoming: int, incoming_kind: str, limit: int,
              more: int = 0) -> list[Dropped] | None:
    """Room under `limit` for `incoming` bytes of `incoming_kind` in an outbox holding `sizes` (bytes of each lane),
    and `more` messages beyond it, deleted and counted inside the caller's transaction; the messages dropped, or None
    when there can be no such room."""
    victims = (EVIDENCE, EVENT) if incoming_kind == EVENT else (EVIDENCE,)  # an answer never pushes out an event
    held = sum(sizes.values())
    if incoming > limit - held + sum(sizes.get(kind, 0) for kind in victims):
        return None
    dropped: list[Dropped] = []
    for kind, query, counter in ((EVIDENCE, OLDEST, "dropped_evidence"),
                                 (EVENT, SUPERSEDED_HEARTBEAT, "dropped_update"), (EVENT, OLDEST, "dropped_event")):
        while kind in victims and (held + incoming > limit or more > 0):
            row = db.execute(query, (kind,) if query is OLDEST else ()).fetchone()
            if row is None:
                break
            if held + incoming <= limit:
                more -= 1
            db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
            count(db, counter)
            held -= row[1]
            dropped.append((kind, row[1], counter, row[2]))
    return dropped if held + incoming <= limit and more <= 0 else None


def count(db: sqlite3.Connection, name: str) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1",
               (name,))
