"""From a model string to the ordered list of (provider, model) candidates to try.

Order of resolution (SPEC §3): a ``ratatoskr:`` preset; ``provider:model`` naming a
configured provider; the routing rules (the config's first, then the built-in table),
first match wins; then the capability's fallback chain from ``[routing]``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from ratd import errors
from ratd.config import Config, RoutingRule
from ratd.providers.specs import SPECS, default_chain, default_routes

PRESET_PREFIX = "ratatoskr:"
# Routing answers remembered before the memory is cleared (model names are the callers').
_MAX_REMEMBERED = 4096

# The built-in table (ratd.providers.specs): providers are named by kind; a configured
# provider of that kind with another name serves too.
DEFAULT_RULES: tuple[RoutingRule, ...] = tuple(
    RoutingRule(pattern, kind) for pattern, kind in default_routes()
)
# OpenRouter names models "vendor/model"; these kinds are vendors there.
_OPENROUTER_VENDORS = {
    spec.kind: spec.openrouter_vendor for spec in SPECS if spec.openrouter_vendor
}


@dataclass(frozen=True, slots=True)
class Candidate:
    provider: str
    model: str


class Router:
    def __init__(self, config: Config, claimed: Mapping[str, str] | None = None) -> None:
        """``claimed`` maps model names to the provider that holds them outright (local
        models), checked before the rules."""
        self._kinds = {name: conf.kind for name, conf in config.providers.items()}
        if config.local is not None:
            self._kinds["local"] = "local"
        self._rules = (*config.routing.rules, *DEFAULT_RULES)
        self._routing = config.routing
        self._claimed = dict(claimed or {})
        self._resolved: dict[tuple[str, str], tuple[Candidate, ...]] = {}

    def _by_name_or_kind(self, wanted: str) -> str | None:
        if wanted in self._kinds:
            return wanted
        return next((name for name, kind in self._kinds.items() if kind == wanted), None)

    def _model_for(self, provider: str, model: str, vendor_kind: str | None) -> str:
        """The model's name as ``provider`` knows it (OpenRouter's vendor prefixes)."""
        kind = self._kinds[provider]
        if kind == "openrouter" and "/" not in model and vendor_kind in _OPENROUTER_VENDORS:
            return f"{_OPENROUTER_VENDORS[vendor_kind]}/{model}"
        vendor = _OPENROUTER_VENDORS.get(kind)
        if vendor and model.startswith(f"{vendor}/"):
            return model[len(vendor) + 1 :]
        return model

    def resolve(self, model: str, capability: str) -> list[Candidate]:
        """The providers to try for ``model``, in order. Raises when none can serve.

        Answers are remembered (bounded): routing is fixed for the life of a config, and
        matching the rules is the costliest part of a request's way through the core."""
        key = (model, capability)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolve(model, capability)
            if len(self._resolved) >= _MAX_REMEMBERED:
                self._resolved.clear()
            self._resolved[key] = found
        return list(found)

    def _resolve(self, model: str, capability: str) -> tuple[Candidate, ...]:
        if model.startswith(PRESET_PREFIX):
            # The gateway resolves presets before routing; one naming another is an error.
            raise errors.InvalidInput(
                f"model: preset {model} cannot be routed (a preset may not name a preset)",
                field="model",
                model=model,
            )
        prefix, sep, rest = model.partition(":")
        if sep and rest and prefix in self._kinds:
            return (Candidate(prefix, rest),)
        primary: str | None = None
        vendor_kind: str | None = None
        if self._claimed.get(model) in self._kinds:
            primary = self._claimed[model]
        else:
            for rule in self._rules:
                if fnmatch.fnmatchcase(model, rule.match):
                    vendor_kind = self._kinds.get(rule.provider, rule.provider)
                    primary = self._by_name_or_kind(rule.provider)
                    break
        names = [primary] if primary else []
        chain = self._routing.chain(capability) or default_chain(capability)
        for wanted in chain:
            name = self._by_name_or_kind(wanted)
            if name and name not in names:
                names.append(name)
        if not names:
            raise errors.NoProvider(
                f"no configured provider can serve model {model!r} for {capability}; "
                f"configure its provider or set [routing] {capability} = [...]",
                model=model,
            )
        return tuple(Candidate(name, self._model_for(name, model, vendor_kind)) for name in names)
