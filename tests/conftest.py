"""Fixtures shared by the suite: a real Mosquitto from broker_config/ on a free port, MQTT clients, the model."""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import outbox_disk
from gridwatch.broker import Broker, Credentials, generate_users
from tests.factories import wait_until

REPO = Path(__file__).resolve().parents[1]
SHARED_MODEL = REPO.parent / "shared" / "models" / "yolo11n_int8_openvino_model"


@pytest.fixture(autouse=True)
def small_ballast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each outbox's ballast at 64 KB: the suite opens some hundred outboxes, and 4 MB of disk taken by each would
    come to GBs across the runs pytest keeps in /tmp. The full-card tests, in processes of their own, lay full ones."""
    monkeypatch.setattr(outbox_disk, "BALLAST_BYTES", 64 * 1024)


@dataclass
class RunningBroker:
    broker: Broker
    credentials: Credentials
    dir: Path

    @property
    def port(self) -> int:
        return self.broker.port


@pytest.fixture
def running_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    users = tmp_path / "broker"
    credentials = generate_users(users, ["node-a", "node-b"], ["integrator"], bridges=["bridge"])
    with Broker(users / "data", users / "passwd") as broker:
        yield RunningBroker(broker, credentials, users)


class Subscriber:
    """A real MQTT v5 client that records what it receives and how the broker answered."""

    def __init__(self, port: int, username: str | None, password: str | None, client_id: str,
                 session_expiry: int = 0) -> None:
        """`session_expiry` > 0: a persistent session that the client resumes by itself after a broker restart
        (clean start only the first time), so nothing sent meanwhile is missed."""
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connect_result: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.pubacks: dict[int, object] = {}
        self._puback_event = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connect_result.put(rc)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.subacks.put(codes)
        self.client.on_publish = self._on_publish
        properties = None
        if session_expiry:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = session_expiry
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", port, properties=properties, clean_start=not session_expiry)
        self.client.loop_start()
        self.reason = self.connect_result.get(timeout=10)

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties) -> None:
        with self._puback_event:
            self.pubacks[mid] = reason_code
            self._puback_event.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> list:
        self.client.subscribe(topic, qos=qos)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False):
        """Publish with QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._puback_event:
            self._puback_event.wait_for(lambda: info.mid in self.pubacks, timeout=10)
        return self.pubacks[info.mid]

    def collect(self, seconds: float) -> list[mqtt.MQTTMessage]:
        found = []
        try:
            while True:
                found.append(self.messages.get(timeout=seconds))
        except queue.Empty:
            return found

    def wait_for(self, predicate, timeout: float = 10) -> mqtt.MQTTMessage:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if predicate(message):
                return message
        raise AssertionError("expected message did not arrive")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_client(running_broker: RunningBroker):
    """Factory: `mqtt_client(user)` connects as that account (password from the generated credentials)."""
    clients: list[Subscriber] = []

    def connect(username: str | None, password: str | None = None, session_expiry: int = 0) -> Subscriber:
        if username and password is None:
            password = running_broker.credentials.all_accounts()[username]
        client = Subscriber(running_broker.port, username, password, client_id=f"test-{username}-{len(clients)}",
                            session_expiry=session_expiry)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def model_path() -> str:
    """The detector the tests run: $GRIDWATCH_MODEL, else the shared OpenVINO export (make test sets the first)."""
    return os.environ.get("GRIDWATCH_MODEL") or str(SHARED_MODEL)


LITTER_RECIPE = REPO / "models" / "litter.yaml"
LITTER_SHORT = REPO / "models" / "runs" / "litter-short"
_litter_training: subprocess.Popen | None = None
"""The short litter training, started in the background when the session begins (see below)."""


def _litter_model_is_stale() -> bool:
    from gridwatch.training import load_recipe

    recipe = json.loads(load_recipe(LITTER_RECIPE, {}, "short").model_dump_json())
    report = LITTER_SHORT / "report.json"
    return not report.exists() or json.loads(report.read_text()).get("recipe") != recipe


