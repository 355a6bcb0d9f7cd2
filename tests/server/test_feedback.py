"""Operator feedback into models: verdicts on detections, exported as a YOLO dataset that training fetches."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import zipfile

import pytest
import uvicorn

from gridwatch.contract import DEFAULT_EVENT_CODES, Category, event_topic, evidence_topic
from gridwatch.training import TrainingError, fetch_feedback
from server.main import create_app
from tests.factories import event_payload, jpeg, wait_until

REGION = {"x1": 0.4, "y1": 0.5, "x2": 0.6, "y2": 0.7}
BOX = {"x1": 0.42, "y1": 0.52, "x2": 0.58, "y2": 0.68}


def send_detection(node, label: str = "garbage", region: dict | None = REGION, seed: int = 0,
                   category: str = "litter") -> str:
    """An event (litter unless said) with its annotated frame and its crop, as a node sends them; returns the event
    id."""
    frame, crop = jpeg(seed=seed), jpeg(width=40, height=30, seed=seed + 100)
    crop_ref = {"sha256": hashlib.sha256(crop).hexdigest(), "bytes": len(crop)}
    if region:
        crop_ref["region"] = region
    payload = event_payload(category=category, code=DEFAULT_EVENT_CODES[Category(category)], label=label, box=BOX,
                            evidence={
        "sha256": hashlib.sha256(frame).hexdigest(), "bytes": len(frame), "crop": crop_ref})
    node.publish(event_topic("node-a", category), json.dumps(payload))
    node.publish(evidence_topic("node-a", payload["event_id"]), frame)
    node.publish(evidence_topic("node-a", payload["event_id"], crop=True), crop)
    return payload["event_id"]


def review(api, event_id: str, verdict: str, reason: str | None = None):
    return api.put(f"/api/v1/events/{event_id}/review",
                   json={"verdict": verdict, "reason": reason})


def test_reviewed_detections_become_a_yolo_dataset(api, mqtt_client):
    node = mqtt_client("node-a")
    confirmed, false_positive, duplicate, bottle, unsure, old_node = (
        send_detection(node, seed=1), send_detection(node, seed=2), send_detection(node, seed=3),
        send_detection(node, label="bottle", seed=4), send_detection(node, seed=5),
        send_detection(node, region=None, seed=6))
    unreviewed = send_detection(node, seed=7)
    wait_until(lambda: api.get(f"/api/v1/evidence/{unreviewed}?variant=crop").status_code == 200)

    assert review(api, confirmed, "confirmed").json()["verdict"] == "confirmed"
    assert review(api, false_positive, "rejected", "false_positive").status_code == 200
    assert review(api, duplicate, "rejected", "duplicate").status_code == 200
    assert review(api, bottle, "confirmed").status_code == 200
    assert review(api, unsure, "rejected", "other").status_code == 200
    assert review(api, old_node, "confirmed").status_code == 200
    assert api.get(f"/api/v1/events/{false_positive}/review").json()["reason"] == "false_positive"

    response = api.get("/api/v1/training-data", params={"classes": "garbage", "category": "litter"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    images = sorted(name for name in archive.namelist() if name.startswith("images/") and name != "images/")
    assert images == sorted(f"images/{e}.jpg" for e in (confirmed, false_positive, duplicate))
    positive = archive.read(f"labels/{confirmed}.txt").decode().split()
    assert positive[0] == "0" and [float(v) for v in positive[1:]] == pytest.approx([0.5, 0.5, 0.8, 0.8])
    assert archive.read(f"labels/{duplicate}.txt").decode().startswith("0 "), "a duplicate was really there"
    assert archive.read(f"labels/{false_positive}.txt") == b"", "a false positive is an image with nothing to find"
    summary = json.loads(archive.read("export.json"))
    assert (summary["positives"], summary["negatives"]) == (2, 1)
    left_out = {item["event_id"]: item["reason"] for item in summary["left_out"]}
    assert set(left_out) == {bottle, unsure, old_node}, "reviewed but unusable: each listed with its reason"
    assert "'bottle' is not among the exported classes" in left_out[bottle]
    assert "no region" in left_out[old_node]


def test_a_false_detection_of_another_class_is_no_image_without_garbage(api, mqtt_client):
    """Found by review: every false positive was exported as an image with nothing to find, for every class. A stall
    the background model saw (an "umbrella": often a pile of garbage) voided as a false stall then taught the garbage
    model that the garbage in it was nothing."""
    node = mqtt_client("node-a")
    false_litter = send_detection(node, seed=1)
    false_stall = send_detection(node, label="umbrella", category="street_vending", seed=2)
    wait_until(lambda: api.get(f"/api/v1/evidence/{false_stall}?variant=crop").status_code == 200)
    for event_id in (false_litter, false_stall):
        assert review(api, event_id, "rejected", "false_positive").status_code == 200

    def exported(**params) -> tuple[set[str], dict[str, str]]:
        archive = zipfile.ZipFile(io.BytesIO(api.get("/api/v1/training-data", params=params).content))
        summary = json.loads(archive.read("export.json"))
        return ({name.split("/")[1].removesuffix(".jpg") for name in archive.namelist() if name.endswith(".jpg")},
                {item["event_id"]: item["reason"] for item in summary["left_out"]})

    images, left_out = exported(classes="garbage")
    assert images == {false_litter} and "may still show one of the exported classes" in left_out[false_stall]
    images, left_out = exported(classes="garbage", category="litter")
    assert images == {false_litter} and not left_out


@pytest.mark.parametrize(("event", "body", "status", "message"), [
    ("known", {"verdict": "rejected"}, 422, "a rejection needs a reason"),
    ("known", {"verdict": "confirmed", "reason": "duplicate"}, 422, "takes no reason"),
    ("known", {"verdict": "maybe"}, 422, "verdict"),
    ("unknown", {"verdict": "confirmed"}, 404, "no event"),
])
def test_bad_reviews_get_a_4xx_with_a_message(api, mqtt_client, event, body, status, message):
    known = send_detection(mqtt_client("node-a"))
    wait_until(lambda: api.get(f"/api/v1/evidence/{known}").status_code == 200)
    event_id = known if event == "known" else "00000000-0000-4000-8000-000000000000"
    response = api.put(f"/api/v1/events/{event_id}/review", json=body)
    assert response.status_code == status and message in json.dumps(response.json())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_training_fetches_the_feedback_from_a_running_server(server_settings, mqtt_client, tmp_path, api_tokens):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(server_settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started)
        node = mqtt_client("node-a")
        event_id = send_detection(node)
        import httpx

        url = f"http://127.0.0.1:{port}"
        operator = api_tokens["operator"]
        headers = {"Authorization": f"Bearer {operator}"}
        wait_until(lambda: httpx.get(f"{url}/api/v1/evidence/{event_id}?variant=crop", headers=headers)
                   .status_code == 200)
        httpx.put(f"{url}/api/v1/events/{event_id}/review", json={"verdict": "confirmed"}, headers=headers)
        with pytest.raises(TrainingError, match="401"):
            fetch_feedback(url, ["garbage"], "litter", tmp_path / "anonymous")

        [dataset] = fetch_feedback(url, ["garbage"], "litter", tmp_path / "feedback", token=operator)
        assert (dataset / "images" / f"{event_id}.jpg").exists()
        assert (dataset / "labels" / f"{event_id}.txt").read_text().startswith("0 ")
        # the next run fetches only what was given since (here the last minutes again: the export's settling time)
        first, again = fetch_feedback(url, ["garbage"], "litter", tmp_path / "feedback", token=operator)
        assert first == dataset and json.loads((again / "export.json").read_text())["since"] == \
            json.loads((dataset / "export.json").read_text())["until"]
        # another class list starts again, the earlier exports set aside
        [fresh] = fetch_feedback(url, ["garbage", "bottle"], "litter", tmp_path / "feedback", token=operator)
        assert fresh.name == "0001" and json.loads((fresh / "export.json").read_text())["since"] is None
        assert len(list((tmp_path / "feedback").glob("superseded-*/0002"))) == 1
        with pytest.raises(TrainingError, match="classes"):
            fetch_feedback(url, [], None, tmp_path / "again", token=operator)
    finally:
        server.should_exit = True
        thread.join(10)


def test_two_verdicts_on_one_detection_at_once_both_answer_and_the_last_stands(api):
    """Found by review: the second of two reviews at once (a double click, two operators) inserted a second row for
    the detection, which its unique event id refused: a 500. Now it waits for the first and changes its row."""
    from server.services.feedback import RejectReason, Verdict, review

    payload = event_payload(score=0.35)
    assert api.app.state.ingest.handle(event_topic("node-a", payload["category"]),
                                       json.dumps(payload).encode()) == "stored"
    answers: list[int] = []
    with api.app.state.database.session() as first:  # the first verdict, not yet committed
        review(first, payload["event_id"], Verdict.CONFIRMED, None, "operator one", commit=False)
        first.flush()
        second = threading.Thread(target=lambda: answers.append(api.put(
            f"/api/v1/events/{payload['event_id']}/review",
            json={"verdict": "rejected", "reason": "false_positive"}).status_code))
        second.start()
        second.join(1.0)
        first.commit()
    second.join(30)
    assert answers == [200]
    final = api.get(f"/api/v1/events/{payload['event_id']}/review").json()
    assert final["verdict"] == "rejected" and final["reason"] == RejectReason.FALSE_POSITIVE.value
