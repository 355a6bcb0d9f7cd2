"""The training-data export as a city runs it: years of verdicts and gigabytes of crops, fetched again and again."""

from __future__ import annotations

import io
import json
import os
import tempfile
import tracemalloc
import zipfile
from datetime import UTC, datetime, timedelta

from gridwatch.contract import Category
from server.db import Database
from server.models import DetectionReview, EventRecord, EvidenceRecord
from server.services.evidence import EvidenceStore
from server.services.training_data import export_dataset
from tests.factories import event_payload, jpeg
from tests.server.test_feedback_rounds import BOX, REGION, detect

GARBAGE = {"classes": "garbage", "category": "litter"}


def review(api, event_id: str, verdict: str, reason: str | None = None) -> None:
    assert api.put(f"/api/v1/events/{event_id}/review", json={"verdict": verdict, "reason": reason}).status_code == 200


def exported(response) -> tuple[set[str], dict]:
    """The event ids of the images in an export, and its export.json."""
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    return ({name.removeprefix("images/").removesuffix(".jpg") for name in archive.namelist()
             if name.startswith("images/") and not name.endswith("/")}, json.loads(archive.read("export.json")))


def test_an_export_since_the_last_one_takes_only_the_verdicts_given_since(api, monkeypatch):
    """Found by review: every export repeated every verdict ever given, a city's years of crops each time; now the
    last export's `until` fetches only what is new (a verdict changed meanwhile comes again, as it stands), and
    export.json says when each verdict was given."""
    from server.services import training_data

    monkeypatch.setattr(training_data, "SETTLE", timedelta(0))  # five minutes in service: the next test
    november, changed = detect(api, 0.5, seed=1)["event_id"], detect(api, 0.5, seed=2)["event_id"]
    review(api, november, "confirmed")
    review(api, changed, "confirmed")
    first = api.get("/api/v1/training-data", params=GARBAGE)
    images, summary = exported(first)
    assert images == {november, changed} and summary["since"] is None
    assert first.headers["X-Verdicts-Until"] == summary["until"]
    at = {item["event_id"]: datetime.fromisoformat(item["at"]) for item in summary["exported"]}
    assert set(at) == {november, changed} and all(moment <= datetime.fromisoformat(summary["until"])
                                                  for moment in at.values())

    december = detect(api, 0.5, seed=3)["event_id"]
    review(api, december, "confirmed")
    review(api, changed, "rejected", "false_positive")  # the operator changed their mind
    later = api.get("/api/v1/training-data", params={**GARBAGE, "since": summary["until"]})
    images, update = exported(later)
    assert images == {december, changed}
    assert (update["since"], later.headers["X-Verdicts-Since"]) == (summary["until"], summary["until"])
    assert (update["positives"], update["negatives"]) == (1, 1)
    assert {item["event_id"]: item["verdict"] for item in update["exported"]} == {december: "confirmed",
                                                                                 changed: "rejected"}
    naive = api.get("/api/v1/training-data", params={**GARBAGE, "since": "2026-12-01T00:00:00"})
    assert naive.status_code == 422 and "time zone" in naive.json()["detail"]


def test_a_verdict_still_being_written_as_an_export_reads_comes_in_the_next_one(api):
    """Found by review: a verdict is stamped as its transaction writes it; one not yet committed when an export
    read (an operator's step, an ingest batch waiting for its locks) was neither in that export nor, stamped before
    its `until`, in the next one asked since then. An export's `until` now lies a few minutes back."""
    from server.services.feedback import Verdict
    from server.services.feedback import review as give

    event = detect(api, 0.5, seed=1)["event_id"]
    store = api.app.state.evidence
    with api.app.state.database.session() as writing:
        give(writing, event, Verdict.CONFIRMED, None, "operator", None, commit=False)  # not committed yet
        with api.app.state.database.session() as reading:
            first = export_dataset(reading, store, ["garbage"], tempfile.TemporaryFile(), Category.LITTER)
        writing.commit()
    assert first["exported"] == []
    with api.app.state.database.session() as reading:
        second = export_dataset(reading, store, ["garbage"], tempfile.TemporaryFile(), Category.LITTER,
                                datetime.fromisoformat(first["until"]))
    assert [item["event_id"] for item in second["exported"]] == [event]


def test_a_crop_too_small_to_train_on_is_left_out_with_the_reason(api):
    """Found by review: a crop under 10 px on a side (a bag far down the street) was exported as a positive, which
    training then dropped as a corrupt image: counted as learned, never learned."""
    far, near = (detect(api, 0.5, seed=1, crop_size=(8, 6))["event_id"],
                 detect(api, 0.5, seed=2, crop_size=(10, 10))["event_id"])
    review(api, far, "confirmed")
    review(api, near, "confirmed")
    images, summary = exported(api.get("/api/v1/training-data", params=GARBAGE))
    assert images == {near} and summary["positives"] == 1
    left_out = {item["event_id"]: item["reason"] for item in summary["left_out"]}
    assert "8x6 px, under 10 px on a side" in left_out[far]


