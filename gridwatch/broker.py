"""Accounts for the broker and a Mosquitto process run from `broker_config/`.

The policy (anonymous off, persistence, queue limits, ACL roles) lives in `broker_config/`; this module only adds
what differs per run: the port, the data folder, the generated password file and, for a site's broker, the bridge
to the city's core broker.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gridwatch.contract import NODE_ID_PATTERN, TOPIC_ROOT

log = logging.getLogger(__name__)

BROKER_CONFIG_DIR = Path(__file__).resolve().parents[1] / "broker_config"
SERVER_USER = "gridwatch-server"
_PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes for its $7$ (PBKDF2-SHA512) hashes


TLS_LISTENER_POLICY = ["use_username_as_clientid true"]
"""The listener nodes reach from the street: there a client's id is its account's name, so a node (its password
known to whoever holds the box) cannot take over the server's session, or another node's, by its client id and lose
what the broker kept for it. One connection per account on it: the server's workers connect on the loopback one."""

class BrokerError(RuntimeError):
    pass


def role_accounts(acl_file: Path = BROKER_CONFIG_DIR / "acl") -> set[str]:
    """User names that the ACL gives a role of their own (server, integrators); every other account is a node."""
    names = set()
    for line in acl_file.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "user":
            names.add(words[1])
    return names


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A password-file entry hash in Mosquitto 2.0's `$7$` format (PBKDF2-HMAC-SHA512)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, _PBKDF2_ITERATIONS)
    return f"$7${_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass
class Credentials:
    """Generated accounts; written beside the password file as `credentials.json` (mode 0600, never committed)."""

    server: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    integrators: dict[str, str] = field(default_factory=dict)
    bridges: dict[str, str] = field(default_factory=dict)

    def all_accounts(self) -> dict[str, str]:
        return {**self.server, **self.nodes, **self.integrators, **self.bridges}

    @property
    def server_user(self) -> str:
        return next(iter(self.server))

    @property
    def server_password(self) -> str:
        return self.server[self.server_user]

    @classmethod
    def load(cls, path: Path) -> Credentials:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def generate_users(
    out_dir: Path,
    nodes: list[str],
    integrators: list[str],
    acl_file: Path = BROKER_CONFIG_DIR / "acl",
    bridges: list[str] = (),
) -> Credentials:
    """Write `passwd` and `credentials.json` into `out_dir` with fresh random passwords for new accounts; the
    accounts `out_dir` holds already keep theirs (adding a node never locks out the fleet or the server).
    `bridges`: accounts that sites' brokers bridge in with (each needs its block in the ACL, like an integrator)."""
    roles = role_accounts(acl_file)
    for node_id in nodes:
        if not re.fullmatch(NODE_ID_PATTERN, node_id):
            raise BrokerError(f"node id {node_id!r} must match {NODE_ID_PATTERN}")
        if node_id in roles:
            raise BrokerError(f"node id {node_id!r} is a role account in {acl_file}; choose another id")
    for kind, names in (("integrator", integrators), ("bridge", bridges)):
        for name in names:
            if name not in roles or name == SERVER_USER:
                raise BrokerError(
                    f"{kind} {name!r} has no block in {acl_file}; copy the 'user {kind}' block under that name "
                    "first (without it the account would be treated as a node)"
                )
    existing = Credentials.load(out_dir / "credentials.json") if (out_dir / "credentials.json").exists() \
        else Credentials()

    def accounts(kept: dict[str, str], names: list[str]) -> dict[str, str]:
        return {**kept, **{name: secrets.token_urlsafe(18) for name in names if name not in kept}}

    creds = Credentials(server=existing.server or {SERVER_USER: secrets.token_urlsafe(18)},
                        nodes=accounts(existing.nodes, nodes), integrators=accounts(existing.integrators, integrators),
                        bridges=accounts(existing.bridges, bridges))
    kinds = (creds.nodes, creds.integrators, creds.bridges)
    if len(set(nodes)) != len(nodes) or len(set().union(*kinds)) != sum(len(kind) for kind in kinds):
        raise BrokerError("account names must be unique")
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{user}:{hash_password(password)}" for user, password in creds.all_accounts().items()]
    _write_private(out_dir / "passwd", "\n".join(lines) + "\n")
    _write_private(out_dir / "credentials.json", json.dumps(asdict(creds), indent=2) + "\n")
    return creds


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)  # also when it was there before


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"process exited with code {process.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if not found:
        raise BrokerError("mosquitto is not installed: apt-get install -y mosquitto (make demo / make test do this)")
    return found


@dataclass(frozen=True)
class TlsFiles:
    """A TLS listener's files: the CA certificate clients trust, the broker's certificate and its private key."""

    ca_cert: Path
    cert: Path
    key: Path


