"""Remote configuration: validated before it changes anything, kept on disk, answered on the status topic."""

from __future__ import annotations

import json

import pytest

from edge.comms import NodeLink
from edge.config import MqttConfig, NodeConfig
from edge.manifest import Manifest
from edge.pipeline import CameraPipeline
from edge.remote_config import RemoteConfigurator
from gridwatch.contract import config_status_topic, config_topic
from tests.edge.test_pipeline import ScriptedDetector, detections
from tests.factories import wait_until

NEW_ZONES = [{"zone_id": "school-gate", "rule": "no_parking", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
              "dwell_seconds": 120, "schedule": [{"days": ["mon", "tue"], "start": "07:00", "end": "09:00"}]}]


def pipeline(node_id: str = "node-a") -> CameraPipeline:
    node = NodeConfig.model_validate({"node_id": node_id, "cameras": [{
        "camera_id": "gate", "source": "rtsp://x", "zones": [
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]], "dwell_seconds": 300}]}]})
    manifest = Manifest.model_validate({"models": [
        {"name": "coco", "people": ["person"], "categories": {"illegal_parking": ["car"], "litter": ["bottle"]}}]})
    return CameraPipeline.build(node, node.cameras[0], manifest, source=object(),
                                detector_factory=lambda w, labels: ScriptedDetector("coco", lambda n: detections()))


def remote(version: str, cameras: dict) -> bytes:
    return json.dumps({"schema_version": "1.1", "config_version": version, "cameras": cameras}).encode()


def test_a_valid_config_changes_zones_and_survives_a_restart(tmp_path):
    camera = pipeline()
    configurator = RemoteConfigurator("node-a", {"gate": camera}, tmp_path / "remote.json")
    status = configurator.apply(remote("v2", {"gate": {"zones": NEW_ZONES, "detect_fps": 2}}))
    assert status.state.value == "applied" and status.config_version == "v2"
    assert list(camera.zones) == ["school-gate"] and camera.runners[0].interval == pytest.approx(0.5)
    assert camera.zones["school-gate"].config.schedule[0].days == ["mon", "tue"]

    zones_before = camera.zones
    assert configurator.apply(remote("v2", {"gate": {"zones": []}})).state.value == "applied"
    assert camera.zones is zones_before, "the same version again (redelivered on reconnect) changes nothing"

    restarted = pipeline()
    restored = RemoteConfigurator("node-a", {"gate": restarted}, tmp_path / "remote.json").restore()
    assert restored.state.value == "applied" and list(restarted.zones) == ["school-gate"]


@pytest.mark.parametrize(
    ("cameras", "reason"),
    [
        ({"gate": {"zones": [{**NEW_ZONES[0], "dwel_seconds": 5}]}}, "cameras.gate.zones.0.dwel_seconds: unknown key"),
        ({"gate": {"zones": [{**NEW_ZONES[0], "polygon": [[0, 0], [1, 1]]}]}}, "zones.0.polygon"),
        ({"gate": {"zones": [{**NEW_ZONES[0], "polygon": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]}},
         "self-intersecting"),
        ({"gate": {"source": "rtsp://elsewhere/"}}, "source cannot be changed remotely"),
        ({"porch": {"zones": NEW_ZONES}}, "cameras.porch: this node has no such camera"),
        ({"gate": {"zones": [{**NEW_ZONES[0], "rule": "no_vending"}]}},
         "no model in the manifest serves zones school-gate (no_vending)"),
    ],
)
def test_an_invalid_config_is_refused_with_the_reason_and_the_last_good_one_stays(tmp_path, cameras, reason):
    camera = pipeline()
    configurator = RemoteConfigurator("node-a", {"gate": camera}, tmp_path / "remote.json")
    status = configurator.apply(remote("v3", cameras))
    assert status.state.value == "refused" and reason in status.reason
    assert list(camera.zones) == ["kerb"] and not (tmp_path / "remote.json").exists()


def test_a_config_published_while_the_node_was_offline_is_applied_when_it_returns(running_broker, mqtt_client,
                                                                                  tmp_path):
    server = mqtt_client("gridwatch-server")
    server.subscribe(config_status_topic("node-a"))
    server.publish(config_topic("node-a"), remote("v7", {"gate": {"zones": NEW_ZONES}}), retain=True)

    camera = pipeline()
    link = NodeLink("node-a", MqttConfig(port=running_broker.port,
                                         password=running_broker.credentials.nodes["node-a"]), tmp_path)
    link.config_handler = RemoteConfigurator("node-a", {"gate": camera}, tmp_path / "remote.json").apply
    link.start()
    try:
        applied = json.loads(server.wait_for(lambda m: True, timeout=10).payload)
        assert (applied["config_version"], applied["state"]) == ("v7", "applied")
        assert list(camera.zones) == ["school-gate"]

        server.publish(config_topic("node-a"), remote("v8", {"gate": {"zones": [{**NEW_ZONES[0], "dwell": 1}]}}),
                       retain=True)
        refused = json.loads(server.wait_for(lambda m: True, timeout=10).payload)
        assert (refused["config_version"], refused["state"]) == ("v8", "refused")
        assert "zones.0.dwell: unknown key" in refused["reason"]
        assert list(camera.zones) == ["school-gate"], "still running on the last good config"
        wait_until(lambda: link.connected.is_set())
    finally:
        link.stop()