def test_an_export_of_many_crops_is_written_a_crop_at_a_time_and_the_jpegs_kept_as_they_are(database_url, tmp_path):
    """Found by review: the export built the whole zip in memory (200 crops of 1 MiB: 201 MiB more, and nothing
    sent before the end), read each crop's row with a query of its own, and compressed the JPEGs again (4 s)."""
    database, store = Database(database_url), EvidenceStore(tmp_path / "evidence")
    head, crops, size = jpeg(width=40, height=30), 40, 1 << 20
    with database.session() as session:
        for _ in range(crops):
            data = head + os.urandom(size)  # a large crop: incompressible, as a JPEG is
            sha256 = store.put(data)
            payload = event_payload(category="litter", code="0102", label="garbage", box=BOX, evidence={
                "sha256": "0" * 64, "bytes": 1, "crop": {"sha256": sha256, "bytes": len(data), "region": REGION}})
            now = datetime.now(UTC)
            session.add(EventRecord(event_id=payload["event_id"], violation_id=payload["violation_id"], type="new",
                                    node_id="node-a", camera_id="cam-1", zone_id="kerb", category="litter",
                                    code="0102", started_at=now, observed_at=now, payload=payload))
            session.add(EvidenceRecord(event_id=payload["event_id"], variant="crop", node_id="node-a",
                                       sha256=sha256, bytes=len(data)))
            session.add(DetectionReview(event_id=payload["event_id"], verdict="confirmed", reviewer="op"))
        session.commit()
    tracemalloc.start()
    try:
        with database.session() as session, tempfile.TemporaryFile() as out:
            summary = export_dataset(session, store, ["garbage"], out, Category.LITTER)
            peak = tracemalloc.get_traced_memory()[1]
            out.seek(0)
            archive = zipfile.ZipFile(out)
            stored = {archive.getinfo(name).compress_type for name in archive.namelist() if name.endswith(".jpg")}
            assert len(archive.namelist()) == 2 * crops + 3, "images and labels, their folders, export.json"
    finally:
        tracemalloc.stop()
    assert summary["positives"] == crops
    assert peak < 8 * size, f"{peak / size:.0f} MiB held for {crops} MiB of crops"
    assert stored == {zipfile.ZIP_STORED}


def test_an_export_the_client_leaves_half_read_frees_its_file_at_once(api, api_tokens):
    """Found by review: the zip was streamed by a plain generator Starlette runs in a thread; a client going away
    (a training run's time-out) left it suspended, the whole zip held on disk until a garbage collection."""
    import socket
    import threading
    import time

    import uvicorn

    from gridwatch.broker import free_port
    from tests.factories import wait_until

    for seed in range(12):  # some 18 MB: more than the loopback's socket buffers take while the client reads none
        review(api, detect(api, 0.5, seed=seed, crop_size=(1200, 900))["event_id"], "confirmed")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_until(lambda: server.started, timeout=30)
    evidence = str(api.app.state.evidence.root)

    def held() -> list[str]:
        return [target for fd in os.listdir("/proc/self/fd")
                if (target := _link(f"/proc/self/fd/{fd}")) and target.startswith(evidence)]

    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(f"GET /api/v1/training-data?classes=garbage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                           f"{api_tokens['admin']}\r\n\r\n".encode())
            assert b"200 OK" in client.recv(1024)
            wait_until(lambda: held(), timeout=10)
        time.sleep(1.0)
        assert held() == [], "closed, and so deleted, within a second of the client going away"
    finally:
        server.should_exit = True


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def test_a_box_cut_to_nothing_at_the_frame_edge_is_left_out_and_the_rest_trains(api, tmp_path):
    """Found by review: a detection whose box the frame's edge cut to no width (the contract allows x1 == x2) was
    exported as a label without an area, and training refused the whole export for it, at every retraining."""
    from gridwatch.feedback_sets import extra_training_images

    flat = detect(api, 0.5, seed=1, box={"x1": 0.5, "y1": 0.52, "x2": 0.5, "y2": 0.68})["event_id"]
    good = detect(api, 0.5, seed=2)["event_id"]
    review(api, flat, "confirmed")
    review(api, good, "confirmed")
    response = api.get("/api/v1/training-data", params=GARBAGE)
    images, summary = exported(response)
    assert images == {good}
    assert {item["event_id"]: item["reason"] for item in summary["left_out"]} == {
        flat: "its box has no width or height inside its crop"}
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(tmp_path / "export")
    assert [image.stem for image, _labels in extra_training_images([tmp_path / "export"], ["garbage"])] == [good]


def test_an_export_with_nothing_new_adds_nothing_to_training_instead_of_stopping_it(api, tmp_path, monkeypatch):
    """Found by review: an export holding no image (a quiet week's `since` export) unzipped without images/, and
    training refused it as a folder that is no dataset."""
    from gridwatch.feedback_sets import extra_training_images
    from server.services import training_data

    monkeypatch.setattr(training_data, "SETTLE", timedelta(0))
    event = detect(api, 0.5, seed=1)["event_id"]
    review(api, event, "confirmed")
    _images, first = exported(api.get("/api/v1/training-data", params=GARBAGE))
    quiet = api.get("/api/v1/training-data", params={**GARBAGE, "since": first["until"]})
    assert exported(quiet)[0] == set()
    zipfile.ZipFile(io.BytesIO(quiet.content)).extractall(tmp_path / "quiet")
    assert extra_training_images([tmp_path / "quiet"], ["garbage"]) == []
