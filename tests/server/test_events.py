"""Two workers on one PostgreSQL database given events of the same violations at the same moment (a shared
subscription deals a violation's `new` to one and its `update` to the other): one case each, every event counted in
it, no batch thrown away and written again, and a worker that does not wait writes what no one else holds."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from sqlalchemy import select

from gridwatch.contract import Event, event_topic
from server.db import Database
from server.models import CaseRecord
from server.services.cases import CaseService
from server.services.dispatch import Dispatcher
from server.services.events import POSTPONED, EventWriter, Incoming
from server.services.evidence import EvidenceStore
from server.services.ingest import Ingest
from server.services.metrics import Metrics
from tests.factories import event_payload

DISPATCH = Path(__file__).resolve().parents[2] / "config" / "demo" / "dispatch.yaml"


def test_two_workers_given_one_new_violation_at_once_make_one_case_and_write_each_batch_once(postgres_server,
                                                                                                 tmp_path):
    url = postgres_server.create_database()
    cases = CaseService(Dispatcher.from_file(DISPATCH))
    database = Database(url)
    metrics = Metrics(database)
    second = Ingest(database, cases, EvidenceStore(tmp_path / "e"), publish_case=lambda _message: None,
                    metrics=metrics)
    news = [event_payload(camera_id=f"cam-{n}", location={"lat": 30.27 + n / 100, "lon": 120.15}) for n in range(5)]
    updates = [event_payload(camera_id=new["camera_id"], location=new["location"], violation_id=new["violation_id"],
                             type="update") for new in news]  # five places apart: five cases
    topic = event_topic("node-a", "illegal_parking")

    # the first worker is in the middle of its batch: the cases of the new violations are made, not yet committed
    with database.session() as first:
        EventWriter(cases).write(first, [
            Incoming(n, topic, json.dumps(payload).encode(), Event.model_validate(payload))
            for n, payload in enumerate(news)], second.clock())
        first.flush()
        outcomes: list[str] = []
        worker = threading.Thread(target=lambda: outcomes.extend(
            second.handle_batch([(topic, json.dumps(payload).encode()) for payload in updates])))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "the second worker waits for the first one's cases"
        first.commit()
    worker.join(30)

    assert outcomes == ["stored"] * 5
    with database.session() as session:
        made = session.scalars(select(CaseRecord)).all()
    assert sorted(case.violation_id for case in made) == sorted(payload["violation_id"] for payload in news)
    assert [case.occurrences for case in made] == [2] * 5
    assert [case.open_violations for case in made] == [1] * 5
    retried = metrics.registry.get_sample_value("gridwatch_ingest_batch_retries_total")
    assert retried == 0, "no batch was thrown away and written again"


def test_a_batch_that_does_not_wait_leaves_the_events_another_worker_holds_for_later_and_writes_the_rest(
        postgres_server, tmp_path):
    url = postgres_server.create_database()
    cases = CaseService(Dispatcher.from_file(DISPATCH))
    database = Database(url)
    ingest = Ingest(database, cases, EvidenceStore(tmp_path / "e"), publish_case=lambda _message: None)
    topic = event_topic("node-a", "illegal_parking")

    def at(n: int, **overrides) -> dict:  # places 1.1 km apart, one camera each
        return event_payload(camera_id=f"cam-{n}", location={"lat": 30.27 + n / 100, "lon": 120.15}, **overrides)

    held, free = at(1), at(2)
    assert ingest.handle_batch([(topic, json.dumps(held).encode()), (topic, json.dumps(free).encode())]) == \
        ["stored", "stored"]
    making = at(3)
    batch = [at(1, violation_id=held["violation_id"], type="update"),   # its case is held by the other worker
             at(2, violation_id=free["violation_id"], type="update"),
             at(3, violation_id=making["violation_id"], type="update"),  # the other worker is making its case
             at(1),                                                       # a new violation that would join it
             at(4),                                                       # somewhere else
             at(3)]                                 # a new violation where the other worker is opening a case
    outcomes: list[str] = []
    with database.session() as other:  # another worker's batch, not yet committed
        EventWriter(cases).write(other, [
            Incoming(n, topic, json.dumps(payload).encode(), Event.model_validate(payload))
            for n, payload in enumerate([at(1, violation_id=held["violation_id"], type="update"), making])],
            ingest.clock())
        other.flush()
        worker = threading.Thread(target=lambda: outcomes.extend(ingest.handle_batch(
            [(topic, json.dumps(payload).encode()) for payload in batch], patient=False)))
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "a batch that does not wait does not wait"
        assert outcomes == ["postponed", "stored", "postponed", "postponed", "stored", "postponed"]
        other.commit()

    later = [(topic, json.dumps(payload).encode()) for payload, outcome in zip(batch, outcomes, strict=True)
             if outcome == "postponed"]
    assert ingest.handle_batch(later, patient=False) == ["stored"] * 4
    with database.session() as session:
        by_violation = {case.violation_id: case for case in session.scalars(select(CaseRecord))}
    assert set(by_violation) == {held["violation_id"], free["violation_id"], making["violation_id"],
                                 batch[4]["violation_id"]}, "the new violations at held places joined their cases"
    assert by_violation[held["violation_id"]].occurrences == 4  # its new, the other's update, ours, the joiner
    assert by_violation[making["violation_id"]].occurrences == 3
    assert by_violation[free["violation_id"]].occurrences == 2


class FailingOn(CaseService):
    """A case engine with a bug that one violation's events meet."""

    def __init__(self, dispatcher: Dispatcher, violation_id: str) -> None:
        super().__init__(dispatcher)
        self.violation_id = violation_id

    def apply_event(self, session, event, *args, **keywords):  # noqa: ANN001, ANN002, ANN003, ANN201
        if str(event.violation_id) == self.violation_id:
            raise RuntimeError("a bug met this event")
        return super().apply_event(session, event, *args, **keywords)


