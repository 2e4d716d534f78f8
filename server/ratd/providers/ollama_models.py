"""Ollama's model lists as ratatoskr.v1 messages: pure functions from the JSON of
``/api/tags``, ``/api/show`` and ``/api/ps`` (the provider only fetches).

``/api/tags`` names the pulled models and nothing more; what a model can do and its
context window come from ``/api/show`` (``capabilities``, and ``model_info`` keyed by
the model's architecture: ``llama.context_length``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from ratatoskr.v1 import models_pb2

# /api/show capabilities -> ModelCapability.
_CAPABILITIES: dict[str, tuple[models_pb2.ModelCapability, ...]] = {
    "completion": (
        models_pb2.MODEL_CAPABILITY_CHAT,
        models_pb2.MODEL_CAPABILITY_CHAT_STREAMING,
        models_pb2.MODEL_CAPABILITY_GENERATE,
        models_pb2.MODEL_CAPABILITY_STRUCTURED_OUTPUT,
    ),
    "tools": (models_pb2.MODEL_CAPABILITY_TOOL_USE,),
    "thinking": (models_pb2.MODEL_CAPABILITY_REASONING,),
    "vision": (models_pb2.MODEL_CAPABILITY_VISION,),
    "embedding": (models_pb2.MODEL_CAPABILITY_EMBED,),
}


def model_name(entry: Any) -> str:
    """The name of one /api/tags or /api/ps entry ("" when it has none)."""
    if not isinstance(entry, Mapping):
        return ""
    return str(entry.get("name") or entry.get("model") or "")


def tag_names(tags: Mapping[str, Any]) -> list[str]:
    """The pulled models' names, from /api/tags."""
    return [name for name in map(model_name, tags.get("models") or ()) if name]


def _model_info_int(model_info: Mapping[str, Any], suffix: str) -> int | None:
    """``<architecture>.<suffix>`` from /api/show's model_info (llama.context_length, ...)."""
    arch = model_info.get("general.architecture")
    value = model_info.get(f"{arch}.{suffix}") if arch else None
    if value is None:
        value = next((v for k, v in model_info.items() if k.endswith(f".{suffix}")), None)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def model_info_from_show(name: str, provider: str, show: Mapping[str, Any]) -> models_pb2.ModelInfo:
    """A ModelInfo from /api/show: capabilities, context window, embedding dimensions."""
    info = models_pb2.ModelInfo(id=name, provider=provider)
    wanted: list[models_pb2.ModelCapability] = []
    capabilities = [str(c) for c in show.get("capabilities") or ()]
    for capability in capabilities:
        wanted.extend(c for c in _CAPABILITIES.get(capability, ()) if c not in wanted)
    info.capabilities.extend(wanted)
    model_info = show.get("model_info") or {}
    if isinstance(model_info, dict):
        context = _model_info_int(model_info, "context_length")
        if context is not None:
            info.context_window = context
        if "embedding" in capabilities:
            dims = _model_info_int(model_info, "embedding_length")
            if dims is not None:
                info.dimensions = dims
    return info


def _timestamp(text: str) -> timestamp_pb2.Timestamp | None:
    """An RFC 3339 time as Go writes it (nanoseconds, offsets) as a Timestamp."""
    if not text:
        return None
    head, dot, rest = text.partition(".")
    if dot:  # Python parses at most microseconds
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(parsed)
    return stamp


def loaded_model_from_ps(entry: Mapping[str, Any]) -> models_pb2.LoadedModel:
    """A running model of /api/ps as a LoadedModel (like `ollama ps`)."""
    size = int(entry.get("size") or 0)
    vram = int(entry.get("size_vram") or 0)
    if size and vram >= size:
        device = "gpu"
    elif vram:
        device = f"cpu/gpu ({round(100 * vram / size)}% gpu)"
    else:
        device = "cpu"
    loaded = models_pb2.LoadedModel(
        name=model_name(entry),
        kind="ollama",
        status=models_pb2.MODEL_STATUS_READY,
        bytes=size,
        device=device,
        source="ollama",
    )
    expires = _timestamp(str(entry.get("expires_at") or ""))
    if expires is not None:
        loaded.expires_at.CopyFrom(expires)
    return loaded


def same_model(listed: str, wanted: str) -> bool:
    """Ollama names without a tag mean ``:latest``."""

    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(listed) == full(wanted)


def running_entry(ps: Mapping[str, Any], model: str) -> Mapping[str, Any] | None:
    """The /api/ps entry of ``model`` when it is loaded."""
    for entry in ps.get("models") or ():
        name = model_name(entry)
        if name and same_model(name, model):
            return entry
    return None
