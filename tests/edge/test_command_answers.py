"""Answers to the command centre's commands at the edge: kept in the outbox, in a lane of their own sent before
events (edge/outbox.py `ANSWER`, edge/node.py), so one made while the broker is away still arrives."""

from __future__ import annotations

import json
import threading

import pytest

from edge.commands import CommandFailed
from edge.config import NodeConfig
from edge.node import EdgeNode
from edge.outbox import EVENT, Outbox
from tests.factories import wait_until


def test_an_answer_leaves_before_the_event_backlog_and_never_pushes_an_event_out(tmp_path):
    """Found by review: command answers queued behind hours of events after an outage (someone at the console waits
    for each), and a full outbox made room for one by dropping an event."""
    from edge.outbox import ANSWER
    from edge.outbox_sender import OutboxSender

    class Wire:  # the MQTT client's side of the sender: what it is handed, in order
        connected = threading.Event()

        def __init__(self) -> None:
            self.connected.set()
            self.handed: list[str] = []

        def publish(self, topic, payload, qos, on_ack) -> None:  # noqa: ANN001
            self.handed.append(topic)

    outbox = Outbox(tmp_path / "outbox.db", max_bytes=1000)
    for index in range(10):
        outbox.put(f"e/{index}", b"x" * 100, EVENT)  # full of events
    assert outbox.put("a/1", b"a" * 50, ANSWER) is None, "no room: the answer is dropped, not an event"
    assert [m.topic for m in outbox.pending()] == [f"e/{index}" for index in range(10)]
    assert outbox.counters() == {"dropped_answer": 1}
    outbox.acknowledge(outbox.pending()[0].id)
    outbox.put("a/2", b"a" * 50, ANSWER)
    wire = Wire()
    OutboxSender(outbox, wire, window=4)._hand_over()
    assert wire.handed == ["a/2", "e/1", "e/2", "e/3"], "the answer first, then the backlog"


def test_a_command_answered_while_the_broker_is_away_reaches_the_server_after_the_node_restarts(
        running_broker, mqtt_client, tmp_path):
    """Found by review: command answers were published from memory only, so one made while the broker was away
    (a camera restart takes seconds) was lost with the node's next stop, and the command centre waited for it for
    ever. They now go through the outbox, like events."""
    from gridwatch.contract import command_response_topic

    server = mqtt_client("gridwatch-server")  # a persistent session, as the server has
    server.subscribe(command_response_topic("node-a"))
    config = NodeConfig.model_validate({
        "node_id": "node-a", "state_dir": str(tmp_path), "telemetry_seconds": 60,
        "mqtt": {"port": running_broker.port, "password": running_broker.credentials.nodes["node-a"]},
        "streetlights": [{"lamp_id": "lamp-7", "adapter": {"type": "simulated", "ambient_lux": 800}}]})

    def run_node() -> tuple[EdgeNode, threading.Event, threading.Thread]:
        node = EdgeNode.build(config)
        stop = threading.Event()
        thread = threading.Thread(target=node.run, args=(stop,), daemon=True)
        thread.start()
        wait_until(lambda: node.link.connected.is_set(), timeout=15)
        return node, stop, thread

    node, stop, thread = run_node()
    running_broker.broker.stop()
    wait_until(lambda: not node.link.connected.is_set(), timeout=15)
    node.link._answer(json.dumps({"schema_version": "1.2", "request_id": "snap-1", "action": "snapshot"}).encode(),
                      [])
    assert node.outbox.depth == 1, "the answer waits on disk"
    stop.set()
    thread.join(30)  # the node stops (its last flush finds no broker)

    running_broker.broker.start()
    server.close()
    server = mqtt_client("gridwatch-server")
    server.subscribe(command_response_topic("node-a"))
    node, stop, thread = run_node()
    try:
        answer = json.loads(server.wait_for(lambda m: b"snap-1" in m.payload, timeout=20).payload)
        assert answer["ok"] and answer["action"] == "snapshot"
    finally:
        stop.set()
        thread.join(30)


