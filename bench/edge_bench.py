"""Edge cost: the whole pipeline against the bare model, a still scene against a busy one, and the backends.

All figures come from one run on one machine, so the ratios hold even where the machine is shared and noisy.
Writes bench/results/edge.json.

    .venv/bin/python bench/edge_bench.py [--video ../shared/media/vtest.avi] [--frames 300]

- raw_model_fps: ultralytics predict alone on the same decoded frames.
- pipeline_fps: the node's camera pipeline detecting every frame (decode, motion off, detect, track, all three
  category rules, evidence on events); pipeline_to_raw_ratio = pipeline_fps / raw_model_fps (goal >= 0.9).
- still_scene_cpu_ratio: CPU seconds per frame of the pipeline on a still street with motion gating, divided by
  the same pipeline detecting every sampled frame (goal <= 0.2).
- cameras_per_node: cameras at 5 detections a second that the measured pipeline rate sustains, when every camera
  sees motion all the time (goal >= 8); a still camera costs still_scene_cpu_ratio of that.
- backend_ms_per_frame: predict latency at 640 for PyTorch (.pt), ONNX Runtime and OpenVINO INT8.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))
SHARED = REPO.parent / "shared"

from results_io import report  # noqa: E402

from edge.capture import VideoSource  # noqa: E402
from edge.config import NodeConfig  # noqa: E402
from edge.manifest import BACKGROUND_WEIGHTS, load_manifest  # noqa: E402
from edge.pipeline import CameraPipeline  # noqa: E402

ALL_RULES_ZONES = [
    {"zone_id": rule, "rule": rule, "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "dwell_seconds": 5}
    for rule in ("no_parking", "no_vending", "no_litter")
]


def read_frames(video: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def raw_model_fps(model: str, frames: list[np.ndarray]) -> float:
    from ultralytics import YOLO

    yolo = YOLO(model, task="detect")
    for frame in frames[:5]:
        yolo.predict(frame, verbose=False)
    start = time.perf_counter()
    for frame in tqdm(frames, desc="raw model", unit="frame", leave=False):
        yolo.predict(frame, verbose=False)
    return len(frames) / (time.perf_counter() - start)


def pipeline_run(model: str, video: Path, sample_fps: float, gating: bool, max_frames: int,
                 manifest_path: Path | None = None, manifest_rates: bool = False) -> tuple[int, float, float]:
    """Run the camera pipeline over `video`; returns (frames processed, wall seconds, CPU seconds). Detectors run at
    every sampled frame unless `manifest_rates`, which keeps each model's own rate."""
    node = NodeConfig.model_validate({"node_id": "bench", "model": model, "cameras": [{
        "camera_id": "bench", "source": str(video), "realtime": False, "motion_gating": gating,
        "detect_fps": sample_fps, "zones": ALL_RULES_ZONES}], **({"manifest": manifest_path} if manifest_path else {})})
    camera = node.cameras[0]
    manifest = load_manifest(node.manifest)
    for spec in manifest.models:
        if spec.weights != BACKGROUND_WEIGHTS and not manifest_rates:
            spec.detect_fps = sample_fps  # detectors at every sampled frame; the background model as shipped
    source = VideoSource(str(video), sample_fps, realtime=False)
    pipeline = CameraPipeline.build(node, camera, manifest, source=source)
    frames = pipeline.frames()
    for _ in range(5):  # warm up the model and the tracker
        pipeline.process(next(frames), lambda *_: None)
    processed = 0
    wall, cpu = time.perf_counter(), time.process_time()
    with tqdm(total=max_frames, desc=f"pipeline ({'gated' if gating else 'every frame'})", unit="frame",
              leave=False) as bar:
        for frame in frames:
            pipeline.process(frame, lambda *_: None)
            processed += 1
            bar.update()
            if processed >= max_frames:
                break
    return processed, time.perf_counter() - wall, time.process_time() - cpu


