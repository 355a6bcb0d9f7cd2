from __future__ import annotations

import numpy as np

from edge.motion import MotionDetector


def street(seed: int, noise: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((480, 640, 3), 110, dtype=np.int16)
    image[300:, :] = 80  # the road
    return np.clip(image + rng.integers(-noise, noise + 1, image.shape), 0, 255).astype(np.uint8)


def test_sensor_noise_is_not_motion_but_a_person_walking_in_is():
    motion = MotionDetector()
    assert motion.moved(street(0)), "the first frame has nothing to compare with"
    assert not any(motion.moved(street(seed)) for seed in range(1, 30))
    frame = street(31)
    frame[200:400, 300:340] = 20  # someone dark walks in
    assert motion.moved(frame)


def test_lights_coming_on_relearn_the_background_instead_of_flagging_motion_for_ever():
    motion = MotionDetector()
    for seed in range(5):
        motion.moved(street(seed))
    brighter = [np.clip(street(seed).astype(np.int16) + 70, 0, 255).astype(np.uint8) for seed in range(10, 20)]
    assert motion.moved(brighter[0]), "one look at the changed scene"
    assert not any(motion.moved(frame) for frame in brighter[1:])
