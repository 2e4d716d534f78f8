"""Prometheus metrics of ratd (``ratatoskr_*``), in the default registry that the
metrics endpoint serves. Labels stay bounded: providers are the configured ones,
operations the RPC names, models those the registry knows (anything else is "other")."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# One series per counter, not a second "_created" timestamp series beside each.
disable_created_metrics()


# -- the per-call metrics, kept lean ----------------------------------------------------------
#
# Every call updates several metrics (requests, durations, tokens, spend). prometheus_client
# takes a lock and checks its arguments on each update (~0.4 us a counter, ~0.9 us a
# histogram); these keep plain numbers, updated and read on the event loop only (the metrics
# endpoint runs on it too), and hand them to the registry as metric families when scraped.


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: +Inf
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        self.counts[bisect_left(self.bounds, amount)] += 1


class _Lean(Collector):
    """What the lean counter and histogram share: a name, labels, children by label values."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        REGISTRY.register(self)

    def _child(self) -> Any:
        raise NotImplementedError

    def labels(self, *values: str) -> Any:
        found = self._children.get(values)
        if found is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected")
            found = self._children[values] = self._child()
        return found

    def describe(self) -> list[Metric]:
        return []


class LeanCounter(_Lean):
    """A counter (``<name>_total``) whose update is one addition."""

    def _child(self) -> _CounterChild:
        return _CounterChild()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child_ in list(self._children.items()):
            family.add_metric(list(values), child_.value)
        yield family


class LeanHistogram(_Lean):
    """A histogram whose update is an addition and a bisection."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(float(b) for b in buckets)

    def _child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [*map(floatToGoString, self.bounds), "+Inf"]
        for values, child_ in list(self._children.items()):
            cumulative, buckets = 0, []
            for edge, count in zip(edges, child_.counts, strict=True):
                cumulative += count
                buckets.append((edge, cumulative))
            family.add_metric(list(values), buckets, child_.sum)
        yield family


_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1)

REQUESTS = LeanCounter(
    "ratatoskr_requests",
    "RPCs served, by the provider that answered (none when no provider was reached).",
    ["provider", "operation", "status"],
)
DURATION = LeanHistogram(
    "ratatoskr_request_duration_seconds",
    "Time from receiving an RPC to its end (streams: to the last event).",
    ["operation"],
    buckets=_LATENCY,
)
OVERHEAD = LeanHistogram(
    "ratatoskr_gateway_overhead_seconds",
    "ratd's own share of a call: its duration (streams: to the first event) minus the "
    "time spent waiting on providers.",
    ["operation"],
    buckets=_OVERHEAD,
)
TIME_TO_FIRST_TOKEN = LeanHistogram(
    "ratatoskr_time_to_first_token_seconds",
    "Streams: time from receiving the RPC to sending its first event.",
    ["provider", "operation"],
    buckets=_LATENCY,
)
TOKENS = LeanCounter("ratatoskr_tokens", "Tokens reported by providers.", ["provider", "direction"])
RETRIES = Counter("ratatoskr_retries", "Retries of a provider call.", ["provider"])
FALLBACKS = Counter(
    "ratatoskr_fallbacks",
    "Times the fallback chain moved on from a provider that failed.",
    ["provider", "capability"],
)
CACHE_HITS = Counter("ratatoskr_cache_hits", "Response cache hits.", ["operation"])
CACHE_MISSES = Counter("ratatoskr_cache_misses", "Response cache misses.", ["operation"])
AUDIT_LINES = Counter("ratatoskr_audit_lines", "Records written to the audit log.")
AUDIT_DROPPED = Counter(
    "ratatoskr_audit_dropped_lines",
    "Audit records lost: the queue to the disk was full, or the write failed.",
)
INTERCEPTOR_REFUSALS = Counter(
    "ratatoskr_interceptor_refusals", "Calls an interceptor refused.", ["interceptor"]
)
INTERCEPTOR_FAILURES = Counter(
    "ratatoskr_interceptor_failures",
    "Calls failed because an interceptor raised an unexpected error (a bug in it).",
    ["interceptor"],
)
IN_FLIGHT = Gauge("ratatoskr_in_flight_requests", "RPCs being served now.")
LOADED_MODELS = Gauge("ratatoskr_loaded_models", "Local models loaded now.")
MODEL_BYTES = Gauge(
    "ratatoskr_loaded_model_bytes", "Measured memory of each loaded local model.", ["model"]
)
LATENCY_EWMA = Gauge(
    "ratatoskr_provider_latency_seconds",
    '[routing] strategy = "latency": moving average of each (provider, model)\'s latency '
    "(streams: to the first event), failures counted as a penalty. As many series as the "
    "table keeps (latency_max_entries).",
    ["provider", "model"],
)
REGISTRY_MODELS = Gauge(
    "ratatoskr_registry_models_total",
    "Models the registry knows (seed and live lists), by configured provider.",
    ["provider"],
)

# Local batching (like text-embeddings-inference's te_queue_size / te_batch_next_*).
BATCH_SIZE = Histogram(
    "ratatoskr_batch_size",
    "Items per local inference batch.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_TOKENS = Histogram(
    "ratatoskr_batch_tokens",
    "Padded tokens per local inference batch (rows x longest row, what max_batch_tokens caps).",
    ["model"],
    buckets=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768),
)
BATCH_QUEUE = Gauge(
    "ratatoskr_batch_queue_depth",
    "Inputs waiting in a local model's batch queue now (max_queue bounds it).",
    ["model"],
)
BATCH_FAILURES = Counter(
    "ratatoskr_batch_failures",
    "Local inference inputs that failed, by kind: overloaded (queue full), too_large "
    "(a request beyond the whole queue), inference (the model raised), unloaded.",
    ["model", "kind"],
)
SPEND = LeanCounter(
    "ratatoskr_spend_usd",
    "Spend in US dollars at the registry's prices (or the provider's reported cost).",
    ["provider", "model"],
)


@lru_cache(maxsize=8192)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: label lookup is costlier than the update."""
    return metric.labels(*labels)


# Governance ([tenants] limits and budgets, [state]). Tenants are the configured ones
# (callers under auth "none" are not governed), reasons a short fixed set.
STATE_UP = Gauge(
    "ratatoskr_state_backend_up",
    "1 while the governance state backend ([state]) answers, 0 while Redis is down.",
)
GOVERNANCE_DENIALS = Counter(
    "ratatoskr_governance_denials",
    "Calls refused by governance, by reason (TENANT_RATE_LIMITED, BUDGET_EXCEEDED, "
    "MODEL_UNPRICED, STATE_UNAVAILABLE).",
    ["tenant", "reason"],
)
TENANT_REQUESTS = Counter(
    "ratatoskr_tenant_requests", "Governed calls admitted, by tenant.", ["tenant"]
)
TENANT_TOKENS = Counter(
    "ratatoskr_tenant_tokens", "Tokens used by tenant.", ["tenant", "direction"]
)
TENANT_SPEND = Counter(
    "ratatoskr_tenant_spend_usd", "US dollars spent (registry prices) by tenant.", ["tenant"]
)
STATE_UP.set(1)
