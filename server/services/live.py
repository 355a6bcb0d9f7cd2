"""Case changes pushed to the consoles that are open (Server-Sent Events), from whichever thread made them.

Each open console has a bounded queue on the event loop that serves it. A console too slow to keep up is told to
reload (`resync`) instead of being sent a partial picture; nothing else is ever dropped silently.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gridwatch.contract import CaseMessage

RESYNC = "resync"


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
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class LiveFeed:
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._listeners: set[_Listener] = set()
        self._lock = threading.Lock()

    def publish(self, message: CaseMessage) -> None:
        data = message.model_dump_json()
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.loop.call_soon_threadsafe(listener.offer, data)
            except RuntimeError:  # its loop has closed; the subscription's exit removes it
                pass

    @property
    def listening(self) -> int:
        with self._lock:
            return len(self._listeners)

    @asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[str]]:
        listener = _Listener(asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            self._listeners.add(listener)
        try:
            yield listener.queue
        finally:
            with self._lock:
                self._listeners.discard(listener)
