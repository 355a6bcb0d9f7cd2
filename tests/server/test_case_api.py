"""The workflow through the REST API and MQTT: people act with their tokens, integrators see every change."""

from __future__ import annotations

import json

import pytest

from gridwatch.contract import event_topic
from tests.conftest import as_role
from tests.factories import event_payload, jpeg, wait_until

LITTER = {"category": "litter", "code": "0102", "label": "garbage", "zone_id": "kerb",
          "location": {"lat": 30.2742, "lon": 120.1652}}


def send(node, **overrides) -> dict:
    payload = event_payload(**{**LITTER, **overrides})
    assert not node.publish(event_topic("node-a", payload["category"]), json.dumps(payload)).is_failure
    return payload


def act(api, tokens, role: str, case_id: int, **body):
    return api.post(f"/api/v1/cases/{case_id}/actions", json=body, headers=as_role(tokens, role))


def test_a_case_from_detection_to_closure_through_the_api(api, api_tokens, mqtt_client):
    integrator = mqtt_client("integrator")
    integrator.subscribe("gw/v1/cases/litter/#")
    node = mqtt_client("node-a")
    first = send(node, score=0.9)
    case = wait_until(lambda: api.get("/api/v1/cases").json()["items"])[0]
    assert case["status"] == "dispatched" and case["assignment"]["unit_id"] == "sanitation"

    worker = api.get(f"/api/v1/cases/{case['id']}", headers=as_role(api_tokens, "sanitation")).json()
    assert worker["allowed_actions"] == ["accept", "return"]
    accepted = act(api, api_tokens, "sanitation", case["id"], action="accept")
    assert accepted.status_code == 200 and accepted.json()["status"] == "handling"

    early = act(api, api_tokens, "operator", case["id"], action="close")
    assert early.status_code == 409
    assert early.json()["allowed"] == ["reassign", "return", "extend", "defer", "feedback"]
    assert "a handling case cannot be close" in early.json()["detail"]
    assert act(api, api_tokens, "integrator", case["id"], action="feedback").status_code == 403

    act(api, api_tokens, "sanitation", case["id"], action="feedback", reason="pile taken away, photo in the app")
    send(node, type="end", violation_id=first["violation_id"])
    closed = wait_until(lambda: (c := api.get(f"/api/v1/cases/{case['id']}").json())["status"] == "closed" and c)
    assert closed["on_time"] is True and closed["closed_at"]
    assert [(t["action"], t["actor"]) for t in closed["transitions"][3:]] == [
        ("accept", "sanitation worker"), ("feedback", "sanitation worker"), ("verify", "system"), ("close", "system")]

    messages = [json.loads(m.payload) for m in integrator.collect(1.0)]
    assert [m["action"] for m in messages] == ["collect", "file", "dispatch", "accept", "feedback", "verify",
                                               "close"]
    assert {m["case_id"] for m in messages} == {case["id"]}
    assert [m["seq"] for m in messages] == [t["seq"] for t in closed["transitions"]], "a message's seq is its step's"
    assert [m["seq"] for m in messages] == sorted({m["seq"] for m in messages}) and closed["seq"] == messages[-1]["seq"]


def test_field_staff_act_on_their_own_units_cases_only(api, api_tokens, mqtt_client):
    node = mqtt_client("node-a")
    send(node, category="illegal_parking", code="0505", label="car", score=0.9)
    case = wait_until(lambda: api.get("/api/v1/cases").json()["items"])[0]
    refused = act(api, api_tokens, "sanitation", case["id"], action="accept")
    assert refused.status_code == 403 and "traffic-police" in refused.json()["detail"]
    assert api.get(f"/api/v1/cases/{case['id']}", headers=as_role(api_tokens, "sanitation")).json()[
        "allowed_actions"] == []
    assert act(api, api_tokens, "field_staff", case["id"], action="accept").status_code == 200


