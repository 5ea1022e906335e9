"""A gateway stops even when a poller loses a cancellation (Python 3.11's
``asyncio.wait_for``, under pymodbus's requests, returns the answer instead when the
cancellation and the answer come together)."""

from __future__ import annotations

import asyncio
import time

from gateway.app import _cancel


def test_a_task_that_loses_a_cancellation_is_cancelled_again() -> None:
    polls = 0

    async def poller_losing_one_cancel() -> None:
        nonlocal polls
        lost = False
        while True:
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost = True  # as wait_for does when the answer is there: goes on polling
            polls += 1

    async def main() -> float:
        task = asyncio.ensure_future(poller_losing_one_cancel())
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await _cancel([task])
        assert task.cancelled()
        return time.monotonic() - started

    took = asyncio.run(main())
    assert took < 2.0
    assert polls > 0
