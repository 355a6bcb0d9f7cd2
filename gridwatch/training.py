"""`gridwatch models train` and `export`: fine-tune a YOLO checkpoint into a city model, evaluate it, export it, and
write its model card — the path by which a city makes and ships its own models.

A recipe (YAML, see models/litter.yaml) says what to learn from and how; command-line options override it. The
training set is built by `gridwatch.citydata`; the sources are never written to.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edge.detect import IDENTITY_FILE
from gridwatch import citydata
from gridwatch.config_files import ConfigError, read_yaml_mapping, validate

# Street cameras: day and night (brightness), distance (scale), small shifts; no rotation or vertical flips, since
# cameras are mounted level and garbage does not lie on the sky. Blur and night copies come from citydata.
STREET_AUGMENTATION = {"hsv_h": 0.015, "hsv_s": 0.5, "hsv_v": 0.6, "degrees": 0.0, "translate": 0.1, "scale": 0.5,
                       "fliplr": 0.5, "flipud": 0.0, "mosaic": 1.0}


log = logging.getLogger(__name__)


class TrainingError(ValueError):
    pass


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="city", pattern=r"^[a-z][a-z0-9_-]{0,40}$",
                      description="Model name: file names, the manifest entry and events carry it.")
    data: Path = Field(description="Labelled dataset: images/ and labels/ in YOLO format.")
    checkpoint: Path = Field(description="Weights to start from, e.g. ../shared/models/yolo11n_coco.pt.")
    classes: list[str] = Field(min_length=1, description="The dataset's class names, in label order.")
    teacher: Path | None = Field(default=None, description="Model that pseudo-labels the `keep` classes.")
    keep: list[str] = Field(default_factory=list,
                            description="Teacher classes learned as extra classes, so they are not mistaken for ours.")
    negatives: list[str] = Field(
        default_factory=list,
        description="Clean street images or videos (training only); `ultralytics:` names a file inside the "
                    "ultralytics package, e.g. ultralytics:assets/bus.jpg.")
    clean_crops: int = Field(default=1, ge=0, le=5, description="Crops with nothing labelled, per training photo.")
    zoom_crops: int = Field(default=0, ge=0, le=5,
                            description="Crops around the labelled objects per training photo, seen about twice as "
                                        "close, none cut: small things far from the camera as a node's `tiles` "
                                        "show them.")
    street_variants: bool = Field(default=True, description="Add a night or blurred copy of each training photo.")
    extra: list[Path] = Field(
        default_factory=list,
        description="More labelled datasets (images/ and labels/), e.g. unzipped operator feedback exports, for "
                    "training only; labels numbered as the `classes` of their export.json (renumbered to ours), "
                    "else as ours. An image named again in a later one replaces the earlier: list exports oldest "
                    "first.")
    feedback: str | None = Field(
        default=None, description="GridWatch server URL: the detections operators reviewed are fetched "
                                  "(/api/v1/training-data, with an operator's token in GRIDWATCH_API_TOKEN) and "
                                  "learned as one more extra dataset.")
    feedback_category: str | None = Field(default=None, description="Only reviewed detections of this category.")
    epochs: int = Field(default=50, ge=1, description="Most epochs to run.")
    patience: int = Field(default=10, ge=1, description="Stop after this many epochs without improvement.")
    imgsz: int = Field(default=640, ge=32, description="Training and export image size.")
    freeze: int = Field(default=0, ge=0, le=22,
                        description="Layers from the input kept as the checkpoint has them (10: YOLO11's whole "
                                    "backbone); about twice as fast. On the litter photos it found more garbage "
                                    "but drew 15 times the false boxes on clean streets (make bench-litter): "
                                    "measure before shipping. 0 trains every layer.")
    batch: int = Field(default=16, ge=1, description="Batch size.")
    val_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of labelled photos for validation.")
    seed: int = Field(default=0, description="Seed of the crops, copies and training (the validation split goes by "
                                             "photo name, the same whatever the seed).")
    export: list[str] = Field(default_factory=list, description="Formats to export: openvino, onnx.")
    int8: bool = Field(default=False, description="Quantise the OpenVINO export to INT8, calibrated on the data.")
    device: str = Field(default="cpu", description="cpu, or a CUDA device such as 0.")
    plots: bool = Field(default=True, description="Write the curves and example plots.")
    schedules: dict[str, dict] = Field(
        default_factory=dict, description="Named sets of overrides, e.g. `short` for CI: {epochs: 12, imgsz: 320}.")

    def sources(self) -> citydata.Sources:
        return citydata.Sources(
            labelled=self.data, names=self.classes, teacher=self.teacher, keep=self.keep,
            negatives=[resolve_negative(n) for n in self.negatives], clean_crops=self.clean_crops,
            zoom_crops=self.zoom_crops,
            street_variants=self.street_variants, extra=self.extra, val_fraction=self.val_fraction, seed=self.seed)


def fetch_feedback(server: str, classes: list[str], category: str | None, dest: Path,
                   token: str | None = None) -> list[Path]:
    """The server's reviewed detections as YOLO datasets under `dest`, oldest first (training takes a detection in
    several once, as the last has it). Each run fetches only what was given or changed since the last run's export
    (`since` its `until`) into a numbered folder of its own (`dest/0001`, `0002`, …; images/, labels/, export.json),
    so a city's years of crops come down once. Exports of another class list or category, or not readable, are
    set aside and everything fetched again. The download goes to a file (it may run to gigabytes) and is unpacked
    beside its folder, which appears whole or not at all. `token`: an operator's API token (default:
    GRIDWATCH_API_TOKEN)."""
    if not server.startswith(("http://", "https://")):
        raise TrainingError(f"--feedback {server!r}: the server's URL, e.g. http://127.0.0.1:8000")
    earlier = _earlier_exports(dest, classes, category)
    since = json.loads((earlier[-1] / "export.json").read_text(encoding="utf-8"))["until"] if earlier else None
    query = {"classes": ",".join(classes), **({"category": category} if category else {}),
             **({"since": since} if since else {})}
    url = f"{server.rstrip('/')}/api/v1/training-data?{urllib.parse.urlencode(query)}"
    token = token or os.environ.get("GRIDWATCH_API_TOKEN")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    dest.mkdir(parents=True, exist_ok=True)
    folder = dest / f"{len(earlier) + 1:04d}"
    download, partial = dest / ".download.zip", dest / ".unpacking"
    try:
        with urllib.request.urlopen(request, timeout=120) as response, download.open("wb") as file:  # noqa: S310
            shutil.copyfileobj(response, file, 1 << 20)  # an operator's URL; a file, not memory
            expected = response.headers.get("Content-Length")
        if expected is not None and download.stat().st_size != int(expected):
            raise TrainingError(f"{url}: the download stopped at {download.stat().st_size} of {expected} bytes")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(download) as archive:
            if "export.json" not in archive.namelist():
                raise TrainingError(f"{url}: the answer is a zip without export.json, not a feedback export")
            archive.extractall(partial)
        summary = json.loads((partial / "export.json").read_text(encoding="utf-8"))
        (partial / "images").mkdir(exist_ok=True)
        partial.rename(folder)
    except urllib.error.HTTPError as error:
        raise TrainingError(f"{url}: {error.code} {error.read().decode(errors='replace')[:300]}") from None
    except (zipfile.BadZipFile, ValueError, KeyError) as error:
        raise TrainingError(f"{url}: the answer is not a feedback export ({error})") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise TrainingError(f"{url}: cannot fetch operator feedback: {error}") from None
    finally:
        download.unlink(missing_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    log.info("operator feedback %s: %d positives, %d negatives, %d left out (see %s); %d earlier export(s) beside "
             "it", "since " + since if since else "(all of it)", summary["positives"], summary["negatives"],
             len(summary["left_out"]), folder / "export.json", len(earlier))
    return [*earlier, folder]


def _earlier_exports(dest: Path, classes: list[str], category: str | None) -> list[Path]:
    """The numbered exports under `dest` a new one may follow: of the same classes and category, each readable.
    Otherwise (a recipe's classes changed, a folder of the layout before numbered exports) they are moved aside to
    `dest/superseded-N/`, and everything is fetched again."""
    if not dest.exists():
        return []
    folders = sorted(path for path in dest.iterdir() if path.is_dir() and path.name.isdigit())
    try:
        summaries = [json.loads((folder / "export.json").read_text(encoding="utf-8")) for folder in folders]
        usable = all(summary["classes"] == classes and summary["category"] == category and summary["until"]
                     for summary in summaries)
    except (OSError, ValueError, KeyError, TypeError):
        usable = False
    strays = [path for path in dest.iterdir() if not path.name.isdigit() and not path.name.startswith(
        ("superseded-", "."))]
    if usable and not strays:
        return folders
    aside = dest / f"superseded-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}"
    aside.mkdir()
    for path in folders + strays:
        path.rename(aside / path.name)
    log.warning("operator feedback: the exports in %s are of other classes or a category, or do not read; moved "
                "to %s, and everything is fetched again", dest, aside)
    return []


def resolve_negative(name: str) -> Path:
    if name.startswith("ultralytics:"):
        import ultralytics

        return Path(ultralytics.__file__).parent / name.removeprefix("ultralytics:")
    return Path(name)


def load_recipe(path: Path | None, overrides: dict, schedule: str | None = None) -> Recipe:
    """The recipe file (relative paths taken from its folder), its named `schedule` on top, and `overrides` (those
    not None) on top of that."""
    data = read_yaml_mapping(path, "a training recipe") if path else {}
    source = str(path or "training options")
    schedules = data.get("schedules") or {}
    if not isinstance(schedules, dict):
        raise ConfigError(f"{source}: schedules: a mapping of named overrides, e.g. {{short: {{epochs: 8}}}}")
    for name, changes in schedules.items():  # every one, chosen or not: a typo is found before the day it is used
        if not isinstance(changes, dict):
            raise ConfigError(f"{source}: schedules.{name}: a mapping of recipe keys, e.g. {{epochs: 8}}")
        if unknown := sorted(key for key in changes if key not in Recipe.model_fields or key == "schedules"):
            raise ConfigError(f"{source}: schedules.{name}.{unknown[0]}: unknown key")
    if schedule is not None:
        if schedule not in schedules:
            raise ConfigError(f"{source}: schedules: no schedule {schedule!r} (have: {', '.join(schedules) or 'none'})")
        data.update(schedules[schedule])
    if path:
        folder = path.absolute().parent

        def here(value: object) -> object:
            """Relative to the recipe's folder, written out in full, so the same recipe reads the same from
            anywhere (the tests compare a trained model's recipe with the file's)."""
            if not isinstance(value, str) or value.startswith("ultralytics:"):
                return value
            return os.path.normpath(folder / value)

        for key in ("data", "checkpoint", "teacher"):
            if key in data:
                data[key] = here(data[key])
        for key in ("negatives", "extra"):
            if isinstance(data.get(key), list):
                data[key] = [here(v) for v in data[key]]
    if overrides.get("extra"):  # added to the recipe's own (earlier feedback exports), not in their place
        overrides = overrides | {"extra": [*data.get("extra", []), *overrides["extra"]]}
    data.update({key: value for key, value in overrides.items() if value is not None})
    return validate(Recipe, data, source)


@dataclass
class TrainingResult:
    weights: Path
    report: Path
    card: Path
    metrics: dict
    exports: dict[str, Path] = field(default_factory=dict)


def export(weights: Path, formats: list[str], imgsz: int = 640, int8: bool = False,
           data: Path | None = None) -> dict[str, Path]:
    """Export to each format (`onnx`, `openvino`); INT8 (OpenVINO) calibrates on `data`. Exports land beside the
    weights, so export a copy that lives in your own folder."""
    from ultralytics import YOLO

    exports = {}
    for fmt in formats:
        if fmt not in {"onnx", "openvino"}:
            raise TrainingError(f"cannot export to {fmt!r}: use onnx or openvino")
        kwargs = {"format": fmt, "imgsz": imgsz, "verbose": False}
        if int8 and fmt == "openvino":
            if data is None:
                raise TrainingError("INT8 export needs --data to calibrate on")
            kwargs.update(int8=True, data=str(data))
        exports[fmt] = Path(YOLO(str(weights)).export(**kwargs))
    return exports


def train(recipe: Recipe, out: Path) -> TrainingResult:
    from ultralytics import YOLO

    if not recipe.checkpoint.exists():
        raise TrainingError(f"checkpoint {recipe.checkpoint} does not exist")
    out = out.resolve()
    started = time.time()
    if recipe.feedback:
        feedback = fetch_feedback(recipe.feedback, recipe.classes, recipe.feedback_category, out / "feedback")
        recipe = recipe.model_copy(update={"extra": [*recipe.extra, *feedback]})
    try:
        split = citydata.build(recipe.sources(), out / "dataset")
    except citydata.DatasetError as error:
        raise TrainingError(str(error)) from None
    model = YOLO(str(recipe.checkpoint))
    model.train(data=str(split.data_yaml), epochs=recipe.epochs, imgsz=recipe.imgsz, batch=recipe.batch,
                patience=recipe.patience, freeze=recipe.freeze or None, seed=recipe.seed, deterministic=True,
                project=str(out), name="run",
                exist_ok=True, device=recipe.device, workers=0, plots=recipe.plots, amp=False, verbose=False,
                **STREET_AUGMENTATION)
    weights = out / f"{recipe.name}.pt"
    shutil.copyfile(model.trainer.best, weights)
    metrics = validate_model(weights, split, recipe, out)
    exports = export(weights, recipe.export, imgsz=recipe.imgsz, int8=recipe.int8, data=split.data_yaml)
    version = f"{time.strftime('%Y.%m.%d')}-{hashlib.sha256(weights.read_bytes()).hexdigest()[:8]}"
    identity = yaml.safe_dump({"name": recipe.name, "version": version})
    for folder in [out, *(path for path in exports.values() if path.is_dir())]:  # an export folder copied alone
        (folder / IDENTITY_FILE).write_text(identity)                         # to a node keeps its name too
    report = out / "report.json"
    report.write_text(json.dumps({
        "name": recipe.name, "version": version, "recipe": json.loads(recipe.model_dump_json()),
        "classes": split.names, "epochs_run": int(model.trainer.epoch) + 1,
        "train_images": len(split.train), "val_images": len(split.val), "augmentation": STREET_AUGMENTATION,
        "validation": metrics, "minutes": round((time.time() - started) / 60, 2),
        "curves": str(out / "run" / "results.png") if recipe.plots else None,
        "exports": {fmt: str(path) for fmt, path in exports.items()},
    }, indent=2) + "\n")
    card = out / "MODEL_CARD.md"
    card.write_text(model_card(recipe, version, split, metrics, exports, int(model.trainer.epoch) + 1))
    return TrainingResult(weights, report, card, metrics, exports)


def validate_model(weights: Path, split: citydata.Split, recipe: Recipe, out: Path) -> dict:
    """Precision, recall, mAP50 and mAP50-95 on the validation photos, overall and per class."""
    from ultralytics import YOLO

    validation = YOLO(str(weights)).val(data=str(split.data_yaml), split="val", imgsz=recipe.imgsz,
                                        device=recipe.device, plots=recipe.plots, project=str(out), name="val",
                                        exist_ok=True, verbose=False)
    box = validation.box
    per_class = {
        split.names[int(index)]: {"precision": round(float(p), 4), "recall": round(float(r), 4),
                                  "map50": round(float(m50), 4), "map50_95": round(float(m), 4)}
        for index, p, r, m50, m in zip(box.ap_class_index, box.p, box.r, box.ap50, box.ap, strict=False)
    }
    return {"precision": round(float(box.mp), 4), "recall": round(float(box.mr), 4),
            "map50": round(float(box.map50), 4), "map50_95": round(float(box.map), 4), "per_class": per_class}


def model_card(recipe: Recipe, version: str, split: citydata.Split, metrics: dict, exports: dict[str, Path],
               epochs_run: int) -> str:
    rows = "\n".join(f"| {name} | {m['precision']} | {m['recall']} | {m['map50']} | {m['map50_95']} |"
                     for name, m in metrics["per_class"].items())
    licence_file = recipe.data / "LICENSE"
    licence = licence_file.read_text().splitlines()[0] if licence_file.exists() else "see the dataset"
    taught = (f"; {', '.join(recipe.keep)} pseudo-labelled by `{recipe.teacher.name}`" if recipe.teacher and recipe.keep
              else "")
    frozen = f", the first {recipe.freeze} layers frozen" if recipe.freeze else ""
    zoomed = f" and {recipe.zoom_crops} zoomed crop(s) round its objects" if recipe.zoom_crops else ""
    scored = "\nTeacher-labelled classes are scored against the teacher's labels, not a person's." if taught else ""
    return f"""# Model card: {recipe.name} {version}

- **Date**: {time.strftime("%Y-%m-%d")}
- **Base weights**: `{recipe.checkpoint.name}` (Ultralytics YOLO, AGPL-3.0)
- **Data**: `{recipe.data.name}` — {len(split.train)} training images (labelled photos, night and blurred copies,
  {recipe.clean_crops} clean crop(s){zoomed} per photo, {len(recipe.negatives)} clean negative source(s),
  {len(recipe.extra)} extra dataset(s)) and {len(split.val)} validation photos (split by photo name);
  seed {recipe.seed};
  data licence: {licence}
- **Classes**: {", ".join(split.names.values())} (own: {", ".join(recipe.classes)}{taught})
- **Training**: {epochs_run} of up to {recipe.epochs} epochs (early stopping, patience {recipe.patience}; the best
  epoch's weights kept) at {recipe.imgsz} px{frozen}, street-camera augmentation (brightness, scale, shifts,
  mirror; night and blur copies)
- **Exports**: {", ".join(f"{fmt} (`{path.name}`)" for fmt, path in exports.items()) or "none"}

## Validation (ultralytics val on the validation photos)

| class | precision | recall | mAP50 | mAP50-95 |
|---|---|---|---|---|
| all | {metrics['precision']} | {metrics['recall']} | {metrics['map50']} | {metrics['map50_95']} |
{rows}
{scored}
Use it at the edge by listing it in a model manifest (see models/README.md) with the categories its classes serve.
"""

