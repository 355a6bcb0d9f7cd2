"""Cases from events: every message of one violation belongs to one case, which is filed and dispatched at once.

Every transition records who, when and why, and becomes a `CaseMessage` for integrators once committed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridwatch.contract import (
    SCHEMA_VERSION,
    CaseAssignment,
    CaseMessage,
    CaseStatus,
    Category,
    Event,
    EventType,
    Location,
    Person,
)
from server.models import CaseRecord, CaseTransition, EventRecord
from server.services.dispatch import Dispatcher

SYSTEM_ACTOR = "system"


class CaseService:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def apply_event(self, session: Session, event: Event, record: EventRecord, now: datetime) -> list[CaseMessage]:
        """Attach `record` to its violation's case, opening and dispatching the case if this is its first message
        (a lost `new` still opens one from its `update` or `end`). Returns the state changes to publish."""
        case = session.scalar(select(CaseRecord).where(CaseRecord.violation_id == str(event.violation_id)))
        changes: list[CaseTransition] = []
        if case is None:
            case = self._open(event, now)
            session.add(case)
            changes.append(self._transition(case, CaseStatus.COLLECTED, now, f"camera {event.camera_id}",
                                            f"{event.label} {event.type.value} in zone {event.zone_id}, "
                                            f"dwell {event.dwell_seconds:.0f} s, score {event.score:.2f}"))
            changes.append(self._transition(case, CaseStatus.REGISTERED, now, SYSTEM_ACTOR,
                                            "filed automatically from a camera detection"))
            assignment, allowed = self.dispatcher.assign(event.category, event.location)
            self._assign(case, assignment)
            case.deadline_at = now + allowed
            target = f"{assignment.unit_name}" + (f", street chief {assignment.street_chief.name}"
                                                    if assignment.street_chief else "")
            why = "no grid or category route matched; fallback unit" if assignment.fallback else "auto-dispatch"
            changes.append(self._transition(case, CaseStatus.DISPATCHED, now, SYSTEM_ACTOR, f"{why}: {target}"))
        record.case = case
        case.occurrences += 1
        case.last_seen_at = max(case.last_seen_at, event.observed_at)
        case.dwell_seconds = max(case.dwell_seconds, event.dwell_seconds)
        case.score = max(case.score, event.score)
        case.updated_at = now
        if event.type is EventType.END:
            case.ended_at = event.observed_at
        session.flush()
        return [self.message(case, change) for change in changes]

    @staticmethod
    def _open(event: Event, now: datetime) -> CaseRecord:
        return CaseRecord(
            violation_id=str(event.violation_id),
            category=event.category.value,
            code=event.code,
            status=CaseStatus.COLLECTED.value,
            node_id=event.node_id,
            camera_id=event.camera_id,
            zone_id=event.zone_id,
            label=event.label,
            score=event.score,
            lat=event.location.lat if event.location else None,
            lon=event.location.lon if event.location else None,
            opened_at=now,
            updated_at=now,
            started_at=event.started_at,
            last_seen_at=event.observed_at,
            dwell_seconds=event.dwell_seconds,
            occurrences=0,
        )

    @staticmethod
    def _assign(case: CaseRecord, assignment: CaseAssignment) -> None:
        case.grid_id, case.community, case.street = assignment.grid_id, assignment.community, assignment.street
        chief = assignment.street_chief
        case.street_chief_name, case.street_chief_phone = (chief.name, chief.phone) if chief else (None, None)
        case.unit_id, case.unit_name, case.fallback = assignment.unit_id, assignment.unit_name, assignment.fallback

    @staticmethod
    def _transition(case: CaseRecord, status: CaseStatus, now: datetime, actor: str, reason: str) -> CaseTransition:
        transition = CaseTransition(from_status=case.status if case.transitions else None, to_status=status.value,
                                    at=now, actor=actor, reason=reason)
        case.transitions.append(transition)
        case.status = status.value
        return transition

    @staticmethod
    def assignment(case: CaseRecord) -> CaseAssignment | None:
        if case.unit_id is None:
            return None
        chief = Person(name=case.street_chief_name, phone=case.street_chief_phone) if case.street_chief_name else None
        return CaseAssignment(grid_id=case.grid_id, community=case.community, street=case.street,
                              street_chief=chief, unit_id=case.unit_id, unit_name=case.unit_name or case.unit_id,
                              fallback=case.fallback)

    def message(self, case: CaseRecord, transition: CaseTransition) -> CaseMessage:
        return CaseMessage(
            schema_version=SCHEMA_VERSION,
            case_id=case.id,
            category=Category(case.category),
            code=case.code,
            status=CaseStatus(transition.to_status),
            previous_status=CaseStatus(transition.from_status) if transition.from_status else None,
            changed_at=transition.at,
            changed_by=transition.actor,
            reason=transition.reason,
            violation_id=case.violation_id,
            node_id=case.node_id,
            camera_id=case.camera_id,
            zone_id=case.zone_id,
            location=Location(lat=case.lat, lon=case.lon) if case.lat is not None else None,
            assignment=self.assignment(case) if transition.to_status == CaseStatus.DISPATCHED.value else None,
            deadline_at=case.deadline_at if transition.to_status == CaseStatus.DISPATCHED.value else None,
            opened_at=case.opened_at,
        )
