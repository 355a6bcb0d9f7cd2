from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.capture import CaptureError, VideoSource

FRAME = np.zeros((4, 4, 3), dtype=np.uint8)


class ScriptedCapture:
    """Stands in for cv2.VideoCapture: opens or not, then delivers `frames` frames and fails."""

    def __init__(self, opens: bool, frames: int) -> None:
        self.opens, self.remaining = opens, frames

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opens

    def grab(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def retrieve(self):
        return True, FRAME

    def get(self, _prop) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_a_live_stream_that_drops_is_reopened_with_back_off():
    script = iter([ScriptedCapture(True, 3), ScriptedCapture(False, 0), ScriptedCapture(False, 0),
                   ScriptedCapture(True, 2)])
    sleeps: list[float] = []
    ticks = iter(range(1000))
    source = VideoSource("rtsp://camera/stream", sample_fps=1, opener=lambda _src: next(script),
                         sleep=sleeps.append, clock=lambda: float(next(ticks)),
                         monotonic=lambda: 10.0 * next(ticks))  # frames 10 s apart: a steady stream
    frames = source.frames()
    got = [next(frames) for _ in range(3)]
    assert source.delivering
    got += [next(frames) for _ in range(2)]
    assert len(got) == 5 and source.reconnects == 1 and source.delivering
    assert sleeps == [1.0, 2.0], "waits 1 s, then 2 s, before the camera is back"


def test_a_live_camera_whose_clock_steps_back_keeps_delivering_frames_stamped_by_the_clock():
    """Found by review: live frames were sampled by the wall clock, so after NTP stepped it back five minutes every
    frame was 'too early' until the clock caught up: five minutes blind, and an offline fault raised."""
    camera_seconds = iter(range(0, 100_000))  # the monotonic clock: 10 frames a second, whatever the wall says
    wall = {"offset": 1_000_000.0}
    now = {"t": 0.0}

    def monotonic() -> float:
        now["t"] = next(camera_seconds) / 10
        return now["t"]

    def clock() -> float:
        return wall["offset"] + now["t"]

    source = VideoSource("rtsp://camera/stream", sample_fps=2, opener=lambda _src: ScriptedCapture(True, 2000),
                         clock=clock, monotonic=monotonic)
    frames = source.frames()
    before = [next(frames) for _ in range(20)]  # ten seconds at two a second
    wall["offset"] -= 300  # NTP steps the wall clock back five minutes
    after = [next(frames) for _ in range(20)]
    assert now["t"] < 25, "the next ten seconds of frames came in ten seconds of the camera's time"
    assert after[0].timestamp < before[-1].timestamp - 290, "stamped by the wall clock, step and all"
    assert np.allclose(np.diff([frame.timestamp for frame in after]), 0.5, atol=0.11)


def test_a_missing_file_is_a_clear_error():
    with pytest.raises(CaptureError, match="does not exist"):
        VideoSource("/no/such/clip.mp4", sample_fps=5)


def test_a_file_is_sampled_at_the_detection_rate_with_media_timestamps(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(30):  # 3 s at 10 fps
        writer.write(np.zeros((24, 32, 3), dtype=np.uint8))
    writer.release()
    source = VideoSource(str(path), sample_fps=2, realtime=False)
    frames = list(source.frames())
    assert source.frames_read == 30
    assert len(frames) == 6
    gaps = np.diff([frame.timestamp for frame in frames])
    assert np.allclose(gaps, 0.5, atol=1e-6)


def test_prefetch_hands_over_every_file_frame_in_order_and_reraises_failures():
    from edge.capture import Frame, prefetch

    frames = [Frame(FRAME, float(i), i) for i in range(50)]
    assert [f.index for f in prefetch(iter(frames))] == list(range(50))

    def broken():
        yield frames[0]
        raise CaptureError("camera unplugged")

    with pytest.raises(CaptureError, match="unplugged"):
        list(prefetch(broken()))


def test_telemetry_sees_a_source_that_is_down_while_it_retries():
    states: list[bool] = []
    script = iter([ScriptedCapture(True, 1), ScriptedCapture(False, 0), ScriptedCapture(False, 0),
                   ScriptedCapture(True, 1)])
    ticks = iter(range(1000))
    source = VideoSource("rtsp://camera/stream", sample_fps=1, opener=lambda _src: next(script),
                         sleep=lambda _s: states.append(source.delivering), clock=lambda: float(next(ticks)),
                         monotonic=lambda: 10.0 * next(ticks))
    frames = source.frames()
    next(frames), next(frames)
    assert states == [False, False], "reported as not delivering during both retries"
    assert source.delivering and source.reconnects == 1


def test_a_camera_that_opens_but_sends_no_frame_is_retried_with_back_off_too():
    """Before: a camera (or NVR) that accepted every connection and then sent nothing was reopened in a tight loop."""
    script = iter([ScriptedCapture(True, 1), ScriptedCapture(True, 0), ScriptedCapture(True, 0),
                   ScriptedCapture(True, 0), ScriptedCapture(True, 1)])
    sleeps: list[float] = []
    delivering: list[bool] = []
    ticks = iter(range(1000))

    def pause(seconds: float) -> None:
        sleeps.append(seconds)
        delivering.append(source.delivering)

    source = VideoSource("rtsp://camera/stream", sample_fps=1, opener=lambda _src: next(script),
                         sleep=pause, clock=lambda: float(next(ticks)), monotonic=lambda: 10.0 * next(ticks))
    frames = source.frames()
    next(frames), next(frames)
    assert sleeps == [1.0, 2.0, 4.0], "a pause before each reopen after one that sent nothing"
    # found by review: each connection opened counted as delivering, and telemetry said `source_ok` throughout
    assert delivering == [False, False, False] and source.delivering, "delivering again with its first frame"


def test_a_camera_that_drops_each_connection_after_a_frame_is_reopened_with_back_off():
    """Found by review: a camera that accepts, sends one frame and drops (an overloaded one, an NVR at its
    connection limit) had its back-off reset by that frame, and was reopened as fast as it answered, for ever."""
    sleeps: list[float] = []
    ticks = iter(range(10_000))
    source = VideoSource("rtsp://camera/stream", sample_fps=1, opener=lambda _src: ScriptedCapture(True, 1),
                         sleep=sleeps.append, clock=lambda: float(next(ticks)),
                         monotonic=lambda: 0.1 * next(ticks))  # each connection drops a fraction of a second in
    frames = source.frames()
    for _ in range(8):
        next(frames)
    assert source.reconnects > 6 and len(sleeps) == source.reconnects, "a pause before every reopen"
    assert sleeps[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_file_played_in_real_time_keeps_its_pace_when_the_clock_steps_back(tmp_path):
    """Found by review: a file was paced by the wall clock, so a step back of five minutes (NTP, during a demo)
    paused the camera for five minutes, with no fault raised (files are never offline)."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(50):
        writer.write(np.zeros((24, 32, 3), dtype=np.uint8))
    writer.release()
    wall, steady, sleeps = [1_000_000.0], [0.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 2))
        wall[0] += seconds
        steady[0] += seconds

    source = VideoSource(str(path), sample_fps=2, realtime=True, clock=lambda: wall[0], sleep=sleep,
                         monotonic=lambda: steady[0])
    frames = source.frames()
    for _ in range(4):
        next(frames)
    wall[0] -= 300
    next(frames)
    assert max(sleeps) <= 0.5


def test_frames_from_a_camera_that_is_away_end_when_the_node_stops():
    """Before: the camera's thread waited for a frame with no end, and the node's shutdown for it (10 s each)."""
    import threading
    import time

    from edge.capture import prefetch

    def away():  # reconnecting, with back-off: nothing comes
        time.sleep(30)
        yield from ()

    until = threading.Event()
    threading.Timer(0.3, until.set).start()
    began = time.monotonic()
    assert list(prefetch(away(), live=True, until=until)) == []
    assert time.monotonic() - began < 3


class StallingCamera:
    """A camera that takes one connection at a time: each open is counted, and a connection's `grab` blocks
    while `stalled` is clear (an RTSP stream that stops mid-read)."""

    def __init__(self) -> None:
        import threading

        self.open_now = self.most_open = self.opened = 0
        self.stalled = threading.Event()
        self.flowing = threading.Event()
        self.flowing.set()

    def __call__(self, _source):  # the opener
        camera = self

        class Connection(ScriptedCapture):
            def __init__(self) -> None:
                super().__init__(True, 10**12)  # never runs out: a stream read ahead at full speed emptied 10,000
                camera.opened += 1
                camera.open_now += 1
                camera.most_open = max(camera.most_open, camera.open_now)

            def grab(self) -> bool:
                if not camera.flowing.is_set():
                    camera.stalled.set()
                    camera.flowing.wait(30)
                return super().grab()

            def release(self) -> None:
                camera.open_now -= 1

        return Connection()


def test_a_camera_started_again_opens_its_source_only_once_the_stalled_reader_before_let_go():
    """A camera whose pipeline failed starts again while its old reader may still be stuck in a read (or in its
    reconnect back-off): the new reader opened a second connection meanwhile, which cameras that allow one refuse.
    Now it waits for the old one to let go, and a reader waiting to reconnect stops at once."""
    import threading
    import time

    from edge.capture import prefetch

    camera = StallingCamera()
    source = VideoSource("rtsp://camera/stream", sample_fps=1000, opener=camera)
    done = threading.Event()
    first = prefetch(source.frames(done), live=True, stop=done)
    next(first)
    camera.flowing.clear()
    assert camera.stalled.wait(10)
    first.close()  # the run failed: its consumer is gone, its reader stuck in a read

    again = threading.Event()
    second = prefetch(source.frames(again), live=True, stop=again)
    got: list = []
    reader = threading.Thread(target=lambda: got.append(next(second)))
    reader.start()
    time.sleep(0.5)
    assert camera.opened == 1, "no second connection while the first is in use"
    camera.flowing.set()  # the stalled read returns: the old reader lets go, the new one opens
    reader.join(10)
    assert got and camera.opened == 2 and camera.most_open == 1
    second.close()

    away = VideoSource("rtsp://camera/stream", sample_fps=1, opener=lambda _src: ScriptedCapture(False, 0))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    assert list(away.frames(stop)) == [], "a reader waiting to reconnect ends when told to stop"
    assert time.monotonic() - began < 3


def test_a_cameras_password_stays_out_of_the_log_and_of_what_telemetry_reports(caplog):
    """Found by review: `rtsp://user:password@…` was logged at every reconnect, and the error telemetry carries."""
    script = iter([ScriptedCapture(True, 1), ScriptedCapture(False, 0), ScriptedCapture(True, 1)])
    ticks = iter(range(1000))
    source = VideoSource("rtsp://viewer:s3cret@192.0.2.10/stream1?key=abc", sample_fps=1,
                         opener=lambda _src: next(script), sleep=lambda _s: None, clock=lambda: float(next(ticks)),
                         monotonic=lambda: float(next(ticks)))
    with caplog.at_level("INFO", logger="edge.capture"):
        frames = source.frames()
        next(frames), next(frames)
    assert "rtsp://***@192.0.2.10/stream1" in caplog.text
    assert "s3cret" not in caplog.text and "abc" not in caplog.text and "viewer" not in caplog.text
    with pytest.raises(CaptureError) as refused:
        VideoSource("rtsp://viewer:s3cret@192.0.2.10/stream1", sample_fps=1,
                    opener=lambda _src: ScriptedCapture(False, 0))._open()
    assert "s3cret" not in str(refused.value)
