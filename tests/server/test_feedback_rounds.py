"""Verdicts the case workflow gives: on the detection each decision is about (a reopened case's new one, not the one
cleaned up before), and from the people who saw a case through (a detection that filed itself, verified once the
unit dealt with it, was real)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from gridwatch.contract import DEFAULT_EVENT_CODES, Category, event_topic, evidence_topic
from server.core.security import Role
from tests.conftest import as_role
from tests.factories import event_payload, jpeg

REGION = {"x1": 0.4, "y1": 0.5, "x2": 0.6, "y2": 0.7}
BOX = {"x1": 0.42, "y1": 0.52, "x2": 0.58, "y2": 0.68}
ELSEWHERE = {"camera_id": "cam-2", "location": {"lat": 30.2742, "lon": 120.1652}}  # grid WL02, 1 km east


def detect(api, score: float, seed: int, minutes_ago: float = 0, crop_size: tuple[int, int] = (40, 30),
           **overrides) -> dict:
    """A litter detection seen `minutes_ago`, with its crop (`crop_size`, width by height), written as the MQTT loop
    writes it; litter files itself from a score of 0.6 (config/demo/dispatch.yaml)."""
    crop = jpeg(*crop_size, seed=seed)
    now = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    payload = event_payload(**{
        "category": "litter", "code": DEFAULT_EVENT_CODES[Category.LITTER], "label": "garbage", "box": BOX,
        "score": score, "started_at": (now - timedelta(minutes=3)).isoformat(), "observed_at": now.isoformat(),
        "evidence": {"sha256": "0" * 64, "bytes": 1, "crop": {"sha256": hashlib.sha256(crop).hexdigest(),
                                                              "bytes": len(crop), "region": REGION}},
        **overrides})
    ingest = api.app.state.ingest
    assert ingest.handle(event_topic("node-a", "litter"), json.dumps(payload).encode()) == "stored"
    if payload["evidence"]:
        assert ingest.handle(evidence_topic("node-a", payload["event_id"], crop=True), crop) == "stored"
    return payload


def act(api, tokens, case_id: int, role: str, **body) -> dict:
    response = api.post(f"/api/v1/cases/{case_id}/actions", json=body, headers=as_role(tokens, role))
    assert response.status_code == 200, response.text
    return response.json()


def case_of(api, camera_id: str = "cam-1") -> int:
    return next(case["id"] for case in api.get("/api/v1/cases").json()["items"] if case["camera_id"] == camera_id)


def labels(api) -> dict[str, str]:
    """The exported labels by event id."""
    response = api.get("/api/v1/training-data", params={"classes": "garbage", "category": "litter"})
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    return {name.removeprefix("labels/").removesuffix(".txt"): archive.read(name).decode()
            for name in archive.namelist() if name.endswith(".txt")}


def test_voiding_a_reopened_case_judges_the_new_detection_not_the_one_cleaned_up(api, api_tokens):
    """Found by review: the verdict went on the case's first event whatever round it was in. Filed, cleaned up and
    closed, then reopened by something else seen at the place and voided as a false positive, the real garbage of
    the first round became an image with nothing to find, and the detection judged got no verdict."""
    first = detect(api, 0.5, seed=1, minutes_ago=20)  # doubtful: waits for an operator
    case_id = case_of(api)
    act(api, api_tokens, case_id, "operator", action="file")
    act(api, api_tokens, case_id, "sanitation", action="accept")
    act(api, api_tokens, case_id, "sanitation", action="feedback", reason="swept")
    act(api, api_tokens, case_id, "operator", action="verify")
    act(api, api_tokens, case_id, "supervisor", action="close")
    second = detect(api, 0.5, seed=2)  # the same place, soon after: reopens the case
    assert api.get(f"/api/v1/cases/{case_id}").json()["status"] == "dispatched"
    late = detect(api, 0.5, seed=3, minutes_ago=19, type="update", violation_id=first["violation_id"])  # a backlog
    act(api, api_tokens, case_id, "operator", action="void", void_reason="false_positive", reason="a shadow")

    cleaned_up = api.get(f"/api/v1/events/{first['event_id']}/review").json()
    assert (cleaned_up["verdict"], cleaned_up["reviewer"]) == ("confirmed", "test operator")
    judged = api.get(f"/api/v1/events/{second['event_id']}/review").json()
    assert (judged["verdict"], judged["reason"]) == ("rejected", "false_positive")
    assert api.get(f"/api/v1/events/{late['event_id']}/review").status_code == 404, "seen before the case closed"
    exported = labels(api)
    assert exported[first["event_id"]].startswith("0 "), "the garbage cleaned up stays a positive"
    assert exported[second["event_id"]] == "", "the shadow is an image with nothing to find"


@pytest.mark.parametrize("verifier", ["operator", "camera"])
def test_a_detection_that_filed_itself_and_was_cleaned_up_is_a_positive(api, api_tokens, verifier):
    """Found by review: detections scoring enough to file themselves never got a verdict, so they never became
    positives, while voiding one made it a negative: the model learned its mistakes and none of its successes. A
    case the unit dealt with and that was verified (by an operator, or by the camera seeing it gone) confirms its
    detection; an operator's own verdict on it stands."""
    raised = detect(api, 0.9, seed=1)
    doubted = detect(api, 0.9, seed=2, **ELSEWHERE)
    assert api.put(f"/api/v1/events/{doubted['event_id']}/review",
                   json={"verdict": "rejected", "reason": "other", "note": "cannot tell"}).status_code == 200
    for camera, payload in (("cam-1", raised), ("cam-2", doubted)):
        case_id = case_of(api, camera)
        act(api, api_tokens, case_id, "sanitation", action="accept")
        act(api, api_tokens, case_id, "sanitation", action="feedback", reason="swept")
        if verifier == "operator":
            act(api, api_tokens, case_id, "operator", action="verify")
            act(api, api_tokens, case_id, "supervisor", action="close")
        else:
            detect(api, 0.9, seed=3, type="end", violation_id=payload["violation_id"], evidence=None,
                   camera_id=camera, location=payload["location"])
        assert api.get(f"/api/v1/cases/{case_id}").json()["status"] == "closed"

    verdict = api.get(f"/api/v1/events/{raised['event_id']}/review").json()
    assert verdict["verdict"] == "confirmed" and verdict["reason"] is None
    assert verdict["reviewer"] == ("test operator" if verifier == "operator" else "system")
    assert "verified" in verdict["note"]
    kept = api.get(f"/api/v1/events/{doubted['event_id']}/review").json()
    assert (kept["verdict"], kept["reason"], kept["note"]) == ("rejected", "other", "cannot tell")
    assert labels(api)[raised["event_id"]].startswith("0 ")


