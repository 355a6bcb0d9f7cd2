"""The disk under the outbox: how much of it the outbox may take, and a ballast file kept beside it for when other
programs take the rest.

The outbox leaves `DISK_RESERVE` of the disk to everything else (the system's logs, SQLite's own journal), so a long
outage fills the outbox to its policy rather than the disk to a standstill. Other programs may fill the disk all the
same (a recording, a core dump), and SQLite in WAL mode then fails at a commit, when it appends to its WAL, whatever
the transaction does: the room the outbox's policy makes (deletes) needs WAL room too, and so does every message the
broker acknowledges. The ballast (`BALLAST_BYTES`, a file the outbox keeps beside its own) is that room: released
when SQLite first finds the disk full, so the transaction that makes room by the policy commits and the WAL, once
SQLite checkpoints it into the outbox's file, is written again from its start; made again once the disk has room
for it beyond the reserve. Until then the outbox counts the ballast's bytes as the reserve's, not its own.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

DISK_RESERVE = 32 * 1024 * 1024
"""Free disk the outbox leaves to everything else: its limit comes down to what the disk has."""
DISK_CHECK_SECONDS = 5.0
"""How long a measure of the disk stands while messages come: other programs fill and free the disk meanwhile, and
the outbox follows within seconds without a system call per message. A message the last measure has no room for
measures again at once, so a disk freed since is used at once."""
BALLAST_BYTES = 4 * 1024 * 1024
"""The ballast's size: SQLite's WAL up to its checkpoint (1,000 pages, 4 MB), which a transaction that makes room
and those after it fill before the checkpoint lets the WAL be written again from its start."""


class Disk:
    """The disk of the outbox at `path`, and its ballast (`path` with `.ballast` added). `clock` times the
    measures."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.ballast = path.with_name(f"{path.name}.ballast")
        self._clock = clock
        self.measured_at = float("-inf")

    @property
    def stale(self) -> bool:
        """Whether the last measure is older than `DISK_CHECK_SECONDS`."""
        return self._clock() - self.measured_at >= DISK_CHECK_SECONDS

    def room(self) -> int | None:
        """The disk's free space beyond the reserve and the ballast (None when it cannot be read: the measure
        fails, not necessarily the disk). A ballast released is made again first if the disk has room for it."""
        self.measured_at = self._clock()
        try:
            free = shutil.disk_usage(self.ballast.parent).free
        except OSError as error:
            log.warning("the disk's free space at %s cannot be read (%s)", self.ballast.parent, error)
            return None
        if not self.held and free >= DISK_RESERVE + BALLAST_BYTES and self._lay():
            free -= BALLAST_BYTES
        return max(0, free - DISK_RESERVE - (0 if self.held else BALLAST_BYTES))

    @property
    def held(self) -> bool:
        try:
            return self.ballast.stat().st_size >= BALLAST_BYTES
        except OSError:
            return False

    def _lay(self) -> bool:
        """The ballast, its blocks taken on the disk (not a file with holes, which would free nothing)."""
        try:
            with self.ballast.open("wb") as file:
                os.posix_fallocate(file.fileno(), 0, BALLAST_BYTES)
        except OSError as error:
            self.ballast.unlink(missing_ok=True)
            log.warning("the outbox's ballast %s cannot be made (%s)", self.ballast, error)
            return False
        log.info("the outbox's ballast %s is in place (%d MB)", self.ballast, BALLAST_BYTES // 2**20)
        return True

    def release(self) -> bool:
        """Deletes the ballast when SQLite finds the disk full; whether there was one to release."""
        if not self.held:
            return False
        try:
            self.ballast.unlink()
        except OSError as error:
            log.error("the outbox's ballast %s cannot be released (%s)", self.ballast, error)
            return False
        log.error("the disk of the outbox is full (other programs took it): its ballast %s is released so the outbox "
                  "makes room by its policy and the broker's acknowledgements go on; it is made again once the disk "
                  "has room", self.ballast)
        self.measured_at = float("-inf")
        return True
