"""Photos people take of a case: field staff reporting back with the street as they left it (处置后), or as they
found it, an operator adding one. Checked to be a JPEG or PNG that decodes, kept on disk under its SHA-256 like the
cameras' evidence, and listed with the case."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from PIL import ImageFile, JpegImagePlugin, PngImagePlugin
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.models import CasePhoto, CaseRecord
from server.services.events import lock_case
from server.services.evidence import EvidenceStore

MAX_PHOTOS = 50
"""Photos one case may hold: enough for any street job, and a runaway app cannot fill the disk through one case."""
MAX_PIXELS = {"JPEG": 50_000_000, "PNG": 16_000_000}
"""Larger than any phone's photo (a PNG is a screenshot); a file claiming more is refused before it is decoded."""
MAX_SCANS = 64
"""A progressive JPEG has about ten; a file of thousands of scans makes the decoder work for minutes."""
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
DECODERS: dict[bytes, type[ImageFile.ImageFile]] = {b"\xff\xd8\xff": JpegImagePlugin.JpegImageFile,
                                                    b"\x89PNG\r\n\x1a\n": PngImagePlugin.PngImageFile}
"""The two kinds a photo may be, by their first bytes, each read by its own Pillow parser: not `Image.open`, which
tries every format Pillow knows (and which ultralytics, once imported, patches to install a HEIF plugin from pip)."""


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
    """What the upload is, or PhotoRefused: a JPEG or PNG by its headers (read by the decoder's own parser before
    anything is decoded), of a sane size and, for a JPEG, a sane number of scans, that decodes whole (a JPEG at an
    eighth of its size: a check, not a copy in memory)."""
    decoder = next((decoder for magic, decoder in DECODERS.items() if data.startswith(magic)), None)
    if decoder is None:
        raise PhotoRefused(422, "the body is not a JPEG or PNG photo (send the image's bytes as the request body)")
    try:
        with decoder(io.BytesIO(data)) as image:
            kind, (width, height) = decoder.format, image.size
            if not width or not height or width * height > MAX_PIXELS[kind]:
                raise PhotoRefused(422, f"the photo is {width}x{height}: a {kind} of at most "
                                        f"{MAX_PIXELS[kind] // 1_000_000} megapixels")
            if kind == "JPEG" and data.count(b"\xff\xda") > MAX_SCANS:  # each scan starts so, nothing else does
                raise PhotoRefused(422, f"the JPEG has more than {MAX_SCANS} scans")
            if kind == "JPEG":
                image.draft("L", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except PhotoRefused:
        raise
    except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises for a file it cannot decode
        raise PhotoRefused(422, f"the image does not decode: the file is damaged or cut short ({error})") from None
    return Photo(CONTENT_TYPES[kind], width, height)


def add_photo(session: Session, store: EvidenceStore, case: CaseRecord, data: bytes, stage: Stage,
              caption: str | None, actor: str, now: datetime) -> CasePhoto:
    """Check `data`, keep its file and record it with the case (in the caller's transaction). The same photo sent
    again (an app retrying an upload whose answer it lost) is the one already kept, not a second."""
    photo = checked_photo(data)
    sha256 = hashlib.sha256(data).hexdigest()
    lock_case(session, case.id)  # two uploads at once take turns: the count below holds for both
    kept = session.scalar(select(CasePhoto).where(CasePhoto.case_id == case.id, CasePhoto.sha256 == sha256))
    if kept is not None:
        return kept
    held = session.scalar(select(func.count()).select_from(CasePhoto).where(CasePhoto.case_id == case.id))
    if held >= MAX_PHOTOS:
        raise PhotoRefused(409, f"case {case.id} holds {held} photos already, the most a case keeps")
    record = CasePhoto(case_id=case.id, stage=stage.value, caption=caption or None, sha256=store.put(data, sha256),
                       bytes=len(data), content_type=photo.content_type, actor=actor, at=now)
    session.add(record)
    return record


def photos_of(session: Session, case_id: int) -> list[CasePhoto]:
    return list(session.scalars(select(CasePhoto).where(CasePhoto.case_id == case_id).order_by(CasePhoto.id)))
