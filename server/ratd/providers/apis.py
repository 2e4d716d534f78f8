"""Which of a provider's upstream APIs serves a model: registry data with a per-provider
override.

A provider class may speak several APIs of its upstream (OpenAI's Chat Completions and
Responses, Gemini's generateContent and Interactions); its spec lists their names, the
first being the default. The registry's seed marks the models that another one serves
(``"api": "responses"``); ``[providers.NAME] apis = { "glob" = "api" }`` overrides it.
This module is data only: the factory builds each provider's ``ModelApis`` from the
config and the seed's marks, which the caller passes in (providers never import the
registry).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# A dated snapshot of a model ("gpt-5-2025-08-07") is served as the model is.
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_MAX_KNOWN = 4096


@dataclass(frozen=True, slots=True)
class ModelApis:
    """The API each model of one provider is sent to (None: the provider's default)."""

    # (glob, api) from the provider's config, tried in the order written.
    overrides: tuple[tuple[str, str], ...] = ()
    # model id -> api, from the registry's seed for the provider's kind.
    marked: Mapping[str, str] = field(default_factory=dict)
    # Answers given, by model name: every call asks, for one of a few models (bounded).
    _known: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls, overrides: Mapping[str, str], marked: Mapping[str, str] | None = None
    ) -> ModelApis:
        return cls(tuple(overrides.items()), dict(marked or {}))

    def api_for(self, model: str) -> str | None:
        """The configured API for ``model`` if a pattern matches, else the seed's mark
        (for the model or the model its dated snapshot name belongs to), else None."""
        known = self._known
        if model in known:
            return known[model]
        if len(known) >= _MAX_KNOWN:
            known.clear()
        api = known[model] = self._lookup(model)
        return api

    def _lookup(self, model: str) -> str | None:
        for pattern, api in self.overrides:
            if fnmatch.fnmatchcase(model, pattern):
                return api
        return self.marked.get(model) or self.marked.get(_SNAPSHOT.sub("", model))


__all__ = ["ModelApis"]
