"""Tiled detection: the frame's parts cover it with overlap, and boxes of one object seen in several of them (or
whole and in a part) come back as one."""

from __future__ import annotations

import numpy as np

from edge.tiles import detect_tiled, merge, windows


def test_tiles_cover_the_frame_and_neighbours_share_a_strip():
    tiles = windows(1920, 1080, 2)
    assert len(tiles) == 4
    covered = np.zeros((1080, 1920), dtype=bool)
    for x1, y1, x2, y2 in tiles:
        assert 0 <= x1 < x2 <= 1920 and 0 <= y1 < y2 <= 1080
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    (left, _, left_end, _), (right, _, _, _) = tiles[0], tiles[1]
    assert 0.2 <= (left_end - right) / (left_end - left) <= 0.3, "an object on the seam is whole in one of them"
    assert windows(640, 480, 1) == [(0, 0, 640, 480)]
    assert len(windows(1920, 1080, 3)) == 9


def test_one_object_seen_twice_is_one_box_and_two_objects_stay_two():
    pile = [100, 100, 300, 260, 0.6, 0]
    bag_in_pile = [120, 150, 200, 250, 0.8, 0]  # a tile saw one bag of the pile, more surely
    bag_apart = [500, 100, 560, 160, 0.7, 0]
    car_on_pile = [110, 110, 290, 250, 0.9, 2]  # another class is never merged in
    merged = merge(np.array([pile, bag_in_pile, bag_apart, car_on_pile], dtype=np.float32),
                   np.array([0, 1, 0, 0]))  # the whole frame's pass, and a tile's
    garbage = sorted(merged[merged[:, 5] == 0].tolist())
    assert len(garbage) == 2 and len(merged) == 3
    assert np.allclose(garbage[0], [100, 100, 300, 260, 0.8, 0]), "the pile, with the surer score"
    assert np.allclose(garbage[1], bag_apart)


def test_an_object_across_a_seam_seen_whole_and_in_two_halves_is_one_box():
    """Found by review: the halves were tested against the first box's own corners only, so the second half,
    overlapping the first little, survived as a second truck."""
    left_half, whole, right_half = [300, 400, 1098, 700, 0.8, 7], [300, 400, 1500, 700, 0.6, 7], \
        [822, 400, 1500, 700, 0.7, 7]
    merged = merge(np.array([left_half, whole, right_half], dtype=np.float32), np.array([1, 0, 2]))
    assert merged.tolist() == [[300, 400, 1500, 700, np.float32(0.8), 7]]


def test_cars_the_model_told_apart_stay_apart_however_close_they_are_parked():
    """Found by review: boxes of one pass were merged too: four cars parked close (overlapping 55 %, which the
    model keeps apart) became one box, and turning tiles on lost three of them."""
    cars = [[100 + 100 * n, 500, 340 + 100 * n, 700, 0.9, 2] for n in range(4)]  # each 58 % on the next

    def predict(image: np.ndarray) -> np.ndarray:  # sees the cars whole in the frame, nothing in the tiles
        return np.array(cars, dtype=np.float32) if image.shape[1] == 1920 else np.zeros((0, 6), np.float32)

    frame = np.zeros((1080, 1920, 3), dtype=np.uint8)
    assert len(detect_tiled(predict, frame, 2)) == 4


def test_a_small_object_is_found_in_a_tile_and_placed_in_the_frame():
    """A stand-in model that, like a real one squeezing its input to 640 px, misses objects under 20 px there."""
    frame = np.zeros((1080, 1920, 3), dtype=np.uint8)
    frame[1000:1030, 1800:1840] = 255  # 40 × 30 px: 13 px wide at 640, 23 px in a tile of 1097

    def predict(image: np.ndarray) -> np.ndarray:
        scale = 640 / max(image.shape[:2])
        ys, xs = np.nonzero(image[:, :, 0])
        if not len(xs) or (xs.max() - xs.min() + 1) * scale < 20:
            return np.zeros((0, 6), dtype=np.float32)
        return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 0.9, 0]], dtype=np.float32)

    assert len(detect_tiled(predict, frame, 1)) == 0
    found = detect_tiled(predict, frame, 2)
    assert found.tolist() == [[1800, 1000, 1840, 1030, np.float32(0.9), 0]]