def generate_tls(out_dir: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), days: int = 825) -> TlsFiles:
    """A private certificate authority and a broker certificate it signs, for `hosts` (names or addresses), made
    with openssl. Give nodes `ca.crt`; keys are written mode 0600 and never committed."""
    if bad := [host for host in hosts if not re.fullmatch(r"[A-Za-z0-9.:*-]+", host)]:
        raise BrokerError(f"--host {bad[0]!r}: a host name or an IP address")
    if days < 1:
        raise BrokerError(f"--days {days}: at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(out_dir / "ca.crt", out_dir / "server.crt", out_dir / "server.key")
    names = ",".join(f"IP:{host}" if re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", host) else f"DNS:{host}"
                     for host in hosts)
    (out_dir / "server.ext").write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n", encoding="utf-8")

    def openssl(*args: str) -> None:
        result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise BrokerError(f"openssl {args[0]} failed: {result.stderr.strip()}")

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(out_dir / "ca.key"), "-out",
            str(files.ca_cert), "-days", str(days), "-subj", "/CN=GridWatch broker CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files.key), "-out", str(out_dir / "server.csr"),
            "-subj", f"/CN={hosts[0]}")
    openssl("x509", "-req", "-in", str(out_dir / "server.csr"), "-CA", str(files.ca_cert), "-CAkey",
            str(out_dir / "ca.key"), "-CAcreateserial", "-out", str(files.cert), "-days", str(days), "-extfile",
            str(out_dir / "server.ext"))
    for key in (out_dir / "ca.key", files.key):
        key.chmod(0o600)
    return files


BRIDGE_OUT = tuple(f"{TOPIC_ROOT}/nodes/+/{family}" for family in (
    "events/#", "telemetry", "evidence/+", "evidence/+/crop", "status", "snapshot/#", "config/status",
    "command/response"))
"""What a site's nodes publish, forwarded by its broker to the core broker (where the server reads)."""
BRIDGE_IN = (f"{TOPIC_ROOT}/nodes/+/config", f"{TOPIC_ROOT}/nodes/+/command", f"{TOPIC_ROOT}/cases/#")
"""What the server publishes for nodes and field apps, brought from the core broker to the site's."""


@dataclass(frozen=True)
class Bridge:
    """A site broker's link to the city's core broker (Mosquitto bridge, QoS 1, persistent session): the site's
    nodes connect to the site's broker, and what they publish reaches the server through the core one. While the
    link is down the site's broker keeps the messages (its queue limits and persistence apply) and sends them when it
    is back."""

    name: str
    host: str
    port: int
    username: str
    password: str
    ca_file: Path | None = None
    """The core broker's CA certificate, for a TLS link (`gridwatch broker tls`)."""

    def config_lines(self) -> list[str]:
        return [
            f"connection {self.name}",
            f"address {self.host}:{self.port}",
            f"remote_clientid bridge-{self.name}",
            f"remote_username {self.username}",
            f"remote_password {self.password}",
            "cleansession false",  # the core keeps what is on its way to the site while the link is down
            "restart_timeout 1 15",  # reconnect after 1 s, backing off to 15 s
            *([f"bridge_cafile {self.ca_file.resolve()}", "bridge_tls_version tlsv1.2"] if self.ca_file else []),
            *(f"topic {topic} out 1" for topic in BRIDGE_OUT),
            *(f"topic {topic} in 1" for topic in BRIDGE_IN),
        ]


class Broker:
    """A Mosquitto process using the project's policy from `broker_config/` on a port of this run's choosing."""

    def __init__(
        self,
        data_dir: Path,
        password_file: Path,
        port: int | None = None,
        bind: str = "127.0.0.1",
        config_dir: Path = BROKER_CONFIG_DIR,
        tls: TlsFiles | None = None,
        bridge: Bridge | None = None,
    ) -> None:
        """`tls`: also listen with TLS (on `tls_port`), with these files; the plain listener stays. `bridge`: this
        is a site's broker, linked to the city's core broker."""
        self.tls = tls
        self.bridge = bridge
        self.tls_port = free_port(bind) if tls else None
        self.data_dir = data_dir.resolve()
        self.password_file = password_file.resolve()
        self.port = port or free_port(bind)
        self.bind = bind
        self.config_dir = config_dir.resolve()
        self.process: subprocess.Popen | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "mosquitto.log"

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "mosquitto.conf"
        _write_private(  # a bridge's password is in it
            conf,
            "\n".join(
                [
                    "# Written by `gridwatch broker run`; the policy is in broker_config/.",
                    "per_listener_settings false",
                    f"listener {self.port} {self.bind}",
                    f"persistence_location {self.data_dir}/",
                    f"password_file {self.password_file}",
                    f"acl_file {self.config_dir / 'acl'}",
                    # Mosquitto started as root drops to the `mosquitto` user, which cannot read this run's
                    # private files; run as whoever started it instead.
                    f"user {getpass.getuser()}",
                    f"log_dest file {self.log_file}",
                    f"include_dir {self.config_dir / 'conf.d'}",
                    *([f"listener {self.tls_port} {self.bind}", f"cafile {self.tls.ca_cert.resolve()}",
                       f"certfile {self.tls.cert.resolve()}", f"keyfile {self.tls.key.resolve()}",
                       "tls_version tlsv1.2", *TLS_LISTENER_POLICY] if self.tls else []),
                    *(self.bridge.config_lines() if self.bridge else []),  # last: the section runs to the end
                    "",
                ]
            ),
        )
        return conf

    def start(self, timeout: float = 10.0) -> Broker:
        for port in (self.port, *([self.tls_port] if self.tls else [])):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Mosquitto binds
                try:
                    probe.bind((self.bind, port))
                except OSError as error:  # else the other program's port passed for ours being up
                    raise BrokerError(f"port {port} on {self.bind} is taken ({error.strerror}): another broker "
                                      f"or program listens there; choose another with --port") from None
        conf = self.write_config()
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.bind, self.port, timeout, self.process)
        except BrokerError as error:
            stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            self.stop()
            raise BrokerError(f"mosquitto did not start: {error}\n{stderr}{self.log_tail()}") from None
        log.info("mosquitto listening on %s:%d (data in %s)", self.bind, self.port, self.data_dir)
        return self

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
