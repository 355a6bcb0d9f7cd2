"""The edge outbox through an outage: how many events it holds while the broker is away, and how fast it drains
when the broker returns, against the rate of publishing fresh events — both measured in one run.

Writes bench/results/edge_outbox.json.

    .venv/bin/python bench/edge_outbox.py [--backlog 100000] [--fresh 20000] [--qos 2]

- fresh_events_per_second: events written to the outbox and published as they are made (the node's normal path:
  on disk first, then QoS 2 to the broker, deleted on PUBCOMP), with the broker up;
- outage: the broker stopped, `--backlog` events written (put rate, outbox size on disk), the broker started;
- drain_events_per_second: from the broker's return until the outbox is empty; drain_to_fresh_ratio (goal >= 0.5);
- received: distinct events a subscriber (the server role, persistent session) counted, which must equal
  everything written.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))

from results_io import report  # noqa: E402

from edge.comms import NodeLink  # noqa: E402
from edge.config import MqttConfig  # noqa: E402
from edge.outbox import EVENT, Outbox  # noqa: E402
from edge.outbox_sender import OutboxSender  # noqa: E402
from gridwatch.broker import Broker, generate_users  # noqa: E402
from gridwatch.contract import SUBSCRIBE_EVENTS, event_topic  # noqa: E402
from tests.factories import event_payload  # noqa: E402

TOPIC = event_topic("node-a", "illegal_parking")


class Counter:
    """The server role with a persistent session: counts the distinct events it receives."""

    def __init__(self, port: int, password: str) -> None:
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter", protocol=mqtt.MQTTv5)
        self.client.username_pw_set("gridwatch-server", password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(SUBSCRIBE_EVENTS, qos=1)
        self.client.reconnect_delay_set(1, 2)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        event_id = json.loads(message.payload)["event_id"]
        with self.lock:
            self.seen.add(event_id)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def payloads(count: int) -> list[bytes]:
    template = event_payload()
    return [json.dumps({**template, "event_id": str(uuid.uuid4()), "violation_id": str(uuid.uuid4())}).encode()
            for _ in range(count)]


def wait_drained(outbox: Outbox, total: int, label: str, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    with tqdm(total=total, desc=label, unit="event", leave=False) as bar:
        while (depth := outbox.depth) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {depth} events still in the outbox after {timeout} s")
            bar.update(total - depth - bar.n)
            time.sleep(0.05)
        bar.update(total - bar.n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=100_000, help="Events made during the outage (100,000).")
    parser.add_argument("--fresh", type=int, default=20_000, help="Events published live first (20,000).")
    parser.add_argument("--qos", type=int, choices=(1, 2), default=2, help="QoS of the outbox (the node's default 2).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "edge_outbox.json",
                        help="Where to write the JSON figures.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        creds = generate_users(work / "broker", ["node-a"], [])
        broker = Broker(work / "broker" / "data", work / "broker" / "passwd").start()
        counter = Counter(broker.port, creds.server_password)
        outbox = Outbox(work / "outbox.db", max_bytes=2 * 1024**3)
        link = NodeLink("node-a", MqttConfig(port=broker.port, password=creds.nodes["node-a"]), work / "node")
        sender = OutboxSender(outbox, link, qos=args.qos)
        stop = threading.Event()
        link.start()
        threading.Thread(target=sender.run, args=(stop,), daemon=True).start()
        try:
            # 1. fresh events, published as they are made
            fresh = payloads(args.fresh)
            started = time.perf_counter()
            for payload in tqdm(fresh, desc="fresh: made", unit="event", leave=False):
                outbox.put(TOPIC, payload, EVENT)
            wait_drained(outbox, args.fresh, "fresh: acknowledged")
            fresh_seconds = time.perf_counter() - started

            # 2. the outage: the broker goes, events pile up on disk
            broker.stop()
            backlog = payloads(args.backlog)
            started = time.perf_counter()
            for payload in tqdm(backlog, desc="outage: made", unit="event", leave=False):
                outbox.put(TOPIC, payload, EVENT)
            put_seconds = time.perf_counter() - started
            held, held_bytes = outbox.depth, outbox.size_bytes

            # 3. the broker returns: the backlog drains
            broker.start()
            started = time.perf_counter()
            wait_drained(outbox, held, "drain: acknowledged")
            drain_seconds = time.perf_counter() - started
            deadline = time.monotonic() + 120
            while counter.count < args.fresh + args.backlog and time.monotonic() < deadline:
                time.sleep(0.1)
            received = counter.count
        finally:
            stop.set()
            link.stop()
            counter.close()
            broker.stop()

    fresh_rate = args.fresh / fresh_seconds
    drain_rate = held / drain_seconds
    figures = {
        "benchmark": "edge_outbox",
        "qos": args.qos,
        "event_bytes": len(fresh[0]),
        "fresh_events": args.fresh,
        "fresh_events_per_second": round(fresh_rate, 1),
        "outage_events_held": held,
        "outage_outbox_megabytes": round(held_bytes / 1024**2, 1),
        "outage_put_events_per_second": round(args.backlog / put_seconds, 1),
        "drain_events_per_second": round(drain_rate, 1),
        "drain_seconds": round(drain_seconds, 1),
        "drain_to_fresh_ratio": round(drain_rate / fresh_rate, 3),
        "received_distinct": received,
        "lost": args.fresh + args.backlog - received,
    }
    report(figures, args.out)
    return 0 if received == args.fresh + args.backlog else 1


if __name__ == "__main__":
    sys.exit(main())
