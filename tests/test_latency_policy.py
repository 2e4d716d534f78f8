"""The latency table of ``[routing] strategy = "latency"`` (ratd.core.latency), with an
injected clock and random source: the average, the order, exploration, staleness, failures
and the bound on its size. The end-to-end behaviour through ratd is in
tests/test_routing_latency.py."""

from __future__ import annotations

import random

import pytest

from ratd.config import RoutingConfig
from ratd.core.latency import LatencyTable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Draws(random.Random):
    """A random source whose ``random()`` answers are given (then 0.99: no exploration);
    ``randrange`` answers 0 (the second-best candidate)."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0) if self.values else 0.99

    def randrange(self, *_: int, **__: int) -> int:  # type: ignore[override]
        return 0


def pairs(*names: str) -> list[tuple[str, str]]:
    return [(name, "m") for name in names]


def order(table: LatencyTable, *names: str) -> list[str]:
    return [p for p, _ in table.order(pairs(*names), key=lambda c: c)]


def table(
    clock: Clock | None = None, rng: random.Random | None = None, **kw: float
) -> LatencyTable:
    """A table with no exploration unless asked; ``kw`` are latency_* settings, unprefixed."""
    settings = RoutingConfig(
        strategy="latency", **{f"latency_{k}": v for k, v in {"explore": 0.0, **kw}.items()}
    )
    return LatencyTable(settings, clock=clock or Clock(), rng=rng or Draws())


def test_the_average_weighs_the_newest_sample_by_alpha() -> None:
    t = table(alpha=0.5)
    t.observe("a", "m", 1.0)
    assert t.get("a", "m") == 1.0  # the first sample is the average
    t.observe("a", "m", 0.0)
    assert t.get("a", "m") == 0.5
    t.observe("a", "m", 0.5)
    assert t.get("a", "m") == 0.5
    assert t.get("a", "other-model") is None  # per model, not per provider


def test_nothing_measured_keeps_the_chain_order_and_one_candidate_is_left_alone() -> None:
    t = table()
    assert order(t, "b", "a", "c") == ["b", "a", "c"]
    assert order(t, "a") == ["a"]
    assert len(t) == 0


def test_fastest_first_then_an_unmeasured_candidate_is_probed_once() -> None:
    clock = Clock()
    t = table(clock, max_age_secs=60)
    t.observe("slow", "m", 0.8)
    t.observe("fast", "m", 0.1)
    # "new" has no sample: the next call tries it first, to measure it ...
    assert order(t, "slow", "fast", "new") == ["new", "fast", "slow"]
    # ... and the calls after it (one still in flight) do not pile onto it.
    assert order(t, "slow", "fast", "new") == ["fast", "slow", "new"]
    clock.now += 61
    t.observe("slow", "m", 0.8)
    t.observe("fast", "m", 0.1)
    # Still unmeasured after max_age (the probe never reported): probed again.
    assert order(t, "slow", "fast", "new") == ["new", "fast", "slow"]
    t.observe("new", "m", 0.05)
    assert order(t, "slow", "fast", "new") == ["new", "fast", "slow"]  # now on merit


def test_exploration_tries_another_candidate_on_the_drawn_share() -> None:
    rng = Draws(0.01, 0.5, 0.01)
    t = table(rng=rng, explore=0.1)
    t.observe("a", "m", 0.5)
    t.observe("b", "m", 0.1)
    t.observe("c", "m", 0.3)
    assert order(t, "a", "b", "c") == ["c", "b", "a"]  # 0.01 < 0.1: the second best first
    assert order(t, "a", "b", "c") == ["b", "c", "a"]  # 0.5: the fastest
    assert order(t, "a", "b", "c") == ["c", "b", "a"]
    assert order(t, "a", "b", "c") == ["b", "c", "a"]  # draws spent: 0.99


def test_a_seeded_source_explores_about_its_share() -> None:
    t = LatencyTable(RoutingConfig(latency_explore=0.2), clock=Clock(), rng=random.Random(7))
    t.observe("a", "m", 0.5)
    t.observe("b", "m", 0.1)
    firsts = [order(t, "a", "b")[0] for _ in range(1000)]
    assert 150 <= firsts.count("a") <= 250  # 20% of 1000, drawn from a fixed seed


def test_a_failure_counts_as_a_penalty_and_sinks_the_provider() -> None:
    t = table(alpha=0.5, failure_penalty_secs=10.0)
    t.observe("a", "m", 0.1)
    t.observe("b", "m", 0.5)
    t.failed("a", "m")
    assert t.get("a", "m") == pytest.approx(0.5 * 10.0 + 0.5 * 0.1)
    assert order(t, "a", "b") == ["b", "a"]
    # A failure of a pair already slower than the penalty counts twice its average.
    t.observe("c", "m", 30.0)
    t.failed("c", "m")
    assert t.get("c", "m") == pytest.approx(0.5 * 60.0 + 0.5 * 30.0)
    # A pair that only ever failed is measured: slow, not unknown.
    t.failed("d", "m")
    assert t.get("d", "m") == 10.0


def test_a_stale_sample_is_re_measured_and_the_new_one_replaces_it() -> None:
    """A provider that failed long ago gets one call again; when it has recovered, its new
    sample is its average at once (what was true long ago is not averaged in)."""
    clock = Clock()
    t = table(clock, max_age_secs=60)
    t.failed("a", "m")
    t.observe("b", "m", 0.5)
    assert order(t, "a", "b") == ["b", "a"]
    clock.now += 30
    t.observe("b", "m", 0.5)
    assert order(t, "a", "b") == ["b", "a"]
    clock.now += 31  # a's sample is 61 s old, b's 31 s
    assert order(t, "a", "b") == ["a", "b"]  # the probe
    assert order(t, "a", "b") == ["b", "a"]  # once
    t.observe("a", "m", 0.1)
    assert t.get("a", "m") == 0.1
    assert order(t, "a", "b") == ["a", "b"]


def test_ties_keep_the_chain_order() -> None:
    t = table()
    for name in ("a", "b", "c"):
        t.observe(name, "m", 0.2)
    assert order(t, "c", "a", "b") == ["c", "a", "b"]


def test_the_table_is_bounded_and_reports_what_it_drops() -> None:
    changes: list[tuple[tuple[str, str], float | None]] = []
    t = LatencyTable(
        RoutingConfig(latency_max_entries=3, latency_explore=0.0),
        clock=Clock(),
        rng=Draws(),
        on_change=lambda key, value: changes.append((key, value)),
    )
    for i in range(5):
        t.observe("p", f"m{i}", float(i))
    assert len(t) == 3
    assert [key for key, _ in t.items()] == [("p", "m2"), ("p", "m3"), ("p", "m4")]
    assert (("p", "m0"), None) in changes and (("p", "m1"), None) in changes
    # The least recently updated goes first: m2 updated again survives the next one.
    t.observe("p", "m2", 1.0)
    t.observe("p", "m5", 1.0)
    assert {key[1] for key, _ in t.items()} == {"m2", "m4", "m5"}
    # A probe's placeholder is bounded too, and is not an average.
    t.order([("q", "x"), ("p", "m2")], key=lambda c: c)
    assert len(t) == 3
    assert t.get("q", "x") is None
    assert ("q", "x") not in dict(t.items())
