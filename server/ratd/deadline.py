"""A call's time limit: ``asyncio.timeout``'s semantics at a fraction of its cost.

Every call enters one and a stream moves it after each event, so it is on the hottest
path there is. ``asyncio.Timeout`` costs ~4.5 us to enter and leave and arms a loop timer
per call and per ``reschedule``; this one is an alarm (``ratd.alarms``: an entry in a set,
many calls on one loop timer), which a later deadline only updates. It fires up to
``alarms.RESOLUTION`` (50 ms) late, never early.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ratd import alarms


class Deadline(alarms.Alarm):
    """``async with Deadline(when)`` (or ``with``: entering and leaving never wait): the
    task is cancelled once the loop's clock passes ``when``, and the cancellation leaves
    the block as ``TimeoutError`` (as with ``asyncio.timeout_at``; a cancellation from
    elsewhere stays a cancellation). It is its own alarm: one object per call."""

    __slots__ = ("_cancelling", "_expired", "_loop", "_task")

    def __init__(self, when: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``loop``: the running loop, when the caller has it at hand (each lookup of the
        running loop costs a ``getpid`` system call on CPython 3.11)."""
        self.when = when
        self._slot = -1
        self._loop = loop

    def reschedule(self, when: float) -> None:
        """Move the deadline (later: only noted; earlier: the alarm moves now)."""
        self.move(when)

    def __enter__(self) -> Deadline:
        self.arm(self.when, self._loop or asyncio.get_running_loop())
        return self

    def arm(self, when: float, loop: asyncio.AbstractEventLoop) -> None:
        """Start counting, to ``when`` on ``loop``'s clock (what entering does; for a
        subclass that enters otherwise, as the call guard's admission)."""
        self.when = when
        self._expired = False
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._clock = clock = alarms.clock(loop)
        clock.add(self)

    def fire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disarm(kind, exc)

    def disarm(self, kind: type[BaseException] | None, exc: BaseException | None) -> None:
        """Stop counting (what leaving does); raises TimeoutError when the deadline's own
        cancellation is what ended the block."""
        if self._slot >= 0:
            self._clock._remove(self)
        # As asyncio.Timeout: the cancellation this deadline asked for is taken back
        # whatever ended the block; it becomes TimeoutError if it is what ended it.
        if (
            self._expired
            and self._task.uncancel() <= self._cancelling
            and kind is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    async def __aenter__(self) -> Deadline:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)
