"""Events into rows, a batch at a time: one query for duplicates, one for evidence already received, one for the
cases of the batch's violations, then each event applied to its case in order, all in the caller's transaction."""

from __future__ import annotations

import weakref
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from gridwatch.contract import CaseMessage, Event, EventType
from server.db import JsonText, begin_writing, claim, one_of
from server.models import CaseRecord, CaseTransition, EventRecord, EvidenceRecord
from server.services.case_records import case_message
from server.services.cases import CaseService
from server.services.places import Nearby, Place

SAME_SHAPE = ("occurrences", "updated_at", "last_seen_at", "dwell_seconds", "score", "open_violations", "ended_at")
"""What an event may change in its case: written for every case an event touched, changed or not, so that the
ORM groups the batch's updates into a few statements (one per set of columns) instead of dozens."""
POSTPONED = "postponed"
"""An event left for a later batch: another worker's transaction held its case."""


_EVENT_COLUMNS = ("event_id", "violation_id", "type", "node_id", "camera_id", "zone_id", "category", "code",
                  "started_at", "observed_at", "received_at", "payload", "case_id")
"""An event row as `EventWriter` builds it, in this order."""
_EVENT_INSERTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""The statement and the columns' binders, per dialect (an engine's own: its JSON serializer is part of them)."""


def insert_events(connection: Connection, rows: list[tuple]) -> None:
    """Event rows (`_EVENT_COLUMNS`) in one executemany, their values bound by each column's own type as SQLAlchemy
    would, but handed to the driver as tuples: the busiest statement of all, and SQLAlchemy's per-parameter
    bookkeeping on top of it cost as much as SQLite's own insert."""
    dialect = connection.dialect
    if (prepared := _EVENT_INSERTS.get(dialect)) is None:
        table = EventRecord.__table__
        placeholder = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = (f"INSERT INTO {table.name} ({', '.join(_EVENT_COLUMNS)}) "
               f"VALUES ({', '.join([placeholder] * len(_EVENT_COLUMNS))})")
        prepared = _EVENT_INSERTS[dialect] = (
            sql, [table.c[name].type.bind_processor(dialect) for name in _EVENT_COLUMNS])
    sql, processors = prepared
    connection.exec_driver_sql(sql, [tuple(value if process is None or value is None else process(value)
                                           for process, value in zip(processors, row, strict=True))
                                     for row in rows])


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


def images_key(event_id: str) -> str:
    """What an event and its images claim (`claim`) while either is written: they take turns."""
    return f"images:{event_id}"


def lock_case(session: Session, case_id: int) -> CaseRecord | None:
    """One case read to be changed (an operator's step): locked until the transaction ends, read afresh."""
    begin_writing(session)
    return session.get(CaseRecord, case_id, with_for_update=True, populate_existing=True)


def lock_cases(session: Session, ids: set[int], wait: bool = True) -> dict[int, CaseRecord]:
    """The cases a batch will change, read and locked (on PostgreSQL: SELECT … FOR UPDATE) until it commits, so that
    another worker's batch changing one of them waits for this one and then reads what it wrote: counts, status and
    open violations are read, changed and written back, and two workers doing that at once would lose one's
    change. One statement in id order, so that two workers take their locks in the same order and never wait for
    each other in a circle. Not waiting, the cases another transaction holds are left out (SKIP LOCKED)."""
    if not ids:
        return {}
    with session.no_autoflush:
        return {case.id: case for case in session.scalars(
            select(CaseRecord).where(one_of(session, CaseRecord.id, ids)).order_by(CaseRecord.id)
            .with_for_update(skip_locked=not wait))}


