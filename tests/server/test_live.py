"""The consoles' live feed: each change once, in order; a console that fell behind is told to read afresh."""

from __future__ import annotations

import asyncio

from server.services.live import LiveFeed


async def _never_gone() -> bool:
    return False


def test_a_console_gets_each_change_in_order_and_a_quiet_stream_stays_alive():
    async def run() -> list[str]:
        feed = LiveFeed()
        frames = feed.frames(_never_gone, seconds=0.5, keepalive=0.1)
        got = [await anext(frames)]
        for number in range(3):
            feed.publish_json(f'{{"n": {number}}}')
        got += [frame async for frame in frames]
        return got

    frames = asyncio.run(run())
    assert frames[0].startswith("retry:")
    assert [f for f in frames if f.startswith("event: case")] == [f'event: case\ndata: {{"n": {n}}}\n\n'
                                                                    for n in range(3)]
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
    assert not any(f.startswith("event: case") for f in frames), "a partial picture is never sent"
