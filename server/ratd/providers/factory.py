"""Builds one provider object per configured provider, from the spec table."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping

from ratd.config import Config
from ratd.providers.apis import ModelApis
from ratd.providers.base import Provider
from ratd.providers.specs import ProviderSpec, spec_for

log = logging.getLogger(__name__)


def provider_class(spec: ProviderSpec) -> type[Provider]:
    module_name, _, name = spec.target.partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module_name), name)
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
    config: Config,
    previous: Mapping[str, Provider] | None = None,
    model_apis: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Provider]:
    """One provider object per configured provider. On a reload, ``previous`` are the
    running gateway's: those that say they can serve the new config unchanged are kept
    rather than built again. ``model_apis``: the registry seed's marks of the models
    another API of their provider serves, by kind then model (``ratd.providers.apis``)."""
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
        spec = spec_for(conf.kind)
        assert spec is not None, "the config loader accepts only known kinds"
        key = config.api_key(name)
        if key is None and spec.needs_key:
            log.warning(
                "provider %s has no API key (secrets file or environment); requests go without one",
                name,
            )
        provider = provider_class(spec)(name, conf, key)
        provider.model_apis = ModelApis.build(conf.apis, (model_apis or {}).get(spec.kind))
        providers[name] = provider
    local = kept.get("local") or build_local(config)
    if local is not None:
        providers[local.name] = local
    return providers


__all__ = ["build_providers", "provider_class"]
