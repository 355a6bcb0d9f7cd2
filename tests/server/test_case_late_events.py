"""Events that arrive late, as a node's backlog or another worker's batch delivers them: what the camera saw
before a step of the case counts as what it was, not as news after it."""

from __future__ import annotations

from datetime import timedelta

from server.core.security import Role


def test_what_the_camera_saw_before_the_feedback_delivered_late_charges_no_rework(city):
    """Found by review: a heartbeat from before the unit's feedback, delivered after it (a node's backlog), sent the
    case back for rework, counted against the unit, and the object's `end` then found the case in handling."""
    start = city.clock.now
    first = city.detect()
    city.clock.advance(minutes=5)
    city.act("accept", Role.FIELD_STAFF)
    city.clock.advance(minutes=5)
    city.act("feedback", Role.FIELD_STAFF)  # at 10:10
    six = (start + timedelta(minutes=6)).isoformat()
    city.detect(type="update", violation_id=first["violation_id"], observed_at=six)
    assert city.case().status == "feedback" and city.case().rework_count == 0
    city.detect(type="end", violation_id=first["violation_id"], observed_at=(start + timedelta(minutes=9)).isoformat())
    assert city.case().status == "closed", "gone before the feedback, as the camera saw"
    city.clock.advance(minutes=1)
    again = city.detect(observed_at=city.clock.now.isoformat())  # seen after the closing: back it comes
    assert again and city.actions()[-1] == ("reopen", "dispatched")


def test_another_object_seen_before_the_case_ended_keeps_it_open_until_it_ends_too(city):
    """Found by review: a second violation whose first event was older than the case's end (delivered late) was not
    counted as open; its `end` then took the count below the object still there, and the case closed early."""
    start = city.clock.now
    a = city.detect()
    city.clock.advance(minutes=10)
    city.detect(type="end", violation_id=a["violation_id"])  # A gone at 10:10
    b = city.detect(observed_at=(start + timedelta(minutes=9)).isoformat())  # B, seen at 10:09, delivered late
    assert city.case().open_violations == 1 and city.case().ended_at is None
    city.clock.advance(minutes=2)
    c = city.detect()  # C arrives at 10:12
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.clock.advance(minutes=1)
    city.detect(type="end", violation_id=b["violation_id"])
    assert city.case().status == "feedback", "C is still there"
    city.clock.advance(minutes=1)
    city.detect(type="end", violation_id=c["violation_id"])
    assert city.case().status == "closed"


def test_a_node_that_lost_power_and_then_ends_what_it_watched_counts_each_violation_out_once(city):
    """Found by review: a node started again after a power cut ends what it was watching as interrupted; when its
    telemetry had made the server forget those violations first, their `end` took the count down a second time,
    and another object still there no longer kept the case open."""
    import json

    from gridwatch.contract import SCHEMA_VERSION, event_topic, telemetry_topic
    from tests.factories import event_payload

    def report(uptime: float) -> None:
        payload = {"schema_version": SCHEMA_VERSION, "node_id": "node-a", "at": city.clock.now.isoformat(),
                   "session": 1, "uptime_seconds": uptime, "events_published": 0, "publish_pending": 0}
        assert city.ingest.handle(telemetry_topic("node-a"), json.dumps(payload).encode()) == "stored"

    def neighbour(**overrides) -> dict:  # node-b's camera across the street sees the same pile
        payload = event_payload(**{"node_id": "node-b", "camera_id": "cam-9", "zone_id": "pavement",
                                   "category": "litter", "code": "0102", "label": "garbage", "score": 0.8,
                                   "location": {"lat": 30.27425, "lon": 120.16525},
                                   "observed_at": city.clock.now.isoformat(), **overrides})
        assert city.ingest.handle(event_topic("node-b", "litter"), json.dumps(payload).encode()) == "stored"
        return payload

    report(uptime=3600)
    watched = city.detect(score=0.9)  # A, on node-a's camera
    neighbour()  # B, on node-b's
    assert city.case().open_violations == 2
    city.clock.advance(minutes=5)  # node-a loses its power and comes back
    report(uptime=20)
    assert city.case().open_violations == 1, "A forgotten, B (another node's) not"
    assert [e.type for e in city.case().events if e.violation_id == watched["violation_id"]][-1] == "end"
    city.detect(type="end", violation_id=watched["violation_id"], interrupted=True)  # the node's own end of A
    case = city.case()
    assert case.open_violations == 1 and case.ended_at is None, "B is still there"


