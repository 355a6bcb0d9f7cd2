"""The node's link to the broker: birth and last will carrying a session number that grows with every connection."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from edge.commands import request_id_of
from edge.config import MqttConfig
from gridwatch.contract import (
    SCHEMA_VERSION,
    SESSION_MAX,
    CommandResponse,
    ConfigState,
    ConfigStatus,
    NodeState,
    NodeStatus,
    command_response_topic,
    command_topic,
    config_status_topic,
    config_topic,
    status_topic,
)
from gridwatch.durable import replace_durably
from gridwatch.mqtt import MqttClient, Will

log = logging.getLogger(__name__)

SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
"""Keep the broker session a week, so config and commands sent while the node was away still arrive."""


class SessionCounter:
    """A number kept on disk that only grows, across reconnects and restarts (device clocks may jump back). Each
    is at least the time in seconds, so a node whose file was lost (a device replaced, a card reflashed, the file
    emptied by a power cut) still starts above every session it had before, its clock being right: the server
    takes a status with a lower session than it has seen for a stale last will."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.value = int(path.read_text().strip())
        except (OSError, ValueError):
            self.value = 0

    def next(self) -> int:
        now = int(self.clock())
        if now > SESSION_MAX:  # a clock past January 2038 (a real-time clock's garbage, say) is not taken
            log.warning("the clock reads %d s since 1970, past what a session number holds; not taken", now)
            now = 0
        self.value = max(self.value + 1, now)
        if self.value > SESSION_MAX:  # a number a bad clock once left on disk: the server never took it
            log.warning("session number %d on disk is past what the contract holds; starting again from the clock",
                        self.value)
            self.value = max(1, now)
        try:
            replace_durably(self.path, str(self.value).encode())
        except OSError as error:  # a full or broken disk: the node still starts; the time keeps the next ones up
            log.warning("session number %d not saved (%s); going on", self.value, error)
        return self.value


def config_version_of(payload: bytes) -> str:
    """The version a config names, for answering one that failed; "unknown" where it names none."""
    try:
        version = json.loads(payload).get("config_version")
    except (ValueError, AttributeError):
        return "unknown"
    return version if isinstance(version, str) and version else "unknown"


