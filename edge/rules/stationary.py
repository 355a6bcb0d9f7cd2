"""The shape every GridWatch rule shares: an object of the right classes stays still inside a zone whose rule is in
force, for the zone's dwell time. Categories differ only in which classes count, which zones apply, and what the
people around the object must (or must not) be doing.

Pure and clock-free: `process(detections, now, people)` takes the time as an argument, so a test can run an hour of
dwell in a millisecond. One violation is one stream of `new`, `update` (on a real change, or a heartbeat) and `end`.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from edge.config import RuleTuning
from edge.detections import Detections, box_iou
from edge.rules.identity import ObjectIdentity
from edge.rules.tracks import Membership, Track, containment, people_near
from edge.rules.violations import OpenViolation, RuleEvent
from edge.zones import Zone, bottom_centres
from gridwatch.contract import Category, EventType

_CHANGE_IOU = 0.7
"""Below this overlap with the last published box, a violation's box has really changed and earns an update."""
NEAR_GAP = 3.0
"""Seconds without anyone seen near an object that end a person's stay by it (a litter model looks every 2 s), unless
someone was near it at the rule's previous look: a model looking less often than that sees a stay look by look."""
_SETTLE_SECONDS = 3.0
"""For this long after an object stops, its parked position follows it (a vehicle settles), then it is fixed."""
NO_PEOPLE = np.zeros((0, 4))


def judged_by(zone: Zone) -> dict:
    """What of a zone's config its rule judges by: its rule, shape, dwell and hours (its event code and location
    only label the events)."""
    return zone.config.model_dump(include={"rule", "polygon", "dwell_seconds", "schedule"})


