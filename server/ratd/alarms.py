"""Coarse alarms for the time limits every call carries, many of them on one loop timer.

Each call has a deadline that almost never fires. A loop timer per call (``call_at``)
allocates a libuv timer and moves it through the loop's timer heap twice; with dozens of
calls in flight that showed as ~10 us of CPU per call (py-spy, benchmarks/overhead.py).
Here an alarm is an entry in a set keyed by its time slot (``RESOLUTION`` seconds), and
one loop timer, armed for the earliest slot that holds an alarm, looks at the slots that
came due. An alarm fires up to ``RESOLUTION`` late, never early: fine for limits counted
in seconds.

Moving an alarm later (a stream's limit, after each event) only records the new time;
the alarm finds its new slot when its old one comes due.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

RESOLUTION = 0.05


class Alarm:
    """``fire()`` once the loop's clock passes ``when`` (unless cancelled first): the
    callback given, or a subclass's own ``fire`` (``AlarmClock.add``; one object per
    alarm rather than two)."""

    __slots__ = ("_callback", "_clock", "_slot", "when")

    def __init__(
        self, clock: AlarmClock, when: float, fire: Callable[[], object] | None = None
    ) -> None:
        self._clock, self.when, self._callback = clock, when, fire
        self._slot = -1

    def fire(self) -> None:
        if self._callback is not None:
            self._callback()

    def move(self, when: float) -> None:
        """Fire at ``when`` instead: a later time is picked up when the alarm's slot comes
        due; an earlier one moves it to its slot now."""
        earlier = when < self.when
        self.when = when
        if earlier and self._slot >= 0:
            self._clock._remove(self)
            self._clock._add(self)

    def cancel(self) -> None:
        if self._slot >= 0:
            self._clock._remove(self)


class AlarmClock:
    """The alarms of one event loop (``clock()`` gives the running loop's). Its timer is
    armed for the earliest slot that holds an alarm: with every call's limit a minute
    away and calls ending in milliseconds, it seldom fires at all."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, set[Alarm]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed = 0  # the slot the timer is armed for
        self._seen = _slot_of(loop.time()) - 1  # the last slot looked at

    def __len__(self) -> int:
        return sum(len(alarms) for alarms in self._slots.values())

    def start(self, when: float, fire: Callable[[], object]) -> Alarm:
        alarm = Alarm(self, when, fire)
        self._add(alarm)
        return alarm

    def add(self, alarm: Alarm) -> None:
        """Set ``alarm`` (made for this clock) for its ``when``."""
        self._add(alarm)

    def _add(self, alarm: Alarm) -> None:
        if self._handle is None and not self._slots:  # idle until now: catch up
            self._seen = max(self._seen, _slot_of(self._loop.time()) - 1)
        slot = math.ceil(alarm.when / RESOLUTION)  # _slot_of, inline: on every call
        if slot <= self._seen:
            slot = self._seen + 1
        alarm._slot = slot
        alarms = self._slots.get(slot)
        if alarms is None:
            alarms = self._slots[slot] = set()
        alarms.add(alarm)
        if self._handle is None or slot < self._armed:
            self._arm(slot)

    def _remove(self, alarm: Alarm) -> None:
        alarms = self._slots.get(alarm._slot)
        if alarms is not None:
            alarms.discard(alarm)
            if not alarms:
                del self._slots[alarm._slot]
        alarm._slot = -1

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = slot
        self._handle = self._loop.call_at(slot * RESOLUTION, self._tick)

    def _tick(self) -> None:
        self._handle = None
        now = self._loop.time()
        due = _slot_of(now)
        self._seen = max(self._seen, due)
        for slot in sorted(s for s in self._slots if s <= due):
            for alarm in self._slots.pop(slot):
                alarm._slot = -1
                if alarm.when <= now:
                    alarm.fire()
                else:  # moved later meanwhile
                    self._add(alarm)
        if self._slots:  # (an alarm added above may have armed it for a later slot)
            self._arm(min(self._slots))


def _slot_of(when: float) -> int:
    """The slot whose end is the first at or after ``when``."""
    return math.ceil(when / RESOLUTION)


_CLOCKS: dict[asyncio.AbstractEventLoop, AlarmClock] = {}


def clock(loop: asyncio.AbstractEventLoop | None = None) -> AlarmClock:
    """The alarm clock of ``loop`` (default: the running loop)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    found = _CLOCKS.get(loop)
    if found is None:
        if len(_CLOCKS) > 8:  # loops of finished tests
            for old in [old for old in _CLOCKS if old.is_closed()]:
                del _CLOCKS[old]
        found = _CLOCKS[loop] = AlarmClock(loop)
    return found
