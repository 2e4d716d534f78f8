"""The call time limit (ratd.deadline): asyncio.timeout's semantics on coarse
alarms (ratd.alarms: many alarms, one loop timer)."""

from __future__ import annotations

import asyncio

import pytest

from ratd import alarms
from ratd.deadline import Deadline


def _in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_expiry_leaves_as_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        async with Deadline(_in(0.02)):
            await asyncio.sleep(5)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_that_ends_in_time_is_untouched() -> None:
    async with Deadline(_in(0.05)):
        await asyncio.sleep(0)
    assert len(alarms.clock()) == 0  # its alarm is gone
    await asyncio.sleep(0.15)  # and nothing fires later


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


async def test_the_sync_form_is_the_same_limit() -> None:
    with pytest.raises(TimeoutError):
        with Deadline(_in(0.02)):
            await asyncio.sleep(5)


# -- the alarms themselves ----------------------------------------------------------------


async def test_alarms_fire_in_order_never_early() -> None:
    clock = alarms.clock()
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, float, float]] = []
    for name, delay in (("c", 0.25), ("a", 0.02), ("b", 0.1)):
        when = loop.time() + delay
        clock.start(when, lambda n=name, w=when: fired.append((n, w, loop.time())))
    await asyncio.sleep(0.25 + 2 * alarms.RESOLUTION + 0.05)
    assert [name for name, _, _ in fired] == ["a", "b", "c"]
    assert all(at >= when for _, when, at in fired)
    assert len(clock) == 0


async def test_a_cancelled_alarm_never_fires_and_a_moved_one_fires_at_its_new_time() -> None:
    clock = alarms.clock()
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    cancelled = clock.start(loop.time() + 0.02, lambda: fired.append("cancelled"))
    later = clock.start(loop.time() + 0.02, lambda: fired.append("later"))
    earlier = clock.start(loop.time() + 30, lambda: fired.append("earlier"))
    cancelled.cancel()
    later.move(loop.time() + 0.8)
    earlier.move(loop.time() + 0.05)
    await asyncio.sleep(0.05 + 2 * alarms.RESOLUTION)
    assert fired == ["earlier"]  # "later" is not due yet, "cancelled" never is
    await asyncio.sleep(0.8)
    assert fired == ["earlier", "later"]
    assert len(clock) == 0
