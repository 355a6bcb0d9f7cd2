"""Model manifests: which models a node runs, at what rate, and which of their classes serve which category."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridwatch.config_files import ConfigError, load_yaml_model
from gridwatch.contract import Category

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "models" / "coco.yaml"
BACKGROUND_WEIGHTS = "background"


class ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name, used in logs and telemetry.")
    weights: str | None = Field(
        default=None,
        description="Weights or export folder; null means the node's model setting; `background` is the built-in "
                    "background model (what appeared and stayed, as `unknown object`).",
    )
    detect_fps: float = Field(default=5.0, gt=0, description="How often this model runs on each camera.")
    people: list[str] = Field(default_factory=list, description="Classes that are people (for stalls and litter).")
    yield_to: list[str] = Field(
        default_factory=list,
        description="Drop this model's boxes that lie mostly on a box of these classes which a model the camera "
                    "runs saw in the last seconds (e.g. `garbage` on a person or a car: the COCO model knows better).")
    min_score: float | None = Field(
        default=None, ge=0, le=1,
        description="The median score this model's objects need to count, instead of the camera's "
                    "`tuning.min_score` (e.g. higher for a litter model, so that street clutter it half believes is "
                    "garbage raises nothing; `make bench-litter` shows what each score buys and costs).")
    tiles: int = Field(
        default=1, ge=1, le=4,
        description="Also run the model on a `tiles` × `tiles` grid of overlapping parts of the frame and merge the "
                    "boxes (2: five model calls a look instead of one), so that small objects far from the camera "
                    "reach the model at the size it learned; for a slow model of small things, such as litter.")
    categories: dict[Category, list[str]] = Field(
        default_factory=dict, description="Classes of this model that count for each category."
    )

    @model_validator(mode="after")
    def _tiles_need_a_detector(self) -> ManifestModel:
        if self.weights == BACKGROUND_WEIGHTS and self.tiles != 1:
            raise ValueError("tiles: the background model looks at the whole frame; tiles are for a detector")
        return self

    @field_validator("categories")
    @classmethod
    def _served_by_a_rule(cls, categories: dict[Category, list[str]]) -> dict[Category, list[str]]:
        from edge.rules import RULES  # (the rules' module reads the node config, which reads this one)

        if unserved := sorted(category.value for category in categories if category not in RULES):
            raise ValueError(f"{', '.join(unserved)}: no zone rule judges this category from a model's boxes "
                             f"(those that do: {', '.join(sorted(category.value for category in RULES))})")
        return categories

    @property
    def labels(self) -> list[str]:
        """Every class this model needs to detect."""
        return sorted({label for labels in self.categories.values() for label in labels} | set(self.people))


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ManifestModel] = Field(
        min_length=1, description="Models run on every camera of the node; several may serve one category."
    )


def load_manifest(path: Path = DEFAULT_MANIFEST) -> Manifest:
    """The manifest, with weights given as relative paths (`litter/litter_openvino_model`, `stall.onnx`) taken from
    its folder; such a path with a folder in it that does not exist is an error naming the model, not a download
    attempt, and a bare name not beside the manifest (`yolo11n.pt`) is one ultralytics may download."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such manifest file (the node config's `manifest:`, from its folder)")
    manifest = load_yaml_model(path, Manifest)
    for index, spec in enumerate(manifest.models):
        if spec.weights in (None, BACKGROUND_WEIGHTS):
            continue  # the node's setting, or the built-in model
        weights = Path(spec.weights)
        weights = weights if weights.is_absolute() else path.parent / weights
        if "/" not in spec.weights and not weights.exists():
            continue  # a name ultralytics may download
        if not weights.exists():
            raise ConfigError(f"{path}: models.{index}.weights: {weights} does not exist (model {spec.name!r}; "
                              f"models/README.md says how to train or fetch it)")
        spec.weights = str(weights)
    return manifest
