"""City scale: a fleet of thousands of nodes against 1, 2 and 4 server workers sharing the stream (MQTT 5 shared
subscription) into one PostgreSQL database, with a bare paho subscriber's rate measured in the same run.

The fleet (bench/fleet.py): `--nodes` edge nodes (each its own MQTT connection and broker account, as in the field;
QoS 1 packets written on the wire, 250 nodes a process, so that the fleet leaves this machine's cores to what it
measures), each with `--cameras` cameras, publishing the city's mix: per violation a `new` (preceded by its
evidence frame, a real JPEG), heartbeat `update`s and an `end`; parking, litter and vending; and every node's
telemetry now and then. For each worker count, on a fresh database (its workers' broker sessions are ended after
their phase):

Each worker count is measured `--rounds` times, interleaved (1, 2, 4, 1, 2, 4): `runs` holds each count's median
of its rounds and each round's figure (`speedup_rounds`: against one worker in the same round), `phases` every
measurement in full.

1. `events_per_s`: the mix blasted as fast as the fleet can publish; events in the database (each exactly once)
   over the time from the first publish to the last event stored. `events_per_s_sustained`: the same while the
   10th to the 90th percent of them are stored (sampled every 0.2 s): without the drain at the end (one worker's
   last batch still writing while the others have nothing left), but also without most of the opening, when the
   fleet's 2,000 first violations are all new (each with its image, a case opened and dispatched), so it measures a
   lighter mix; the headline is the first.
2. `latency_p50_ms` / `latency_p99_ms`: publish -> the case's first message on `gw/v1/cases/#`, for `new` events
   at new places while the fleet publishes at a steady `--rate`.

`raw_subscribe_per_s`: a bare paho subscriber in its own process counting the same blast, before and after the
worker runs. On a 2-core machine the fleet, the broker, PostgreSQL and the workers share the cores, so workers add
throughput only until the cores are spent: the figures say where that is, and `cores_used` of each run says who
took them (CPU seconds of the workers, the fleet, the broker, PostgreSQL and this script, over the run's length;
`all` is their sum, `machine` the whole machine's busy time, kernel included), and `batches` how the workers
spent it: batches written, their mean size and time, and `writing_share`, the share of each worker's time spent
writing (near 1: the workers are the limit; well below: the messages come slower than they write), and
`written_again`, batches redone because another worker wrote the same rows first, `events_postponed`, events
set aside for a later batch because another worker held their case; `database`, sampled every
50 ms, how many of the workers' transactions are open and statements running at once on average, and how many of
them wait for another worker's lock (by kind): many waiting, the workers take turns instead of writing side by side.
Writes bench/results/scale.json.

    .venv/bin/python bench/scale_bench.py [--nodes 2000] [--events 12000] [--workers 1,2,4] [--rate 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
import yaml
from sqlalchemy import create_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))

from fleet import FleetProcesses  # noqa: E402
from results_io import report  # noqa: E402
from scale_measures import LockWaits, cpu_seconds, follow, stored_events, summarise, sustained_rate  # noqa: E402
from server_bench import fleet_messages, subscriber, wait_for  # noqa: E402

from gridwatch.broker import Broker, free_port, generate_users, wait_for_port  # noqa: E402
from gridwatch.contract import SCHEMA_VERSION, evidence_topic, telemetry_topic  # noqa: E402
from gridwatch.demo_media import ultralytics_asset  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402 - the same throwaway PostgreSQL the tests start


def city_mix(events: int, nodes: int, cameras: int, seed: int, telemetry_every: int,
             new_places: bool = False) -> list[tuple[str, bytes, bool, str]]:
    """The fleet's events with each `new` preceded by its evidence frame and a node's telemetry every
    `telemetry_every` events; (topic, payload, is_new_event, violation_id)."""
    image = cv2.imread(str(ultralytics_asset("bus.jpg")))
    frame = cv2.imencode(".jpg", cv2.resize(image, (480, 640)), [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    out = []
    for index, (topic, payload, is_new, violation) in enumerate(
            fleet_messages(events, nodes, cameras, seed, new_places=new_places)):
        node = topic.split("/")[3]
        if is_new:
            out.append((evidence_topic(node, json.loads(payload)["event_id"]), frame, False, ""))
        out.append((topic, payload, is_new, violation))
        if index % telemetry_every == 0:
            out.append((telemetry_topic(node), json.dumps({
                "schema_version": SCHEMA_VERSION, "node_id": node, "at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                "session": 1, "uptime_seconds": 3600.0, "events_published": index, "publish_pending": 0,
                "cameras": [{"camera_id": f"cam-{c}", "frames_read": 36000, "frames_detected": 18000,
                             "fps_in": 10.0, "fps_detected": 5.0, "active_violations": 1}
                            for c in range(cameras)]}).encode(), False, ""))
    return out


class Workers:
    """`count` `gridwatch server` processes in one shared-subscription group, on one database."""

    def __init__(self, count: int, workdir: Path, database_url: str, broker_port: int, password: str,
                 batch_size: int) -> None:
        self.processes, self.ports, self.client_ids = [], [], []
        self.broker_port, self.password = broker_port, password
        for n in range(count):
            port, client_id = free_port(), f"bench-worker-{count}-{n}"
            config = workdir / f"{client_id}.yaml"
            config.write_text(yaml.safe_dump({
                "database_url": database_url, "evidence_dir": str(workdir / "evidence"),
                "dispatch_config": str(REPO / "config" / "demo" / "dispatch.yaml"), "mqtt_port": broker_port,
                "mqtt_password": password, "mqtt_client_id": client_id, "api_port": port,
                "ingest_share_group": f"bench-{count}", "ingest_batch_size": batch_size}))
            self.processes.append(subprocess.Popen([sys.executable, "-m", "gridwatch", "--log-level", "ERROR",
                                                    "server", "--config", str(config)], cwd=REPO))
            self.ports.append(port)
            self.client_ids.append(client_id)
        for port, process in zip(self.ports, self.processes, strict=True):
            wait_for_port("127.0.0.1", port, 120, process)
            wait_for(lambda port=port: self.connected(port), 1, "worker connects", timeout=60, every=0.2)
        time.sleep(1)  # the subscriptions' acknowledgements follow the connections

    def batches(self) -> tuple[float, float, float, float, float]:
        """(batches written, messages in them, seconds spent writing them, batches written again because another
        worker wrote the same rows first, events postponed to a later batch because another worker held their
        case), all workers together, from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        totals = {"gridwatch_ingest_batch_messages_count": 0.0, "gridwatch_ingest_batch_messages_sum": 0.0,
                  "gridwatch_ingest_batch_seconds_sum": 0.0, "gridwatch_ingest_batch_retries_total": 0.0,
                  "postponed": 0.0}
        for port in self.ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:  # noqa: S310
                for family in text_string_to_metric_families(response.read().decode()):
                    for sample in family.samples:
                        if sample.name in totals:
                            totals[sample.name] += sample.value
                        elif sample.name == "gridwatch_ingest_messages_total" and \
                                sample.labels.get("outcome") == "postponed":
                            totals["postponed"] += sample.value
        return tuple(totals.values())

    @staticmethod
    def connected(port: int) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:  # noqa: S310
            return int(json.loads(response.read())["mqtt"] == "connected")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(60)
        for client_id in self.client_ids:
            forget_session(self.broker_port, self.password, client_id)


