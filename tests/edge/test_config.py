from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from edge.config import DEFAULT_MODEL, MODEL_ENV, load_node_config
from gridwatch.config_files import ConfigError, read_yaml_mapping

VALID = """
node_id: cam-node-7
mqtt: {host: broker.local, port: 1884}
cameras:
  - camera_id: gate
    source: rtsp://10.0.0.7/stream1
    zones:
      - zone_id: school-gate
        rule: no_parking
        polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]
        dwell_seconds: 300
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults(tmp_path):
    config = load_node_config(write(tmp_path, VALID))
    camera = config.cameras[0]
    assert camera.zones[0].dwell_seconds == 300
    assert camera.detect_fps is None, "each manifest model's own rate unless the camera caps it"
    assert config.manifest.name == "coco.yaml" and config.manifest.exists()
    assert config.event_codes["illegal_parking"] == "0505"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("dwell_seconds: 300", "dwel_seconds: 300"), "cameras.0.zones.0.dwel_seconds: unknown key"),
        (("port: 1884", "prot: 1884"), "mqtt.prot: unknown key"),
        (("[0.9, 1.0]", "[1.9, 1.0]"), "cameras.0.zones.0.polygon.2.0"),
        (("node_id: cam-node-7", "node_id: Cam Node/7"), "node_id"),
        (("rule: no_parking", "rule: no_dancing"), "cameras.0.zones.0.rule"),
        (("dwell_seconds: 300", "dwell_seconds: -5"),
         "cameras.0.zones.0.dwell_seconds: Input should be greater than 0"),
        (("[[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]", "[[0.1, 0.5], [0.9, 0.5]]"),
         "cameras.0.zones.0.polygon: List should have at least 3 items"),
        (("dwell_seconds: 300", "dwell_seconds: 300\n        schedule: [{start: '07:00', end: '07:00'}]"),
         "cameras.0.zones.0.schedule.0.end: Value error, start and end are equal"),
        (("dwell_seconds: 300",
          "dwell_seconds: 300\n        schedule: [{days: [funday], start: '07:00', end: '9:00'}]"),
         "cameras.0.zones.0.schedule.0.days.0"),
        (("node_id: cam-node-7", "node_id: cam-node-7\ntimezone: Mars/Olympus"),
         "timezone: Value error, unknown time zone"),
        (("[[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]", "[[0.1, 0.5], [0.9, 1.0], [0.9, 0.5], [0.1, 1.0]]"),
         "cameras.0.zones.0.polygon: Value error, the polygon is self-intersecting"),  # was a traceback at start
        (("cameras:", "streetlights: [{lamp_id: gate, adapter: {type: simulated}}]\ncameras:"),
         "gate used twice"),
        # found by review: a code the contract refuses was taken, and the camera's first event in the zone then
        # failed, lost the event and stopped the camera for good
        (("dwell_seconds: 300", "dwell_seconds: 300\n        code: 0505 Main St"), "cameras.0.zones.0.code"),
        (("cameras:", "event_codes: {litter: 路边垃圾}\ncameras:"), "event_codes.litter"),
    ],
)
def test_a_wrong_key_or_value_is_named(tmp_path, change, named):
    with pytest.raises(ConfigError) as error:
        load_node_config(write(tmp_path, VALID.replace(*change)))
    assert named in str(error.value)
    assert str(tmp_path / "node.yaml") in str(error.value)


def test_model_setting_precedence(tmp_path, monkeypatch):
    config = load_node_config(write(tmp_path, VALID))
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert config.resolved_model() == DEFAULT_MODEL
    config.model = "city.pt"
    assert config.resolved_model() == "city.pt"
    monkeypatch.setenv(MODEL_ENV, "/models/override")
    assert config.resolved_model() == "/models/override"



@pytest.mark.parametrize("reserved", ["camera", "lamp"])
def test_a_zone_named_as_the_device_faults_zone_is_refused(tmp_path, reserved):
    """Found by review: a zone with id `camera` took the camera's own fault events over (its code, its place, its
    outline drawn on the picture); `lamp` the same for streetlights."""
    from edge.health import CAMERA_ZONE
    from edge.streetlight import LAMP_ZONE

    assert reserved in (CAMERA_ZONE, LAMP_ZONE)
    with pytest.raises(ConfigError, match="cameras.0.zones.0.zone_id: .*zone id of the device's own faults"):
        load_node_config(write(tmp_path, VALID.replace("zone_id: school-gate", f"zone_id: {reserved}")))


def test_manifest_weights_named_without_a_folder_are_found_beside_the_manifest(tmp_path, monkeypatch):
    """Found by review: `weights: stall.onnx` beside the manifest was looked for in the node's working directory
    (a file of that name there was loaded instead), and missing, the error blamed $GRIDWATCH_MODEL."""
    from edge.manifest import load_manifest

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "stall.onnx").write_bytes(b"onnx")
    manifest = tmp_path / "models" / "city.yaml"
    manifest.write_text("models:\n  - {name: stall, weights: stall.onnx, categories: {street_vending: [stall]}}\n"
                        "  - {name: coco, weights: yolo11n.pt, categories: {illegal_parking: [car]}}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stall.onnx").write_bytes(b"another model")
    monkeypatch.chdir(elsewhere)
    loaded = {spec.name: spec.weights for spec in load_manifest(manifest).models}
    assert loaded == {"stall": str(tmp_path / "models" / "stall.onnx"), "coco": "yolo11n.pt"}, \
        "a bare name not beside the manifest is one ultralytics downloads"


def test_a_manifest_category_no_rule_judges_is_refused_naming_it(tmp_path):
    """Found by review: `categories: {device_fault: [...]}` was taken, and the node then failed with a bare
    KeyError at start, or answered a roll-out `internal error: <Category.DEVICE_FAULT>`."""
    from edge.manifest import load_manifest

    manifest = tmp_path / "city.yaml"
    manifest.write_text("models:\n  - {name: coco, weights: yolo11n.pt, categories: {device_fault: [car]}}\n")
    with pytest.raises(ConfigError, match=r"models.0.categories: .*device_fault: no zone rule judges this category"):
        load_manifest(manifest)


def test_paths_in_the_file_are_taken_from_the_files_folder_urls_and_camera_indexes_as_they_are(tmp_path, monkeypatch):
    """Found by review: `manifest:` was read beside the file but `source:` and `state_dir:` from wherever the node
    was started, so a node.yaml with its clip beside it loaded its manifest, then said the clip did not exist."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "kerb.avi").write_bytes(b"")
    (folder / "city.pt").write_bytes(b"")
    text = VALID.replace("source: rtsp://10.0.0.7/stream1", "source: kerb.avi") + """\
  - camera_id: usb
    source: "0"
    zones: [{zone_id: z, rule: no_litter, polygon: [[0, 0], [1, 0], [1, 1]]}]
  - camera_id: rtsp
    source: rtsp://10.0.0.7/stream1
    zones: [{zone_id: z, rule: no_litter, polygon: [[0, 0], [1, 0], [1, 1]]}]
state_dir: state
model: city.pt
"""
    (folder / "node.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    config = load_node_config(Path("etc/node.yaml"))
    assert [camera.source for camera in config.cameras] == ["etc/kerb.avi", "0", "rtsp://10.0.0.7/stream1"]
    assert config.state_dir == Path("etc/state") and config.model == "etc/city.pt"
    (folder / "node.yaml").write_text(text.replace("model: city.pt", "model: yolo11n.pt"))
    assert load_node_config(Path("etc/node.yaml")).model == "yolo11n.pt", "a name to download stays a name"


def test_an_outbox_found_from_the_working_directory_as_before_is_still_used(tmp_path, monkeypatch, caplog):
    """Found by review: taking relative paths from the file's folder would have left a node's unsent outbox (and a
    server's database) behind on upgrade, the node starting empty beside them."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "run" / "state" / "cam-node-7").mkdir(parents=True)  # where the node kept it so far
    (tmp_path / "etc" / "node.yaml").write_text(VALID + "state_dir: state\n")
    monkeypatch.chdir(tmp_path / "run")
    with caplog.at_level("WARNING"):
        config = load_node_config(tmp_path / "etc" / "node.yaml")
    assert config.state_dir == Path("state") and "move it beside" in caplog.text


def test_a_schedule_written_without_quotes_reads_as_the_time_it_says(tmp_path):
    """Found by review: YAML 1.1 reads `end: 19:00` unquoted as the number 1140 (base 60), which became 00:19 UTC,
    and the camera failed on every frame comparing it with the local clock (as with `07:00+08:00`)."""
    zone = "        dwell_seconds: 300\n"
    scheduled = VALID.replace(zone, zone + "        schedule: [{start: 07:00, end: 19:00}]\n")
    [window] = load_node_config(write(tmp_path, scheduled)).cameras[0].zones[0].schedule
    assert (window.start, window.end) == (time(7, 0), time(19, 0))
    for wrong, named in (("end: '19:00+08:00'", "takes no UTC offset"), ("end: 1140", "1140 is not a time of day")):
        with pytest.raises(ConfigError, match=rf"cameras.0.zones.0.schedule.0.end: .*{named}"):
            load_node_config(write(tmp_path, scheduled.replace("end: 19:00", wrong)))


def test_a_key_written_twice_is_refused_naming_it_and_both_lines(tmp_path):
    """Found by review: YAML's loader kept the last of two equal keys in a mapping, silently (a zone's second
    `dwell_seconds`, a second camera block under one key); keys a merge (`<<: *defaults`) brings are overridden as
    YAML means them to be."""
    twice = VALID.replace("        dwell_seconds: 300\n", "        dwell_seconds: 300\n        dwell_seconds: 30\n")
    with pytest.raises(ConfigError, match=r"node.yaml: cannot read: .*'dwell_seconds'.*line 11\b.*line 12\b"):
        load_node_config(write(tmp_path, twice))
    merged = VALID.replace("mqtt: {host: broker.local, port: 1884}",
                           "defaults: &broker {host: broker.local, port: 1883}\nmqtt: {<<: *broker, port: 1884}")
    assert read_yaml_mapping(write(tmp_path, merged))["mqtt"] == {"host": "broker.local", "port": 1884}


REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted(
    path.relative_to(REPOSITORY) for folder in ("config", "models", "broker_config", "deploy", "docs", "tests")
    for pattern in ("*.yaml", "*.yml") for path in (REPOSITORY / folder).rglob(pattern)), ids=str)
def test_the_repositorys_own_yaml_files_write_no_key_twice(path):
    read_yaml_mapping(REPOSITORY / path)
