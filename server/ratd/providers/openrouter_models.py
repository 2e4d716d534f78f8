"""OpenRouter's model list (``GET /models``): prices per token, context, output limit and
supported parameters, as the registry's metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ratatoskr.v1 import models_pb2
from ratd.providers import metadata as md

# OpenRouter's names in supported_parameters -> our canonical names, with the ranges
# OpenRouter documents for them.
_OPENROUTER_PARAMETERS: dict[str, tuple[str, tuple[float | None, float | None]]] = {
    "temperature": ("temperature", (0, 2)),
    "top_p": ("top_p", (0, 1)),
    "top_k": ("top_k", (1, None)),
    "frequency_penalty": ("frequency_penalty", (-2, 2)),
    "presence_penalty": ("presence_penalty", (-2, 2)),
    "max_tokens": ("max_tokens", (1, None)),
}
_OPENROUTER_OPAQUE = {
    "stop": "stop",
    "seed": "seed",
    "tool_choice": "tool_choice",
    "parallel_tool_calls": "parallel_tool_calls",
    "response_format": "response_format",
    "structured_outputs": "response_format",
    "reasoning": "reasoning",
    "include_reasoning": "reasoning",
}


def _table(item: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = item.get(key)
    return value if isinstance(value, dict) else {}


def openrouter_metadata(item: Mapping[str, Any], provider: str) -> models_pb2.ModelMetadata | None:
    """One entry of OpenRouter's ``/models`` (prices per token as strings, context,
    supported parameters) as metadata; None when the entry is unusable."""
    model_id = item.get("id")
    if not isinstance(model_id, str) or not model_id:
        return None
    pricing = _table(item, "pricing")
    top = _table(item, "top_provider")
    arch = _table(item, "architecture")
    listed = item.get("supported_parameters")
    supported = {p for p in listed if isinstance(p, str)} if isinstance(listed, list) else None
    max_output = top.get("max_completion_tokens")
    max_output = max_output if isinstance(max_output, int) and max_output > 0 else None
    context = item.get("context_length")
    context = context if isinstance(context, int) and context > 0 else None
    capabilities = ["chat"]
    if supported and "tools" in supported:
        capabilities.append("tool_use")
    if supported and supported & {"reasoning", "include_reasoning"}:
        capabilities.append("reasoning")
    if supported and supported & {"response_format", "structured_outputs"}:
        capabilities.append("structured_output")
    if "image" in (arch.get("input_modalities") or ()):
        capabilities.append("vision")
    parameters: dict[str, models_pb2.ParameterAvailability] = {}
    if supported is not None:
        for wire, (name, (low, high)) in _OPENROUTER_PARAMETERS.items():
            if wire in supported:
                top_value = max_output if name == "max_tokens" else high
                parameters[name] = md.mutable(low, top_value)
            else:
                parameters[name] = md.unsupported()
        for name in set(_OPENROUTER_OPAQUE.values()):
            wires = {w for w, n in _OPENROUTER_OPAQUE.items() if n == name}
            parameters[name] = md.opaque() if wires & supported else md.unsupported()
    return md.metadata(
        model_id,
        provider,
        capabilities=[*capabilities, "chat_streaming", "generate"],
        context_window=context,
        max_output_tokens=max_output,
        parameters=parameters,
        price_in=md.per_mtok(pricing.get("prompt")),
        price_out=md.per_mtok(pricing.get("completion")),
    )
