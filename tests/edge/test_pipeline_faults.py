"""The camera pipeline when things go wrong: camera faults, a camera that stops or is reconfigured, a detector
that fails, a clock that jumps. What it watched ends as interrupted and is judged afresh."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import numpy as np

from edge.capture import Frame
from edge.config import NodeConfig, ZoneConfig
from edge.detections import Detections
from edge.health_config import HealthConfig
from edge.manifest import Manifest
from edge.pipeline import CameraPipeline
from gridwatch.contract import Event
from tests.edge.pipeline_scripts import FRAME, ScriptedDetector, build, detections, feed, litter_events


def test_a_black_camera_is_a_device_fault_event_with_its_evidence():
    node = NodeConfig.model_validate({"node_id": "n1", "cameras": [{
        "camera_id": "c1", "source": "rtsp://x", "health": {"fault_seconds": 10}, "zones": [
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]]}]}]})
    coco = ScriptedDetector("coco", lambda n: detections())
    pipeline = CameraPipeline.build(node, node.cameras[0], Manifest.model_validate(
        {"models": [{"name": "coco", "categories": {"illegal_parking": ["car"]}}]}),
        detector_factory=lambda w, labels: coco, source=object())
    published = dict(feed(pipeline, 15))  # FRAME is all black
    [payload] = [p for t, p in published.items() if t == "gw/v1/nodes/n1/events/device_fault"]
    event = Event.model_validate(json.loads(payload))
    assert (event.type.value, event.label, event.code, event.zone_id) == ("new", "black", "DEV-CAM", "camera")
    assert event.track_id is None and event.model.name == "camera-health"
    assert f"gw/v1/nodes/n1/evidence/{event.event_id}" in published
    assert f"gw/v1/nodes/n1/evidence/{event.event_id}/crop" not in published


def test_a_live_camera_that_stops_delivering_is_offline_until_it_is_back():
    from types import SimpleNamespace

    node = NodeConfig.model_validate({"node_id": "n1", "cameras": [{
        "camera_id": "c1", "source": "rtsp://x", "health": {"fault_seconds": 10}, "zones": [
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]]}]}]})
    source = SimpleNamespace(live=True, delivering=False, frames_read=0, reconnects=3)
    pipeline = CameraPipeline.build(node, node.cameras[0], Manifest.model_validate(
        {"models": [{"name": "coco", "categories": {"illegal_parking": ["car"]}}]}),
        detector_factory=lambda w, labels: ScriptedDetector("coco", lambda n: detections()), source=source)
    sent: list[tuple[str, bytes]] = []
    last_frame = pipeline._last_frame_wall
    assert pipeline.check_offline(lambda t, p: sent.append((t, p)), now=last_frame + 1) == [], \
        "a dropout of a second is not a fault (it was raised at once)"
    down = pipeline.check_offline(lambda t, p: sent.append((t, p)), now=last_frame + 10)
    assert [(e.type.value, e.label) for e in down] == [("new", "offline")]
    assert pipeline.check_offline(lambda t, p: sent.append((t, p)), now=last_frame + 11) == [], "raised once"
    source.delivering = True
    up = pipeline.check_offline(lambda t, p: sent.append((t, p)), now=pipeline._last_frame_wall)
    assert [(e.type.value, e.label) for e in up] == [("end", "offline")]
    assert len(sent) == 2 and all(t.endswith("/events/device_fault") for t, _ in sent)


def _redrawn(camera, zone_id: str, polygon):
    zones = [zone.model_copy(update={"polygon": polygon}) if zone.zone_id == zone_id else zone
             for zone in camera.zones]
    return camera.model_copy(update={"zones": zones})


def test_a_reconfigured_zone_ends_its_open_violations_as_interrupted_and_judges_afresh():
    """Before: the new rules replaced the old ones' open violations without an `end`, so their cases waited for
    one for ever (and never closed once the bag was gone)."""
    pipeline, _, _ = build(owner_leaves_after_call=0)
    published = feed(pipeline, 60)
    [new] = litter_events(published)
    pipeline.reconfigure(_redrawn(pipeline.camera, "street", [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]))
    [ended] = litter_events(published)[1:]
    assert (ended.type.value, ended.violation_id, ended.interrupted) == ("end", new.violation_id, True)
    assert ended.evidence is None and ended.observed_at >= new.observed_at
    assert json.loads(published[-1][1])["interrupted"] is True
    assert "interrupted" not in json.loads(next(p for t, p in published if t.endswith("/litter"))), \
        "absent where it is not set: a server of 1.3 reads the other events as before"


def test_a_camera_given_another_zone_and_rate_keeps_what_its_unchanged_zones_watch():
    """Found by review: any change of a camera's config (a zone drawn elsewhere in the picture, its rate) ended
    every open violation of the camera and started every object's dwell from zero."""
    pipeline, _, _ = build(owner_leaves_after_call=0)
    published: list[tuple[str, bytes]] = []

    def watch(start: float, seconds: float) -> None:
        for index in range(int(seconds * 10)):
            pipeline.process(Frame(FRAME, start + index / 10, index), lambda t, p: published.append((t, p)))

    watch(1000.0, 60)
    [new] = litter_events(published)
    bus_stop = {"zone_id": "bus-stop", "rule": "no_parking", "polygon": [[0, 0], [0.3, 0], [0.3, 0.3]]}
    camera = pipeline.camera.model_copy(update={"detect_fps": 2})
    relabelled = [zone.model_copy(update={"code": "0102-09"}) for zone in camera.zones]  # labels, not judgement
    pipeline.reconfigure(camera.model_copy(update={"zones": [*relabelled, ZoneConfig(**bus_stop)]}))
    watch(1060.0, 130)
    later = litter_events(published)[1:]
    assert later and [event.type.value for event in later] == ["update"] * len(later), "no end, no second new"
    assert {event.violation_id for event in later} == {new.violation_id}
    assert later[-1].dwell_seconds > 130, "counted from when the bag was left, before the change"


