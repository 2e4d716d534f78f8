"""What ratd knows of models, answered for the Model* and *Preset RPCs: the registry for
metadata (from memory), the providers for live status, the router to find which
provider a model name means."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ratatoskr.v1 import models_pb2
from ratd import errors
from ratd.core.retirement import Retirement, Today, utc_today
from ratd.core.routing import Router
from ratd.core.validation import validate_model
from ratd.providers.base import Provider
from ratd.registry import Presets, Registry

# Capabilities whose routing may name the provider of a model, in the order asked.
_CAPABILITIES = ("chat", "embed", "nli", "classify", "tokens", "image", "transcribe", "speech")

M = models_pb2
# What a provider's routing capabilities (its spec's) offer: every chat provider streams.
_OFFERED: dict[str, tuple[models_pb2.ModelCapability, ...]] = {
    "chat": (M.MODEL_CAPABILITY_CHAT, M.MODEL_CAPABILITY_CHAT_STREAMING),
    "generate": (M.MODEL_CAPABILITY_GENERATE,),
    "embed": (M.MODEL_CAPABILITY_EMBED,),
    "nli": (M.MODEL_CAPABILITY_NLI,),
    "classify": (M.MODEL_CAPABILITY_CLASSIFY,),
    "stance": (M.MODEL_CAPABILITY_STANCE,),
    "tokens": (M.MODEL_CAPABILITY_TOKEN_COUNTING,),
    "image": (M.MODEL_CAPABILITY_IMAGE_GENERATION,),
    "transcribe": (M.MODEL_CAPABILITY_SPEECH_TO_TEXT,),
    "speech": (M.MODEL_CAPABILITY_TEXT_TO_SPEECH,),
}
# Offered only when some model of a configured provider has them (registry metadata).
_BY_MODEL = frozenset(
    {
        M.MODEL_CAPABILITY_TOOL_USE,
        M.MODEL_CAPABILITY_REASONING,
        M.MODEL_CAPABILITY_VISION,
        M.MODEL_CAPABILITY_STRUCTURED_OUTPUT,
        M.MODEL_CAPABILITY_DOCUMENT_INPUT,
        M.MODEL_CAPABILITY_AUDIO_INPUT,
        M.MODEL_CAPABILITY_VIDEO_INPUT,
    }
)


class Catalog:
    def __init__(
        self,
        registry: Registry,
        presets: Presets,
        router: Router,
        providers: Mapping[str, Provider],
        today: Today = utc_today,
    ) -> None:
        self.registry = registry
        self.presets = presets
        self.router = router
        self.providers = providers
        self.retirement = Retirement(registry, today)

    def resolve_name(self, model: str) -> str:
        """A preset name as the model it stands for; other names unchanged."""
        preset = self.presets.resolve(model)
        return preset.model if preset is not None else model

    def _candidates(self, model: str) -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        for capability in _CAPABILITIES:
            try:
                candidates = self.router.resolve(model, capability)
            except errors.GatewayError:
                continue
            seen += [(c.provider, c.model) for c in candidates if (c.provider, c.model) not in seen]
        return [c for c in seen if c[0] in self.providers]

    def capabilities(self) -> list[models_pb2.ModelCapability]:
        """What this configuration offers: each configured provider's capabilities (from
        its spec), the model-level ones some registry model of a configured provider has,
        and local inference when the local provider exists. Sorted by value."""
        found: set[models_pb2.ModelCapability] = set()
        for provider in self.providers.values():
            for name in provider.capabilities:
                found.update(_OFFERED.get(name, ()))
            if not provider.spec.remote:
                found.add(M.MODEL_CAPABILITY_LOCAL_INFERENCE)
        chat = M.MODEL_CAPABILITY_CHAT in found
        for md in self.registry.models():
            if md.info.provider in self.providers:
                found.update(c for c in md.info.capabilities if c in _BY_MODEL and chat)
        return sorted(found)

    async def list_models(self, provider: str = "") -> list[models_pb2.ModelInfo]:
        return [md.info for md in self.registry.models(provider)]

    async def metadata(self, model: str) -> models_pb2.ModelMetadata | None:
        """From memory only: the first provider the routing would use that knows it."""
        validate_model("model", model)
        name = self.resolve_name(model)
        for provider, provider_model in self._candidates(name):
            found = self.registry.get(provider, provider_model)
            if found is not None:
                return found
        matches = self.registry.find(name)
        return matches[0] if matches else None

    async def fetch_metadata(self, model: str, timeout: float) -> models_pb2.ModelMetadata | None:
        """Ask the providers that may serve ``model`` for fresh lists first; when none of
        them knows it, the other providers. A provider's own list may name a model that
        the routing sends elsewhere: Ollama's ``hf.co/org/model:tag`` looks like an
        OpenRouter id."""
        validate_model("model", model)
        routed = {provider for provider, _ in self._candidates(self.resolve_name(model))}
        await self._refresh(routed)
        found = await self.metadata(model)
        if found is None:
            await self._refresh(set(self.providers) - routed)
            found = await self.metadata(model)
        return found

    async def _refresh(self, names: set[str]) -> None:
        """Fresh model lists of these providers in the registry (and its disk cache)."""
        if not names:
            return
        await asyncio.gather(*(self.registry.refresh_provider(n, self.providers[n]) for n in names))
        self.registry.save_cache()

    async def status(self, model: str) -> models_pb2.ModelStatusResponse:
        """What the provider reports (local and Ollama models: loaded or not); else, for a
        model the registry knows, whether its provider can be used at all: UNAVAILABLE
        when it has no key it needs or its last live model list failed, else AVAILABLE
        naming it."""
        validate_model("model", model)
        name = self.resolve_name(model)
        candidates = self._candidates(name)
        for provider, provider_model in candidates:
            status = await self.providers[provider].model_status(provider_model)
            if status is not None:
                return status
        listed = [(p, m) for p, m in candidates if self.registry.get(p, m) is not None]
        problems = []
        for provider, provider_model in listed:
            problem = self._unusable(provider)
            if problem is None:
                return models_pb2.ModelStatusResponse(
                    status=models_pb2.MODEL_STATUS_AVAILABLE,
                    reason=f"served by provider {provider} (as {provider_model})",
                )
            problems.append(problem)
        if problems:
            reason = "; ".join(problems)
        elif candidates:
            tried = ", ".join(provider for provider, _ in candidates)
            reason = f"no configured provider lists {model} (would try: {tried})"
        else:
            reason = f"no configured provider can serve {model}"
        return models_pb2.ModelStatusResponse(
            status=models_pb2.MODEL_STATUS_UNAVAILABLE, reason=reason
        )

    def _unusable(self, name: str) -> str | None:
        """Why provider ``name`` cannot serve calls now, as far as ratd knows without
        asking it; None when nothing is known against it."""
        provider = self.providers[name]
        if provider.spec.remote and provider.api_key is None and provider.spec.needs_key:
            where = provider.config.api_key_env or " or ".join(provider.spec.env_keys)
            hint = f" (set {where} or the secrets file)" if where else ""
            return f"provider {name} has no API key{hint}"
        failure = self.registry.refresh_failure(name)
        if failure is not None:
            return f"provider {name}: its last model list request failed: {failure}"
        return None

    async def resolve_preset(self, tier: str, capability: str) -> models_pb2.ResolvePresetResponse:
        if not tier or not capability:
            field = "tier" if not tier else "capability"
            raise errors.InvalidInput(f"{field}: must not be empty", field=field)
        preset = self.presets.get(tier, capability)
        if preset is None:
            return models_pb2.ResolvePresetResponse(found=False)
        return models_pb2.ResolvePresetResponse(
            found=True, model_id=preset.model, parameters=preset.to_proto()
        )

    async def list_presets(self) -> list[models_pb2.PresetTierEntry]:
        return self.presets.tiers()
