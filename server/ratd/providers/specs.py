"""The one table of the providers ratd speaks to: what config, secrets, the provider
factory and routing each need to know about a kind of provider, declared once.

A spec is data only (this module imports nothing of ratd), so that the config loader
can read it without pulling in the providers. Adding another OpenAI-compatible service
is one line here; a new API dialect is one module plus one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Routing rules are tried tier by tier, table order within a tier. Shape rules decide by
# the form of the model string ("vendor/model", "name:tag", "ft:..."); name rules by its
# prefix. "gpt-oss:20b" is Ollama's because shapes come first; a specific rule beats a
# shape ("hf.co/org/repo:quant" is a model Ollama pulls from the Hub, not an OpenRouter id).
SPECIFIC = -1
SHAPE = 0
NAME = 1


@dataclass(frozen=True, slots=True)
class Route:
    """A built-in routing rule: a shell-style ``pattern`` on the model name."""

    pattern: str
    tier: int = NAME


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    kind: str
    # "module:Class", imported only when a provider of this kind is configured.
    target: str
    base_url: str = ""
    # Environment variables that may hold the key, first found wins.
    env_keys: tuple[str, ...] = ()
    # Whether requests go without a key when none is configured (a warning otherwise).
    needs_key: bool = True
    # Routing capabilities the provider serves (chat, generate, embed, nli, ...).
    capabilities: frozenset[str] = frozenset()
    routes: tuple[Route, ...] = ()
    # Capabilities whose default fallback chain (an empty [routing] list) includes it.
    default_chains: frozenset[str] = frozenset()
    # The vendor prefix its models carry on OpenRouter ("openai/gpt-4o").
    openrouter_vendor: str = ""
    # Enabled by the embedded default config when its key is known (or always, when
    # it needs none).
    auto_enable: bool = False
    # Settings of the dialect the class speaks (e.g. which field carries max_tokens).
    dialect: Mapping[str, Any] = field(default_factory=dict)
    # The upstream APIs the class speaks, by name, when it speaks several: the first is
    # the default, the others serve the models the registry's seed marks with their name
    # (``"api": "responses"``) or ``[providers.NAME] apis`` names (ratd.providers.apis).
    apis: tuple[str, ...] = ()

    @property
    def remote(self) -> bool:
        return self.kind != "local"


_CHAT = frozenset({"chat", "generate"})
# GenerateImage, Transcribe (and TranscribeStream), Synthesize.
_MEDIA = frozenset({"image", "transcribe", "speech"})
_OPENAI_CHAT = "ratd.providers.openai_compat:OpenAIProvider"
# Chat Completions by default; the Responses API for the models marked or configured so.
_OPENAI_APIS = ("chat_completions", "responses")


def _openai_compatible(
    kind: str,
    base_url: str,
    env_key: str,
    routes: tuple[str, ...] = (),
    openrouter_vendor: str = "",
) -> ProviderSpec:
    """A hosted service that speaks OpenAI's Chat Completions with ``max_tokens``."""
    return ProviderSpec(
        kind,
        _OPENAI_CHAT,
        base_url,
        (env_key,),
        capabilities=_CHAT,
        routes=tuple(Route(pattern) for pattern in routes),
        openrouter_vendor=openrouter_vendor,
        auto_enable=True,
        dialect={"max_tokens_field": "max_tokens"},
        apis=_OPENAI_APIS,
    )


