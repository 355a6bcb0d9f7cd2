"""The litter model: how well it sees garbage, how quiet it is on clean streets, and what it costs a camera.

Writes bench/results/litter_model.json:
- validation: ultralytics val of the trained model on the validation photos (precision, recall, mAP50, mAP50-95 of
  `garbage`), from the training report;
- operating_point: recall, precision and `found` (IoU >= 0.1) of garbage on the validation photos (never trained
  on) at the score the edge's rules count (the manifest's `min_score` for the model, else the camera default 0.35),
  for the model as the node runs it (the OpenVINO export; with the COCO model beside it dropping its boxes on
  people and vehicles when the manifest says `yield_to`);
- clean: `false_boxes_per_frame`, garbage boxes per clean street frame the model never trained on (leuvenA.jpg,
  the garbage-free top right of vtest.avi, crops of the validation photos away from their garbage), measured so;
- variants: the model alone (if the node runs it beside COCO), and with --compare the same figures for other
  trained models, each with garbage boxes that lie on a person or vehicle dropped either by the model's own classes
  or by the COCO model run beside it;
- trade_off: recall, precision and false boxes per clean frame at scores from 0.25 to 0.75, measured the same way;
- cost: the camera pipeline on vtest.avi at 10 fps with models/coco.yaml against models/city.yaml (COCO at 5 fps
  plus the litter model at its manifest rate, a look every 2 s), milliseconds per camera-second and their ratio,
  measured in one run.

    .venv/bin/python bench/litter_model.py [--model-dir models/litter] [--compare DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))
SHARED = REPO.parent / "shared"

from edge_bench import pipeline_run  # noqa: E402
from results_io import report  # noqa: E402

from gridwatch.model_eval import (  # noqa: E402
    OPERATING_SCORE,
    SUPPRESSING_CLASSES,
    CityDetector,
    clean_frames,
    false_boxes_per_frame,
    recall_precision,
    validation_samples,
)

TRADE_OFF_SCORES = (0.25, 0.35, 0.45, 0.55, 0.65, 0.75)


def deployed_weights(model_dir: Path) -> Path:
    """What a node runs: the OpenVINO export when there is one, else the PyTorch weights, else (a run stopped before
    it finished) the best epoch's checkpoint so far."""
    exports = sorted(model_dir.glob("*_openvino_model"))
    return exports[0] if exports else next(model_dir.glob("*.pt"), model_dir / "run" / "weights" / "best.pt")


def learned_classes(model_dir: Path) -> list[str]:
    """The classes the run learned beyond the first (its data.yaml)."""
    import yaml

    names = yaml.safe_load((model_dir / "dataset" / "data.yaml").read_text())["names"]
    return [names[index] for index in sorted(names)][1:]


def as_shipped(manifest: Path, name: str) -> dict:
    """The model's entry in the node's manifest: its `yield_to` (the node drops its boxes lying on what the COCO
    model sees) and `min_score` are how its figures are measured."""
    import yaml

    return next((spec for spec in yaml.safe_load(manifest.read_text()).get("models", [])
                 if spec.get("name") == name), {})


def figures_of(model_dir: Path, target: str, suppressor: Path | None, frames: list, samples: list,
               imgsz: int, score: float = OPERATING_SCORE, tiles: int = 1) -> dict:
    detector = CityDetector(deployed_weights(model_dir), target, suppressor=suppressor, imgsz=imgsz, score=score,
                            tiles=tiles)
    own = sorted(set(detector.model.names.values()) & set(SUPPRESSING_CLASSES))
    suppression = "by the COCO model beside it" if suppressor else f"by its own {', '.join(own)}" if own else "none"
    return {"weights": deployed_weights(model_dir).name, "boxes_on_people_and_vehicles_dropped": suppression,
            "tiles": tiles, "operating_point": recall_precision(detector, samples),
            "clean": false_boxes_per_frame(detector, frames)}


def trade_off(model_dir: Path, target: str, suppressor: Path | None, frames: list, samples: list, imgsz: int,
              measured: dict[float, dict], tiles: int = 1, scores: tuple[float, ...] = TRADE_OFF_SCORES) -> list[dict]:
    """Recall and false boxes per clean frame at other scores: what a city buys in quiet streets with each step up
    of the model's `min_score` in the manifest (and what it pays in garbage missed). `measured`: figures already
    taken, by score (the shipped one), not measured again."""
    rows = []
    for score in tqdm(scores, desc="scores", unit="score", leave=False):
        figures = measured.get(score) or figures_of(model_dir, target, suppressor, frames, samples, imgsz, score,
                                                    tiles)
        point = figures["operating_point"]
        rows.append({"score": score, "recall": point["recall"], "precision": point["precision"],
                     "found": point["found"], "false_boxes_per_frame": figures["clean"]["false_boxes_per_frame"]})
    return rows


