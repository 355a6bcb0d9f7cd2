"""Small files a node keeps across power cuts (its session number, the last good remote config)."""

from __future__ import annotations

import os
from pathlib import Path


def replace_durably(path: Path, data: bytes) -> None:
    """`path` holds `data`, whole, after a power cut at any moment: written beside it, synced, then renamed over it
    (renamed unsynced, a power cut could leave it empty). Raises OSError when the disk refuses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
