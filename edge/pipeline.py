"""One camera's pipeline: capture → detect and track (each manifest model at its own rate) → zone rules → evidence.

The live node and `gridwatch edge scan` run this same code; only where the messages go differs (`Publish`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edge.background import BackgroundModel
from edge.camera_events import Publish, publish_rule_event
from edge.capture import Frame, VideoSource, prefetch
from edge.config import CameraConfig, NodeConfig
from edge.detect import Detector, still_current
from edge.detections import Detections, covered_share
from edge.health import CameraHealth
from edge.manifest import Manifest
from edge.motion import MotionDetector
from edge.rules import RuleEvent, StationaryRule
from edge.rules.stationary import NO_PEOPLE
from edge.runners import ModelRunner, build_runners, carry_over, make_detector, require_served
from edge.zones import Zone
from gridwatch.contract import CameraTelemetry, Category, Event, EventType, ModelInfo

log = logging.getLogger(__name__)

FURNITURE_PRONE = frozenset({Category.STREET_VENDING, Category.LITTER})
"""Categories whose detector classes (umbrellas, tables, benches, bins) are also fixed street furniture."""
PEOPLE_FRESH_SECONDS = 2.0
"""People seen by another model count as context for this long (models run at different rates)."""
HEALTH_MODEL = ModelInfo(name="camera-health", version="1")


@dataclass(frozen=True)
class Reconfiguration:
    """A camera's next config with its zones and runners built (`CameraPipeline.prepare`), not yet in force."""

    camera: CameraConfig
    zones: dict[str, Zone]
    runners: list[ModelRunner]
    manifest: Manifest | None


@dataclass
class CameraStats:
    frames_detected: int = 0
    detect_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)


