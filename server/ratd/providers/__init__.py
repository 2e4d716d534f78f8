"""Remote providers, one module per upstream API, and the factory that builds them."""

from __future__ import annotations

import logging

from ratd.config import Config
from ratd.providers.base import Provider
from ratd.providers.openai_compat import OpenAIProvider, OpenRouterProvider

log = logging.getLogger(__name__)

PROVIDER_CLASSES: dict[str, type[Provider]] = {
    cls.kind: cls for cls in (OpenAIProvider, OpenRouterProvider)
}


def build_providers(config: Config) -> dict[str, Provider]:
    """One provider object per configured remote provider whose API this ratd speaks."""
    providers: dict[str, Provider] = {}
    for name, conf in config.providers.items():
        cls = PROVIDER_CLASSES.get(conf.kind)
        if cls is None:
            log.warning("provider %s (kind %s) is not available in this version of ratd; skipped", name, conf.kind)
            continue
        key = config.api_key(name)
        if key is None:
            log.warning("provider %s has no API key (secrets file or environment); requests go without one", name)
        providers[name] = cls(name, conf, key)
    return providers


__all__ = ["PROVIDER_CLASSES", "Provider", "build_providers"]
