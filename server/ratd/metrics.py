"""Prometheus metrics of ratd (``ratatoskr_*``), in the default registry that the
metrics endpoint serves. Labels stay bounded: model labels are registry model names,
anything else is "other"."""

from __future__ import annotations

from prometheus_client import Counter

SPEND = Counter(
    "ratatoskr_spend_usd",
    "Spend in US dollars at the registry's prices (or the provider's reported cost).",
    ["provider", "model"],
)