def test_events_written_one_by_one_keep_their_violations_order_past_a_postponed_one(postgres_server, tmp_path):
    """A batch that fails for a bug is written an event at a time. One postponed there (another worker held its
    case) was followed by its violation's `end`, written first if the other worker let go meanwhile: the case then
    saw an `end` before its `update`. Now the `end` is postponed with it."""
    url = postgres_server.create_database()
    database = Database(url)
    topic = event_topic("node-a", "illegal_parking")
    bad = event_payload(camera_id="cam-9", location={"lat": 30.3, "lon": 120.15})
    ingest = Ingest(database, FailingOn(Dispatcher.from_file(DISPATCH), bad["violation_id"]),
                    EvidenceStore(tmp_path / "e"), publish_case=lambda _message: None)
    new = event_payload()
    assert ingest.handle(topic, json.dumps(new).encode()) == "stored"
    update = event_payload(violation_id=new["violation_id"], type="update")
    end = event_payload(violation_id=new["violation_id"], type="end")

    with database.session() as other:  # another worker's transaction holds the case
        other.scalars(select(CaseRecord).with_for_update()).all()
        write = ingest.writer.write

        def then_the_other_lets_go(session, batch, now, patient=True):  # noqa: ANN001, ANN202
            outcomes, messages = write(session, batch, now, patient)
            if POSTPONED in outcomes:
                other.commit()
            return outcomes, messages

        ingest.writer.write = then_the_other_lets_go
        outcomes = ingest.handle_batch([(topic, json.dumps(payload).encode()) for payload in (bad, update, end)],
                                       patient=False)
    assert outcomes == ["dead_letter", POSTPONED, POSTPONED], "the end waits with its update"
    assert ingest.handle_batch([(topic, json.dumps(update).encode()), (topic, json.dumps(end).encode())],
                               patient=False) == ["stored", "stored"]
    with database.session() as session:
        case = session.scalars(select(CaseRecord)).one()
    assert case.occurrences == 3 and case.open_violations == 0
