"""Gemini's model list (``GET /v1beta/models``) as ratatoskr.v1 model messages: pure
functions from the upstream's JSON, so that the provider only fetches the pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ratatoskr.v1 import models_pb2
from ratd.providers import metadata as md

API_PREFIX = "/v1beta"
# A bound on the pages followed, in case a proxy keeps answering with a token.
MAX_PAGES = 100

# The capabilities a model has when it offers ``generateContent``.
_CHAT_CAPABILITIES = (
    models_pb2.MODEL_CAPABILITY_CHAT,
    models_pb2.MODEL_CAPABILITY_CHAT_STREAMING,
    models_pb2.MODEL_CAPABILITY_GENERATE,
    models_pb2.MODEL_CAPABILITY_TOOL_USE,
    models_pb2.MODEL_CAPABILITY_STRUCTURED_OUTPUT,
)


def page_path(token: str | None) -> str:
    """The path of one page of the model list (the first when ``token`` is None)."""
    path = f"{API_PREFIX}/models?pageSize=1000"
    return path + (f"&pageToken={quote(token)}" if token else "")


def page_models(body: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], str | None]:
    """(the model objects of one page, the next page's token or None)."""
    items: list[Mapping[str, Any]] = [
        item for item in body.get("models") or () if isinstance(item, dict)
    ]
    token = body.get("nextPageToken")
    return items, str(token) if token else None


def model_info(item: Mapping[str, Any], provider: str) -> models_pb2.ModelInfo:
    """One model object as ModelInfo (an empty id when the object names no model)."""
    name = str(item.get("name") or "")
    methods = set(item.get("supportedGenerationMethods") or ())
    capabilities: list[models_pb2.ModelCapability] = []
    if "generateContent" in methods:
        capabilities += _CHAT_CAPABILITIES
    if methods & {"embedContent", "batchEmbedContents"}:
        capabilities.append(models_pb2.MODEL_CAPABILITY_EMBED)
    if "countTokens" in methods:
        capabilities.append(models_pb2.MODEL_CAPABILITY_TOKEN_COUNTING)
    if item.get("thinking"):
        capabilities.append(models_pb2.MODEL_CAPABILITY_REASONING)
    info = models_pb2.ModelInfo(
        id=name.removeprefix("models/"), provider=provider, capabilities=capabilities
    )
    if isinstance(item.get("inputTokenLimit"), int):
        info.context_window = item["inputTokenLimit"]
    if isinstance(item.get("outputTokenLimit"), int):
        info.max_output_tokens = item["outputTokenLimit"]
    return info


def _number(item: Mapping[str, Any], key: str) -> float | None:
    value = item.get(key)
    return float(value) if isinstance(value, int | float) else None


def model_metadata(item: Mapping[str, Any], provider: str) -> models_pb2.ModelMetadata:
    """One model object with its sampling defaults and limits as parameters."""
    info = model_info(item, provider)
    result = models_pb2.ModelMetadata(info=info)
    if info.HasField("max_output_tokens"):
        result.max_output_tokens = info.max_output_tokens
        result.parameters.add(name="max_tokens", availability=md.mutable(1, info.max_output_tokens))
    if (temperature := _number(item, "temperature")) is not None:
        high = _number(item, "maxTemperature") or 2.0
        result.parameters.add(name="temperature", availability=md.mutable(0, high, temperature))
    if (top_p := _number(item, "topP")) is not None:
        result.parameters.add(name="top_p", availability=md.mutable(0, 1, top_p))
    if (top_k := _number(item, "topK")) is not None:
        result.parameters.add(name="top_k", availability=md.mutable(1, None, top_k))
    return result
