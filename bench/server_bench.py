"""Server throughput and latency under a city's event mix, against a bare paho subscriber in the same run.

A simulated fleet (nodes × cameras) publishes violations as edge nodes do: a `new`, a few `update` heartbeats and
an `end` per violation, parking, litter and vending mixed, each camera at its own place (so a camera's repeat
violations join its open case, as on a real street). Three measurements, one broker, one run, so the ratios mean
something on a shared, noisy machine. The fleet (bench/fleet.py: each node its own MQTT connection, QoS 1 packets
written on the wire from one process, a few hundredths of a core) stands in for cameras that run elsewhere; the
subscriber and the server each run in their own process, as in production:

1. `raw_subscribe_per_s`: a bare paho subscriber that only counts, receiving the mix.
2. `events_per_s`: `gridwatch server` (batched ingest, SQLite) storing the same mix: events in the database, cases
   opened, dispatched and published, every message acknowledged only after its batch is committed, over the time
   from the first publish to the last event stored. `events_per_s_sustained`: the same while the 10th to the 90th
   percent of them are stored (the count sampled every 0.2 s): the rate the server keeps up, without its first
   batches' start (a cold process, the fleet and the broker getting under way) nor the drain at the end, of the same
   mix (but for its first few dozen events, all new). The ratio is the first figure's.
3. `latency_p50_ms` / `latency_p99_ms`: publish → the case's first message on `gw/v1/cases/#` for each `new` event
   (each at a new place, so each opens a case) while the fleet publishes at a steady `--rate` (default 1,000/s).

Writes bench/results/server.json.

    .venv/bin/python bench/server_bench.py [--events 20000] [--rate 1000] [--seconds 10] [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))

from fleet import FleetProcesses  # noqa: E402
from results_io import report  # noqa: E402
from scale_measures import sustained_rate  # noqa: E402

from gridwatch.broker import Broker, free_port, generate_users, wait_for_port  # noqa: E402
from gridwatch.contract import DEFAULT_EVENT_CODES, SCHEMA_VERSION, Category, event_topic  # noqa: E402
from server.core.config import ServerSettings  # noqa: E402
from server.db import Database  # noqa: E402

MIX = [(Category.ILLEGAL_PARKING, "car", 0.6), (Category.LITTER, "garbage", 0.2),
       (Category.STREET_VENDING, "stall", 0.2)]


def fleet_messages(events: int, nodes: int, cameras: int, seed: int,
                   new_places: bool = False) -> list[tuple[str, bytes, bool, str]]:
    """(topic, payload, is_new, violation_id) in publishing order: violations of every camera interleaved. With
    `new_places` every violation is somewhere no other was (60 m apart), so each opens a case of its own."""
    rng = random.Random(seed)
    start = datetime.now(UTC)
    open_violations: list[dict] = []
    out: list[tuple[str, bytes, bool, str]] = []
    while len(out) < events:
        if len(open_violations) < nodes * cameras // 2 or rng.random() < 0.15:
            node, camera = rng.randrange(nodes), rng.randrange(cameras)
            category, label, _ = rng.choices(MIX, weights=[w for *_, w in MIX])[0]
            place = len(out) if new_places else 0
            open_violations.append({"node": f"node-{node:02d}", "camera": f"cam-{camera}", "category": category,
                                    "label": label, "violation": str(uuid.uuid4()), "beats": rng.randint(3, 8),
                                    "lat": 30.2705 + node * 0.0008 + place * 0.00055,
                                    "lon": 120.1505 + camera * 0.0008,
                                    "kind": "new", "zone": f"zone-{uuid.uuid4().hex[:6]}"})
        violation = rng.choice(open_violations)
        now = start + timedelta(seconds=len(out) / 1000)
        payload = {
            "schema_version": SCHEMA_VERSION, "event_id": str(uuid.uuid4()), "violation_id": violation["violation"],
            "type": violation["kind"], "node_id": violation["node"], "camera_id": violation["camera"],
            "zone_id": violation["zone"], "category": violation["category"].value,
            "code": DEFAULT_EVENT_CODES[violation["category"]], "label": violation["label"], "track_id": 1,
            "started_at": start.isoformat(), "observed_at": now.isoformat(), "dwell_seconds": 200.0, "score": 0.8,
            "box": {"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.4},
            "location": {"lat": violation["lat"], "lon": violation["lon"]},
            "model": {"name": "yolo11n", "version": "8.3"},
        }
        out.append((event_topic(violation["node"], violation["category"]), json.dumps(payload).encode(),
                    violation["kind"] == "new", violation["violation"]))
        if violation["kind"] == "end":
            open_violations.remove(violation)
        else:
            violation["beats"] -= 1
            violation["kind"] = "update" if violation["beats"] > 0 else "end"
    return out


def subscriber(port: int, user: str, password: str, topic: str, on_message) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    time.sleep(0.5)
    return client


def wait_for(counter, target: int, label: str, timeout: float = 900, every: float = 0.01,
             samples: list[tuple[float, int]] | None = None) -> float:
    """When `counter()` reached `target`; `samples` gets (time, count) at every look."""
    deadline = time.monotonic() + timeout
    with tqdm(total=target, desc=label, unit="msg", leave=False) as bar:
        while (count := counter()) < target:  # once a turn: the count may cost what it measures
            if samples is not None:
                samples.append((time.perf_counter(), count))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {count} of {target} after {timeout} s")
            bar.update(count - bar.n)
            time.sleep(every)
        bar.update(target - bar.n)
    if samples is not None:
        samples.append((time.perf_counter(), count))
    return time.perf_counter()


BARE_SUBSCRIBER = """
import sys, paho.mqtt.client as mqtt
port, password, target = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
count = 0
def on_message(client, _userdata, _message):
    global count
    count += 1
    if count == target:
        print("done", flush=True)
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
client.username_pw_set("gridwatch-server", password)
client.on_message = on_message
client.on_subscribe = lambda *_args: print("ready", flush=True)
client.connect("127.0.0.1", port)
client.subscribe("gw/v1/nodes/+/events/+", qos=1)
client.loop_forever()
"""


def ingested(api: str) -> int:
    with urllib.request.urlopen(f"{api}/healthz", timeout=5) as response:  # noqa: S310 - our own local server
        return json.loads(response.read())["ingest"].get("events", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="Events in the throughput runs (default 20000).")
    parser.add_argument("--rate", type=float, default=1000, help="Events/s of the latency run (default 1000).")
    parser.add_argument("--seconds", type=float, default=10, help="Length of the latency run (default 10).")
    parser.add_argument("--nodes", type=int, default=10, help="Simulated edge nodes (default 10).")
    parser.add_argument("--cameras", type=int, default=8, help="Cameras per node (default 8).")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="The server's ingest_batch_size (default: the server's own default).")
    parser.add_argument("--workers", type=int, default=1,
                        help="Server worker processes on the one SQLite file, sharing the event stream through an "
                             "MQTT shared subscription (default 1).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "server.json",
                        help="Where to write the JSON figures.")
    args = parser.parse_args()
    throughput = fleet_messages(args.events, args.nodes, args.cameras, seed=1)
    paced = fleet_messages(int(args.rate * args.seconds), args.nodes, args.cameras, seed=2, new_places=True)
    node_ids = [f"node-{n:02d}" for n in range(args.nodes)]

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        creds = generate_users(workdir / "broker", node_ids, ["integrator"])
        with Broker(workdir / "broker" / "data", workdir / "broker" / "passwd") as broker:
            fleet = FleetProcesses(broker.port, {node: creds.nodes[node] for node in node_ids})

            # 1. the ceiling: a bare paho subscriber in its own process, only counting
            bare = subprocess.Popen([sys.executable, "-c", BARE_SUBSCRIBER, str(broker.port),
                                     creds.server_password, str(len(throughput))], stdout=subprocess.PIPE, text=True)
            assert bare.stdout.readline().strip() == "ready"
            start = time.perf_counter()
            fleet.publish(throughput)
            assert bare.stdout.readline().strip() == "done"
            bare_seconds = time.perf_counter() - start
            bare.kill()

            # 2. the server in its own process (or `--workers` of them), on SQLite
            apis, servers = [], []
            Database(f"sqlite:///{workdir / 'bench.db'}")  # the schema, once: workers starting together would race
            for number in range(args.workers):
                api_port = free_port()
                config = workdir / f"server-{number}.yaml"
                config.write_text(yaml.safe_dump({
                    "database_url": f"sqlite:///{workdir / 'bench.db'}", "evidence_dir": str(workdir / "evidence"),
                    "dispatch_config": str(REPO / "config" / "demo" / "dispatch.yaml"), "mqtt_port": broker.port,
                    "mqtt_password": creds.server_password, "mqtt_client_id": f"bench-server-{number}",
                    "api_port": api_port}
                    | ({"ingest_batch_size": args.batch_size} if args.batch_size else {})
                    | ({"ingest_share_group": "bench"} if args.workers > 1 else {})))
                servers.append(subprocess.Popen([sys.executable, "-m", "gridwatch", "--log-level", "WARNING",
                                                 "server", "--config", str(config)], cwd=REPO))
                apis.append(f"http://127.0.0.1:{api_port}")

            def stored() -> int:
                return sum(ingested(api) for api in apis)

            try:
                for api, server in zip(apis, servers, strict=True):
                    wait_for_port("127.0.0.1", int(api.rsplit(":", 1)[1]), 60, server)
                time.sleep(1 if args.workers > 1 else 0)  # the shared subscriptions' acknowledgements
                start = time.perf_counter()
                threading.Thread(target=fleet.publish, args=(throughput,), daemon=True).start()
                samples = [(start, 0)]
                server_seconds = wait_for(stored, len(throughput), "server ingest", every=0.2,
                                          samples=samples) - start  # polled gently: the poll costs the server too

                # 3. latency at a steady rate: publish -> the case's first message
                arrived: dict[str, float] = {}

                def on_case(_client, _userdata, message) -> None:
                    body = json.loads(message.payload)
                    if body.get("action") == "collect":
                        arrived.setdefault(body["violation_id"], time.perf_counter())

                watcher = subscriber(broker.port, "integrator", creds.integrators["integrator"], "gw/v1/cases/#",
                                     on_case)
                before = stored()
                begin = time.perf_counter()
                sent = fleet.publish(paced, interval=1 / args.rate)
                achieved_rate = len(paced) / (time.perf_counter() - begin)  # the last acknowledgement in
                wait_for(lambda: stored() - before, len(paced), "paced ingest", every=0.2)
                time.sleep(1)
                watcher.disconnect()
                watcher.loop_stop()
                latencies = [arrived[violation] - at for violation, at in sent.items() if violation in arrived]
                with sqlite3.connect(workdir / "bench.db") as connection:
                    cases = connection.execute("SELECT count(*) FROM cases").fetchone()[0]
            finally:
                for server in servers:
                    server.terminate()
                for server in servers:
                    server.wait(30)
                fleet.close()

    latencies.sort()
    figures = {
        "benchmark": "server",
        "database": "sqlite",
        "events": len(throughput),
        "fleet": f"{args.nodes} nodes x {args.cameras} cameras",
        "mix": "new / update heartbeats / end per violation; parking 60 %, litter 20 %, vending 20 %",
        "raw_subscribe_per_s": round(len(throughput) / bare_seconds, 1),
        "events_per_s": round(len(throughput) / server_seconds, 1),
        "server_to_raw_ratio": round(bare_seconds / server_seconds, 3),
        "events_per_s_sustained": round(sustained_rate(samples, len(throughput)), 1),
        "batch_size": args.batch_size or ServerSettings.model_fields["ingest_batch_size"].default,
        "workers": args.workers,
        "cases_opened": cases,
        "latency_rate_per_s": round(achieved_rate, 1),
        "latency_samples": len(latencies),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
    }
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
