"""A node's remote config through the API: a camera the node does not have is refused before it reaches the node
(which would refuse the whole config for it, and every later one), an entry can be taken out again, and two
operators' changes at once are both kept, in the database and in the broker's retained copy."""

from __future__ import annotations

import json
import threading

from gridwatch.contract import SCHEMA_VERSION, config_topic, telemetry_topic
from tests.factories import wait_until

ZONE = {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]],
        "dwell_seconds": 60}


def reporting(api, cameras: list[str]) -> None:
    """node-a as its telemetry shows it: these cameras."""
    payload = {"schema_version": SCHEMA_VERSION, "node_id": "node-a", "at": "2026-12-02T09:00:00+00:00",
               "session": 1, "uptime_seconds": 60.0, "events_published": 0, "publish_pending": 0,
               "cameras": [{"camera_id": camera, "frames_read": 1, "frames_detected": 1, "fps_in": 1.0,
                            "fps_detected": 1.0, "active_violations": 0} for camera in cameras]}
    assert api.app.state.ingest.handle(telemetry_topic("node-a"), json.dumps(payload).encode()) == "stored"
    wait_until(lambda: api.app.state.ingest_service.connected.is_set())


def test_zones_for_a_camera_the_node_does_not_have_are_refused_and_an_entry_can_be_taken_out(api):
    reporting(api, ["cam-1", "cam-2"])
    typo = api.put("/api/v1/nodes/node-a/cameras/cam-typo/zones", json={"zones": [ZONE]})
    assert typo.status_code == 422 and "cam-1, cam-2" in typo.json()["detail"]
    assert api.put("/api/v1/nodes/node-a/cameras/a%20b/zones", json={"zones": [ZONE]}).status_code == 422
    assert api.put("/api/v1/nodes/node-a/cameras/cam-1/zones", json={"zones": [ZONE]}).status_code == 202
    assert set(api.get("/api/v1/nodes/node-a/config").json()["cameras"]) == {"cam-1"}

    taken_out = api.delete("/api/v1/nodes/node-a/cameras/cam-1/zones")
    assert taken_out.status_code == 202 and taken_out.json()["cameras"] == {}
    assert api.delete("/api/v1/nodes/node-a/cameras/cam-1/zones").status_code == 404


def test_two_operators_changing_two_cameras_at_once_both_keep_their_change(api, mqtt_client):
    reporting(api, [f"cam-{n}" for n in range(8)])
    answers: list[int] = []

    def change(camera: str) -> None:
        answers.append(api.put(f"/api/v1/nodes/node-a/cameras/{camera}/zones", json={"zones": [ZONE]}).status_code)

    writers = [threading.Thread(target=change, args=(f"cam-{n}",)) for n in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert answers == [202] * 8
    expected = {f"cam-{n}" for n in range(8)}
    assert set(api.get("/api/v1/nodes/node-a/config").json()["cameras"]) == expected, "no change lost"
    node = mqtt_client("node-a")
    node.subscribe(config_topic("node-a"))
    seen = node.collect(1.5)  # the retained copy, then any still on their way: the node ends on the last
    assert seen and set(json.loads(seen[-1].payload)["cameras"]) == expected, "the node's config has every change"


def test_zones_the_node_could_not_be_sent_as_given_are_refused_naming_where(api):
    """Found by review: zones nested 300 deep or holding a lone surrogate answered 500, and a NaN dwell was taken
    (202) and sent to the node as null."""
    reporting(api, ["cam-1"])
    for body, named in (('{"zones": [{"zone_id": "kerb", "x": ' + "[" * 300 + "]" * 300 + "}]}", "nested deeper"),
                        ('{"zones": [{"zone_id": "kerb\\ud800"}]}', "surrogate"),
                        ('{"zones": [{"zone_id": "kerb", "dwell_seconds": NaN}]}', "zones.0.dwell_seconds: nan")):
        answer = api.put("/api/v1/nodes/node-a/cameras/cam-1/zones", content=body,
                         headers={"Content-Type": "application/json"})
        assert answer.status_code == 422 and named in answer.text, (named, answer.status_code, answer.text[:300])
    assert api.get("/api/v1/nodes/node-a/config").json()["cameras"] == {}, "nothing sent"