def test_a_void_the_caller_may_not_take_is_refused_as_such_before_its_missing_reason(api, api_tokens, mqtt_client):
    """Found by review: a void without `void_reason` was answered 422 ("needs void_reason") whoever sent it and
    whatever the case's status, where the README promises 403 for a role that may not and 409 for a status that
    does not allow it."""
    send(mqtt_client("node-a"), score=0.9)
    case = wait_until(lambda: api.get("/api/v1/cases").json()["items"])[0]
    forbidden = act(api, api_tokens, "sanitation", case["id"], action="void")
    assert forbidden.status_code == 403 and "may not void" in forbidden.json()["detail"]
    missing = act(api, api_tokens, "operator", case["id"], action="void")
    assert missing.status_code == 422 and missing.json()["allowed"]
    act(api, api_tokens, "sanitation", case["id"], action="accept")
    late = act(api, api_tokens, "operator", case["id"], action="void")
    assert late.status_code == 409 and "cannot be void" in late.json()["detail"]


def test_an_operator_rejects_a_doubtful_detection_and_the_verdict_trains_the_model(api, api_tokens, mqtt_client):
    node = mqtt_client("node-a")
    doubtful = send(node, score=0.35)
    case = wait_until(lambda: api.get("/api/v1/cases", params={"status": "collected"}).json()["items"])[0]
    missing = act(api, api_tokens, "operator", case["id"], action="void")
    assert missing.status_code == 422 and "void_reason" in missing.json()["detail"]
    voided = act(api, api_tokens, "operator", case["id"], action="void", void_reason="false_positive",
                 reason="a bin bag waiting for collection at the right time")
    assert voided.json()["status"] == "void" and voided.json()["void_reason"] == "false_positive"
    verdict = api.get(f"/api/v1/events/{doubtful['event_id']}/review").json()
    assert verdict["verdict"] == "rejected" and verdict["reason"] == "false_positive"
    assert verdict["reviewer"] == "test operator"


def test_reassignment_needs_a_known_unit_and_a_reason(api, api_tokens, mqtt_client):
    node = mqtt_client("node-a")
    send(node, score=0.9)
    case = wait_until(lambda: api.get("/api/v1/cases").json()["items"])[0]
    assert act(api, api_tokens, "operator", case["id"], action="reassign", unit_id="enforcement").status_code == 422
    unknown = act(api, api_tokens, "operator", case["id"], action="reassign", unit_id="nobody", reason="x")
    assert unknown.status_code == 422 and "no unit 'nobody'" in unknown.json()["detail"]
    moved = act(api, api_tokens, "operator", case["id"], action="reassign", unit_id="enforcement",
                reason="construction waste")
    assert moved.json()["assignment"]["unit_id"] == "enforcement"
    deadline = moved.json()["deadline_at"]
    for unit in ("enforcement", None):  # found by review: to the unit that has it, it only restarted the deadline
        same = act(api, api_tokens, "operator", case["id"], action="reassign", reason="again",
                   **({"unit_id": unit} if unit else {}))
        assert same.status_code == 422 and "another unit than enforcement" in same.json()["detail"]
    assert api.get(f"/api/v1/cases/{case['id']}").json()["deadline_at"] == deadline
    listed = api.get("/api/v1/cases", params={"unit_id": "enforcement"}).json()
    assert listed["total"] == 1
    bad = act(api, api_tokens, "operator", case["id"], action="teleport")
    assert bad.status_code == 422


def test_sorted_by_deadline_the_most_urgent_come_first_and_cases_without_one_last(api):
    """Found by review: cases with no deadline yet (waiting for an operator) came first on SQLite in one direction
    and on PostgreSQL in the other, pushing the urgent ones to later pages."""
    ingest = api.app.state.ingest
    for n, score in enumerate((0.35, 0.9, 0.9, 0.35)):  # 0.35 waits for an operator (no deadline), 0.9 dispatches
        payload = event_payload(**{**LITTER, "score": score, "camera_id": f"cam-{n}",
                                   "location": {"lat": 30.27 + n * 0.01, "lon": 120.16}})
        assert ingest.handle(event_topic("node-a", "litter"), json.dumps(payload).encode()) == "stored"
    for sort in ("deadline_at", "-deadline_at"):
        deadlines = [case["deadline_at"] for case in api.get("/api/v1/cases", params={"sort": sort}).json()["items"]]
        assert [deadline is None for deadline in deadlines] == [False, False, True, True], sort


