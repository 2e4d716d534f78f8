"""Who is calling, and which models they may use.

The service layer authenticates the caller and puts its ``Tenant`` on the call
(``CallInfo.tenant``); the core asks ``check_model`` before it uses a model: once for the
model the caller named, and once for every provider:model that would serve it, fallbacks
included, so that a preset, an alias or a fallback chain cannot lead a tenant to a model
outside its allow-list.

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


def check_model(
    tenant: Tenant | None, requested: str, provider: str = "", provider_model: str = ""
) -> None:
    """Raise ModelNotAllowed unless ``tenant`` may use ``requested`` and, when given, the
    ``provider``:``provider_model`` that would serve it. No tenant (auth mode "none") or
    no allow-list: every model. The message names the tenant and the model, never a
    credential."""
    if tenant is None or tenant.models is None:
        return
    if requested and not tenant.may_use(requested):
        raise ModelNotAllowed(
            f"tenant {tenant.name} may not use model {requested!r} (not on its allow-list)",
            model=requested,
        )
    if provider:
        candidate = f"{provider}:{provider_model}"
        if not tenant.may_use(candidate):
            raise ModelNotAllowed(
                f"tenant {tenant.name} may not use {candidate!r}, which would serve "
                f"{requested!r} (not on its allow-list)",
                provider=provider,
                model=provider_model,
            )
