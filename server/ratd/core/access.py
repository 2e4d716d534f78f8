"""Who is calling, and which models they may use.

The service layer authenticates the caller and puts its ``Tenant`` on the call
(``CallInfo.tenant``); the gateway core keeps, of the providers that would serve a model
(fallbacks included), only those the tenant may use (``permits``), and refuses the call
when none is left. It checks the model after presets and aliases are resolved, so that
none of them can lead a tenant to a model outside its allow-list.

Allow-list patterns are shell globs, case-sensitive. A pattern with a colon
(``openai:*``, ``local:all-MiniLM-L6-v2``) matches ``provider:model``; one without
(``gpt-4o-mini``, ``anthropic/*``) matches the model name with or without a provider prefix.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from ratd.errors import ModelNotAllowed


@dataclass(frozen=True, slots=True)
class Tenant:
    """A caller of ratd, as ``[tenants.NAME]`` describes it."""

    name: str
    roles: frozenset[str]
    # None: every model. Otherwise the patterns (for messages) and their compiled forms.
    models: tuple[str, ...] | None = None
    _qualified: re.Pattern[str] | None = None
    _bare: re.Pattern[str] | None = None

    @classmethod
    def build(cls, name: str, roles: Iterable[str], models: Iterable[str] | None) -> Tenant:
        if models is None:
            return cls(name, frozenset(roles))
        patterns = tuple(models)
        qualified = [p for p in patterns if ":" in p]
        bare = [p for p in patterns if ":" not in p]
        return cls(name, frozenset(roles), patterns, _compile(qualified), _compile(bare))

    def may_use(self, name: str) -> bool:
        """Is ``name`` (``model`` or ``provider:model``) on the allow-list?"""
        if self.models is None:
            return True
        if self._qualified is not None and self._qualified.match(name):
            return True
        if self._bare is None:
            return False
        if self._bare.match(name):
            return True
        _, sep, model = name.partition(":")
        return bool(sep) and self._bare.match(model) is not None


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


# The caller of the RPC this task serves; set by the service layer's authentication.
CALLER: ContextVar[Tenant | None] = ContextVar("ratd_caller", default=None)


def permits(tenant: Tenant, model: str, provider: str, provider_model: str) -> bool:
    """May ``tenant`` have ``model`` served by ``provider`` (as ``provider_model``)? Yes
    when the model's name is on its allow-list ("gpt-4o-mini": whoever serves it), or
    the provider:model that would serve it is ("openai:*")."""
    return tenant.may_use(model) or tenant.may_use(f"{provider}:{provider_model}")


def refusal(tenant: Tenant, model: str, candidates: Iterable[str]) -> ModelNotAllowed:
    """The error when no provider that would serve ``model`` is allowed. It names the
    tenant, the model and the candidates, never a credential."""
    tried = ", ".join(candidates) or "no configured provider"
    return ModelNotAllowed(
        f"tenant {tenant.name} may not use model {model!r}: neither it nor what would "
        f"serve it ({tried}) is on its allow-list",
        model=model,
    )