def test_overdue_false_lists_every_case_that_is_not_overdue(api):
    """Found by review: `overdue=false` was taken as no filter, and the overdue cases came back with the rest."""
    from datetime import timedelta

    from server.models import CaseRecord, utcnow

    ingest = api.app.state.ingest
    for n, score in enumerate((0.9, 0.9, 0.35)):  # two dispatched, one waiting for an operator (no deadline)
        payload = event_payload(**{**LITTER, "score": score, "camera_id": f"cam-{n}",
                                   "location": {"lat": 30.27 + n * 0.01, "lon": 120.16}})
        assert ingest.handle(event_topic("node-a", "litter"), json.dumps(payload).encode()) == "stored"
    with api.app.state.database.session() as session:
        session.get(CaseRecord, 1).deadline_at = utcnow() - timedelta(minutes=5)
        session.commit()

    def listed(overdue: str) -> list[int]:
        return sorted(case["id"] for case in api.get("/api/v1/cases", params={"overdue": overdue}).json()["items"])

    assert listed("true") == [1]
    assert listed("false") == [2, 3], "on time, and not yet dispatched (no deadline)"


def test_a_grids_cases_include_those_waiting_for_an_operator(api):
    """Found by review: a case took its grid only when dispatched, so a grid's list (and its false positives, by
    grid or street chief) left out every case waiting for an operator or voided before dispatch."""
    ingest = api.app.state.ingest
    waiting = event_payload(score=0.4, **{k: v for k, v in LITTER.items() if k != "zone_id"})  # doubtful: it waits
    assert ingest.handle(event_topic("node-a", "litter"), json.dumps(waiting).encode()) == "stored"
    [case] = api.get("/api/v1/cases", params={"grid_id": "WL-02", "status": "collected"}).json()["items"]
    assert (case["grid_id"], case["assignment"]) == ("WL-02", None)


def test_an_integrator_follows_what_changed_since_it_last_asked(api):
    """Found by review: pages by offset, sorted by `updated_at`, skipped a case and repeated another when one changed
    between two pages, and nothing else told an integrator what had changed."""
    from datetime import UTC, datetime, timedelta

    from server.models import CaseRecord

    ingest = api.app.state.ingest
    for place in range(3):
        payload = event_payload(score=0.4, camera_id=f"cam-{place}", zone_id=f"z{place}",
                                location={"lat": 30.27 + place * 0.01, "lon": 120.16})
        assert ingest.handle(event_topic("node-a", "illegal_parking"), json.dumps(payload).encode()) == "stored"
    base = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    with api.app.state.database.session() as session:
        for case_id, minutes in ((1, 0), (2, 10), (3, 20)):
            session.get(CaseRecord, case_id).updated_at = base + timedelta(minutes=minutes)
        session.commit()
    changed = api.get("/api/v1/cases", params={"updated_after": (base + timedelta(minutes=10)).isoformat(),
                                               "sort": "updated_at"}).json()["items"]
    assert [case["id"] for case in changed] == [2, 3]
    naive = api.get("/api/v1/cases", params={"updated_after": "2026-12-07T08:00:00"})
    assert naive.status_code == 422 and "updated_after" in naive.json()["detail"]


def test_an_integrator_following_changes_page_by_page_sees_every_case_at_its_latest_change(api):
    """Found by review: one batch stamps all its cases with one `updated_at`, so the latest one seen as the next
    `updated_after` asked for the same page for ever once they outnumbered a page, and pages by offset skipped case
    51 of a batch of 60 when case 1 changed between two pages. A page's `next`, passed as `after`, lists what
    changed after it, in the order of changes: every case, and case 1 again at its new change."""
    from datetime import timedelta

    from server.models import utcnow

    ingest, topic = api.app.state.ingest, event_topic("node-a", "illegal_parking")
    batch = utcnow() - timedelta(minutes=10)
    ingest.clock = lambda: batch
    first = [event_payload(score=0.4, camera_id=f"cam-{place}", zone_id=f"z{place}",
                           location={"lat": 30.20 + place * 0.001, "lon": 120.16}) for place in range(60)]
    assert set(ingest.handle_batch([(topic, json.dumps(payload).encode()) for payload in first])) == {"stored"}

    page = api.get("/api/v1/cases", params={"sort": "updated_at", "page_size": 50}).json()
    seen = [case["id"] for case in page["items"]]
    assert seen == list(range(1, 51)) and page["next"].endswith(",50")
    ingest.clock = lambda: batch + timedelta(seconds=90)  # case 1 changes between two pages
    heartbeat = {**first[0], "event_id": event_payload()["event_id"], "type": "update"}
    assert ingest.handle(topic, json.dumps(heartbeat).encode()) == "stored"
    page = api.get("/api/v1/cases", params={"after": page["next"], "page_size": 50}).json()
    assert [case["id"] for case in page["items"]] == [*range(51, 61), 1], "the rest of the batch, then case 1"
    assert page["items"][-1]["occurrences"] == 2 and page["items"][-1]["seq"] >= 1
    last = api.get("/api/v1/cases", params={"after": page["next"]}).json()
    assert (last["items"], last["next"]) == ([], page["next"]), "caught up: ask again later with the same"

    ingest.clock = utcnow  # a change just made may commit after a later-stamped one: listed, not yet passed
    assert ingest.handle(topic, json.dumps({**heartbeat, "event_id": event_payload()["event_id"]}).encode()) \
        == "stored"
    again = api.get("/api/v1/cases", params={"after": page["next"]}).json()
    assert [case["id"] for case in again["items"]] == [1] and again["next"] == page["next"]


