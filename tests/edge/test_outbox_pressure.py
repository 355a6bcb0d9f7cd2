"""The outbox under pressure: a disk that fills, a file another process holds or a power cut damaged, a backlog of
heartbeats, a node killed while it watched. What it holds is kept, or let go by its policy and counted."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tracemalloc
import uuid
from collections import Counter, namedtuple
from pathlib import Path

import pytest

from edge import outbox as outbox_module
from edge import outbox_policy
from edge.node import end_what_was_left_open
from edge.outbox import EVENT, EVIDENCE, Outbox, OutboxError
from edge.outbox_disk import DISK_CHECK_SECONDS, DISK_RESERVE
from gridwatch.contract import event_topic, evidence_topic
from tests.factories import event_payload

TOPIC = event_topic("node-a", "illegal_parking")
DiskUsage = namedtuple("DiskUsage", "total used free")


def event(**overrides) -> bytes:
    return json.dumps(event_payload(**overrides)).encode()


def image_topic(number: int) -> str:
    return evidence_topic("node-a", f"event-{number}")


def fill_the_disk(outbox: Outbox, pages_to_spare: int = 0) -> None:
    """The disk has room for `pages_to_spare` more of the outbox's pages (SQLite's own ceiling, as a full card)."""
    [pages] = outbox._db.execute("PRAGMA page_count").fetchone()
    outbox._db.execute(f"PRAGMA max_page_count = {pages + pages_to_spare}")


def free_the_disk(outbox: Outbox) -> None:
    outbox._db.execute("PRAGMA max_page_count = 1073741823")


def disk_with_free(monkeypatch, free: dict[str, int]) -> None:
    """The disk's free space, as the operating system reports it, is `free["bytes"]` (changed as the test goes)."""
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda _path: DiskUsage(2**36, 2**36 - free["bytes"], free["bytes"]))


