"""The interface of a governance state backend, and the values it trades in.

Amounts are integers (requests, tokens, nano-dollars) so that every backend adds them
exactly, in any order, on any number of replicas. (Named tuples, not dataclasses: two
are built on every governed call.)"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class Counter(NamedTuple):
    """Add ``amount`` to ``key`` if it stays within ``limit`` (0: no limit, just count);
    the key lives ``ttl_ms`` from its first use (the rest of its window)."""

    key: str
    amount: int
    limit: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Denial:
    """Which counter of a reservation was full, and when its window ends (seconds)."""

    index: int
    retry_after: float


class Settlement(NamedTuple):
    """What one finished call changes: each counter of its reservation moved by a delta
    (real minus reserved), and the usage bucket ``usage_key`` incremented field by field.
    Applied at most once: ``marker`` is remembered for ``marker_ttl_ms``."""

    marker: str
    marker_ttl_ms: int
    deltas: Sequence[tuple[str, int]]
    usage_key: str
    usage_ttl_ms: int
    cells: Sequence[tuple[str, int]]


class StateBackend(ABC):
    """Reserve before a call, settle after it, read usage. ``up`` is False while the
    backend cannot be reached."""

    up: bool = True
    # Shared by replicas (reported in Health): Redis, not memory.
    shared: bool = False

    @abstractmethod
    async def reserve(self, counters: Sequence[Counter]) -> Denial | None:
        """Add every amount atomically if each counter stays within its limit; else add
        nothing and say which one is full. Raises errors.StateUnavailable when the
        backend cannot answer in time."""

    @abstractmethod
    def settle(self, settlement: Settlement) -> None:
        """Apply ``settlement`` once (idempotent per marker), now or soon; never raises.
        A backend that is down keeps it and applies it when it is back."""

    @abstractmethod
    async def read_usage(self, keys: Sequence[str]) -> list[Mapping[str, int]]:
        """The usage buckets ``keys`` (missing ones empty). Raises StateUnavailable."""

    async def flush(self) -> None:
        """Wait for settlements under way (a shutdown, a test reading usage)."""
        return None

    async def close(self) -> None:
        """Release connections."""
        return None
