"""The salvage of a damaged outbox against what else goes wrong: a damage only SQLite's check of every page finds, a
node killed while it sets the damaged copy aside, a second power cut before the copy is done, an outbox with no room
for all of it, a disk full while room is made, rows the damage garbled or made unreadable. What still reads arrives
once, in order, and what cannot is counted."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from edge import outbox as outbox_module
from edge import outbox_salvage as salvage
from edge.node import end_what_was_left_open
from edge.outbox import EVENT, EVIDENCE, Outbox
from tests.edge.test_outbox_pressure import (
    TOPIC,
    damage_an_index_page,
    damaged_copies,
    damaged_on_a_small_card,
    event,
    fill_the_disk,
    image_topic,
)
from tests.factories import event_payload, start_node, wait_until

REPOSITORY = Path(__file__).resolve().parents[2]
KILLED_AT = r'''
import os, pathlib, sys
from edge import outbox_salvage
from edge.outbox import Outbox
step, calls = sys.argv[2], []
if step == "begin":
    def begin(*_args):
        os._exit(137)
    outbox_salvage.begin = begin
else:  # the nth file moved
    replace = pathlib.Path.replace
    def killed(self, target):
        calls.append(self)
        if len(calls) == int(step):
            os._exit(137)
        return replace(self, target)
    pathlib.Path.replace = killed
Outbox(pathlib.Path(sys.argv[1]))
'''


@pytest.mark.parametrize("step", ["begin", "1", "2", "3", "4"])
def test_a_node_killed_while_it_sets_a_damaged_outbox_aside_salvages_it_at_its_next_start(tmp_path, step):
    """Found by review: killed after the damaged file was moved and before the new outbox recorded it, the next
    start found a sound, empty outbox and the whole backlog in a file nobody read again. The power cut leaves the
    damaged file its WAL (a count written since the last checkpoint), which must move with it."""
    running, path = tmp_path / "running", tmp_path / "outbox.db"
    running.mkdir()
    outbox = Outbox(running / "outbox.db")
    payloads = [event(dwell_seconds=float(number)) for number in range(300)]
    for payload in payloads:
        outbox.put(TOPIC, payload, EVENT)
    outbox._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    outbox._db.execute("PRAGMA wal_autocheckpoint = 0")
    outbox._db.execute("INSERT INTO counters (name, value) VALUES ('refused_event', 1)")  # in the WAL only
    for suffix in ("", "-wal"):  # the power goes: the files as they are on the card
        shutil.copy(f"{running / 'outbox.db'}{suffix}", f"{path}{suffix}")
    [page] = outbox._db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'outbox_lane'").fetchone()
    outbox.close()
    shutil.rmtree(running)
    with path.open("r+b") as file:
        file.seek((page - 1) * 4096)
        file.write(bytes(range(256)) * 16)
    subprocess.run([sys.executable, "-c", KILLED_AT, str(path), step], cwd=REPOSITORY, check=False, timeout=60)
    restarted = Outbox(path)
    assert [message.payload for message in restarted.pending(limit=1000)] == payloads, "every message, once"
    assert restarted.counters() == {"refused_event": 1}
    assert damaged_copies(tmp_path) == [], "read to its end and deleted"
    assert [file.name for file in tmp_path.iterdir() if ".new" in file.name] == []


@pytest.mark.parametrize("damaged", ["outbox_violation", "watching"])
def test_a_damaged_page_the_first_reads_miss_is_found_at_the_start_and_the_backlog_salvaged(tmp_path, damaged):
    """Found by review: only damage that stopped the outbox's first reads was found at the start. A damaged index
    of violations, or list of what the node watched, failed every event put after it (malformed) and stopped the
    node's start at its first look, at every start, the backlog never salvaged."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    payloads = [event(type="new") for _ in range(200)]
    for payload in payloads:
        outbox.put(TOPIC, payload, EVENT)
    damage_an_index_page(outbox, path, of=damaged)
    restarted = Outbox(path)
    assert [message.payload for message in restarted.pending(limit=1000)] == payloads, "every message, in order"
    assert end_what_was_left_open(restarted) == 200, "what was watched, known again from the salvaged events"
    fresh = event(type="new")
    assert restarted.put(TOPIC, fresh, EVENT) is not None
    assert restarted.pending(limit=1000)[-1].payload == fresh
    assert damaged_copies(tmp_path) == [], "every message salvaged: the damaged copy is not kept"


