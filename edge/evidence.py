"""Evidence an operator can trust: the full frame with the object's box, the zone outline, the label and the time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.zones import Zone

_RED = (40, 40, 230)
_YELLOW = (0, 215, 255)
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)


@dataclass(frozen=True)
class Evidence:
    jpeg: bytes
    region: tuple[float, float, float, float] | None = None
    """Where a crop lies in the frame (x1, y1, x2, y2 normalised), so the box can be found in it again."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.jpeg).hexdigest()


def _label(image: NDArray[np.uint8], text: str, origin: tuple[int, int], scale: float, colour: tuple) -> None:
    thickness = max(1, round(scale * 2))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = origin
    y = max(y, height + baseline)
    cv2.rectangle(image, (x, y - height - baseline), (x + width + 4, y + 2), colour, -1)
    cv2.putText(image, text, (x + 2, y - baseline // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, _BLACK, thickness,
                cv2.LINE_AA)


def annotate(image: NDArray[np.uint8], zone: Zone | None, box: tuple[float, float, float, float], caption: str,
             at: datetime, quality: int = 90) -> Evidence:
    """Draw on a copy of `image` and encode it as JPEG; the original frame is left untouched. `zone` is None for
    what concerns the whole picture (a camera fault)."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    scale = max(0.5, min(width, height) / 900)
    if zone is not None:
        outline = zone.pixel_outline(width, height)
        overlay = canvas.copy()
        cv2.fillPoly(overlay, [outline], _YELLOW)
        cv2.addWeighted(overlay, 0.15, canvas, 0.85, 0, dst=canvas)
        cv2.polylines(canvas, [outline], True, _YELLOW, max(2, round(2 * scale)), cv2.LINE_AA)
        corner = outline[np.argmin(outline.sum(axis=1))]  # the top-left-most corner, labelled just inside the zone
        _label(canvas, zone.zone_id, (int(corner[0]) + 6, int(corner[1]) + int(30 * scale)), scale * 0.8, _YELLOW)
    x1, y1, x2, y2 = (int(round(v)) for v in (box[0] * width, box[1] * height, box[2] * width, box[3] * height))
    cv2.rectangle(canvas, (x1, y1), (x2, y2), _RED, max(2, round(3 * scale)), cv2.LINE_AA)
    _label(canvas, caption, (x1, y1 - 4), scale, _RED)
    _label(canvas, at.isoformat(timespec="seconds"), (8, height - 10), scale, _WHITE)
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return Evidence(jpeg=encoded.tobytes())


def crop(image: NDArray[np.uint8], box: tuple[float, float, float, float], margin: float = 0.15,
         quality: int = 95) -> Evidence:
    """The object at the camera's own resolution with a margin around it, not drawn on, so that a plate or a
    stall's goods stay legible; small objects are not upscaled (that would add no detail)."""
    height, width = image.shape[:2]
    grow_x, grow_y = (box[2] - box[0]) * margin, (box[3] - box[1]) * margin
    x1, y1 = max(0, int((box[0] - grow_x) * width)), max(0, int((box[1] - grow_y) * height))
    x2, y2 = min(width, int(np.ceil((box[2] + grow_x) * width))), min(height, int(np.ceil((box[3] + grow_y) * height)))
    if x2 - x1 < 2 or y2 - y1 < 2:
        x1, y1, x2, y2 = 0, 0, width, height
    ok, encoded = cv2.imencode(".jpg", image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return Evidence(jpeg=encoded.tobytes(), region=(x1 / width, y1 / height, x2 / width, y2 / height))