def camera_cost(coco: str, video: Path, frames: int) -> dict:
    """Milliseconds of pipeline per second of a 10 fps camera that always sees motion, without and with litter."""
    costs = {}
    for name in ("coco", "city"):
        count, wall, cpu = pipeline_run(coco, video, 10.0, gating=False, max_frames=frames,
                                        manifest_path=REPO / "models" / f"{name}.yaml", manifest_rates=True)
        camera_seconds = count / 10.0
        costs[name] = {"wall_ms_per_camera_second": round(1000 * wall / camera_seconds, 1),
                       "cpu_ms_per_camera_second": round(1000 * cpu / camera_seconds, 1)}
    costs["added_wall_ratio"] = round(costs["city"]["wall_ms_per_camera_second"]
                                      / costs["coco"]["wall_ms_per_camera_second"], 3)
    costs["cameras_per_node_with_litter"] = int(1000 // costs["city"]["wall_ms_per_camera_second"])
    costs["cameras_per_node_without"] = int(1000 // costs["coco"]["wall_ms_per_camera_second"])
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "litter",
                        help="Output folder of `gridwatch models train` for the shipped model (default models/litter).")
    parser.add_argument("--target", default="garbage", help="The class measured (default garbage); class 0 of "
                                                           "the labels.")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="Another trained model's folder to measure the same way; repeat for several.")
    parser.add_argument("--coco", default=os.environ.get("GRIDWATCH_MODEL")
                        or str(SHARED / "models" / "yolo11n_int8_openvino_model"),
                        help="The COCO model run beside it (suppression variant and camera cost).")
    parser.add_argument("--manifest", type=Path, default=REPO / "models" / "city.yaml",
                        help="The node's model manifest: the model is measured as it lists it, beside COCO if it "
                             "drops boxes on what COCO sees (`yield_to`), at its `min_score` if it has one "
                             "(default models/city.yaml).")
    parser.add_argument("--video", type=Path, default=SHARED / "media" / "vtest.avi",
                        help="Street video: clean frames from its garbage-free corner, and the camera cost.")
    parser.add_argument("--frames", type=int, default=300, help="Frames for the camera cost (default 300).")
    parser.add_argument("--tiles", type=int, default=None,
                        help="Measure the model looking at a grid of N x N parts of each image as well as the whole "
                             "(`tiles` in the manifest), instead of the manifest's setting (default: the manifest's, "
                             "else 1).")
    parser.add_argument("--no-cost", action="store_true", help="Skip the camera cost (quality figures only).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "litter_model.json",
                        help="Where to write the JSON figures.")
    args = parser.parse_args()

    training = json.loads((args.model_dir / "report.json").read_text())
    imgsz = training["recipe"]["imgsz"]
    samples = validation_samples(args.model_dir / "dataset")
    frames = clean_frames(samples, args.video if args.video.exists() else None, [SHARED / "media" / "leuvenA.jpg"])
    spec = as_shipped(args.manifest, training["name"])
    beside = Path(args.coco) if spec.get("yield_to") else None
    score = spec.get("min_score") or OPERATING_SCORE
    tiles = args.tiles or spec.get("tiles") or 1
    shipped = figures_of(args.model_dir, args.target, beside, frames, samples, imgsz, score, tiles)
    figures = {
        "benchmark": "litter_model",
        "model": f"{training['name']} {training['version']}",
        "recipe": {key: training["recipe"][key] for key in ("epochs", "imgsz", "keep", "clean_crops",
                                                            "street_variants", "int8")},
        "epochs_run": training["epochs_run"],
        "training_minutes": training["minutes"],
        "validation": {"all": {k: training["validation"][k] for k in ("precision", "recall", "map50", "map50_95")},
                       args.target: training["validation"]["per_class"].get(args.target)},
        "boxes_on_people_and_vehicles_dropped": shipped["boxes_on_people_and_vehicles_dropped"],
        "operating_point": shipped["operating_point"],
        "false_boxes_per_frame": shipped["clean"]["false_boxes_per_frame"],
        "clean": shipped["clean"],
        "goals": {"recall": 0.8, "false_boxes_per_frame": 0.05},
        "trade_off": trade_off(args.model_dir, args.target, beside, frames, samples, imgsz, {score: shipped}, tiles),
    }
    variants = {}
    if tiles > 1:  # what looking at the parts buys
        variants[f"{args.model_dir.name} whole images only"] = figures_of(args.model_dir, args.target, beside, frames,
                                                                          samples, imgsz, score)
    if beside is not None:  # what the model sees without the COCO model's help
        variants[f"{args.model_dir.name} alone"] = figures_of(args.model_dir, args.target, None, frames, samples,
                                                              imgsz, score, tiles)
    for other in args.compare:
        finished = (other / "report.json").exists()
        variants[f"{other.name} alone"] = figures_of(other, args.target, None, frames, samples, imgsz)
        variants[f"{other.name} alone"]["extra_classes"] = learned_classes(other)
        if not finished:
            epochs = len((other / "run" / "results.csv").read_text().splitlines()) - 1
            variants[f"{other.name} alone"]["note"] = f"run stopped after {epochs} epochs; its best epoch so far"
        variants[f"{other.name} + coco beside"] = figures_of(other, args.target, Path(args.coco), frames, samples,
                                                             imgsz)
    if args.compare and beside is None:
        variants[f"{args.model_dir.name} + coco beside"] = figures_of(args.model_dir, args.target, Path(args.coco),
                                                                      frames, samples, imgsz)
    if variants:
        figures["variants"] = variants
    if not args.no_cost:
        figures["cost"] = camera_cost(args.coco, args.video, args.frames)
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
