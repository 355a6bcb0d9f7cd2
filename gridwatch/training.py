"""`gridwatch models train` and `export`: fine-tune a YOLO checkpoint on a YOLO-format dataset of city classes,
evaluate it, export it, and write a model card — the path by which a city makes and ships its own models.

The dataset is never written to: the recipe builds its own view of it (image links, label copies, a seeded split)
in the output folder, where ultralytics may keep its caches.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}

# Street cameras: day and night (brightness), distance (scale), small shifts; no rotation or vertical flips, since
# cameras are mounted level and garbage does not lie on the sky.
STREET_AUGMENTATION = {"hsv_h": 0.015, "hsv_s": 0.5, "hsv_v": 0.6, "degrees": 0.0, "translate": 0.1, "scale": 0.5,
                       "fliplr": 0.5, "flipud": 0.0, "mosaic": 1.0}


class TrainingError(ValueError):
    pass


@dataclass
class Split:
    data_yaml: Path
    train: list[Path]
    val: list[Path]
    names: dict[int, str]


@dataclass
class TrainingResult:
    weights: Path
    report: Path
    card: Path
    metrics: dict
    exports: dict[str, Path] = field(default_factory=dict)


def prepare_dataset(source: Path, work: Path, names: list[str], val_fraction: float = 0.2, seed: int = 0) -> Split:
    """A seeded train/validation split of `source` (images/ and labels/, YOLO format) built under `work`."""
    images = sorted(p for p in (source / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(images) < 2:
        raise TrainingError(f"{source / 'images'}: need at least 2 images, found {len(images)}")
    if not 0 < val_fraction < 1:
        raise TrainingError("the validation fraction must be between 0 and 1")
    (work / "images").mkdir(parents=True, exist_ok=True)
    (work / "labels").mkdir(parents=True, exist_ok=True)
    linked = []
    for image in images:
        target = work / "images" / image.name
        if not target.exists():
            target.symlink_to(image.resolve())
        label = source / "labels" / f"{image.stem}.txt"
        text = label.read_text() if label.exists() else ""  # no label file: an image with nothing to find
        for number, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if parts and (len(parts) != 5 or not parts[0].isdigit() or int(parts[0]) >= len(names)):
                raise TrainingError(f"{label}:{number}: expected 'class x y w h' with class < {len(names)}")
        (work / "labels" / f"{image.stem}.txt").write_text(text)
        linked.append(target)
    order = np.random.default_rng(seed).permutation(len(linked))
    val_count = max(1, round(val_fraction * len(linked)))
    val = [linked[i] for i in sorted(order[:val_count])]
    train = [linked[i] for i in sorted(order[val_count:])]
    (work / "train.txt").write_text("\n".join(str(p) for p in train) + "\n")
    (work / "val.txt").write_text("\n".join(str(p) for p in val) + "\n")
    names_map = dict(enumerate(names))
    data_yaml = work / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(work), "train": "train.txt", "val": "val.txt",
                                         "names": names_map}))
    return Split(data_yaml, train, val, names_map)


def export(weights: Path, formats: list[str], imgsz: int = 640, int8: bool = False,
           data: Path | None = None) -> dict[str, Path]:
    """Export to each format (`onnx`, `openvino`); INT8 (OpenVINO) calibrates on `data`. Exports land beside the
    weights, so export a copy that lives in your own folder."""
    from ultralytics import YOLO

    exports = {}
    for fmt in formats:
        kwargs = {"format": fmt, "imgsz": imgsz, "verbose": False}
        if int8 and fmt == "openvino":
            if data is None:
                raise TrainingError("INT8 export needs --data to calibrate on")
            kwargs.update(int8=True, data=str(data))
        exports[fmt] = Path(YOLO(str(weights)).export(**kwargs))
    return exports


def train(dataset: Path, checkpoint: Path, out: Path, names: list[str], epochs: int = 50, imgsz: int = 640,
          batch: int = 16, patience: int = 10, val_fraction: float = 0.2, seed: int = 0,
          export_formats: list[str] | None = None, device: str = "cpu", plots: bool = True) -> TrainingResult:
    from ultralytics import YOLO

    if not checkpoint.exists():
        raise TrainingError(f"checkpoint {checkpoint} does not exist")
    out = out.resolve()
    split = prepare_dataset(dataset, out / "dataset", names, val_fraction, seed)
    started = time.time()
    model = YOLO(str(checkpoint))
    model.train(data=str(split.data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, patience=patience, seed=seed,
                deterministic=True, project=str(out), name="run", exist_ok=True, device=device, workers=0,
                plots=plots, amp=False, verbose=False, **STREET_AUGMENTATION)
    best = out / "best.pt"
    shutil.copyfile(model.trainer.best, best)
    validation = YOLO(str(best)).val(data=str(split.data_yaml), split="val", imgsz=imgsz, device=device,
                                     plots=plots, project=str(out), name="val", exist_ok=True, verbose=False)
    box = validation.box
    per_class = {
        split.names[int(index)]: {"precision": round(float(p), 4), "recall": round(float(r), 4),
                                  "map50": round(float(m50), 4), "map50_95": round(float(m), 4)}
        for index, p, r, m50, m in zip(box.ap_class_index, box.p, box.r, box.ap50, box.ap, strict=False)
    }
    metrics = {
        "precision": round(float(box.mp), 4), "recall": round(float(box.mr), 4),
        "map50": round(float(box.map50), 4), "map50_95": round(float(box.map), 4), "per_class": per_class,
    }
    exports = export(best, export_formats or [], imgsz=imgsz) if export_formats else {}
    report = out / "report.json"
    report.write_text(json.dumps({
        "checkpoint": str(checkpoint), "dataset": str(dataset), "classes": split.names, "epochs": epochs,
        "epochs_run": int(model.trainer.epoch) + 1, "imgsz": imgsz, "seed": seed,
        "train_images": len(split.train), "val_images": len(split.val), "augmentation": STREET_AUGMENTATION,
        "validation": metrics, "minutes": round((time.time() - started) / 60, 2),
        "curves": str(out / "run" / "results.png") if plots else None,
        "exports": {fmt: str(path) for fmt, path in exports.items()},
    }, indent=2) + "\n")
    card = out / "MODEL_CARD.md"
    card.write_text(_model_card(checkpoint, dataset, split, metrics, epochs, imgsz, exports))
    return TrainingResult(best, report, card, metrics, exports)


def _model_card(checkpoint: Path, dataset: Path, split: Split, metrics: dict, epochs: int, imgsz: int,
                exports: dict[str, Path]) -> str:
    rows = "\n".join(f"| {name} | {m['precision']} | {m['recall']} | {m['map50']} | {m['map50_95']} |"
                     for name, m in metrics["per_class"].items())
    licence = (dataset / "LICENSE").read_text().splitlines()[0] if (dataset / "LICENSE").exists() else "see dataset"
    return f"""# Model card

- **Date**: {time.strftime("%Y-%m-%d")}
- **Base weights**: `{checkpoint.name}` (Ultralytics YOLO, AGPL-3.0)
- **Data**: `{dataset}` — {len(split.train)} training and {len(split.val)} validation images, seeded split;
  data licence: {licence}
- **Classes**: {", ".join(split.names.values())}
- **Training**: {epochs} epochs at {imgsz} px, street-camera augmentation (brightness for night, scale, shifts)
- **Exports**: {", ".join(f"{fmt} (`{path.name}`)" for fmt, path in exports.items()) or "none"}

## Validation

| class | precision | recall | mAP50 | mAP50-95 |
|---|---|---|---|---|
| all | {metrics['precision']} | {metrics['recall']} | {metrics['map50']} | {metrics['map50_95']} |
{rows}

Use it at the edge by listing it in a model manifest (see models/README.md) with the categories its classes serve.
"""