@pytest.mark.one_database
@pytest.mark.parametrize(("params", "said"), [
    ({"after": "yesterday"}, "no cursor"),
    ({"after": "2026-12-07T08:00:00,fifty"}, "no cursor"),
    ({"after": "2026-12-07T08:00:00 08:00,5"}, "%2B"),
    ({"after": "2026-12-07T08:00:00,5"}, "time zone"),
    ({"after": "2026-12-07T08:00:00Z,-1"}, "out of range"),
    ({"after": "2026-12-07T08:00:00Z,99999999999"}, "out of range"),
    ({"after": "2026-12-07T08:00:00Z,5", "sort": "-id"}, "leave out page and sort"),
    ({"after": "2026-12-07T08:00:00Z,5", "page": 2}, "leave out page and sort"),
])
def test_a_cursor_that_is_none_is_a_422_saying_so(api, params, said):
    answer = api.get("/api/v1/cases", params=params)
    assert answer.status_code == 422 and said in answer.json()["detail"]


def test_a_long_case_lists_its_latest_events_and_pages_through_all_of_them(api, api_tokens, mqtt_client):
    """Found by review: a case's page and every action's answer carried its whole event history (a car parked for
    days: 20,000 heartbeats, 5 MB an answer)."""
    from server.api.routes import cases as case_routes

    ingest = api.app.state.ingest
    first = event_payload(score=0.9)
    assert ingest.handle(event_topic("node-a", "illegal_parking"), json.dumps(first).encode()) == "stored"
    for _ in range(12):
        update = event_payload(score=0.9, type="update", violation_id=first["violation_id"])
        assert ingest.handle(event_topic("node-a", "illegal_parking"), json.dumps(update).encode()) == "stored"
    case_id = api.get("/api/v1/cases").json()["items"][0]["id"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(case_routes, "RECENT_EVENTS", 5)
        case = api.get(f"/api/v1/cases/{case_id}").json()
    assert case["events_total"] == 13 and len(case["events"]) == 5
    every = [item["event_id"] for page in (1, 2, 3) for item in api.get(
        f"/api/v1/cases/{case_id}/events", params={"page": page, "page_size": 5}).json()["items"]]
    assert len(every) == len(set(every)) == 13 and every[0] == first["event_id"]
    assert every[-5:] == [event["event_id"] for event in case["events"]], "the page lists the latest"


def test_a_busy_places_case_lists_its_latest_steps_and_pages_through_all_of_them(api):
    """Found by review: each new sighting at an open case's place adds a `join` step, and the case's page and every
    action's answer carried them all (20,000 steps: 3.7 MB an answer)."""
    from server.api.routes import cases as case_routes

    ingest = api.app.state.ingest
    for _ in range(8):  # eight cars in turn at one kerb: one case, a step each
        payload = event_payload(score=0.4)
        assert ingest.handle(event_topic("node-a", "illegal_parking"), json.dumps(payload).encode()) == "stored"
    [case] = api.get("/api/v1/cases").json()["items"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(case_routes, "RECENT_STEPS", 3)
        shown = api.get(f"/api/v1/cases/{case['id']}").json()
    assert shown["transitions_total"] == 8 and [step["action"] for step in shown["transitions"]] == ["join"] * 3
    every = [step for page in (1, 2) for step in api.get(f"/api/v1/cases/{case['id']}/transitions",
                                                         params={"page": page, "page_size": 5}).json()["items"]]
    assert [step["action"] for step in every] == ["collect"] + ["join"] * 7
    assert every[-3:] == shown["transitions"], "the page lists the latest, first to last"


def test_integrators_get_no_links_to_pictures_they_may_not_see(api, api_tokens):
    """Found by review: an integrator's case carried evidence links its token is refused (403)."""
    ingest = api.app.state.ingest
    payload = event_payload(score=0.4)
    assert ingest.handle(event_topic("node-a", "illegal_parking"), json.dumps(payload).encode()) == "stored"
    assert ingest.handle(f"gw/v1/nodes/node-a/evidence/{payload['event_id']}", jpeg()) == "stored"
    [case] = api.get("/api/v1/cases").json()["items"]
    path = f"/api/v1/cases/{case['id']}"
    integrator, operator = (api.get(path, headers=as_role(api_tokens, role)).json()
                            for role in ("integrator", "operator"))
    assert operator["evidence_urls"] and operator["events"][0]["evidence_url"]
    assert integrator["evidence_urls"] == [] and integrator["events"][0]["evidence_url"] is None
    events = api.get(f"{path}/events", headers=as_role(api_tokens, "integrator")).json()["items"]
    assert events[0]["evidence_url"] is None


def test_a_filter_of_no_unit_or_grid_and_a_field_the_action_does_not_take_are_refused(api, api_tokens, mqtt_client):
    """Found by review: `?unit_id=Sanitation` (a typo) answered an empty list, as if the unit had no case; a
    dispatch sent with `extend_minutes`, or an accept with a `unit_id`, did something else than asked, silently."""
    for params, text in (({"unit_id": "Sanitation"}, "no unit 'Sanitation'; there are: command-centre"),
                         ({"grid_id": "WL-99"}, "no grid 'WL-99'; there are: WL-01, WL-02")):
        refused = api.get("/api/v1/cases", params=params)
        assert refused.status_code == 422 and text in refused.json()["detail"], refused.text
    assert api.get("/api/v1/cases", params={"unit_id": "sanitation"}).status_code == 200
    send(mqtt_client("node-a"), score=0.9)
    case = wait_until(lambda: api.get("/api/v1/cases").json()["items"])[0]
    accept = act(api, api_tokens, "sanitation" if case["assignment"]["unit_id"] == "sanitation" else "operator",
                 case["id"], action="accept", unit_id="whatever")
    assert accept.status_code == 422 and "unit_id: not taken by accept" in json.dumps(accept.json())
    extend = act(api, api_tokens, "operator", case["id"], action="reassign", unit_id="enforcement", reason="x",
                 extend_minutes=60)
    assert extend.status_code == 422 and "extend_minutes: not taken by reassign" in json.dumps(extend.json())
    assert api.get(f"/api/v1/cases/{case['id']}").json()["status"] == case["status"], "nothing done"


def test_an_action_sent_again_with_its_idempotency_key_is_taken_once(api, api_tokens, mqtt_client):
    """A client on a poor network retries an extension whose answer it never got: without a key the retry was a
    second extension of the deadline."""
    send(mqtt_client("node-a"), score=0.9)
    case = wait_until(lambda: api.get("/api/v1/cases").json()["items"])[0]
    assert act(api, api_tokens, "sanitation", case["id"], action="accept").status_code == 200
    worker = as_role(api_tokens, "operator") | {"Idempotency-Key": "6f1c-extend-1"}
    extend = {"action": "extend", "reason": "waiting for the truck", "extend_minutes": 120}
    first = api.post(f"/api/v1/cases/{case['id']}/actions", json=extend, headers=worker)
    again = api.post(f"/api/v1/cases/{case['id']}/actions", json=extend, headers=worker)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.json()["deadline_at"] == first.json()["deadline_at"]
    assert again.json()["extension_count"] == 1
    steps = [step["action"] for step in again.json()["transitions"]]
    assert steps.count("extend") == 1

    other = api.post(f"/api/v1/cases/{case['id']}/actions", headers=worker,
                     json={"action": "defer", "reason": "market day"})
    assert other.status_code == 422 and "was sent with another request" in other.json()["detail"]
    fresh = api.post(f"/api/v1/cases/{case['id']}/actions", json=extend,
                     headers=as_role(api_tokens, "operator") | {"Idempotency-Key": "6f1c-extend-2"})
    assert fresh.status_code == 200 and fresh.json()["extension_count"] == 2, "a new key is a new action"