SPECS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        "openrouter",
        "ratd.providers.openai_compat:OpenRouterProvider",
        "https://openrouter.ai/api/v1",
        ("OPENROUTER_API_KEY",),
        # POST /api/v1/embeddings in OpenAI's shape (vendor/model names, e.g.
        # openai/text-embedding-3-small); not in the default embed chain.
        # Image output of chat models (modalities ["image", "text"]), as OpenRouter
        # documents it.
        capabilities=_CHAT | {"embed", "image"},
        routes=(Route("*/*", SHAPE),),
        default_chains=_CHAT,
        auto_enable=True,
        apis=_OPENAI_APIS,
    ),
    ProviderSpec(
        "openai",
        _OPENAI_CHAT,
        "https://api.openai.com/v1",
        ("OPENAI_API_KEY",),
        # Media: /images/generations and /images/edits, /audio/transcriptions,
        # /audio/speech (openai_media.py); realtime: the Realtime API over a WebSocket
        # (providers.realtime_openai).
        capabilities=_CHAT | {"embed", "realtime"} | _MEDIA,
        routes=(
            Route("ft:*", SHAPE),
            *(Route(p) for p in ("gpt-*", "chatgpt-*", "o1*", "o3*", "o4*", "text-embedding-*")),
            *(Route(p) for p in ("dall-e-*", "whisper-*", "tts-*")),
        ),
        openrouter_vendor="openai",
        auto_enable=True,
        dialect={"max_tokens_field": "max_completion_tokens", "unsupported": ("top_k",)},
        apis=_OPENAI_APIS,
    ),
    ProviderSpec(
        "anthropic",
        "ratd.providers.anthropic:AnthropicProvider",
        "https://api.anthropic.com",
        ("ANTHROPIC_API_KEY",),
        capabilities=_CHAT | {"tokens"},  # POST /v1/messages/count_tokens
        routes=(Route("claude-*"),),
        openrouter_vendor="anthropic",
        auto_enable=True,
    ),
    ProviderSpec(
        "google",
        "ratd.providers.gemini:GeminiProvider",
        "https://generativelanguage.googleapis.com",
        ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
        # Image output (responseModalities IMAGE) and speech output (the TTS models);
        # realtime: the Live API over a WebSocket (providers.realtime_gemini).
        capabilities=_CHAT | {"embed", "tokens", "image", "speech", "realtime"},
        routes=(Route("gemini-*"), Route("deep-research-*")),
        openrouter_vendor="google",
        auto_enable=True,
        # generateContent by default; the Interactions API (gemini_interactions) for the
        # models marked or configured so, and the same run as background interactions.
        apis=("generate_content", "interactions", "interactions_background"),
    ),
    ProviderSpec(
        "ollama",
        "ratd.providers.ollama:OllamaProvider",
        "http://localhost:11434",
        ("OLLAMA_API_KEY",),
        needs_key=False,  # a local Ollama takes none; ollama.com does
        capabilities=_CHAT | {"embed"},
        routes=(Route("hf.co/*", SPECIFIC), Route("*:*", SHAPE)),
        auto_enable=True,
    ),
    ProviderSpec(
        "huggingface",
        "ratd.providers.huggingface:HuggingFaceProvider",
        "https://router.huggingface.co/hf-inference",
        ("HF_API_KEY", "HF_TOKEN"),
        # Media: the text-to-image, automatic-speech-recognition, text-to-speech tasks.
        capabilities=frozenset({"embed", "nli", "classify", "stance"}) | _MEDIA,
        default_chains=frozenset({"embed", "nli", "classify", "stance"}),
        auto_enable=True,
    ),
    # HuggingFace's OpenAI-compatible router for chat and text generation (the Inference
    # API above keeps its own base_url: pipelines are not Chat Completions). Model names
    # are Hub ids, optionally with a provider suffix ("meta-llama/Llama-3.1-8B-Instruct",
    # "...:fastest"); they look like OpenRouter ids, so name the provider:
    # "huggingface_router:meta-llama/Llama-3.1-8B-Instruct".
    ProviderSpec(
        "huggingface_router",
        _OPENAI_CHAT,
        "https://router.huggingface.co/v1",
        ("HF_API_KEY", "HF_TOKEN"),
        capabilities=_CHAT,
        auto_enable=True,
        dialect={"max_tokens_field": "max_tokens"},
        apis=_OPENAI_APIS,
    ),
    # Hosted APIs that speak OpenAI's Chat Completions: one line each.
    _openai_compatible(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        ("mistral-*", "codestral-*", "magistral-*", "pixtral-*"),
        "mistralai",
    ),
    _openai_compatible(
        "deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY", ("deepseek-*",), "deepseek"
    ),
    _openai_compatible("xai", "https://api.x.ai/v1", "XAI_API_KEY", ("grok-*",), "x-ai"),
    _openai_compatible("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    _openai_compatible("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    # Any other server that speaks OpenAI's Chat Completions (vLLM, llama.cpp, LM Studio,
    # TGI, LiteLLM...): they read max_tokens, not max_completion_tokens, and take top_k.
    ProviderSpec(
        "openai_compatible",
        _OPENAI_CHAT,
        capabilities=_CHAT | {"embed"},
        needs_key=False,
        dialect={"max_tokens_field": "max_tokens"},
        apis=_OPENAI_APIS,
    ),
    # Built from [providers.local] by ratd.local (a model manager, not an HTTP API).
    ProviderSpec(
        "local",
        "",
        capabilities=frozenset({"embed", "nli", "classify", "stance", "tokens", "transcribe"}),
        default_chains=frozenset({"embed", "nli", "classify", "stance", "tokens"}),
    ),
)

BY_KIND: Mapping[str, ProviderSpec] = {spec.kind: spec for spec in SPECS}
REMOTE_KINDS: tuple[str, ...] = tuple(spec.kind for spec in SPECS if spec.remote)


def spec_for(kind: str) -> ProviderSpec | None:
    return BY_KIND.get(kind)


def default_chain(capability: str) -> tuple[str, ...]:
    """The providers (by kind) tried for ``capability`` when [routing] names none."""
    local_first = sorted(SPECS, key=lambda spec: spec.remote)
    return tuple(spec.kind for spec in local_first if capability in spec.default_chains)


def default_routes() -> tuple[tuple[str, str], ...]:
    """The built-in routing table as (pattern, kind), in the order it is tried."""
    routes = [(route, spec.kind) for spec in SPECS for route in spec.routes]
    routes.sort(key=lambda item: item[0].tier)  # stable: table order within a tier
    return tuple((route.pattern, kind) for route, kind in routes)