def test_a_snapshot_asked_for_while_the_node_was_away_is_taken_once_it_is_back(tmp_path):
    """Found by review: the broker hands a command kept for the node right after it connects, before the node has
    subscribed to everything and counts as connected: the snapshot was answered "not connected" every time."""
    config = NodeConfig.model_validate({
        "node_id": "node-a", "state_dir": str(tmp_path), "mqtt": {"port": 1},
        "streetlights": [{"lamp_id": "lamp-7", "adapter": {"type": "simulated", "ambient_lux": 800}}]})
    node = EdgeNode.build(config)
    published: list[str] = []
    node.link.publish = lambda topic, _payload, **_kwargs: published.append(topic)
    threading.Timer(0.3, node.link.connected.set).start()  # its subscriptions confirmed a moment later
    node.publish_snapshot("gw/v1/nodes/node-a/snapshot/cam-1", b"jpeg")
    assert published == ["gw/v1/nodes/node-a/snapshot/cam-1"]
    node.link.connected.clear()
    with pytest.raises(CommandFailed, match="not connected"):
        node.publish_snapshot("gw/v1/nodes/node-a/snapshot/cam-1", b"jpeg", wait=0.1)
    node.outbox.close()


def test_a_snapshot_of_every_camera_skips_one_that_has_no_frame_yet_and_says_so():
    """Found by review: one camera offline since the start failed the whole command: the cameras before it were
    published and not named in the answer, those after it not published at all."""
    import types

    import numpy as np

    from edge.commands import CommandHandler

    published: list[str] = []
    def delivering() -> bool:
        return True

    cameras = {"cam1": types.SimpleNamespace(last_image=np.full((48, 64, 3), 100, np.uint8), delivering=delivering),
               "cam2": types.SimpleNamespace(last_image=None, delivering=delivering),
               "cam3": types.SimpleNamespace(last_image=np.full((48, 64, 3), 50, np.uint8), delivering=delivering)}
    handler = CommandHandler(types.SimpleNamespace(node_id="node-a"), cameras,
                             lambda topic, _jpeg: published.append(topic))
    every = handler.handle(b'{"schema_version": "1.2", "request_id": "s1", "action": "snapshot"}')
    assert every.ok and [ref.camera_id for ref in every.snapshots] == ["cam1", "cam3"]
    assert every.detail == "2 snapshot(s) published; no frame yet from cam2" and len(published) == 2
    dark = handler.handle(b'{"schema_version": "1.2", "request_id": "s2", "action": "snapshot", "camera_id": "cam2"}')
    assert not dark.ok and "cam2: no frame delivered yet" in dark.detail


def test_a_snapshot_skips_a_camera_that_no_longer_delivers_and_leaves_its_retained_picture():
    """Found by review: a camera gone offline kept its last frame, and a snapshot published it retained and answered
    ok: the server stored yesterday's picture as taken now, and the zone editor drew on it. A live camera whose
    stream is lost, or that has sent no frame for its health's fault_seconds, is named in the answer instead."""
    import time
    import types

    import numpy as np

    from edge.capture import Frame
    from edge.commands import CommandHandler
    from edge.manifest import Manifest
    from edge.pipeline import CameraPipeline
    from tests.edge.pipeline_scripts import ScriptedDetector, detections

    node = NodeConfig.model_validate({"node_id": "node-a", "cameras": [{
        "camera_id": camera_id, "source": f"rtsp://cam/{camera_id}", "zones": [
            {"zone_id": "kerb", "rule": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]]}]}
        for camera_id in ("gate", "yard", "lane")]})
    manifest = Manifest.model_validate({"models": [{"name": "coco", "categories": {"illegal_parking": ["car"]}}]})
    cameras = {}
    for camera in node.cameras:
        source = types.SimpleNamespace(live=True, delivering=True, frames_read=0, reconnects=0, restarts=0)
        cameras[camera.camera_id] = CameraPipeline.build(
            node, camera, manifest, source=source,
            detector_factory=lambda w, labels: ScriptedDetector("coco", lambda n: detections()))
        cameras[camera.camera_id].process(Frame(np.full((48, 64, 3), 90, np.uint8), time.time(), 0),
                                          lambda topic, payload: None)
    cameras["yard"].source.delivering = False  # its stream lost: the reader reconnects
    cameras["lane"]._last_frame_wall -= node.cameras[2].health.fault_seconds  # open, but no frame for 30 s
    published: list[str] = []
    handler = CommandHandler(node, cameras, lambda topic, _jpeg: published.append(topic))

    every = handler.handle(b'{"schema_version": "1.2", "request_id": "s1", "action": "snapshot"}')
    assert every.ok and [ref.camera_id for ref in every.snapshots] == ["gate"]
    assert every.detail == "1 snapshot(s) published; yard, lane not delivering frames (not snapshotted)"
    assert published == ["gw/v1/nodes/node-a/snapshot/gate"]
    one = handler.handle(b'{"schema_version": "1.2", "request_id": "s2", "action": "snapshot", "camera_id": "yard"}')
    assert not one.ok and one.detail == "no snapshot taken: yard not delivering frames (not snapshotted)"
    assert published == ["gw/v1/nodes/node-a/snapshot/gate"], "the retained picture of yard stays as it was"


