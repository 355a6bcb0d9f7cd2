"""Commands from the command centre through the real server, the real broker and an edge node: snapshot now,
reload, restart a camera, each answered with its request id; a command sent while the node is away arrives when it
returns."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.config import load_node_config
from edge.node import EdgeNode
from gridwatch.contract import command_response_topic, command_topic
from gridwatch.scenarios import still_clip
from tests.factories import wait_until

STREET = Path(__file__).resolve().parents[3] / "shared" / "media" / "leuvenA.jpg"
ZONE = {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]],
        "dwell_seconds": 60}


class RunningNode:
    def __init__(self, config_path: Path) -> None:
        self.node = EdgeNode.build(load_node_config(config_path), config_path)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.node.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)


@pytest.fixture
def node_config(running_broker, tmp_path, model_path) -> Path:
    image = cv2.imread(str(STREET)) if STREET.exists() else np.full((480, 640, 3), 120, np.uint8)
    clip = still_clip(image, tmp_path / "street.avi", seconds=20, fps=5, width=640)
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({
        "node_id": "node-a", "model": model_path, "state_dir": str(tmp_path / "state"), "telemetry_seconds": 1,
        "mqtt": {"port": running_broker.port, "password": running_broker.credentials.nodes["node-a"]},
        "cameras": [{"camera_id": "gate", "source": str(clip), "loop": True, "zones": [ZONE]}]}))
    return path


def command(api, action: str, **fields) -> dict:
    response = api.post("/api/v1/nodes/node-a/commands", json={"action": action, **fields})
    assert response.status_code == 202, response.text
    return response.json()


def answer(api, sent: dict, timeout: float = 20) -> dict:
    url = f"/api/v1/nodes/node-a/commands/{sent['request_id']}"
    return wait_until(lambda: api.get(url).json()["response"], timeout=timeout)


def test_snapshot_reload_and_restart_are_carried_out_and_answered(api, node_config, mqtt_client):
    node = RunningNode(node_config)
    try:
        wait_until(lambda: any(n["state"] == "online" for n in api.get("/api/v1/nodes").json()), timeout=30)
        wait_until(lambda: node.node.pipelines[0].last_image is not None, timeout=20)

        snapshot = answer(api, command(api, "snapshot"))
        assert snapshot["ok"] and [s["camera_id"] for s in snapshot["snapshots"]] == ["gate"]
        jpeg = wait_until(lambda: (r := api.get("/api/v1/nodes/node-a/cameras/gate/snapshot")).status_code == 200
                          and r.content)
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape[1] == 640, "the camera's own frame, at its own size"

        restarted = answer(api, command(api, "restart_camera", camera_id="gate"))
        assert restarted["ok"] and "reopened" in restarted["detail"]
        assert node.node.pipelines[0].source.restarts == 1
        unknown = answer(api, command(api, "restart_camera", camera_id="porch"))
        assert not unknown["ok"] and "no camera porch" in unknown["detail"]

        config = yaml.safe_load(node_config.read_text())
        config["cameras"][0]["zones"].append({**ZONE, "zone_id": "corner", "rule": "no_litter"})
        node_config.write_text(yaml.safe_dump(config))
        reloaded = answer(api, command(api, "reload"))
        assert reloaded["ok"], reloaded
        assert sorted(node.node.pipelines[0].zones) == ["corner", "kerb"], "applied without a restart"

        config["cameras"].append({**config["cameras"][0], "camera_id": "porch"})
        node_config.write_text(yaml.safe_dump(config))
        refused = answer(api, command(api, "reload"))
        assert not refused["ok"] and "restart the node to add or remove one" in refused["detail"]
        assert sorted(node.node.pipelines[0].zones) == ["corner", "kerb"]

        server = mqtt_client("gridwatch-server")
        server.subscribe(command_response_topic("node-a"))
        server.publish(command_topic("node-a"), json.dumps({"schema_version": "1.2", "request_id": "bad-1",
                                                             "action": "explode"}))
        bad = json.loads(server.wait_for(lambda m: b"bad-1" in m.payload, timeout=10).payload)
        assert not bad["ok"] and "action" in bad["detail"], "a command that cannot be read is still answered"
    finally:
        node.stop()


def test_a_command_sent_while_the_node_is_away_is_answered_when_it_returns(api, node_config):
    node = RunningNode(node_config)
    wait_until(lambda: any(n["state"] == "online" for n in api.get("/api/v1/nodes").json()), timeout=30)
    node.stop()
    wait_until(lambda: api.get("/api/v1/nodes").json()[0]["state"] == "offline", timeout=10)

    sent = command(api, "snapshot")
    assert api.get(f"/api/v1/nodes/node-a/commands/{sent['request_id']}").json()["response"] is None
    node = RunningNode(node_config)
    try:
        assert answer(api, sent, timeout=30)["request_id"] == sent["request_id"]
    finally:
        node.stop()


def test_commands_to_unknown_nodes_or_with_bad_fields_get_a_4xx(api):
    assert api.post("/api/v1/nodes/nobody/commands", json={"action": "snapshot"}).status_code == 404
    response = api.post("/api/v1/nodes/nobody/commands", json={"action": "explode"})
    assert response.status_code == 422 and "action" in response.text
