"""The OpenAI and OpenRouter providers through a real in-process ratd: replies, streams in
order, and every option as each API takes it, checked on what the fake upstream received."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ratatoskr import (
    ChatOptions,
    ChatStreamCollector,
    Message,
    ServiceClient,
    ToolCall,
    ToolDefinition,
    UnsupportedParameter,
    chat_pb2,
)
from ratd.config import ProviderConfig
from ratd.providers.openai_compat import OpenAIProvider, OpenRouterProvider
from ratd.secrets import Secret
from tests.fakes.openai_upstream import (
    ANSWER_TEXT,
    CONVERT_CALL,
    ENCRYPTED_REASONING,
    FEE_CALL,
    FERRY_CALL,
    LENGTH_TEXT,
    OPENROUTER_FERRY_CALL,
    PARALLEL_USAGE,
    PREAMBLE_TEXT,
    REASONING_ITEM_ID,
    REASONING_PIECES,
    REASONING_SIGNATURE,
    REASONING_SUMMARY,
    REASONING_TEXT,
    REASONING_USAGE,
    REFUSAL_PIECES,
    REFUSAL_TEXT,
    TEXT,
    TEXT_PIECES,
    TEXT_USAGE,
    TOOL_USAGE,
    FakeOpenAIUpstream,
    expected_usage,
    fake_embedding,
    openai_snapshot,
)
from tests.support.compat import (
    MODELS,
    OPENAI_KEY,
    OPENAI_MODEL,
    OPENROUTER_KEY,
    OPENROUTER_MODEL,
    collect,
    compat_client,
    joined,
    kinds,
    tool_arguments,
)
from tests.support.daemon import daemon_client, make_config

FLAVOURS = ("openai", "openrouter")
KEYS = {"openai": OPENAI_KEY, "openrouter": OPENROUTER_KEY}

FERRY_TOOL = ToolDefinition(
    "lookup_ferry_schedule",
    "Departures between two harbors on a date.",
    {
        "type": "object",
        "properties": {
            "harbor": {"type": "string"},
            "date": {"type": "string", "format": "date"},
            "passengers": {"type": "integer"},
            "note": {"type": "string"},
        },
        "required": ["harbor", "date"],
    },
)
CONVERT_TOOL = ToolDefinition(
    "convert_currency",
    "Convert an amount between currencies.",
    {
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "from": {"type": "string"},
            "to": {"type": "string"},
        },
    },
)
FEE_TOOL = ToolDefinition(
    "get_exchange_fee",
    "The fee for a currency pair.",
    {"type": "object", "properties": {"currency_pair": {"type": "string"}}},
)


@pytest.fixture
async def ratd(upstream: FakeOpenAIUpstream) -> AsyncIterator[ServiceClient]:
    """ratd with both providers on the fake, default policy and routing."""
    async with compat_client(upstream) as client:
        yield client


def assert_usage(usage: chat_pb2.Usage, numbers: dict[str, float], flavour: str) -> None:
    want = expected_usage(numbers)
    assert usage.prompt_tokens == want["prompt_tokens"]
    assert usage.completion_tokens == want["completion_tokens"]
    assert usage.total_tokens == want["total_tokens"]
    assert usage.HasField("reasoning_tokens") and usage.reasoning_tokens == want["reasoning_tokens"]
    assert (
        usage.HasField("cached_prompt_tokens")
        and usage.cached_prompt_tokens == want["cached_prompt_tokens"]
    )
    if flavour == "openrouter":
        assert usage.HasField("cost_usd") and usage.cost_usd == pytest.approx(want["cost_usd"])
    else:
        # OpenAI reports no cost: ratd prices the usage at the registry's prices of
        # gpt-4o-mini ($0.15 in, $0.60 out per million tokens).
        price = (want["prompt_tokens"] * 0.15 + want["completion_tokens"] * 0.60) / 1e6
        assert usage.HasField("cost_usd") and usage.cost_usd == pytest.approx(price)


def reply_model(flavour: str, model: str) -> str:
    return openai_snapshot(model) if flavour == "openai" else model


# -- replies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_chat_text(ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str) -> None:
    model = MODELS[flavour]
    reply = await ratd.chat("Who carries the messages?", model=model)

    assert reply.content == TEXT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert reply.provider == flavour
    assert reply.model == reply_model(flavour, model)
    assert not reply.tool_calls
    assert not reply.HasField("reasoning")
    assert_usage(reply.usage, TEXT_USAGE, flavour)

    sent = upstream.last(flavour)
    assert sent.method == "POST"
    assert sent.path == (
        "/v1/chat/completions" if flavour == "openai" else "/api/v1/chat/completions"
    )
    assert sent.headers["Authorization"] == f"Bearer {KEYS[flavour]}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json == {
        "model": model,
        "messages": [{"role": "user", "content": "Who carries the messages?"}],
    }


async def test_openrouter_gets_its_attribution_headers(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    await ratd.chat("hello", model=OPENROUTER_MODEL)
    sent = upstream.last("openrouter")
    assert sent.headers["X-Title"] == "Ratatoskr"
    assert sent.headers["HTTP-Referer"].startswith("https://")
    await ratd.chat("hello", model=OPENAI_MODEL)
    assert "X-Title" not in upstream.last("openai").headers


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_chat_length_finish(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    upstream.set_scenario("length")
    reply = await ratd.chat("Describe the nine worlds", model=MODELS[flavour], max_tokens=5)
    assert reply.content == LENGTH_TEXT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_LENGTH


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_chat_tool_call(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    upstream.set_scenario("tool-call")
    reply = await ratd.chat("When does the ferry leave?", [FERRY_TOOL], model=MODELS[flavour])

    expected = FERRY_CALL if flavour == "openai" else OPENROUTER_FERRY_CALL
    assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        (expected.id, expected.name, expected.arguments)
    ]
    assert ToolCall.parse_arguments(reply.tool_calls[0])["harbor"] == "Ålesund"
    # OpenAI sends content null with tool calls; OpenRouter's model said something first.
    assert reply.content == ("" if flavour == "openai" else PREAMBLE_TEXT)
    assert_usage(reply.usage, TOOL_USAGE, flavour)


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_chat_parallel_tool_calls(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    upstream.set_scenario("parallel-tool-calls")
    reply = await ratd.chat(
        "Convert 125.5 NOK and tell me the fee", [CONVERT_TOOL, FEE_TOOL], model=MODELS[flavour]
    )
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        (CONVERT_CALL.id, CONVERT_CALL.name, CONVERT_CALL.arguments),
        (FEE_CALL.id, FEE_CALL.name, FEE_CALL.arguments),
    ]
    assert_usage(reply.usage, PARALLEL_USAGE, flavour)


async def test_openrouter_chat_reasoning(ratd: ServiceClient, upstream: FakeOpenAIUpstream) -> None:
    upstream.set_scenario("reasoning")
    reply = await ratd.chat(
        "How many roots has the ash?", model=OPENROUTER_MODEL, reasoning_effort="high"
    )
    assert reply.reasoning == REASONING_TEXT
    assert reply.content == ANSWER_TEXT
    assert_usage(reply.usage, REASONING_USAGE, "openrouter")


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_refusal(ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str) -> None:
    """A refusal (OpenAI structured outputs) is the answer, whole or streamed: its text as
    content, and the finish reason says the content was filtered."""
    upstream.set_scenario("refusal")
    schema = {"type": "object", "properties": {"plan": {"type": "string"}}}
    reply = await ratd.chat("Plan a heist", model=MODELS[flavour], response_format=schema)
    assert reply.content == REFUSAL_TEXT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_CONTENT_FILTER

    events = await collect(ratd.chat_stream("Plan a heist", model=MODELS[flavour]))
    assert kinds(events) == ["content"] * len(REFUSAL_PIECES) + ["usage", "done"]
    assert joined(events, "content") == REFUSAL_TEXT
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_CONTENT_FILTER


async def test_openai_chat_reasoning_tokens(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("reasoning")
    reply = await ratd.chat(
        "How many roots has the ash?", model="gpt-6-luna", reasoning_effort="low"
    )
    assert reply.content == ANSWER_TEXT
    assert not reply.HasField("reasoning"), "OpenAI counts reasoning but never shows it"
    assert reply.usage.reasoning_tokens == 448
    assert reply.usage.cached_prompt_tokens == 1024
    assert upstream.last("openai").json["reasoning_effort"] == "low"


# -- streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_stream_text(ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str) -> None:
    model = MODELS[flavour]
    events = await collect(ratd.chat_stream("Who carries the messages?", model=model))

    assert kinds(events) == ["content"] * len(TEXT_PIECES) + ["usage", "done"]
    assert [e.content for e in events[: len(TEXT_PIECES)]] == list(TEXT_PIECES)
    assert_usage(events[-2].usage, TEXT_USAGE, flavour)
    done = events[-1]
    assert done.done
    assert done.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert done.model == reply_model(flavour, model)
    assert done.provider == flavour

    body = upstream.last(flavour).json
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_openai_stream_without_usage_chunk_still_finishes(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """raw_provider_options may turn include_usage off: no usage chunk, no Usage event."""
    events = await collect(
        ratd.chat_stream(
            "hi",
            model=OPENAI_MODEL,
            raw_provider_options={"stream_options": {"include_usage": False}},
        )
    )
    assert kinds(events) == ["content"] * len(TEXT_PIECES) + ["done"]
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_STOP


@pytest.mark.parametrize("write_size", [None, 1, 7, 64])
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_stream_tool_call_arguments_reassemble_exactly(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str, write_size: int | None
) -> None:
    """Arguments split across many chunks (and the bytes across many TCP writes) come out
    as the exact text the model wrote, non-ASCII and escapes included."""
    upstream.set_scenario("tool-call")
    upstream.write_size = write_size
    events = await collect(
        ratd.chat_stream("When does the ferry leave?", [FERRY_TOOL], model=MODELS[flavour])
    )

    expected = FERRY_CALL if flavour == "openai" else OPENROUTER_FERRY_CALL
    calls = ["tool_call_start"] + ["tool_call_delta"] * len(expected.pieces) + ["tool_call_end"]
    preamble = [] if flavour == "openai" else ["content"]
    assert kinds(events) == preamble + calls + ["usage", "done"]
    if flavour == "openrouter":
        assert events[0].content == PREAMBLE_TEXT
    start = events[len(preamble)].tool_call_start
    assert (start.index, start.id, start.name) == (0, expected.id, expected.name)
    assert tool_arguments(events) == {0: expected.arguments}
    assert len(expected.pieces) > 10
    assert events[-3].tool_call_end.index == 0
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    assert_usage(events[-2].usage, TOOL_USAGE, flavour)


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_stream_parallel_tool_calls(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    upstream.set_scenario("parallel-tool-calls")
    events = await collect(
        ratd.chat_stream(
            "Convert and tell me the fee",
            [CONVERT_TOOL, FEE_TOOL],
            model=MODELS[flavour],
            parallel_tool_calls=True,
        )
    )
    first = ["tool_call_start"] + ["tool_call_delta"] * len(CONVERT_CALL.pieces)
    second = ["tool_call_start"] + ["tool_call_delta"] * len(FEE_CALL.pieces)
    assert kinds(events) == first + second + ["tool_call_end", "tool_call_end", "usage", "done"]

    starts = [e.tool_call_start for e in events if e.WhichOneof("event") == "tool_call_start"]
    assert [(s.index, s.id, s.name) for s in starts] == [
        (0, CONVERT_CALL.id, CONVERT_CALL.name),
        (1, FEE_CALL.id, FEE_CALL.name),
    ]
    deltas = [e.tool_call_delta.index for e in events if e.WhichOneof("event") == "tool_call_delta"]
    assert deltas == [0] * len(CONVERT_CALL.pieces) + [1] * len(FEE_CALL.pieces)
    assert tool_arguments(events) == {0: CONVERT_CALL.arguments, 1: FEE_CALL.arguments}
    assert [e.tool_call_end.index for e in events if e.WhichOneof("event") == "tool_call_end"] == [
        0,
        1,
    ]
    assert_usage(events[-2].usage, PARALLEL_USAGE, flavour)
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    assert upstream.last(flavour).json["parallel_tool_calls"] is True


async def test_openrouter_stream_reasoning(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """Comment lines before and between events are skipped; reasoning comes before the
    answer; usage carries reasoning tokens, cached tokens and cost; then done."""
    upstream.set_scenario("reasoning")
    events = await collect(
        ratd.chat_stream("How many roots?", model=OPENROUTER_MODEL, reasoning_budget=2048)
    )

    assert kinds(events) == ["reasoning"] * len(REASONING_PIECES) + ["content"] * 7 + [
        "reasoning_block",
        "usage",
        "done",
    ]
    assert events[-3].reasoning_block == chat_pb2.ReasoningBlock(
        text=REASONING_TEXT, signature=REASONING_SIGNATURE, format="anthropic-claude-v1"
    )
    assert joined(events, "reasoning") == REASONING_TEXT
    assert joined(events, "content") == ANSWER_TEXT
    assert_usage(events[-2].usage, REASONING_USAGE, "openrouter")
    done = events[-1]
    assert (done.finish_reason, done.model, done.provider) == (
        chat_pb2.FINISH_REASON_STOP,
        OPENROUTER_MODEL,
        "openrouter",
    )
    assert upstream.last("openrouter").json["reasoning"] == {"max_tokens": 2048}


CLAUDE_DETAILS = [
    {
        "type": "reasoning.text",
        "text": REASONING_TEXT,
        "signature": REASONING_SIGNATURE,
        "format": "anthropic-claude-v1",
        "index": 0,
    }
]
OPENAI_DETAILS = [
    {
        "type": "reasoning.summary",
        "summary": REASONING_SUMMARY,
        "id": REASONING_ITEM_ID,
        "format": "openai-responses-v1",
        "index": 0,
    },
    {
        "type": "reasoning.encrypted",
        "data": ENCRYPTED_REASONING,
        "id": REASONING_ITEM_ID,
        "format": "openai-responses-v1",
        "index": 1,
    },
]


@pytest.mark.parametrize(
    ("scenario", "details"),
    [("reasoning", CLAUDE_DETAILS), ("encrypted-reasoning", OPENAI_DETAILS)],
)
async def test_openrouter_reasoning_details_go_back_unchanged(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, scenario: str, details: list[Any]
) -> None:
    """Signed (Claude) and encrypted (OpenAI) reasoning through OpenRouter becomes
    reasoning blocks, unary or streamed alike, and goes back as the same
    ``reasoning_details`` with the assistant's turn."""
    upstream.set_scenario(scenario)
    question = Message.user("Ferry from Ålesund?")
    reply = await ratd.chat([question], [FERRY_TOOL], model=OPENROUTER_MODEL, reasoning_budget=2048)
    assert reply.reasoning_blocks
    streamed = await ChatStreamCollector.collect(
        ratd.chat_stream([question], [FERRY_TOOL], model=OPENROUTER_MODEL, reasoning_budget=2048)
    )
    assert list(streamed.reasoning_blocks) == list(reply.reasoning_blocks)

    upstream.set_scenario("text")
    await ratd.chat(
        [question, Message.from_response(streamed), Message.user("And back?")],
        model=OPENROUTER_MODEL,
    )
    assert upstream.last("openrouter").json["messages"][1]["reasoning_details"] == details


