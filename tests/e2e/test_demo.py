"""`gridwatch demo` as a user runs it, checked with Mosquitto's own command-line clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from gridwatch.contract import event_topic
from tests.e2e.test_end_to_end import get
from tests.factories import event_payload, wait_until

REPO = Path(__file__).resolve().parents[2]


def test_demo_dispatches_a_case_that_integrators_and_operators_see(tmp_path, model_path):
    workdir = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "gridwatch", "demo", "--workdir", str(workdir), "--api-port", "0", "--mqtt-port", "0",
         "--dwell", "5", "--duration", "170"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "GRIDWATCH_MODEL": model_path},
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(line.decode(errors="replace") for line in demo.stdout),
                              daemon=True)
    reader.start()
    cases_sub = None
    try:
        connection_file = workdir / "connection.json"
        wait_until(connection_file.exists, timeout=90)
        conn = json.loads(connection_file.read_text())
        assert set(conn) == {"api_url", "mqtt_host", "mqtt_port", "node_id", "node_user", "node_password",
                             "integrator_user", "integrator_password", "api_tokens"}
        token = conn["api_tokens"]["operator"]
        broker = ["-h", conn["mqtt_host"], "-p", str(conn["mqtt_port"])]
        cases_sub = subprocess.Popen(
            ["mosquitto_sub", *broker, "-u", conn["integrator_user"], "-P", conn["integrator_password"],
             "-t", "gw/v1/cases/#", "-v", "-C", "3", "-W", "120"],
            stdout=subprocess.PIPE, text=True,
        )
        case = wait_until(lambda: get(f"{conn['api_url']}/api/v1/cases", token)["items"], timeout=90)[0]
        assert case["category"] == "illegal_parking" and case["status"] == "dispatched"
        assert case["assignment"]["unit_id"] == "traffic-police"

        out, _ = cases_sub.communicate(timeout=30)
        lines = out.strip().splitlines()
        assert lines and all(line.startswith(f"gw/v1/cases/illegal_parking/{case['id']} ") for line in lines)
        assert json.loads(lines[-1].split(" ", 1)[1])["status"] == "dispatched"

        node = ["-u", conn["node_user"], "-P", conn["node_password"], "-V", "mqttv5", "-q", "1"]
        malformed = subprocess.run(
            ["mosquitto_pub", *broker, *node, "-t", event_topic(conn["node_id"], "illegal_parking"),
             "-m", '{"event_id": "nope"}'], capture_output=True, text=True, timeout=10)
        assert malformed.returncode == 0 and "failed" not in malformed.stderr
        letter = wait_until(lambda: get(f"{conn['api_url']}/api/v1/dead-letters", token)["items"], timeout=10)[0]
        assert "event_id" in letter["reason"] and letter["node_id"] == conn["node_id"]

        spoof = json.dumps(event_payload(node_id="other-node", event_id=str(uuid.uuid4())))
        refused = subprocess.run(
            ["mosquitto_pub", *broker, *node, "-t", event_topic("other-node", "illegal_parking"), "-m", spoof],
            capture_output=True, text=True, timeout=10)
        assert "Not authorized" in refused.stderr
        wait_until(lambda: any("dispatched after" in line for line in output), timeout=10)
        # the streetlight on the same pole: its lamp goes out at night, and street lighting gets the case
        wait_until(lambda: any("streetlight_fault (DEV-LAMP) dispatched" in line for line in output), timeout=120)
    finally:
        if cases_sub and cases_sub.poll() is None:
            cases_sub.kill()
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
        reader.join(timeout=10)
    text = "".join(output)
    assert demo.returncode == 0, text
    assert "GridWatch demo is running" in text and "case 1 illegal_parking (0505) dispatched" in text
    assert "street chief 王建国" in text
    lamp = next(line for line in text.splitlines() if "streetlight_fault" in line)
    assert "unit 路灯管理所 Street lighting" in lamp