def test_a_camera_that_stops_ends_what_it_was_watching_as_interrupted():
    pipeline, _, _ = build(owner_leaves_after_call=0)
    published: list[tuple[str, bytes]] = []
    frames = iter(range(600))

    def frames_then_stop():  # a minute of the bag, then the node is told to stop
        for index in frames:
            if index == 599:
                stop.set()
            yield Frame(FRAME, 1000.0 + index / 10, index)

    stop = threading.Event()
    pipeline.frames = frames_then_stop
    pipeline.run(stop, lambda topic, payload: published.append((topic, payload)))
    new, ended = litter_events(published)
    assert (new.type.value, ended.type.value, ended.interrupted) == ("new", "end", True)
    assert ended.violation_id == new.violation_id and pipeline.finished.is_set()


def test_turning_health_checks_off_ends_their_faults_and_raises_no_more():
    """Before: `enabled: false` in a reload or remote config left the checks running, faults and all."""
    from tests.edge.test_health import scene

    pipeline, _, _ = build(owner_leaves_after_call=10**6)
    pipeline.reconfigure(pipeline.camera.model_copy(update={"health": HealthConfig(fault_seconds=10)}))
    published: list[tuple[str, bytes]] = []
    clock = iter(range(10**6))

    def show(seconds: int, picture) -> None:  # two frames a second
        for _ in range(seconds * 2):
            index = next(clock)
            pipeline.process(Frame(picture(index), 1000.0 + index / 2, index),
                             lambda topic, payload: published.append((topic, payload)))

    def faults() -> list[Event]:
        return [Event.model_validate_json(p) for t, p in published if t.endswith("/device_fault")]

    black = np.full((480, 640, 3), 3, dtype=np.uint8)
    show(20, lambda index: scene(seed=index))
    show(20, lambda index: black)
    [raised] = faults()
    assert (raised.type.value, raised.label) == ("new", "black")
    pipeline.reconfigure(pipeline.camera.model_copy(update={"health": HealthConfig(enabled=False)}))
    [_, ended] = faults()
    assert (ended.type.value, ended.label, ended.interrupted, ended.violation_id) == \
        ("end", "black", True, raised.violation_id)
    show(20, lambda index: black)
    assert len(faults()) == 2 and pipeline.health is None, "no checks, no faults"


