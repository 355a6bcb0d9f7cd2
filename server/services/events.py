"""Events into rows, a batch at a time: one query for duplicates, one for evidence already received, one for the
cases of the batch's violations, then each event applied to its case in order, all in the caller's transaction."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gridwatch.contract import CaseMessage, Event
from server.db import JsonText, one_of, wait_for_writers_of
from server.models import CaseRecord, CaseTransition, EventRecord, EvidenceRecord, NodeRecord
from server.services.cases import CaseService, Nearby


@dataclass(frozen=True)
class Incoming:
    index: int
    """Position in the batch of messages, so outcomes come back in order."""
    topic: str
    payload: bytes
    event: Event
    event_id: str = field(init=False)
    violation_id: str = field(init=False)
    """The ids as text, made once (a UUID's str() is not free, and a batch asks for them often)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_id", str(self.event.event_id))
        object.__setattr__(self, "violation_id", str(self.event.violation_id))


def announced_hashes(event: Event) -> dict[str, str]:
    """SHA-256 of each image the event announces, by variant."""
    if event.evidence is None:
        return {}
    hashes = {"frame": event.evidence.sha256}
    if event.evidence.crop is not None:
        hashes["crop"] = event.evidence.crop.sha256
    return hashes


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


def lock_cases(session: Session, ids: set[int]) -> dict[int, CaseRecord]:
    """The cases a batch will change, read and locked (on PostgreSQL: SELECT … FOR UPDATE) until it commits, so that
    another worker's batch changing one of them waits for this one and then reads what it wrote: counts, status and
    open violations are read, changed and written back, and two workers doing that at once would lose one's
    change. One statement in id order, so that two workers take their locks in the same order and never wait for
    each other in a circle."""
    if not ids:
        return {}
    with session.no_autoflush:
        return {case.id: case for case in session.scalars(
            select(CaseRecord).where(one_of(session, CaseRecord.id, ids)).order_by(CaseRecord.id).with_for_update())}


@dataclass
class _Batch:
    """What one batch knows from its first queries, kept up to date as its events are applied."""

    known: set[str]
    evidence: dict[str, dict[str, str]]
    case_of: dict[str, CaseRecord]
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    changes: list[tuple[CaseRecord, CaseTransition]] = field(default_factory=list)
    nearby: Nearby = field(default_factory=Nearby)
    """Cases the batch's new violations may repeat (`CaseService.nearby`)."""
    rows: list[tuple[dict, CaseRecord]] = field(default_factory=list)
    """Event rows to insert once their cases have ids."""


class EventWriter:
    def __init__(self, cases: CaseService) -> None:
        self.cases = cases

    def write(self, session: Session, batch: list[Incoming], now: datetime) -> tuple[list[str], list[CaseMessage]]:
        """Outcome per event (`stored`, `duplicate`, or the reason it is refused) and the case changes."""
        event_ids = [item.event_id for item in batch]
        evidence: dict[str, dict[str, str]] = defaultdict(dict)
        for event_id, variant, sha256 in session.execute(
                select(EvidenceRecord.event_id, EvidenceRecord.variant, EvidenceRecord.sha256)
                .where(one_of(session, EvidenceRecord.event_id, event_ids))):
            evidence[event_id][variant] = sha256
        violations = {item.violation_id for item in batch}
        case_ids = self._case_ids_of(session, violations)
        unseen = violations - case_ids.keys()
        if wait_for_writers_of(session, unseen):  # another worker may be making one of their cases right now
            case_ids |= self._case_ids_of(session, unseen)
        nearby = self.cases.nearby_ids(session, [
            (item.event.category, item.event.location, (item.event.node_id, item.event.camera_id, item.event.zone_id))
            for item in batch if item.violation_id not in case_ids], now)
        cases = lock_cases(session, set(case_ids.values()) | nearby)
        state = _Batch(
            known=set(session.scalars(select(EventRecord.event_id)
                                      .where(one_of(session, EventRecord.event_id, event_ids)))),
            evidence=evidence, case_of={violation: cases[case_id] for violation, case_id in case_ids.items()},
            nodes=load_nodes(session, {item.event.node_id for item in batch}),
            nearby=Nearby([cases[case_id] for case_id in nearby]))
        with session.no_autoflush:  # one flush for the whole batch, at the end
            outcomes = [self._apply(session, item, now, state) for item in batch]
        session.flush()  # new cases get their ids, which their events and messages carry
        if state.rows:
            # Core, not the ORM's bulk insert: the rows are plain already, and this is the busiest statement
            session.connection().execute(insert(EventRecord.__table__),
                                         [row | {"case_id": case.id} for row, case in state.rows])
        return outcomes, [self.cases.message(case, change) for case, change in state.changes]

    def _apply(self, session: Session, item: Incoming, now: datetime, state: _Batch) -> str:
        event, event_id, violation = item.event, item.event_id, item.violation_id
        if event_id in state.known:
            return "duplicate"
        received = state.evidence.get(event_id, {})  # images that came before their event (rare)
        announced = announced_hashes(event) if received else {}
        for variant, sha256 in received.items():
            if variant in announced and sha256 != announced[variant]:
                return (f"evidence ({variant}) received for this event has SHA-256 {sha256}, the event announces "
                        f"{announced[variant]}")
        state.known.add(event_id)
        known_case = state.case_of.get(violation)
        case, changes = self.cases.apply_event(session, event, now, known_case, known_case is None, state.nearby)
        state.changes += [(case, change) for change in changes]
        state.case_of[violation] = case
        state.rows.append(({
            "event_id": event_id, "violation_id": violation, "type": event.type.value, "node_id": event.node_id,
            "camera_id": event.camera_id, "zone_id": event.zone_id, "category": event.category.value,
            "code": event.code, "started_at": event.started_at, "observed_at": event.observed_at,
            "received_at": now, "payload": JsonText(event.model_dump_json())}, case))
        touch_node(session, event.node_id, now, held=state.nodes)
        return "stored"

    @staticmethod
    def _case_ids_of(session: Session, violations: set[str]) -> dict[str, int]:
        return dict(session.execute(select(EventRecord.violation_id, EventRecord.case_id).where(
            one_of(session, EventRecord.violation_id, violations), EventRecord.case_id.is_not(None)).distinct()).all())
