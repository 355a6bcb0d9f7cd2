"""The city litter model at work in a node's pipeline: trained by the recipe's short schedule (as CI trains it),
loaded through a model manifest, and judged on real photos it never trained on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import pytest
import yaml

from edge.scan import load_camera, scan
from gridwatch.citydata import read_labels
from gridwatch.scenarios import litter_clip, still_clip

SHARED = Path(__file__).resolve().parents[3] / "shared"
DATASET = SHARED / "datasets" / "street-garbage"
START = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
pytestmark = pytest.mark.skipif(not DATASET.exists(), reason="the street-garbage photos come from ../shared")


CITY = Path(__file__).resolve().parents[2] / "models" / "city.yaml"


def litter_manifest(model_dir: Path, folder: Path) -> Path:
    """The litter model alone, with the settings models/city.yaml ships it with beside the COCO model (its rate, the
    tiles it looks at, its score), the weights being the ones given."""
    shipped = next(spec for spec in yaml.safe_load(CITY.read_text())["models"] if spec["name"] == "litter")
    settings = {key: shipped[key] for key in ("detect_fps", "tiles", "min_score", "categories") if key in shipped}
    manifest = folder / "litter-manifest.yaml"
    manifest.write_text(yaml.safe_dump({"models": [
        {"name": "litter", "weights": str(next(model_dir.glob("*_openvino_model")))} | settings]}))
    return manifest


def watch(image_or_clip, litter_model: Path, tmp_path: Path, zone: list | None = None) -> list[dict]:
    """Events of a camera watching a still image (or a rendered clip) with a no-litter zone, 10 s dwell."""
    clip = image_or_clip if isinstance(image_or_clip, Path) else still_clip(image_or_clip, tmp_path / "still.avi")
    camera_file = tmp_path / "camera.yaml"
    camera_file.write_text(json.dumps({"camera_id": "street", "zones": [{
        "zone_id": "pavement", "rule": "no_litter", "polygon": zone or [[0, 0], [1, 0], [1, 1], [0, 1]],
        "dwell_seconds": 10}]}))
    scan(clip, load_camera(camera_file, clip), tmp_path / "events.jsonl",
         manifest=litter_manifest(litter_model, tmp_path), start=START, progress=False)
    return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


def biggest_pile_in_validation(litter_model: Path) -> tuple[Path, list]:
    """The validation photo (never trained on) with the largest labelled garbage box, and its garbage boxes."""
    dataset = litter_model / "dataset"
    best = None
    for line in (dataset / "val.txt").read_text().split():
        labels = [label for label in read_labels(dataset / "labels" / f"{Path(line).stem}.txt", 100) if label[0] == 0]
        area = max((w * h for _, _, _, w, h in labels), default=0)
        if best is None or area > best[0]:
            best = (area, Path(line), labels)
    return best[1], best[2]


def test_a_garbage_photo_from_the_validation_split_raises_a_litter_event(litter_model, tmp_path):
    photo, labels = biggest_pile_in_validation(litter_model)
    events = watch(cv2.imread(str(photo)), litter_model, tmp_path)
    new = [e for e in events if e["type"] == "new"]
    assert new, f"no litter event on {photo.name}: {events}"
    event = new[0]
    identity = yaml.safe_load((litter_model / "identity.yaml").read_text())
    assert (event["category"], event["code"], event["label"]) == ("litter", "0102", "garbage")
    assert event["model"] == {"name": "litter", "version": identity["version"]}, "events name the model and version"
    assert event["dwell_seconds"] >= 10
    box = event["box"]
    centre = ((box["x1"] + box["x2"]) / 2, (box["y1"] + box["y2"]) / 2)
    assert any(abs(centre[0] - cx) <= w / 2 and abs(centre[1] - cy) <= h / 2 for _, cx, cy, w, h in labels), \
        "the event is about the labelled pile"


def test_a_clean_street_raises_nothing(litter_model, tmp_path):
    events = watch(cv2.imread(str(SHARED / "media" / "leuvenA.jpg")), litter_model, tmp_path)
    assert events == []


def test_a_pile_dumped_on_a_clean_street_is_one_violation_until_it_is_cleared(litter_model, tmp_path):
    truth = litter_clip(tmp_path / "clip.avi", SHARED / "media", DATASET)
    events = watch(tmp_path / "clip.avi", litter_model, tmp_path, zone=truth.zone)
    assert [e["type"] for e in events if e["type"] != "update"] == ["new", "end"], events
    new, end = events[0], events[-1]

    def seconds(stamp: str) -> float:
        return (datetime.fromisoformat(stamp) - START).total_seconds()

    assert truth.dumped + 10 <= seconds(new["observed_at"]) <= truth.dumped + 10 + 15
    # gone once missed in `lost_looks` (15) of the litter model's looks running, a look every 2 s: one look that
    # misses the pile is not the pile cleared
    assert truth.cleared <= seconds(end["observed_at"]) <= truth.cleared + 15 * 2 + 5
