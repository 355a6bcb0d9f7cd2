"""`gridwatch demo`: the broker, the server and one edge node, wired together on this machine."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from gridwatch.broker import Broker, BrokerError, Credentials, free_port, generate_users, wait_for_port
from gridwatch.demo_media import DEMO_ZONE, render_parked_bus_clip

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "demo"
NODE_ID = "demo-node-1"
INTEGRATOR = "integrator"
CAMERA_LOCATION = {"lat": 30.27415, "lon": 120.15515}
"""Inside grid WL-01 of config/demo/grids.geojson."""
FULL_FRAME = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def port_or_free(preferred: int) -> int:
    import socket

    if preferred == 0:
        return free_port()
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def get_json(url: str, token: str, timeout: float = 5.0) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own local API
        return json.loads(response.read())


DEMO_FIELD_UNIT = "traffic-police"
"""The demo's field worker is a traffic warden: the demo's first case is a bus parked at the kerb."""
DEMO_PEOPLE = {"operator": "demo operator", "supervisor": "demo supervisor", "field_staff": "demo field worker",
               "integrator": "demo integrator", "admin": "demo admin"}


def write_api_tokens(path: Path) -> dict[str, str]:
    """A fresh token per role for this demo run; the file keeps only their SHA-256."""
    from server.core.security import hash_token, new_token

    tokens = {role: new_token() for role in DEMO_PEOPLE}
    entries = [{"name": name, "role": role, "sha256": hash_token(tokens[role])}
               | ({"unit": DEMO_FIELD_UNIT} if role == "field_staff" else {}) for role, name in DEMO_PEOPLE.items()]
    write_private(path, yaml.safe_dump({"tokens": entries}, allow_unicode=True))
    return tokens


def write_private(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def node_config(mqtt_port: int, source: Path | str, zone: list, dwell: float,
                state_dir: Path, password_file: Path) -> dict:
    return {
        "node_id": NODE_ID,
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "password_file": str(password_file)},
        "state_dir": str(state_dir),
        "telemetry_seconds": 10,
        "cameras": [{
            "camera_id": "cam-1",
            "source": str(source),
            "location": CAMERA_LOCATION,
            "detect_fps": 5,
            "realtime": True,
            "loop": True,
            "zones": [{"zone_id": "kerb-no-parking", "rule": "no_parking", "polygon": [list(p) for p in zone],
                       "dwell_seconds": dwell}],
        }],
        # a smart streetlight on the same pole, at night: its lamp fails after half a minute, is mended later
        "streetlights": [{
            "lamp_id": "lamp-1", "location": CAMERA_LOCATION, "poll_seconds": 2, "fault_seconds": 10,
            "adapter": {"type": "simulated", "ambient_lux": 2.0,
                        "failures": [{"fault": "lamp_out", "start_seconds": 30, "end_seconds": 150}]},
        }],
    }


def stop_processes(processes: list[subprocess.Popen], timeout: float = 20) -> None:
    """SIGTERM in reverse start order (so the edge flushes before the server goes), then SIGKILL after `timeout`."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


DEMO_MARK = ".gridwatch-demo"
"""Marks a folder the demo made: only such a folder (or an empty one) is emptied when a demo starts."""


