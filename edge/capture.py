"""Frames from a video file, an RTSP/HTTP stream or a USB camera, each with the time it shows."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from gridwatch.redact import redacted

log = logging.getLogger(__name__)


class CaptureError(RuntimeError):
    pass


ANALYSIS_WIDTH = 320
"""Width of the grey copy that motion and background models compare: plenty to see a person or a pile."""


def small_grey(image: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    """A small grey copy for cheap analysis. Grey first, then an area-averaging resize: both are linear, so the
    result is the same as the other way round, at a third of the cost."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    height, full_width = grey.shape[:2]
    return cv2.resize(grey, (width, max(1, round(height * width / full_width))), interpolation=cv2.INTER_AREA)


def analysis_grey(image: NDArray[np.uint8]) -> NDArray[np.float32]:
    """`small_grey` at ANALYSIS_WIDTH, blurred against sensor noise, as float32."""
    return cv2.GaussianBlur(small_grey(image, ANALYSIS_WIDTH), (5, 5), 0).astype(np.float32)


@dataclass(frozen=True)
class Frame:
    image: NDArray[np.uint8]
    timestamp: float
    """Seconds since the epoch. For a file: when playback started plus the frame's position in the file."""
    index: int

    @cached_property
    def analysis_grey(self) -> NDArray[np.float32]:
        """Computed once per frame, shared by the motion check and the background model."""
        return analysis_grey(self.image)


def is_live(source: str) -> bool:
    return source.isdigit() or "://" in source


STEADY_SECONDS = 10.0
"""How long a reopened live stream must deliver before its next drop is taken as a new failure, not the same one."""


