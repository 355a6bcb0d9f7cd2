"""The evidence store: JPEGs on disk under their SHA-256, never in a database row."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from gridwatch.config_files import ConfigError


class EvidenceStore:
    """JPEGs on disk under their SHA-256 (content-addressed: the same image is kept once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"evidence_dir {root}: cannot make the folder ({error.strerror or error})") from None

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` (whose SHA-256 the caller may have computed already) and return its SHA-256."""
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        path = self.path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # a name of its own: several workers store the same retained snapshot at once
            handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return sha256

    def set_aside(self, topic: str, payload: bytes, reason: str) -> Path:
        """A message that could not be written to the database at all, not even as a dead letter: kept here,
        whole, with its topic and the reason, for an operator to look at (`set-aside/*.json`)."""
        folder = self.root / "set-aside"
        folder.mkdir(parents=True, exist_ok=True)
        sha256 = hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()
        (folder / f"{sha256}.payload").write_bytes(payload)
        meta = folder / f"{sha256}.json"
        meta.write_text(json.dumps({"topic": topic, "reason": reason, "bytes": len(payload)}, ensure_ascii=False))
        return meta
