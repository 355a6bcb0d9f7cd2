"""Cases from events and people, on a real SQLite database: filing by score, joining and reopening repeats, the
camera verifying closure, people's steps. Deadlines and escalation: test_case_deadlines.py."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from gridwatch.contract import CaseAction, CaseMessage, Category, event_topic
from server.core.security import Role
from server.models import CaseRecord, EventRecord
from server.services.assessment import GroupBy, Period, assess
from server.services.dispatch import Dispatcher
from server.services.events import lock_case
from tests.factories import event_payload
from tests.server.city import DISPATCH, GRID_WL02


def test_a_confident_detection_files_and_dispatches_itself_to_the_person_on_duty(city):
    city.detect(score=0.8)
    case = city.case()
    assert city.actions() == [("collect", "collected"), ("file", "registered"), ("dispatch", "dispatched")]
    assert case.unit_id == "sanitation" and case.street_chief_name.startswith("李晓梅")
    assert case.on_duty_name == "吴芳 Wu Fang" and case.filed_by == "system"
    assert case.deadline_at == city.clock.now + timedelta(hours=4)
    assert [m.status.value for m in city.messages] == ["collected", "registered", "dispatched"]
    assert city.messages[-1].assignment.on_duty.name == "吴芳 Wu Fang"


def test_a_case_for_a_unit_without_a_roster_names_the_units_duty_phone(city):
    """Found by review: the unit's phone, documented as shown with the assignment, was on the public board only; a
    parking case for the traffic police (no roster, so no one on duty) named no one to call."""
    city.detect(category="illegal_parking", code="0505", label="car", score=0.9)
    case = city.case()
    assert (case.unit_id, case.on_duty_name) == ("traffic-police", None)
    assert city.messages[-1].assignment.unit_phone == "0571-8700-0201"


def test_a_doubtful_detection_waits_for_an_operator_until_its_score_rises(city):
    first = city.detect(score=0.4)
    assert city.case().status == "collected"
    assert "below 0.60: waits for an operator" in city.case().transitions[0].reason
    city.detect(type="update", violation_id=first["violation_id"], score=0.55)
    assert city.case().status == "collected"
    city.detect(type="update", violation_id=first["violation_id"], score=0.7)
    assert city.actions()[-2:] == [("file", "registered"), ("dispatch", "dispatched")]


def test_an_operator_confirms_or_rejects_what_waits(city):
    city.detect(score=0.3)
    city.detect(score=0.3, location={"lat": 30.2760, "lon": 120.1690}, camera_id="cam-2")
    city.act("file", Role.OPERATOR, case_id=1, reason="pile confirmed on the evidence photo")
    city.act("void", Role.OPERATOR, case_id=2, void_reason="false_positive", reason="a shadow")
    assert city.case(1).status == "dispatched" and city.case(1).filed_by == "test operator"
    assert city.case(2).status == "void" and city.case(2).void_reason == "false_positive"


def test_device_faults_file_themselves_whatever_the_score(city):
    city.detect(category="device_fault", code="DEV-CAM", label="frozen", score=0.0, zone_id="camera")
    assert city.case().status == "dispatched" and city.case().unit_id == "operations"


@pytest.mark.parametrize(
    ("second", "cases", "joined"),
    [
        ({}, 1, True),                                                     # same camera and zone
        ({"camera_id": "cam-9", "zone_id": "pavement",
          "location": {"lat": 30.27425, "lon": 120.16525}}, 1, True),      # another camera, 7 m away
        ({"camera_id": "cam-9", "zone_id": "pavement",
          "location": {"lat": 30.2760, "lon": 120.1652}}, 2, False),       # 200 m away
        ({"category": "illegal_parking", "code": "0505", "label": "car"}, 2, False),  # another category
    ],
)
def test_a_repeat_at_the_same_place_joins_the_open_case(city, second, cases, joined):
    city.detect()
    city.clock.advance(minutes=5)
    city.detect(**second)
    assert city.cases() == cases
    assert (city.case().occurrences == 2) is joined
    assert (("join", "dispatched") in city.actions()) is joined


def test_a_batch_of_repeats_at_many_places_joins_each_open_case_once(city):
    """One batch, more places than one lookup statement holds: each repeat joins the case at its own place."""
    places = 400  # 60 m apart, so no two are "the same place"

    def batch(minutes: float) -> list[tuple[str, bytes]]:
        at = city.clock.advance(minutes=minutes).isoformat()
        return [(event_topic("node-a", "litter"), json.dumps(event_payload(
            category="litter", code="0102", label="garbage", score=0.8, camera_id=f"cam-{n}", zone_id="kerb",
            location={"lat": 30.2 + n * 0.00055, "lon": 120.16}, observed_at=at)).encode()) for n in range(places)]

    assert set(city.ingest.handle_batch(batch(0))) == {"stored"}
    assert set(city.ingest.handle_batch(batch(5))) == {"stored"}
    assert city.cases() == places
    with city.database.session() as session:
        assert {case.occurrences for case in session.query(CaseRecord)} == {2}


def test_an_operator_step_and_a_detection_at_once_take_turns_and_neither_is_lost(city):
    city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF, reason="cleared")
    with city.database.session() as session:
        case = lock_case(session, 1)  # what the API's action route reads
        steps = city.ingest.cases.act(case, CaseAction.VERIFY, "operator", Role.OPERATOR, city.clock.now)
        seen_again = threading.Thread(target=city.detect)  # the camera sees garbage there again meanwhile
        seen_again.start()
        seen_again.join(timeout=1)
        assert seen_again.is_alive(), "the detection wrote the case while the operator's step was in hand"
        session.commit()
    seen_again.join(timeout=30)
    # before: the detection read `feedback` and sent the case back for rework, then the operator's commit wrote
    # `verified` over it: a case the camera still sees, marked verified
    assert [step.action for step in steps] == [CaseAction.VERIFY]
    assert city.actions()[-2:] == [("verify", "verified"), ("reopen", "dispatched")]
    assert city.case().status == "dispatched" and city.case().occurrences == 2


def test_a_repeat_soon_after_closure_reopens_the_case_and_a_late_one_opens_another(city):
    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF, reason="cleared")
    city.detect(type="end", violation_id=first["violation_id"])
    assert city.case().status == "closed"
    city.clock.advance(minutes=20)
    city.detect()
    assert city.cases() == 1 and city.actions()[-1] == ("reopen", "dispatched")
    assert city.case().deadline_at == city.clock.now + timedelta(hours=4)
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.detect(type="end", violation_id=city.case().events[-1].violation_id)
    city.clock.advance(minutes=31)
    city.detect()
    assert city.cases() == 2 and city.case(1).status == "closed"


def test_a_case_verified_by_an_operator_reopens_only_within_the_window_from_its_verification(city):
    """Found by review: the window of a case verified but not yet closed ran from its last change, which every
    later event moved (here the camera's interrupted end): a pile back days later reopened it instead of opening a
    new case."""
    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF, reason="cleared")
    city.act("verify", Role.OPERATOR, reason="photo shows the pavement clear")
    verified_at = city.case().verified_at
    assert city.case().status == "verified" and verified_at == city.clock.now
    city.clock.advance(minutes=20)
    city.detect(type="end", violation_id=first["violation_id"], interrupted=True)  # the node restarted
    city.clock.advance(minutes=15)  # 35 minutes after the verification, 15 after the last event
    city.detect()
    assert city.cases() == 2, "the window (30 minutes) ran from the verification"
    assert city.case(1).status == "verified" and city.case(1).verified_at == verified_at


def test_a_repeat_soon_after_an_operators_verification_reopens_the_case(city):
    city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF, reason="cleared")
    city.act("verify", Role.OPERATOR)
    city.clock.advance(minutes=25)
    city.detect()
    assert city.cases() == 1 and city.actions()[-1] == ("reopen", "dispatched")
    assert city.case().verified_at is None, "back with the unit: no longer verified"


def test_a_reopened_case_is_timed_by_its_new_round_not_the_last_ones_feedback(city):
    """Found by review: a reopened case kept the first round's feedback time, so once the new round was accepted
    its handling time ran backwards (feedback before acceptance) and pulled the unit's mean handling time down."""
    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.clock.advance(minutes=30)
    city.act("feedback", Role.FIELD_STAFF, reason="cleared")
    city.detect(type="end", violation_id=first["violation_id"])
    city.clock.advance(minutes=20)
    city.detect()  # back again: reopened
    city.clock.advance(minutes=10)
    city.act("accept", Role.FIELD_STAFF)
    case = city.case()
    assert case.status == "handling" and case.feedback_at is None
    [row] = assess([case], GroupBy.UNIT, Period.DAY, ZoneInfo("Asia/Shanghai"), city.clock.now)
    assert row.mean_handling_minutes is None, "no feedback in this round yet"
    city.clock.advance(minutes=45)
    city.act("feedback", Role.FIELD_STAFF, reason="cleared again")
    [row] = assess([city.case()], GroupBy.UNIT, Period.DAY, ZoneInfo("Asia/Shanghai"), city.clock.now)
    assert row.mean_handling_minutes == 45


def test_the_camera_that_raised_the_case_verifies_its_closure(city):
    first = city.detect()
    city.clock.advance(minutes=10)
    city.act("accept", Role.FIELD_STAFF)
    city.clock.advance(minutes=50)
    city.act("feedback", Role.FIELD_STAFF, reason="pile removed")
    assert city.case().status == "feedback"
    city.clock.advance(minutes=1)
    city.detect(type="end", violation_id=first["violation_id"])
    case = city.case()
    assert city.actions()[-2:] == [("verify", "verified"), ("close", "closed")]
    assert case.on_time is True and case.closed_at == city.clock.now
    assert case.accepted_at - case.dispatched_at == timedelta(minutes=10)


def test_an_end_the_node_sent_because_it_stopped_watching_verifies_nothing(city):
    """A node restarting (or its camera failing, or its zones changing) ends what it was watching as `interrupted`:
    the violation no longer holds the case open, but the case is not taken for cleared."""
    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF, reason="pile removed")
    city.clock.advance(minutes=1)
    city.detect(type="end", violation_id=first["violation_id"], interrupted=True)
    case = city.case()
    assert (case.status, case.open_violations, case.ended_at) == ("feedback", 0, None), "not verified by it"
    city.clock.advance(minutes=2)
    back = city.detect()  # the node is back, and the pile is still there: a violation of its own
    assert city.actions()[-1] == ("rework", "handling") and city.case().open_violations == 1
    city.act("feedback", Role.FIELD_STAFF, reason="really removed now")
    city.detect(type="end", violation_id=back["violation_id"])  # gone: the camera verifies
    assert city.actions()[-2:] == [("verify", "verified"), ("close", "closed")]


