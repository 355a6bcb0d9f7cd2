"""A case that two cameras see (the second one's violation joined it, a few metres away): which of them verifies it,
whatever order the unit's feedback and the cameras' `end`s come in."""

from __future__ import annotations

import pytest

from server.core.security import Role

NEIGHBOUR = {"camera_id": "cam-9", "zone_id": "pavement", "location": {"lat": 30.27425, "lon": 120.16525}}


@pytest.mark.parametrize("feedback_first", [True, False], ids=["feedback-then-end", "end-then-feedback"])
def test_the_raising_camera_seeing_it_gone_last_verifies_in_either_order(city, feedback_first):
    raised = city.detect()
    city.clock.advance(minutes=1)
    joined = city.detect(**NEIGHBOUR)
    city.act("accept", Role.FIELD_STAFF)
    city.clock.advance(minutes=5)
    city.detect(type="end", violation_id=joined["violation_id"], **NEIGHBOUR)
    if feedback_first:
        city.act("feedback", Role.FIELD_STAFF, reason="pile removed")
    city.clock.advance(minutes=1)
    city.detect(type="end", violation_id=raised["violation_id"])
    if not feedback_first:
        city.act("feedback", Role.FIELD_STAFF, reason="pile removed")
    assert city.actions()[-2:] == [("verify", "verified"), ("close", "closed")]


@pytest.mark.parametrize("feedback_first", [True, False], ids=["feedback-then-end", "end-then-feedback"])
def test_another_camera_seeing_it_gone_last_leaves_the_verifying_to_an_operator_in_either_order(city,
                                                                                                 feedback_first):
    """Found by review: the last `end` being the joined camera's, the case stayed in feedback when the feedback came
    first, but was verified when the feedback came after it. The rule is the camera that raised the case."""
    raised = city.detect()
    city.clock.advance(minutes=1)
    joined = city.detect(**NEIGHBOUR)
    city.act("accept", Role.FIELD_STAFF)
    city.clock.advance(minutes=5)
    city.detect(type="end", violation_id=raised["violation_id"])
    if feedback_first:
        city.act("feedback", Role.FIELD_STAFF, reason="pile removed")
    city.clock.advance(minutes=1)
    city.detect(type="end", violation_id=joined["violation_id"], **NEIGHBOUR)
    if not feedback_first:
        city.act("feedback", Role.FIELD_STAFF, reason="pile removed")
    case = city.case()
    assert (case.status, case.open_violations) == ("feedback", 0) and case.ended_at is not None
    city.act("verify", Role.OPERATOR, reason="checked on the evidence photo")
    assert city.case().status == "verified"