def forget_session(port: int, password: str, client_id: str) -> None:
    """End a stopped worker's broker session (it outlives the process, 24 h, so that a restarted worker gets what
    it had not acknowledged): a phase's workers do not come back, and their sessions' shared subscriptions would
    otherwise keep queueing every later message, evidence frames included, for no one — the broker's memory grows
    by hundreds of MB a phase and its periodic save stalls all traffic for a second."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set("gridwatch-server", password)
    client.connect("127.0.0.1", port, clean_start=True)  # session expiry 0: gone when this connection closes
    client.loop_start()
    wait_for(lambda: int(client.is_connected()), 1, "forget a worker's session", timeout=30, every=0.05)
    client.disconnect()
    client.loop_stop()


BARE_COUNTER = """
import sys, time, paho.mqtt.client as mqtt
port, password = int(sys.argv[1]), sys.argv[2]
times = []
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
client.username_pw_set("gridwatch-server", password)
client.on_message = lambda *_args: times.append(time.perf_counter())
client.on_subscribe = lambda *_args: print("ready", flush=True)
client.connect("127.0.0.1", port)
client.subscribe("gw/v1/nodes/+/#", qos=1)
client.loop_start()
while not times or time.perf_counter() - times[-1] < 3:
    time.sleep(0.1)