@dataclass
class _Batch:
    """What one batch knows from its first queries, kept up to date as its events are applied."""

    known: set[str]
    evidence: dict[str, dict[str, str]]
    busy: set[str]
    """Violations whose events wait for a later batch (another worker holds their case)."""
    case_of: dict[str, CaseRecord]
    changes: list[tuple[CaseRecord, CaseTransition]] = field(default_factory=list)
    nearby: Nearby = field(default_factory=Nearby)
    """Cases the batch's new violations may repeat (`CaseService.nearby`)."""
    rows: list[tuple[tuple, CaseRecord | None]] = field(default_factory=list)
    """Event rows (`_EVENT_COLUMNS` but the case id) to insert once their cases have ids."""
    caseless: Counter[str] = field(default_factory=Counter)
    """Interrupted `end`s that came before their violation had a case (stored earlier, or in this batch): they join
    the case its `new` opens."""
    ended: set[str] = field(default_factory=set)
    """Violations of the batch's `end`s that have one already (the server ended one its node forgot at a restart,
    `restarts.forget_violations_before`): a second changes no count."""


class EventWriter:
    def __init__(self, cases: CaseService) -> None:
        self.cases = cases

    def write(self, session: Session, batch: list[Incoming], now: datetime,
              patient: bool = True) -> tuple[list[str], list[CaseMessage]]:
        """Outcome per event (`stored`, `duplicate`, `postponed`, or the reason it is refused) and the case changes.
        Several workers may write cases of the same violations at once (a shared subscription deals a violation's
        events to any of them). Patient, the batch waits for the others' transactions holding its cases; not
        patient (on PostgreSQL), the events whose case another transaction holds, or whose new violation another
        worker is making the case of, are left out as `postponed`, to be written in a later batch, and the rest is
        written at once: workers write side by side instead of taking turns."""
        begin_writing(session)
        event_ids = [item.event_id for item in batch]
        evidence: dict[str, dict[str, str]] = defaultdict(dict)
        busy: set[str] = set()
        if announcing := [item.event_id for item in batch if item.event.evidence is not None]:
            # images that came before their event (rare): only an event that announces images can mismatch one.
            # An image another worker is storing at this moment is waited for (or, not patient, its event is
            # postponed), so that one of the two sees the other
            keys = {images_key(event_id): event_id for event_id in announcing}
            claimed = claim(session, keys, wait=patient)
            if claimed is not None and (unclaimed := {keys[key] for key in keys.keys() - claimed}):
                busy = {item.violation_id for item in batch if item.event_id in unclaimed}
            for event_id, variant, sha256 in session.execute(
                    select(EvidenceRecord.event_id, EvidenceRecord.variant, EvidenceRecord.sha256)
                    .where(one_of(session, EvidenceRecord.event_id, announcing))):
                evidence[event_id][variant] = sha256
        violations = {item.violation_id for item in batch}
        case_ids = self._case_ids_of(session, violations)
        places: dict[str, Place] = {}  # where each violation without a case yet was first seen
        for item in batch:
            if item.violation_id not in case_ids:
                places.setdefault(item.violation_id, (item.event.category, item.event.location,
                                                      (item.event.node_id, item.event.camera_id, item.event.zone_id)))
        # a new violation claims its place: two workers given its `new` and `update` at once, or two violations at
        # one place, make one case between them, the second worker joining the first's
        wanted = {violation: self.cases.repeats.keys(place) for violation, place in places.items()}
        claimed = claim(session, {key for keys in wanted.values() for key in keys}, wait=patient)
        if claimed is not None:
            busy |= {violation for violation, keys in wanted.items() if not claimed.issuperset(keys)}
        if claimed:  # another worker may have committed one of their cases since the first read
            case_ids |= self._case_ids_of(session, set(places) - busy)
        places = {violation: place for violation, place in places.items()
                  if violation not in case_ids and violation not in busy}
        nearby = self.cases.repeats.nearby_ids(session, list(places.values()), now)
        cases = lock_cases(session, set(case_ids.values()) | nearby, wait=patient)
        if held_elsewhere := (set(case_ids.values()) | nearby) - cases.keys():
            busy |= self._waiting_for(session, held_elsewhere & nearby, places, now)
            busy |= {violation for violation, case_id in case_ids.items() if case_id in held_elsewhere}
        state = _Batch(
            known=set(session.scalars(select(EventRecord.event_id)
                                      .where(one_of(session, EventRecord.event_id, event_ids)))),
            evidence=evidence, busy=busy,
            case_of={violation: cases[case_id] for violation, case_id in case_ids.items() if case_id in cases},
            nearby=Nearby([cases[case_id] for case_id in nearby if case_id in cases]))
        # the violations that have had their `end`: those the batch ends, and the new ones (an interrupted `end`
        # that came first opened no case: its rows wait, case-less, for the case its violation's `new` opens)
        stored_caseless: set[str] = set()
        if ending := {item.violation_id for item in batch if item.event.type is EventType.END} | set(places):
            for violation, case_id in session.execute(select(EventRecord.violation_id, EventRecord.case_id).where(
                    one_of(session, EventRecord.violation_id, ending), EventRecord.type == EventType.END.value)):
                state.ended.add(violation)
                if case_id is None and violation in places:
                    stored_caseless.add(violation)
                    state.caseless[violation] += 1
        with session.no_autoflush:  # one flush for the whole batch, at the end
            outcomes = [self._apply(session, item, now, state) for item in batch]
            for violation, count in state.caseless.items():  # case-less `end`s whose violation has its case now
                if (case := state.case_of.get(violation)) is not None:
                    case.occurrences += count
        for case in state.case_of.values():  # one UPDATE shape for the batch's heartbeats, sent as one executemany
            if case.id is not None:
                for name in SAME_SHAPE:
                    flag_modified(case, name)
        session.flush()  # new cases get their ids, which their events and messages carry
        if state.rows:
            insert_events(session.connection(), [(*row, case.id if case else None) for row, case in (
                (row, case or state.case_of.get(row[1])) for row, case in state.rows)])
        if adopted := [{"violation": violation, "case": state.case_of[violation].id} for violation in stored_caseless
                       if violation in state.case_of]:
            events = EventRecord.__table__
            session.connection().execute(update(events).where(
                events.c.violation_id == bindparam("violation"), events.c.case_id.is_(None))
                .values(case_id=bindparam("case")), adopted)
        return outcomes, [case_message(case, change) for case, change in state.changes]

    def _waiting_for(self, session: Session, held: set[int], places: dict[str, Place], now: datetime) -> set[str]:
        """The new violations that may repeat one of the `held` cases (held by another worker's transaction): they
        wait for it rather than open a second case at its place."""
        if not held:
            return set()
        with session.no_autoflush:
            others = Nearby(list(session.scalars(select(CaseRecord).where(one_of(session, CaseRecord.id, held)))))
        return {violation for violation, place in places.items()
                if self.cases.repeats.of(*place, now, others) is not None}

    def _apply(self, session: Session, item: Incoming, now: datetime, state: _Batch) -> str:
        event, event_id, violation = item.event, item.event_id, item.violation_id
        if violation in state.busy:
            return POSTPONED
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
        if known_case is None and event.interrupted:
            # the node stopped watching a violation the server never heard of (its `new` was lost): kept, but it
            # opens no case, which nothing could then verify
            case, changes = None, []
            state.caseless[violation] += 1
        else:
            case, changes = self.cases.apply_event(session, event, now, known_case, known_case is None,
                                                   state.nearby, ended_before=violation in state.ended)
            state.case_of[violation] = case
        if event.type is EventType.END:
            state.ended.add(violation)
        state.changes += [(case, change) for change in changes]
        state.rows.append(((event_id, violation, event.type.value, event.node_id, event.camera_id, event.zone_id,
                            event.category.value, event.code, event.started_at, event.observed_at, now,
                            JsonText(event.model_dump_json())), case))
        return "stored"

    @staticmethod
    def _case_ids_of(session: Session, violations: set[str]) -> dict[str, int]:
        return dict(session.execute(select(EventRecord.violation_id, EventRecord.case_id).where(
            one_of(session, EventRecord.violation_id, violations), EventRecord.case_id.is_not(None)).distinct()).all())
