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
