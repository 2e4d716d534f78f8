"""The model registry through a real ratd: seed data under live model lists from fake
upstreams, the disk cache surviving a restart without network, parameter validation
under each policy, presets, cost, and cheapest-first routing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from ratatoskr import (
    InvalidInput,
    Message,
    ModelNotAvailable,
    PresetNotFound,
    ServiceClient,
    UnsupportedParameter,
    models_pb2,
)
from ratd.config import Config
from ratd.registry import Registry
from ratd.registry.seed import load_seed
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.daemon import daemon_client, make_config

KEYS = {"OPENAI_API_KEY": "sk-registry-test-01", "OPENROUTER_API_KEY": "sk-or-registry-test-01"}


def config(
    upstream: FakeOpenAIUpstream,
    extra: str = "",
    *,
    ollama: str = "",
    cache: Path | None = None,
    live: bool = False,
) -> Config:
    text = f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
# The parameter policy is shown on Chat Completions (o3 is a Responses model in the seed).
apis = {{ "o3" = "chat_completions" }}
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
"""
    if ollama:
        text += f'[providers.ollama]\nbase_url = "{ollama}"\n'
    text += (
        f'[registry]\nlive = {str(live).lower()}\ncache_path = "{cache or ""}"\nrefresh_secs = 0\n'
    )
    return make_config(text + extra, env=KEYS)


