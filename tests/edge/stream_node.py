"""A node process for the crash test: it streams events with evidence through the real outbox and link, one every
few milliseconds, and notes in a ledger how far it got, so a restarted process goes on from there. Event ids are
derived from the event number: an event made twice (written, then killed before the ledger moved) is recognised
by the server like any redelivery.

    python -m tests.edge.stream_node STATE_DIR PORT PASSWORD COUNT
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import uuid
from pathlib import Path

from edge.comms import NodeLink
from edge.config import MqttConfig
from edge.outbox import EVENT, EVIDENCE, Outbox
from edge.outbox_sender import OutboxSender
from gridwatch.contract import event_topic, evidence_topic
from tests.factories import event_payload, jpeg

NAMESPACE = uuid.UUID("6f1c2a52-0000-4000-8000-000000000000")


def event_id(number: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"event-{number}"))


def main(state: Path, port: int, password: str, count: int) -> None:
    ledger = state / "next"
    start = int(ledger.read_text()) if ledger.exists() else 0
    outbox = Outbox(state / "outbox.db")
    link = NodeLink("node-a", MqttConfig(port=port, password=password), state)
    sender = OutboxSender(outbox, link, window=20)
    stop = threading.Event()
    link.start()
    threading.Thread(target=sender.run, args=(stop,), daemon=True).start()
    for number in range(start, count):
        image = jpeg(seed=number)
        payload = event_payload(event_id=event_id(number), violation_id=str(uuid.uuid5(NAMESPACE, f"v-{number}")),
                                evidence={"sha256": hashlib.sha256(image).hexdigest(), "bytes": len(image)})
        outbox.put(evidence_topic("node-a", payload["event_id"]), image, EVIDENCE)
        outbox.put(event_topic("node-a", "illegal_parking"), json.dumps(payload).encode(), EVENT)
        ledger.write_text(str(number + 1))
        print(number, flush=True)
        time.sleep(0.004)
    while outbox.depth:
        time.sleep(0.05)
    stop.set()
    link.stop_gracefully()
    print("drained", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
