"""The production broker (broker_config/mosquitto.conf) installed and started the way deploy/ says, as root like
systemd: it starts, plain MQTT listens on loopback only, nodes log in, and it saves its state when it stops."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import paho.mqtt.client as mqtt

from gridwatch.broker import BROKER_CONFIG_DIR, free_port, generate_users, mosquitto_binary, wait_for_port

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "gridwatch-broker.service"


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at `port` (from /proc/net/tcp: state 0A is LISTEN)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_the_production_broker_starts_as_installed_listens_on_loopback_and_saves_its_state():
    """Found by review: started as root, Mosquitto dropped to its own user and could not read the password file
    (it did not start), listened on every interface in clear, and could not write its persistence."""
    root = Path(tempfile.mkdtemp(prefix="gridwatch-install-"))  # pytest's own folders are root's alone
    root.chmod(0o755)  # the mosquitto user walks down to the files, as it does into /etc and /var/lib
    etc, var, port = root / "etc", root / "var", free_port()

    def here(text: str) -> str:
        return (text.replace("/etc/gridwatch/broker", str(etc)).replace("/var/lib/gridwatch/broker", str(var))
                .replace("listener 1883 ", f"listener {port} "))

    shutil.copytree(BROKER_CONFIG_DIR, etc)
    (etc / "mosquitto.conf").write_text(here((BROKER_CONFIG_DIR / "mosquitto.conf").read_text()))
    credentials = generate_users(etc, ["node-a"], [])
    for line in UNIT.read_text().splitlines():
        if line.startswith("ExecStartPre="):
            subprocess.run(shlex.split(here(line.removeprefix("ExecStartPre="))), check=True)
    broker = subprocess.Popen([mosquitto_binary(), "-c", str(etc / "mosquitto.conf")], stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", port, 10, broker)
        assert listening_addresses(port) == {"127.0.0.1"}, "plain MQTT on loopback only"
        node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="node-a", protocol=mqtt.MQTTv5)
        node.username_pw_set("node-a", credentials.nodes["node-a"])
        node.connect("127.0.0.1", port)
        node.loop_start()
        assert node.publish("gw/v1/nodes/node-a/status", b'{"state": "online"}', qos=1, retain=True) \
            .wait_for_publish(10) is None and node.is_connected()
        node.disconnect()
        node.loop_stop()
    finally:
        broker.send_signal(signal.SIGTERM)
        _, errors = broker.communicate(timeout=10)
        saved = (var / "gridwatch.db").exists()
        shutil.rmtree(root)
    assert broker.returncode == 0, errors.decode(errors="replace")
    assert saved, "its state saved, for the next start"