def test_a_page_damaged_while_the_node_runs_costs_what_it_holds_not_the_start(tmp_path):
    """A card that garbles a page of what the node watched while it runs, after the start's check: the node ends
    none of it (logged) and starts all the same; the start after it finds the damage and salvages."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    for _ in range(200):
        outbox.put(TOPIC, event(type="new"), EVENT)
    outbox._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    [page] = outbox._db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'watching'").fetchone()
    with path.open("r+b") as file:
        file.seek((page - 1) * 4096)
        file.write(bytes(range(256)) * 16)
    other = sqlite3.connect(path, isolation_level=None)  # a write of another connection: the outbox reads afresh
    other.execute("INSERT INTO counters (name, value) VALUES ('refused_event', 1)")
    other.close()
    unstored: Counter[str] = Counter()
    assert end_what_was_left_open(outbox, unstored=unstored) == 0
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        outbox.put(TOPIC, event(type="new"), EVENT)
    outbox.close()
    restarted = Outbox(path)
    assert restarted.depth == 200 and damaged_copies(tmp_path) == []
    assert end_what_was_left_open(restarted, unstored=unstored) == 200 and not unstored


def test_a_salvage_copies_what_the_outbox_has_room_for_and_the_rest_as_sending_frees_it(tmp_path):
    """Found by review: the salvage took no notice of the outbox's limit nor of the disk's reserve, at the start or
    as the sender went on with it: it copied until the disk had not a byte free, and then new events were dropped
    and acknowledgements failed. What finds no room waits (not an error) for what sending frees."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    images = [bytes([number]) * 100_000 for number in range(30)]
    for number, image in enumerate(images):
        outbox.put(image_topic(number), image, EVIDENCE)
    damage_an_index_page(outbox, path)
    limit = 1_050_000  # room for ten of them
    restarted = Outbox(path, max_bytes=limit)
    assert restarted.salvaging and [message.payload for message in restarted.pending(limit=100)] == images[:10]
    assert restarted.put(TOPIC, event(type="new"), EVENT) is not None
    sent: list[bytes] = []
    while restarted.salvaging or restarted.pending(kind=EVIDENCE):
        assert restarted.size_bytes <= limit
        for message in restarted.pending(kind=EVIDENCE, limit=3):  # the broker takes three
            sent.append(message.payload)
            restarted.acknowledge(message.id)
        restarted.salvage_more(budget=5)
        assert len(sent) <= len(images), "nothing sent twice"
    assert sent == images, "each once, in order"
    assert restarted.counters() == {}, "nothing pushed out, nothing dropped"
    assert damaged_copies(tmp_path) == []


def new_and_end() -> list[bytes]:
    violation = event_payload()["violation_id"]
    return [event(type="new", violation_id=violation), event(type="end", violation_id=violation)]


def test_a_full_disk_pushes_out_as_many_small_events_as_the_new_ones_need_and_no_more(tmp_path):
    """Found by review: each event pushed out was deleted on its own before the new one was tried again, and
    bytes freed on a page other rows share free no page: the oldest events were gone and the new one raised
    anyway (of 300 new events, 145 lost besides 159 pushed out)."""
    outbox = Outbox(tmp_path / "outbox.db")
    for _ in range(100):
        for payload in new_and_end():
            outbox.put(TOPIC, payload, EVENT)
    fill_the_disk(outbox)
    news = [payload for _ in range(150) for payload in new_and_end()]
    assert all(outbox.put(TOPIC, payload, EVENT) is not None for payload in news)
    held = [message.payload for message in outbox.pending(limit=1000)]
    assert held == news[-len(held):], "the newest kept, in order"
    assert len(held) + outbox.counters()["dropped_event"] == 500, "each event held or counted"


def test_a_second_power_cut_before_a_salvage_is_done_salvages_both_copies(tmp_path, monkeypatch):
    """Found by review: a new outbox damaged while it still had a copy to salvage carried over its counters and
    what it watched but not that record, and the rest of the first copy was never read (22 of 30 images)."""
    path = tmp_path / "outbox.db"
    images = damaged_on_a_small_card(path, monkeypatch)
    cut_short = Outbox(path)
    assert cut_short.salvaging
    cut_short.close()
    monkeypatch.undo()
    again = sqlite3.connect(path, isolation_level=None)  # the power goes again, over the new outbox's index
    again.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    [page] = again.execute("SELECT rootpage FROM sqlite_master WHERE name = 'outbox_lane'").fetchone()
    again.close()
    with path.open("r+b") as file:
        file.seek((page - 1) * 4096)
        file.write(bytes(range(256)) * 16)
    restarted = Outbox(path)
    assert sorted(message.payload for message in restarted.pending(limit=100)) == images, "each image once"
    assert damaged_copies(tmp_path) == [], "both read to their end and deleted"


def test_rows_a_damage_garbled_are_counted_lost_and_the_rest_salvaged(tmp_path):
    """Found by review: a payload garbled to a number stopped every start of the node (bytes(-1)), and a row whose
    kind was garbled was copied into no lane: never sent, its bytes held against the limit for good."""
    Outbox(tmp_path / "outbox.db").close()
    aside = tmp_path / "outbox.db.damaged-20260101T000000"
    old = sqlite3.connect(aside, isolation_level=None)  # a damaged copy whose rows read, some garbled
    old.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB, kind TEXT, created REAL)")
    rows = [(image_topic(1), b"first", EVIDENCE), (image_topic(2), -1, EVIDENCE),
            (image_topic(3), b"x" * 1000, "evidencf"), (image_topic(4), b"last", EVIDENCE)]
    old.executemany("INSERT INTO outbox (topic, payload, kind, created) VALUES (?, ?, ?, 0)", rows)
    old.close()
    new = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    salvage.begin(new, aside, aside)
    new.close()
    restarted = Outbox(tmp_path / "outbox.db")
    assert [message.payload for message in restarted.pending()] == [b"first", b"last"]
    assert restarted.size_bytes == len(b"firstlast"), "nothing held that is never sent"
    assert restarted.counters() == {"dropped_salvage": 2}


