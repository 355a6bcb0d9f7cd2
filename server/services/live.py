"""Case changes pushed to the consoles that are open (Server-Sent Events), from whichever thread made them.

A server with a broker link feeds it from the broker's case topics (`gw/v1/cases/#`, read from the first console
on: `IngestService.follow_cases`), so a console sees every worker's changes, not only those of the worker it is
connected to; without one, from the changes this process makes (`Ingest.listeners`).

Each open console has a bounded queue on the event loop that serves it. A console too slow to keep up is told to
reload (`resync`), and its stream ends there, instead of being sent a partial picture; nothing else is ever dropped
silently. Each change carries an `id` (this feed's epoch and a number): a console that reconnects with the last id
it saw (`after`) gets what it missed in between from the feed's recent changes, or `resync` when they cannot all be
given (another worker's feed, or longer ago than the feed keeps).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from gridwatch.contract import CaseMessage

RESYNC = "resync"
REVOKED_SECONDS = 2.0
"""How often a stream looks whether its token still holds (the tokens file is read as often)."""
CLOSED = "closed"
"""The server is stopping: the stream ends (the browser reconnects by itself to whichever server answers)."""


class _Listener:
    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, data: str) -> None:  # runs on the listener's loop
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.overflowed = True
            self._last(RESYNC)

    def close(self) -> None:  # runs on the listener's loop
        self.overflowed = True  # nothing after it
        self._last(CLOSED)

    def _last(self, word: str) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(word)


class LiveFeed:
    def __init__(self, queue_size: int = 1000, replay: int = 2000) -> None:
        self.queue_size = queue_size
        self._listeners: set[_Listener] = set()
        self._lock = threading.Lock()
        self.epoch = secrets.token_hex(4)
        """This feed's name in its ids: a console reconnecting to another worker (or after a restart) is told to
        read afresh, since the numbers are this feed's own."""
        self._number = 0
        self._recent: deque[tuple[int, str]] = deque(maxlen=replay)
        self.on_listen: Callable[[], None] | None = None
        """Called (in a thread) as each stream opens, before its first frame: e.g. to start reading the broker's case
        topics; cheap when called again."""

    def publish(self, message: CaseMessage) -> None:
        self.publish_json(message.model_dump_json())

    def publish_json(self, data: str) -> None:
        """A case message as published on the broker (`CaseMessage` JSON)."""
        with self._lock:
            self._number += 1
            frame = f"id: {self.epoch}-{self._number}\nevent: case\ndata: {data}\n\n"
            self._recent.append((self._number, frame))
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.loop.call_soon_threadsafe(listener.offer, frame)
            except RuntimeError:  # its loop has closed; the subscription's exit removes it
                pass

    def close(self) -> None:
        """End every open stream (the server is stopping): a console's stream would otherwise hold the server's
        shutdown up until the stream's own end, minutes later. Safe from any thread, or a signal handler."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.loop.call_soon_threadsafe(listener.close)
            except RuntimeError:
                pass

    @property
    def listening(self) -> int:
        with self._lock:
            return len(self._listeners)

    def _missed(self, after: str | None) -> list[str] | None:
        """The frames after the id `after`; None when they cannot all be given. Under the lock."""
        if not after:
            return []
        epoch, _, number = after.partition("-")
        # digits as ASCII, and few: "²" is a digit to isdigit() and not to int(), and 5,000 digits past int()'s limit
        if epoch != self.epoch or not (number.isascii() and number.isdigit() and len(number) <= 20) \
                or int(number) > self._number:
            return None
        oldest = self._recent[0][0] if self._recent else self._number + 1
        if int(number) < oldest - 1:
            return None
        return [frame for seen, frame in self._recent if seen > int(number)]

    @asynccontextmanager
    async def subscription(self, after: str | None = None
                           ) -> AsyncIterator[tuple[asyncio.Queue[str], list[str] | None, str]]:
        """The listener's queue, what it missed since `after` (None: more than can be given) and the id it is at."""
        listener = _Listener(asyncio.get_running_loop(), self.queue_size)
        if self.on_listen is not None:  # it may wait for the broker: not on the event loop
            await asyncio.to_thread(self.on_listen)
        with self._lock:  # one step: nothing published falls between what is replayed and what is queued
            self._listeners.add(listener)
            missed, at = self._missed(after), f"{self.epoch}-{self._number}"
        try:
            yield listener.queue, missed, at
        finally:
            with self._lock:
                self._listeners.discard(listener)

    async def frames(self, disconnected: Callable[[], Awaitable[bool]], seconds: float,
                     keepalive: float = 15.0, after: str | None = None,
                     revoked: Callable[[], bool] = lambda: False) -> AsyncIterator[str]:
        """One console's stream, as Server-Sent Events frames, for `seconds` at most: each case change as
        `event: case`, a comment every `keepalive` seconds of quiet. It ends early when the console goes
        (`disconnected`), when the server stops, and right after a `resync`: that console's queue took nothing
        since it overflowed, so the stream would only have kept it waiting; it reconnects and reads afresh. `after`:
        the last id the console saw: what came since is sent first (or a `resync`, when it cannot all be). It ends
        within `REVOKED_SECONDS` of its token being `revoked` (taken out of the tokens file, its role changed)."""
        deadline = time.monotonic() + seconds
        async with self.subscription(after) as (queue, missed, at):
            # the id it is at goes with the last frame replayed, not before them: a stream cut after an id sent first
            # came back from there, the frames between lost and no resync sent
            if missed is None:
                yield f"id: {at}\nretry: 2000\nevent: resync\ndata: {{}}\n\n"
            elif missed:
                yield "retry: 2000\n\n"
                for frame in missed:
                    yield frame
            else:
                yield f"id: {at}\nretry: 2000\n\n"
            quiet_since = time.monotonic()
            while time.monotonic() < deadline and not await disconnected() and not revoked():
                wait = min(keepalive, REVOKED_SECONDS, max(0.01, deadline - time.monotonic()))
                try:
                    data = await asyncio.wait_for(queue.get(), timeout=wait)
                except TimeoutError:
                    if time.monotonic() - quiet_since >= keepalive:
                        quiet_since = time.monotonic()
                        yield ": still here\n\n"
                    continue
                quiet_since = time.monotonic()
                if data == CLOSED:
                    return
                if data == RESYNC:
                    yield "event: resync\ndata: {}\n\n"
                    return
                yield data
