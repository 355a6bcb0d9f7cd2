"""The background model: what appeared and stayed, with a simulated clock (one frame a second)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.background import UNKNOWN_OBJECT, BackgroundModel

PILE = (slice(300, 360), slice(400, 500))      # rows, columns of a dumped pile in a 480x640 frame
BENCH = (slice(200, 240), slice(50, 200))      # street furniture, there from the start


def street(seed: int, pile: bool = False, bench: bool = True, brightness: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((480, 640, 3), 120, dtype=np.int16)
    image[280:, :] = 90
    if bench:
        image[BENCH] = 40
    if pile:
        image[PILE] = rng.integers(150, 250, (60, 100, 1))  # bright, textured rubbish
    image += rng.integers(-4, 5, image.shape) + brightness
    return np.clip(image, 0, 255).astype(np.uint8)


def run(model: BackgroundModel, frames, start: float = 0.0):
    return [model.update(frame, start + second) for second, frame in enumerate(frames)]


def as_pixels(box) -> tuple[int, int, int, int]:
    return tuple(int(round(v)) for v in (box[0] * 640, box[1] * 480, box[2] * 640, box[3] * 480))


def test_furniture_present_at_start_is_never_reported():
    results = run(BackgroundModel(), [street(i) for i in range(60)])
    assert all(len(r) == 0 for r in results)


def test_a_dumped_pile_is_reported_after_it_stays_and_keeps_its_id_until_removed():
    model = BackgroundModel(short_seconds=4)
    run(model, [street(i) for i in range(30)])
    with_pile = run(model, [street(100 + i, pile=True) for i in range(120)], start=30)
    assert len(with_pile[0]) == 0, "not on arrival: only once it has stayed"
    reported = [r for r in with_pile if len(r)]
    assert len(reported) >= 100, "reported from a few seconds after it was dumped, for as long as it stays"
    assert {tuple(r.track_ids) for r in reported} == {(reported[0].track_ids[0],)}
    x1, y1, x2, y2 = as_pixels(reported[-1].boxes[0])
    assert abs(x1 - 400) < 12 and abs(x2 - 500) < 12 and abs(y1 - 300) < 12 and abs(y2 - 360) < 12
    assert reported[-1].labels == (UNKNOWN_OBJECT,)
    gone = run(model, [street(300 + i) for i in range(20)], start=150)
    assert all(len(r) == 0 for r in gone[8:]), "gone once it is gone"


def test_what_a_detector_already_named_is_left_to_it():
    model = BackgroundModel()
    run(model, [street(i) for i in range(30)])
    model.exclude = np.array([[400 / 640, 300 / 480, 500 / 640, 360 / 480]])  # e.g. a person standing there
    results = run(model, [street(100 + i, pile=True) for i in range(60)], start=30)
    assert all(len(r) == 0 for r in results)


def test_lights_coming_on_are_not_objects():
    model = BackgroundModel()
    run(model, [street(i) for i in range(30)])
    results = run(model, [street(100 + i, brightness=60) for i in range(60)], start=30)
    assert all(len(r) == 0 for r in results)


def test_furniture_is_not_new_but_something_set_up_later_is():
    model = BackgroundModel()
    run(model, [street(i) for i in range(30)])
    run(model, [street(100 + i, pile=True) for i in range(5)], start=30)
    bench = np.array([50 / 640, 200 / 480, 200 / 640, 240 / 480])
    pile = np.array([400 / 640, 300 / 480, 500 / 640, 360 / 480])
    assert not model.is_new(bench), "the bench was there when the street was learnt"
    assert model.is_new(pile)


def test_something_that_was_there_from_the_start_leaves_no_ghost_when_it_goes():
    """Found by review: a pile lying there when the model started was learnt as the street; once it was cleared, the
    bare pavement differed from the background and was reported as an unknown object for good (a phantom case)."""
    model = BackgroundModel(short_seconds=4)
    run(model, [street(i, pile=True) for i in range(30)])
    cleared = run(model, [street(100 + i) for i in range(120)], start=30)
    assert all(len(r) == 0 for r in cleared), f"reported on {sum(len(r) > 0 for r in cleared)} frames"
    dumped_again = run(model, [street(300 + i, pile=True) for i in range(30)], start=150)
    assert len(dumped_again[-1]) == 1, "the street was learnt without it: dumped again, it is reported"


def ground(kind: str) -> np.ndarray:
    """The lower half of a street paved with cobbles (blocks of random grey with dark joints) or a zebra crossing."""
    rng = np.random.default_rng(7)
    paving = np.zeros((200, 640), np.int16)
    if kind == "cobbles":
        for row in range(0, 200, 16):
            for column in range(0, 640, 16):
                paving[row:row + 16, column:column + 16] = rng.integers(70, 150)
        paving[::16, :] = paving[:, ::16] = 30
    else:
        paving[:] = 60
        for column in range(0, 640, 80):
            paving[:, column:column + 40] = 200
    return paving


def textured_street(seed: int, kind: str, thing: int | None = None) -> np.ndarray:
    image = street(seed, bench=False).astype(np.int16)
    image[280:, :] = ground(kind)[..., None] + np.random.default_rng(seed).integers(-4, 5, (200, 640, 3))
    if thing is not None:
        image[PILE] = thing + np.random.default_rng(seed).integers(-6, 7, (60, 100, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("kind", "thing"), [("cobbles", 45), ("cobbles", 130), ("zebra", 40), ("zebra", 150)])
def test_a_bag_dumped_on_cobbles_or_a_zebra_crossing_is_reported_not_taken_for_a_ghost(kind, thing):
    """Found by review: the first ghost test (edges along the outline) took a smooth bag on patterned ground for
    the street uncovered, and learnt it away."""
    model = BackgroundModel(short_seconds=4)
    run(model, [textured_street(i, kind) for i in range(30)])
    with_bag = run(model, [textured_street(100 + i, kind, thing) for i in range(60)], start=30)
    assert sum(len(r) > 0 for r in with_bag) >= 50
    assert model.is_new(np.array([400 / 640, 300 / 480, 500 / 640, 360 / 480])), "nor hidden from the detectors"


def test_a_pile_reported_at_dusk_stays_reported_as_the_light_fades():
    """Found by review: judged afresh each frame, a reported pile was taken for a ghost once the background around
    it had drifted with the fading light, and its case closed while it lay there."""
    model = BackgroundModel(short_seconds=4, long_seconds=600)
    run(model, [street(i) for i in range(30)])
    fading = [np.clip(street(100 + i, pile=True).astype(np.float32) * (1 - 0.26 * i / 3600), 0, 255).astype(np.uint8)
              for i in range(0, 3600, 5)]
    results = [model.update(frame, 30 + 5 * second) for second, frame in enumerate(fading)]
    assert sum(len(r) > 0 for r in results[5:]) == len(results) - 5


def test_a_picture_of_another_size_learns_the_street_afresh_and_says_so():
    """Found by review: a substream switched (4:3 to 16:9) made the model learn the street anew, the pile it had
    reported with it, without saying so: the pile was never reported again, and its violation ended as gone (the
    case verified as cleared) with the pile still there. Now the rules are told, as after the light changed."""
    model = BackgroundModel(short_seconds=4)
    run(model, [street(i) for i in range(30)])
    reported = run(model, [street(100 + i, pile=True) for i in range(60)], start=30)
    assert len(reported[-1]) == 1
    model.update(street(200, pile=True)[:360], 90.0)  # the same street, cropped to another shape
    assert model.relearned, "what it reported is now part of the street: unseen, not gone"
