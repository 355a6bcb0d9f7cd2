"""Models rolled out to nodes through their remote config: loaded before any camera switches, rolled back, reloaded
when retrained in place, and what unchanged categories watched carried on."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from edge.config import NodeConfig
from edge.detect import ModelError, weights_stamp
from edge.manifest import load_manifest
from edge.pipeline import CameraPipeline
from edge.remote_config import RemoteConfigurator
from gridwatch.contract import ConfigState
from tests.edge.pipeline_scripts import ScriptedDetector, detections


def rollout_node(tmp_path, factory_calls: list) -> CameraPipeline:
    """A node whose own manifest serves litter with COCO bottles; city.yaml beside it adds a trained litter model."""
    (tmp_path / "models" / "litter" / "litter_openvino_model").mkdir(parents=True)
    (tmp_path / "models" / "own.yaml").write_text(json.dumps({"models": [
        {"name": "coco", "people": ["person"], "categories": {"illegal_parking": ["car"], "litter": ["bottle"]}}]}))
    (tmp_path / "models" / "city.yaml").write_text(json.dumps({"models": [
        {"name": "coco", "people": ["person"], "categories": {"illegal_parking": ["car"]}},
        {"name": "litter", "weights": "litter/litter_openvino_model", "detect_fps": 1, "people": ["person"],
         "categories": {"litter": ["garbage"]}}]}))
    (tmp_path / "models" / "broken.yaml").write_text(json.dumps({"models": [
        {"name": "litter", "weights": "litter-v9/litter_openvino_model", "categories": {"litter": ["garbage"]}}]}))
    node = NodeConfig.model_validate({"node_id": "node-a", "model": "coco.pt", "state_dir": str(tmp_path / "state"),
                                      "manifest": str(tmp_path / "models" / "own.yaml"), "cameras": [{
        "camera_id": "gate", "source": "rtsp://x", "zones": [
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]], "dwell_seconds": 300},
            {"zone_id": "corner", "rule": "no_litter", "polygon": [[0, 0], [1, 0], [1, 1]], "dwell_seconds": 60}]}]})

    def factory(weights: str, labels: list[str]) -> ScriptedDetector:
        factory_calls.append(weights)
        detector = ScriptedDetector(weights.rsplit("/", 1)[-1], lambda n: detections())
        detector.shared = SimpleNamespace(stamp=weights_stamp(weights))  # the weights as loaded
        return detector

    from edge.manifest import load_manifest

    return CameraPipeline.build(node, node.cameras[0], load_manifest(node.manifest), source=object(),
                                detector_factory=factory)


def test_a_model_is_rolled_out_to_a_node_through_its_config_and_rolled_back(tmp_path, monkeypatch):
    monkeypatch.delenv("GRIDWATCH_MODEL", raising=False)  # the node's own `model: coco.pt` serves COCO
    loaded: list[str] = []
    camera = rollout_node(tmp_path, loaded)
    configurator = RemoteConfigurator("node-a", {"gate": camera}, tmp_path / "remote.json")
    assert [r.detector.info.name for r in camera.runners] == ["coco.pt"]

    rollout = json.dumps({"schema_version": "1.2", "config_version": "litter-pilot", "manifest": "city.yaml"})
    assert configurator.apply(rollout.encode()).state.value == "applied"
    assert [r.detector.info.name for r in camera.runners] == ["coco.pt", "litter_openvino_model"]
    assert loaded == ["coco.pt", "coco.pt", str(tmp_path / "models" / "litter" / "litter_openvino_model")], \
        "COCO's detector made again for its new classes (bottles are the litter model's now), on the weights the " \
        "node shares (ModelRegistry: not read again); the litter model loaded"
    litter_rule = next(r for r in camera.runners if r.spec.name == "litter")
    assert litter_rule.interval == pytest.approx(1.0) and litter_rule.spec.categories == {"litter": ["garbage"]}

    broken = json.dumps({"schema_version": "1.2", "config_version": "litter-v9", "manifest": "broken.yaml"})
    status = configurator.apply(broken.encode())
    assert status.state.value == "refused" and "litter-v9/litter_openvino_model does not exist" in status.reason
    missing = json.dumps({"schema_version": "1.2", "config_version": "x", "manifest": "nowhere.yaml"})
    assert "nowhere.yaml: no such manifest file" in configurator.apply(missing.encode()).reason
    assert [r.detector.info.name for r in camera.runners] == ["coco.pt", "litter_openvino_model"]

    back = json.dumps({"schema_version": "1.2", "config_version": "litter-off"})
    assert configurator.apply(back.encode()).state.value == "applied"
    assert [r.detector.info.name for r in camera.runners] == ["coco.pt"]
    assert camera.runners[0].spec.categories["litter"] == ["bottle"]


def test_a_model_retrained_in_place_is_loaded_by_the_next_rollout_and_an_unchanged_one_is_kept(tmp_path,
                                                                                                 monkeypatch):
    """Found by review: a model retrained into its folder and rolled out again was answered `applied`, and the node
    ran on with the old one (models were kept by their path)."""
    import os

    monkeypatch.delenv("GRIDWATCH_MODEL", raising=False)
    loaded: list[str] = []
    camera = rollout_node(tmp_path, loaded)
    configurator = RemoteConfigurator("node-a", {"gate": camera}, tmp_path / "remote.json")
    pilot = {"schema_version": "1.2", "manifest": "city.yaml"}
    assert configurator.apply(json.dumps({**pilot, "config_version": "v1"}).encode()).state.value == "applied"
    assert configurator.apply(json.dumps({**pilot, "config_version": "v2"}).encode()).state.value == "applied"
    litter = str(tmp_path / "models" / "litter" / "litter_openvino_model")
    assert loaded.count(litter) == 1, "the same model again: kept"
    retrained = tmp_path / "models" / "litter" / "litter_openvino_model" / "litter.bin"
    retrained.write_bytes(b"new weights")
    later = retrained.stat().st_mtime_ns + 10**9
    os.utime(retrained, ns=(later, later))
    assert configurator.apply(json.dumps({**pilot, "config_version": "v3"}).encode()).state.value == "applied"
    assert loaded.count(litter) == 2, "retrained in its folder: loaded anew"


def two_camera_rollout(tmp_path, load):  # noqa: ANN001, ANN201 - load(weights) -> detector, or raises
    """Two cameras of one node, the second with a litter zone too; `load` stands for loading a model."""
    rollout_node(tmp_path, [])  # writes the manifests
    node = NodeConfig.model_validate({"node_id": "node-a", "model": "coco.pt",
                                      "manifest": str(tmp_path / "models" / "own.yaml"), "cameras": [
        {"camera_id": camera_id, "source": "rtsp://x", "zones": [
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]], "dwell_seconds": 300},
            {"zone_id": "corner", "rule": "no_litter", "polygon": [[0, 0], [1, 0], [1, 1]], "dwell_seconds": 60}]}
        for camera_id in ("gate", "porch")]})
    from edge.manifest import load_manifest

    return {camera.camera_id: CameraPipeline.build(node, camera, load_manifest(node.manifest), source=object(),
                                                   detector_factory=lambda weights, labels: load(weights))
            for camera in node.cameras}


@pytest.mark.parametrize("failure", [
    ModelError("cannot load detector model 'litter_openvino_model': the file is truncated"),
    ValueError("Unsupported model format"),  # what else a loader may raise
])
def test_a_model_that_will_not_load_refuses_the_config_and_no_camera_changes(tmp_path, monkeypatch, failure):
    monkeypatch.delenv("GRIDWATCH_MODEL", raising=False)
    loads = []

    def load(weights: str) -> ScriptedDetector:
        loads.append(weights)
        if "litter" in weights and loads.count(weights) == 2:  # the second camera's load fails
            raise failure
        return ScriptedDetector(weights.rsplit("/", 1)[-1], lambda n: detections())

    cameras = two_camera_rollout(tmp_path, load)
    configurator = RemoteConfigurator("node-a", cameras, tmp_path / "remote.json")
    rollout = json.dumps({"schema_version": "1.2", "config_version": "litter-pilot", "manifest": "city.yaml"})
    status = configurator.apply(rollout.encode())

    assert status.state.value == "refused" and str(failure) in status.reason and "cameras.porch" in status.reason
    assert sum("litter" in w for w in loads) == 2, "the first camera had loaded the new model before the second failed"
    for camera in cameras.values():
        assert [r.detector.info.name for r in camera.runners] == ["coco.pt"], "both cameras run on as before"
        assert camera.manifest.models[0].categories["litter"] == ["bottle"]
    assert not (tmp_path / "remote.json").exists() and configurator.current_version is None


def test_a_rollout_the_disk_would_not_keep_stays_in_force_through_a_reload(tmp_path):
    """Found by review: a reload looked for the config in force on disk; one whose copy the disk had refused was
    dropped (the node back on its own models), while its version was still said to be in force, so the broker's
    copy sent again was answered "applied" and changed nothing."""
    camera = rollout_node(tmp_path, [])
    (tmp_path / "state").write_text("a file where the node's state folder should be")  # the copy cannot be kept
    configurator = RemoteConfigurator("node-a", {"gate": camera}, tmp_path / "state" / "remote.json")
    rollout = json.dumps({"schema_version": "1.2", "config_version": "litter-pilot", "manifest": "city.yaml"}).encode()
    assert configurator.apply(rollout).state is ConfigState.APPLIED
    running = sorted(runner.detector.info.name for runner in camera.runners)
    status = configurator.reload({"gate": camera.camera}, load_manifest(camera.node.manifest))
    assert status is not None and status.state is ConfigState.APPLIED
    assert sorted(runner.detector.info.name for runner in camera.runners) == running, "the trained model runs on"


def test_a_roll_out_that_changes_cocos_classes_keeps_the_parked_cars_violation(tmp_path, monkeypatch):
    """Found by review: city.yaml takes the litter classes from COCO, so COCO's detector was made anew, and every
    violation it watched ended as interrupted: a parked car's case lost the camera that would verify it. Its rules
    now carry on, and the car, numbered afresh by the new tracker, takes its violation back at its place."""
    from edge.capture import Frame
    from edge.manifest import load_manifest
    from tests.edge.pipeline_scripts import FRAME

    monkeypatch.delenv("GRIDWATCH_MODEL", raising=False)
    rollout_node(tmp_path, [])  # the manifests
    node = NodeConfig.model_validate({
        "node_id": "node-a", "model": "coco.pt", "state_dir": str(tmp_path / "state"),
        "manifest": str(tmp_path / "models" / "own.yaml"), "cameras": [{
            "camera_id": "gate", "source": "rtsp://x", "motion_gating": False, "health": {"enabled": False},
            "zones": [{"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                       "dwell_seconds": 5}]}]})
    made: list[str] = []

    def factory(weights: str, labels: list[str]) -> ScriptedDetector:
        number = 7 if not made else 1  # the tracker of a detector made anew numbers from 1
        made.append(weights)
        detector = ScriptedDetector(weights.rsplit("/", 1)[-1],
                                    lambda _call: detections(("car", (0.3, 0.3, 0.5, 0.5), number)))
        detector.shared = SimpleNamespace(stamp=weights_stamp(weights))
        return detector

    camera = CameraPipeline.build(node, node.cameras[0], load_manifest(node.manifest), source=object(),
                                  detector_factory=factory)
    events: list[dict] = []

    def publish(topic: str, payload: bytes) -> None:
        if "/events/" in topic:
            events.append(json.loads(payload))

    camera._publisher = publish
    for index in range(400):  # 80 s: a heartbeat a minute after the `new`
        if index == 60:
            configurator = RemoteConfigurator("node-a", {"gate": camera}, tmp_path / "remote.json")
            rollout = json.dumps({"schema_version": "1.2", "config_version": "pilot", "manifest": "city.yaml"})
            assert configurator.apply(rollout.encode()).state is ConfigState.APPLIED
        camera.process(Frame(image=FRAME, timestamp=1000.0 + index * 0.2, index=index), publish)
    assert made[0] == made[1] == "coco.pt", "COCO made anew for its new classes"
    assert [event["type"] for event in events if event["type"] != "update"] == ["new"], "no end, no second new"
    assert {event["violation_id"] for event in events} == {events[0]["violation_id"]}
    assert [event["type"] for event in events][-1] == "update", "its heartbeats go on"


@pytest.mark.parametrize("under_a_config", [False, True])
def test_a_reload_refused_for_a_model_that_will_not_load_leaves_the_nodes_manifest_as_it_was(tmp_path, monkeypatch,
                                                                                           under_a_config):
    """Found by review: a `reload` refused because its manifest's new model would not load (an export copied
    half-way) still made that manifest the node's own: the next zone change was refused with the model's error, and
    once the export loaded, a zone change rolled the model out unasked. The node's manifest changes only with a
    reload that its cameras take."""
    import yaml

    from edge.commands import CommandHandler

    monkeypatch.delenv("GRIDWATCH_MODEL", raising=False)
    camera = rollout_node(tmp_path, [])
    working = camera.detector_factory

    def half_copied(weights: str, labels: list[str]):
        if "litter" in weights:
            raise ModelError(f"cannot load detector model {weights!r}: corrupt export")
        return working(weights, labels)

    camera.detector_factory = half_copied
    configurator = RemoteConfigurator("node-a", {"gate": camera}, tmp_path / "remote.json")
    zones = [zone.model_dump(mode="json") for zone in camera.camera.zones]
    if under_a_config:
        zones[0]["dwell_seconds"] = 200
        in_force = configurator.apply(json.dumps({"schema_version": "1.2", "config_version": "v1",
                                                  "cameras": {"gate": {"zones": zones}}}).encode())
        assert in_force.state is ConfigState.APPLIED
    node_file = tmp_path / "node.yaml"
    node_file.write_text(yaml.safe_dump(json.loads(camera.node.model_dump_json())))
    (tmp_path / "models" / "own.yaml").write_text((tmp_path / "models" / "city.yaml").read_text())  # the edit
    handler = CommandHandler(camera.node, {"gate": camera}, lambda topic, jpeg: None, node_file,
                             reload_cameras=configurator.reload)
    answer = handler.handle(b'{"schema_version": "1.2", "request_id": "r1", "action": "reload"}')
    assert not answer.ok and "corrupt export" in answer.detail
    assert [r.spec.name for r in camera.runners] == ["coco"]

    zones[0]["dwell_seconds"] = 120
    changed = configurator.apply(json.dumps({"schema_version": "1.2", "config_version": "v2",
                                             "cameras": {"gate": {"zones": zones}}}).encode())
    assert changed.state is ConfigState.APPLIED, changed.reason
    camera.detector_factory = working  # the export finished copying
    zones[0]["dwell_seconds"] = 90
    changed = configurator.apply(json.dumps({"schema_version": "1.2", "config_version": "v3",
                                             "cameras": {"gate": {"zones": zones}}}).encode())
    assert changed.state is ConfigState.APPLIED and [r.spec.name for r in camera.runners] == ["coco"], \
        "a zone change rolls out no model"
    assert handler.handle(b'{"schema_version": "1.2", "request_id": "r2", "action": "reload"}').ok
    assert [r.spec.name for r in camera.runners] == ["coco", "litter"], "the reload taken, its model runs"
