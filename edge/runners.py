"""One manifest model on one camera: the detector it runs (shared by the node's cameras, its tracker each camera's
own) and the rules its classes serve, at the model's own rate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edge.background import BackgroundModel
from edge.config import CameraConfig, NodeConfig
from edge.detect import Detector, ModelRegistry, still_current
from edge.detections import Detections
from edge.manifest import BACKGROUND_WEIGHTS, Manifest, ManifestModel
from edge.rules import RULES, RuleEvent, StationaryRule, build_rules
from edge.zones import Zone
from gridwatch.config_files import ConfigError
from gridwatch.contract import ModelInfo


def make_detector(weights: str, labels: list[str], registry: ModelRegistry | None = None) -> Detector | BackgroundModel:
    """The manifest's `weights: background` selects the background model; anything else is a YOLO model, shared
    through `registry` by every camera of a node (each keeping its own tracker)."""
    if weights == BACKGROUND_WEIGHTS:
        return BackgroundModel()
    return registry.detector(weights, labels) if registry else Detector(weights, labels)


@dataclass
class ModelRunner:
    """One manifest model on one camera: its detector (with the tracker's memory of this view) and its rules."""

    spec: ManifestModel
    detector: Detector | BackgroundModel
    rules: list[StationaryRule]
    interval: float
    next_due: float = float("-inf")
    last_run: float = float("-inf")
    last_seen: Detections = field(default_factory=Detections)
    """What the detector saw at `last_run`, for the models that yield to its classes."""

    def due(self, timestamp: float) -> bool:
        return timestamp + 1e-6 >= self.next_due


def unserved_zones(camera: CameraConfig, manifest: Manifest) -> list[str]:
    """Zones whose rule no model in the manifest serves (`vending_allowed` areas need none)."""
    served = {RULES[category].zone_rule for spec in manifest.models for category in spec.categories}
    return [f"{zone.zone_id} ({zone.rule})" for zone in camera.zones
            if zone.rule != "vending_allowed" and zone.rule not in served]


def require_served(camera: CameraConfig, manifest: Manifest, where: str = "") -> None:
    if unserved := unserved_zones(camera, manifest):
        raise ConfigError(f"{where}no model in the manifest serves zones {', '.join(unserved)}")


def build_runners(node: NodeConfig, camera: CameraConfig, manifest: Manifest, zones: dict[str, Zone],
                  detector_factory: Callable, loaded: dict[tuple, Detector | BackgroundModel]) -> list[ModelRunner]:
    """One runner per manifest model some zone of `camera` needs; detectors in `loaded` (by model name, weights and
    classes) are reused."""
    require_served(camera, manifest, where=f"camera {camera.camera_id}: ")
    runners = []
    for spec in manifest.models:
        tuning = camera.tuning if spec.min_score is None else \
            camera.tuning.model_copy(update={"min_score": spec.min_score})
        rules = build_rules(list(zones.values()), tuning, spec.categories)
        if not rules:
            continue  # no zone on this camera needs this model
        rate = min(spec.detect_fps, camera.detect_fps or spec.detect_fps)
        weights = spec.weights or node.resolved_model()
        detector = loaded.get((spec.name, weights, tuple(spec.labels)))  # another class list: built anew
        if detector is None or not still_current(detector, weights):
            detector = detector_factory(weights, spec.labels)
        runners.append(ModelRunner(spec, detector, rules, 1.0 / rate))
    if not runners:
        rules = sorted({zone.config.rule for zone in zones.values()})
        raise ConfigError(f"camera {camera.camera_id}: no model in the manifest serves its zone rules {rules}")
    return runners


JUDGING = ("people", "yield_to", "min_score", "tiles")
"""What of a manifest model, besides its classes for a category, its rules judge by."""


def _runs_on(old: ModelRunner, new: ModelRunner) -> bool:
    """Whether `new` is `old`'s model running on: the same detector, or the same weights loaded anew for another
    class list (a roll-out taking the litter classes from COCO), judging alike; its rate and categories may change."""
    same_model = old.detector is new.detector or (old.spec.name == new.spec.name
                                                  and type(old.detector) is type(new.detector)
                                                  and old.detector.info == new.detector.info)
    return same_model and all(getattr(old.spec, key) == getattr(new.spec, key) for key in JUDGING)


def carry_over(old_runners: list[ModelRunner], new_runners: list[ModelRunner], now: float,
               reason: str) -> list[tuple[RuleEvent, ModelInfo]]:
    """A camera's reconfiguration: the rules of a model that runs on (`_runs_on`) take over from their old selves
    (`StationaryRule.take_over`, per category: one whose classes changed starts afresh), and the model's cadence
    carries on; what the others watched ends as interrupted. Returns the ends, each with the model that saw it."""
    ended: list[tuple[RuleEvent, ModelInfo]] = []
    taken: set[int] = set()
    for runner in new_runners:
        old = next((old for old in old_runners if _runs_on(old, runner)), None)
        if old is None:
            continue
        runner.next_due, runner.last_run, runner.last_seen = old.next_due, old.last_run, old.last_seen
        for rule in runner.rules:
            if (previous := next((r for r in old.rules if r.category is rule.category), None)) is not None:
                ended += [(event, old.detector.info) for event in rule.take_over(
                    previous, now, reason, new_tracker=old.detector is not runner.detector)]
                taken.add(id(previous))
    return ended + [(event, runner.detector.info) for runner in old_runners for rule in runner.rules
                    if id(rule) not in taken for event in rule.interrupt(now, reason)]
