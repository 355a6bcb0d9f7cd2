"""Builders of valid contract payloads for tests; each test overrides only what it is about."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np

from gridwatch.contract import SCHEMA_VERSION

CST = timezone(timedelta(hours=8))


def event_payload(**overrides) -> dict:
    payload = {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(uuid.uuid4()),
        "violation_id": str(uuid.uuid4()),
        "type": "new",
        "node_id": "node-a",
        "camera_id": "cam-1",
        "zone_id": "gate",
        "category": "illegal_parking",
        "code": "0505",
        "label": "car",
        "track_id": 3,
        "started_at": datetime(2026, 11, 23, 9, 0, tzinfo=CST).isoformat(),
        "observed_at": datetime(2026, 11, 23, 9, 3, tzinfo=CST).isoformat(),
        "dwell_seconds": 180.0,
        "score": 0.8,
        "box": {"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.4},
        "location": {"lat": 30.27415, "lon": 120.15515},
        "model": {"name": "yolo11n", "version": "8.3"},
    }
    payload.update(overrides)
    return payload


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def start_node(running_broker, state_dir, outbox, qos: int = 1, window: int = 10, port: int | None = None):  # noqa: ANN001, ANN201
    """node-a's link and outbox sender, as a node runs them (through `port` if given, e.g. a proxy); returns the
    function that stops them."""
    from edge.comms import NodeLink
    from edge.config import MqttConfig
    from edge.outbox_sender import OutboxSender

    link = NodeLink("node-a", MqttConfig(port=port or running_broker.port,
                                         password=running_broker.credentials.nodes["node-a"]), state_dir)
    sender = OutboxSender(outbox, link, window=window, qos=qos)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    link.start()
    thread.start()

    def shutdown() -> None:
        stop.set()
        thread.join(5)
        link.stop()

    shutdown.link, shutdown.sender = link, sender
    return shutdown
