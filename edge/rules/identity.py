"""Which tracked object is which: the tracker loses an object and finds it under a new id (someone walked past, a
bus stopped in front of it), splits it in two, or calls it by another label; a violation and a still period belong
to the object, not to the id. And when an object unseen is gone, rather than hidden behind something seen."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from edge.config import RuleTuning
from edge.detections import Detections, box_iou
from edge.rules.tracks import Membership, Track, containment
from edge.rules.violations import OpenViolation, covered

BESIDE_SECONDS = 10.0
"""A track seen at a violation's place in the same frames as its object for longer than this is another object (a car
parked beside it, its box overlapping the violation's), never the violation's object found again; a passer-by
splitting a parked car in two tracks does so for a few seconds."""


class ObjectIdentity:
    """The part of `StationaryRule` that follows objects across track ids, over the rule's tracks and violations."""

    same_kind: ClassVar[tuple[frozenset[str], ...]] = ()
    """Labels a detector takes one for another from frame to frame (a car seen as a truck as it is half hidden):
    one object whichever it is called, for handing a violation over or carrying a still period on."""
    tuning: RuleTuning
    _tracks: dict[int, Track]
    _violations: dict[tuple[str, int], OpenViolation]
    _in_frame: set[int]
    _look: int

    @property
    def holding(self) -> set[int]:
        """The track ids that hold a violation."""
        return {violation.track_id for violation in self._violations.values()}

    def held_at(self, label: str, box: NDArray[np.float64]) -> bool:
        """Whether an open violation's object may be the one seen at `box` (under whatever track id)."""
        return any(self._one_object(label, box, violation.label, violation.box)
                   for violation in self._violations.values())

    def _mark_covered(self, seen: set[int], detections: Detections, people: NDArray[np.float64], now: float) -> None:
        """Notes when something seen stands over the place of a violation's object unseen (a bus stopped in front of
        the parked car): behind it, the object is remembered up to `hidden_seconds` (`_gone`), and found again there
        it keeps its violation. (A track before its dwell is up is forgotten after `lost_seconds`: kept behind
        whatever passed, it handed its still time to a second track of the same truck, which raised a second
        violation beside the first.)"""
        unseen = [violation for violation in self._violations.values() if violation.track_id not in seen]
        if not unseen:
            return
        in_front = np.concatenate([np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4),
                                   people.reshape(-1, 4)])  # whatever stands in front: any label, people
        for hidden in unseen:
            if covered(hidden.box, in_front):
                hidden.covered_at = now

    def _inherit(self, track: Track) -> None:
        """A new track id where a still object of the same class was, lost from view and not in this frame (a bus
        passed, the tracker lost it): the same object, so its still period and zones carry on and the dwell is not
        counted from zero again. (An object with a violation already hands it over in `_hand_over`.)"""
        holding = self.holding
        candidates = [old_id for old_id, old in self._tracks.items()
                      if old_id not in self._in_frame and old_id not in holding
                      and not old.moving_frames and not self._lost(old.last_seen, old.seen_look, track.last_seen)
                      and self._one_object(track.label, track.box, old.label, old.reference_box)]
        if len(candidates) != 1:
            return  # none, or two cars side by side both lost: which is which is a guess, so neither is taken
        old = self._tracks.pop(candidates[0])
        track.still_since, track.reference_anchor, track.reference_box = (
            old.still_since, old.reference_anchor, old.reference_box)
        track.zones = {zone_id: replace(membership) for zone_id, membership in old.zones.items()}
        track.scores.extend(old.scores)
        track.last_person_near, track.last_exempt = old.last_person_near, old.last_exempt
        track.near_since, track.near_look, track.last_attended = old.near_since, old.near_look, old.last_attended

    def _one_object(self, label: str, box: NDArray[np.float64], other_label: str,
                    other_box: NDArray[np.float64]) -> bool:
        """Whether an object seen at `box` may be the one seen at `other_box`: of the same label at its place (the
        boxes overlapping well, or this one within the other: part of it hidden), or of a label of its kind
        (`same_kind`: a car seen as a truck) on very nearly the same box; a truck passing in front of a parked
        car, its box holding the car's, is not the car, nor is a taxi stopped in front of it (`_in_front`)."""
        if label == other_label:
            return (box_iou(other_box, box) >= self.tuning.rematch_iou
                    or (containment(box, other_box) >= self.tuning.still_containment
                        and not self._in_front(box, other_box)))
        return (any(label in group and other_label in group for group in self.same_kind)
                and box_iou(other_box, box) >= self.tuning.rematch_iou)

    def _in_front(self, box: NDArray[np.float64], other_box: NDArray[np.float64]) -> bool:
        """Whether `box`, larger and around `other_box`, is something nearer the camera standing in front of its
        object: its bottom lies lower in the frame by more than `still_tolerance` of the object's height. A car seen
        whole again around a view of its top (a passer-by hid its lower part) reaches as low, or overlaps it well
        (`rematch_iou`); a taxi stopped in front of a parked car, holding the car's box in its own, is another car:
        given the parked car's violation, it ended it as `moved off` as it drove on."""
        object_height = other_box[3] - other_box[1]
        larger = (box[2] - box[0]) * (box[3] - box[1]) > (other_box[2] - other_box[0]) * object_height
        return bool(larger and box[3] - other_box[3] > self.tuning.still_tolerance * object_height)

    def _transfer(self, key: tuple[str, int], violation: OpenViolation, track: Track) -> None:
        del self._violations[key]
        violation.track_id = track.track_id
        self._violations[(violation.zone_id, track.track_id)] = violation
        track.still_since = min(track.still_since, violation.started_at)
        track.zones[violation.zone_id] = Membership(inside=True, entered_at=violation.started_at)

    def _claim_existing(self, track: Track, zone_id: str, now: float) -> bool:
        """Whether an active violation in this zone is of the track's kind and at its place; it passes to this
        track when the track holding it is not in this frame. Either way no second violation starts for one object.
        Another kind at the place (a motorcycle parked in a truck's box), or a car parked beside its object, is an
        object of its own."""
        for key, violation in list(self._violations.items()):
            if violation.zone_id != zone_id or not self._its_object(track, violation):
                continue
            if violation.track_id not in self._in_frame:
                self._transfer(key, violation, track)
            return True
        return False

    def _held_in_another_zone(self, track: Track, zone_id: str) -> bool:
        """Whether the object is a violation of another zone of this rule already: zones of one rule drawn over each
        other (a bus stop's short dwell inside a kerb's long one) make it one violation, the zone's whose dwell it
        reached first, not one in each (two events a heartbeat, two violation ids for one car)."""
        return any(violation.zone_id != zone_id and (
            violation.track_id == track.track_id or self._its_object(track, violation))
            for violation in self._violations.values())

    def _hand_over(self, seen: set[int], now: float) -> None:
        """A violation whose track was not seen this frame passes to a track that was, at the same place: the object
        lost and found under a new id (someone walked past, the light changed), or split in two by a passer-by."""
        for key, violation in list(self._violations.items()):
            if violation.track_id in seen:
                continue
            for track_id in seen:
                track = self._tracks[track_id]
                if (violation.zone_id, track_id) not in self._violations and self._its_object(track, violation) \
                        and self._may_be(track, violation):
                    self._transfer(key, violation, track)
                    break

    def _note_alongside(self, seen: set[int], now: float) -> None:
        """Notes the tracks seen at each violation's place in the frames its object is seen in (`_beside`)."""
        for violation in self._violations.values():
            if violation.track_id not in seen:
                continue
            for track_id in seen - {violation.track_id}:
                track = self._tracks[track_id]
                if self._one_object(track.label, track.box, violation.label, violation.box):
                    first, _ = violation.alongside.get(track_id, (now, now))
                    violation.alongside[track_id] = (first, now)

    def _its_object(self, track: Track, violation: OpenViolation) -> bool:
        """Whether the track at a violation's place may be its object: one object by label and box, and not seen
        beside it."""
        return (self._one_object(track.label, track.box, violation.label, violation.box)
                and not self._beside(track, violation))

    def _beside(self, track: Track, violation: OpenViolation) -> bool:
        """Whether the track was seen beside the violation's object, in the same frames, for longer than
        `BESIDE_SECONDS`: a car parked beside it, whose box overlaps its own. The one frame the object was missed,
        it took the violation, never got a `new` of its own, and ended the violation as `moved off` when it left
        (the object's case verified while it stood there, and raised again)."""
        first, last = violation.alongside.get(track.track_id, (0.0, 0.0))
        return last - first > BESIDE_SECONDS

    def _may_be(self, track: Track, violation: OpenViolation) -> bool:
        """Whether a track at a violation's place can be its object: of its kind, and seen still for a few frames.
        A vehicle driving past in front, whose box holds the parked one's while it hides it, is not: given the
        violation, it ended it as `moved off` as it drove on, and the parked car opened a second case."""
        return (not track.moving_frames and track.moving_since is None
                and len(track.recent_boxes) >= self.tuning.zone_inertia_frames)

    def _gone(self, watched: OpenViolation, now: float) -> bool:
        """Unseen for `lost_seconds` with its place in view; while something stands over its place (a bus in front
        of the parked car), up to `hidden_seconds`: it is behind that, not gone, and found again there it keeps its
        violation (one case, its dwell), where it was ended and raised anew."""
        unseen = now - watched.last_seen
        if not self._lost(watched.last_seen, watched.seen_look, now):
            return False
        behind = watched.covered_at is not None and now - watched.covered_at < self.tuning.lost_seconds
        return not behind or unseen >= max(self.tuning.lost_seconds, self.tuning.hidden_seconds)

    def _lost(self, last_seen: float, seen_look: int, now: float) -> bool:
        """Unseen for `lost_seconds`, and missed by `lost_looks` of the model's looks since: a model looking every
        2 s that misses a pile of garbage in a few looks running has not seen it go. Never remembered unseen for
        longer than `hidden_seconds`, however few the looks."""
        unseen, tuning = now - last_seen, self.tuning
        return unseen >= tuning.lost_seconds and (self._look - seen_look >= tuning.lost_looks
                                                  or unseen >= tuning.hidden_seconds)