@pytest.mark.parametrize("flag", ["--model", "--source"])
def test_reload_is_taken_on_a_node_started_with_a_model_or_source_given_on_the_command_line(tmp_path, flag):
    """Found by review: `gridwatch edge --model X` (or `--source Y`) changed the config in memory, and every reload
    compared the file with it: "not reloaded: model changed; restart the node", restarting changing nothing."""
    import types

    from edge.commands import CommandHandler
    from edge.config import load_node_config

    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.mp4").write_bytes(b"x")
    (tmp_path / "node.yaml").write_text(f"""
node_id: node-a
state_dir: {tmp_path}/state
cameras:
  - camera_id: cam1
    source: {tmp_path}/a.mp4
    zones: [{{zone_id: kerb, rule: no_parking, polygon: [[0, 0], [1, 0], [1, 1]]}}]
""")

    def overrides(config):  # as `gridwatch edge` lays the command line over the file
        if flag == "--model":
            config.model = "other.pt"
        else:
            config.cameras[0].source = str(tmp_path / "b.mp4")
        return config

    config = overrides(load_node_config(tmp_path / "node.yaml"))
    running = types.SimpleNamespace(camera=config.cameras[0], check_served=lambda *_args: None)
    handler = CommandHandler(config, {"cam1": running}, lambda *_args: None, tmp_path / "node.yaml",
                             reload_cameras=lambda *_args: None, overrides=overrides)
    answer = handler.handle(b'{"schema_version": "1.2", "request_id": "r1", "action": "reload"}')
    assert answer.ok, answer.detail


def answering(carried_out: list[str], node_id: str = "node-a", wait: threading.Event | None = None):
    """A command handler that records each command it carries out (after `wait`, if given) and answers it ok."""
    from datetime import UTC, datetime

    from gridwatch.contract import SCHEMA_VERSION, CommandResponse

    def handle(payload: bytes) -> CommandResponse:
        command = json.loads(payload)
        carried_out.append(command["request_id"])
        if wait is not None:
            wait.wait(10)
        return CommandResponse(schema_version=SCHEMA_VERSION, node_id=node_id, request_id=command["request_id"],
                               action=command["action"], ok=True, detail="done", at=datetime.now(UTC))
    return handle


def delivery(mid: int, request_id: str):
    """A command as paho hands it over, with its packet id (kept when the broker delivers it again)."""
    import paho.mqtt.client as mqtt

    message = mqtt.MQTTMessage(mid=mid, topic=b"gw/v1/nodes/node-a/command")
    message.qos = 1
    message.payload = json.dumps({"schema_version": "1.2", "request_id": request_id, "action": "reload"}).encode()
    return message