print(len(times), times[0], times[-1], flush=True)
"""
"""A bare paho subscriber that counts until nothing has come for 3 s: with a fleet of many processes the broker
may drop what a subscriber cannot take in time, so it reports what arrived and over how long."""


def bare_rate(port: int, password: str, messages, fleet: FleetProcesses) -> tuple[float, float]:
    """(events/s equivalent the bare subscriber took in, share of the messages it got)."""
    bare = subprocess.Popen([sys.executable, "-c", BARE_COUNTER, str(port), password], stdout=subprocess.PIPE,
                            text=True)
    assert bare.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    fleet.publish(messages)
    received, _first, last = bare.stdout.readline().split()
    bare.wait(10)
    share = int(received) / len(messages)
    return share * sum(1 for topic, *_ in messages if "/events/" in topic) / (float(last) - start), share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2000, help="Simulated edge nodes (default 2000).")
    parser.add_argument("--cameras", type=int, default=2, help="Cameras per node (default 2).")
    parser.add_argument("--events", type=int, default=12000, help="Events in each throughput run (default 12000).")
    parser.add_argument("--workers", default="1,2,4", help="Worker counts to measure (default 1,2,4).")
    parser.add_argument("--rate", type=float, default=300,
                        help="Messages/s (events, evidence, telemetry) of the latency runs (default 300).")
    parser.add_argument("--seconds", type=float, default=8, help="Length of each latency run (default 8).")
    parser.add_argument("--telemetry-every", type=int, default=20,
                        help="A node's telemetry after every this many events (default 20).")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Rounds of the worker counts, interleaved (1, 2, 4, 1, 2, 4 ...): this machine's load "
                             "drifts over minutes, and interleaving spreads the drift over every count; each count's "
                             "figures are the median of its rounds (default 2).")
    parser.add_argument("--batch-size", type=int, default=500,
                        help="Each worker's ingest_batch_size: messages written in one transaction (default 500).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json",
                        help="Where to write the JSON figures.")
    args = parser.parse_args()
    counts = [int(count) for count in args.workers.split(",")]
    node_ids = [f"node-{n:02d}" for n in range(args.nodes)]
    throughput = city_mix(args.events, args.nodes, args.cameras, 1, args.telemetry_every)
    events = sum(1 for topic, *_ in throughput if "/events/" in topic)
    phases: list[dict] = []
    postgres = PostgresServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            creds = generate_users(workdir / "broker", node_ids, ["integrator"])
            with Broker(workdir / "broker" / "data", workdir / "broker" / "passwd") as broker:
                fleet = FleetProcesses(broker.port, {node: creds.nodes[node] for node in node_ids})
                bare_before = bare_rate(broker.port, creds.server_password, throughput, fleet)
                for round_, count in ((round_, count) for round_ in range(1, args.rounds + 1) for count in counts):
                    database_url = postgres.create_database()
                    engine = create_engine(database_url)
                    workers = Workers(count, workdir, database_url, broker.port, creds.server_password,
                                      args.batch_size)
                    try:
                        start, cpu_before, batches_before = time.perf_counter(), cpu_seconds(), workers.batches()
                        locks = LockWaits(engine)
                        threading.Thread(target=fleet.publish, args=(throughput,), daemon=True).start()
                        samples = follow(engine, events, f"{count} worker(s)", start)
                        seconds = samples[-1][0] - start
                        waits = locks.stop()
                        cores = {group: round((used - cpu_before[group]) / seconds, 2)
                                 for group, used in cpu_seconds().items()}
                        count_, messages_, writing, retried, postponed = (after - before for after, before
                                                      in zip(workers.batches(), batches_before, strict=True))
                        phases.append({"round": round_, "workers": count, "events_per_s": round(events / seconds, 1),
                                     "events_per_s_sustained": round(sustained_rate(samples, events), 1),
                                     "cores_used": cores | {"all": round(sum(cores.values()) - cores["machine"], 2)},
                                     "batches": {"count": int(count_), "mean_messages": round(messages_ / count_, 1),
                                                 "mean_ms": round(1000 * writing / count_, 1),
                                                 "writing_share": round(writing / seconds / count, 2),
                                                 "written_again": int(retried),
                                                 "events_postponed": int(postponed)},
                                     "database": waits,
                                     **latency(fleet, broker.port, creds, engine, args, count)})
                    finally:
                        workers.stop()
                        engine.dispose()
                bare_after = bare_rate(broker.port, creds.server_password, throughput, fleet)
                fleet.close()
    finally:
        postgres.stop()
    figures = {
        "benchmark": "scale", "database": "postgresql", "fleet": f"{args.nodes} nodes x {args.cameras} cameras",
        "mix": f"{events} events (new with its evidence frame / update heartbeats / end; parking 60 %, litter 20 %, "
               f"vending 20 %) and {len(throughput) - events} evidence and telemetry messages",
        "raw_subscribe_per_s": [round(bare_before[0], 1), round(bare_after[0], 1)],
        "raw_subscriber_got": [round(bare_before[1], 3), round(bare_after[1], 3)],
        "latency_rate_per_s": args.rate, "batch_size": args.batch_size, "rounds": args.rounds,
        "runs": summarise(phases, counts), "phases": phases,
    }
    report(figures, args.out)
    return 0


def latency(fleet: FleetProcesses, port: int, creds, engine, args, count: int) -> dict:
    """Publish -> the case's first message, each `new` at a new place, at a steady rate."""
    paced = city_mix(int(args.rate * args.seconds), args.nodes, args.cameras, seed=2 + count,
                     telemetry_every=args.telemetry_every, new_places=True)
    arrived: dict[str, float] = {}

    def on_case(_client, _userdata, message) -> None:
        body = json.loads(message.payload)
        if body.get("action") == "collect":
            arrived.setdefault(body["violation_id"], time.perf_counter())

    watcher = subscriber(port, "integrator", creds.integrators["integrator"], "gw/v1/cases/#", on_case)
    before = stored_events(engine)
    sent = fleet.publish(paced, interval=1 / args.rate)
    events = sum(1 for topic, *_ in paced if "/events/" in topic)
    wait_for(lambda: stored_events(engine) - before, events, "paced", every=0.2)
    time.sleep(1)
    watcher.disconnect()
    watcher.loop_stop()
    latencies = sorted(arrived[violation] - at for violation, at in sent.items() if violation in arrived)
    return {"latency_samples": len(latencies),
            "latency_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "latency_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None}


if __name__ == "__main__":
    sys.exit(main())
