"""Idempotent case actions: a request sent with an `Idempotency-Key` header (as the IETF draft of that name
describes) is taken once. Sent again with the same token and the same body, it changes nothing and is answered
with the case as it stands; the same key on a different request is refused. A field app on a poor mobile network
retries an action whose answer it never got: without a key the retry is a second step (a second extension, or a
409 for an accept already taken that leaves the app unsure what happened).

Keys belong to the token that sent them (its SHA-256, never the token: two people may share a name, and one's key
must never answer for the other), are kept `KEPT`, and are pruned by the server's periodic sweep."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.models import ActionKey

KEPT = timedelta(hours=24)
"""How long a key is remembered: a retry comes within seconds or minutes, never a day later."""


class KeyReused(Exception):
    """The key came with another request before: the caller's bug, not a retry."""


def fingerprint(case_id: int, body: str) -> str:
    return hashlib.sha256(f"{case_id}\n{body}".encode()).hexdigest()


def seen_before(session: Session, token: str, key: str, case_id: int, body: str, now: datetime) -> bool:
    """Whether this request was taken already (call with the case locked, so a retry racing the first waits for
    it); raises KeyReused when the key went with another request. `token`: the SHA-256 of the caller's token."""
    earlier = session.scalar(select(ActionKey).where(ActionKey.token == token, ActionKey.key == key,
                                                     ActionKey.at >= now - KEPT))
    if earlier is None:
        return False
    if earlier.fingerprint != fingerprint(case_id, body):
        raise KeyReused(f"Idempotency-Key {key!r} was sent with another request (case {earlier.case_id}, "
                        f"{earlier.at:%Y-%m-%d %H:%M:%S} UTC): use a new key for each action")
    return True


def remember(session: Session, token: str, key: str, case_id: int, body: str, now: datetime) -> None:
    """Keep the key with the action, in its transaction (an expired one of the same token and key gives way)."""
    session.execute(delete(ActionKey).where(ActionKey.token == token, ActionKey.key == key))
    session.add(ActionKey(token=token, key=key, case_id=case_id, fingerprint=fingerprint(case_id, body), at=now))


def prune(session: Session, now: datetime) -> int:
    """Forget keys older than `KEPT` (the sweep's work, off the actions' path); returns how many."""
    return session.execute(delete(ActionKey).where(ActionKey.at < now - KEPT)).rowcount or 0