def test_an_interrupted_end_of_a_violation_never_heard_of_is_kept_and_opens_no_case(city):
    """Its `new` was lost (a full outbox dropped it): a case opened from it could never be verified by the camera."""
    city.detect(type="end", interrupted=True)
    assert city.cases() == 0
    with city.database.session() as session:
        [event] = session.query(EventRecord).all()
        assert (event.type, event.case_id) == ("end", None)


def test_seen_again_after_feedback_goes_back_for_rework(city):
    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.detect(type="update", violation_id=first["violation_id"])
    assert city.case().status == "handling" and city.case().rework_count == 1
    assert "still sees garbage after the feedback" in city.case().transitions[-1].reason


def test_an_update_written_after_the_end_but_seen_before_it_changes_nothing(city):
    """Two workers may write one violation's events out of order: an `update` observed before the `end` already
    applied is old news, and must neither send a verified case back for rework nor reopen a closed one."""
    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    seen = city.clock.now
    city.clock.advance(minutes=1)
    city.detect(type="end", violation_id=first["violation_id"])
    assert city.case().status == "closed"
    steps = city.actions()
    city.detect(type="update", violation_id=first["violation_id"], observed_at=seen.isoformat())
    assert city.case().status == "closed" and city.actions() == steps and city.case().ended_at is not None
    city.clock.advance(minutes=1)
    city.detect(type="update", violation_id=first["violation_id"])  # seen after the end: it is back
    assert city.actions()[-1] == ("reopen", "dispatched")