class VideoSource:
    """Reads `source` at up to `sample_fps` frames a second, dropping the frames in between.

    Files are played as a camera would deliver them (`realtime`), or as fast as the detector goes; their timestamps
    come from the frame position, so rules see the same dwell either way. A live stream that stops delivering is
    reopened with back-off (1 s doubling to `max_backoff`), forever, until the caller stops iterating; the back-off
    starts afresh only once a stream has delivered for `STEADY_SECONDS`, so a camera that drops every connection
    after a frame (an overloaded one, an NVR at its connection limit) is not reopened as fast as it answers.
    """

    def __init__(self, source: str, sample_fps: float, realtime: bool = True, loop: bool = False,
                 max_backoff: float = 30.0, opener=cv2.VideoCapture, sleep=time.sleep, clock=time.time,
                 start_time: float | None = None, monotonic=time.monotonic) -> None:
        """`start_time` (seconds since the epoch): when a file's first frame was filmed; default: now. A live
        camera's frames are stamped by `clock` (the wall clock) and sampled by `monotonic`, which no clock step
        moves: sampled by the wall clock, a camera whose clock NTP stepped back went blind for the step's length."""
        self.source = source
        self.shown = redacted(source)
        """The source for logs and errors (telemetry carries them): an rtsp:// URL without its user and password."""
        self.sample_fps = sample_fps
        self.realtime = realtime
        self.live = is_live(source)
        self.loop = loop and not self.live
        self.max_backoff = max_backoff
        self._opener = opener
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic
        self.start_time = start_time
        if not self.live and not Path(source).exists():
            raise CaptureError(f"video source {source!r} does not exist")
        self.frames_read = 0
        self.reconnects = 0
        self.restarts = 0
        """Times the source was reopened on request (the `restart_camera` command)."""
        self.delivering = True
        self._restart = threading.Event()
        self._backoff = 1.0
        self._capturing = threading.Lock()
        """Held by the `frames` that has the source open: a camera started again after a failure opens it only
        once the reader before has let go (many cameras take one or two connections at a time)."""

    def request_restart(self) -> None:
        """Close and reopen the source before the next frame (a file starts again from its beginning)."""
        self._restart.set()

    def _open(self) -> cv2.VideoCapture:
        capture = self._opener(int(self.source) if self.source.isdigit() else self.source)
        if not capture.isOpened():
            capture.release()
            raise CaptureError(f"cannot open video source {self.shown!r}")
        return capture

    def _reopen_live(self, stop: threading.Event | None) -> cv2.VideoCapture:
        self.delivering = False
        while True:
            try:
                capture = self._open()
            except CaptureError:
                self._pause("unreachable", stop)
                continue
            self.reconnects += 1  # delivering again once a frame comes (one that opens may send none)
            log.info("camera %s reconnected", self.shown)
            return capture

    def _pause(self, why: str, stop: threading.Event | None) -> None:
        """Wait before the next try: 1 s, doubling to `max_backoff` while the tries fail in a row; `_Stopped` if
        `stop` is set meanwhile."""
        log.warning("camera %s %s; retrying in %.0f s", self.shown, why, self._backoff)
        if stop is None:
            self._sleep(self._backoff)
        elif stop.wait(self._backoff):
            raise _Stopped
        self._backoff = min(self.max_backoff, self._backoff * 2)

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        """The sampled frames; with `stop`, they end soon after it is set, also while a live camera is away. The
        source is opened only once the `frames` before it (a camera's run before a failure) has closed it."""
        while not self._capturing.acquire(timeout=0.1):
            if stop is not None and stop.is_set():
                return
        try:
            yield from self._frames(stop)
        except _Stopped:
            return
        finally:
            self._capturing.release()

    def _frames(self, stop: threading.Event | None) -> Iterator[Frame]:
        capture = self._open() if not self.live else self._first_live_open(stop)
        dry = True  # (re)opened, and no frame since
        flowing_since: float | None = None  # the first frame since it (re)opened; None once it has been steady
        native_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        if not self.live and not 0 < native_fps < 1000:
            native_fps = 25.0
        started = self.start_time if self.start_time is not None and not self.live else self._clock()
        began = self._monotonic()
        step = 1.0 / self.sample_fps
        next_sample = 0.0
        position = 0  # frames since playback started, across loops
        yielded = 0
        try:
            while True:
                if self._restart.is_set():
                    self._restart.clear()
                    capture.release()
                    capture = self._first_live_open(stop) if self.live else self._open()
                    self.restarts += 1
                    log.info("camera %s reopened on request", self.shown)
                ok = capture.grab()  # demux only: frames we skip are never decoded or colour-converted
                if not ok:
                    capture.release()
                    if self.live:
                        self.delivering = False
                        if dry:  # it opens, but sends nothing: wait as for one that does not open
                            self._pause("opens but sends no frame", stop)
                        elif flowing_since is not None and (
                                flowed := self._monotonic() - flowing_since) < STEADY_SECONDS:
                            self._pause(f"stopped delivering frames {flowed:.0f} s after it came back", stop)
                        else:  # after a steady spell: a failure of its own, tried again at once
                            self._backoff = 1.0
                            log.warning("camera %s stopped delivering frames", self.shown)
                        capture = self._reopen_live(stop)
                        dry, flowing_since = True, None
                        continue
                    if self.loop and position > 0:
                        capture = self._open()
                        continue
                    log.info("end of %s after %d frames", self.shown, position)
                    return
                self.frames_read += 1
                if dry:  # frames again
                    dry, self.delivering, flowing_since = False, True, self._monotonic()
                elif flowing_since is not None and self._monotonic() - flowing_since >= STEADY_SECONDS:
                    flowing_since, self._backoff = None, 1.0  # steady: the next failure starts its back-off afresh
                offset = self._monotonic() - began if self.live else position / native_fps
                position += 1
                if offset + 1e-9 < next_sample:
                    continue
                ok, image = capture.retrieve()
                if not ok:
                    continue
                next_sample = offset + step if next_sample == 0 else max(next_sample + step, offset)
                if self.realtime and not self.live:  # paced by the clock no step moves, as a live camera is
                    delay = began + offset - self._monotonic()
                    if delay > 0:
                        self._sleep(delay)
                yield Frame(image=image, timestamp=self._clock() if self.live else started + offset, index=yielded)
                yielded += 1
        finally:
            capture.release()

    def _first_live_open(self, stop: threading.Event | None) -> cv2.VideoCapture:
        try:
            return self._open()
        except CaptureError:
            return self._reopen_live(stop)


class _Stopped(Exception):
    """The reader of a live camera was told to stop while it waited to reconnect."""


_END = object()


def prefetch(frames: Iterator[Frame], depth: int = 2, live: bool = False,
             until: threading.Event | None = None, stop: threading.Event | None = None) -> Iterator[Frame]:
    """Decode in a thread of its own, overlapping with detection. A file waits for the consumer (nothing is
    skipped); a live camera keeps only the newest frames, so a slow detector never falls behind real time. Ends
    when `until` is set, even while a camera that is away sends nothing (the node stops within a second). `stop`
    is set when the consumer is done (give it to `VideoSource.frames`, so that its reader ends too)."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = stop or threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        buffer.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        if live:
                            with contextlib.suppress(queue.Empty):
                                buffer.get_nowait()  # drop the oldest frame
                if stop.is_set():
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            failure.append(error)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:  # the source let go here, in its own thread, not whenever it is collected
                with contextlib.suppress(Exception):
                    close()
            while not stop.is_set():
                try:
                    buffer.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    continue

    thread = threading.Thread(target=produce, name="capture", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = buffer.get(timeout=0.2)
            except queue.Empty:
                if until is not None and until.is_set():
                    return
                continue
            if item is _END:
                if failure:
                    raise failure[0]
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=1)  # a live source may be in its reconnect back-off: it is a daemon, and ends there
