"""The review queue under a long backlog: how long an operator waits for the next detection with 10,000 pending.

Seeds a SQLite database through the server's own ingest with `--pending` doubtful litter detections (each with its
frame and crop, as a node sends them), serves it with `gridwatch server` in its own process, and drives the console
in headless Chromium (Debian's, through Playwright) as an operator does:

1. `queue_load_ms`: open the review page and log in, until the first detection's evidence is on screen.
2. `next_ms_*`: press J (next) `--steps` times; each time, until the next detection's frame has loaded.
3. `decide_ms_*`: press C (confirm) or F (false positive) `--steps` times; each time, until the next detection's
   frame has loaded. Afterwards the server must hold exactly those decisions (checked, not assumed).

The goal is under 200 ms to the next item. Writes bench/results/console.json.

    .venv/bin/python bench/console_bench.py [--pending 10000] [--steps 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import cv2
import yaml
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))

from results_io import report  # noqa: E402

from gridwatch.broker import free_port, wait_for_port  # noqa: E402
from gridwatch.contract import SCHEMA_VERSION, event_topic, evidence_topic  # noqa: E402
from gridwatch.demo_media import ultralytics_asset  # noqa: E402
from server.core.security import hash_token  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "gw_bench_operator"
SHOWN = """(before) => {
  const detail = document.querySelector('#review-detail');
  const frame = detail && detail.querySelector('img.frame');
  return detail && detail.dataset.caseId !== before && frame && frame.src.startsWith('blob:')
    && frame.complete && frame.naturalWidth > 0;
}"""
"""True once the review page shows another detection than `before`, with its frame loaded."""


def images() -> list[tuple[bytes, bytes]]:
    """(frame, crop) JPEGs from the street photos ultralytics ships, so the evidence is real-sized."""
    pairs = []
    for name in ("bus.jpg", "zidane.jpg"):
        image = cv2.imread(str(ultralytics_asset(name)))
        height, width = image.shape[:2]
        crop = image[height // 2:, : width // 3]
        pairs.append((cv2.imencode(".jpg", image)[1].tobytes(), cv2.imencode(".jpg", crop)[1].tobytes()))
    return pairs


def seed(database_url: str, evidence_dir: Path, pending: int) -> None:
    """`pending` doubtful detections (score 0.4: they wait for an operator), each at its own place, through the
    server's ingest as if they came from the broker."""
    from server.db import Database
    from server.services.cases import CaseService
    from server.services.dispatch import Dispatcher
    from server.services.evidence import EvidenceStore
    from server.services.ingest import Ingest

    ingest = Ingest(Database(database_url), CaseService(Dispatcher.from_file(REPO / "config/demo/dispatch.yaml")),
                    EvidenceStore(evidence_dir), publish_case=lambda _message: None)
    pairs = images()
    now = datetime.now(UTC).isoformat()
    batch: list[tuple[str, bytes]] = []
    for n in tqdm(range(pending), desc="seeding detections", unit="det"):
        frame, crop = pairs[n % len(pairs)]
        event_id = f"00000000-0000-4000-8000-{n:012d}"
        payload = {
            "schema_version": SCHEMA_VERSION, "event_id": event_id, "violation_id": f"10000000-0000-4000-8000-{n:012d}",
            "type": "new", "node_id": f"node-{n % 50:02d}", "camera_id": f"cam-{n % 8}", "zone_id": f"kerb-{n}",
            "category": "litter", "code": "0102", "label": "garbage", "track_id": n, "started_at": now,
            "observed_at": now, "dwell_seconds": 200.0, "score": 0.4,
            "box": {"x1": 0.05, "y1": 0.5, "x2": 0.3, "y2": 0.9},
            "location": {"lat": 30.2 + (n // 100) * 0.001, "lon": 120.1 + (n % 100) * 0.001},
            "model": {"name": "yolo11n", "version": "8.3"},
            "evidence": {"sha256": hashlib.sha256(frame).hexdigest(), "bytes": len(frame),
                         "crop": {"sha256": hashlib.sha256(crop).hexdigest(), "bytes": len(crop),
                                  "region": {"x1": 0.0, "y1": 0.5, "x2": 0.33, "y2": 1.0}}},
        }
        node = payload["node_id"]
        batch += [(evidence_topic(node, event_id), frame), (evidence_topic(node, event_id, crop=True), crop),
                  (event_topic(node, "litter"), json.dumps(payload).encode())]
        if len(batch) >= 600 or n == pending - 1:
            outcomes = ingest.handle_batch(batch)
            assert set(outcomes) == {"stored"}, f"seeding failed: {set(outcomes)}"
            batch = []


def collected(api: str) -> int:
    request = urllib.request.Request(f"{api}/api/v1/cases?status=collected&page_size=1",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own local server
        return json.loads(response.read())["total"]


def percentiles(samples: list[float], name: str) -> dict[str, float]:
    ordered = sorted(samples)
    return {f"{name}_p50": round(statistics.median(ordered), 1),
            f"{name}_p95": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
            f"{name}_max": round(ordered[-1], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=10000, help="Detections waiting in the queue (default 10000).")
    parser.add_argument("--steps", type=int, default=100, help="Moves, and decisions, timed (default 100).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "console.json",
                        help="Where to write the JSON figures.")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        database_url = f"sqlite:///{workdir / 'console.db'}"
        seed(database_url, workdir / "evidence", args.pending)
        (workdir / "tokens.yaml").write_text(yaml.safe_dump({"tokens": [
            {"name": "bench operator", "role": "operator", "sha256": hash_token(TOKEN)}]}))
        port = free_port()
        (workdir / "server.yaml").write_text(yaml.safe_dump({
            "database_url": database_url, "evidence_dir": str(workdir / "evidence"),
            "dispatch_config": str(REPO / "config" / "demo" / "dispatch.yaml"), "ingest_enabled": False,
            "tokens_file": str(workdir / "tokens.yaml"), "api_port": port}))
        server = subprocess.Popen([sys.executable, "-m", "gridwatch", "--log-level", "WARNING", "server",
                                   "--config", str(workdir / "server.yaml")], cwd=REPO)
        try:
            wait_for_port("127.0.0.1", port, 60, server)
            api = f"http://127.0.0.1:{port}"
            assert collected(api) == args.pending
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                start = time.perf_counter()
                page.goto(f"{api}/console/#/review")
                page.fill("#token", TOKEN)
                page.click("button[type=submit]")
                page.wait_for_function(SHOWN, arg="", polling=5, timeout=60_000)
                load_ms = 1000 * (time.perf_counter() - start)
                title = page.inner_text("h1")

                def timed(key: str) -> float:
                    before = page.get_attribute("#review-detail", "data-case-id")
                    began = time.perf_counter()
                    page.keyboard.press(key)
                    page.wait_for_function(SHOWN, arg=before, polling=5, timeout=10_000)
                    return 1000 * (time.perf_counter() - began)

                moves = [timed("j") for _ in tqdm(range(args.steps), desc="next", leave=False)]
                decisions = [timed("cf"[n % 2]) for n in tqdm(range(args.steps), desc="decide", leave=False)]
                deadline = time.monotonic() + 60
                while collected(api) != args.pending - args.steps and time.monotonic() < deadline:
                    time.sleep(0.2)  # the decisions' requests run behind the screen
                left = collected(api)
                browser.close()
        finally:
            server.terminate()
            server.wait(30)

    assert left == args.pending - args.steps, f"{args.pending - left} decisions reached the server, not {args.steps}"
    assert str(args.pending) in title, title
    figures = {"benchmark": "console review queue", "pending": args.pending, "steps": args.steps,
               "queue_load_ms": round(load_ms, 1), **percentiles(moves, "next_ms"),
               **percentiles(decisions, "decide_ms"), "decisions_stored": args.pending - left,
               "goal_ms": 200, "browser": "Debian chromium, headless, 1366x768"}
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
