"""The ``latency`` routing strategy: measured latency per (provider, model), and the order
in which the candidates of a call are tried.

Each (provider, model) that served or failed a call has an exponentially weighted moving
average of its latency: for streams the time to the first event, for unary calls the time
to the whole answer (what the gateway times around one provider's attempt). A failure
counts as a sample of ``latency_failure_penalty_secs`` (or twice the average, when that is more),
so a failing provider sinks without being forgotten.

Order: measured candidates by their average, fastest first, then those with no sample,
or a sample older than ``latency_max_age_secs``, in chain order. Two kinds of exploration keep
the measurements true, so that a provider that recovered wins its traffic back:

* a candidate with no fresh sample is tried first by one call (then not again by another
  call for ``latency_max_age_secs``, so concurrent calls do not all pile onto it);
* a share ``latency_explore`` of the calls tries a random other candidate first.

The clock and the random source are injected, so tests decide both. Memory is bounded:
entries exist only for pairs that were actually called, and the least recently updated
entry is dropped when the table holds ``latency_max_entries``.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ratd.config import RoutingConfig
from ratd.metrics import LATENCY_EWMA

C = TypeVar("C")
Key = tuple[str, str]


@dataclass(slots=True)
class Sample:
    """A pair's average latency in seconds, when it was last updated, and when a call was
    last sent to it to re-measure it."""

    ewma: float
    updated: float
    probed: float = float("-inf")

    @property
    def measured(self) -> bool:
        return not math.isnan(self.ewma)


class LatencyTable:
    def __init__(
        self,
        settings: RoutingConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_change: Callable[[Key, float | None], None] | None = None,
    ) -> None:
        """``settings`` are the ``[routing] latency_*`` keys. ``on_change`` hears of every
        new average, and of a dropped entry (None): the gateway mirrors the table into a
        Prometheus gauge with it."""
        self.settings = settings
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self._on_change = on_change
        self._samples: OrderedDict[Key, Sample] = OrderedDict()

    def __len__(self) -> int:
        return len(self._samples)

    def items(self) -> Iterator[tuple[Key, float]]:
        """The measured pairs and their averages (not those only waiting for a probe)."""
        return ((key, sample.ewma) for key, sample in self._samples.items() if sample.measured)

    def get(self, provider: str, model: str) -> float | None:
        sample = self._samples.get((provider, model))
        return sample.ewma if sample is not None and sample.measured else None

    # -- measuring -------------------------------------------------------------------------------

    def observe(self, provider: str, model: str, seconds: float) -> None:
        """One measured call that succeeded."""
        self._update((provider, model), max(0.0, seconds), failure=False)

    def failed(self, provider: str, model: str) -> None:
        """One call that failed on the provider's side (the chain moved on)."""
        self._update((provider, model), self.settings.latency_failure_penalty_secs, failure=True)

    def _update(self, key: Key, value: float, *, failure: bool) -> None:
        now = self.clock()
        sample = self._samples.get(key)
        if sample is None or self._stale(sample, now):
            # Nothing known, or only what was true long ago: the new sample is the truth.
            ewma = value
        else:
            if failure:
                value = max(value, 2 * sample.ewma)
            alpha = self.settings.latency_alpha
            ewma = alpha * value + (1 - alpha) * sample.ewma
        if sample is None:
            self._make_room()
            self._samples[key] = Sample(ewma, now)
        else:
            sample.ewma, sample.updated = ewma, now
            self._samples.move_to_end(key)
        if self._on_change is not None:
            self._on_change(key, ewma)

    def _make_room(self) -> None:
        while len(self._samples) >= max(1, self.settings.latency_max_entries):
            dropped, _ = self._samples.popitem(last=False)
            if self._on_change is not None:
                self._on_change(dropped, None)

    def _stale(self, sample: Sample, now: float) -> bool:
        return now - sample.updated > self.settings.latency_max_age_secs

    # -- ordering --------------------------------------------------------------------------------

    def order(self, candidates: Sequence[C], key: Callable[[C], Key]) -> list[C]:
        """``candidates`` in the order to try them (see the module's docstring)."""
        if len(candidates) < 2:
            return list(candidates)
        now = self.clock()
        measured: list[tuple[float, int, C]] = []
        unmeasured: list[C] = []
        for index, candidate in enumerate(candidates):
            sample = self._samples.get(key(candidate))
            if sample is None or self._stale(sample, now):
                unmeasured.append(candidate)
            else:
                measured.append((sample.ewma, index, candidate))
        measured.sort(key=lambda item: (item[0], item[1]))
        ordered = [c for _, _, c in measured] + unmeasured
        if not measured:
            return ordered  # nothing known yet: the chain's own order
        probe = self._probe(unmeasured, key, now)
        if probe is None and self.rng.random() < self.settings.latency_explore:
            probe = ordered[1 + self.rng.randrange(len(ordered) - 1)]
        if probe is not None:
            ordered.remove(probe)
            ordered.insert(0, probe)
        return ordered

    def _probe(self, unmeasured: list[C], key: Callable[[C], Key], now: float) -> C | None:
        """The first candidate without a fresh sample that no call re-measured lately."""
        for candidate in unmeasured:
            k = key(candidate)
            sample = self._samples.get(k)
            if sample is None:
                self._make_room()
                # Not measured yet: a placeholder that remembers the probe, not an average.
                sample = self._samples[k] = Sample(float("nan"), float("-inf"))
            if now - sample.probed > self.settings.latency_max_age_secs:
                sample.probed = now
                return candidate
        return None


def _mirror(key: Key, ewma: float | None) -> None:
    """Keep ``ratatoskr_provider_latency_seconds`` equal to the table (bounded like it)."""
    if ewma is None:
        with contextlib.suppress(KeyError):  # never set, or already gone
            LATENCY_EWMA.remove(*key)
    else:
        LATENCY_EWMA.labels(*key).set(ewma)


def latency_table(routing: RoutingConfig) -> LatencyTable:
    """The table of a gateway whose ``[routing] strategy`` is "latency", mirrored into the
    Prometheus gauge (emptied first: a reloaded config starts measuring afresh)."""
    LATENCY_EWMA.clear()
    return LatencyTable(routing, on_change=_mirror)
