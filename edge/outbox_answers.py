"""The node's outbox, which also keeps its last answers to commands by request id, each written in the transaction
that stores it for sending. The broker delivers a command again when it has no acknowledgement of it: after a
reconnection, a restart, or a broker that crashed before it saved the acknowledgement. A command delivered again
whose answer is kept is answered again, not carried out again (a camera is not reopened twice)."""

from __future__ import annotations

import json

from edge.outbox import ANSWER, Outbox

KEPT_ANSWERS = 500
"""How many answers are kept: a command is delivered again within a session or two, not after hundreds more."""


def _request_id(payload: bytes) -> str | None:
    """The request id an answer names; None for one to a command that could not be read (`unknown`)."""
    try:
        request_id = json.loads(payload).get("request_id")
    except (ValueError, AttributeError):
        return None
    return request_id if isinstance(request_id, str) and request_id != "unknown" else None


class NodeOutbox(Outbox):
    """The outbox with the answers kept (their table, `answered`, is made with the outbox's: edge/outbox_file.py)."""

    def _write(self, topic: str, payload: bytes, kind: str, created: float, watch: bool = True) -> int:
        """An answer is kept by its request id in the transaction that stores it (a salvaged one too), and only the
        last `KEPT_ANSWERS` are."""
        message_id = super()._write(topic, payload, kind, created, watch)
        if kind == ANSWER and (request_id := _request_id(payload)) is not None:
            self._db.execute("INSERT OR REPLACE INTO answered (request_id, payload) VALUES (?, ?)",
                             (request_id, payload))  # replaced, it is the newest again
            self._db.execute("DELETE FROM answered WHERE rowid <= (SELECT MAX(rowid) FROM answered) - ?",
                             (KEPT_ANSWERS,))
        return message_id

    def answered(self, request_id: str) -> bytes | None:
        """The answer kept for `request_id`, if it is among the last `KEPT_ANSWERS`."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM answered WHERE request_id = ?", (request_id,)).fetchone()
        return bytes(row[0]) if row is not None else None
