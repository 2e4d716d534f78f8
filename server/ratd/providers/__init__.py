"""Remote providers, one module per upstream API, and the factory that builds them."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping

from ratd.config import Config
from ratd.providers.base import Provider

log = logging.getLogger(__name__)

# kind -> "module:Class", imported only when a provider of that kind is configured.
PROVIDER_CLASSES: dict[str, str] = {
    "openai": "ratd.providers.openai_compat:OpenAIProvider",
    "openrouter": "ratd.providers.openai_compat:OpenRouterProvider",
    "anthropic": "ratd.providers.anthropic:AnthropicProvider",
    "google": "ratd.providers.gemini:GeminiProvider",
    "ollama": "ratd.providers.ollama:OllamaProvider",
    "huggingface": "ratd.providers.huggingface:HuggingFaceProvider",
}


def provider_class(kind: str) -> type[Provider] | None:
    target = PROVIDER_CLASSES.get(kind)
    if target is None:
        return None
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        return None  # this kind is not part of this version yet
    cls: type[Provider] = getattr(module, name)
    return cls


def build_local(config: Config) -> Provider | None:
    """The local ONNX provider, when configured and present in this version."""
    if config.local is None:
        return None
    try:
        from ratd.local import build_local_provider
    except ImportError:
        log.warning("local inference is not available in this version of ratd; skipped")
        return None
    provider: Provider = build_local_provider(config)
    return provider


def build_providers(
    config: Config, previous: Mapping[str, Provider] | None = None
) -> dict[str, Provider]:
    """One provider object per configured provider whose API this ratd speaks. On a
    reload, ``previous`` are the running gateway's: those that say they can serve the new
    config unchanged are kept rather than built again."""
    kept = {
        name: provider
        for name, provider in (previous or {}).items()
        if provider.reusable_for(config)
    }
    providers: dict[str, Provider] = {}
    for name, conf in config.providers.items():
        if name in kept:
            providers[name] = kept[name]
            continue
        cls = provider_class(conf.kind)
        if cls is None:
            log.warning(
                "provider %s (kind %s) is not available in this version of ratd; skipped",
                name,
                conf.kind,
            )
            continue
        key = config.api_key(name)
        if key is None and conf.kind != "ollama":  # a local Ollama takes no key
            log.warning(
                "provider %s has no API key (secrets file or environment); requests go without one",
                name,
            )
        providers[name] = cls(name, conf, key)
    local = kept.get("local") or build_local(config)
    if local is not None:
        providers[local.name] = local
    return providers


__all__ = ["PROVIDER_CLASSES", "Provider", "build_providers"]
