"""Pictures as the API answers them (evidence, case photos, camera snapshots): named by their SHA-256 as a quoted
ETag, so a browser asking again with `If-None-Match` gets a 304 instead of the bytes; kept in the caller's own cache
only (`private`: people and number plates are in them), for good where the URL always means the same bytes."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request, Response
from fastapi.responses import FileResponse

FOR_GOOD = "private, max-age=31536000, immutable"
"""Evidence and photos: the URL names one event's or one photo's bytes, which never change."""
ASK_AGAIN = "private, no-cache"
"""A camera's latest snapshot: the same URL shows the next one; the browser revalidates (a 304 while unchanged)."""


def picture(request: Request, path: Path, content_type: str, sha256: str, cache: str = FOR_GOOD) -> Response:
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": cache}
    asked = {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}
    if etag in asked or "*" in asked:
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type=content_type, headers=headers)
