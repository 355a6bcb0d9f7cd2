"""A node that started again without ending what it watched (power lost, the process killed): its violations on the
server's cases, open when it went, are ended as interrupted by its restart."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import case as sa_case
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from gridwatch.contract import EventType
from server.db import begin_writing
from server.models import CaseRecord, EventRecord, utcnow


def forget_violations_before(session: Session, node_id: str, started: datetime) -> int:
    """A node that started again without ending what it watched (its power lost, the process killed) has
    forgotten its open violations: on its cases, those last seen before it started no longer count as open,
    as after an interrupted `end` (they neither keep the camera from verifying the case nor verify it).
    Returns how many cases changed."""
    begin_writing(session)
    changed = 0
    # its cases, and the cases its violations joined (another node's camera raised them)
    watched = select(EventRecord.case_id).where(EventRecord.node_id == node_id, EventRecord.case_id.is_not(None))
    for case in session.scalars(select(CaseRecord).where(CaseRecord.open_violations > 0, or_(
            CaseRecord.node_id == node_id, CaseRecord.id.in_(watched))).order_by(CaseRecord.id).with_for_update()):
        still_open, forgotten = 0, []
        for violation, node, last_seen, ended in session.execute(
                select(EventRecord.violation_id, EventRecord.node_id, func.max(EventRecord.observed_at),
                       func.max(sa_case((EventRecord.type == EventType.END.value, 1), else_=0)))
                .where(EventRecord.case_id == case.id)
                .group_by(EventRecord.violation_id, EventRecord.node_id)):
            if ended:
                continue
            if node != node_id or last_seen >= started:  # another node's, or seen since the restart
                still_open += 1
            else:
                forgotten.append(violation)
        for violation in forgotten:
            _end_forgotten(session, case, violation, started)
        if still_open < case.open_violations:
            case.open_violations = still_open
            changed += 1
    return changed


def _end_forgotten(session: Session, case: CaseRecord, violation: str, started: datetime) -> None:
    """The `end` a forgotten violation never got, as the node's restart stands for it: interrupted, from its last
    event, at the restart. The case's events say what became of it, and the node's own interrupted `end` of it,
    should one still come (the node ends what it was watching when it starts again), changes no count twice."""
    last = session.scalars(select(EventRecord).where(EventRecord.violation_id == violation)
                           .order_by(EventRecord.observed_at.desc(), EventRecord.id.desc()).limit(1)).first()
    if last is None:
        return
    event_id = str(uuid.uuid4())
    session.add(EventRecord(
        event_id=event_id, violation_id=violation, case_id=case.id, type=EventType.END.value,
        node_id=last.node_id, camera_id=last.camera_id, zone_id=last.zone_id, category=last.category,
        code=last.code, started_at=last.started_at, observed_at=max(started, last.observed_at),
        received_at=utcnow(), payload={**last.payload, "event_id": event_id, "type": EventType.END.value,
                                       "interrupted": True, "evidence": None,
                                       "observed_at": max(started, last.observed_at).isoformat()}))
