"""Photos of a case: field staff report back with the street as they left it, operators see them with the case."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import ultralytics.utils.patches  # noqa: F401  (as in one process with an edge node: it patches PIL's Image.open)
from fastapi.testclient import TestClient

from gridwatch.contract import event_topic
from server.main import create_app
from server.services import photos
from tests.conftest import as_role
from tests.factories import event_payload, jpeg, wait_until

LITTER = {"category": "litter", "code": "0102", "label": "garbage", "zone_id": "kerb", "score": 0.9,
          "location": {"lat": 30.2742, "lon": 120.1652}}


def claiming(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header claims another size than its data has."""
    at = data.index(b"\xff\xc0")
    return data[:at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 9:]


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
                         (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "not a JPEG or PNG"),
                         (whole[: len(whole) // 2], "damaged or cut short"),
                         (claiming(whole, 9000, 8000), "megapixels")]:
        refused = upload(api, api_tokens, "operator", case_id, body)
        assert refused.status_code == 422 and reason in refused.json()["detail"]
    wrong_stage = upload(api, api_tokens, "operator", case_id, whole, stage="during")
    assert wrong_stage.status_code == 422
    assert api.get(f"/api/v1/cases/{case_id}").json()["photos"] == []


def size_hidden_behind_a_false_segment(side: int) -> bytes:
    """The review's 318 bytes: a `FF 00` read as a segment whose length jumps over the real frame header (side x
    side) to a 16x16 one inside an APP1, which a parser of our own took for the size."""
    data = cv2.imencode(".jpg", np.zeros((64, 64), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    at = data.index(b"\xff\xc2")
    length = int.from_bytes(data[at + 2:at + 4], "big")
    frame = data[at:at + 5] + side.to_bytes(2, "big") * 2 + data[at + 9:at + 2 + length]
    small = b"\xff\xc0\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00"
    app1 = b"\xff\xe1" + (2 + len(small)).to_bytes(2, "big") + small
    hop = (len(frame) + 6).to_bytes(2, "big")
    return b"\xff\xd8\xff\x00" + hop + frame + app1 + data[2:at] + data[at + 2 + length:]


def progressive_jpeg_of_many_scans(scans: int) -> bytes:
    """A progressive JPEG whose smallest scan is repeated: a small file the decoder works on for each scan."""
    data = cv2.imencode(".jpg", np.zeros((64, 64), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    first, end = data.index(b"\xff\xda"), data.rindex(b"\xff\xd9")
    last = data.rindex(b"\xff\xda")
    return data[:first] + data[first:last] + data[last:end] * (scans - data.count(b"\xff\xda") + 1) + b"\xff\xd9"


def test_photos_that_would_cost_the_server_gigabytes_or_minutes_are_refused_and_phone_photos_are_not(
        api, api_tokens, mqtt_client):
    """Found by review: a 318-byte JPEG hiding its real size (32000x32000) from our own header parser made the
    decoder take 2 GB; a progressive JPEG of thousands of scans took minutes; and a phone's photo with its maker's
    trailer after the image (Samsung, a Pixel's motion photo) was refused as cut short."""
    case_id = dispatched_case(api, mqtt_client)
    hidden = upload(api, api_tokens, "operator", case_id, size_hidden_behind_a_false_segment(32000))
    assert hidden.status_code == 422
    scans = upload(api, api_tokens, "operator", case_id, progressive_jpeg_of_many_scans(200))
    assert scans.status_code == 422 and "more than 64 scans" in scans.json()["detail"]
    phone = jpeg(320, 240, seed=3) + b"SEFH" + b"\x00" * 64 + b"\x00\x00\x00\x18ftypmp42"
    assert upload(api, api_tokens, "operator", case_id, phone).status_code == 201


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


def test_a_photo_sent_again_is_the_one_already_kept(api, api_tokens, mqtt_client):
    """Found by review: an app retrying an upload whose answer it lost added the photo a second time (and each
    copy counted against the case's 50)."""
    case_id = dispatched_case(api, mqtt_client)
    photo = jpeg(320, 240, seed=5)
    first = upload(api, api_tokens, "operator", case_id, photo, caption="the kerb, cleared")
    again = upload(api, api_tokens, "operator", case_id, photo, caption="the kerb, cleared")
    assert first.status_code == again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert len(api.get(f"/api/v1/cases/{case_id}").json()["photos"]) == 1


def test_a_picture_asked_for_again_is_answered_304_and_kept_only_by_the_callers_browser(api, api_tokens,
                                                                                       mqtt_client):
    """Found by review: the ETag was sent unquoted (not HTTP), `If-None-Match` never gave a 304, and nothing said
    how a picture of people and number plates may be cached."""
    import hashlib

    case_id = dispatched_case(api, mqtt_client)
    photo = jpeg(320, 240, seed=9)
    url = upload(api, api_tokens, "operator", case_id, photo).json()["url"]
    operator = as_role(api_tokens, "operator")
    first = api.get(url, headers=operator)
    etag = f'"{hashlib.sha256(photo).hexdigest()}"'
    assert first.status_code == 200 and first.headers["etag"] == etag
    assert first.headers["cache-control"].startswith("private")
    again = api.get(url, headers=operator | {"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert api.get(url, headers=operator | {"If-None-Match": '"another"'}).status_code == 200