def test_a_live_camera_whose_detector_fails_once_starts_again_by_itself():
    """Before: one exception (a detector error on an odd frame, memory) ended the camera until the node restarted."""
    calls = []

    def script(n: int) -> Detections:
        calls.append(n)
        if len(calls) == 5:
            raise RuntimeError("inference failed on this frame")
        return detections()

    pipeline, _, _ = build(owner_leaves_after_call=0)
    for runner in pipeline.runners:
        runner.detector = ScriptedDetector(runner.spec.name, script)
    pipeline.source = type("Live", (), {"live": True})()
    stop = threading.Event()
    clock = iter(range(10**6))

    def frames():  # a live stream: every call opens it again
        for _ in range(40):
            index = next(clock)
            if index == 60:
                stop.set()
            yield Frame(FRAME, 1000.0 + index / 10, index)

    pipeline.frames = frames
    thread = threading.Thread(target=pipeline.run, args=(stop, lambda topic, payload: None))
    thread.start()
    thread.join(timeout=15)  # a pause of 2 s after the failure
    assert not thread.is_alive() and pipeline.finished.is_set()
    assert len(calls) > 5, "it went on after the failure"
    assert pipeline.error is None, "running again clears the error in telemetry"


def test_a_clock_stepped_back_does_not_stop_detection_for_as_long_as_the_step():
    """Found by review: NTP pulled a live camera's clock back ten minutes, and its next detection waited for the
    clock to catch up: nine minutes without a look at the street."""
    pipeline, coco, _ = build(owner_leaves_after_call=0)
    for index in range(50):  # 10 s at 5 detections a second
        pipeline.process(Frame(FRAME, 10_000.0 + index / 5, index), lambda *_: None)
    before = len(coco.calls)
    for index in range(60 * 5):  # a minute of frames after the clock went back ten minutes
        pipeline.process(Frame(FRAME, 10_000.0 + 10 - 600 + index / 5, index), lambda *_: None)
    assert len(coco.calls) - before >= 290, "five looks a second go on"


def test_a_violation_open_when_the_clock_steps_back_ends_as_interrupted_and_is_judged_afresh():
    """Found by review: after NTP stepped the clock back, a violation open across the step was timed across it: its
    `end` came with no dwell at all, and an object standing there waited the step's length more for its `new`."""
    pipeline, _, _ = build(owner_leaves_after_call=0)
    published = feed(pipeline, 60)
    [first] = litter_events(published)
    after: list[tuple[str, bytes]] = []
    for index in range(600):  # a minute of frames, the clock ten minutes back
        pipeline.process(Frame(FRAME, 1000.0 + 60 - 600 + index / 10, index), lambda t, p: after.append((t, p)))
    events = litter_events(after)
    assert (events[0].type.value, events[0].violation_id, events[0].interrupted) == ("end", first.violation_id, True)
    assert events[0].dwell_seconds >= first.dwell_seconds, "ended with the time it was seen, not none"
    assert [event.type.value for event in events[1:2]] == ["new"], "judged afresh: the bag is there, a new violation"


def test_a_camera_away_for_half_an_hour_ends_what_it_watched_as_interrupted_and_judges_afresh():
    """Found by review: after a gap in the frames (a camera away, the clock jumping ahead) the rules carried on as if
    they had watched all along: the gap counted as dwell, and whatever stood there after it took the place of what
    stood there before."""
    pipeline, _, _ = build(owner_leaves_after_call=0)
    published = feed(pipeline, 60)
    [first] = litter_events(published)
    assert first.type.value == "new"
    after: list[tuple[str, bytes]] = []
    for index in range(600):  # a minute of frames, half an hour later
        pipeline.process(Frame(FRAME, 1000.0 + 60 + 1800 + index / 10, index), lambda t, p: after.append((t, p)))
    events = litter_events(after)
    assert (events[0].type.value, events[0].violation_id, events[0].interrupted) == ("end", first.violation_id, True)
    assert events[0].observed_at <= first.observed_at + timedelta(seconds=60), "ended when it was last seen"
    [again] = [event for event in events if event.type.value == "new"]
    assert again.violation_id != first.violation_id
    assert again.started_at >= events[0].observed_at + timedelta(seconds=1800), "the gap is not counted as dwell"