async def eventually(check: Callable[[], Awaitable[bool]], tries: int = 200) -> None:
    """Wait for the background refresh, by observing its effect (no wall-clock asserts)."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


def param(md: models_pb2.ModelMetadata, name: str) -> models_pb2.ParameterAvailability:
    return next(p.availability for p in md.parameters if p.name == name)


# -- the seed -----------------------------------------------------------------------------------


def test_seed_is_versioned_and_covers_every_provider() -> None:
    seed = load_seed()
    assert seed.version >= 1
    assert {"openai", "openrouter", "anthropic", "google", "ollama", "huggingface"} <= set(
        seed.models
    )
    for models in seed.models.values():
        for md in models:
            assert md.info.id and md.info.capabilities, md.info.id
    assert {"free", "budget", "mid", "premium"} <= set(seed.presets)


def test_seed_profiles_cap_max_tokens_at_the_models_output_limit() -> None:
    registry = Registry({"openai": "openai", "anthropic": "anthropic"})
    gpt = registry.get("openai", "gpt-4o-mini")
    assert gpt is not None and gpt.max_output_tokens == 16384
    assert param(gpt, "max_tokens").mutable_range.max == 16384
    assert param(gpt, "top_k").unsupported
    o3 = registry.get("openai", "o3")
    assert o3 is not None and json.loads(param(o3, "temperature").read_only_json) == 1
    claude = registry.get("anthropic", "claude-sonnet-4-5")
    assert claude is not None and param(claude, "temperature").mutable_range.max == 1
    assert registry.cost("openai", "gpt-4o-mini", _usage(1_000_000, 1_000_000)) == pytest.approx(
        0.75
    )


def _usage(prompt: int, completion: int) -> object:
    from ratatoskr import chat_pb2

    return chat_pb2.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


# -- live data and the cache ------------------------------------------------------------------------


async def test_live_lists_override_the_seed_key_by_key(upstream: FakeOpenAIUpstream) -> None:
    async with (
        FakeOllama() as ollama,
        daemon_client(config(upstream, ollama=ollama.base_url, live=True)) as client,
    ):

        async def refreshed() -> bool:
            md = await client.model_metadata("openrouter:yggdrasil/ash-3-mini")
            return md is not None

        await eventually(refreshed)
        ash = await client.model_metadata("openrouter:yggdrasil/ash-3-mini")
        assert ash is not None
        # OpenRouter's per-token price strings, per million tokens.
        assert ash.pricing.prompt_cost_per_mtok == pytest.approx(0.2)
        assert ash.pricing.completion_cost_per_mtok == pytest.approx(0.8)
        assert ash.info.context_window == 131072 and ash.max_output_tokens == 16384
        assert param(ash, "top_k").HasField("mutable_range")
        assert param(ash, "frequency_penalty").unsupported  # not in supported_parameters
        caps = set(ash.info.capabilities)
        assert {models_pb2.MODEL_CAPABILITY_TOOL_USE, models_pb2.MODEL_CAPABILITY_VISION} <= caps

        # openai/gpt-4o-mini: OpenRouter's list replaces the seed's parameter surface...
        mini = await client.model_metadata("openrouter:openai/gpt-4o-mini")
        assert mini is not None and param(mini, "top_k").unsupported
        # ...while the seed's keys the list does not have stay (the seed's output limit).
        assert mini.max_output_tokens == 16384

        # Ollama: /api/tags plus /api/show (context length, capabilities).
        await eventually(lambda: _known(client, "ollama:qwen3:0.6b"))
        qwen = await client.model_metadata("ollama:qwen3:0.6b")
        assert qwen is not None and qwen.info.context_window == 40960
        assert models_pb2.MODEL_CAPABILITY_REASONING in qwen.info.capabilities

        listed = {(m.provider, m.id) for m in await client.list_models()}
        assert ("openrouter", "yggdrasil/ash-3-mini") in listed and ("openai", "gpt-4o") in listed
        assert {m.provider for m in await client.list_models("ollama")} == {"ollama"}


async def _known(client: ServiceClient, model: str) -> bool:
    return await client.model_metadata(model) is not None


async def test_restart_without_network_serves_the_cached_data(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    cache = tmp_path / "registry.json"
    async with daemon_client(config(upstream, cache=cache, live=True)) as client:
        await eventually(lambda: _known(client, "openrouter:yggdrasil/ash-3-mini"))
    assert cache.exists() and json.loads(cache.read_text())["providers"]["openrouter"]["models"]
    assert not list(tmp_path.glob(".registry-*")), "the atomic write leaves no temporary file"

    await upstream.close()  # the network is gone
    async with daemon_client(config(upstream, cache=cache, live=True)) as client:
        ash = await client.model_metadata("openrouter:yggdrasil/ash-3-mini")
        assert ash is not None and ash.pricing.prompt_cost_per_mtok == pytest.approx(0.2)
        # Fetching asks the (unreachable) provider, fails quietly and answers from memory.
        fetched = await client.fetch_model_metadata("openrouter:yggdrasil/ash-3-mini")
        assert fetched is not None and fetched.info.context_window == 131072


@pytest.mark.parametrize(
    "reply",
    [
        (200, b"not json at all"),
        (200, b'{"data": "nope"}'),
        (200, b'{"data": [{"id": 7}, {"pricing": "free"}, 3, null]}'),
        (200, b'{"data": []}'),
        (500, b'{"error": {"message": "boom"}}'),
    ],
)
async def test_malformed_lists_never_crash_and_never_erase_good_data(
    upstream: FakeOpenAIUpstream, reply: tuple[int, bytes]
) -> None:
    async with daemon_client(config(upstream, live=True)) as client:
        await eventually(lambda: _known(client, "openrouter:yggdrasil/ash-3-mini"))
        upstream.openrouter.models_reply = reply
        fetched = await client.fetch_model_metadata("openrouter:yggdrasil/ash-3-mini")
        assert fetched is not None and fetched.pricing.prompt_cost_per_mtok == pytest.approx(0.2)
        assert (await client.health()).healthy


async def test_metadata_answers_from_memory_and_found_false_for_strangers(
    upstream: FakeOpenAIUpstream,
) -> None:
    async with daemon_client(config(upstream)) as client:
        requests_before = len(upstream.requests)
        md = await client.model_metadata("gpt-4o")
        assert (
            md is not None
            and md.info.provider == "openai"
            and md.pricing.prompt_cost_per_mtok == 2.5
        )
        assert len(upstream.requests) == requests_before, "GetModelMetadata never asks upstream"
        assert await client.model_metadata("no-such-model-anywhere") is None
        status = await client.model_status("gpt-4o")
        assert status.status == models_pb2.MODEL_STATUS_AVAILABLE
        status = await client.model_status("no-such-model-anywhere")
        assert status.status == models_pb2.MODEL_STATUS_UNAVAILABLE and status.reason


# -- parameter validation ------------------------------------------------------------------------------


@pytest.fixture
async def policy_client(
    upstream: FakeOpenAIUpstream, request: pytest.FixtureRequest
) -> AsyncIterator[ServiceClient]:
    extra = f'[validation]\nparameter_policy = "{request.param}"\n'
    async with daemon_client(config(upstream, extra)) as client:
        yield client


@pytest.mark.parametrize("policy_client", ["warn"], indirect=True)
async def test_warn_drops_what_the_model_does_not_take(
    policy_client: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    reply = await policy_client.chat(
        "hi", model="o3", temperature=0.2, presence_penalty=0.5, seed=7
    )
    assert reply.content == TEXT
    sent = upstream.last("openai").json
    assert "temperature" not in sent and "presence_penalty" not in sent  # o3: fixed / unsupported
    assert sent["seed"] == 7
    # A read-only parameter set to its fixed value is fine.
    await policy_client.chat("hi", model="o3", temperature=1.0)
    assert upstream.last("openai").json["temperature"] == 1.0


@pytest.mark.parametrize("policy_client", ["error"], indirect=True)
async def test_error_refuses_with_unsupported_parameter(
    policy_client: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        await policy_client.chat("hi", model="openai:o3", temperature=0.2)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.parameter, caught.value.provider, caught.value.model) == (
        "temperature",
        "openai",
        "o3",
    )
    # With a chain, the refusal lets the next provider (which takes it) answer.
    reply = await policy_client.chat("hi", model="o3", temperature=0.2)
    assert reply.provider == "openrouter"
    assert upstream.last("openrouter").json["temperature"] == pytest.approx(0.2)


@pytest.mark.parametrize("policy_client", ["ignore"], indirect=True)
async def test_ignore_sends_it_anyway(
    policy_client: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    await policy_client.chat("hi", model="o3", presence_penalty=0.5)
    assert upstream.last("openai").json["presence_penalty"] == 0.5


@pytest.mark.parametrize("policy_client", ["warn", "error", "ignore"], indirect=True)
async def test_out_of_range_is_invalid_under_every_policy(policy_client: ServiceClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        await policy_client.chat("hi", model="openai:gpt-4o-mini", max_tokens=50_000)
    assert caught.value.field == "options.max_tokens"
    assert "1..16384" in caught.value.message


async def test_a_parameter_the_upstream_refused_is_remembered(upstream: FakeOpenAIUpstream) -> None:
    async with daemon_client(config(upstream)) as client:
        upstream.openai.scenario = "unsupported-parameter"
        reply = await client.chat("hi", model="openai:gpt-4o-mini", temperature=0.3)
        assert reply.content == TEXT
        first, second = upstream.requests_to("openai")[-2:]
        assert first.json["temperature"] == pytest.approx(0.3) and "temperature" not in second.json
        upstream.openai.scenario = None
        await client.chat("hi", model="openai:gpt-4o-mini", temperature=0.3)
        assert "temperature" not in upstream.last("openai").json, "validated from memory now"


# -- presets ---------------------------------------------------------------------------------------


async def test_presets_fill_only_unset_options(upstream: FakeOpenAIUpstream) -> None:
    extra = """