async def test_reasoning_blocks_stay_out_of_an_openai_request(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """OpenAI's Chat Completions has no field for them (and refuses unknown ones)."""
    turn = Message.assistant(
        "Earlier.",
        reasoning_blocks=[
            chat_pb2.ReasoningBlock(text="thought", signature="sig-1", format="anthropic-claude-v1")
        ],
    )
    await ratd.chat([Message.user("q"), turn, Message.user("more")], model=OPENAI_MODEL)
    assert "reasoning_details" not in upstream.last("openai").json["messages"][1]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_generate_and_generate_stream(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    model = MODELS[flavour]
    reply = await ratd.generate(
        "Tell me about the squirrel", model=model, max_tokens=64, stop=["\n\n"], temperature=0.2
    )
    assert reply.text == TEXT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert reply.provider == flavour
    assert reply.usage.total_tokens == expected_usage(TEXT_USAGE)["total_tokens"]
    body = upstream.last(flavour).json
    assert body["messages"] == [{"role": "user", "content": "Tell me about the squirrel"}]
    assert body["stop"] == ["\n\n"]
    assert body["temperature"] == 0.2
    assert body["max_completion_tokens" if flavour == "openai" else "max_tokens"] == 64

    events = await collect(ratd.generate_stream("Tell me about the squirrel", model=model))
    assert kinds(events) == ["text"] * len(TEXT_PIECES) + ["usage", "done"]
    assert joined(events, "text") == TEXT
    assert (events[-1].finish_reason, events[-1].provider) == (chat_pb2.FINISH_REASON_STOP, flavour)


async def test_openrouter_generate_stream_reasoning(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("reasoning")
    events = await collect(
        ratd.generate_stream("How many roots?", model=OPENROUTER_MODEL, reasoning_effort="medium")
    )
    assert joined(events, "reasoning") == REASONING_TEXT
    assert joined(events, "text") == ANSWER_TEXT
    assert kinds(events).index("text") > kinds(events).index("reasoning")
    assert upstream.last("openrouter").json["reasoning"] == {"effort": "medium"}


# -- options as each API takes them ---------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_sampling_options(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    await ratd.chat(
        "hi",
        model=MODELS[flavour],
        temperature=0.7,
        top_p=0.9,
        max_tokens=256,
        stop=["END", "\n\n"],
        frequency_penalty=0.5,
        presence_penalty=-0.25,
        seed=4242,
    )
    body = upstream.last(flavour).json
    assert body["temperature"] == 0.7  # float32 on the wire, sent as the decimal the caller wrote
    assert body["top_p"] == 0.9
    assert body["stop"] == ["END", "\n\n"]
    assert body["frequency_penalty"] == 0.5
    assert body["presence_penalty"] == -0.25
    assert body["seed"] == 4242
    if flavour == "openai":
        assert body["max_completion_tokens"] == 256
        assert "max_tokens" not in body
    else:
        assert body["max_tokens"] == 256
        assert "max_completion_tokens" not in body


async def test_top_k_goes_to_openrouter(ratd: ServiceClient, upstream: FakeOpenAIUpstream) -> None:
    await ratd.chat("hi", model=OPENROUTER_MODEL, top_k=40)
    assert upstream.last("openrouter").json["top_k"] == 40


async def test_top_k_is_dropped_for_openai_with_a_warning(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenAI answers 400 to top_k (the fake does too): under the default policy ratd
    drops it, says so once in its log, and the call succeeds."""
    with caplog.at_level(logging.WARNING, logger="ratd"):
        reply = await ratd.chat("hi", model=OPENAI_MODEL, top_k=40, temperature=0.3)
        await ratd.chat("again", model=OPENAI_MODEL, top_k=40)
    assert reply.content == TEXT
    bodies = [r.json for r in upstream.requests_to("openai")]
    assert all("top_k" not in body for body in bodies)
    assert bodies[0]["temperature"] == 0.3
    warnings = [r.getMessage() for r in caplog.records if "top_k" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "openai" in warnings[0] and OPENAI_MODEL in warnings[0]


async def test_generate_top_k_follows_the_same_rules(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    await ratd.generate("hi", model=OPENAI_MODEL, top_k=12)
    await ratd.generate("hi", model=OPENROUTER_MODEL, top_k=12)
    assert "top_k" not in upstream.last("openai").json
    assert upstream.last("openrouter").json["top_k"] == 12


async def test_top_k_is_refused_for_openai_under_the_error_policy(
    upstream: FakeOpenAIUpstream,
) -> None:
    async with compat_client(upstream, policy="error") as client:
        for call in (
            client.chat("hi", model=f"openai:{OPENAI_MODEL}", top_k=40),
            collect(client.chat_stream("hi", model=f"openai:{OPENAI_MODEL}", top_k=40)),
        ):
            with pytest.raises(UnsupportedParameter) as caught:
                await call
            err = caught.value
            assert err.code.name == "INVALID_ARGUMENT"
            assert err.reason == "UNSUPPORTED_PARAMETER"
            assert err.parameter == "top_k"
            assert err.field == "options.top_k"
            assert err.provider == "openai"
        # OpenRouter takes top_k, so the same policy lets it through there.
        reply = await client.chat("hi", model=OPENROUTER_MODEL, top_k=40)
        assert reply.provider == "openrouter"
    assert upstream.requests_to("openai") == []
    assert upstream.last("openrouter").json["top_k"] == 40


async def test_error_policy_falls_back_to_a_provider_that_takes_the_parameter(
    upstream: FakeOpenAIUpstream,
) -> None:
    """UnsupportedParameter lets the chain move on: unary and streaming alike."""
    async with compat_client(upstream, policy="error", chain=["openai", "openrouter"]) as client:
        reply = await client.chat("hi", model=OPENAI_MODEL, top_k=40)
        events = await collect(client.chat_stream("hi", model=OPENAI_MODEL, top_k=40))
    assert reply.provider == "openrouter"
    assert events[-1].provider == "openrouter"
    assert upstream.requests_to("openai") == []
    sent = upstream.requests_to("openrouter")
    assert [r.json["model"] for r in sent] == ["openai/gpt-4o-mini"] * 2
    assert all(r.json["top_k"] == 40 for r in sent)


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            "lookup_ferry_schedule",
            {"type": "function", "function": {"name": "lookup_ferry_schedule"}},
        ),
    ],
)
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_tools_and_tool_choice(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str, choice: str, wire: object
) -> None:
    await ratd.chat(
        "ferry?",
        [FERRY_TOOL, FEE_TOOL],
        model=MODELS[flavour],
        tool_choice=choice,
        parallel_tool_calls=False,
    )
    body = upstream.last(flavour).json
    assert body["tool_choice"] == wire
    assert body["parallel_tool_calls"] is False
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup_ferry_schedule",
                "description": "Departures between two harbors on a date.",
                "parameters": json.loads(FERRY_TOOL.parameters_json),
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_exchange_fee",
                "description": "The fee for a currency pair.",
                "parameters": json.loads(FEE_TOOL.parameters_json),
            },
        },
    ]


@pytest.mark.parametrize("choice", ["auto", "none"])
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_tool_choice_without_tools_is_not_sent(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str, choice: str
) -> None:
    """OpenAI answers 400 to tool_choice without tools (the fake does too)."""
    reply = await ratd.chat("hi", model=MODELS[flavour], tool_choice=choice)
    assert reply.content == TEXT
    assert "tool_choice" not in upstream.last(flavour).json


async def test_no_tool_fields_without_tools(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    await ratd.chat("hi", model=OPENAI_MODEL, parallel_tool_calls=True)
    body = upstream.last("openai").json
    assert "tools" not in body and "parallel_tool_calls" not in body and "tool_choice" not in body


SCHEMA = {
    "type": "object",
    "properties": {"roots": {"type": "integer"}},
    "required": ["roots"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("response_format", "wire"),
    [
        ("text", {"type": "text"}),
        ("json_object", {"type": "json_object"}),
        (SCHEMA, {"type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA}}),
        (
            {"name": "root_count", "strict": True, "schema": SCHEMA},
            {
                "type": "json_schema",
                "json_schema": {"name": "root_count", "schema": SCHEMA, "strict": True},
            },
        ),
    ],
    ids=["text", "json_object", "bare-schema", "named-strict-schema"],
)
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_response_format(
    ratd: ServiceClient,
    upstream: FakeOpenAIUpstream,
    flavour: str,
    response_format: object,
    wire: object,
) -> None:
    await ratd.chat("How many roots?", model=MODELS[flavour], response_format=response_format)
    assert upstream.last(flavour).json["response_format"] == wire


@pytest.mark.parametrize(
    ("kwargs", "openai_wire", "openrouter_wire"),
    [
        (
            {"reasoning_effort": "high"},
            {"reasoning_effort": "high"},
            {"reasoning": {"effort": "high"}},
        ),
        (
            {"reasoning_effort": "minimal"},
            {"reasoning_effort": "minimal"},
            {"reasoning": {"effort": "minimal"}},
        ),
        (
            {"reasoning_effort": "low", "exclude_reasoning": True},
            {"reasoning_effort": "low"},
            {"reasoning": {"effort": "low", "exclude": True}},
        ),
        ({"reasoning_budget": 4096}, {}, {"reasoning": {"max_tokens": 4096}}),
        ({"exclude_reasoning": False}, {}, {"reasoning": {"exclude": False}}),
    ],
    ids=["effort", "minimal", "effort-exclude", "budget", "exclude-only"],
)
async def test_reasoning_options(
    ratd: ServiceClient,
    upstream: FakeOpenAIUpstream,
    kwargs: dict[str, object],
    openai_wire: dict[str, object],
    openrouter_wire: dict[str, object],
) -> None:
    await ratd.chat("think", model="gpt-6-luna", **kwargs)
    await ratd.chat("think", model=OPENROUTER_MODEL, **kwargs)
    openai_body = upstream.last("openai").json
    openrouter_body = upstream.last("openrouter").json
    assert {k: v for k, v in openai_body.items() if k.startswith("reasoning")} == openai_wire
    assert {
        k: v for k, v in openrouter_body.items() if k.startswith("reasoning")
    } == openrouter_wire


@pytest.mark.parametrize(
    ("flavour", "raw"),
    [
        ("openai", {"user": "squirrel-7", "service_tier": "flex", "logit_bias": {"1734": -100}}),
        (
            "openrouter",
            {
                "provider": {"order": ["Fjordline"], "allow_fallbacks": False},
                "transforms": ["middle-out"],
            },
        ),
    ],
)
async def test_raw_provider_options_are_merged_into_the_body(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str, raw: dict[str, object]
) -> None:
    await ratd.chat("hi", model=MODELS[flavour], temperature=0.5, raw_provider_options=raw)
    body = upstream.last(flavour).json
    assert {k: body[k] for k in raw} == raw
    assert body["temperature"] == 0.5
    assert body["model"] == MODELS[flavour]


async def test_raw_provider_options_override_mapped_fields(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """The escape hatch wins: what the caller wrote raw is what the provider gets."""
    await ratd.chat(
        "hi", model=OPENROUTER_MODEL, temperature=0.5, raw_provider_options={"temperature": 1.25}
    )
    assert upstream.last("openrouter").json["temperature"] == 1.25


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_messages_images_and_tool_turns(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    call = chat_pb2.ToolCall(
        id="call_prev_1", name="lookup_ferry_schedule", arguments='{"harbor":"Bergen"}'
    )
    photo = chat_pb2.ContentPart(
        image=chat_pb2.ImagePart(url="https://example.org/ash.jpg", detail="low")
    )
    inline = chat_pb2.ContentPart(image=chat_pb2.ImagePart(data=PNG, mime_type="image/png"))
    messages = [
        Message.system("You are a helpful squirrel."),
        chat_pb2.Message(
            role=chat_pb2.ROLE_USER,
            content="What tree is this?",
            parts=[photo, inline],
            name="odin",
        ),
        Message.assistant(tool_calls=[call]),
        Message.tool("call_prev_1", {"departures": ["08:15", "12:40"]}),
    ]
    await ratd.chat(messages, [FERRY_TOOL], model=MODELS[flavour])
    wire = upstream.last(flavour).json["messages"]
    assert wire == [
        {"role": "system", "content": "You are a helpful squirrel."},
        {
            "role": "user",
            "name": "odin",
            "content": [
                {"type": "text", "text": "What tree is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.org/ash.jpg", "detail": "low"},
                },
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_prev_1",
                    "type": "function",
                    "function": {
                        "name": "lookup_ferry_schedule",
                        "arguments": '{"harbor":"Bergen"}',
                    },
                }
            ],
        },
        {
            "role": "tool",
            "content": '{"departures": ["08:15", "12:40"]}',
            "tool_call_id": "call_prev_1",
        },
    ]


async def test_chat_options_message_and_keywords_combine(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    options = ChatOptions(OPENROUTER_MODEL, temperature=0.1, seed=7)
    await ratd.chat("hi", options=options, temperature=0.9)
    body = upstream.last("openrouter").json
    assert (body["temperature"], body["seed"]) == (0.9, 7)


# -- embeddings and model lists --------------------------------------------------------------------


async def test_embed(ratd: ServiceClient, upstream: FakeOpenAIUpstream) -> None:
    reply = await ratd.embed("the world tree", model="text-embedding-3-small")
    assert reply.dimensions == 1536
    assert reply.model == "text-embedding-3-small"
    assert list(reply.values) == fake_embedding("the world tree", 1536)
    sent = upstream.last("openai", "/embeddings")
    assert sent.path == "/v1/embeddings"
    assert sent.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.json == {
        "model": "text-embedding-3-small",
        "input": ["the world tree"],
        "encoding_format": "base64",
    }


async def test_embed_batch_keeps_order(ratd: ServiceClient, upstream: FakeOpenAIUpstream) -> None:
    texts = ["ash", "eagle", "Níðhöggr", "a much longer sentence about the squirrel"]
    embeddings = await ratd.embed_batch(texts, model="text-embedding-3-large")
    assert [len(e.values) for e in embeddings] == [3072] * 4
    for text, embedding in zip(texts, embeddings, strict=True):
        assert list(embedding.values) == fake_embedding(text, 3072)
        assert embedding.dimensions == 3072
    assert upstream.last("openai", "/embeddings").json["input"] == texts


async def test_provider_model_lists(upstream: FakeOpenAIUpstream) -> None:
    """The registry's source: each provider asks its own /models (real HTTP, real provider code)."""
    openai = OpenAIProvider(
        "openai",
        ProviderConfig(kind="openai", base_url=upstream.base_url_openai),
        Secret(OPENAI_KEY),
    )
    openrouter = OpenRouterProvider(
        "openrouter",
        ProviderConfig(kind="openrouter", base_url=upstream.base_url_openrouter),
        Secret(OPENROUTER_KEY),
    )
    try:
        openai_models = await openai.list_models()
        openrouter_models = await openrouter.list_models()
    finally:
        await openai.close()
        await openrouter.close()
    assert [m.id for m in openai_models] == ["gpt-4o-mini", "o4-mini", "text-embedding-3-small"]
    assert {m.provider for m in openai_models} == {"openai"}
    assert [m.id for m in openrouter_models] == ["yggdrasil/ash-3-mini", "openai/gpt-4o-mini"]
    assert upstream.last("openai", "/models").method == "GET"
    assert (
        upstream.last("openrouter", "/models").headers["Authorization"]
        == f"Bearer {OPENROUTER_KEY}"
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_one_pooled_connection_serves_sequential_calls(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    """Streams read to [DONE] and whole replies both hand the connection back to the pool."""
    for _ in range(3):
        await collect(ratd.chat_stream("hi", model=MODELS[flavour]))
        await ratd.chat("hi", model=MODELS[flavour])
    peers = {r.peer for r in upstream.requests_to(flavour)}
    assert len(upstream.requests_to(flavour)) == 6
    assert len(peers) == 1, peers


async def test_generic_openai_compatible_server_gets_max_tokens(
    upstream: FakeOpenAIUpstream,
) -> None:
    """kind = "openai_compatible" (vLLM, llama.cpp, LM Studio...): the output cap travels
    as max_tokens, which those servers read (llama.cpp ignores max_completion_tokens and
    generated 2,028 tokens when asked for 4)."""
    text = f"""
[providers.llama]
kind = "openai_compatible"
base_url = "{upstream.base_url_openai}"
api_key_env = "LLAMA_KEY"
"""
    config = make_config(text, env={"LLAMA_KEY": OPENAI_KEY})
    async with daemon_client(config) as client:
        options = ChatOptions(max_tokens=4)
        reply = await client.chat("hi", model=f"llama:{OPENAI_MODEL}", options=options)
    assert reply.provider == "llama"
    sent = upstream.last("openai", "/chat/completions").json
    assert sent["max_tokens"] == 4 and "max_completion_tokens" not in sent


async def test_a_provider_declared_by_one_table_line_serves_chat(
    upstream: FakeOpenAIUpstream,
) -> None:
    """Groq is one ProviderSpec line: its key comes from GROQ_API_KEY and travels as a
    bearer token to its base_url, and the output cap as max_tokens."""
    text = f'[providers.groq]\nbase_url = "{upstream.base_url_openai}"\n'
    async with daemon_client(make_config(text, env={"GROQ_API_KEY": OPENAI_KEY})) as client:
        reply = await client.chat(
            "hi", model=f"groq:{OPENAI_MODEL}", options=ChatOptions(max_tokens=8)
        )
    assert reply.provider == "groq" and reply.content
    request = upstream.last("openai", "/chat/completions")
    assert request.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.json["max_tokens"] == 8
