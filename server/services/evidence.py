"""The evidence store: JPEGs on disk under their SHA-256, never in a database row."""

from __future__ import annotations

import hashlib
from pathlib import Path


class EvidenceStore:
    """JPEGs on disk under their SHA-256 (content-addressed: the same image is kept once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` (whose SHA-256 the caller may have computed already) and return its SHA-256."""
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        path = self.path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha256