class StationaryRule(ObjectIdentity):
    category: ClassVar[Category]
    zone_rule: ClassVar[str]

    def __init__(self, zones: list[Zone], tuning: RuleTuning, labels: Iterable[str]) -> None:
        self.zones = [zone for zone in zones if zone.config.rule == self.zone_rule]
        self.tuning = tuning
        self.labels = frozenset(labels)
        self._tracks: dict[int, Track] = {}
        self._in_frame: set[int] = set()
        """The track ids of the frame being processed."""
        self._violations: dict[tuple[str, int], OpenViolation] = {}
        self._active_since: dict[str, float] = {}
        self._look = 0
        """How many times the rule has looked (been given a model's detections): what an object unseen for
        `lost_looks` of them was missed in."""

    @property
    def active_violations(self) -> int:
        return len(self._violations)

    # ---- what categories change ----------------------------------------------------------------------------------

    def may_fire(self, track: Track, now: float) -> bool:
        """Whether the people around the object (or other context) make it a violation now."""
        return True

    def exempt(self, anchor: NDArray[np.float64], now: float) -> str | None:
        """A reason the object is allowed where it is (e.g. a designated vending area in its hours), or None."""
        return None

    def counted_from(self, track: Track) -> float:
        """The earliest moment the category lets the object's dwell start, besides its standing still in the zone
        while the zone's rule is in force and nothing allows it there."""
        return float("-inf")

    # ---- the shared logic ----------------------------------------------------------------------------------------

    def process(self, detections: Detections, now: float, people: NDArray[np.float64] = NO_PEOPLE) -> list[RuleEvent]:
        self._look += 1
        keep = np.array([label in self.labels for label in detections.labels], dtype=bool)
        objects = detections.select(keep & (detections.track_ids >= 0)) if len(detections) else detections
        anchors = bottom_centres(objects.boxes)
        active = {zone.zone_id: self._zone_active(zone, now) for zone in self.zones}

        events: list[RuleEvent] = []
        seen: set[int] = set()
        self._in_frame = {int(t) for t in objects.track_ids}
        tracks = [self._observe(int(track_id), objects.labels[index], objects.boxes[index], anchors[index],
                                float(objects.scores[index]), now)
                  for index, track_id in enumerate(objects.track_ids)]
        # a still object is in a zone where it stopped: traffic in the near lane hiding its lower half moves its
        # box's bottom up, out of a zone drawn on the kerb, and its case ended as `left the zone`, a second opened
        positions = np.array([anchors[index] if track.moving_frames else track.reference_anchor
                              for index, track in enumerate(tracks)]).reshape(-1, 2)
        inside_by_zone = {zone.zone_id: zone.contains(positions) for zone in self.zones}
        for index, track in enumerate(tracks):
            track_id = track.track_id
            seen.add(track_id)
            if people_near(track.box, people, self.tuning.near_factor):
                if now - track.last_person_near > NEAR_GAP and track.near_look < self._look - 1:
                    track.near_since = now  # someone new: a passer-by until they have stayed a while
                track.last_person_near, track.near_look = now, self._look
                if now - track.near_since >= self.tuning.attending_seconds:
                    track.last_attended = now
            # allowed where it stands, judged as its zones are: customers queueing in front of a stall in its
            # designated pitch hide its foot, and its box's bottom rises out of the pitch
            exemption = self.exempt(positions[index], now)
            if exemption:
                track.last_exempt = now
            for zone in self.zones:
                self._update_membership(track, zone.zone_id, bool(inside_by_zone[zone.zone_id][index]), now)
                events.extend(self._judge(track, zone, active[zone.zone_id], exemption, now))
        self._note_alongside(seen, now)
        self._hand_over(seen, now)
        self._mark_covered(seen, detections, people, now)
        events.extend(self._expire(seen, now))
        return events

    def _zone_active(self, zone: Zone, now: float) -> bool:
        if not zone.active(now):
            self._active_since.pop(zone.zone_id, None)
            return False
        since = self._active_since.setdefault(zone.zone_id, now if zone.config.schedule else float("-inf"))
        if since > now:  # the clock stepped back (NTP): from now, not from a moment it will take the step to reach
            self._active_since[zone.zone_id] = now
        return True

    def _observe(self, track_id: int, label: str, box: NDArray[np.float64], anchor: NDArray[np.float64],
                 score: float, now: float) -> Track:
        track = self._tracks.get(track_id)
        if track is None:
            track = Track(track_id, label, box.copy(), now, anchor.copy(), box.copy(), now,
                          deque(maxlen=self.tuning.score_window), deque(maxlen=self.tuning.zone_inertia_frames))
            self._inherit(track)
            self._tracks[track_id] = track
        still = self._is_still(track, box, anchor)
        if still:
            track.moving_frames, track.moving_since = 0, None
        else:
            track.moving_frames += 1
            track.moving_since = now if track.moving_since is None else track.moving_since
            if (track.moving_frames >= self.tuning.zone_inertia_frames
                    and now - track.moving_since >= self.tuning.move_seconds):  # moving for real: a new still period
                track.reference_anchor, track.reference_box = anchor.copy(), box.copy()
                track.still_since, track.moving_frames, track.moving_since = now, 0, None
        track.label, track.box, track.last_seen, track.seen_look = label, box.copy(), now, self._look
        track.recent_boxes.append(box.copy())
        track.scores.append(score)
        settling = now - track.still_since <= _SETTLE_SECONDS
        if still and settling and len(track.recent_boxes) == track.recent_boxes.maxlen:
            # the first still frame may catch a vehicle still settling: its parked position is where it stands once
            # it has stopped (then it is kept, so a passer-by hiding part of it later does not move it)
            track.reference_box, track.reference_anchor = track.steady_box, anchor.copy()
        return track

    def _is_still(self, track: Track, box: NDArray[np.float64], anchor: NDArray[np.float64]) -> bool:
        """Still if the anchor stayed within tolerance of where the still period began, or the box still overlaps
        that position well, or lies within it: a partly hidden or re-sized box of a parked car is not a car driving
        off."""
        width, height = box[2] - box[0], box[3] - box[1]
        drift = np.abs(anchor - track.reference_anchor)
        if drift[0] <= self.tuning.still_tolerance * width and drift[1] <= self.tuning.still_tolerance * height:
            return True
        return (box_iou(box, track.reference_box) >= self.tuning.still_iou
                or containment(box, track.reference_box) >= self.tuning.still_containment)

    def _update_membership(self, track: Track, zone_id: str, raw_inside: bool, now: float) -> None:
        membership = track.zones.setdefault(zone_id, Membership())
        if raw_inside == membership.inside:
            membership.streak = 0
            return
        membership.streak += 1
        if membership.streak >= self.tuning.zone_inertia_frames:
            membership.inside, membership.streak = raw_inside, 0
            if raw_inside:
                membership.entered_at = now

    def _judge(self, track: Track, zone: Zone, active: bool, exemption: str | None, now: float) -> list[RuleEvent]:
        key = (zone.zone_id, track.track_id)
        membership = track.zones[zone.zone_id]
        violation = self._violations.get(key)
        if violation is None:
            if not (active and membership.inside) or exemption or track.median_score < self.tuning.min_score:
                return []
            if track.moving_frames:  # perhaps driving off (out of a zone drawn inside this one): not a new violation
                return []
            since = max(track.still_since, membership.entered_at, self._active_since[zone.zone_id], track.last_exempt,
                        self.counted_from(track))
            if now - since < zone.config.dwell_seconds or not self.may_fire(track, now):
                return []
            if self._claim_existing(track, zone.zone_id, now) or self._held_in_another_zone(track, zone.zone_id):
                return []  # the object already has its violation, under another track id or in another zone
            box = track.steady_box
            violation = OpenViolation(uuid.uuid4(), zone.zone_id, track.track_id, track.label, since, box,
                                   track.median_score, now, box.copy(), now, seen_look=self._look)
            self._violations[key] = violation
            return [self._event(EventType.NEW, violation, now, "stayed still in the zone for the dwell time")]

        violation.score, violation.last_seen, violation.seen_look = track.median_score, now, self._look
        if not membership.inside:
            return [self._end(key, now, "left the zone")]
        # the rule stops applying (its hours end, an exemption's begin): the object is still there, so the end is
        # interrupted; a plain `end` tells the server the object is gone, and verifies a case awaiting it
        if not active:
            return [replace(self._end(key, now, "the zone's rule is no longer in force (schedule)"), interrupted=True)]
        if exemption:
            return [replace(self._end(key, now, exemption), interrupted=True)]
        if track.still_since > violation.started_at:
            return [self._end(key, now, "moved off")]
        if track.moving_frames:
            return []  # perhaps starting to move off: wait until that is clear either way
        violation.box = track.steady_box
        if (box_iou(violation.box, violation.published_box) < _CHANGE_IOU
                and containment(violation.box, violation.published_box) < self.tuning.still_containment):
            return [self._publish_update(violation, now, "box changed")]
        if now - violation.published_at >= self.tuning.heartbeat_seconds:
            return [self._publish_update(violation, now, "heartbeat")]
        return []

    def _expire(self, seen: set[int], now: float) -> list[RuleEvent]:
        events = [
            self._end(key, now, "not seen for lost_seconds and lost_looks")
            for key, violation in list(self._violations.items())
            if violation.track_id not in seen and self._gone(violation, now)
        ]
        # a track holding a violation is kept while the violation is (behind a van, it outlasts `lost_seconds`): the
        # tracker finding the object again under its id must not meet a track made anew, outside every zone
        holding = self.holding
        if forgotten := [t for t, track in self._tracks.items()
                          if t not in holding and self._lost(track.last_seen, track.seen_look, now)]:
            for track_id in forgotten:
                del self._tracks[track_id]
            for violation in self._violations.values():
                violation.alongside = {t: seen_when for t, seen_when in violation.alongside.items()
                                       if t in self._tracks}
        return events

    def context(self) -> tuple:
        """What besides its own zones, classes and tuning decides the rule's judgements (a vending rule's designated
        areas): when it changes, every judgement is made afresh."""
        return ()

    def take_over(self, old: StationaryRule, now: float, reason: str, new_tracker: bool = False) -> list[RuleEvent]:
        """Carry on from `old`, this category's rule before a reconfiguration. In each zone whose config did not
        change, its open violations and the objects' time there go on: an operator drawing one new zone does not
        restart every parked car's dwell, nor end the violations its cases wait on. What `old` watched in a zone
        changed or removed ends as interrupted (the cases stay open) and is judged afresh; with other tuning,
        classes or context, all of it. `new_tracker`: the model was loaded anew (another class list), and its
        tracker numbers objects from 1 again: what was watched is kept under ids no tracker gives (negative), and
        passes to the objects found at the same places as when a tracker loses and finds them (`_hand_over`,
        `_inherit`). Returns those ends."""
        before = {zone.zone_id: judged_by(zone) for zone in old.zones}
        same = self.tuning == old.tuning and self.labels == old.labels and self.context() == old.context()
        kept = {zone.zone_id for zone in self.zones if same and before.get(zone.zone_id) == judged_by(zone)}
        ended = [replace(old._end(key, max(now, violation.last_seen), reason), interrupted=True)
                 for key, violation in list(old._violations.items()) if violation.zone_id not in kept]
        if same:
            self._violations, self._tracks, self._look = old._violations, old._tracks, old._look
            if new_tracker:
                for track in self._tracks.values():
                    track.track_id = -abs(track.track_id)
                for violation in self._violations.values():
                    violation.track_id = -abs(violation.track_id)
                    violation.alongside = {-abs(t): seen_when for t, seen_when in violation.alongside.items()}
                self._tracks = {track.track_id: track for track in self._tracks.values()}
                self._violations = {(v.zone_id, v.track_id): v for v in self._violations.values()}
            for track in self._tracks.values():  # a changed zone is entered afresh, after zone_inertia_frames
                track.zones = {zone_id: membership for zone_id, membership in track.zones.items()
                               if zone_id in kept}
            self._active_since = {zone_id: since for zone_id, since in old._active_since.items() if zone_id in kept}
        return ended

    def interrupt(self, now: float, reason: str) -> list[RuleEvent]:
        """An interrupted `end` for every open violation, and the tracks forgotten: the node stops watching (it
        stops, the camera failed, the rules are replaced). The server then counts the violations as ended without
        taking them for the object gone; what is still there when watching resumes is a new violation."""
        events = [replace(self._end(key, max(now, violation.last_seen), reason), interrupted=True)
                  for key, violation in list(self._violations.items())]
        self._tracks.clear()
        return events

    def _publish_update(self, violation: OpenViolation, now: float, reason: str) -> RuleEvent:
        violation.published_box, violation.published_at = violation.box.copy(), now
        return self._event(EventType.UPDATE, violation, now, reason)

    def _end(self, key: tuple[str, int], now: float, reason: str) -> RuleEvent:
        return self._event(EventType.END, self._violations.pop(key), now, reason)

    def _event(self, event_type: EventType, violation: OpenViolation, now: float, reason: str) -> RuleEvent:
        x1, y1, x2, y2 = (float(v) for v in violation.box)
        return RuleEvent(event_type, violation.violation_id, self.category, violation.zone_id, violation.label,
                         violation.track_id, violation.started_at, now, violation.score, (x1, y1, x2, y2), reason)
