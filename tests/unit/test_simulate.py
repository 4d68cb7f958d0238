"""The simulated bank feed's pacing, without a broker."""

from __future__ import annotations

import asyncio
import time

from streams.tools import simulate


async def test_a_feed_behind_its_schedule_still_lets_the_loop_s_other_tasks_run() -> None:
    """Ten thousand events long overdue: every pace yields, so a task beside the feed
    (the fault suite's progress reads) runs between its events. A producer's send does
    not suspend while its buffer has room: a feed behind its schedule, in py-spy dumps
    of the fault suite, held the loop nearly alone."""
    ticks = 0

    async def beside() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(beside())
    await asyncio.sleep(0)
    before = ticks
    long_ago = time.monotonic() - 3600
    for sent in range(1, 10_001):
        await simulate._pace(long_ago, sent, rate=100)
    task.cancel()
    assert ticks - before >= 10_000


async def test_a_feed_ahead_of_its_schedule_waits_for_its_events_to_be_due() -> None:
    """Five events at 50 a second from now: the fifth is due after 0.1 s."""
    started = time.monotonic()
    await simulate._pace(started, 5, rate=50)
    assert time.monotonic() - started >= 0.1