def damage_an_index_page(outbox: Outbox, path: Path, of: str = "outbox_lane") -> None:
    """A power cut writes garbage over the first page of the outbox's lane index (or of the index or table `of`):
    the node never closed the outbox."""
    outbox._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    [page] = outbox._db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (of,)).fetchone()
    [page_size] = outbox._db.execute("PRAGMA page_size").fetchone()
    outbox._db.close()
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(bytes(range(256)) * (page_size // 256))


def damaged_copies(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if ".damaged-" in path.name)


def test_an_outbox_another_process_holds_is_refused_and_left_whole(tmp_path):
    """Found by review: any error opening the file (locked, a full disk) took it for damaged, moved the whole
    backlog aside and started empty: those messages were never sent."""
    outbox = Outbox(tmp_path / "outbox.db")
    for _ in range(3):
        outbox.put(TOPIC, event(), EVENT)
    outbox.close()
    holder = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # a second node started on the same state_dir, say
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("DELETE FROM counters")
    with pytest.raises(OutboxError, match="locked"):
        Outbox(tmp_path / "outbox.db")
    holder.execute("ROLLBACK")
    holder.close()
    assert not [path for path in tmp_path.iterdir() if ".damaged-" in path.name]
    assert Outbox(tmp_path / "outbox.db").depth == 3


def test_a_damaged_page_costs_the_messages_on_it_not_the_whole_backlog(tmp_path):
    """Found by review too: what the node watched (the violations it had not ended, whose `new` the broker had
    long had) was not salvaged, so a node started after the power cut that damaged it ended none of them."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    watched = event(type="new")
    outbox.acknowledge(outbox.put(TOPIC, watched, EVENT))  # sent: only `watching` remembers it now
    payloads = [event(dwell_seconds=float(number)) for number in range(300)]
    for payload in payloads:
        outbox.put(TOPIC, payload, EVENT)
    damage_an_index_page(outbox, path)
    reopened = Outbox(path)
    assert [message.payload for message in reopened.pending(limit=1000)] == payloads, "every message, in order"
    assert end_what_was_left_open(reopened) == 301, "the parked car's violation ends too, as interrupted"
    ends = [json.loads(message.payload) for message in reopened.pending(limit=1000)[300:]]
    assert json.loads(watched)["violation_id"] in {end["violation_id"] for end in ends}
    assert {(end["type"], end["interrupted"]) for end in ends} == {("end", True)}
    assert damaged_copies(tmp_path) == [], "every message salvaged: the damaged copy is not kept"


def test_a_disk_that_fills_before_the_limit_makes_room_by_the_policy_and_the_event_is_kept(tmp_path):
    """Found by review: with the disk full before `outbox_max_mb`, every new event, `end`s too, was lost, while
    hundreds of MB of images stayed in the outbox."""
    outbox = Outbox(tmp_path / "outbox.db")
    for number in range(20):
        outbox.put(f"gw/v1/nodes/node-a/evidence/{number}", bytes([number]) * 20_000, EVIDENCE)
    fill_the_disk(outbox)  # not a page more
    ends = [event(type="end") for _ in range(5)]
    assert all(outbox.put(TOPIC, payload, EVENT) is not None for payload in ends)
    assert [m.payload for m in outbox.pending(kind=EVENT)] == ends
    assert outbox.counters() == {"dropped_evidence": 1}, "an image for the events' own bytes, no more"


def test_a_full_outbox_lets_superseded_heartbeats_go_before_any_new_or_end(tmp_path):
    """Found by review: the oldest event went first whatever it was, so a parked car's heartbeats pushed out the
    `new` and `end` of cars that came and went, and their cases stayed open for good."""
    parked = event_payload()["violation_id"]
    came_and_went = [event(type=kind, violation_id=first_violation)
                     for first_violation in [event_payload()["violation_id"]] for kind in ("new", "end")]
    heartbeats = [event(type="update", violation_id=parked, dwell_seconds=float(n)) for n in range(30)]
    size = len(came_and_went[0]) * 2 + len(heartbeats[0]) * 12
    outbox = Outbox(tmp_path / "outbox.db", max_bytes=size)
    for payload in came_and_went + heartbeats:
        outbox.put(TOPIC, payload, EVENT)
    kept = [message.payload for message in outbox.pending(limit=100)]
    assert kept[:2] == came_and_went
    assert kept[-1] == heartbeats[-1], "the parked car's latest heartbeat"
    assert outbox.counters() == {"dropped_update": 30 - (len(kept) - 2)}


def test_a_full_outbox_finds_a_superseded_heartbeat_through_the_heartbeats_not_every_event(tmp_path):
    """Found by review: at its limit every put looked for a superseded heartbeat through every event held (9 ms a
    put with 20,000 of them, 31 ms with 100,000, the camera's thread waiting); an outbox from before has the index
    made at its next start."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox._db.execute("DROP INDEX outbox_heartbeats")  # an outbox from before it was kept
    outbox.close()
    outbox = Outbox(tmp_path / "outbox.db")
    outer, *_ = outbox._db.execute(f"EXPLAIN QUERY PLAN {outbox_policy.SUPERSEDED_HEARTBEAT}").fetchall()
    assert outer[3] == "SCAN o USING INDEX outbox_heartbeats"


def test_a_node_killed_while_watching_ends_those_violations_as_interrupted_at_its_next_start(tmp_path):
    """Found by review: a node that lost its power never ended what it watched, and a case whose `new` was still in
    its outbox stayed open for good (the server's forgetting, by the restart's telemetry, came before it)."""
    watched, gone = event_payload(), event_payload(camera_id="cam-2")
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put(TOPIC, json.dumps(watched).encode(), EVENT)
    outbox.put(TOPIC, event(type="update", violation_id=watched["violation_id"], dwell_seconds=240.0), EVENT)
    outbox.put(TOPIC, json.dumps(gone).encode(), EVENT)
    outbox.put(TOPIC, event(type="end", violation_id=gone["violation_id"]), EVENT)
    outbox.close()  # the power goes

    restarted = Outbox(tmp_path / "outbox.db")
    assert end_what_was_left_open(restarted) == 1
    *backlog, end = [json.loads(message.payload) for message in restarted.pending()]
    assert [e["type"] for e in backlog] == ["new", "update", "new", "end"], "the backlog goes first"
    assert (end["type"], end["interrupted"], end["violation_id"]) == ("end", True, watched["violation_id"])
    assert end["dwell_seconds"] == 240.0 and end["event_id"] not in {e["event_id"] for e in backlog}
    assert end_what_was_left_open(restarted) == 0, "ended once"


def test_a_refused_message_whose_count_fails_stays_in_the_outbox_rather_than_go_uncounted(tmp_path):
    """Found by review: a message the broker refused was deleted, then counted, each on its own: a count the disk
    refused left it gone and counted nowhere."""
    outbox = Outbox(tmp_path / "outbox.db")
    refused = outbox.put(TOPIC, event(), EVENT)

    def counters_refused(action: int, table: str | None, *_: object) -> int:  # the disk fails at the count
        return sqlite3.SQLITE_DENY if (action, table) == (sqlite3.SQLITE_INSERT, "counters") else sqlite3.SQLITE_OK

    outbox._db.set_authorizer(counters_refused)
    with pytest.raises(sqlite3.DatabaseError):
        outbox.refuse(refused, "not authorised")
    outbox._db.set_authorizer(None)
    assert [message.id for message in outbox.pending()] == [refused], "kept, to be refused again"
    outbox.refuse(refused, "not authorised")
    assert (outbox.pending(), outbox.counters(), outbox.size_bytes) == ([], {"refused_event": 1}, 0)


def test_an_interrupted_end_the_outbox_cannot_store_at_a_start_is_counted_and_the_start_goes_on(tmp_path):
    """Found by review: an `end` the outbox refused at the start (its disk) stopped the node's start, and every
    start after it."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put(TOPIC, event(type="new"), EVENT)
    outbox.close()  # the power goes
    restarted = Outbox(tmp_path / "outbox.db")

    def messages_refused(action: int, table: str | None, *_: object) -> int:  # the disk fails at the message
        return sqlite3.SQLITE_DENY if (action, table) == (sqlite3.SQLITE_INSERT, "outbox") else sqlite3.SQLITE_OK

    restarted._db.set_authorizer(messages_refused)
    unstored: Counter[str] = Counter()
    assert end_what_was_left_open(restarted, unstored=unstored) == 0
    assert unstored == {"unstored_event": 1}, "counted in the node's telemetry"


def test_a_disk_full_for_a_moment_does_not_shut_the_outbox_for_the_rest_of_the_run(tmp_path):
    """Found by review: one full disk while the outbox was nearly empty (connected, everything sent) set its limit
    to nothing for good, and every event after it, `new`s and `end`s, was dropped until the node restarted."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.acknowledge(outbox.put(TOPIC, event(), EVENT))  # sent at once
    fill_the_disk(outbox)
    assert outbox.put(image_topic(1), bytes(200_000), EVIDENCE) is None, "no image of its own to push out"
    free_the_disk(outbox)  # the logs rotated
    news = [event(type="new") for _ in range(3)]
    assert all(outbox.put(TOPIC, payload, EVENT) is not None for payload in news)
    assert [message.payload for message in outbox.pending()] == news
    assert outbox.counters() == {"dropped_evidence": 1}


def test_an_image_the_full_disk_refuses_pushes_no_event_out_then_or_later(tmp_path):
    """Found by review: a full disk met by a 100 KB image lowered the limit by its size, and the next small event
    pushed out 100 KB of the oldest events (an image never may)."""
    outbox = Outbox(tmp_path / "outbox.db")
    events = [event(type="new") for _ in range(50)]
    for payload in events:
        outbox.put(TOPIC, payload, EVENT)
    for number in range(3):
        outbox.put(image_topic(number), bytes([number]) * 20_000, EVIDENCE)
    fill_the_disk(outbox)
    assert outbox.put(image_topic(3), bytes(100_000), EVIDENCE) is None, "the images together are smaller"
    free_the_disk(outbox)
    end = event(type="end")
    assert outbox.put(TOPIC, end, EVENT) is not None
    assert [message.payload for message in outbox.pending(kind=EVENT, limit=100)] == [*events, end]
    assert [message.topic for message in outbox.pending(kind=EVIDENCE)] == [image_topic(n) for n in range(3)]
    assert outbox.counters() == {"dropped_evidence": 1}


def test_a_full_disk_makes_room_for_an_image_by_its_own_size(tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    for number in range(10):
        outbox.put(image_topic(number), bytes([number]) * 20_000, EVIDENCE)
    fill_the_disk(outbox)
    assert outbox.put(image_topic(10), bytes(30_000), EVIDENCE) is not None
    assert [message.topic for message in outbox.pending()] == [image_topic(n) for n in range(2, 11)]
    assert outbox.counters() == {"dropped_evidence": 2}


def test_a_node_started_on_a_full_disk_stores_again_once_the_disk_is_freed(tmp_path, monkeypatch):
    """Found by review: a start with less than the reserve free set the limit to what the outbox held (nothing)
    for the node's whole uptime."""
    free = {"bytes": DISK_RESERVE // 2}
    disk_with_free(monkeypatch, free)
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.put(TOPIC, event(), EVENT) is None, "the reserve is the system's"
    free["bytes"] = 2**30  # the logs rotated
    end = event(type="end")
    assert outbox.put(TOPIC, end, EVENT) is not None
    assert [message.payload for message in outbox.pending()] == [end]


def test_the_outbox_files_own_free_pages_are_room_on_a_full_disk(tmp_path, monkeypatch):
    """Found by review: what a drained backlog left free inside the outbox's file (reused before the file grows)
    did not count, so a node restarted on a full card after an outage stored nothing."""
    outbox = Outbox(tmp_path / "outbox.db")
    for number in range(20):
        outbox.put(image_topic(number), bytes([number]) * 20_000, EVIDENCE)
    for message in outbox.pending(limit=100):  # the broker took the backlog
        outbox.acknowledge(message.id)
    outbox.close()
    disk_with_free(monkeypatch, {"bytes": DISK_RESERVE})
    restarted = Outbox(tmp_path / "outbox.db")
    assert restarted.put(image_topic(20), bytes(100_000), EVIDENCE) is not None
    assert restarted.put(TOPIC, event(), EVENT) is not None
    assert restarted.counters() == {}


def test_a_disk_others_fill_while_the_node_runs_stops_the_outbox_growing_within_seconds(tmp_path, monkeypatch):
    """The reserve is left to the rest of the system while the node runs, not only at its start."""
    now, free = [0.0], {"bytes": 2**30}
    disk_with_free(monkeypatch, free)
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: now[0])
    for number in range(5):
        outbox.put(image_topic(number), bytes([number]) * 20_000, EVIDENCE)
    free["bytes"] = DISK_RESERVE  # a recording fills the card up to the reserve
    now[0] += DISK_CHECK_SECONDS
    assert outbox.put(image_topic(5), bytes(20_000), EVIDENCE) is not None
    assert [message.topic for message in outbox.pending()] == [image_topic(n) for n in range(1, 6)]
    assert outbox.counters() == {"dropped_evidence": 1}


def damaged_on_a_small_card(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """An outbox at `path` holding 30 images of 100 KB, an index page of it damaged, and outboxes opened from now
    on with room for about 2.4 MB of that 3 MB backlog. Returns the images."""
    outbox = Outbox(path)
    images = [bytes([number]) * 100_000 for number in range(30)]
    for number, image in enumerate(images):
        outbox.put(image_topic(number), image, EVIDENCE)
    damage_an_index_page(outbox, path)
    on_a_small_card(monkeypatch)
    return images


def on_a_small_card(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outboxes opened from now on have room for about 2.4 MB."""
    real_open = Outbox._open

    def open_on_a_small_card(self: Outbox, *where: Path) -> None:
        real_open(self, *where)
        self._db.execute("PRAGMA max_page_count = 600")

    monkeypatch.setattr(Outbox, "_open", open_on_a_small_card)


def test_a_salvage_a_full_disk_cuts_short_starts_the_node_and_goes_on_as_sending_frees_room(tmp_path, monkeypatch):
    """Found by review: a disk that filled while a damaged outbox was copied stopped the node's start, and every
    start after it, until someone freed the disk: the street went unwatched. Now the node starts with what was
    copied, and the rest follows as what is sent frees its room."""
    path = tmp_path / "outbox.db"
    images = damaged_on_a_small_card(path, monkeypatch)
    now = [0.0]
    outbox = Outbox(path, clock=lambda: now[0])
    first = [message.payload for message in outbox.pending(limit=100)]
    assert outbox.salvaging and 0 < len(first) < len(images) and first == images[:len(first)]
    assert outbox.put(TOPIC, event(), EVENT) is not None, "the node records what it sees meanwhile"
    sent: list[bytes] = []
    while outbox.salvaging or outbox.pending(kind=EVIDENCE):
        for message in outbox.pending(kind=EVIDENCE, limit=5):  # the sender: the broker takes five
            sent.append(message.payload)
            outbox.acknowledge(message.id)
        now[0] += outbox_module.SALVAGE_RETRY_SECONDS
        outbox.salvage_more(budget=5)
        assert len(sent) <= len(images), "nothing sent twice"
    assert sent == images, "each once, in order"
    assert damaged_copies(tmp_path) == [], "salvaged whole: the damaged copy deleted"
    assert outbox.counters() == {}, "nothing dropped"


def test_a_disk_still_full_is_tried_again_a_while_later_not_at_every_turn(tmp_path, monkeypatch):
    path = tmp_path / "outbox.db"
    damaged_on_a_small_card(path, monkeypatch)
    now = [0.0]
    outbox = Outbox(path, clock=lambda: now[0])
    held = outbox.depth
    tries = []
    real_go_on = outbox_module.salvage.go_on
    monkeypatch.setattr(outbox_module.salvage, "go_on", lambda *args: tries.append(now[0]) or real_go_on(*args))
    for _ in range(3):
        assert outbox.salvage_more(), "still more to salvage: the disk is as full as it was"
        now[0] += outbox_module.SALVAGE_RETRY_SECONDS / 2
    assert tries == [outbox_module.SALVAGE_RETRY_SECONDS], "once the wait since the start's try is over, once"
    assert outbox.depth == held


def test_a_salvage_finished_late_does_not_bring_back_a_violation_ended_at_the_start(tmp_path, monkeypatch):
    """The node ends what it watched as interrupted at its start; a heartbeat of such a violation copied later
    must not make it watched again, to be ended a second time at the next start."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    violation = str(uuid.uuid4())
    outbox.put(TOPIC, event(type="new", violation_id=violation), EVENT)
    for number in range(30):
        outbox.put(image_topic(number), bytes([number]) * 100_000, EVIDENCE)
    outbox.put(TOPIC, event(type="update", violation_id=violation), EVENT)
    damage_an_index_page(outbox, path)
    on_a_small_card(monkeypatch)
    now = [0.0]
    started = Outbox(path, clock=lambda: now[0])
    assert started.salvaging
    assert end_what_was_left_open(started) == 1
    free_the_disk(started)
    now[0] += outbox_module.SALVAGE_RETRY_SECONDS
    assert not started.salvage_more(budget=1000)
    assert [json.loads(message.payload)["type"] for message in started.pending(kind=EVENT)] == \
        ["new", "end", "update"], "the late heartbeat is sent all the same"
    assert started.left_open() == [], "nothing left to end at the next start"


def test_a_damaged_outbox_on_a_disk_too_full_for_a_new_one_is_left_for_the_next_start(tmp_path, monkeypatch):
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    for number in range(5):
        outbox.put(TOPIC, event(dwell_seconds=float(number)), EVENT)
    expected = [message.payload for message in outbox.pending()]
    damage_an_index_page(outbox, path)

    real_open, opened = Outbox._open, []

    def full_for_a_new_file(self: Outbox, *path: Path) -> None:  # the damaged file opens; the new one finds no room
        opened.append(self.path)
        real_open(self, *path)
        if len(opened) == 2:
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Outbox, "_open", full_for_a_new_file)
    with pytest.raises(OutboxError, match="cannot be started beside it"):
        Outbox(path)
    assert damaged_copies(tmp_path) == []
    monkeypatch.undo()
    assert [message.payload for message in Outbox(path).pending()] == expected


def test_a_salvage_holds_a_batch_in_memory_not_the_backlog(tmp_path):
    """Found by review: the salvage read every readable message into memory first (up to outbox_max_mb, more
    than a small node's RAM)."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    for number in range(24):
        outbox.put(image_topic(number), bytes([number]) * 1_000_000, EVIDENCE)
    damage_an_index_page(outbox, path)
    tracemalloc.start()
    try:
        restarted = Outbox(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert restarted.depth == 24
    assert peak < 8_000_000, f"{peak / 1e6:.1f} MB held for a 24 MB backlog"
