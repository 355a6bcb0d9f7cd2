"""The training recipe on a tiny dataset the test makes: split, train, evaluate, export, card."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO.parent / "shared" / "models" / "yolo11n_coco.pt"


def tiny_dataset(root: Path, count: int = 12) -> Path:
    """Orange squares ("garbage") on a noisy grey street, with YOLO labels; one image without any."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(count):
        image = (np.full((128, 128, 3), 100) + rng.integers(0, 20, (128, 128, 3))).astype(np.uint8)
        x, y, size = (int(v) for v in (rng.integers(10, 70), rng.integers(10, 70), rng.integers(20, 45)))
        if index:
            image[y:y + size, x:x + size] = (30, 160, 220)
            (root / "labels" / f"{index}.txt").write_text(
                f"0 {(x + size / 2) / 128} {(y + size / 2) / 128} {size / 128} {size / 128}\n")
        cv2.imwrite(str(root / "images" / f"{index}.jpg"), image)
    return root


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="the trainable checkpoint comes from ../shared/models")
def test_train_evaluates_exports_and_documents_a_model(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch", "models", "train", "--data", str(data), "--from", str(CHECKPOINT),
         "--classes", "garbage", "--out", str(out), "--epochs", "1", "--imgsz", "64", "--batch", "4",
         "--export", "onnx", "--no-plots", "--clean-crops", "0", "--name", "squares"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == {"0": "garbage"}
    assert report["val_images"] == 2, "a seeded 20 % split"
    assert report["train_images"] == 20, "each training photo and its night or blurred copy"
    validation = report["validation"]
    assert set(validation) >= {"precision", "recall", "map50", "map50_95", "per_class"}
    assert 0 <= validation["map50"] <= 1 and "garbage" in validation["per_class"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "garbage" in card and "mAP50" in card and "AGPL-3.0" in card
    assert not list(data.glob("*.cache")) and not list((data / "labels").glob("*.cache")), "the dataset is untouched"

    from ultralytics import YOLO

    onnx = Path(report["exports"]["onnx"])
    assert onnx.name == "squares.onnx" and (out / "squares.pt").exists()
    identity = (out / "identity.yaml").read_text()
    assert "name: squares" in identity and report["version"] in identity
    detections = YOLO(str(onnx), task="detect").predict(str(data / "images" / "3.jpg"), imgsz=64, verbose=False)
    assert detections[0].names == {0: "garbage"}


def test_bad_labels_are_refused_with_the_file_and_line(tmp_path):
    data = tiny_dataset(tmp_path / "data", count=3)
    (data / "labels" / "2.txt").write_text("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.1 0.1\n")
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch", "models", "train", "--data", str(data), "--from", str(CHECKPOINT),
         "--classes", "garbage", "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "2.txt:2" in result.stderr


def test_a_recipe_names_its_wrong_keys_and_schedules_and_options_override_it(tmp_path):
    from gridwatch.config_files import ConfigError
    from gridwatch.training import load_recipe

    recipe = tmp_path / "stall.yaml"
    recipe.write_text("name: stall\ndata: photos\ncheckpoint: base.pt\nclasses: [stall]\nepochs: 60\n"
                      "negatives: [street.mp4, 'ultralytics:assets/bus.jpg']\nschedules: {short: {epochs: 3}}\n")
    loaded = load_recipe(recipe, {"imgsz": 320}, "short")
    assert (loaded.epochs, loaded.imgsz, loaded.data) == (3, 320, tmp_path / "photos")
    assert loaded.negatives == [str(tmp_path / "street.mp4"), "ultralytics:assets/bus.jpg"]
    assert load_recipe(recipe, {"epochs": 7}).epochs == 7
    recipe.write_text(recipe.read_text() + "extra: [feedback-2026-11]\n")
    assert load_recipe(recipe, {"extra": [tmp_path / "feedback-2026-12"]}).extra == [
        tmp_path / "feedback-2026-11", tmp_path / "feedback-2026-12"], "--extra adds to the recipe's, not in its place"
    with pytest.raises(ConfigError, match="no schedule 'long'"):
        load_recipe(recipe, {}, "long")
    recipe.write_text("name: stall\ndata: photos\ncheckpoint: base.pt\nclasses: [stall]\nepoch: 60\n")
    with pytest.raises(ConfigError, match="epoch: unknown key"):
        load_recipe(recipe, {})
    # found by review: a typo in a schedule was named as a key of the recipe itself, or passed unseen in a schedule
    # not chosen, and a schedule that was no mapping raised a bare TypeError
    base = "name: stall\ndata: photos\ncheckpoint: base.pt\nclasses: [stall]\n"
    for schedules, named in (("{short: {epochz: 3}, full: {epochs: 60}}", r"schedules\.short\.epochz: unknown key"),
                             ("{short: null}", r"schedules\.short: a mapping of recipe keys"),
                             ("[short]", r"schedules: a mapping of named overrides")):
        recipe.write_text(base + f"schedules: {schedules}\n")
        with pytest.raises(ConfigError, match=named):
            load_recipe(recipe, {}, "full" if "full" in schedules else None)


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's `body` file, as a feedback export would come."""

    def do_GET(self) -> None:  # noqa: N802 - the handler's name
        body = Path(self.server.body)
        self.send_response(200)
        self.send_header("Content-Length", str(body.stat().st_size))
        self.end_headers()
        with body.open("rb") as file:
            shutil.copyfileobj(file, self.wfile)

    def log_message(self, *_args) -> None:
        pass


@contextlib.contextmanager
def answering(body: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.body = body
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_large_feedback_export_is_fetched_to_disk_not_memory(tmp_path):
    """Found by review: the client read the whole export into memory (64 MiB of crops: 64 MiB held), where a
    city's years of crops run to gigabytes beside the training itself."""
    from gridwatch.training import fetch_feedback

    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr("images/big.jpg", os.urandom(32 * 2**20))
        archive.writestr("labels/big.txt", "0 0.5 0.5 0.2 0.2\n")
        archive.writestr("export.json", json.dumps({"classes": ["garbage"], "category": None, "since": None,
                                                    "until": "2026-12-07T00:00:00Z", "positives": 1,
                                                    "negatives": 0, "exported": [], "left_out": []}))
    with answering(export) as url:
        tracemalloc.start()
        try:
            [folder] = fetch_feedback(url, ["garbage"], None, tmp_path / "feedback")
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (folder / "images" / "big.jpg").stat().st_size == 32 * 2**20
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB held for a 32 MiB export"


@pytest.mark.parametrize("answer", [b"<html>please log in</html>", b"PK\x03\x04 cut short"])
def test_an_answer_that_is_no_export_is_refused_and_the_earlier_exports_are_kept(tmp_path, answer):
    """Found by review: a proxy's login page or a cut download came out as a raw BadZipFile traceback, after the
    earlier feedback had been deleted."""
    from gridwatch.training import TrainingError, fetch_feedback

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("export.json", json.dumps({"classes": ["garbage"], "category": None, "since": None,
                                                    "until": "2026-12-07T00:00:00Z", "positives": 0,
                                                    "negatives": 0, "exported": [], "left_out": []}))
    with answering(good) as url:
        [earlier] = fetch_feedback(url, ["garbage"], None, tmp_path / "feedback")
    bad = tmp_path / "bad"
    bad.write_bytes(answer)
    with answering(bad) as url, pytest.raises(TrainingError, match="not a feedback export"):
        fetch_feedback(url, ["garbage"], None, tmp_path / "feedback")
    assert sorted(path.name for path in (tmp_path / "feedback").iterdir()) == [earlier.name]