class CameraPipeline:
    def __init__(self, node: NodeConfig, camera: CameraConfig, runners: list[ModelRunner], source: VideoSource,
                 zones: dict[str, Zone], manifest: Manifest | None = None,
                 detector_factory: Callable[[str, list[str]], Detector | BackgroundModel] | None = None) -> None:
        self.node = node
        self.manifest = manifest
        self.detector_factory = detector_factory
        self._lock = threading.Lock()
        """Held while a frame is processed, so a remote reconfiguration lands between frames."""
        self.camera = camera
        self.runners = runners
        self.source = source
        self.zones = zones
        self.timezone = node.zoneinfo()
        self.stats = CameraStats()
        self.finished = threading.Event()
        self.error: Exception | None = None
        self._people: NDArray[np.float64] = NO_PEOPLE
        self._people_at = float("-inf")
        self.motion = MotionDetector() if camera.motion_gating else None
        self.health = CameraHealth(camera.health) if camera.health.enabled else None
        self._next_health_check = float("-inf")
        self._last_frame_wall = time.monotonic()
        self.last_image: NDArray[np.uint8] | None = None
        """The newest frame, for a snapshot on command."""
        self._publisher: Publish | None = None
        """Where this camera's events go (given to `run`, or to `process`), for those a reconfiguration ends."""
        self._last_timestamp: float | None = None
        self._stopping: threading.Event | None = None
        """The node's stop, given to `run`."""

    @classmethod
    def build(cls, node: NodeConfig, camera: CameraConfig, manifest: Manifest,
              detector_factory: Callable[[str, list[str]], Detector | BackgroundModel] = make_detector,
              source: VideoSource | None = None) -> CameraPipeline:
        zones = {zone.zone_id: Zone(zone, node.zoneinfo()) for zone in camera.zones}
        runners = build_runners(node, camera, manifest, zones, detector_factory, {})
        sample_fps = max(1.0 / runner.interval for runner in runners)
        if source is None:
            source = VideoSource(camera.source, sample_fps, realtime=camera.realtime, loop=camera.loop)
        return cls(node, camera, runners, source, zones, manifest, detector_factory)

    def check_served(self, camera: CameraConfig, manifest: Manifest | None = None) -> None:
        require_served(camera, manifest or self.manifest)

    def reconfigure(self, camera: CameraConfig, manifest: Manifest | None = None) -> None:
        """Take new zones, rules, rates, checks and models (`manifest`) without a restart; the models loaded stay
        loaded. What zones that did not change watch carries on; a changed zone is judged afresh (`adopt`)."""
        self.adopt(self.prepare(camera, manifest))

    def prepare(self, camera: CameraConfig, manifest: Manifest | None = None) -> Reconfiguration:
        """Everything a reconfiguration needs, models loaded, with nothing changed yet: a model that will not load
        (ModelError) or a rule no model serves (ConfigError) is raised here, while the camera runs on."""
        manifest = manifest or self.manifest
        zones = {zone.zone_id: Zone(zone, self.node.zoneinfo()) for zone in camera.zones}
        loaded = {(runner.spec.name, runner.spec.weights or self.node.resolved_model(), tuple(runner.spec.labels)):
                  runner.detector for runner in self.runners}
        runners = build_runners(self.node, camera, manifest, zones, self.detector_factory, loaded)
        return Reconfiguration(camera, zones, runners, manifest)

    def models_current(self) -> bool:
        """Whether every model the camera runs is as its weights are on disk (none retrained in place since)."""
        return all(still_current(runner.detector, runner.spec.weights or self.node.resolved_model())
                   for runner in self.runners)

    def adopt(self, new: Reconfiguration) -> None:
        """Switch to a prepared reconfiguration, between two frames. The rules of a model that runs on (the same
        model, loaded already) carry on in the zones that did not change (`carry_over`): their open violations and
        the objects' still time go on. In a zone changed or removed, or under a model replaced, the open violations
        end as interrupted (their cases stay open, not verified by it) and are judged afresh."""
        with self._lock:
            health_off = self.health is not None and not new.camera.health.enabled
            reason = "its zones and rules were reconfigured"
            now = self._now()
            ended = carry_over(self.runners, new.runners, now, reason)
            if health_off:
                ended += [(event, HEALTH_MODEL) for event in self.health.interrupt(now, reason)]
            self._publish_ended(ended, self._publisher, reason)
            self.camera, self.zones, self.runners, self.manifest = new.camera, new.zones, new.runners, new.manifest
            self.motion = MotionDetector() if new.camera.motion_gating else None
            if not new.camera.health.enabled:
                self.health = None  # turned off: its faults ended above
            elif self.health:
                self.health.config = new.camera.health
            else:
                self.health = CameraHealth(new.camera.health)

    def interrupt(self, reason: str, publish: Publish | None = None) -> list[Event]:
        """End every open violation and fault of this camera as interrupted (the node stops watching it)."""
        with self._lock:
            return self._interrupt(reason, publish or self._publisher, with_health=True)

    def _now(self) -> float:
        return self._last_timestamp if self._last_timestamp is not None else time.time()

    def _interrupt(self, reason: str, publish: Publish | None, with_health: bool) -> list[Event]:
        now = self._now()
        ended = [(event, runner.detector.info) for runner in self.runners for rule in runner.rules
                 for event in rule.interrupt(now, reason)]
        if with_health and self.health:
            ended += [(event, HEALTH_MODEL) for event in self.health.interrupt(now, reason)]
        return self._publish_ended(ended, publish, reason)

    def _publish_ended(self, ended: list[tuple[RuleEvent, ModelInfo]], publish: Publish | None,
                       reason: str) -> list[Event]:
        if ended and publish is None:
            log.warning("%s: %d open violation(s) ended (%s) with nowhere to publish it", self.camera.camera_id,
                        len(ended), reason)
            return []
        return [self._publish(event, None, publish, model) for event, model in ended]

    @property
    def rules(self) -> list[StationaryRule]:
        return [rule for runner in self.runners for rule in runner.rules]

    def frames(self) -> Iterator[Frame]:
        """The source's frames, decoded in a thread of their own while the detector works; they end when the node
        stops, even from a camera that is away."""
        done = threading.Event()  # this run of the camera is over: its reader stops, also while reconnecting
        return prefetch(self.source.frames(done), live=self.source.live, until=self._stopping, stop=done)

    def run(self, stop: threading.Event, publish: Publish) -> None:
        """Until `stop`, or the end of a video file. A failure (a detector error on an odd frame, memory) is
        logged and shown in telemetry, ends what the camera had open as interrupted, and a live camera starts
        again after a pause that doubles with each failure in a row (2 s … 60 s); a file's camera stops."""
        self._publisher, self._stopping = publish, stop
        failures = 0
        try:
            while not stop.is_set():
                try:
                    for frame in self.frames():
                        if stop.is_set():
                            break
                        self.process(frame, publish)
                        if failures:
                            failures, self.error = 0, None  # running again
                    break  # the video ended, or the node is stopping
                except Exception as error:  # the node keeps its other cameras
                    self.error, failures = error, failures + 1
                    log.exception("camera %s failed (%d in a row)", self.camera.camera_id, failures)
                    try:
                        self.interrupt(f"the camera failed: {type(error).__name__}", publish)
                    except Exception:  # the camera still starts again
                        log.exception("camera %s: ending its open violations failed", self.camera.camera_id)
                    if not self.source.live:
                        break
                    pause = min(60.0, 2.0 ** failures)
                    log.warning("camera %s starts again in %.0f s", self.camera.camera_id, pause)
                    stop.wait(pause)
        finally:
            # what was open is no longer watched: ended as interrupted, so no case waits for an `end` for ever
            why = ("the node is stopping" if stop.is_set() else
                   f"the camera stopped: {type(self.error).__name__}" if self.error else "the video ended")
            try:
                self.interrupt(why, publish)
            except Exception:
                log.exception("camera %s: ending its open violations failed", self.camera.camera_id)
            self.finished.set()

    def process(self, frame: Frame, publish: Publish) -> list[Event]:
        with self._lock:
            self._publisher = publish
            return self._process(frame, publish)

    def _process(self, frame: Frame, publish: Publish) -> list[Event]:
        published: list[Event] = []
        self._last_frame_wall = time.monotonic()
        if self._last_timestamp is not None and frame.timestamp < self._last_timestamp - 1.0:
            # the node's clock stepped back (NTP): what was scheduled for later would wait for as long as the step,
            # and what was open would be timed across it (an object still for the step's length longer, a violation
            # ended before it began): ended as interrupted and judged afresh, as after a gap
            step = self._last_timestamp - frame.timestamp
            log.warning("camera %s: the clock went back %.0f s; its open violations end as interrupted, and "
                        "detection and health checks go on from now", self.camera.camera_id, step)
            published += self._interrupt(f"the clock went back {step:.0f} s", publish, with_health=False)
            self._next_health_check = float("-inf")
            for runner in self.runners:
                runner.next_due = runner.last_run = float("-inf")
        elif self._last_timestamp is not None and \
                (gap := frame.timestamp - self._last_timestamp) >= self.camera.tuning.lost_seconds:
            # no frame for lost_seconds or more (the camera was away, the clock jumped ahead):
            # what it watched ends as interrupted (its cases stay open, unverified by it) and is judged afresh, so
            # neither the gap counts as dwell nor an object found after it takes over an earlier one's still time
            log.warning("camera %s: no frame for %.0f s; its open violations end as interrupted and are judged "
                        "afresh", self.camera.camera_id, gap)
            published += self._interrupt(f"no frame for {gap:.0f} s", publish, with_health=False)
        self._last_timestamp = frame.timestamp
        self.last_image = frame.image
        if self.health and frame.timestamp >= self._next_health_check:
            self._next_health_check = frame.timestamp + 1.0
            faults = self.health.observe(frame.image, frame.timestamp)
            for fault in faults:
                published.append(self._publish(fault, frame, publish, HEALTH_MODEL))
            if any(fault.type is EventType.NEW for fault in faults):
                # the picture has shown no street for fault_seconds: what the rules watched ends as interrupted
                # (its cases stay open, unverified), and is judged afresh once the picture is back
                published += self._interrupt(f"camera fault: picture {self.health.blind or 'lost'}", publish,
                                             with_health=False)
        if self.health and self.health.blind:
            return published  # black, covered, frozen or turned away: no object is gone (or still) by this picture
        due = [runner for runner in self.runners if runner.due(frame.timestamp)]
        if not due:
            return published
        moved = self.motion.moved(frame.image, frame.analysis_grey) if self.motion else True
        for runner in due:
            runner.next_due = frame.timestamp + runner.interval
            if not moved and frame.timestamp - runner.last_run < self.camera.idle_detect_seconds:
                continue  # nothing moved: still objects are looked at again every idle_detect_seconds
            runner.last_run = frame.timestamp
            detections = self._yielded(runner, self._detect(runner, frame), frame.timestamp)
            self.stats.frames_detected += 1
            if isinstance(runner.detector, BackgroundModel) and runner.detector.relearned:
                # what it reported is part of the street it learnt now: unseen from here on, not gone, so its
                # violations end as interrupted (their cases stay open) rather than as `not seen`, taken for cleared
                published += [self._publish(event, None, publish, runner.detector.info) for rule in runner.rules
                              for event in rule.interrupt(frame.timestamp, "the light changed; the street is learnt "
                                                                           "afresh")]
            people = self._people_context(runner, detections, frame.timestamp)
            arrived = self._arrived(runner, detections)
            for rule in runner.rules:
                seen = arrived if rule.category in FURNITURE_PRONE else detections
                for rule_event in rule.process(seen, frame.timestamp, people):
                    published.append(self._publish(rule_event, frame, publish, runner.detector.info))
        return published

    def _detect(self, runner: ModelRunner, frame: Frame) -> Detections:
        if isinstance(runner.detector, BackgroundModel):
            runner.detector.exclude = self._named(frame.timestamp)
            return runner.detector.update(frame.image, frame.timestamp, frame.analysis_grey)
        started = time.perf_counter()
        detections = runner.detector.track(frame.image, runner.spec.tiles)
        self.stats.detect_seconds += time.perf_counter() - started
        return detections

    def _named(self, timestamp: float) -> NDArray[np.float64]:
        """What every detector of the camera named within PEOPLE_FRESH_SECONDS (each its own latest look): the
        background model leaves it to their rules. Only the last model's boxes, as before, were the litter model's
        garbage alone whenever it ran just before: parked cars and people became unknown objects, and stalls."""
        named = [other.last_seen.boxes for other in self.runners
                 if not isinstance(other.detector, BackgroundModel) and len(other.last_seen)
                 and timestamp - other.last_run <= PEOPLE_FRESH_SECONDS]
        return np.concatenate(named) if named else NO_PEOPLE

    def _yielded(self, runner: ModelRunner, detections: Detections, timestamp: float) -> Detections:
        """`detections` minus the boxes lying mostly on a box of the classes this model yields to, seen by any model
        of the camera within PEOPLE_FRESH_SECONDS."""
        runner.last_seen = detections
        if not runner.spec.yield_to or not len(detections):
            return detections
        blocking = [seen.boxes[[label in runner.spec.yield_to for label in seen.labels]]
                    for other in self.runners if timestamp - other.last_run <= PEOPLE_FRESH_SECONDS
                    and len(seen := other.last_seen)]
        blocking = np.concatenate(blocking) if blocking else NO_PEOPLE
        if not len(blocking):
            return detections
        own_blockers = np.array([label in runner.spec.yield_to for label in detections.labels], dtype=bool)
        keep = np.array([mine or covered_share(box, blocking) <= 0.5
                         for box, mine in zip(detections.boxes, own_blockers, strict=True)], dtype=bool)
        return detections.select(keep)

    def _arrived(self, runner: ModelRunner, detections: Detections) -> Detections:
        """The detections that are not part of the street as the background model learnt it: a café's umbrellas
        and benches that were always there are furniture, not stalls or litter."""
        background = next((r.detector for r in self.runners if isinstance(r.detector, BackgroundModel)), None)
        if background is None or runner.detector is background or not len(detections):
            return detections
        # an object that already holds a violation stays what it is, also once the model has learnt the street
        # anew (the lights came on, the camera switched to night): else every open stall ended as gone. Also under
        # a new track id at its place: the tracker loses a stall now and then, and once it was learnt as street the
        # new id never reached the rule to take the violation over
        holding = set().union(*(rule.holding for rule in runner.rules))
        return detections.select(np.array([
            int(track_id) in holding or any(rule.held_at(label, box) for rule in runner.rules)
            or background.is_new(box)
            for box, track_id, label in zip(detections.boxes, detections.track_ids, detections.labels, strict=True)],
            dtype=bool))

    def _people_context(self, runner: ModelRunner, detections: Detections, timestamp: float) -> NDArray[np.float64]:
        if runner.spec.people:
            mask = np.array([label in runner.spec.people for label in detections.labels], dtype=bool)
            self._people = detections.boxes[mask] if len(detections) else NO_PEOPLE
            self._people_at = timestamp
        return self._people if timestamp - self._people_at <= PEOPLE_FRESH_SECONDS else NO_PEOPLE

    def check_offline(self, publish: Publish, now: float | None = None) -> list[Event]:
        """Called by the node's main loop: a live camera that delivers no frames for `fault_seconds` is offline."""
        with self._lock:  # the camera's thread changes its health (a reconfiguration may turn it off)
            return self._check_offline(publish, now)

    def _check_offline(self, publish: Publish, now: float | None) -> list[Event]:
        if not self.health or not self.source.live:
            return []
        wall = time.monotonic() if now is None else now
        # no frame for `fault_seconds`, however the source reports itself: a dropout of a second that the source
        # reconnects from is not a fault (its first failed read used to raise one at once)
        silent = wall - self._last_frame_wall >= self.camera.health.fault_seconds
        return [self._publish(event, None, publish, HEALTH_MODEL)
                for event in self.health.observe_offline(silent, time.time())]

    def delivering(self, now: float | None = None) -> bool:
        """Whether the camera delivers frames now: a live one whose stream is lost, or that has sent no frame for
        its health's `fault_seconds`, does not, and its last frame shows the street as it was, not as it is."""
        if not self.source.live:
            return True
        wall = time.monotonic() if now is None else now
        return bool(self.source.delivering) and wall - self._last_frame_wall < self.camera.health.fault_seconds

    def _publish(self, rule_event: RuleEvent, frame: Frame | None, publish: Publish, model: ModelInfo) -> Event:
        return publish_rule_event(rule_event, frame, publish, model, self.node, self.camera,
                                  self.zones.get(rule_event.zone_id), self.timezone)

    def telemetry(self) -> CameraTelemetry:
        elapsed = max(1e-6, time.monotonic() - self.stats.started)
        return CameraTelemetry(
            camera_id=self.camera.camera_id,
            frames_read=self.source.frames_read,
            frames_detected=self.stats.frames_detected,
            fps_in=round(self.source.frames_read / elapsed, 2),
            fps_detected=round(self.stats.frames_detected / elapsed, 2),
            active_violations=sum(rule.active_violations for rule in self.rules),
            detect_ms=round(1000 * self.stats.detect_seconds / max(1, self.stats.frames_detected), 1),
            faults=health.active_faults if (health := self.health) else [],
            reconnects=self.source.reconnects,
            source_ok=self.source.delivering and self.error is None,
            error=f"{type(self.error).__name__}: {self.error}" if self.error else None,
        )

