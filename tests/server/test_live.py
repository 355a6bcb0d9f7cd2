"""The consoles' live feed: each change once, in order; a console that fell behind is told to read afresh."""

from __future__ import annotations

import asyncio

from server.services.live import LiveFeed


async def _never_gone() -> bool:
    return False


def test_a_console_gets_each_change_in_order_and_a_quiet_stream_stays_alive():
    async def run() -> tuple[str, list[str]]:
        feed = LiveFeed()
        frames = feed.frames(_never_gone, seconds=0.5, keepalive=0.1)
        got = [await anext(frames)]
        for number in range(3):
            feed.publish_json(f'{{"n": {number}}}')
        got += [frame async for frame in frames]
        return feed.epoch, got

    feed_epoch, frames = asyncio.run(run())
    assert frames[0] == f"id: {feed_epoch}-0\nretry: 2000\n\n"
    assert [f for f in frames if "event: case" in f] == [
        f'id: {feed_epoch}-{n + 1}\nevent: case\ndata: {{"n": {n}}}\n\n' for n in range(3)]
    assert ": still here\n\n" in frames, "a comment keeps proxies from closing a quiet stream"


def test_a_console_that_fell_behind_is_told_to_resync_and_its_stream_ends():
    """Found by review: after a `resync` the stream stayed open and sent nothing more (the console's queue took
    nothing once it had overflowed), so a console showed no change for up to five minutes while it read as live."""
    async def run() -> list[str]:
        feed = LiveFeed(queue_size=3)
        frames = feed.frames(_never_gone, seconds=60, keepalive=0.1)
        got = [await anext(frames)]
        for number in range(10):  # a burst: a sweep escalating many cases at once
            feed.publish_json(f'{{"n": {number}}}')
        await asyncio.sleep(0.05)
        got += [frame async for frame in frames]  # ends by itself, long before its 60 s
        return got

    frames = asyncio.run(asyncio.wait_for(run(), timeout=5))
    assert frames[-1] == "event: resync\ndata: {}\n\n"
    assert not any("event: case" in f for f in frames), "a partial picture is never sent"


def test_a_console_that_reconnects_gets_what_it_missed_or_is_told_to_read_afresh():
    """Found by review: a stream ends every five minutes by design, and what changed before the console was back
    was lost: a new detection missing from the review queue until the page was reloaded."""
    async def stream(feed: LiveFeed, after: str | None) -> list[str]:
        return [frame async for frame in feed.frames(_never_gone, seconds=0.2, keepalive=1, after=after)]

    async def run() -> tuple[LiveFeed, list[str], list[str], list[str], list[str]]:
        feed = LiveFeed(replay=3)
        first = await stream(feed, None)
        seen = first[0].split("\n")[0].removeprefix("id: ")  # where the console was when its stream ended
        for number in range(2):  # between two streams
            feed.publish_json(f'{{"n": {number}}}')
        back = await stream(feed, seen)
        for number in range(2, 7):  # more than the feed keeps
            feed.publish_json(f'{{"n": {number}}}')
        too_late = await stream(feed, seen)
        elsewhere = await stream(LiveFeed(), f"{feed.epoch}-7")  # another worker
        return feed, first, back, too_late, elsewhere

    feed, first, back, too_late, elsewhere = asyncio.run(run())
    assert [f for f in back if "event: case" in f] == [f'id: {feed.epoch}-{n + 1}\nevent: case\ndata: {{"n": {n}}}\n\n'
                                                        for n in range(2)], "the two it missed, in order"
    assert too_late[0] == f"id: {feed.epoch}-7\nretry: 2000\nevent: resync\ndata: {{}}\n\n", \
        "told to read afresh, and from where, in one frame"
    assert not any("event: case" in f for f in too_late)
    assert elsewhere[0].endswith("event: resync\ndata: {}\n\n")
    assert not any("resync" in f for f in first + back)
    # found by review: the id it was at came first, before the frames replayed; a stream cut right after it
    # came back from there, the replayed changes lost, and no resync
    ids = [line.removeprefix("id: ") for frame in back for line in frame.split("\n") if line.startswith("id: ")]
    assert ids == [f"{feed.epoch}-1", f"{feed.epoch}-2"]


def test_a_reconnect_with_an_id_it_cannot_read_is_told_to_read_afresh():
    """Found by review: `²` is a digit to isdigit() and not to int(), and a Last-Event-ID of 5,000 digits is past
    int()'s limit: each broke the stream after its headers, and the browser retried with it every 2 s."""
    async def first_frame(feed: LiveFeed, after: str) -> str:
        frames = feed.frames(_never_gone, seconds=0.1, keepalive=1, after=after)
        return await anext(frames)

    feed = LiveFeed()
    for after in (f"{feed.epoch}-²", f"{feed.epoch}-{'9' * 5000}"):
        assert asyncio.run(first_frame(feed, after)).endswith("event: resync\ndata: {}\n\n")
