"""The cross-provider conformance suite: the same scenarios (tests/fakes/conformance.py)
run against every chat adapter through a real in-process ratd, and must come out as the
same normalised responses, stream events and statuses.

Where an API cannot express something (OpenAI never shows reasoning text; Anthropic and
Ollama report no reasoning-token count; only some APIs report cached prompt tokens or
sign reasoning), the table below says so and the assertion is skipped for that provider
alone. Everything else is asserted identically for all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import pytest

from ratatoskr import ChatStreamCollector, RatatoskrError, ServiceClient, ToolDefinition, chat_pb2
from tests.fakes import conformance as conf
from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.fakes.gemini_interactions_upstream import FakeGeminiInteractionsUpstream
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.daemon import daemon_client, make_config


@dataclass(frozen=True)
class Traits:
    shows_reasoning: bool
    counts_reasoning: bool
    reports_cached: bool


TRAITS = {
    "openai": Traits(shows_reasoning=False, counts_reasoning=True, reports_cached=True),
    # OpenAI's Responses API: reasoning summaries are shown (asked for with an effort).
    "openai_responses": Traits(shows_reasoning=True, counts_reasoning=True, reports_cached=True),
    "openrouter": Traits(shows_reasoning=True, counts_reasoning=True, reports_cached=True),
    "anthropic": Traits(shows_reasoning=True, counts_reasoning=False, reports_cached=True),
    "google": Traits(shows_reasoning=True, counts_reasoning=True, reports_cached=True),
    # The same kind, with every model sent to the Interactions API (apis = {"*" = ...}).
    "google_interactions": Traits(shows_reasoning=True, counts_reasoning=True, reports_cached=True),
    "ollama": Traits(shows_reasoning=True, counts_reasoning=False, reports_cached=False),
}
PROVIDERS = sorted(TRAITS)

TOOLS = [
    ToolDefinition(
        "get_weather",
        "Weather for a city",
        {"type": "object", "properties": {"city": {"type": "string"}}},
    ),
    ToolDefinition(
        "get_time",
        "Local time in a city",
        {"type": "object", "properties": {"city": {"type": "string"}}},
    ),
]

KEYS = {
    "OPENAI_API_KEY": "sk-conformance-openai-0001",
    "OPENROUTER_API_KEY": "sk-or-conformance-0001",
    "ANTHROPIC_API_KEY": "sk-ant-conformance-0001",
    "GOOGLE_API_KEY": "AIza-conformance-0001",
}


@pytest.fixture
async def client() -> AsyncIterator[ServiceClient]:
    async with AsyncExitStack() as stack:
        openai = await stack.enter_async_context(FakeOpenAIUpstream())
        anthropic = await stack.enter_async_context(FakeAnthropicUpstream())
        # The Gemini fake with the Interactions API on the same origin, as Google serves it.
        gemini = await stack.enter_async_context(FakeGeminiInteractionsUpstream())
        ollama = await stack.enter_async_context(FakeOllama())
        config = make_config(
            f"""
