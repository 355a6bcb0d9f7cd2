"""One model shared by every camera of a node, each camera keeping its own tracker; batched where asked."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.detect import ModelRegistry

MEDIA = Path(__file__).resolve().parents[3] / "shared" / "media"
pytestmark = pytest.mark.skipif(not (MEDIA / "dog.jpg").exists(), reason="the photos come from ../shared/media")


def frames() -> dict[str, np.ndarray]:
    return {name: cv2.imread(str(MEDIA / f"{name}.jpg")) for name in ("dog", "leuvenA")}


def test_cameras_share_one_model_and_keep_their_own_tracks(model_path):
    registry = ModelRegistry()
    street, empty = registry.detector(model_path, ["car", "truck", "bicycle"]), registry.detector(model_path, None)
    assert len(registry.models) == 1 and street.shared is empty.shared, "loaded once for the node"
    images = frames()
    alone = ModelRegistry().detector(model_path, ["car", "truck", "bicycle"])
    for _ in range(3):  # interleaved, as camera threads take turns
        seen_by_street, seen_empty, seen_alone = (street.track(images["dog"]), empty.track(images["leuvenA"]),
                                                  alone.track(images["dog"]))
    assert len(seen_by_street) and sorted(seen_by_street.labels) == sorted(seen_alone.labels)
    assert np.allclose(np.sort(seen_by_street.boxes, axis=0), np.sort(seen_alone.boxes, axis=0), atol=1e-6)
    assert sorted(seen_by_street.track_ids) == sorted(seen_alone.track_ids), \
        "the other camera's objects never enter this camera's tracker"
    assert len(seen_empty) == 0


def test_frames_handed_in_together_go_through_the_model_in_one_batch(model_path):
    batched = ModelRegistry(batch_window=0.2)
    cameras = [batched.detector(model_path, None) for _ in range(3)]
    images = frames()
    order = [images["dog"], images["leuvenA"], images["dog"]]
    for camera, image in zip(cameras, order, strict=True):
        camera.track(image)  # first frames start their tracks, one call each
    calls_before = cameras[0].shared.calls
    results: dict[int, object] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, cameras[i].track(order[i])))
               for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert cameras[0].shared.calls - calls_before == 1, "three cameras, one model call"
    assert len(results[0]) == len(results[2]) > 0 and len(results[1]) == 0, "each camera got its own frame's objects"


def test_more_cameras_at_once_than_two_batches_hold_all_get_their_results(model_path):
    """Found by review: with batching on, the leader ran one batch (8 frames) and a helper one more; the cameras
    after those waited for good, and so did every later frame of the node."""
    import time

    batched = ModelRegistry(batch_window=0.5)  # long enough for every camera's frame to join the queue
    cameras = [batched.detector(model_path, None) for _ in range(18)]
    image = cv2.resize(frames()["dog"], (320, 240))
    finished: list[int] = []
    threads = [threading.Thread(target=lambda i=i, camera=camera: (camera.track(image), finished.append(i)),
                                daemon=True) for i, camera in enumerate(cameras)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert sorted(finished) == list(range(18))


def test_a_camera_looking_at_tiles_sees_what_is_too_small_in_the_whole_frame(model_path):
    """The dog photo shrunk to a fifth of a wide, empty frame: far from the camera. Whole, the model finds the
    bicycle alone; looking also at a 2 × 2 grid of parts, it finds the dog and the truck too, each once."""
    dog = frames()["dog"]
    height, width = dog.shape[:2]
    far = np.full((height * 5, width * 5, 3), 90, dtype=np.uint8)
    far[2 * height:3 * height, 2 * width:3 * width] = dog
    registry = ModelRegistry()
    whole, tiled = registry.detector(model_path, None), registry.detector(model_path, None)
    for _ in range(2):  # a track is reported from its second sighting
        seen_whole, seen_tiled = whole.track(far), tiled.track(far, tiles=2)
    assert "dog" not in seen_whole.labels
    assert "dog" in seen_tiled.labels and len(seen_tiled) > len(seen_whole)
    assert seen_tiled.labels.count("dog") == 1, "the dog seen in several tiles is one object"
    dog_box = seen_tiled.boxes[seen_tiled.labels.index("dog")]
    assert 0.4 <= dog_box[0] < dog_box[2] <= 0.6 and 0.4 <= dog_box[1] < dog_box[3] <= 0.6, "placed in the frame"


def test_a_model_retrained_into_its_folder_is_loaded_anew_and_an_unchanged_one_is_not(model_path, tmp_path):
    """Found by review: models were kept by their path, so a model retrained into the same folder (as `make
    model-litter` does) and rolled out or reloaded was answered `applied` while the node ran the old one."""
    import os
    import shutil

    if not Path(model_path).is_dir():
        pytest.skip("an export folder is copied here")
    weights = tmp_path / "litter_openvino_model"
    shutil.copytree(model_path, weights)
    registry = ModelRegistry()
    first = registry.shared(str(weights))
    assert registry.shared(str(weights)) is first, "unchanged: the loaded model is kept"
    newest = max(file.stat().st_mtime_ns for file in weights.iterdir())
    retrained = next(weights.glob("*.bin"))
    os.utime(retrained, ns=(newest + 10**9, newest + 10**9))  # written again by a training run
    again = registry.shared(str(weights))
    assert again is not first and again.stamp > first.stamp, "retrained in place: loaded anew"


def test_a_city_models_identity_names_its_own_weights_not_the_coco_export_beside_it(tmp_path):
    """Found by review: the identity a training wrote was taken from a model's parent folder whatever the model: a
    trained model installed into the folder of the COCO export made COCO's events say `litter`, and telemetry,
    one model per name, listed one of the two; an identity in the export folder itself lost to the parent's."""
    import yaml

    from edge.detect import Detector

    models = tmp_path / "models"
    coco, litter = models / "yolo11n_int8_openvino_model", models / "litter_int8_openvino_model"
    coco.mkdir(parents=True)
    litter.mkdir()
    (coco / "metadata.yaml").write_text(yaml.safe_dump({"version": "8.3.0", "date": "2025-01-01T00:00:00"}))
    (models / "identity.yaml").write_text(yaml.safe_dump({"name": "litter", "version": "2026.11.23-1a2b3c4d"}))
    assert Detector.identity(coco, str(coco)).name == "yolo11n_int8_openvino_model"
    assert Detector.identity(litter, str(litter)).version == "2026.11.23-1a2b3c4d"
    (litter / "identity.yaml").write_text(yaml.safe_dump({"name": "stall", "version": "v2"}))
    assert Detector.identity(litter, str(litter)).name == "stall", "its own identity first"