def test_gone_before_the_feedback_closes_on_the_feedback(city):
    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.detect(type="end", violation_id=first["violation_id"])
    assert city.case().status == "handling"
    city.act("feedback", Role.FIELD_STAFF)
    assert city.case().status == "closed"


def test_the_case_stays_open_while_a_joined_violation_is_still_there(city):
    first = city.detect()
    second = city.detect(camera_id="cam-2")
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.detect(type="end", violation_id=first["violation_id"])
    assert city.case().status == "feedback"
    city.detect(type="end", violation_id=second["violation_id"], camera_id="cam-2")
    assert city.case().status == "feedback"  # the raising camera (cam-1) has not confirmed the last end
    city.act("verify", Role.OPERATOR)
    city.act("close", Role.SUPERVISOR)
    assert city.case().status == "closed"


def test_reassignment_and_return_move_the_case_between_units(city):
    city.detect()
    city.act("return", Role.FIELD_STAFF, reason="this is a construction site's waste")
    assert city.case().status == "returned" and city.case().return_count == 1
    city.act("dispatch", Role.OPERATOR, unit_id="enforcement", reason="construction waste: enforcement")
    assert city.case().unit_id == "enforcement" and city.case().status == "dispatched"
    with pytest.raises(Exception, match="no unit 'nobody'"):
        city.act("reassign", Role.OPERATOR, unit_id="nobody", reason="x")


