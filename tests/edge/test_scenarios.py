"""Scenario clips rendered from real photographs, through the real model and the node's pipeline (`scan`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.scan import load_camera, scan
from gridwatch.scenarios import litter_clip, parking_clip, stall_clip

MEDIA = Path(__file__).resolve().parents[3] / "shared" / "media"
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.skipif(not (MEDIA / "dog.jpg").exists(), reason="the photographs come from ../shared/media")
@pytest.mark.parametrize(("passer_by", "light_change"), [(False, False), (True, False), (False, True)],
                         ids=["quiet street", "pedestrian walks past in front", "the light changes"])
def test_a_truck_that_parks_and_leaves_is_one_violation_from_dwell_to_departure(tmp_path, model_path, passer_by,
                                                                                 light_change):
    truth = parking_clip(tmp_path / "parking.avi", MEDIA, passer_by=passer_by, light_change=light_change)
    camera_file = tmp_path / "camera.yaml"
    camera_file.write_text(json.dumps({"camera_id": "leuven", "zones": [
        {"zone_id": "kerb", "rule": "no_parking", "polygon": truth.zone, "dwell_seconds": 15}]}))
    camera = load_camera(camera_file, tmp_path / "parking.avi")
    summary = scan(tmp_path / "parking.avi", camera, tmp_path / "events.jsonl", model=model_path, start=START,
                   progress=False)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events if e["type"] != "update"] == ["new", "end"], events
    assert len({e["violation_id"] for e in events}) == 1, "one object, one violation, whatever the tracker did"
    new, end = events[0], events[-1]
    assert new["category"] == "illegal_parking"

    def seconds(stamp: str) -> float:
        return (datetime.fromisoformat(stamp) - START).total_seconds()

    assert seconds(new["observed_at"]) == pytest.approx(truth.arrives + 15, abs=2.0)
    assert seconds(end["observed_at"]) == pytest.approx(truth.leaves, abs=2.5)
    assert summary.frames_read == 600


DATASET = MEDIA.parent / "datasets" / "street-garbage"


@pytest.mark.skipif(not DATASET.exists(), reason="the rubbish photo comes from ../shared/datasets")
@pytest.mark.parametrize(("render", "rule", "category"), [
    (litter_clip, "no_litter", "litter"),
    (stall_clip, "no_vending", "street_vending"),
], ids=["a pile is dumped and cleared", "a stall is set up and packed away"])
def test_what_no_coco_class_names_is_found_by_the_background_model(tmp_path, model_path, render, rule, category):
    truth = render(tmp_path / "clip.avi", MEDIA, DATASET)
    camera_file = tmp_path / "camera.yaml"
    camera_file.write_text(json.dumps({"camera_id": "leuven", "zones": [
        {"zone_id": "pavement", "rule": rule, "polygon": truth.zone, "dwell_seconds": 20}]}))
    camera = load_camera(camera_file, tmp_path / "clip.avi")
    scan(tmp_path / "clip.avi", camera, tmp_path / "events.jsonl", model=model_path, start=START, progress=False)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events if e["type"] != "update"] == ["new", "end"], events
    new, end = events[0], events[-1]
    assert new["category"] == category and new["violation_id"] == end["violation_id"]

    def seconds(stamp: str) -> float:
        return (datetime.fromisoformat(stamp) - START).total_seconds()

    assert truth.dumped + 20 <= seconds(new["observed_at"]) <= truth.dumped + 20 + 15
    # gone once missed in `lost_looks` (15) looks running: with nothing moving, the model looks every 2 s
    assert truth.cleared <= seconds(end["observed_at"]) <= truth.cleared + 15 * 2 + 5