def test_a_command_is_acknowledged_once_its_answer_is_kept_and_once_for_a_delivery_again_while_it_runs(tmp_path):
    """Found by review: commands were acknowledged as they arrived, so one cut off by a stop or a crash was never
    delivered again, and never answered. Now a command is acknowledged once its answer is kept; the broker's
    delivery again after a reconnection, while it is carried out, waits for that answer too; one whose answer the
    outbox could not keep stays unacknowledged, for the broker to deliver at the next connection."""
    from edge.comms import NodeLink
    from edge.config import MqttConfig

    link = NodeLink("node-a", MqttConfig(port=1), tmp_path)
    acknowledged: list[int] = []
    link.ack = lambda message: acknowledged.append(message.mid)
    carried_out: list[str] = []
    release = threading.Event()
    link.command_handler = answering(carried_out, wait=release)
    kept: list[bytes] = []
    link.publish_answer = lambda _topic, answer: kept.append(answer) or True

    link._on_command(delivery(5, "restart-1"))
    wait_until(lambda: carried_out == ["restart-1"])
    link._on_command(delivery(5, "restart-1"))  # a reconnection meanwhile: the broker delivers it again
    assert acknowledged == [], "not before its answer is kept"
    release.set()
    wait_until(lambda: acknowledged == [5])
    assert carried_out == ["restart-1"] and len(kept) == 1

    link.publish_answer = lambda _topic, answer: kept.append(answer) and False  # the outbox's disk failing
    link._on_command(delivery(6, "restart-2"))
    assert link.finish_commands(10) == []
    assert carried_out == ["restart-1", "restart-2"] and acknowledged == [5], "restart-2 is delivered again"
    link._on_command(delivery(7, "restart-3"))
    assert carried_out == ["restart-1", "restart-2"], "a stopping node takes no more commands"


def test_the_outbox_keeps_the_last_answers_by_request_id_past_their_sending_and_a_restart(tmp_path, monkeypatch):
    """Found by review: nothing told a command delivered again (after a broker crash) from a new one, and it was
    carried out twice. The outbox keeps the last answers by request id, in the transaction that stores each."""
    from edge import outbox_answers
    from edge.outbox import ANSWER
    from edge.outbox_answers import NodeOutbox

    monkeypatch.setattr(outbox_answers, "KEPT_ANSWERS", 3)
    outbox = NodeOutbox(tmp_path / "outbox.db")
    for index in range(5):
        outbox.put("gw/v1/nodes/node-a/command/response", json.dumps({"request_id": f"r{index}"}).encode(), ANSWER)
    outbox.put("gw/v1/nodes/node-a/command/response", b'{"request_id": "unknown"}', ANSWER)
    for message in outbox.pending():
        outbox.acknowledge(message.id)  # sent
    outbox.close()
    outbox = NodeOutbox(tmp_path / "outbox.db")
    assert [outbox.answered(f"r{index}") for index in range(5)] == [
        None, None, b'{"request_id": "r2"}', b'{"request_id": "r3"}', b'{"request_id": "r4"}']
    assert outbox.answered("unknown") is None, "no command could be read: nothing to tell it by"
    outbox.close()


CHILD = r'''
import sys, time
from pathlib import Path
from edge.comms import NodeLink
from edge.config import MqttConfig
link = NodeLink("node-a", MqttConfig(port=int(sys.argv[1]), password=sys.argv[2]), Path(sys.argv[3]))
def handler(payload):
    print("carrying out", flush=True)
    time.sleep(600)  # a reload loading a model ... and the power goes
link.command_handler = handler
link.start()
print("ready", flush=True)
time.sleep(600)
'''


