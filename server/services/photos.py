"""Photos people take of a case: field staff reporting back with the street as they left it (处置后), or as they
found it, an operator adding one. Checked to be a JPEG or PNG that decodes, kept on disk under its SHA-256 like the
cameras' evidence, and listed with the case."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import cv2
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.models import CasePhoto, CaseRecord
from server.services.evidence import EvidenceStore

MAX_PHOTOS = 50
"""Photos one case may hold: enough for any street job, and a runaway app cannot fill the disk through one case."""
MAX_PIXELS = 50_000_000
"""Larger than any phone's photo; a file claiming more is refused before it is decoded."""
KINDS = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
ENDS = {"image/jpeg": b"\xff\xd9", "image/png": b"IEND\xaeB`\x82"}
"""How each kind's file ends: one cut short in an upload (a dropped connection) is refused, whether or not a
decoder would make do with what came."""


class Stage(StrEnum):
    BEFORE = "before"
    """The street as the staff found it."""
    AFTER = "after"
    """As they left it: what a feedback shows."""
    OTHER = "other"


class PhotoRefused(ValueError):
    """The upload is not a photo the case can keep; the message says why (answered as 422 or 409)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Photo:
    content_type: str
    width: int
    height: int


def checked_photo(data: bytes) -> Photo:
    """What the upload is, or PhotoRefused: a JPEG or PNG by its first bytes, of a sane size by its header (read
    before anything is decoded), that decodes whole."""
    content_type = next((kind for magic, kind in KINDS.items() if data.startswith(magic)), None)
    if content_type is None:
        raise PhotoRefused(422, "the body is not a JPEG or PNG photo (send the image's bytes as the request body)")
    size = _png_size(data) if content_type == "image/png" else _jpeg_size(data)
    if size is None:
        raise PhotoRefused(422, f"the {content_type} has no readable size: the file is damaged or cut short")
    width, height = size
    if not width or not height or width * height > MAX_PIXELS:
        raise PhotoRefused(422, f"the photo is {width}x{height}: at most {MAX_PIXELS // 1_000_000} megapixels")
    if not data.rstrip(b"\0").endswith(ENDS[content_type]) or cv2.imdecode(
            np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
        raise PhotoRefused(422, f"the {content_type} does not decode: the file is damaged or cut short")
    return Photo(content_type, width, height)


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
"""JPEG start-of-frame markers (the frame header holds the size); C4, C8 and CC are other segments."""


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # segments without a length
            at += 2
            continue
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    return None


def add_photo(session: Session, store: EvidenceStore, case: CaseRecord, data: bytes, stage: Stage,
              caption: str | None, actor: str, now: datetime) -> CasePhoto:
    """Check `data`, keep its file and record it with the case (in the caller's transaction)."""
    photo = checked_photo(data)
    held = session.scalar(select(func.count()).select_from(CasePhoto).where(CasePhoto.case_id == case.id))
    if held >= MAX_PHOTOS:
        raise PhotoRefused(409, f"case {case.id} holds {held} photos already, the most a case keeps")
    record = CasePhoto(case_id=case.id, stage=stage.value, caption=caption or None, sha256=store.put(data),
                       bytes=len(data), content_type=photo.content_type, actor=actor, at=now)
    session.add(record)
    return record


def photos_of(session: Session, case_id: int) -> list[CasePhoto]:
    return list(session.scalars(select(CasePhoto).where(CasePhoto.case_id == case_id).order_by(CasePhoto.id)))
