"""Case changes pushed to the consoles that are open (Server-Sent Events), from whichever thread made them.

A server with a broker link feeds it from the broker's case topics (`gw/v1/cases/#`, read from the first console
on: `IngestService.follow_cases`), so a console sees every worker's changes, not only those of the worker it is
connected to; without one, from the changes this process makes (`Ingest.listeners`).

Each open console has a bounded queue on the event loop that serves it. A console too slow to keep up is told to
reload (`resync`), and its stream ends there, instead of being sent a partial picture; nothing else is ever dropped
silently.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from gridwatch.contract import CaseMessage

RESYNC = "resync"
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
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._listeners: set[_Listener] = set()
        self._lock = threading.Lock()
        self.on_listen: Callable[[], None] | None = None
        """Called (in a thread) as each stream opens, before its first frame: e.g. to start reading the broker's case
        topics; cheap when called again."""

    def publish(self, message: CaseMessage) -> None:
        self.publish_json(message.model_dump_json())

    def publish_json(self, data: str) -> None:
        """A case message as published on the broker (`CaseMessage` JSON)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.loop.call_soon_threadsafe(listener.offer, data)
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

    @asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[str]]:
        listener = _Listener(asyncio.get_running_loop(), self.queue_size)
        if self.on_listen is not None:  # it may wait for the broker: not on the event loop
            await asyncio.to_thread(self.on_listen)
        with self._lock:
            self._listeners.add(listener)
        try:
            yield listener.queue
        finally:
            with self._lock:
                self._listeners.discard(listener)

    async def frames(self, disconnected: Callable[[], Awaitable[bool]], seconds: float,
                     keepalive: float = 15.0) -> AsyncIterator[str]:
        """One console's stream, as Server-Sent Events frames, for `seconds` at most: each case change as
        `event: case`, a comment every `keepalive` seconds of quiet. It ends early when the console goes
        (`disconnected`), when the server stops, and right after a `resync`: that console's queue took nothing
        since it overflowed, so the stream would only have kept it waiting; it reconnects and reads afresh."""
        deadline = time.monotonic() + seconds
        async with self.subscription() as queue:
            yield "retry: 2000\n\n"
            while time.monotonic() < deadline and not await disconnected():
                wait = min(keepalive, max(0.01, deadline - time.monotonic()))
                try:
                    data = await asyncio.wait_for(queue.get(), timeout=wait)
                except TimeoutError:
                    yield ": still here\n\n"
                    continue
                if data == CLOSED:
                    return
                if data == RESYNC:
                    yield "event: resync\ndata: {}\n\n"
                    return
                yield f"event: case\ndata: {data}\n\n"
