"""Ingest throughput: events a second from broker to stored, dispatched case, against a bare subscriber.

Both are measured in one run on the same broker, so the ratio means something on a shared, noisy machine.
Writes bench/results/ingest.json.

    .venv/bin/python bench/ingest_bench.py [--events 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))

from results_io import report  # noqa: E402

from gridwatch.broker import Broker, generate_users  # noqa: E402
from gridwatch.contract import SUBSCRIBE_EVENTS, event_topic  # noqa: E402
from server.core.config import ServerSettings  # noqa: E402
from server.main import create_app  # noqa: E402
from tests.factories import event_payload  # noqa: E402


def client(port: int, user: str, password: str, client_id: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def publish_all(port: int, password: str, payloads: list[bytes], label: str) -> float:
    publisher = client(port, "node-a", password, f"bench-pub-{uuid.uuid4().hex[:6]}")
    start = time.perf_counter()
    infos = [publisher.publish(event_topic("node-a", "illegal_parking"), p, qos=1) for p in payloads]
    for info in tqdm(infos, desc=f"{label}: acknowledged", unit="msg", leave=False):
        info.wait_for_publish(60)
    publisher.disconnect()
    publisher.loop_stop()
    return start


def wait_count(counter, target: int, label: str, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    with tqdm(total=target, desc=f"{label}: received", unit="msg", leave=False) as bar:
        while counter() < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {counter()} of {target} after {timeout} s")
            bar.update(counter() - bar.n)
            time.sleep(0.01)
        bar.update(target - bar.n)
    return time.perf_counter()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="Events per measurement (default 2000).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest.json",
                        help="Where to write the JSON figures.")
    args = parser.parse_args()
    payloads = [json.dumps(event_payload()).encode() for _ in range(args.events)]

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        creds = generate_users(workdir / "broker", ["node-a"], ["integrator"])
        with Broker(workdir / "broker" / "data", workdir / "broker" / "passwd") as broker:
            # 1. the ceiling: a subscriber that only counts
            received = 0

            def count(*_args) -> None:
                nonlocal received
                received += 1

            bare = client(broker.port, "gridwatch-server", creds.server_password, "bench-bare")
            bare.on_message = count
            bare.subscribe(SUBSCRIBE_EVENTS, qos=1)
            time.sleep(0.5)
            start = publish_all(broker.port, creds.nodes["node-a"], payloads, "bare subscriber")
            bare_seconds = wait_count(lambda: received, args.events, "bare subscriber") - start
            bare.disconnect()
            bare.loop_stop()

            # 2. the server: validate, store idempotently, open and dispatch a case, publish its changes
            settings = ServerSettings(
                database_url=f"sqlite:///{workdir / 'bench.db'}", evidence_dir=workdir / "evidence",
                dispatch_config=REPO / "config" / "demo" / "dispatch.yaml", mqtt_port=broker.port,
                mqtt_password=creds.server_password,
            )
            app = create_app(settings)
            service = app.state.ingest_service
            service.start(wait_seconds=10)
            time.sleep(0.5)
            start = publish_all(broker.port, creds.nodes["node-a"], payloads, "server ingest")
            ingest_seconds = wait_count(lambda: service.ingest.counts["events"], args.events, "server ingest") - start
            service.flush(30)
            service.stop()

    figures = {
        "benchmark": "ingest",
        "events": args.events,
        "bare_subscriber_events_per_second": round(args.events / bare_seconds, 1),
        "server_ingest_events_per_second": round(args.events / ingest_seconds, 1),
        "server_to_bare_ratio": round(bare_seconds / ingest_seconds, 3),
        "database": "sqlite",
    }
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
