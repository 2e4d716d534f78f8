"""The in-process backend: exact and cheap, for one ratd. Its state is lost on restart,
like the process's own counters would be."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from ratd.state.base import Counter, Denial, Settlement, StateBackend

# Expired keys are swept at most this often (seconds).
_SWEEP_EVERY = 30.0


class MemoryState(StateBackend):
    """Dicts with expiry times. No awaits between check and update: atomic on the loop."""

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._usage: dict[str, dict[str, int]] = {}
        self._markers: dict[str, float] = {}
        self._next_sweep = time.monotonic() + _SWEEP_EVERY

    def _live(self, key: str, now: float) -> int:
        expires = self._expires.get(key)
        if expires is None:
            return 0
        if expires <= now:
            self._drop(key)
            return 0
        return self._values[key]

    def _drop(self, key: str) -> None:
        self._values.pop(key, None)
        self._expires.pop(key, None)
        self._usage.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + _SWEEP_EVERY
        for key in [k for k, t in self._expires.items() if t <= now]:
            self._drop(key)
        for marker in [m for m, t in self._markers.items() if t <= now]:
            del self._markers[marker]

    async def reserve(self, counters: Sequence[Counter]) -> Denial | None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        for index, counter in enumerate(counters):
            if counter.limit > 0 and self._live(counter.key, now) + counter.amount > counter.limit:
                ends = self._expires.get(counter.key, now + counter.ttl_ms / 1000)
                return Denial(index, max(0.0, ends - now))
        for counter in counters:
            key = counter.key
            if key in self._expires:
                self._values[key] += counter.amount
            else:
                self._values[key] = counter.amount
                self._expires[key] = now + counter.ttl_ms / 1000
        return None

    def settle(self, settlement: Settlement) -> None:
        now = time.monotonic()
        if settlement.marker in self._markers:
            return
        self._markers[settlement.marker] = now + settlement.marker_ttl_ms / 1000
        for key, delta in settlement.deltas:
            if delta and self._expires.get(key, 0.0) > now:  # still in its window
                self._values[key] += delta
        if settlement.cells:
            key = settlement.usage_key
            if key not in self._expires or self._expires[key] <= now:
                self._usage[key] = {}
                self._expires[key] = now + settlement.usage_ttl_ms / 1000
            bucket = self._usage[key]
            for cell, amount in settlement.cells:
                bucket[cell] = bucket.get(cell, 0) + amount

    async def read_usage(self, keys: Sequence[str]) -> list[Mapping[str, int]]:
        now = time.monotonic()
        return [
            dict(self._usage[k]) if k in self._usage and self._expires[k] > now else {}
            for k in keys
        ]
