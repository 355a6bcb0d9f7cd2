"""The outbox on a card other programs fill to its last byte (`tests/edge/small_card.py`: a real tmpfs where the
system allows one, simulated where it does not). A small card stands for a large one whose reserve others took: its
reserve is scaled with it."""

from __future__ import annotations

import json

from edge import outbox_disk
from edge.config import NodeConfig
from edge.node import EdgeNode
from edge.outbox import EVENT, EVIDENCE, SALVAGE_ROOM, Outbox
from tests.edge.small_card import Card, on_a_small_card
from tests.edge.test_outbox_pressure import TOPIC, damage_an_index_page, damaged_copies, event, image_topic

RESERVE = 1024 * 1024


def a_card_others_fill_while_the_node_runs(card: Card) -> dict:
    outbox_disk.DISK_RESERVE = RESERVE
    now = [0.0]
    outbox = Outbox(card.directory / "outbox.db", clock=lambda: now[0])
    for number in range(10):
        outbox.put(image_topic(number), bytes([number]) * 100_000, EVIDENCE)
    first = outbox.put(TOPIC, event(type="new"), EVENT)
    card.fill()  # a recording takes the rest of the card
    news = [event(type="new") for _ in range(5)]
    stored = [outbox.put(TOPIC, payload, EVENT) is not None for payload in news]
    outbox.acknowledge(first)  # the broker took it
    ballast_while_full = outbox._disk.ballast.exists()
    card.free(card.size)  # the recording deleted
    now[0] += outbox_disk.DISK_CHECK_SECONDS
    end = event(type="end")
    stored.append(outbox.put(TOPIC, end, EVENT) is not None)
    return {"stored": stored, "events": [message.payload.decode() for message in outbox.pending(kind=EVENT)],
            "expected": [payload.decode() for payload in [*news, end]], "counters": outbox.counters(),
            "images": len(outbox.pending(kind=EVIDENCE)),
            "ballast": [ballast_while_full, outbox._disk.ballast.exists()]}


def test_a_card_others_fill_keeps_every_new_event_and_takes_acknowledgements(tmp_path):
    """Found by review: on a real full disk SQLite fails at the commit (its WAL), not at the insert, so the outbox
    never made room: every new event was lost, uncounted, a MB of images kept, and what the broker acknowledged
    could not be deleted. The ballast beside the outbox is released for the room its policy makes, and laid again
    once the disk has room."""
    result = on_a_small_card(a_card_others_fill_while_the_node_runs, tmp_path / "card", megabytes=8)
    assert result["stored"] == [True] * 6
    assert result["events"] == result["expected"], "each new event, in order; the acknowledged one gone"
    assert (result["counters"], result["images"]) == ({"dropped_evidence": 1}, 9), "an image for the events, no more"
    assert result["ballast"] == [False, True], "released while the card was full, laid again once freed"


def a_node_started_on_a_card_others_filled(card: Card) -> dict:
    outbox_disk.DISK_RESERVE = RESERVE
    config = NodeConfig.model_validate({"node_id": "node-a", "state_dir": str(card.directory),
                                        "mqtt": {"port": 1, "password": "unused"},
                                        "streetlights": [{"lamp_id": "lamp-7", "adapter": {"type": "simulated"}}]})
    outbox = Outbox(card.directory / "node-a" / "outbox.db")
    watched = event(type="new")
    outbox.put(TOPIC, watched, EVENT)
    for number in range(10):
        outbox.put(image_topic(number), bytes([number]) * 100_000, EVIDENCE)
    outbox.close()  # the node stops, watching a parked car
    card.fill()  # a recording takes the rest of the card
    node = EdgeNode.build(config)
    events = [json.loads(message.payload) for message in node.outbox.pending(kind=EVENT)]
    return {"events": [(event["violation_id"], event["type"], bool(event.get("interrupted"))) for event in events],
            "watched": json.loads(watched)["violation_id"], "images": len(node.outbox.pending(kind=EVIDENCE)),
            "counters": node.outbox.counters(), "unstored": dict(node.unstored)}


def test_a_node_started_on_a_card_others_filled_starts_and_ends_what_it_watched(tmp_path):
    """Found by review: on a card others had filled the node's start stopped where it ended, as interrupted, the
    violations it watched (the disk full for the WAL's first page), and at every start after it."""
    result = on_a_small_card(a_node_started_on_a_card_others_filled, tmp_path / "card", megabytes=8)
    watched = result["watched"]
    assert result["events"] == [[watched, "new", False], [watched, "end", True]]
    assert (result["images"], result["counters"], result["unstored"]) == (9, {"dropped_evidence": 1}, {}), \
        "the disk has no room but the outbox's own: the end makes it among the images"


def a_salvage_on_a_card_the_outbox_had_filled(card: Card) -> dict:
    outbox_disk.DISK_RESERVE = 8 * 1024 * 1024  # SQLite's WAL (4 MB) among what it is for
    path = card.directory / "outbox.db"
    outbox = Outbox(path)
    images = [bytes([number]) * 100_000 for number in range(60)]
    for number, image in enumerate(images):
        outbox.put(image_topic(number), image, EVIDENCE)
    damage_an_index_page(outbox, path)
    card.fill()
    card.free(outbox_disk.DISK_RESERVE)  # the outbox had all the disk it could take: the reserve is what is left
    started = Outbox(path)
    copied, free = started.depth, card.free_bytes()
    recorded = started.put(TOPIC, event(type="new"), EVENT) is not None  # what the node sees meanwhile
    sent: list[bytes] = []
    while started.salvaging or started.pending(kind=EVIDENCE):
        for message in started.pending(kind=EVIDENCE, limit=3):  # the broker takes three
            sent.append(message.payload)
            started.acknowledge(message.id)
        started.salvage_more(budget=5)
        if len(sent) > len(images):
            break
    return {"copied": copied, "free": free, "reserve": outbox_disk.DISK_RESERVE, "recorded": recorded,
            "in_order": sent == images,
            "counters": started.counters(), "ballast": started._disk.ballast.exists(),
            "damaged": damaged_copies(card.directory)}


def test_a_salvage_leaves_the_disks_reserve_to_the_rest_of_the_system(tmp_path):
    """Found by review: a salvage took the card to its last byte, the reserve too, and the node's first new event
    found the disk full. The damaged copy holds the room the outbox had until it is read to its end: the new
    outbox takes `SALVAGE_ROOM` of the reserve to send the backlog through, and no more."""
    result = on_a_small_card(a_salvage_on_a_card_the_outbox_had_filled, tmp_path / "card", megabytes=32)
    assert 0 < result["copied"] <= SALVAGE_ROOM // 100_000, "what the salvage's room holds, at the start"
    assert result["free"] > result["reserve"] - SALVAGE_ROOM - 1024 * 1024, "the reserve, less that room and its WAL"
    assert result["recorded"], "a new event has room beside the salvage"
    assert result["in_order"], "every image sent, once, in order, as sending freed room"
    assert (result["counters"], result["ballast"], result["damaged"]) == ({}, True, []), \
        "nothing dropped; the disk never full"