def test_a_covered_camera_ends_what_it_watched_as_interrupted_never_as_gone():
    """Found by review: a lens covered (a bag over it, a camera turned away) hid every car, the rules ended each
    violation as `not seen`, which the server takes for the car gone (verifying a case awaiting it), and the fault
    came 20 s later. Now no rule judges a picture that shows no street: the fault ends them as interrupted."""
    rng = np.random.default_rng(1)
    street = rng.integers(40, 220, (240, 320, 3), dtype=np.uint8)
    dark = [False]

    def picture(index: int) -> np.ndarray:
        if dark[0]:
            return np.zeros_like(street)
        image = street.copy()
        image[:16, :16] = index % 200  # a clock in the corner: the stream is not frozen
        return image

    node = NodeConfig.model_validate({"node_id": "n1", "cameras": [{
        "camera_id": "c1", "source": "rtsp://x", "health": {"fault_seconds": 30}, "zones": [
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
             "dwell_seconds": 60}]}]})
    coco = ScriptedDetector("coco", lambda n: detections() if dark[0] else detections(("car", (0.4, 0.6, 0.6, 0.8), 1)))
    pipeline = CameraPipeline.build(node, node.cameras[0], Manifest.model_validate(
        {"models": [{"name": "coco", "detect_fps": 5, "categories": {"illegal_parking": ["car"]}}]}),
        detector_factory=lambda w, labels: coco, source=object())
    published: list[tuple[str, bytes]] = []
    for index in range(1500):  # 150 s at 10 fps; the lens covered from 90 s
        dark[0] = index >= 900
        pipeline.process(Frame(picture(index), 1000.0 + index / 10, index), lambda t, p: published.append((t, p)))
    events = [(topic.rsplit("/", 1)[-1], Event.model_validate_json(payload)) for topic, payload in published
              if "/events/" in topic]
    parking = [event for category, event in events if category == "illegal_parking"]
    assert [(e.type.value, bool(e.interrupted)) for e in parking] == [("new", False), ("end", True)]
    [fault] = [event for category, event in events if category == "device_fault"]
    assert (fault.type.value, fault.label) == ("new", "black")
    assert parking[1].observed_at >= fault.observed_at - timedelta(seconds=1), "ended with the fault, not before"


def test_a_model_given_another_class_in_a_new_manifest_detects_it_without_a_restart():
    """Found by review: a reconfiguration reused the loaded model by name and weights, with its old class list, so
    a class the new manifest added (trucks for parking) went unseen until the node restarted."""
    node = NodeConfig.model_validate({"node_id": "n1", "cameras": [{
        "camera_id": "c1", "source": "rtsp://x", "health": {"enabled": False}, "zones": [
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]]}]}]})
    built: list[list[str]] = []

    def factory(weights, labels):  # noqa: ANN001, ANN202
        built.append(sorted(labels))
        return ScriptedDetector("coco", lambda n: detections())

    cars = Manifest.model_validate({"models": [{"name": "coco", "categories": {"illegal_parking": ["car"]}}]})
    pipeline = CameraPipeline.build(node, node.cameras[0], cars, detector_factory=factory, source=object())
    pipeline.reconfigure(pipeline.camera, cars)
    assert built == [["car"]], "the same classes: the loaded model is kept"
    pipeline.reconfigure(pipeline.camera, Manifest.model_validate(
        {"models": [{"name": "coco", "categories": {"illegal_parking": ["car", "truck"]}}]}))
    assert built == [["car"], ["car", "truck"]]


def test_a_picture_the_encoder_refuses_leaves_the_event_without_it_never_lost(monkeypatch):
    """Found by review: a JPEG encoding failure raised after the rule had ended the violation, so the `end` was
    never sent (its case open for good) and the camera paused; on a `new`, the server got an interrupted `end` of a
    violation it never heard of."""
    import edge.evidence

    pipeline, _, city = build(owner_leaves_after_call=0)
    published: list[tuple[str, bytes]] = []
    index = iter(range(10_000))

    def run(seconds: float) -> None:
        for _ in range(int(seconds * 10)):
            number = next(index)
            pipeline.process(Frame(FRAME, 1000.0 + number / 10, number), lambda t, p: published.append((t, p)))

    run(60)
    [new] = [event for event in litter_events(published) if event.type.value == "new"]
    assert new.evidence is not None
    city.script = lambda n: detections()  # the bag is picked up; the encoder refuses the `end` picture
    monkeypatch.setattr(edge.evidence.cv2, "imencode", lambda *args, **kwargs: (False, None))
    run(120)
    [end] = [event for event in litter_events(published) if event.type.value == "end"]
    assert end.violation_id == new.violation_id and not end.interrupted and end.evidence is None