class Demo:
    def __init__(self, workdir: Path, source: str | None = None, duration: float = 0, api_port: int = 8000,
                 mqtt_port: int = 1883, dwell_seconds: float = 10.0) -> None:
        self.workdir = workdir.resolve()
        self.source = source
        self.duration = duration
        self.api_port = api_port
        self.mqtt_port = mqtt_port
        self.dwell_seconds = dwell_seconds
        self.processes: list[subprocess.Popen] = []

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log_file = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "gridwatch", *args], stdout=log_file,
                                   stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.processes.append(process)
        return process

    def _log_tail(self, name: str, lines: int = 5) -> str:
        path = self.workdir / f"{name}.log"
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:] if path.exists() else []
        return "\n".join([f"last lines of {path}:", *(f"  {line}" for line in tail)])

    def run(self, stop: threading.Event) -> int:
        if self.source and "://" not in self.source:
            self.source = str(Path(self.source).resolve())  # the parts run in the repository's folder
        if self.source and not Path(self.source).exists() and "://" not in self.source:
            raise BrokerError(f"--source {self.source!r} does not exist")
        media_cache = self.workdir.parent / f"{self.workdir.name}-media"
        if self.workdir.exists():
            if any(self.workdir.iterdir()) and not (self.workdir / DEMO_MARK).exists():
                raise BrokerError(f"--workdir {self.workdir} holds files that are not an earlier demo's; the demo "
                                  f"starts afresh in its folder, so name an empty or new one")
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        (self.workdir / DEMO_MARK).write_text("made by `gridwatch demo`, which empties this folder when it starts\n")
        broker_dir = self.workdir / "broker"
        credentials = generate_users(broker_dir, [NODE_ID], [INTEGRATOR])
        broker = Broker(broker_dir / "data", broker_dir / "passwd", port=port_or_free(self.mqtt_port)).start()
        try:
            return self._run_with_broker(broker, credentials, media_cache, stop)
        finally:
            stop_processes(self.processes)
            broker.stop()
            log.info("demo stopped; logs and database are in %s", self.workdir)

    def _run_with_broker(self, broker: Broker, credentials: Credentials, media_cache: Path,
                         stop: threading.Event) -> int:
        if self.source:
            source, zone = self.source, FULL_FRAME
        else:
            clip = media_cache / "parked-bus.mp4"
            if not clip.exists():
                log.info("rendering the demo clip from the ultralytics package's bus.jpg")
                render_parked_bus_clip(clip)
            source, zone = clip, DEMO_ZONE

        server_password = write_private(self.workdir / "server.password", credentials.server_password)
        node_password = write_private(self.workdir / "node.password", credentials.nodes[NODE_ID])
        api_port = port_or_free(self.api_port)
        self.api_tokens = write_api_tokens(self.workdir / "tokens.yaml")
        server_config = {
            "tokens_file": str(self.workdir / "tokens.yaml"),
            "database_url": f"sqlite:///{self.workdir / 'gridwatch.db'}",
            "evidence_dir": str(self.workdir / "evidence"),
            "dispatch_config": str(DEMO_CONFIG / "dispatch.yaml"),
            "api_host": "127.0.0.1",
            "api_port": api_port,
            "mqtt_host": "127.0.0.1",
            "mqtt_port": broker.port,
            "mqtt_username": credentials.server_user,
            "mqtt_password_file": str(server_password),
        }
        (self.workdir / "server.yaml").write_text(yaml.safe_dump(server_config), encoding="utf-8")
        (self.workdir / "node.yaml").write_text(yaml.safe_dump(node_config(
            broker.port, source, zone, self.dwell_seconds, self.workdir / "edge-state", node_password,
        )), encoding="utf-8")

        server = self._spawn("server", "server", "--config", str(self.workdir / "server.yaml"))
        try:
            wait_for_port("127.0.0.1", api_port, 60, server)
        except BrokerError as error:  # say why, from the server's own log
            raise BrokerError(f"the server did not start: {error}\n{self._log_tail('server')}") from None
        api_url = f"http://127.0.0.1:{api_port}"
        connection = {
            "api_url": api_url,
            "mqtt_host": "127.0.0.1",
            "mqtt_port": broker.port,
            "node_id": NODE_ID,
            "node_user": NODE_ID,
            "node_password": credentials.nodes[NODE_ID],
            "integrator_user": INTEGRATOR,
            "integrator_password": credentials.integrators[INTEGRATOR],
            "api_tokens": self.api_tokens,
        }
        write_private(self.workdir / "connection.json", json.dumps(connection, indent=2) + "\n")
        started = time.monotonic()
        edge = self._spawn("edge", "edge", "--config", str(self.workdir / "node.yaml"))
        self._announce(connection, source)
        return self._watch(api_url, started, edge, stop)

    def _announce(self, connection: dict, source: Path | str) -> None:
        print(
            f"""
GridWatch demo is running
  API          {connection['api_url']}   (OpenAPI: {connection['api_url']}/docs)
  broker       mqtt://{connection['mqtt_host']}:{connection['mqtt_port']}
  node         {connection['node_user']} / {connection['node_password']}
  integrator   {connection['integrator_user']} / {connection['integrator_password']}
  API token    {connection['api_tokens']['operator']} (operator; every role's in connection.json)
  video        {source}
  written to   {self.workdir / 'connection.json'}; logs in {self.workdir}

Cases through the API:
  curl -H 'Authorization: Bearer {connection['api_tokens']['operator']}' {connection['api_url']}/api/v1/cases

Watch cases as an integrator:
  mosquitto_sub -h {connection['mqtt_host']} -p {connection['mqtt_port']} -u {connection['integrator_user']} \\
    -P '{connection['integrator_password']}' -t 'gw/v1/cases/#' -v
""",
            flush=True,
        )

    def _watch(self, api_url: str, started: float, edge: subprocess.Popen, stop: threading.Event) -> int:
        reported: set[int] = set()
        token = self.api_tokens["operator"]
        while not stop.wait(1):
            elapsed = time.monotonic() - started
            if self.duration and elapsed >= self.duration:
                break
            for process, name in ((self.processes[0], "server"), (edge, "edge")):
                if process.poll() is not None:
                    print(f"the {name} stopped (exit {process.returncode}); see {self.workdir / (name + '.log')}",
                          file=sys.stderr)
                    return 1
            try:
                cases = get_json(f"{api_url}/api/v1/cases?page_size=20&sort=id", token)
            except OSError:
                continue
            for item in cases["items"]:
                if item["id"] in reported:
                    continue
                case = get_json(f"{api_url}/api/v1/cases/{item['id']}", token)
                assignment = case.get("assignment") or {}
                chief = (assignment.get("street_chief") or {}).get("name", "-")
                print(f"case {case['id']} {case['category']} ({case['code']}) {case['status']} after {elapsed:.0f} s: "
                      f"unit {assignment.get('unit_name')}, street chief {chief}, grid {assignment.get('grid_id')}\n"
                      f"  {api_url}/api/v1/cases/{case['id']}", flush=True)
                if case["evidence_urls"]:
                    print(f"  evidence {api_url}{case['evidence_urls'][0]}", flush=True)
                reported.add(case["id"])
            if not reported and elapsed > 120:
                print(f"no case after {elapsed:.0f} s; see {self.workdir}/edge.log", file=sys.stderr)
                return 1
        return 0
