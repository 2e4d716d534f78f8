"""Routing: model name → provider chain (table-driven), and fallback through real
providers on loopback — on 503, on connection refused, on an over-budget model; never
on a request's own 4xx."""

from __future__ import annotations

import pytest

from ratatoskr import InvalidInput, ModelNotAvailable
from ratd import errors
from ratd.core.routing import Candidate, Router
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.daemon import daemon_client, make_config

ALL = """
[providers.openai]
[providers.openrouter]
[providers.anthropic]
[providers.google]
[providers.ollama]
[providers.huggingface]
[providers.local]
"""


def route(model: str, capability: str = "chat", config: str = ALL) -> list[tuple[str, str]]:
    router = Router(make_config(config), {"all-MiniLM-L6-v2": "local"})
    return [(c.provider, c.model) for c in router.resolve(model, capability)]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai/gpt-4o", [("openrouter", "openai/gpt-4o")]),
        (
            "meta-llama/llama-3.2-3b-instruct:free",
            [("openrouter", "meta-llama/llama-3.2-3b-instruct:free")],
        ),
        (
            "claude-sonnet-4-5",
            [("anthropic", "claude-sonnet-4-5"), ("openrouter", "anthropic/claude-sonnet-4-5")],
        ),
        ("gpt-4o-mini", [("openai", "gpt-4o-mini"), ("openrouter", "openai/gpt-4o-mini")]),
        ("o3-mini", [("openai", "o3-mini"), ("openrouter", "openai/o3-mini")]),
        ("o4-mini", [("openai", "o4-mini"), ("openrouter", "openai/o4-mini")]),
        (
            "gemini-2.5-flash",
            [("google", "gemini-2.5-flash"), ("openrouter", "google/gemini-2.5-flash")],
        ),
        ("llama3.2:1b", [("ollama", "llama3.2:1b"), ("openrouter", "llama3.2:1b")]),
        ("gpt-oss:20b", [("ollama", "gpt-oss:20b"), ("openrouter", "gpt-oss:20b")]),
        (
            "ft:gpt-4o-mini:acme::abc123",
            [
                ("openai", "ft:gpt-4o-mini:acme::abc123"),
                ("openrouter", "openai/ft:gpt-4o-mini:acme::abc123"),
            ],
        ),
        # Mistral is not configured: OpenRouter serves it under its vendor prefix.
        ("mistral-large", [("openrouter", "mistralai/mistral-large")]),
        ("anthropic:claude-3-haiku", [("anthropic", "claude-3-haiku")]),
        ("ollama:qwen3", [("ollama", "qwen3")]),
        ("openrouter:openai/gpt-4o", [("openrouter", "openai/gpt-4o")]),
    ],
)
def test_default_table_for_chat(model: str, expected: list[tuple[str, str]]) -> None:
    assert route(model) == expected


@pytest.mark.parametrize(
    ("model", "capability", "expected"),
    [
        (
            "all-MiniLM-L6-v2",
            "embed",
            [("local", "all-MiniLM-L6-v2"), ("huggingface", "all-MiniLM-L6-v2")],
        ),
        (
            "text-embedding-3-small",
            "embed",
            [
                ("openai", "text-embedding-3-small"),
                ("local", "text-embedding-3-small"),
                ("huggingface", "text-embedding-3-small"),
            ],
        ),
        (
            "BAAI/bge-small-en-v1.5",
            "embed",
            [
                ("openrouter", "BAAI/bge-small-en-v1.5"),
                ("local", "BAAI/bge-small-en-v1.5"),
                ("huggingface", "BAAI/bge-small-en-v1.5"),
            ],
        ),
        ("gpt-4o", "tokens", [("openai", "gpt-4o"), ("local", "gpt-4o")]),
    ],
)
def test_default_chains_of_other_capabilities(
    model: str, capability: str, expected: list[tuple[str, str]]
) -> None:
    assert route(model, capability) == expected


def test_config_rules_and_chains_come_first() -> None:
    config = (
        ALL
        + """
[routing]
chat = ["ollama", "openai"]
[[routing.rules]]
match = "mistral-*"
provider = "ollama"
[[routing.rules]]
match = "gpt-4o*"
provider = "openrouter"
"""
    )
    assert route("mistral-large", config=config) == [
        ("ollama", "mistral-large"),
        ("openai", "mistral-large"),
    ]
    # A config rule beats the built-in gpt-* rule; the vendor prefix follows the rule's provider.
    assert route("gpt-4o", config=config)[0] == ("openrouter", "gpt-4o")
    assert route("claude-3-haiku", config=config) == [
        ("anthropic", "claude-3-haiku"),
        ("ollama", "claude-3-haiku"),
        ("openai", "claude-3-haiku"),
    ]