[providers.openai]
base_url = "{openai.base_url_openai}"
[providers.openai_responses]
kind = "openai"
base_url = "{openai.base_url_openai}"
apis = {{ "*" = "responses" }}
api_key_env = "OPENAI_API_KEY"
[providers.openrouter]
base_url = "{openai.base_url_openrouter}"
[providers.anthropic]
base_url = "{anthropic.base_url}"
[providers.google]
base_url = "{gemini.base_url}"
[providers.google_interactions]
kind = "google"
base_url = "{gemini.base_url}"
api_key_env = "GOOGLE_API_KEY"
apis = {{ "*" = "interactions" }}
[providers.ollama]
base_url = "{ollama.base_url}"
""",
            env=KEYS,
        )
        yield await stack.enter_async_context(daemon_client(config))


def model(provider: str, scenario: str) -> str:
    return f"{provider}:{scenario}"


@dataclass
class Collected:
    """A stream folded into what a unary reply would hold, plus the event order."""

    content: str = ""
    reasoning: str = ""
    signature: str = ""
    calls: dict[int, list[str]] | None = None
    order: list[str] | None = None
    usage: chat_pb2.Usage | None = None
    done: chat_pb2.ChatStreamResponse | None = None


async def collect(stream: AsyncIterator[chat_pb2.ChatStreamResponse]) -> Collected:
    out = Collected(calls={}, order=[])
    assert out.calls is not None and out.order is not None
    async for event in stream:
        kind = event.WhichOneof("event")
        assert out.done is None, f"{kind} after done"
        out.order.append(kind or "")
        if kind == "content":
            out.content += event.content
        elif kind == "reasoning":
            out.reasoning += event.reasoning
        elif kind == "reasoning_signature":
            out.signature += event.reasoning_signature
        elif kind == "tool_call_start":
            start = event.tool_call_start
            assert start.index not in out.calls
            out.calls[start.index] = [start.id, start.name, ""]
        elif kind == "tool_call_delta":
            out.calls[event.tool_call_delta.index][2] += event.tool_call_delta.arguments
        elif kind == "usage":
            out.usage = event.usage
        elif kind == "done":
            out.done = event
    return out


def check_usage(usage: chat_pb2.Usage, provider: str, *, reasoning: bool = False) -> None:
    traits = TRAITS[provider]
    assert usage.prompt_tokens == conf.PROMPT_TOKENS
    assert usage.completion_tokens == conf.COMPLETION_TOKENS
    assert usage.total_tokens == conf.PROMPT_TOKENS + conf.COMPLETION_TOKENS
    if reasoning and traits.counts_reasoning:
        assert usage.reasoning_tokens == conf.REASONING_TOKENS
    if traits.reports_cached:
        assert usage.cached_prompt_tokens == conf.CACHED_PROMPT_TOKENS


# -- answers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text(client: ServiceClient, provider: str) -> None:
    reply = await client.chat("Give me a pangram.", model=model(provider, "conf-text"))
    assert reply.content == conf.TEXT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert reply.provider == provider
    assert not reply.tool_calls
    check_usage(reply.usage, provider)

    got = await collect(
        client.chat_stream("Give me a pangram.", model=model(provider, "conf-text"))
    )
    assert got.content == conf.TEXT
    assert got.order is not None and got.order.count("content") >= 2, "a stream arrives in pieces"
    assert got.order[-2:] == ["usage", "done"]
    assert got.done is not None and got.done.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert got.done.provider == provider
    assert got.usage is not None
    check_usage(got.usage, provider)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_one_tool_call(client: ServiceClient, provider: str) -> None:
    reply = await client.chat("Weather in Oslo?", TOOLS, model=model(provider, "conf-tool"))
    assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    (call,) = reply.tool_calls
    assert (call.name, call.arguments) == ("get_weather", conf.WEATHER_ARGS_JSON)
    assert call.id

    got = await collect(
        client.chat_stream("Weather in Oslo?", TOOLS, model=model(provider, "conf-tool"))
    )
    assert got.calls is not None and got.order is not None
    assert list(got.calls) == [0]
    call_id, name, arguments = got.calls[0]
    assert call_id and name == "get_weather"
    assert arguments == conf.WEATHER_ARGS_JSON, "argument text reassembles exactly"
    start, end = got.order.index("tool_call_start"), got.order.index("tool_call_end")
    assert start < end and all(k == "tool_call_delta" for k in got.order[start + 1 : end])
    assert got.done is not None and got.done.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parallel_tool_calls(client: ServiceClient, provider: str) -> None:
    reply = await client.chat(
        "Weather and time in Oslo?", TOOLS, model=model(provider, "conf-parallel")
    )
    assert [(c.name, c.arguments) for c in reply.tool_calls] == list(conf.TOOL_CALLS)
    assert len({c.id for c in reply.tool_calls}) == 2

    got = await collect(
        client.chat_stream("Weather and time?", TOOLS, model=model(provider, "conf-parallel"))
    )
    assert got.calls is not None and got.order is not None
    assert [(got.calls[i][1], got.calls[i][2]) for i in sorted(got.calls)] == list(conf.TOOL_CALLS)
    assert sorted(got.calls) == [0, 1]
    assert got.order.count("tool_call_end") == 2
    assert got.done is not None and got.done.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_reasoning(client: ServiceClient, provider: str) -> None:
    traits = TRAITS[provider]
    reply = await client.chat(
        "A pangram, please.", model=model(provider, "conf-reasoning"), reasoning_effort="low"
    )
    assert reply.content == conf.TEXT
    assert reply.reasoning == (conf.REASONING if traits.shows_reasoning else "")
    check_usage(reply.usage, provider, reasoning=True)

    got = await collect(
        client.chat_stream(
            "A pangram, please.", model=model(provider, "conf-reasoning"), reasoning_effort="low"
        )
    )
    assert got.content == conf.TEXT
    assert got.order is not None
    if traits.shows_reasoning:
        assert got.reasoning == conf.REASONING
        assert got.order.index("reasoning") < got.order.index("content"), "thinking comes first"
    else:
        assert "reasoning" not in got.order
    assert got.usage is not None
    check_usage(got.usage, provider, reasoning=True)


@pytest.mark.parametrize("scenario", ["conf-text", "conf-tool", "conf-parallel", "conf-reasoning"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_collected_stream_is_the_unary_reply(
    client: ServiceClient, provider: str, scenario: str
) -> None:
    """Folded by ChatStreamCollector, a stream is exactly what Chat answers (reasoning
    blocks with their signatures included): a client can show a turn as it arrives and
    still send it back whole."""
    tools = TOOLS if scenario in ("conf-tool", "conf-parallel") else []
    name = model(provider, scenario)
    reply = await client.chat("Go on.", tools, model=name, reasoning_effort="low")
    streamed = await ChatStreamCollector.collect(
        client.chat_stream("Go on.", tools, model=name, reasoning_effort="low")
    )
    assert streamed == reply


# -- errors -----------------------------------------------------------------------------------------------

ERRORS = {
    "conf-auth": (grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_FAILED"),
    "conf-missing": (grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
    "conf-rate-limit": (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
    "conf-server-error": (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    "conf-overloaded": (grpc.StatusCode.UNAVAILABLE, "PROVIDER_OVERLOADED"),
}


@pytest.mark.parametrize("scenario", sorted(ERRORS))
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_error_classes(client: ServiceClient, provider: str, scenario: str) -> None:
    code, reason = ERRORS[scenario]
    for streamed in (False, True):
        with pytest.raises(RatatoskrError) as caught:
            if streamed:
                await collect(client.chat_stream("hi", model=model(provider, scenario)))
            else:
                await client.chat("hi", model=model(provider, scenario))
        err = caught.value
        assert (err.code, err.reason) == (code, reason), err.message
        assert err.provider == provider
        if scenario == "conf-rate-limit":
            assert err.retry_after is not None
            assert conf.RETRY_AFTER_SECONDS - 1.5 <= err.retry_after <= conf.RETRY_AFTER_SECONDS
            assert err.message.startswith("Rate limited, retry after ")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_error_in_the_middle_of_a_stream(client: ServiceClient, provider: str) -> None:
    seen: list[str] = []
    with pytest.raises(RatatoskrError) as caught:
        async for event in client.chat_stream("hi", model=model(provider, "conf-stream-error")):
            if event.WhichOneof("event") == "content":
                seen.append(event.content)
    assert "".join(seen) == conf.TEXT_PIECES[0], "what arrived before the error is delivered"
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.provider == provider


def test_the_suite_runs_every_shared_scenario() -> None:
    answered = {"conf-text", "conf-tool", "conf-parallel", "conf-reasoning", "conf-stream-error"}
    assert answered | set(ERRORS) == set(conf.SCENARIOS)