def test_the_detection_of_a_round_is_a_sighting_and_the_raisers_first(city):
    """Found by review: a late `end` of the round before (the node's backlog) arriving after the reopening, or another
    camera's sighting that joined with an earlier time, took the verdict instead of what the decision was about; and
    a sighting whose batch had read its clock before a citizen's reopening (it waited for the case's lock) was no
    round's at all."""
    from gridwatch.contract import Location
    from server.services.feedback import round_detection
    from tests.server.city import GRID_WL02

    raiser = city.detect(score=0.5)  # cam-1 raises the case; cam-2's backlog joins it, seen ten minutes earlier
    city.clock.advance(minutes=5)
    city.detect(score=0.5, camera_id="cam-2", observed_at=(city.clock.now - timedelta(minutes=10)).isoformat())
    with city.database.session() as session:
        assert round_detection(session, 1) == raiser["event_id"]

    city.act("file")
    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.clock.advance(minutes=30)
    city.act("verify")
    city.act("close")  # the bag still seen by the camera: its `end` comes later, from the node's backlog
    city.clock.advance(minutes=15)
    again = city.detect(score=0.8, violation_id=str(uuid.uuid4()), observed_at=city.clock.now.isoformat())
    assert city.actions()[-1][0] == "reopen"
    city.clock.advance(minutes=5)
    city.detect(type="end", violation_id=raiser["violation_id"], evidence=None,
                observed_at=(city.clock.now - timedelta(minutes=15)).isoformat())
    with city.database.session() as session:
        assert round_detection(session, 1) == again["event_id"]

    city.act("accept", Role.FIELD_STAFF)
    city.act("feedback", Role.FIELD_STAFF)
    city.clock.advance(minutes=30)
    city.act("verify")
    city.act("close")
    city.clock.advance(minutes=10)
    batch_clock = city.clock.now
    with city.database.session() as session:  # a citizen's report reopens it as a camera's batch waits
        city.ingest.cases.open_report(session, Category.LITTER, Location(**GRID_WL02), "bags again", None, {},
                                      "open311 (app)", batch_clock + timedelta(milliseconds=300))
        session.commit()
    city.clock.now = batch_clock
    seen = city.detect(score=0.8, violation_id=str(uuid.uuid4()),
                       observed_at=(batch_clock + timedelta(seconds=1)).isoformat())
    with city.database.session() as session:
        assert round_detection(session, 1) == seen["event_id"]
