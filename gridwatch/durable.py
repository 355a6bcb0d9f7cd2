"""Small files kept whole across power cuts and read while they are written: a node's session number and last good
remote config, the server's tokens file."""

from __future__ import annotations

import os
from pathlib import Path


def replace_durably(path: Path, data: bytes, make_folder: bool = True) -> None:
    """`path` holds `data`, whole, after a power cut at any moment: written beside it, synced, then renamed over it
    (renamed unsynced, a power cut could leave it empty). Raises OSError when the disk refuses."""
    path = path.resolve()  # a link's target replaced, not the link
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    try:  # a file there already keeps its mode and, where we may, its owner (a server's group may read it)
        before = path.stat()
    except FileNotFoundError:
        pass
    else:
        os.chmod(tmp, before.st_mode & 0o7777)
        for owner in ((before.st_uid, before.st_gid), (-1, before.st_gid)):  # one not ours: its group at least
            try:
                os.chown(tmp, *owner)
                break
            except PermissionError:
                continue
    tmp.replace(path)
