"""Tiled detection: a model run on the whole frame and on an overlapping grid of its parts, merged into one set of
boxes, so that an object a few dozen pixels wide in a camera's frame (a can, a bag across the street) reaches the
model at twice or three times the size it has in the whole frame squeezed to the model's input (SAHI's idea)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Rows = NDArray[np.float32]
"""(n, 6) detections in pixels: x1, y1, x2, y2, score, class (ultralytics' `Boxes.data`)."""

OVERLAP = 0.25
"""How much neighbouring tiles share, as a part of a tile: an object on a seam is whole in one of them."""
SAME_OBJECT = 0.5
"""Two boxes of one class whose overlap covers this much of the smaller one are one object (a bag seen whole in a
tile and as part of its pile in the whole frame; the two halves of an object on a seam)."""


def windows(width: int, height: int, grid: int, overlap: float = OVERLAP) -> list[tuple[int, int, int, int]]:
    """The `grid` × `grid` tiles of a frame, x1, y1, x2, y2 in pixels, neighbours sharing `overlap` of a tile."""
    if grid <= 1:
        return [(0, 0, width, height)]

    def spans(size: int) -> list[tuple[int, int]]:
        tile = int(np.ceil(size / (grid - (grid - 1) * overlap)))
        starts = np.linspace(0, size - tile, grid).round().astype(int)
        return [(int(start), int(start) + tile) for start in starts]

    return [(x1, y1, x2, y2) for y1, y2 in spans(height) for x1, x2 in spans(width)]


def merge(rows: Rows, passes: NDArray[np.int64], same: float = SAME_OBJECT) -> Rows:
    """Greedy non-maximum merging of the rows of several model passes (`passes`: each row's, the whole frame and
    each tile): the best-scored box of a class takes in the boxes of its class from other passes that mostly lie on
    it (their intersection over the smaller box ≥ `same`), at most one a pass, growing to cover them; its score
    stays the best one. Two boxes of one pass are never one object: the model told them apart (cars parked close,
    overlapping more than half, were joined, and a row of them chained into one box)."""
    if len(rows) < 2:
        return rows
    order = np.argsort(-rows[:, 4], kind="stable")
    rows, passes = rows[order], passes[order]
    areas = np.maximum((rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1]), 1e-9)
    taken = np.zeros(len(rows), dtype=bool)
    kept = []
    for index in range(len(rows)):
        if taken[index]:
            continue
        taken[index] = True
        box = rows[index].copy()
        seen_in = {int(passes[index])}
        while len(candidates := np.flatnonzero(~taken & (rows[:, 5] == box[5])
                                               & ~np.isin(passes, list(seen_in)))):
            # against the box as it has grown, until it takes in no more: a truck across a seam, seen whole and as
            # two halves, is one box, though the halves overlap each other little
            others = rows[candidates]
            width = np.clip(np.minimum(others[:, 2], box[2]) - np.maximum(others[:, 0], box[0]), 0, None)
            height = np.clip(np.minimum(others[:, 3], box[3]) - np.maximum(others[:, 1], box[1]), 0, None)
            smaller = np.minimum(areas[candidates], max((box[2] - box[0]) * (box[3] - box[1]), 1e-9))
            absorbed = candidates[width * height / smaller >= same]
            absorbed = absorbed[np.unique(passes[absorbed], return_index=True)[1]]  # the best-scored of each pass
            if not len(absorbed):
                break
            seen_in |= {int(value) for value in passes[absorbed]}
            taken[absorbed] = True
            box[:2] = np.minimum(box[:2], rows[absorbed, :2].min(axis=0))
            box[2:4] = np.maximum(box[2:4], rows[absorbed, 2:4].max(axis=0))
        kept.append(box)
    return np.stack(kept).astype(rows.dtype, copy=False)


def detect_tiled(predict: Callable[[NDArray[np.uint8]], Rows], image: NDArray[np.uint8], grid: int) -> Rows:
    """`predict` (one image → its rows in that image's pixels) on the whole `image` and, for `grid` > 1, on each of
    its tiles; the rows in the image's pixels, merged."""
    whole = np.asarray(predict(image), dtype=np.float32).reshape(-1, 6)
    if grid <= 1:
        return whole
    height, width = image.shape[:2]
    found = [whole]
    for x1, y1, x2, y2 in windows(width, height, grid):
        rows = np.asarray(predict(image[y1:y2, x1:x2]), dtype=np.float32).reshape(-1, 6).copy()
        rows[:, [0, 2]] += x1
        rows[:, [1, 3]] += y1
        found.append(rows)
    passes = np.concatenate([np.full(len(rows), number) for number, rows in enumerate(found)]).astype(np.int64)
    return merge(np.concatenate(found), passes)
