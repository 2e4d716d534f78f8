"""Builders of model metadata messages, shared by the providers that describe their
models (live model lists) and by the registry's seed file.

Parameter names are the canonical ChatOptions field names (``temperature``,
``max_tokens``, ``top_k``, ...), so a caller can check an option against the metadata
by the very name it sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from ratatoskr.v1 import models_pb2

PARAMETERS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning",
    "cache_prompt",
)


def capability(name: str) -> models_pb2.ModelCapability:
    """``"chat"`` → MODEL_CAPABILITY_CHAT (raises ValueError for unknown names)."""
    value = models_pb2.ModelCapability.Value(f"MODEL_CAPABILITY_{name.upper()}")
    return cast(models_pb2.ModelCapability, value)


def capability_name(value: int) -> str:
    return models_pb2.ModelCapability.Name(value).removeprefix("MODEL_CAPABILITY_").lower()


def mutable(
    low: float | None = None, high: float | None = None, default: float | None = None
) -> models_pb2.ParameterAvailability:
    return models_pb2.ParameterAvailability(
        mutable_range=models_pb2.ParameterRange(min=low, max=high, default_value=default)
    )


def read_only(value: Any) -> models_pb2.ParameterAvailability:
    return models_pb2.ParameterAvailability(read_only_json=json.dumps(value))


def opaque() -> models_pb2.ParameterAvailability:
    return models_pb2.ParameterAvailability(opaque=True)


def unsupported() -> models_pb2.ParameterAvailability:
    return models_pb2.ParameterAvailability(unsupported=True)


def availability(spec: Any) -> models_pb2.ParameterAvailability:
    """From the seed's notation: ``{"min", "max", "default"}``, ``{"value": v}``,
    ``"opaque"`` or ``"unsupported"``."""
    if spec == "opaque":
        return opaque()
    if spec == "unsupported":
        return unsupported()
    if isinstance(spec, Mapping) and "value" in spec:
        return read_only(spec["value"])
    if isinstance(spec, Mapping):
        return mutable(spec.get("min"), spec.get("max"), spec.get("default"))
    raise ValueError(f"unknown parameter availability {spec!r}")


def per_mtok(per_token: Any) -> float | None:
    """A per-token price (OpenRouter sends strings like "0.0000025") per million tokens."""
    try:
        value = float(per_token)
    except (TypeError, ValueError):
        return None
    if value < 0:  # OpenRouter marks variable-price routers with -1
        return None
    return round(value * 1_000_000, 9)


def metadata(
    model_id: str,
    provider: str,
    *,
    capabilities: Iterable[str] = (),
    context_window: int | None = None,
    max_output_tokens: int | None = None,
    dimensions: int | None = None,
    parameters: Mapping[str, models_pb2.ParameterAvailability] | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
) -> models_pb2.ModelMetadata:
    """A ModelMetadata message; unknown values stay unset."""
    info = models_pb2.ModelInfo(
        id=model_id,
        provider=provider,
        capabilities=sorted({capability(c) for c in capabilities}),
        context_window=context_window,
        dimensions=dimensions,
        max_output_tokens=max_output_tokens,
    )
    result = models_pb2.ModelMetadata(info=info, max_output_tokens=max_output_tokens)
    if price_in is not None or price_out is not None:
        pricing = models_pb2.PricingInfo(
            prompt_cost_per_mtok=price_in, completion_cost_per_mtok=price_out
        )
        result.pricing.CopyFrom(pricing)
        result.info.pricing.CopyFrom(pricing)
    for name, avail in sorted((parameters or {}).items()):
        result.parameters.add(name=name, availability=avail)
    return result