def test_a_case_whose_unit_left_the_dispatch_configuration_reopens_to_the_route(city, tmp_path):
    first = city.detect()
    city.act("reassign", Role.OPERATOR, unit_id="operations", reason="a broken bin sensor")
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.detect(type="end", violation_id=first["violation_id"])
    assert city.case().status == "closed" and city.case().unit_id == "operations"
    config = DISPATCH.read_text().replace("grids: grids.geojson", f"grids: {DISPATCH.parent / 'grids.geojson'}")
    config = "\n".join(line for line in config.replace("unit: operations", "unit: command-centre").splitlines()
                       if not line.strip().startswith("operations:"))
    (tmp_path / "dispatch.yaml").write_text(config, encoding="utf-8")
    city.ingest.cases.dispatcher = Dispatcher.from_file(tmp_path / "dispatch.yaml")
    city.clock.advance(minutes=5)
    city.detect()  # before: KeyError 'operations', the event in the dead letters
    case = city.case()
    assert (case.status, case.unit_id) == ("dispatched", "sanitation")
    assert "no longer in the dispatch configuration" in case.transitions[-1].reason


def test_every_message_for_integrators_validates_against_the_contract(city):
    first = city.detect()
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.detect(type="end", violation_id=first["violation_id"])
    for message in city.messages:
        CaseMessage.model_validate_json(message.model_dump_json())
    assert [m.action.value for m in city.messages] == ["collect", "file", "dispatch", "accept", "feedback",
                                                       "verify", "close"]
    assert {str(m.violation_id) for m in city.messages} == {first["violation_id"]}
    # found by review: the batch dispatched the case at once, and its collect and file messages already named the
    # unit and the deadline that only the dispatch gave it
    assert [(m.assignment.unit_id if m.assignment else None, m.deadline_at is not None)
            for m in city.messages[:3]] == [(None, False), (None, False), ("sanitation", True)]


def test_a_case_a_citizen_reopens_waits_for_the_camera_to_see_it_gone_again(city):
    """Found by review: a camera case closed (the camera saw the pile gone), a citizen reported it back and
    reopened it, and the unit's feedback then closed it at once on the camera's old observation."""
    from gridwatch.contract import Location

    first = city.detect(score=0.9)
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.detect(type="end", violation_id=first["violation_id"])
    assert city.case().status == "closed"
    city.clock.advance(minutes=20)
    with city.database.session() as session:
        city.ingest.cases.open_report(session, Category.LITTER, Location(**GRID_WL02), "the bags are back", None,
                                      {"phone": "139"}, "open311 (hotline)", city.clock.now)
        session.commit()
    assert city.case().status == "dispatched"
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    assert city.case().status == "feedback", "waits for the camera (or an operator), not closed by the old end"
    city.detect(type="end", violation_id=first["violation_id"])  # the camera sees it gone after the report
    assert city.case().status == "closed"