def test_an_interrupted_end_that_came_before_its_new_leaves_no_violation_open(city):
    """Found by review: workers given one violation's messages out of order stored an interrupted `end` (the node
    stopped watching) before its `new`: the `end` opened no case and stayed apart, and the `new` then counted an
    open violation that nothing would ever end, so the camera could never verify the case by seeing it gone. In
    order, the count is 0; now out of order too, in separate batches or in one."""
    import json

    from gridwatch.contract import event_topic
    from server.models import EventRecord
    from tests.factories import event_payload

    start = city.clock.now
    first = event_payload(category="litter", code="0102", label="garbage", score=0.8, zone_id="kerb",
                          location={"lat": 30.2742, "lon": 120.1652}, observed_at=start.isoformat())
    end = {**first, "event_id": event_payload()["event_id"], "type": "end", "interrupted": True,
           "observed_at": (start + timedelta(minutes=6)).isoformat()}
    city.detect(**end)
    assert city.cases() == 0, "an interrupted end alone opens no case"
    city.detect(**first)
    case = city.case()
    assert (case.open_violations, case.ended_at, case.occurrences) == (0, None, 2)
    assert {event.case_id for event in case.events} == {case.id}, "the end joined the case its new opened"

    second = {**first, "event_id": event_payload()["event_id"], "violation_id": event_payload()["violation_id"],
              "camera_id": "cam-9", "location": {"lat": 30.2842, "lon": 120.1652}}  # another place: its own case
    second_end = {**end, "event_id": event_payload()["event_id"], "violation_id": second["violation_id"],
                  "camera_id": "cam-9", "location": second["location"]}
    topic = event_topic("node-a", "litter")
    assert city.ingest.handle_batch([(topic, json.dumps(second_end).encode()), (topic, json.dumps(second).encode())]) \
        == ["stored", "stored"]
    assert city.cases() == 2, "the other place's case"
    other = city.case(2)
    assert (other.open_violations, other.occurrences) == (0, 2)
    with city.database.session() as session:
        assert session.query(EventRecord).filter(EventRecord.case_id.is_(None)).count() == 0


def test_a_batch_that_waited_for_an_operators_step_is_stamped_after_it(city):
    """Found by review: a batch of camera events reads the clock before it waits for its cases' locks, an operator's
    step after taking its case's. The camera's `end`, read at 10:05 and waiting behind the unit's feedback at 10:07,
    verified and closed the case at 10:05: the steps went back in time, the case's `updated_at` fell behind the
    feedback, and an integrator keeping the newer of two messages kept the feedback. Now each step is stamped no
    earlier than the case's last change, and messages carry a `seq` that only grows."""
    import threading

    from gridwatch.contract import CaseAction
    from server.services.events import lock_case

    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.clock.advance(minutes=5)
    outcomes: list[str] = []
    with city.database.session() as session:
        case = lock_case(session, 1)  # the unit's feedback holds the case
        camera = threading.Thread(target=lambda: outcomes.append(city.ingest.handle(*city.event(
            type="end", violation_id=first["violation_id"]))))
        camera.start()
        camera.join(1.0)
        assert camera.is_alive(), "the camera's batch waits for the operator's step"
        feedback_at = city.clock.advance(minutes=2)
        city.messages += city.ingest.cases.act(case, CaseAction.FEEDBACK, "test field_staff", Role.FIELD_STAFF,
                                               feedback_at)
        session.commit()
    camera.join(30)
    assert outcomes == ["stored"]
    case = city.case()
    assert [(t.action, t.at >= feedback_at) for t in case.transitions][-3:] == [
        ("feedback", True), ("verify", True), ("close", True)]
    steps = [t.at for t in case.transitions]
    assert steps == sorted(steps), "a case's steps never go back in time"
    assert case.updated_at >= feedback_at and case.closed_at >= case.feedback_at
    mine = [message for message in city.messages if message.case_id == 1]
    assert [m.action.value for m in mine][-3:] == ["feedback", "verify", "close"]
    assert [m.changed_at for m in mine] == sorted(m.changed_at for m in mine)
    assert [m.seq for m in mine] == sorted({m.seq for m in mine}), "seq grows with every change of a case"


def test_a_sweep_and_a_citizens_report_that_read_the_clock_before_a_step_are_stamped_after_it(city):
    """The sweep and a citizen's report also read the clock before they wait for their case: an escalation or a
    report joining the case is not stamped before the operator's step that held it up."""
    from gridwatch.contract import Category, Location
    from tests.server.city import GRID_WL02

    city.detect(category="illegal_parking", code="0505", label="car")  # due in 30 minutes
    read = city.clock.advance(minutes=31)  # the sweep reads its clock, then waits for the case
    accepted = city.clock.advance(seconds=20)
    city.act("accept")
    assert city.ingest.sweep(read) == 1
    assert [(t.action, t.at >= accepted) for t in city.case().transitions[-2:]] == [("accept", True),
                                                                                    ("escalate", True)]
    city.clock.advance(seconds=20)
    city.act("extend", extend_minutes=30, reason="more time")
    extended = city.case().updated_at
    with city.database.session() as session:
        case, _, joined = city.ingest.cases.open_report(
            session, Category.ILLEGAL_PARKING, Location(**GRID_WL02), "a car on the pavement", None, {},
            "open311 (test)", read)
        session.commit()
    assert joined and city.case().transitions[-1].action == "join" and city.case().transitions[-1].at >= extended
    assert city.case().reports[-1]["at"] == read.isoformat(), "the report keeps when it came"
    assert [m.seq for m in city.messages] == sorted(m.seq for m in city.messages)
