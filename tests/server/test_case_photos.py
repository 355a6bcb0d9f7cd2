"""Photos of a case: field staff report back with the street as they left it, operators see them with the case."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from gridwatch.contract import event_topic
from server.main import create_app
from server.services import photos
from tests.conftest import as_role
from tests.factories import event_payload, jpeg, wait_until

LITTER = {"category": "litter", "code": "0102", "label": "garbage", "zone_id": "kerb", "score": 0.9,
          "location": {"lat": 30.2742, "lon": 120.1652}}


def dispatched_case(api, mqtt_client) -> int:
    payload = event_payload(**LITTER)
    assert not mqtt_client("node-a").publish(event_topic("node-a", "litter"), json.dumps(payload)).is_failure
    case = wait_until(lambda: api.get("/api/v1/cases").json()["items"])[0]
    assert case["status"] == "dispatched" and case["assignment"]["unit_id"] == "sanitation"
    return case["id"]


def upload(api, tokens, role, case_id, data, **query):
    return api.post(f"/api/v1/cases/{case_id}/photos", params=query, content=data,
                    headers=as_role(tokens, role) | {"Content-Type": "image/jpeg"})


def test_field_staff_report_back_with_a_photo_the_operator_sees_with_the_case(api, api_tokens, mqtt_client):
    case_id = dispatched_case(api, mqtt_client)
    assert api.post(f"/api/v1/cases/{case_id}/actions", json={"action": "accept"},
                    headers=as_role(api_tokens, "sanitation")).status_code == 200
    after = jpeg(320, 240, seed=7)
    added = upload(api, api_tokens, "sanitation", case_id, after, stage="after", caption="pavement swept, bags gone")
    assert added.status_code == 201, added.text
    assert api.post(f"/api/v1/cases/{case_id}/actions", json={"action": "feedback", "reason": "cleared"},
                    headers=as_role(api_tokens, "sanitation")).status_code == 200

    seen = api.get(f"/api/v1/cases/{case_id}", headers=as_role(api_tokens, "operator")).json()
    [photo] = seen["photos"]
    assert (photo["stage"], photo["caption"], photo["actor"]) == ("after", "pavement swept, bags gone",
                                                                  "sanitation worker")
    image = api.get(photo["url"], headers=as_role(api_tokens, "operator"))
    assert image.status_code == 200 and image.content == after and image.headers["content-type"] == "image/jpeg"
    assert api.get(photo["url"], headers=as_role(api_tokens, "integrator")).status_code == 403
    other_unit = api.get(photo["url"], headers=as_role(api_tokens, "field_staff"))  # a traffic warden
    assert other_unit.status_code == 403 and "not to your unit" in other_unit.json()["detail"]


def test_what_is_not_a_whole_photo_is_refused_with_the_reason_and_nothing_is_kept(api, api_tokens, mqtt_client):
    case_id = dispatched_case(api, mqtt_client)
    whole = jpeg(320, 240)
    for body, reason in [(b"%PDF-1.7 not a photo", "not a JPEG or PNG"),
                         (whole[: len(whole) // 2], "damaged or cut short"),
                         (whole[:2] + b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff" + whole[13:], "megapixels")]:
        refused = upload(api, api_tokens, "operator", case_id, body)
        assert refused.status_code == 422 and reason in refused.json()["detail"]
    wrong_stage = upload(api, api_tokens, "operator", case_id, whole, stage="during")
    assert wrong_stage.status_code == 422
    assert api.get(f"/api/v1/cases/{case_id}").json()["photos"] == []


def test_field_staff_add_photos_only_while_their_unit_holds_the_case(api, api_tokens, mqtt_client):
    case_id = dispatched_case(api, mqtt_client)
    assert upload(api, api_tokens, "sanitation", case_id, jpeg(), stage="before").status_code == 201
    api.post(f"/api/v1/cases/{case_id}/actions", json={"action": "void", "void_reason": "duplicate"},
             headers=as_role(api_tokens, "operator"))
    late = upload(api, api_tokens, "sanitation", case_id, jpeg())
    assert late.status_code == 409 and "is void" in late.json()["detail"]
    assert upload(api, api_tokens, "operator", case_id, jpeg(seed=2), stage="other").status_code == 201
    assert [p["stage"] for p in api.get(f"/api/v1/cases/{case_id}").json()["photos"]] == ["before", "other"]


def test_a_case_keeps_at_most_its_share_of_photos(api, api_tokens, mqtt_client, monkeypatch):
    monkeypatch.setattr(photos, "MAX_PHOTOS", 2)
    case_id = dispatched_case(api, mqtt_client)
    assert [upload(api, api_tokens, "operator", case_id, jpeg(seed=n)).status_code for n in range(3)] == [201, 201,
                                                                                                          409]


@pytest.mark.one_database
def test_a_photo_past_the_size_limit_is_refused_unread(server_settings, api_tokens, mqtt_client):
    settings = server_settings.model_copy(update={"photo_max_bytes": 4096, "ingest_enabled": False})
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {api_tokens['operator']}"
        case = client.post("/open311/v2/requests", json={
            "service_code": "litter", "lat": 30.2742, "long": 120.1652, "description": "bags by the bins"}).json()
        case_id = int(case[0]["service_request_id"])
        assert upload(client, api_tokens, "operator", case_id, jpeg(32, 24)).status_code == 201
        big = upload(client, api_tokens, "operator", case_id, jpeg(800, 600))
        assert big.status_code == 413 and "at most 4,096 bytes" in big.json()["detail"]
