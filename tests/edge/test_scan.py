"""`gridwatch edge scan` with the real model on real video: the live node's code path, written to files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[2]
VTEST = REPO.parent / "shared" / "media" / "vtest.avi"

VAN_ZONE = """
camera_id: campus
zones:
  - zone_id: van-bay
    rule: no_parking
    polygon: [[0.82, 0.10], [0.96, 0.10], [0.96, 0.24], [0.82, 0.24]]
    dwell_seconds: 20
"""


def run_scan(video: Path, camera_yaml: str, tmp_path: Path, model_path: str, *extra: str):
    camera = tmp_path / "camera.yaml"
    camera.write_text(camera_yaml)
    out = tmp_path / "events.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch", "edge", "scan", str(video), "--camera", str(camera), "--out", str(out),
         "--evidence", str(tmp_path / "evidence"), "--quiet", *extra],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={**os.environ, "GRIDWATCH_MODEL": model_path},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in out.read_text().splitlines()]
    return events, result.stdout


@pytest.mark.skipif(not VTEST.exists(), reason="../shared/media/vtest.avi is part of the shared data set")
def test_the_parked_van_on_vtest_is_one_violation_for_the_whole_clip(tmp_path, model_path):
    events, summary = run_scan(VTEST, VAN_ZONE, tmp_path, model_path)
    new = [e for e in events if e["type"] == "new"]
    assert len(new) == 1, events
    assert new[0]["category"] == "illegal_parking" and new[0]["label"] in {"truck", "car", "bus"}
    assert {e["violation_id"] for e in events} == {new[0]["violation_id"]}, "no duplicate violations"
    assert 20 <= new[0]["dwell_seconds"] < 25, "dwell is measured in video seconds"
    evidence = tmp_path / "evidence" / f"{new[0]['event_id']}.jpg"
    assert cv2.imread(str(evidence)).shape == (576, 768, 3)
    assert "795 frames" in summary and "illegal_parking  new     1" in summary


def test_scan_refuses_a_bad_camera_config(tmp_path, model_path):
    camera = tmp_path / "camera.yaml"
    camera.write_text(VAN_ZONE.replace("dwell_seconds: 20", "dwell_seconds: 20\n    colour: red"))
    result = subprocess.run([sys.executable, "-m", "gridwatch", "edge", "scan", __file__, "--camera", str(camera),
                             "--out", str(tmp_path / "e.jsonl")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "zones.0.colour: unknown key" in result.stderr


def test_with_json_logs_every_line_the_node_writes_is_json_the_models_own_included(tmp_path, model_path):
    """Found by review: with `--log-format json` ultralytics still printed `Loading … for OpenVINO inference...` as
    text, and a refused config ended in a plain `gridwatch: …` line, which a log collector cannot read."""
    from gridwatch.demo_media import ultralytics_asset

    clip = tmp_path / "bus.avi"
    image = cv2.imread(str(ultralytics_asset("bus.jpg")))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (image.shape[1], image.shape[0]))
    for _ in range(5):
        writer.write(image)
    writer.release()
    camera = tmp_path / "camera.yaml"
    camera.write_text(VAN_ZONE)
    command = [sys.executable, "-m", "gridwatch", "--log-format", "json", "--log-level", "INFO", "edge", "scan",
               str(clip), "--camera", str(camera), "--out", str(tmp_path / "e.jsonl"), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600,
                            env={**os.environ, "GRIDWATCH_MODEL": model_path})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert any(line["logger"].startswith("ultralytics") for line in lines), result.stderr[-2000:]
    camera.write_text(VAN_ZONE.replace("dwell_seconds: 20", "dwell_seconds: 20\n    colour: red"))
    refused = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600,
                             env={**os.environ, "GRIDWATCH_MODEL": model_path})
    assert refused.returncode == 2
    [line] = [json.loads(line) for line in refused.stderr.splitlines() if line.strip()]
    assert "zones.0.colour: unknown key" in line["message"] and line["level"] == "ERROR"
