"""A real video through a real edge node, the real broker and the real server, each its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from gridwatch.broker import free_port, wait_for_port
from gridwatch.demo import stop_processes
from gridwatch.demo_media import DEMO_ZONE, render_parked_bus_clip
from gridwatch.scenarios import parking_clip
from tests.factories import wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parked_bus_clip(tmp_path_factory) -> Path:
    return render_parked_bus_clip(tmp_path_factory.mktemp("media") / "parked-bus.mp4", seconds=12)


def get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - local test server
        body = response.read()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "gridwatch", *args], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=REPO, env={**os.environ, **(env or {})})
        self.running.append((name, process))
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {name}.log\n{(self.workdir / f'{name}.log').read_text()[-3000:]}"
                         for name, _ in self.running)

    def stop(self) -> None:
        stop_processes([process for _, process in self.running])


def write_configs(tmp_path: Path, running_broker, model_path: str, clip: Path, zone_id: str, polygon: list,
                  dwell_seconds: float = 4) -> int:
    """server.yaml and node.yaml for one kerb camera filming `clip`; returns the API port."""
    creds = running_broker.credentials
    api_port = free_port()
    (tmp_path / "server.password").write_text(creds.server_password)
    (tmp_path / "node.password").write_text(creds.nodes["node-a"])
    (tmp_path / "server.yaml").write_text(yaml.safe_dump({
        "database_url": f"sqlite:///{tmp_path / 'gridwatch.db'}",
        "evidence_dir": "evidence",
        "dispatch_config": str(REPO / "config" / "demo" / "dispatch.yaml"),
        "api_port": api_port,
        "mqtt_port": running_broker.port,
        "mqtt_password_file": "server.password",
        "tokens_file": "tokens.yaml",
    }))
    (tmp_path / "node.yaml").write_text(yaml.safe_dump({
        "node_id": "node-a",
        "mqtt": {"port": running_broker.port, "password_file": "node.password"},
        "model": model_path,
        "state_dir": str(tmp_path / "edge-state"),
        "cameras": [{
            "camera_id": "kerb-cam",
            "source": str(clip),
            "location": {"lat": 30.27415, "lon": 120.15515},
            "realtime": False,
            "zones": [{"zone_id": zone_id, "rule": "no_parking", "polygon": polygon, "dwell_seconds": dwell_seconds}],
        }],
    }))
    return api_port


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop()


def test_parked_vehicle_on_video_becomes_a_dispatched_case_with_evidence(
    running_broker, mqtt_client, processes, parked_bus_clip, model_path, tmp_path, api_tokens
):
    token = api_tokens["operator"]
    api_port = write_configs(tmp_path, running_broker, model_path, parked_bus_clip, "bus-stop-kerb",
                             [list(p) for p in DEMO_ZONE])
    integrator = mqtt_client("integrator")
    integrator.subscribe("gw/v1/cases/#")
    integrator.subscribe("gw/v1/nodes/+/status")

    server = processes.start("server", "server", "--config", str(tmp_path / "server.yaml"))
    wait_for_port("127.0.0.1", api_port, 60, server)
    api = f"http://127.0.0.1:{api_port}"
    edge = processes.start("edge", "edge", "--config", str(tmp_path / "node.yaml"))
    try:
        assert edge.wait(timeout=180) == 0, "the edge node should finish the clip and flush cleanly"
        items = wait_until(lambda: get(f"{api}/api/v1/cases", token)["items"], timeout=20)
    except (AssertionError, subprocess.TimeoutExpired):
        print(processes.logs())
        raise

    assert len(items) == 1, "one parked bus is one case"
    case = get(f"{api}/api/v1/cases/{items[0]['id']}", token)
    assert case["category"] == "illegal_parking" and case["code"] == "0505"
    assert case["label"] == "bus" and case["zone_id"] == "bus-stop-kerb" and case["camera_id"] == "kerb-cam"
    assert case["status"] == "dispatched"
    assert case["assignment"]["unit_id"] == "traffic-police"
    assert case["assignment"]["street_chief"]["name"].startswith("王建国")
    assert case["dwell_seconds"] >= 4

    evidence = get(api + case["evidence_urls"][0], token)
    image = cv2.imdecode(np.frombuffer(evidence, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (1080, 810), "evidence is the full annotated frame"
    object_crop = get(api + case["crop_urls"][0], token)
    crop_image = cv2.imdecode(np.frombuffer(object_crop, np.uint8), cv2.IMREAD_COLOR)
    assert 300 < crop_image.shape[0] < 1080 and crop_image.shape[1] >= 790, "the bus at the camera's resolution"

    statuses = []
    messages = integrator.collect(1.0)
    for message in messages:
        body = json.loads(message.payload)
        if message.topic.startswith("gw/v1/cases/"):
            statuses.append(body["status"])
    assert statuses == ["collected", "registered", "dispatched"]
    node_states = [json.loads(m.payload)["state"] for m in messages if m.topic.endswith("/status")]
    assert node_states[-1] == "offline", "a node that stops says so"
    node = get(f"{api}/api/v1/nodes", token)[0]
    telemetry = node["telemetry"]
    assert node["node_id"] == "node-a" and telemetry["cameras"][0]["frames_detected"] > 0
    assert telemetry["cameras"][0]["detect_ms"] > 0 and telemetry["cameras"][0]["faults"] == []
    assert telemetry["memory_mb"] > 50 and telemetry["cpu_percent"] is not None
    assert telemetry["models"][0]["name"] == Path(model_path).name.removesuffix(".pt")
    assert telemetry["outbox_depth"] == 0, "everything the node made was acknowledged"


MEDIA = REPO.parent / "shared" / "media"


def call(url: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test server
        return json.loads(response.read())


@pytest.mark.skipif(not (MEDIA / "dog.jpg").exists(), reason="the photographs come from ../shared/media")
def test_a_truck_on_video_becomes_a_case_the_camera_verifies_and_the_kpis_count(
    running_broker, processes, model_path, tmp_path, api_tokens
):
    truth = parking_clip(tmp_path / "parking.avi", MEDIA, parked=20, after=5)
    api_port = write_configs(tmp_path, running_broker, model_path, tmp_path / "parking.avi", "kerb", truth.zone)
    server = processes.start("server", "server", "--config", str(tmp_path / "server.yaml"))
    wait_for_port("127.0.0.1", api_port, 60, server)
    api = f"http://127.0.0.1:{api_port}"
    edge = processes.start("edge", "edge", "--config", str(tmp_path / "node.yaml"))
    operator, field, supervisor = api_tokens["operator"], api_tokens["field_staff"], api_tokens["supervisor"]
    try:
        assert edge.wait(timeout=240) == 0
        [item] = wait_until(lambda: get(f"{api}/api/v1/cases", operator)["items"], timeout=20)
        case = wait_until(lambda: (c := get(f"{api}/api/v1/cases/{item['id']}", operator))["ended_at"] and c,
                          timeout=20)
    except (AssertionError, subprocess.TimeoutExpired):
        print(processes.logs())
        raise
    assert case["status"] == "dispatched" and case["assignment"]["unit_id"] == "traffic-police"
    assert [e["type"] for e in case["events"]][0] == "new" and case["events"][-1]["type"] == "end"

    # the traffic warden arrives, finds the kerb clear (the camera saw the truck leave) and reports back
    call(f"{api}/api/v1/cases/{case['id']}/actions", field, {"action": "accept"})
    closed = call(f"{api}/api/v1/cases/{case['id']}/actions", field, {"action": "feedback", "reason": "kerb clear"})
    assert closed["status"] == "closed" and closed["on_time"] is True
    verify = next(t for t in closed["transitions"] if t["action"] == "verify")
    assert verify["actor"] == "system" and "camera kerb-cam sees the" in verify["reason"]

    [unit] = call(f"{api}/api/v1/assessment?by=unit&period=month", supervisor)
    assert unit["group"] == "traffic-police" and unit["cases"] == 1 and unit["closed"] == 1
    assert unit["closure_rate"] == 1.0 and unit["on_time_closure_rate"] == 1.0
    assert unit["mean_response_minutes"] is not None and unit["false_positive_rate"] == 0.0