def test_a_command_the_node_is_killed_in_the_middle_of_is_delivered_again_and_answered_at_its_next_start(
        running_broker, mqtt_client, tmp_path):
    """Found by review: a node killed (or cut from its power) in the middle of a command had acknowledged it on
    arrival: the broker never delivered it again, and it was never answered."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from edge.comms import NodeLink
    from edge.config import MqttConfig
    from gridwatch.contract import command_response_topic, command_topic

    password = running_broker.credentials.nodes["node-a"]
    server = mqtt_client("gridwatch-server")
    server.subscribe(command_response_topic("node-a"))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(running_broker.port), password, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert child.stdout.readline().strip() == "ready"
        server.publish(command_topic("node-a"),
                       json.dumps({"schema_version": "1.2", "request_id": "reload-1", "action": "reload"}))
        assert child.stdout.readline().strip() == "carrying out"
        time.sleep(0.5)  # well into it
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    carried_out: list[str] = []
    link = NodeLink("node-a", MqttConfig(port=running_broker.port, password=password), tmp_path)
    link.command_handler = answering(carried_out)
    link.start()
    try:
        answer = json.loads(server.wait_for(lambda m: b"reload-1" in m.payload, timeout=20).payload)
        assert answer["ok"] and carried_out == ["reload-1"]
    finally:
        link.stop()


def streetlight_node(running_broker, tmp_path) -> NodeConfig:
    return NodeConfig.model_validate({
        "node_id": "node-a", "state_dir": str(tmp_path), "telemetry_seconds": 60,
        "mqtt": {"port": running_broker.port, "password": running_broker.credentials.nodes["node-a"]},
        "streetlights": [{"lamp_id": "lamp-7", "adapter": {"type": "simulated", "ambient_lux": 800}}]})


def start_node(config: NodeConfig, carried_out: list[str]) -> tuple[EdgeNode, threading.Event, threading.Thread]:
    node = EdgeNode.build(config)
    node.link.command_handler = answering(carried_out)
    stop = threading.Event()
    thread = threading.Thread(target=node.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: node.link.connected.is_set(), timeout=15)
    return node, stop, thread


def test_a_command_arriving_while_the_node_stops_is_left_for_its_next_start_and_answered_then(
        running_broker, mqtt_client, tmp_path):
    """Found by review: a stopping node took commands until it disconnected, acknowledged on arrival; one carried
    out then ran with the cameras stopped, and its answer went into an outbox already closed: lost, never answered.
    A stopping node now takes no more, and the broker delivers them at its next start."""
    import time

    from gridwatch.contract import command_response_topic, command_topic

    server = mqtt_client("gridwatch-server")
    server.subscribe(command_response_topic("node-a"))
    config = streetlight_node(running_broker, tmp_path)
    carried_out: list[str] = []
    node, stop, thread = start_node(config, carried_out)
    finish = node.link.finish_commands

    def a_command_arrives_meanwhile(timeout: float) -> list[str]:
        busy = finish(timeout)
        server.publish(command_topic("node-a"), json.dumps(
            {"schema_version": "1.2", "request_id": "restart-1", "action": "restart_camera", "camera_id": "gate"}))
        time.sleep(0.3)
        return busy

    node.link.finish_commands = a_command_arrives_meanwhile
    stop.set()
    thread.join(30)
    assert carried_out == [], "not carried out by a node stopping"

    node, stop, thread = start_node(config, carried_out)
    try:
        answer = json.loads(server.wait_for(lambda m: b"restart-1" in m.payload, timeout=20).payload)
        assert answer["ok"] and carried_out == ["restart-1"]
    finally:
        stop.set()
        thread.join(30)


def test_a_command_delivered_again_after_a_broker_crash_is_answered_again_not_carried_out_again(
        running_broker, mqtt_client, tmp_path, caplog):
    """Found by review: a broker that crashed before saving that the node had acknowledged a command delivered it
    again, and the node carried it out twice (a camera reopened twice, two answers). A command whose answer the
    node keeps is answered again from it."""
    import logging

    from gridwatch.contract import command_response_topic, command_topic

    caplog.set_level(logging.INFO, logger="edge.comms")
    config = streetlight_node(running_broker, tmp_path)
    carried_out: list[str] = []
    node, stop, thread = start_node(config, carried_out)  # its session (a week) is kept while it is away
    stop.set()
    thread.join(30)
    server = mqtt_client("gridwatch-server", session_expiry=3600)
    server.subscribe(command_response_topic("node-a"))
    server.publish(command_topic("node-a"), json.dumps(
        {"schema_version": "1.2", "request_id": "restart-9", "action": "restart_camera", "camera_id": "gate"}))
    running_broker.broker.stop()  # saved to disk, as at an autosave
    running_broker.broker.start()
    node, stop, thread = start_node(config, carried_out)
    try:
        server.wait_for(lambda m: b"restart-9" in m.payload, timeout=20)
        assert carried_out == ["restart-9"]
        running_broker.broker.process.kill()  # crashed before its next save: the acknowledgement is lost
        running_broker.broker.process.wait()
        running_broker.broker.process = None
        running_broker.broker.start()
        again = json.loads(server.wait_for(lambda m: b"restart-9" in m.payload, timeout=45).payload)
        assert again["ok"] and "delivered again" in caplog.text
        assert carried_out == ["restart-9"], "carried out once"
    finally:
        stop.set()
        thread.join(30)
