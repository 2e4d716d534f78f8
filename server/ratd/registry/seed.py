"""The seed file: ``seed.json``, shipped in the package and versioned, the registry's
base layer. Its parameter *profiles* keep the file short: a model names a profile and the
profile's ``max_tokens`` range is capped at the model's own output limit."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ratatoskr.v1 import models_pb2
from ratd.providers import metadata as md

# A model's retirement, where its provider announced it (dates YYYY-MM-DD, UTC).
RETIREMENT_FIELDS = ("deprecation_date", "shutdown_date", "replacement")


@dataclass(frozen=True)
class Seed:
    version: int
    models: dict[str, list[models_pb2.ModelMetadata]]  # by provider kind
    presets: dict[str, dict[str, dict[str, Any]]]  # tier -> capability -> {model, parameters}
    # The upstream API of models their provider serves through another API than its
    # default ("api": "responses"), by provider kind then model id.
    apis: dict[str, dict[str, str]] = field(default_factory=dict)


def _model(entry: dict[str, Any], profiles: dict[str, dict[str, Any]]) -> models_pb2.ModelMetadata:
    params = {}
    max_output = entry.get("max_output_tokens")
    for name, spec in profiles.get(entry.get("profile", ""), {}).items():
        capped = {**spec, "max": max_output} if name == "max_tokens" and max_output else spec
        params[name] = md.availability(capped)
    price = entry.get("price") or [None, None]
    found = md.metadata(
        entry["id"],
        entry["provider"],
        capabilities=_with_implied(entry.get("capabilities", ())),
        context_window=entry.get("context_window"),
        max_output_tokens=max_output,
        dimensions=entry.get("dimensions"),
        parameters=params,
        price_in=price[0],
        price_out=price[1],
    )
    for name in RETIREMENT_FIELDS:
        if entry.get(name):
            setattr(found.info, name, str(entry[name]))
    return found


def _with_implied(capabilities: list[str]) -> list[str]:
    """Every chat model streams and generates text through ratd."""
    found = list(capabilities)
    if "chat" in found:
        found += ["chat_streaming", "generate"]
    return found


def _read(text: str | None) -> Any:
    return json.loads(
        text
        if text is not None
        else resources.files("ratd.registry").joinpath("seed.json").read_text()
    )


def _apis(data: Any) -> dict[str, dict[str, str]]:
    apis: dict[str, dict[str, str]] = {}
    for entry in data["models"]:
        if entry.get("api"):
            apis.setdefault(entry["provider"], {})[entry["id"]] = str(entry["api"])
    return apis


@functools.cache
def shipped_model_apis() -> dict[str, dict[str, str]]:
    """The shipped seed's API marks, for the provider factory (providers read no registry)."""
    return _apis(_read(None))


def load_seed(text: str | None = None) -> Seed:
    data = _read(text)
    models: dict[str, list[models_pb2.ModelMetadata]] = {}
    for entry in data["models"]:
        models.setdefault(entry["provider"], []).append(_model(entry, data.get("profiles", {})))
    return Seed(
        version=int(data["version"]),
        models=models,
        presets=data.get("presets", {}),
        apis=_apis(data),
    )
