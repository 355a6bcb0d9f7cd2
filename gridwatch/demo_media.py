"""A demo clip rendered from an image that ships inside the ultralytics package, so every machine has one."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEMO_ZONE = [(0.0, 0.45), (1.0, 0.45), (1.0, 0.97), (0.0, 0.97)]
"""The kerb in front of the bus in `bus.jpg`, as a no-parking zone (normalised corners)."""


def ultralytics_asset(name: str) -> Path:
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not in this ultralytics installation ({path})")
    return path


def render_parked_bus_clip(out: Path, seconds: float = 30.0, fps: float = 10.0, seed: int = 0) -> Path:
    """A still street scene (a bus stopped at the kerb) as a camera would film it: sensor noise and a slow drift
    of exposure on every frame, so the detector sees a real video, not one repeated image."""
    image = cv2.imread(str(ultralytics_asset("bus.jpg")))
    if image is None:
        raise RuntimeError("cannot read bus.jpg from the ultralytics package")
    out.parent.mkdir(parents=True, exist_ok=True)
    height, width = image.shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {out}")
    rng = np.random.default_rng(seed)
    base = image.astype(np.int16)
    try:
        for index in range(int(seconds * fps)):
            exposure = int(round(6 * np.sin(index / (fps * 4))))
            noise = rng.integers(-6, 7, size=base.shape, dtype=np.int16)
            writer.write(np.clip(base + noise + exposure, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return out