def test_a_doubtful_detection_joining_a_citizens_report_waits_with_it_for_an_operator(city):
    """Found by review: a report is kept with a score of 1.0 (a person saw it), and a detection of 0.2 joining it
    filed and dispatched the case as "score 1.00 reached the filing threshold"; in the other order it waited."""
    from gridwatch.contract import Location

    with city.database.session() as session:
        city.ingest.cases.open_report(session, Category.LITTER, Location(**GRID_WL02), "bags on the kerb", None,
                                      {"phone": "139"}, "open311 (hotline)", city.clock.now)
        session.commit()
    city.clock.advance(minutes=1)
    doubtful = city.detect(score=0.2)
    assert city.case().status == "collected" and city.actions()[-1][0] == "join"
    city.detect(type="update", violation_id=doubtful["violation_id"], score=0.7)
    assert city.actions()[-2:] == [("file", "registered"), ("dispatch", "dispatched")]
    assert city.case().transitions[-2].reason == "score 0.70 reached the filing threshold"


def test_a_returned_case_goes_to_another_unit_and_a_deferred_one_resumed_counts_as_accepted(city):
    """Found by review: dispatched again without a unit, a case sanitation returned as not theirs went straight
    back to sanitation; and a case deferred before anyone accepted it was left out of the time indicators."""
    from server.services.workflow import WorkflowError

    city.detect(score=0.9)
    city.act("return", Role.FIELD_STAFF, reason="not ours: enforcement's")
    with pytest.raises(WorkflowError, match="sanitation returned this case"):
        city.act("dispatch", Role.OPERATOR)
    with pytest.raises(WorkflowError, match="sanitation returned this case"):
        city.act("dispatch", Role.OPERATOR, unit_id="sanitation")
    city.act("dispatch", Role.OPERATOR, unit_id="enforcement")
    assert city.case().unit_id == "enforcement"
    city.act("defer", Role.SUPERVISOR, reason="market day")
    city.act("resume", Role.SUPERVISOR, reason="market over")
    assert city.case().accepted_at == city.clock.now


def test_a_reopened_fallback_case_goes_where_the_route_sends_it_with_the_fallback_deadline(city):
    """Found by review: a case outside every grid went to the command centre with the fallback deadline; reopened,
    it kept the command centre but took the category's deadline (30 minutes) and lost its fallback mark."""
    outside = {"lat": 31.5, "lon": 121.5}
    first = city.detect(category="illegal_parking", code="0505", label="car", score=0.9, location=outside)
    dispatched = city.case()
    assert dispatched.fallback and dispatched.deadline_at - city.clock.now > timedelta(minutes=30)
    city.act("accept", Role.ADMIN)
    city.act("feedback", Role.ADMIN)
    city.detect(category="illegal_parking", code="0505", label="car", type="end", location=outside,
                violation_id=first["violation_id"])
    assert city.case().status == "closed"
    city.clock.advance(minutes=10)
    city.detect(category="illegal_parking", code="0505", label="car", score=0.9, location=outside)
    reopened = city.case()
    assert reopened.status == "dispatched" and reopened.fallback
    assert reopened.deadline_at - city.clock.now == dispatched.deadline_at - dispatched.dispatched_at


def test_a_node_that_lost_power_leaves_no_violation_keeping_its_case_from_being_verified(city):
    """Found by review: a node killed or powered off never ends what it watched; its violation stayed open on the
    case for good, so the camera could no longer verify the case when the object went."""
    from gridwatch.contract import SCHEMA_VERSION, telemetry_topic

    def report(uptime: float) -> None:
        payload = {"schema_version": SCHEMA_VERSION, "node_id": "node-a", "at": city.clock.now.isoformat(),
                   "session": 1, "uptime_seconds": uptime, "events_published": 0, "publish_pending": 0}
        assert city.ingest.handle(telemetry_topic("node-a"), json.dumps(payload).encode()) == "stored"

    report(uptime=3600)
    city.detect(score=0.9)  # violation A
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.clock.advance(minutes=5)  # the node lost power with A open, and came back
    report(uptime=20)
    again = city.detect(score=0.9)  # the pile, seen afresh: violation B joins the case, back for rework
    assert city.case().status == "handling"
    city.act("feedback", Role.FIELD_STAFF)
    city.clock.advance(minutes=5)
    city.detect(type="end", violation_id=again["violation_id"])
    assert city.case().status == "closed", "the camera saw it gone: A, from before the node's restart, is over"

