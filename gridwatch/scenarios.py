"""Short scenario clips with ground truth, rendered from real photographs, for tests and demonstrations.

`parking_clip`: the pickup truck of ../shared/media/dog.jpg drives onto the empty street of leuvenA.jpg, parks,
and drives off. The returned `ParkingTruth` says when, and where a zone around the parked truck lies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

TRUCK_IN_DOG_JPG = (460, 64, 704, 184)  # x1, y1, x2, y2 of the pickup truck, with a margin
PERSON_IN_BUS_JPG = (221, 405, 346, 860)  # a pedestrian in the ultralytics package's bus.jpg
GROUND_Y = 470  # where wheels touch the road in leuvenA.jpg


@dataclass(frozen=True)
class ParkingTruth:
    arrives: float
    """Seconds into the clip when the truck stops."""
    leaves: float
    """Seconds into the clip when it starts to drive off."""
    zone: list[tuple[float, float]]
    """A zone around the parked truck (normalised), for a no-parking rule."""


def _paste(canvas: NDArray[np.uint8], sprite: NDArray[np.uint8], x: int, bottom: int) -> None:
    height, width = sprite.shape[:2]
    top = bottom - height
    x1, x2 = max(0, x), min(canvas.shape[1], x + width)
    if x2 > x1:
        canvas[top:bottom, x1:x2] = sprite[:, x1 - x:x2 - x]


def parking_clip(out: Path, media: Path, fps: float = 10.0, empty: float = 5.0, drive: float = 4.0,
                 parked: float = 40.0, after: float = 7.0, seed: int = 0, passer_by: bool = False,
                 light_change: bool = False) -> ParkingTruth:
    """With `passer_by`, a pedestrian walks along the pavement in front of the parked truck, hiding part of it
    for a few seconds, as happens all day on a real street. With `light_change`, the whole scene darkens at once a
    while after the truck parked (a cloud, dusk lighting) and stays so."""
    street = cv2.imread(str(media / "leuvenA.jpg"))
    dog = cv2.imread(str(media / "dog.jpg"))
    if street is None or dog is None:
        raise FileNotFoundError(f"leuvenA.jpg and dog.jpg are needed in {media}")
    x1, y1, x2, y2 = TRUCK_IN_DOG_JPG
    truck = dog[y1:y2, x1:x2]
    height, width = street.shape[:2]
    park_x = 300
    start_x, end_x = -truck.shape[1], width
    rng = np.random.default_rng(seed)
    person = None
    if passer_by:
        from gridwatch.demo_media import ultralytics_asset

        px1, py1, px2, py2 = PERSON_IN_BUS_JPG
        person = cv2.resize(cv2.imread(str(ultralytics_asset("bus.jpg")))[py1:py2, px1:px2], None, fx=0.37, fy=0.37)
    walk_from, walk_seconds = empty + drive + 12.0, 8.0
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    timeline = [(empty, None), (drive, (start_x, park_x)), (parked, (park_x, park_x)), (drive, (park_x, end_x)),
                (after, None)]
    clock = 0.0
    try:
        for seconds, path in timeline:
            frames = int(round(seconds * fps))
            for index in range(frames):
                frame = street.copy()
                if path is not None:
                    x = int(round(path[0] + (path[1] - path[0]) * index / max(1, frames - 1)))
                    _paste(frame, truck, x, GROUND_Y)
                walked = (clock - walk_from) / walk_seconds
                if person is not None and 0 <= walked <= 1:
                    _paste(frame, person, int(150 + walked * 450), GROUND_Y + 25)
                clock += 1 / fps
                noise = rng.integers(-4, 5, size=frame.shape, dtype=np.int16)
                writer.write(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    centre = (park_x + truck.shape[1] / 2) / width
    half = 0.75 * truck.shape[1] / width
    zone = [(centre - half, 0.70), (centre + half, 0.70), (centre + half, 0.95), (centre - half, 0.95)]
    return ParkingTruth(arrives=empty + drive, leaves=empty + drive + parked, zone=zone)


PILE_IMAGE = "mdc_photo_mdc_a14eaa_cdv_photo_001_1461260762224"
"""A photo of the street-garbage data set (../shared/datasets) with dumped cardboard and planks: no COCO class."""


@dataclass(frozen=True)
class LitterTruth:
    dumped: float
    cleared: float
    zone: list[tuple[float, float]]


def litter_clip(out: Path, media: Path, dataset: Path, fps: float = 5.0, before: float = 10.0,
                lying: float = 70.0, after: float = 30.0, seed: int = 0) -> LitterTruth:
    """The empty Leuven street; a pile of rubbish cut from a real report photo is dumped on it, lies there, and is
    cleared away."""
    street = cv2.imread(str(media / "leuvenA.jpg"))
    photo = cv2.imread(str(dataset / "images" / f"{PILE_IMAGE}.jpg"))
    if street is None or photo is None:
        raise FileNotFoundError("leuvenA.jpg and the street-garbage data set are needed")
    label = (dataset / "labels" / f"{PILE_IMAGE}.txt").read_text().split()
    cx, cy, bw, bh = (float(v) for v in label[1:5])
    ph, pw = photo.shape[:2]
    pile = photo[int((cy - bh / 2) * ph):int((cy + bh / 2) * ph), int((cx - bw / 2) * pw):int((cx + bw / 2) * pw)]
    pile = cv2.resize(pile, None, fx=0.55, fy=0.55, interpolation=cv2.INTER_AREA)
    height, width = street.shape[:2]
    x, bottom = 420, 540
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    try:
        for index in range(int((before + lying + after) * fps)):
            frame = street.copy()
            if before <= index / fps < before + lying:
                _paste(frame, pile, x, bottom)
            noise = rng.integers(-4, 5, size=frame.shape, dtype=np.int16)
            writer.write(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    zone = [(0.3, 0.6), (1.0, 0.6), (1.0, 1.0), (0.3, 1.0)]
    return LitterTruth(dumped=before, cleared=before + lying, zone=zone)


def stall_clip(out: Path, media: Path, dataset: Path, fps: float = 5.0, before: float = 10.0,
               trading: float = 70.0, after: float = 30.0, seed: int = 0) -> LitterTruth:
    """Goods laid out on the street (the same real pile photo) with a vendor standing beside them, swaying a little,
    then everything packed away. Truth: `dumped` is when the stall is set up, `cleared` when it is packed away."""
    from gridwatch.demo_media import ultralytics_asset

    street = cv2.imread(str(media / "leuvenA.jpg"))
    photo = cv2.imread(str(dataset / "images" / f"{PILE_IMAGE}.jpg"))
    label = (dataset / "labels" / f"{PILE_IMAGE}.txt").read_text().split()
    cx, cy, bw, bh = (float(v) for v in label[1:5])
    ph, pw = photo.shape[:2]
    goods = photo[int((cy - bh / 2) * ph):int((cy + bh / 2) * ph), int((cx - bw / 2) * pw):int((cx + bw / 2) * pw)]
    goods = cv2.resize(goods, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    px1, py1, px2, py2 = PERSON_IN_BUS_JPG
    vendor = cv2.resize(cv2.imread(str(ultralytics_asset("bus.jpg")))[py1:py2, px1:px2], None, fx=0.45, fy=0.45)
    height, width = street.shape[:2]
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    try:
        for index in range(int((before + trading + after) * fps)):
            frame = street.copy()
            seconds = index / fps
            if before <= seconds < before + trading:
                _paste(frame, goods, 420, 540)
                sway = int(round(3 * np.sin(seconds)))
                _paste(frame, vendor, 420 + goods.shape[1] + 10 + sway, 545)
            noise = rng.integers(-4, 5, size=frame.shape, dtype=np.int16)
            writer.write(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return LitterTruth(dumped=before, cleared=before + trading, zone=[(0.3, 0.6), (1.0, 0.6), (1.0, 1.0), (0.3, 1.0)])


def still_clip(image: NDArray[np.uint8], out: Path, seconds: float = 30.0, fps: float = 5.0, seed: int = 0,
               width: int = 960) -> Path:
    """A still camera watching `image` (scaled to `width`) for `seconds`, with sensor noise on every frame."""
    scale = width / image.shape[1]
    frame = cv2.resize(image, (width, int(round(image.shape[0] * scale / 2)) * 2), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frame.shape[1], frame.shape[0]))
    try:
        for _ in range(int(seconds * fps)):
            noise = rng.integers(-4, 5, size=frame.shape, dtype=np.int16)
            writer.write(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return out
