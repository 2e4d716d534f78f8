"""The call time limit (ratd.service.deadline): asyncio.timeout's semantics, one timer."""

from __future__ import annotations

import asyncio

import pytest

from ratd.service.deadline import Deadline


def _in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_expiry_leaves_as_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        async with Deadline(_in(0.02)):
            await asyncio.sleep(5)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_that_ends_in_time_is_untouched() -> None:
    async with Deadline(_in(0.05)) as deadline:
        await asyncio.sleep(0)
    assert deadline._handle is None  # its timer is gone
    await asyncio.sleep(0.08)  # and nothing fires later


async def test_a_later_deadline_is_honoured_by_the_same_timer() -> None:
    steps = 0
    with pytest.raises(TimeoutError):
        async with Deadline(_in(0.05)) as deadline:
            for _ in range(5):  # each step outlasts the first deadline, not the moved one
                await asyncio.sleep(0.03)
                steps += 1
                deadline.reschedule(_in(0.05))
            await asyncio.sleep(5)
    assert steps == 5


async def test_an_earlier_deadline_re_arms_at_once() -> None:
    with pytest.raises(TimeoutError):  # not after the sleep: that would end the block
        async with Deadline(_in(30)) as deadline:
            deadline.reschedule(_in(0.02))
            await asyncio.sleep(5)


async def test_a_cancellation_from_elsewhere_stays_one() -> None:
    async def guarded() -> None:
        async with Deadline(_in(30)):
            await asyncio.sleep(5)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_other_errors_pass_through() -> None:
    with pytest.raises(ValueError, match="boom"):
        async with Deadline(_in(30)):
            raise ValueError("boom")