def _train_litter_model(background: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "gridwatch", "models", "train", "--recipe", str(LITTER_RECIPE),
               "--schedule", "short", "--out", str(LITTER_SHORT)]
    if not background:
        return subprocess.Popen(command, cwd=REPO)
    LITTER_SHORT.parent.mkdir(parents=True, exist_ok=True)
    log = (LITTER_SHORT.parent / "litter-short.log").open("w")
    # niced: the tests keep their pace, the training takes the CPU they leave (most of them wait on I/O)
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(10))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the litter model run last, and the model they need (minutes of training on a fresh clone) is
    trained in the background meanwhile, beside the rest of the suite, instead of holding it up."""
    global _litter_training
    litter = [item for item in items if "litter_model" in getattr(item, "fixturenames", ())]
    if not litter or config.option.collectonly:
        return
    items[:] = [item for item in items if item not in litter] + litter
    if not os.environ.get("GRIDWATCH_LITTER_MODEL") and _litter_model_is_stale():
        _litter_training = _train_litter_model(background=len(litter) < len(items))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _litter_training is not None and _litter_training.poll() is None:  # the session was cut short
        _litter_training.terminate()
        _litter_training.wait(30)


@pytest.fixture(scope="session")
def litter_model() -> Path:
    """The litter model of models/litter.yaml's short schedule, as `make model-litter SCHEDULE=short` makes it in
    models/runs/litter-short; trained (a few minutes) when it is missing or its recipe has changed, in the background
    from the start of the session. $GRIDWATCH_LITTER_MODEL names another trained model's folder instead (e.g.
    models/litter, the shipped one)."""
    if os.environ.get("GRIDWATCH_LITTER_MODEL"):
        return Path(os.environ["GRIDWATCH_LITTER_MODEL"]).resolve()
    training = _litter_training or (_train_litter_model(background=False) if _litter_model_is_stale() else None)
    if training is not None and training.wait() != 0:
        log = LITTER_SHORT.parent / "litter-short.log"
        pytest.fail(f"training the short litter model failed (exit {training.returncode})"
                    + (f":\n{log.read_text(errors='replace')[-3000:]}" if log.exists() else ""))
    return LITTER_SHORT


DISPATCH = REPO / "config" / "demo" / "dispatch.yaml"


ROLES = ("operator", "field_staff", "supervisor", "integrator", "admin")


@pytest.fixture
def api_tokens(tmp_path) -> dict[str, str]:
    """A token per role (`field_staff` of traffic-police, and `sanitation` for field staff of that unit), written to
    a tokens file."""
    import yaml

    from server.core.security import hash_token

    tokens = {role: f"gw_test_{role}" for role in ROLES} | {"sanitation": "gw_test_sanitation"}
    entries = [{"name": f"test {role}", "role": role, "sha256": hash_token(tokens[role])}
               | ({"unit": "traffic-police"} if role == "field_staff" else {}) for role in ROLES]
    entries.append({"name": "sanitation worker", "role": "field_staff", "unit": "sanitation",
                    "sha256": hash_token(tokens["sanitation"])})
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump({"tokens": entries}), encoding="utf-8")
    return tokens


@pytest.fixture(scope="session")
def postgres_server():
    from tests.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def database_url(request, tmp_path) -> str:
    """A fresh database: a SQLite file, or (tests/server runs each test on both) a PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("postgres_server").create_database()
    return f"sqlite:///{tmp_path / 'gridwatch.db'}"


@pytest.fixture
def server_settings(running_broker, tmp_path, api_tokens, database_url):
    """The server's settings for a test: a database and evidence folder of its own, the test's broker."""
    from server.core.config import ServerSettings

    return ServerSettings(
        database_url=database_url,
        evidence_dir=tmp_path / "evidence",
        dispatch_config=DISPATCH,
        mqtt_port=running_broker.port,
        mqtt_password=running_broker.credentials.server_password,
        tokens_file=tmp_path / "tokens.yaml",
    )


@pytest.fixture
def api(server_settings, api_tokens):
    """A client of the running app, calling as admin unless a request sets its own Authorization."""
    from fastapi.testclient import TestClient

    from server.main import create_app

    with TestClient(create_app(server_settings)) as client:
        client.headers["Authorization"] = f"Bearer {api_tokens['admin']}"
        wait_until(lambda: client.get("/healthz").json()["mqtt"] == "connected")
        yield client


def as_role(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"}


# ---- the console in a real browser ---------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def server_url(server_settings):
    """The app served by uvicorn on a free port (a browser needs a real HTTP server)."""
    import uvicorn

    from gridwatch.broker import free_port
    from server.main import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(server_settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise RuntimeError("Chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


def shot(page, name: str) -> None:
    """A screenshot of the console at the page's size, for the README (tests/artifacts/ is not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"))


logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per test request drowns the useful log
