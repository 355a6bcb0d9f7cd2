"""An edge node: per camera, capture → detect and track → zone rules → evidence → MQTT; plus node telemetry."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

from edge.capture import is_live
from edge.commands import CommandFailed, CommandHandler
from edge.comms import NodeLink
from edge.config import CameraConfig, NodeConfig
from edge.detect import ModelRegistry
from edge.manifest import Manifest, load_manifest
from edge.outbox import ANSWER, EVENT, EVIDENCE, Outbox, OutboxError
from edge.outbox_answers import NodeOutbox
from edge.outbox_sender import OutboxSender
from edge.pipeline import CameraPipeline
from edge.remote_config import RemoteConfigurator
from edge.rules.violations import RuleEvent
from edge.runners import make_detector
from edge.streetlight import StreetlightMonitor, lamp_event, make_adapter
from edge.system_stats import SystemStats
from gridwatch.config_files import ConfigError
from gridwatch.contract import (
    SCHEMA_VERSION,
    Category,
    ConfigStatus,
    Event,
    EventType,
    NodeTelemetry,
    TopicKind,
    event_topic,
    parse_node_topic,
    telemetry_topic,
)

log = logging.getLogger(__name__)


SNAPSHOT_WAIT_SECONDS = 10.0
"""How long a snapshot asked for waits for the broker connection to be ready before it is refused."""
STOP_GRACE_SECONDS = 10.0
"""How long a stopping node waits for its cameras and streetlights to finish what they are doing."""


def end_what_was_left_open(outbox: Outbox, now: datetime | None = None, unstored: Counter[str] | None = None) -> int:
    """Each violation the node was watching when it last stopped without ending it (killed, its power lost) gets
    its `end`, as interrupted (the node stopped watching; nothing saw the object go), behind what the outbox holds:
    its case no longer waits for an `end` that would never come. Returns how many. An outbox that fails (its disk
    full or failing, a page damaged since the start's check: the next start salvages it) does not stop the node:
    an `end` it cannot store is counted in `unstored` (the node's telemetry) and logged, and what it watched, if
    that cannot be read, is logged."""
    now = now or datetime.now().astimezone()
    try:
        left_open = outbox.left_open()
    except sqlite3.Error as error:
        log.error("outbox: what the node watched when it last stopped cannot be read (%s); none of it is ended",
                  error)
        return 0
    ended = 0
    for topic, payload in left_open:
        try:
            last = Event.model_validate_json(payload)
        except ValueError:  # not an event of ours: nothing to end
            continue
        end = last.model_copy(update={"event_id": uuid.uuid4(), "type": EventType.END, "interrupted": True,
                                      "observed_at": max(now, last.observed_at), "evidence": None})
        try:
            outbox.put(topic, end.wire(), EVENT)
        except (sqlite3.Error, OSError) as error:
            if unstored is not None:
                unstored["unstored_event"] += 1
            log.error("outbox could not store the interrupted end of violation %s (%s: %s); it is lost",
                      last.violation_id, type(error).__name__, error)
            continue
        ended += 1
    return ended


class EdgeNode:
    def __init__(self, config: NodeConfig, link: NodeLink, pipelines: list[CameraPipeline], outbox: Outbox,
                 lamps: list[StreetlightMonitor] | None = None) -> None:
        self.config = config
        self.link = link
        self.pipelines = pipelines
        self.lamps = lamps or []
        self.outbox = outbox
        self.sender = OutboxSender(outbox, link, qos=config.mqtt.qos)
        self.system = SystemStats()
        self.configurator: RemoteConfigurator | None = None
        self.started = time.monotonic()
        self.unstored: Counter[str] = Counter()
        """Messages the outbox could not store, by kind (in memory: its disk is what failed)."""

    @classmethod
    def build(cls, config: NodeConfig, config_path: Path | None = None,
              overrides: Callable[[NodeConfig], NodeConfig] | None = None) -> EdgeNode:
        """The node of `config`; `config_path` is the file it came from, which the `reload` command reads again,
        with `overrides` (what the command line changed of it) laid over it."""
        try:  # the outbox, the session number and the last good remote config live here
            (config.state_dir / config.node_id).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"state_dir {config.state_dir}: cannot make the node's folder in it "
                              f"({error.strerror or error})") from None
        manifest = load_manifest(config.manifest)
        log.info("node %s: model %s, manifest %s, %d camera(s)", config.node_id, config.resolved_model(),
                 config.manifest, len(config.cameras))
        registry = ModelRegistry(config.batch_window_ms / 1000)
        factory = partial(make_detector, registry=registry)
        for index, camera in enumerate(config.cameras):  # before any model loads, which takes seconds
            if not is_live(camera.source) and not Path(camera.source).exists():
                raise ConfigError(f"cameras.{index}.source ({camera.camera_id}): video source {camera.source!r} "
                                  f"does not exist")
        pipelines = [CameraPipeline.build(config, camera, manifest, detector_factory=factory)
                     for camera in config.cameras]
        lamps = [StreetlightMonitor(light, make_adapter(light)) for light in config.streetlights]
        link = NodeLink(config.node_id, config.mqtt, config.state_dir)
        try:
            outbox = NodeOutbox(config.state_dir / config.node_id / "outbox.db",
                                int(config.outbox_max_mb * 1024 * 1024))
        except OutboxError as error:
            raise ConfigError(str(error)) from None
        try:
            if depth := outbox.depth:
                log.info("outbox holds %d message(s) from before; they go first", depth)
        except sqlite3.Error as error:  # damaged since the start's check: the next start salvages it
            log.error("outbox %s cannot be read (%s)", outbox.path, error)
        configurator = RemoteConfigurator(config.node_id, {p.camera.camera_id: p for p in pipelines},
                                          config.state_dir / config.node_id / "remote-config.json")
        restored = configurator.restore()
        if restored is not None:
            log.info("last good remote config %s: %s", restored.config_version, restored.state.value)
        link.config_handler = configurator.apply
        node = cls(config, link, pipelines, outbox, lamps)
        node.configurator = configurator
        if ended := end_what_was_left_open(outbox, unstored=node.unstored):
            log.warning("%d violation(s) were still being watched when the node last stopped without ending them "
                        "(killed, its power lost): ended as interrupted, after what the outbox holds", ended)
        link.command_handler = CommandHandler(config, {p.camera.camera_id: p for p in pipelines},
                                              node.publish_snapshot, config_path,
                                              reload_cameras=node.reload_cameras, overrides=overrides).handle
        link.publish_answer = node.publish  # through the outbox, like events: kept on disk until the broker has it
        link.answered = outbox.answered  # a command delivered again is answered again, not carried out again
        return node

    def publish_snapshot(self, topic: str, jpeg: bytes, wait: float = SNAPSHOT_WAIT_SECONDS) -> None:
        """Retained, straight to the broker (not through the outbox): its answer must not say it was published when
        the node, away from the broker, would lose it at its next stop. A command kept for the node while it was
        away comes right after it connects, before it has subscribed to everything (when `connected` is set): it
        waits `wait` seconds for that."""
        if not self.link.connected.wait(wait):
            raise CommandFailed("not connected to the broker: no snapshot can be published now")
        self.link.publish(topic, jpeg, retain=True)

    def publish(self, topic: str, payload: bytes) -> bool:
        """Events, evidence and command answers are on disk before anything is sent; the sender publishes them in
        order (answers first). One the outbox cannot store (its disk full or failing) is counted as `unstored_KIND`
        in telemetry and logged, and the camera goes on. Whether it is stored (the outbox's policy may drop it,
        counted): a command is acknowledged only once its answer is."""
        kind = {TopicKind.EVIDENCE: EVIDENCE, TopicKind.COMMAND: ANSWER}.get(parse_node_topic(topic).kind, EVENT)
        try:
            return self.outbox.put(topic, payload, kind) is not None
        except (sqlite3.Error, OSError) as error:
            self.unstored[f"unstored_{kind}"] += 1
            log.error("outbox could not store %s %s (%s: %s); it is lost", kind, topic, type(error).__name__, error)
            return False

    def publish_telemetry(self) -> None:
        telemetry = NodeTelemetry(
            schema_version=SCHEMA_VERSION,
            node_id=self.config.node_id,
            at=datetime.now().astimezone(),
            session=self.link.session,
            uptime_seconds=round(time.monotonic() - self.started, 1),
            events_published=self.sender.delivered[EVENT],  # the broker took them: not telemetry, not replies
            publish_pending=self.link.pending,
            **self._outbox_figures(),
            cpu_percent=self.system.cpu_percent(),
            memory_mb=self.system.memory_mb(),
            temperature_c=self.system.temperature_c(),
            models=list({runner.detector.info.name: runner.detector.info
                         for pipeline in self.pipelines for runner in pipeline.runners}.values()),
            config_version=self.configurator.current_version if self.configurator else None,
            cameras=[pipeline.telemetry() for pipeline in self.pipelines],
            lamps=[lamp.telemetry() for lamp in self.lamps],
        )
        self.link.publish(telemetry_topic(self.config.node_id), telemetry.model_dump_json().encode(), qos=0)

    def reload_cameras(self, cameras: dict[str, CameraConfig], own_manifest: Manifest) -> ConfigStatus | None:
        """A `reload`: the reloaded file's cameras with the remote config in force over them, its answer published."""
        status = self.configurator.reload(cameras, own_manifest)
        if status is not None:
            self.link.answer_config(status)
        return status

    def _outbox_figures(self) -> dict:
        """Depth, size and what it let go; an outbox that cannot be read (its disk) still reports what it lost."""
        try:
            depth, counted = self.outbox.depth, self.outbox.counters()
        except sqlite3.Error as error:
            log.error("outbox unreadable: %s: %s", type(error).__name__, error)
            depth, counted = 0, {}
        return {"outbox_depth": depth, "outbox_bytes": self.outbox.size_bytes,
                "dropped": counted | dict(self.unstored)}

    def run_streetlights(self, stop: threading.Event) -> None:
        """Read each lamp every `poll_seconds` and publish the faults that begin or end (through the outbox)."""
        due = {lamp.config.lamp_id: 0.0 for lamp in self.lamps}
        while not stop.is_set():
            for lamp in self.lamps:
                if stop.is_set():
                    break  # each unreachable lamp may take its timeout: stop between lamps
                if time.monotonic() < due[lamp.config.lamp_id]:
                    continue
                due[lamp.config.lamp_id] = time.monotonic() + lamp.config.poll_seconds
                try:
                    self._poll_lamp(lamp)
                except Exception:  # a bug in one lamp's reading must not stop the others, nor the next poll
                    log.exception("lamp %s: poll failed", lamp.config.lamp_id)
            stop.wait(0.1)
        for lamp in self.lamps:  # no longer watched: the faults raised end as interrupted, their cases stay open
            self._publish_lamp(lamp, lamp.faults.interrupt(time.time(), "the node is stopping"))

    def _poll_lamp(self, lamp: StreetlightMonitor) -> None:
        self._publish_lamp(lamp, lamp.poll(time.time()))

    def _publish_lamp(self, lamp: StreetlightMonitor, events: list[RuleEvent]) -> None:
        for rule_event in events:
            event = lamp_event(rule_event, self.config.node_id, self.config.event_codes[Category.STREETLIGHT_FAULT],
                               lamp.config, self.config.zoneinfo())
            log.info("%s streetlight_fault %s %s (%s)", lamp.config.lamp_id, event.type.value, event.label,
                     rule_event.reason)
            self.publish(event_topic(self.config.node_id, event.category), event.wire())

    def run(self, stop: threading.Event) -> int:
        """Run until `stop` is set or every camera's source has ended; returns a process exit code."""
        self.link.start()
        sender_stop = threading.Event()
        sender = threading.Thread(target=self.sender.run, args=(sender_stop,), name="outbox", daemon=True)
        sender.start()
        threads = [
            threading.Thread(target=p.run, args=(stop, self.publish), name=f"camera-{p.camera.camera_id}", daemon=True)
            for p in self.pipelines
        ]
        for thread in threads:
            thread.start()
        if self.lamps:
            threads.append(threading.Thread(target=self.run_streetlights, args=(stop,), name="streetlights",
                                            daemon=True))
            threads[-1].start()
        next_telemetry = time.monotonic()
        try:
            # a node with cameras stops when all their sources have ended; a streetlight node runs until stopped
            while not stop.is_set() and (self.lamps or not all(p.finished.is_set() for p in self.pipelines)):
                try:  # a bug here must not stop the node: its cameras go on
                    for pipeline in self.pipelines:
                        pipeline.check_offline(self.publish)
                    if time.monotonic() >= next_telemetry:
                        next_telemetry = time.monotonic() + self.config.telemetry_seconds
                        self.publish_telemetry()
                except Exception:
                    log.exception("node health check or telemetry failed")
                stop.wait(0.2)
        finally:
            stop.set()
            self.link.take_no_more_commands()  # the broker keeps them for the next start
            grace = time.monotonic() + STOP_GRACE_SECONDS  # one grace for them all: a hung camera and a slow one
            for thread in threads:  # must not take the service manager's stop timeout between them
                thread.join(timeout=max(0.0, grace - time.monotonic()))
            # a command being carried out answers into the outbox before it closes, and is acknowledged
            busy = self.link.finish_commands(max(0.0, grace - time.monotonic()))
            if busy := busy + [thread.name for thread in threads if thread.is_alive()]:
                # a camera still in its frame (a slow model) ends its violations as interrupted when it stops: the
                # outbox stays open for them, and what they write goes out at the next start
                log.warning("%s still busy after %.0f s; the outbox stays open for what they write", ", ".join(busy),
                            STOP_GRACE_SECONDS)
            deadline = time.monotonic() + 10
            while self._outbox_figures()["outbox_depth"] and self.link.connected.is_set() and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            sender_stop.set()
            sender.join(timeout=5)
            if self.link.connected.is_set():
                try:
                    self.publish_telemetry()
                except Exception:  # the node still says goodbye and closes its outbox
                    log.exception("the last telemetry report failed")
            self.link.stop_gracefully()
            if depth := self._outbox_figures()["outbox_depth"]:
                log.warning("%d message(s) not yet acknowledged stay in %s and go out at the next start",
                            depth, self.outbox.path)
            if not busy:
                self.outbox.close()
        return 1 if any(p.error for p in self.pipelines) else 0