def test_unconfigured_providers_are_skipped_and_nothing_left_is_an_error() -> None:
    only_openrouter = "[providers.openrouter]\n"
    assert route("claude-3-haiku", config=only_openrouter) == [
        ("openrouter", "anthropic/claude-3-haiku")
    ]
    with pytest.raises(
        errors.NoProvider, match=r"no configured provider can serve model 'llama3\.2:1b'"
    ):
        route("llama3.2:1b", config="[providers.anthropic]\n")


def test_custom_provider_names_serve_their_kind() -> None:
    config = '[providers.work-openai]\nkind = "openai"\n[providers.or]\nkind = "openrouter"\n'
    assert route("gpt-4o") == [("openai", "gpt-4o"), ("openrouter", "openai/gpt-4o")]
    assert route("gpt-4o", config=config) == [("work-openai", "gpt-4o"), ("or", "openai/gpt-4o")]
    assert route("work-openai:gpt-4o", config=config) == [("work-openai", "gpt-4o")]


def test_candidates_are_plain_values() -> None:
    assert Candidate("a", "b") == Candidate("a", "b")


# -- fallback through real providers ------------------------------------------------------------


def _config(upstream: FakeOpenAIUpstream, ollama_url: str, chain: str) -> str:
    return f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
[providers.ollama]
base_url = "{ollama_url}"
[routing]
chat = {chain}
"""


KEYS = {"OPENAI_API_KEY": "sk-routing-test-1", "OPENROUTER_API_KEY": "sk-or-routing-test-1"}


async def test_fallback_on_connection_refused(upstream: FakeOpenAIUpstream) -> None:
    # Ollama is not running: the request falls through to OpenRouter.
    config = make_config(
        _config(upstream, "http://127.0.0.1:9", '["ollama", "openrouter"]'), env=KEYS
    )
    async with daemon_client(config) as client:
        reply = await client.chat("hi", model="llama3.2:1b")
        assert reply.content == TEXT and reply.provider == "openrouter"
        assert upstream.last("openrouter").json["model"] == "llama3.2:1b"


async def test_fallback_on_503_and_the_chain_in_the_error(upstream: FakeOpenAIUpstream) -> None:
    config = make_config(
        _config(upstream, "http://127.0.0.1:9", '["openai", "openrouter"]'), env=KEYS
    )
    upstream.openai.scenario = "overloaded"
    async with daemon_client(config) as client:
        reply = await client.chat("hi", model="gpt-4o-mini")
        assert reply.provider == "openrouter"
        assert upstream.last("openrouter").json["model"] == "openai/gpt-4o-mini"
        upstream.openrouter.scenario = "server-error"
        with pytest.raises(ModelNotAvailable) as caught:
            await client.chat("hi", model="gpt-4o-mini")
        assert caught.value.metadata["tried"] == "openai,openrouter"
        assert "all providers failed" in caught.value.message


async def test_fallback_when_a_model_is_over_budget(upstream: FakeOpenAIUpstream) -> None:
    """Ollama answers that the model needs more memory than it has: the chain moves on."""
    async with FakeOllama() as ollama:
        config = make_config(
            _config(upstream, ollama.base_url, '["ollama", "openrouter"]'), env=KEYS
        )
        async with daemon_client(config) as client:
            reply = await client.chat("hi", model="memory:latest")
            assert reply.provider == "openrouter"


async def test_no_fallback_on_the_requests_own_400(upstream: FakeOpenAIUpstream) -> None:
    config = make_config(
        _config(upstream, "http://127.0.0.1:9", '["openai", "openrouter"]'), env=KEYS
    )
    upstream.openai.scenario = "bad-request"
    async with daemon_client(config) as client:
        with pytest.raises(InvalidInput) as caught:
            await client.chat("hi", model="gpt-4o-mini")
        assert caught.value.metadata["tried"] == "openai"
    assert not upstream.requests_to("openrouter")


def test_one_line_providers_route_by_their_table_entry() -> None:
    """Providers declared by one ProviderSpec line route by their patterns, and a
    fallback to OpenRouter names the model as OpenRouter does."""
    config = ALL + "[providers.mistral]\n[providers.xai]\n[providers.deepseek]\n"
    assert route("mistral-large-latest", config=config) == [
        ("mistral", "mistral-large-latest"),
        ("openrouter", "mistralai/mistral-large-latest"),
    ]
    assert route("grok-4", config=config)[0] == ("xai", "grok-4")
    assert route("deepseek-chat", config=config)[1] == ("openrouter", "deepseek/deepseek-chat")


def test_models_ollama_pulls_from_the_hub_route_to_ollama() -> None:
    """Ollama's own listing names such models "hf.co/org/repo:quant"; the vendor/model
    shape would otherwise send them to OpenRouter."""
    model = "hf.co/bartowski/Ministral-8B-Instruct-2410-GGUF:IQ4_XS"
    assert route(model)[0] == ("ollama", model)
