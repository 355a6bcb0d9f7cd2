"""A small card that other programs fill under the outbox: a real one where the system lets a test mount a tmpfs (in
a mount namespace of its own, `unshare -rm`, as root or not), a simulated one where it does not (a container
without the right to mount).

On a real full disk SQLite in WAL mode fails at a commit, when it appends to its WAL, deletes as well as inserts;
`PRAGMA max_page_count` (the other tests' full disk) fails at an insert only and lets every delete through. The
simulated card fails every commit that changed something (and every write outside a transaction) with SQLITE_FULL
while its free space, counted from the files on it, is gone: harsher than a real disk, where a commit the WAL's
file already has room for goes through.

Each scenario runs in a process of its own, inside the namespace for a real card (SQLite follows /proc's link to a
mount of another namespace back to the test's own disk, so only a process inside sees the card): it takes the card
and returns what the test checks, as JSON.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
DiskUsage = namedtuple("DiskUsage", "total used free")
IN_A_PROCESS_OF_ITS_OWN = """
import importlib, json, sys
from pathlib import Path
from tests.edge.small_card import Card
module, name, directory, kind, size = sys.argv[1:]
card = Card(Path(directory), kind, int(size))
print(json.dumps(getattr(importlib.import_module(module), name)(card) | {"card": kind}))
"""


@functools.cache
def mountable() -> bool:
    """Whether a tmpfs can be mounted, in a mount namespace of the test's own."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            tried = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", directory],
                                   capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return tried.returncode == 0


def on_a_small_card(scenario: Callable[[Card], dict], directory: Path, megabytes: int) -> dict:
    """What `scenario` returns, run on a card of `megabytes` mounted at `directory` (empty), with `card` added:
    "tmpfs" or "simulated"."""
    directory.mkdir(parents=True, exist_ok=True)
    size = megabytes * 1024 * 1024
    command = [sys.executable, "-c", IN_A_PROCESS_OF_ITS_OWN, scenario.__module__, scenario.__name__, str(directory)]
    if mountable():
        command = ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"',
                   str(directory), *command, "tmpfs", str(size)]
    else:
        command = [*command, "simulated", str(size)]
    ran = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, f"the scenario failed:\n{ran.stderr}"
    return json.loads(ran.stdout.splitlines()[-1])


class Card:
    """The card, as a scenario sees it: its folder, and other programs that fill and free it."""

    def __init__(self, directory: Path, kind: str, size: int) -> None:
        self.directory = directory
        self.size = size
        self.recording = directory / "recording"
        """What another program writes on the card (a camera's recording, a core dump)."""
        self._simulated_recording: int | None = None
        if kind == "simulated":
            self._simulated_recording = 0
            shutil.disk_usage = self._usage
            connect = sqlite3.connect
            sqlite3.connect = lambda *args, **kwargs: _OnTheCard(connect(*args, **kwargs), self)

    def fill(self) -> None:
        """Another program takes every byte left."""
        if self._simulated_recording is not None:
            self._simulated_recording += self.free_bytes()
            return
        descriptor = os.open(self.recording, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for block in (1024 * 1024, 4096):
                while True:
                    try:
                        os.write(descriptor, bytes(block))
                    except OSError:
                        break
        finally:
            os.close(descriptor)

    def free(self, size: int) -> None:
        """The other program deletes `size` bytes of what it wrote."""
        if self._simulated_recording is not None:
            self._simulated_recording = max(0, self._simulated_recording - size)
        else:
            os.truncate(self.recording, max(0, self.recording.stat().st_size - size))

    def free_bytes(self) -> int:
        if self._simulated_recording is None:
            return shutil.disk_usage(self.directory).free
        held = sum(path.stat().st_blocks * 512 for path in self.directory.rglob("*") if path.is_file())
        return max(0, self.size - held - self._simulated_recording)

    def _usage(self, _path: object) -> DiskUsage:
        free = self.free_bytes()
        return DiskUsage(self.size, self.size - free, free)


class _OnTheCard:
    """A connection whose writes the simulated card refuses once it is full: SQLITE_FULL at a commit that changed
    something, or at a write outside a transaction, the transaction rolled back as SQLite does."""

    def __init__(self, db: sqlite3.Connection, card: Card) -> None:
        self._db = db
        self._card = card
        self._changes_at_begin = 0

    def execute(self, sql: str, parameters: tuple | list = ()) -> sqlite3.Cursor:
        verb = sql.split(None, 1)[0].upper()
        if verb == "BEGIN":
            self._changes_at_begin = self._db.total_changes
        elif verb == "COMMIT" and self._db.total_changes > self._changes_at_begin:
            self._refuse_if_full()
        elif not self._db.in_transaction and verb in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                changes = self._db.total_changes
                cursor = self._db.execute(sql, parameters)
                if self._db.total_changes > changes:
                    self._refuse_if_full()
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return cursor
        return self._db.execute(sql, parameters)

    def _refuse_if_full(self) -> None:
        if self._card.free_bytes() > 0:
            return
        self._db.execute("ROLLBACK")
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorname = "SQLITE_FULL"
        raise error

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)
