"""Street vending and litter: what the people around an object decide. Simulated clock, synthetic tracks."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import RuleTuning, ZoneConfig
from edge.rules import build_rules
from edge.rules.litter import LitterRule
from edge.rules.vending import StreetVendingRule
from edge.zones import Zone
from gridwatch.contract import Category
from tests.edge.test_parking_rule import FPS, seen, types

STREET = [(0, 0.4), (1, 0.4), (1, 1), (0, 1)]
STALL = (0.30, 0.50, 0.45, 0.70)          # an umbrella stall, bottom centre (0.375, 0.70)
VENDOR = (0.46, 0.45, 0.52, 0.72)         # a person standing beside it
FAR_PERSON = (0.90, 0.45, 0.95, 0.72)
BAG = (0.60, 0.80, 0.64, 0.86)            # a bag on the pavement
OWNER = (0.62, 0.55, 0.68, 0.88)


def zone(rule: str, polygon=STREET, dwell: float = 300, schedule=()) -> Zone:
    return Zone(ZoneConfig(zone_id=rule, rule=rule, polygon=polygon, dwell_seconds=dwell, schedule=list(schedule)))


def run(rule, seconds, frame, start=0.0):
    events = []
    for index in range(int(seconds * FPS)):
        now = start + index / FPS
        objects, people = frame(now)
        people_boxes = np.array(people, dtype=np.float64).reshape(-1, 4)
        events.extend((now, e) for e in rule.process(objects, now, people_boxes))
    return events


def vending(**tuning) -> StreetVendingRule:
    return StreetVendingRule([zone("no_vending")], RuleTuning(**tuning), ["umbrella", "dining table"])


def test_a_stall_with_a_vendor_is_street_vending():
    events = run(vending(), 320, lambda t: (seen((1, STALL, 0.7, "umbrella")), [VENDOR]))
    assert types(events) == ["new"]
    assert events[0][1].category is Category.STREET_VENDING
    assert events[0][0] == pytest.approx(300.4, abs=0.21)


@pytest.mark.parametrize("people", [[], [FAR_PERSON]], ids=["nobody", "someone far away"])
def test_an_umbrella_nobody_stands_at_is_not_a_stall(people):
    assert run(vending(), 400, lambda t: (seen((1, STALL, 0.7, "umbrella")), people)) == []


def test_vending_inside_a_designated_area_during_its_hours_is_allowed():
    allowed = zone("vending_allowed", polygon=[(0.2, 0.4), (0.5, 0.4), (0.5, 0.9), (0.2, 0.9)])
    rule = StreetVendingRule([zone("no_vending"), allowed], RuleTuning(), ["umbrella"])
    assert run(rule, 400, lambda t: (seen((1, STALL, 0.7, "umbrella")), [VENDOR])) == []


def litter(**tuning) -> LitterRule:
    return LitterRule([zone("no_litter", dwell=60)], RuleTuning(**tuning), ["backpack", "bottle"])


def test_a_bag_left_behind_is_litter_once_its_owner_has_gone():
    def dropped(t):
        return seen((1, BAG, 0.6, "backpack")), ([OWNER] if t < 20 else [])

    events = run(litter(unattended_seconds=30), 120, dropped)
    assert types(events) == ["new"]
    at, event = events[0]
    assert event.category is Category.LITTER
    assert at == pytest.approx(79.8, abs=0.21), "a dwell of 60 s from when the owner left (20 s), not from the drop"


def test_a_bag_beside_its_owner_is_not_litter():
    assert run(litter(), 600, lambda t: (seen((1, BAG, 0.6, "backpack")), [OWNER])) == []


def test_a_bag_carried_along_is_not_litter():
    def carried(t):
        x = 0.1 + 0.01 * t
        return seen((1, (x, 0.8, x + 0.04, 0.86), 0.6, "backpack")), [(x + 0.02, 0.55, x + 0.08, 0.88)]

    assert run(litter(), 60, carried) == []


def test_rules_are_built_only_for_categories_with_zones():
    zones = [zone("no_parking"), zone("no_litter")]
    categories = {Category.ILLEGAL_PARKING: ["car"], Category.STREET_VENDING: ["umbrella"],
                  Category.LITTER: ["bottle"]}
    assert sorted(r.category.value for r in build_rules(zones, RuleTuning(), categories)) == [
        "illegal_parking", "litter"]


def test_a_bag_its_owner_sat_beside_for_long_is_not_litter_the_moment_they_step_away():
    """Found by review: the dwell counted from when the bag was put down, while attended, so with a dwell of 300 s
    it fired 30 s (`unattended_seconds`) after the owner stepped away from it for a moment."""
    def owner_steps_away(t):
        return seen((1, BAG, 0.6, "backpack")), ([OWNER] if t < 600 or t >= 640 else [])

    rule = LitterRule([zone("no_litter", dwell=300)], RuleTuning(unattended_seconds=30), ["backpack"])
    assert run(rule, 900, owner_steps_away) == []


def test_a_stall_staying_on_after_its_designated_hours_counts_from_their_end():
    """Found by review: the moment a designated vending area's hours ended, a stall in it was a violation dated
    back to its arrival, with a dwell of legal vending."""
    allowed = zone("vending_allowed", polygon=[(0.2, 0.4), (0.5, 0.4), (0.5, 0.9), (0.2, 0.9)])
    rule = StreetVendingRule([zone("no_vending"), allowed], RuleTuning(), ["umbrella"])
    rule.exempt = lambda anchor, now: "market hours" if now < 200 else None  # the hours end at 200 s
    events = run(rule, 600, lambda t: (seen((1, STALL, 0.7, "umbrella")), [VENDOR]))
    [(at, first)] = [(at, event) for at, event in events if event.type.value == "new"]
    assert first.started_at >= 199.8 and at >= first.started_at + rule.zones[0].config.dwell_seconds - 0.21


def test_a_stall_given_a_new_track_id_after_its_designated_hours_still_counts_from_their_end():
    """Found by review: a new track id taking the stall over (the tracker lost it for a moment) kept its arrival
    but not the end of its allowed hours, and it fired at once with hours of legal vending as dwell."""
    allowed = zone("vending_allowed", polygon=[(0.2, 0.4), (0.5, 0.4), (0.5, 0.9), (0.2, 0.9)])
    rule = StreetVendingRule([zone("no_vending"), allowed], RuleTuning(), ["umbrella"])
    rule.exempt = lambda anchor, now: "market hours" if now < 200 else None  # the hours end at 200 s
    events = run(rule, 600, lambda t: (seen((1 if t < 205 else 2, STALL, 0.7, "umbrella")), [VENDOR]))
    [(at, first)] = [(at, event) for at, event in events if event.type.value == "new"]
    assert first.started_at >= 199.8 and at >= 499.5, "the dwell counts from the end of the hours"


def test_a_bottle_on_a_busy_pavement_is_litter_though_people_walk_past_it():
    """Found by review: each passer-by near the bottle for a moment counted as its owner, so with someone walking
    past every 150 s a bottle lying there for an hour was never reported."""
    def busy(t):
        passing = t % 150 < 2  # a pedestrian near it for 2 s every 150 s
        return seen((1, BAG, 0.6, "bottle")), ([OWNER] if passing else [])

    rule = LitterRule([zone("no_litter", dwell=300)], RuleTuning(unattended_seconds=30), ["bottle"])
    events = run(rule, 900, busy)
    assert types(events)[:1] == ["new"]
    assert events[0][0] < 320, "a dwell of 300 s, passers-by or not"


def test_a_pile_the_litter_model_misses_in_several_looks_running_keeps_one_violation_until_it_is_taken_away():
    """Found by review: the litter model looks every 2 s and finds a pile in only some of its looks. Missed in five
    looks running (10 s, `lost_seconds`), the pile was taken for gone: its violation ended, which verifies a case
    awaiting the camera, and was raised again a dwell later; before its first dwell, its still time restarted."""
    def look(t):  # found in one look of every eight: seven misses running, 14 s
        there = t < 600 and round(t / 2) % 8 == 0
        return seen((1, BAG, 0.7, "garbage")) if there else seen(), []

    rule = LitterRule([zone("no_litter", dwell=60)], RuleTuning(), ["garbage"])
    events = []
    for index in range(400):  # a look every 2 s for 800 s; the pile is taken away at 600 s
        now = 2.0 * index
        objects, people = look(now)
        events += [(now, event) for event in rule.process(objects, now, np.array(people).reshape(-1, 4))]
    (raised, _), (ended, end) = [(at, event) for at, event in events if event.type.value != "update"]
    assert raised < 100, "the still time survives the misses"
    last_found = max(2.0 * index for index in range(300) if look(2.0 * index)[0])
    assert not end.interrupted and ended == last_found + 15 * 2, "gone once missed in lost_looks (15) looks running"


def test_a_legal_stall_in_its_pitch_is_not_reported_while_customers_queue_in_front_of_it():
    """Found by review: the designated pitch was judged by the stall's raw box, so customers queueing in front of it,
    hiding its foot, lifted it out of its pitch (though not out of the no-vending zone, which judges where it
    stopped): a legal stall reported as street vending."""
    pitch = zone("vending_allowed", polygon=[(0.2, 0.66), (0.6, 0.66), (0.6, 0.76), (0.2, 0.76)])
    rule = StreetVendingRule([zone("no_vending"), pitch], RuleTuning(), ["dining table"])
    top_only = (0.30, 0.50, 0.45, 0.62)  # the queue hides the stall's lower part from 100 s to 500 s
    events = run(rule, 700, lambda t: (seen((1, top_only if 100 <= t < 500 else STALL, 0.7, "dining table")),
                                       [VENDOR]))
    assert events == []


@pytest.mark.parametrize("look_every", [4.0, 10.0])
def test_a_bag_beside_its_owner_is_not_litter_with_a_model_that_looks_seldom(look_every):
    """Found by review: someone near a bag had to be seen again within 3 s to stay by it, so with a model looking
    every 4 s (detect_fps under 0.33, or idle_detect_seconds over 3) each look took the seated owner for a new
    passer-by, and the bag beside them was litter a dwell later."""
    rule = LitterRule([zone("no_litter", dwell=60)], RuleTuning(), ["backpack"])
    events = []
    for index in range(int(600 / look_every)):
        now = look_every * index
        events += [(now, event) for event in rule.process(seen((1, BAG, 0.6, "backpack")), now,
                                                          np.array([OWNER], dtype=float))]
    assert events == []


@pytest.mark.parametrize("found_again_at", [200, 40], ids=["after its violation", "before its dwell"])
def test_a_rubbish_bag_the_model_calls_a_handbag_after_a_passer_by_stays_one_violation(found_again_at):
    """Found by review: COCO calls one rubbish bag a backpack, a handbag or a suitcase by turns; found again under a
    new track id as another of them, its violation ended as the bag gone (which verifies a case awaiting it) and a
    second opened a dwell later, or, before its dwell, its time started over."""
    rule = LitterRule([zone("no_litter", dwell=60)], RuleTuning(), ["backpack", "handbag", "suitcase"])

    def frame(t):
        if t < found_again_at:
            return seen((1, BAG, 0.6, "backpack")), []
        return (seen(), []) if t < found_again_at + 5 else (seen((2, BAG, 0.6, "handbag")), [])

    events = run(rule, 600, frame)
    assert [kind for kind in types(events) if kind != "update"] == ["new"]
    assert events[0][0] < 65, "its dwell counts from when it was left"