def still_street_clip(out: Path, seconds: float = 60, fps: float = 10) -> Path:
    """An empty street (../shared/media/leuvenA.jpg, else the ultralytics bus photo) with sensor noise."""
    source = SHARED / "media" / "leuvenA.jpg"
    if source.exists():
        image = cv2.imread(str(source))
    else:
        from gridwatch.demo_media import ultralytics_asset

        image = cv2.imread(str(ultralytics_asset("bus.jpg")))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (image.shape[1], image.shape[0]))
    rng = np.random.default_rng(0)
    for _ in range(int(seconds * fps)):
        noise = rng.integers(-5, 6, size=image.shape, dtype=np.int16)
        writer.write(np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    writer.release()
    return out


def backend_ms(frames: list[np.ndarray], openvino_model: str, cache: Path) -> dict[str, float]:
    from ultralytics import YOLO

    models = {"openvino": openvino_model}
    pt = SHARED / "models" / "yolo11n_coco.pt"
    if pt.exists():
        models["pt"] = str(pt)
        onnx = cache / "yolo11n_coco.onnx"
        if not onnx.exists():
            # ultralytics writes an export beside its weights: export from a copy, never inside ../shared
            cache.mkdir(parents=True, exist_ok=True)
            copy = cache / pt.name
            shutil.copyfile(pt, copy)
            exported = Path(YOLO(str(copy)).export(format="onnx", imgsz=640, verbose=False))
            if exported.resolve() != onnx.resolve():
                exported.rename(onnx)
        models["onnx"] = str(onnx)
    figures = {}
    sample = frames[:60]
    for name, path in models.items():
        yolo = YOLO(path, task="detect")
        for frame in sample[:5]:
            yolo.predict(frame, imgsz=640, verbose=False)
        start = time.perf_counter()
        for frame in tqdm(sample, desc=f"backend {name}", unit="frame", leave=False):
            yolo.predict(frame, imgsz=640, verbose=False)
        figures[name] = round(1000 * (time.perf_counter() - start) / len(sample), 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=SHARED / "media" / "vtest.avi", help="Busy video to measure on.")
    parser.add_argument("--model", default=os.environ.get("GRIDWATCH_MODEL")
                        or str(SHARED / "models" / "yolo11n_int8_openvino_model"), help="Detector for the node.")
    parser.add_argument("--frames", type=int, default=300, help="Frames per measurement (default 300).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "edge.json",
                        help="Where to write the JSON figures.")
    args = parser.parse_args()

    frames = read_frames(args.video, args.frames)
    raw = raw_model_fps(args.model, frames)
    native_fps = cv2.VideoCapture(str(args.video)).get(cv2.CAP_PROP_FPS) or 10.0
    count, wall, _ = pipeline_run(args.model, args.video, native_fps, gating=False, max_frames=args.frames)
    pipeline_fps = count / wall
    with tempfile.TemporaryDirectory() as tmp:
        still = still_street_clip(Path(tmp) / "still.avi")
        count_full, _, cpu_full = pipeline_run(args.model, still, 5.0, gating=False, max_frames=200)
        count_gated, _, cpu_gated = pipeline_run(args.model, still, 5.0, gating=True, max_frames=200)
    still_ratio = (cpu_gated / count_gated) / (cpu_full / count_full)
    backends = backend_ms(frames, args.model, REPO / "bench" / ".cache")

    figures = {
        "benchmark": "edge",
        "video": args.video.name,
        "model": Path(args.model).name,
        "frames": len(frames),
        "raw_model_fps": round(raw, 1),
        "pipeline_fps": round(pipeline_fps, 1),
        "pipeline_to_raw_ratio": round(pipeline_fps / raw, 3),
        "still_scene_cpu_ratio": round(still_ratio, 3),
        "cameras_per_node": int(pipeline_fps // 5),
        "backend_ms_per_frame": backends,
    }
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