def test_a_page_of_messages_that_does_not_read_costs_those_messages_counted_and_the_rest_is_salvaged(tmp_path):
    """Found by review: the salvage stopped at the first page that did not read, and every message after it (most
    of the backlog, for a page early in the file) stayed in the damaged copy, not counted anywhere."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    payloads = [event(dwell_seconds=float(number)) for number in range(300)]
    for payload in payloads:
        outbox.put(TOPIC, payload, EVENT)
    outbox._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    leaves = outbox._db.execute("SELECT pageno, ncell FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' "
                                "ORDER BY pageno").fetchall()
    outbox.close()
    page, on_it = leaves[len(leaves) // 3]  # a power cut over a page of messages a third of the way in
    with path.open("r+b") as file:
        file.seek((page - 1) * 4096)
        file.write(bytes(range(256)) * 16)
    restarted = Outbox(path)
    held = [message.payload for message in restarted.pending(limit=1000)]
    pairs = enumerate(zip(held, payloads, strict=False))
    start = next((index for index, (got, sent) in pairs if got != sent), len(held))
    assert held == payloads[:start] + payloads[start + on_it:], "all but the page's, in order"
    assert restarted.counters() == {"dropped_salvage": on_it}
    kept = [name for name in damaged_copies(tmp_path) if not name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1, "kept for a person: sqlite3's .recover may read more of it"


def test_a_node_started_with_a_salvage_cut_short_sends_the_whole_backlog_through_the_broker(
        running_broker, mqtt_client, tmp_path, monkeypatch):
    """The sender goes on with the salvage as what it sends frees room on the full card: every image of the damaged
    outbox reaches the broker, each once, in order, and the node's new event too."""
    subscriber = mqtt_client("gridwatch-server", session_expiry=3600)
    subscriber.subscribe("gw/v1/nodes/node-a/evidence/#", qos=1)
    subscriber.subscribe(TOPIC, qos=1)
    path = tmp_path / "outbox.db"
    images = damaged_on_a_small_card(path, monkeypatch)
    monkeypatch.setattr(outbox_module, "SALVAGE_RETRY_SECONDS", 0.2)
    outbox = Outbox(path)
    assert outbox.salvaging
    outbox.put(TOPIC, event(), EVENT)
    shutdown = start_node(running_broker, tmp_path, outbox, qos=1)
    try:
        wait_until(lambda: not outbox.salvaging and outbox.depth == 0, timeout=60)
    finally:
        shutdown()
    received = subscriber.collect(1.0)
    assert [message.payload for message in received if message.topic != TOPIC] == images
    assert sum(message.topic == TOPIC for message in received) == 1
    assert damaged_copies(tmp_path) == []


def test_an_outbox_its_node_closed_is_not_read_through_at_the_next_start_one_it_did_not_close_is(tmp_path, caplog):
    """Every page is read at a start to find damage a power cut left (512 MB take tens of seconds on an SD card):
    only after a run the node did not end by closing its outbox, or in which SQLite met damage."""
    import logging

    path = tmp_path / "outbox.db"
    caplog.set_level(logging.INFO, logger="edge.outbox_file")
    outbox = Outbox(path)
    outbox.put(TOPIC, event(), EVENT)
    outbox.close()
    caplog.clear()
    restarted = Outbox(path)
    assert "every page checked" not in caplog.text and restarted.depth == 1
    restarted._db.close()  # the power goes
    caplog.clear()
    after_the_cut = Outbox(path)
    assert "every page checked" in caplog.text and after_the_cut.depth == 1
    after_the_cut.close()


def test_damage_met_reading_rows_is_checked_and_salvaged_at_the_next_start(tmp_path):
    """Found by review: damage SQLite met past a statement's first row (as `left_open` reads what the node watched)
    went unnoticed, the outbox was marked closed, and every start after skipped the check: its violations were never
    ended, start after start."""
    import random

    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    for _ in range(3000):
        outbox.put(TOPIC, event(type="new"), EVENT)
    outbox.close()
    db = sqlite3.connect(path)
    [root] = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'watching'").fetchone()
    leaves = sorted(page for (page,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'watching' "
                                                   "AND pagetype = 'leaf'") if page != root)
    db.close()
    with path.open("r+b") as file:  # a leaf in the middle: the first rows read, the damage past them
        file.seek((leaves[len(leaves) // 2] - 1) * 4096)
        file.write(random.Random(1).randbytes(4096))
    damaged = Outbox(path)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        damaged.left_open()
    damaged.close()
    restarted = Outbox(path)  # checked, set aside, and salvaged whole: the damage lay in what the node watched
    assert restarted.depth == 3000 and len(restarted.left_open()) == 3000, "each of its violations to end"
