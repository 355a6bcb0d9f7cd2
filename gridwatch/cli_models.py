"""`gridwatch models`: train, evaluate and export the detectors the edge runs (see models/README.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gridwatch.config_files import ConfigError


def cmd_models_train(args: argparse.Namespace) -> int:
    from gridwatch.training import TrainingError, load_recipe, train

    def split_list(text: str | None) -> list[str] | None:
        """Comma-separated items; `none` for an empty list (overriding the recipe)."""
        if text is None:
            return None
        return [] if text == "none" else [item.strip() for item in text.split(",") if item.strip()]

    overrides = {
        "name": args.name, "data": args.data, "checkpoint": args.checkpoint, "classes": split_list(args.classes),
        "teacher": args.teacher, "keep": split_list(args.keep), "negatives": split_list(args.negatives),
        "clean_crops": args.clean_crops, "zoom_crops": args.zoom_crops, "extra": args.extra or None,
        "feedback": args.feedback, "feedback_category": args.feedback_category, "epochs": args.epochs,
        "patience": args.patience, "imgsz": args.imgsz, "freeze": args.freeze, "batch": args.batch,
        "val_fraction": args.val_fraction,
        "seed": args.seed, "export": split_list(args.export), "device": args.device,
        "plots": False if args.no_plots else None, "int8": True if args.int8 else None,
    }
    try:
        result = train(load_recipe(args.recipe, overrides, args.schedule), args.out)
    except TrainingError as error:
        raise ConfigError(str(error)) from None
    m = result.metrics
    print(f"validation: precision {m['precision']}, recall {m['recall']}, mAP50 {m['map50']}, "
          f"mAP50-95 {m['map50_95']}")
    for name, figures in m["per_class"].items():
        print(f"  {name:12} precision {figures['precision']}, recall {figures['recall']}, mAP50 {figures['map50']}")
    print(f"weights {result.weights}\nreport {result.report}\nmodel card {result.card}")
    for fmt, path in result.exports.items():
        print(f"{fmt} export {path}")
    return 0


def cmd_models_export(args: argparse.Namespace) -> int:
    from gridwatch.training import TrainingError, export

    weights = Path(args.weights)
    if not weights.exists() and (weights.parent != Path() or weights.suffix != ".pt"):  # a bare yolo11n.pt is one
        raise ConfigError(f"{args.weights}: no such weights file")  # ultralytics downloads where there is internet
    if args.int8 and "openvino" not in args.format.split(","):
        raise ConfigError(f"--int8: INT8 is an OpenVINO export's (--format openvino), not {args.format}'s")
    try:
        exports = export(args.weights, args.format.split(","), imgsz=args.imgsz, int8=args.int8, data=args.data)
    except TrainingError as error:
        raise ConfigError(str(error)) from None
    for fmt, path in exports.items():
        print(f"{fmt}: {path}")
    return 0


def add_models_command(commands: argparse._SubParsersAction) -> None:
    """The `models` command and its actions, on the `gridwatch` parser's subcommands."""
    models = commands.add_parser("models", help="Train, evaluate and export detector models.",
                                 description="Make and ship the models the edge runs (see models/README.md).")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION",
                                           help="train: fine-tune and evaluate; export: convert for the edge.")
    training = model_commands.add_parser(
        "train", help="Fine-tune a YOLO checkpoint on a YOLO-format dataset and evaluate it.",
        description="Build a training set from a recipe (labelled photos, teacher pseudo-labels, clean negatives, "
                    "night and blur copies, a validation split by photo name), fine-tune the checkpoint, stop early "
                    "when validation stops improving, and write NAME.pt, report.json (precision, recall, mAP50, "
                    "mAP50-95, per class), curves, exports, identity.yaml and MODEL_CARD.md into --out.")
    training.add_argument("--recipe", type=Path,
                          help="Training recipe (YAML, e.g. models/litter.yaml); the options below override it.")
    training.add_argument("--schedule", help="A named schedule of the recipe, e.g. short (CI's quick run).")
    training.add_argument("--name", help="Model name, used for file names and reported with events (default city).")
    training.add_argument("--data", type=Path, help="Labelled dataset folder with images/ and labels/ (YOLO format).")
    training.add_argument("--from", dest="checkpoint", type=Path,
                          help="Checkpoint to start from, e.g. ../shared/models/yolo11n_coco.pt.")
    training.add_argument("--classes", help="The dataset's class names in label order, comma-separated.")
    training.add_argument("--teacher", type=Path, help="Model that pseudo-labels the --keep classes in the photos.")
    training.add_argument("--keep", help="Teacher classes to learn as extra classes, e.g. person,car,bicycle "
                                         "(none: no extra classes).")
    training.add_argument("--negatives", help="Clean street images or videos for training, comma-separated "
                                              "(ultralytics:assets/bus.jpg names a file in the ultralytics package).")
    training.add_argument("--clean-crops", type=int, help="Crops with nothing labelled per training photo (1).")
    training.add_argument("--zoom-crops", type=int, help="Crops around the labelled objects per training photo, seen "
                                                         "about twice as close (default 0).")
    training.add_argument("--extra", type=Path, action="append",
                          help="Another labelled dataset for training only, e.g. exported operator feedback, "
                               "added to the recipe's `extra` (after it: of images of one name, the last "
                               "listed wins); repeat for several.")
    training.add_argument("--feedback", metavar="SERVER_URL",
                          help="Also learn from the detections operators reviewed on this GridWatch server.")
    training.add_argument("--feedback-category", help="Only reviewed detections of this category, e.g. litter.")
    training.add_argument("--out", type=Path, required=True, help="Output folder (weights, report, model card).")
    training.add_argument("--epochs", type=int, help="Most epochs to run (default 50).")
    training.add_argument("--patience", type=int, help="Stop after this many epochs without improvement (10).")
    training.add_argument("--imgsz", type=int, help="Training image size (default 640).")
    training.add_argument("--freeze", type=int,
                          help="Layers from the input kept as the checkpoint has them (10: the whole backbone; "
                               "default 0, every layer trained).")
    training.add_argument("--batch", type=int, help="Batch size (default 16).")
    training.add_argument("--val-fraction", type=float, help="Share of labelled photos for validation (0.2).")
    training.add_argument("--seed", type=int, help="Seed of the crops, copies and training; the validation split "
                                                   "goes by photo name (default 0).")
    training.add_argument("--export", help="Formats to export after training, e.g. openvino,onnx; none to skip.")
    training.add_argument("--int8", action="store_true", help="Quantise the OpenVINO export to INT8.")
    training.add_argument("--device", help="cpu, or a CUDA device such as 0 (default cpu).")
    training.add_argument("--no-plots", action="store_true", help="Skip the curves and example plots.")
    training.set_defaults(func=cmd_models_train)
    exporting = model_commands.add_parser(
        "export", help="Export weights to ONNX or OpenVINO (INT8 with calibration).",
        description="Export WEIGHTS for the edge; the runtime is then chosen by the path given to the node. "
                    "Exports are written beside WEIGHTS.")
    exporting.add_argument("weights", type=Path, help="A .pt checkpoint.")
    exporting.add_argument("--format", default="openvino",
                           help="onnx, openvino, or both comma-separated (default openvino).")
    exporting.add_argument("--imgsz", type=int, default=640, help="Input size (default 640).")
    exporting.add_argument("--int8", action="store_true", help="INT8 quantisation (OpenVINO), calibrated on --data.")
    exporting.add_argument("--data", type=Path, help="data.yaml of images to calibrate INT8 on.")
    exporting.set_defaults(func=cmd_models_export)