class NodeLink(MqttClient):
    def __init__(self, node_id: str, config: MqttConfig, state_dir: Path) -> None:
        super().__init__(
            client_id=node_id,
            host=config.host,
            port=config.port,
            username=config.username or node_id,
            password=config.resolved_password(),
            keepalive=config.keepalive,
            session_expiry_seconds=SESSION_EXPIRY_SECONDS,
            manual_ack=True,  # a command is acknowledged once its answer is kept (`_answer`); the rest on arrival
            tls_ca_file=config.tls_ca_file,
        )
        self.node_id = node_id
        self.config_handler: Callable[[bytes], ConfigStatus] | None = None
        """Validates and applies a remote config, answering applied or refused (set by the node)."""
        self._sessions = SessionCounter(state_dir / node_id / "session")
        self.session = self._sessions.next()
        self.set_will(Will(status_topic(node_id), self._status(NodeState.OFFLINE, with_time=False)))
        self.subscribe(status_topic(node_id), self._on_own_status)
        self._configs: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._apply_configs, name="remote-config", daemon=True).start()
        self.subscribe(config_topic(node_id), self._on_config)
        self.command_handler: Callable[[bytes], CommandResponse] | None = None
        """Carries out a command and answers it (set by the node)."""
        self.publish_answer: Callable[[str, bytes], bool] | None = None
        """Where command answers go, saying whether the answer is kept (set by the node: its outbox, so an answer
        made while the broker is away is sent once it is back, also after a restart); by default straight to the
        broker."""
        self.answered: Callable[[str], bytes | None] | None = None
        """The answer kept for a request id, if any (set by the node: its outbox keeps its last answers), so a
        command delivered again is answered again, not carried out again."""
        self._commands: set[threading.Thread] = set()
        self._in_hand: dict[str, list[mqtt.MQTTMessage]] = {}
        """Request id -> the deliveries of the command being carried out (the broker sends an unacknowledged one
        again after a reconnection): all acknowledged once its answer is kept."""
        self._taking_commands = True
        self._commands_lock = threading.Lock()
        self.subscribe(command_topic(node_id), self._on_command)

    def _status(self, state: NodeState, with_time: bool = True) -> bytes:
        status = NodeStatus(node_id=self.node_id, state=state, session=self.session,
                            at=datetime.now(UTC) if with_time else None)
        return status.model_dump_json(exclude_none=True).encode()

    def on_connected(self) -> None:
        self.publish(status_topic(self.node_id), self._status(NodeState.ONLINE), retain=True)

    def on_disconnected(self) -> None:
        # The next connection is a new session: its will must carry the new number before paho reconnects.
        self.session = self._sessions.next()
        self.set_will(Will(status_topic(self.node_id), self._status(NodeState.OFFLINE, with_time=False)))

    def _on_own_status(self, message: mqtt.MQTTMessage) -> None:
        self.ack(message)
        try:
            status = NodeStatus.model_validate_json(message.payload)
        except ValidationError:
            return
        # Only an older connection's will can arrive while we are connected; our own offline means we are stopping.
        if status.state is NodeState.OFFLINE and status.session < self.session and self.connected.is_set():
            log.warning("late last will of session %d overwrote our status; re-asserting online", status.session)
            self.on_connected()

    def _on_config(self, message: mqtt.MQTTMessage) -> None:
        self.ack(message)  # retained: a node that dies before applying it gets it again when it subscribes
        if not message.payload:
            return  # the retained config was cleared: keep the one in force
        if self.config_handler is None:
            log.warning("remote configuration received but this node does not apply it")
            return
        # Applied in a thread of its own, one config after another: loading a new model takes seconds, and paho's
        # loop must go on meanwhile (keep-alives, events).
        self._configs.put(message.payload)

    def _apply_configs(self) -> None:
        while True:
            payload = self._configs.get()
            try:
                status = self.config_handler(payload)
            except Exception as error:  # a bug must not leave the config unanswered, nor stop the next one
                log.exception("applying a remote config failed")
                status = ConfigStatus(node_id=self.node_id, config_version=config_version_of(payload),
                                      state=ConfigState.REFUSED, reason=f"internal error: {error}",
                                      at=datetime.now(UTC))
            try:
                self.answer_config(status)
            except Exception:  # the answer is lost, not the next config
                log.exception("answering remote config %s failed", status.config_version)

    def answer_config(self, status: ConfigStatus) -> None:
        """The node's answer to a remote config, retained on `config/status` (the server and consoles read it)."""
        self.publish(config_status_topic(self.node_id), status.model_dump_json().encode(), retain=True)

    def _on_command(self, message: mqtt.MQTTMessage) -> None:
        if self.command_handler is None:
            log.warning("command received but this node does not take commands")
            self.ack(message)
            return
        request_id = request_id_of(message.payload)
        with self._commands_lock:
            if not self._taking_commands:  # the broker keeps it, unacknowledged, for the node's next session
                log.info("command %s arrived while the node stops: left for its next start", request_id)
                return
            if request_id != "unknown" and request_id in self._in_hand:  # delivered again while carried out
                self._in_hand[request_id].append(message)
                return
            deliveries = self._in_hand.setdefault(request_id, []) if request_id != "unknown" else []
            deliveries.append(message)
            # Carried out in a thread of its own: a camera restart waits for the camera, and paho's loop must not.
            thread = threading.Thread(target=self._answer, args=(message.payload, deliveries), name="command",
                                      daemon=True)
            self._commands = {running for running in self._commands if running.is_alive()} | {thread}
        thread.start()

    def take_no_more_commands(self) -> None:
        """A stopping node's: those that arrive from now on are left unacknowledged, and the broker delivers them at
        the node's next start (its session is kept), rather than carried out with its cameras stopped."""
        with self._commands_lock:
            self._taking_commands = False

    def finish_commands(self, timeout: float) -> list[str]:
        """Take no more commands (`take_no_more_commands`) and wait up to `timeout` seconds for those being carried
        out, so that their answers are in the outbox before it closes and the commands acknowledged; returns the
        names of those still running."""
        self.take_no_more_commands()
        deadline = time.monotonic() + timeout
        with self._commands_lock:
            running = list(self._commands)
        for thread in running:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return [thread.name for thread in running if thread.is_alive()]

    def _answer(self, payload: bytes, deliveries: list[mqtt.MQTTMessage]) -> None:
        """Carries out the command, or takes the answer kept for its request id (a command delivered again, after
        its answer was kept but before the broker had its acknowledgement: a reconnection, a restart, a broker that
        crashed before saving it), and acknowledges it once the answer is kept: one the node is killed (or cut from
        its power) in the middle of is delivered again at its next start, and carried out then."""
        request_id = request_id_of(payload)
        answer = self._kept_answer(request_id)
        if answer is not None:
            log.info("command %s delivered again: answered again as before, not carried out again", request_id)
        else:
            answer = self._carry_out(payload).model_dump_json().encode()
        topic = command_response_topic(self.node_id)
        try:
            if self.publish_answer is not None:
                kept = self.publish_answer(topic, answer)
            else:
                self.publish(topic, answer)  # straight to the broker: paho holds it
                kept = True
        except Exception:  # the command is left for the broker to deliver again, not held here for ever
            log.exception("command %s: its answer could not be published", request_id)
            kept = False
        with self._commands_lock:
            if request_id != "unknown":
                deliveries = self._in_hand.pop(request_id, deliveries)
        if not kept:
            log.error("command %s: its answer was not kept; the command stays unacknowledged, for the broker to "
                      "deliver again when the node next connects", request_id)
            return
        for message in {message.mid: message for message in deliveries}.values():  # a redelivery keeps its id
            self.ack(message)

    def _kept_answer(self, request_id: str) -> bytes | None:
        if self.answered is None or request_id == "unknown":
            return None
        try:
            return self.answered(request_id)
        except Exception:  # an outbox that cannot be read (a damaged page): carried out as a new command
            log.exception("the answers kept cannot be read; command %s is carried out", request_id)
            return None

    def _carry_out(self, payload: bytes) -> CommandResponse:
        try:
            response = self.command_handler(payload)
        except Exception as error:  # a bug must not swallow the command: it is answered, and logged
            log.exception("command failed")
            response = CommandResponse(schema_version=SCHEMA_VERSION, node_id=self.node_id,
                                       request_id=request_id_of(payload),
                                       action="unknown", ok=False, detail=f"internal error: {error}",
                                       at=datetime.now(UTC))
        log.info("command %s (%s): %s", response.request_id, response.action, response.detail)
        return response

    def stop_gracefully(self, flush_seconds: float = 10.0) -> bool:
        flushed = self.flush(flush_seconds)
        self.stop(final=(status_topic(self.node_id), self._status(NodeState.OFFLINE)))
        return flushed