[presets.budget.agentic]
model = "openai:gpt-4o-mini"
temperature = 0.25
max_tokens = 300
stop = ["END"]
"""
    async with daemon_client(config(upstream, extra)) as client:
        tiers = {t.tier: list(t.capabilities) for t in await client.list_presets()}
        assert "agentic" in tiers["budget"] and "coding" in tiers["premium"]
        resolved = await client.resolve_preset("budget", "agentic")
        assert resolved.found and resolved.model_id == "openai:gpt-4o-mini"
        assert resolved.parameters.max_tokens == 300

        await client.chat("hi", model="ratatoskr:budget/agentic", max_tokens=50)
        sent = upstream.last("openai").json
        assert sent["model"] == "gpt-4o-mini"
        assert sent["temperature"] == pytest.approx(0.25)
        assert sent["max_completion_tokens"] == 50, "the caller's value wins"
        assert sent["stop"] == ["END"]

        with pytest.raises(PresetNotFound) as caught:
            await client.chat("hi", model="ratatoskr:budget/juggling")
        assert (
            caught.value.code == grpc.StatusCode.NOT_FOUND
            and "ratatoskr:budget/juggling" in caught.value.message
        )
        for malformed in ("ratatoskr:budget", "ratatoskr:/coding", "ratatoskr:a/b/c"):
            with pytest.raises(InvalidInput):
                await client.chat("hi", model=malformed)
        assert not (await client.resolve_preset("budget", "juggling")).found
        with pytest.raises(InvalidInput):
            await client.resolve_preset("", "coding")


# -- cost and cheapest routing ------------------------------------------------------------------------


async def test_cost_in_responses_and_the_final_stream_usage(upstream: FakeOpenAIUpstream) -> None:
    async with daemon_client(config(upstream)) as client:
        reply = await client.chat([Message.user("hi")], model="openai:gpt-4o-mini")
        usage = reply.usage
        assert usage.cost_usd == pytest.approx(
            (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.6) / 1e6
        )
        events = [e async for e in client.chat_stream("hi", model="openai:gpt-4o-mini")]
        (usage_event,) = [e for e in events if e.WhichOneof("event") == "usage"]
        assert usage_event.usage.cost_usd > 0
        generated = await client.generate("hi", model="openai:gpt-4o-mini")
        assert generated.usage.cost_usd > 0


async def test_cheapest_picks_the_lowest_price_and_falls_back_in_price_order(
    upstream: FakeOpenAIUpstream,
) -> None:
    cheap = {
        "data": [
            {
                "id": "openai/gpt-4o",
                "context_length": 128000,
                "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                "top_provider": {"max_completion_tokens": 16384},
                "supported_parameters": ["max_tokens", "temperature", "top_p", "tools"],
            }
        ]
    }
    upstream.openrouter.models_reply = (200, json.dumps(cheap).encode())
    extra = '[routing]\nstrategy = "cheapest"\nchat = ["openai", "openrouter"]\n'
    async with daemon_client(config(upstream, extra, live=True)) as client:

        async def cheaper() -> bool:
            md = await client.model_metadata("openrouter:openai/gpt-4o")
            return md is not None and md.pricing.prompt_cost_per_mtok == pytest.approx(1.0)

        await eventually(cheaper)
        reply = await client.chat("hi", model="gpt-4o")
        assert reply.provider == "openrouter", "OpenRouter's live price is below OpenAI's"
        # A parameter the cheap route does not take moves it behind the dearer one.
        reply = await client.chat("hi", model="gpt-4o", seed=11)
        assert reply.provider == "openai"
        # The cheapest failing: the next in price order answers.
        upstream.openrouter.scenario = "server-error"
        reply = await client.chat("hi", model="gpt-4o")
        assert reply.provider == "openai"
        upstream.openai.scenario = "server-error"
        with pytest.raises(ModelNotAvailable) as caught:
            await client.chat("hi", model="gpt-4o")
        assert caught.value.metadata["tried"] == "openrouter,openai"
