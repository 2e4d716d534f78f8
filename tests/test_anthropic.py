"""The Anthropic provider through a real in-process ratd, over real HTTP to the fake
Messages API: request bodies as sent, plain and streamed answers, tools, thinking with
signatures across turns, images, structured output, usage, and every error class."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ratatoskr import (
    AuthenticationFailed,
    ChatStreamCollector,
    ContextLengthExceeded,
    InvalidInput,
    Message,
    ModelNotAvailable,
    QuotaExceeded,
    RateLimited,
    ServiceClient,
    ToolCall,
    ToolDefinition,
    UnsupportedParameter,
    chat_pb2,
)
from ratd.config import ProviderConfig
from ratd.providers import anthropic as anthropic_provider
from ratd.providers.anthropic import AnthropicProvider, RequestPlan
from ratd.providers.streams import SseDecoder
from ratd.secrets import Secret
from tests.fakes import anthropic_upstream as fa
from tests.fakes import conformance as conf
from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.support.chat_events import (
    collect,
    conformance_events,
    joined,
    normalise,
    usage_dict,
    without_ids,
)
from tests.support.daemon import daemon_client, make_config

KEY = "sk-ant-api03-test-4f1d9c0b7a6e5d4c3b2a1f0e"
WEATHER = ToolDefinition(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
FERRY = ToolDefinition(
    "lookup_ferry",
    "Ferry departures",
    {"type": "object", "properties": {"harbor": {"type": "string"}}},
    cache_control={"type": "ephemeral"},
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01test-pixels"


def config_text(fake: FakeAnthropicUpstream, extra: str = "", policy: str = "warn") -> str:
    return f"""
[providers.anthropic]
base_url = "{fake.base_url}"
{extra}
[validation]
parameter_policy = "{policy}"
"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropicUpstream]:
    async with FakeAnthropicUpstream(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture
async def client(fake: FakeAnthropicUpstream) -> AsyncIterator[ServiceClient]:
    config = make_config(config_text(fake), env={"ANTHROPIC_API_KEY": KEY})
    async with daemon_client(config) as c:
        yield c


def sent(fake: FakeAnthropicUpstream) -> dict[str, Any]:
    body = fake.last("/v1/messages").json
    assert isinstance(body, dict)
    return body


# -- plain text ---------------------------------------------------------------------------------


async def test_text_request_and_response(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    messages = [
        Message.system("You are Ratatoskr."),
        Message.user("Who carries the messages?"),
        Message.system("Answer in one sentence."),
    ]
    reply = await client.chat(
        messages,
        model="claude-sonnet-4-5",
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stop=["###"],
        max_tokens=300,
    )
    assert reply.content == fa.ANSWER
    assert reply.model == fa.MODEL_SNAPSHOT
    assert reply.provider == "anthropic"
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert not reply.HasField("reasoning")
    assert usage_dict(reply.usage) == fa.expected_usage(fa.Usage(31, 14))

    request = fake.last("/v1/messages")
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in request.headers
    assert request.json == {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Who carries the messages?"}]}
        ],
        # Several system messages are all kept, in order.
        "system": [
            {"type": "text", "text": "You are Ratatoskr."},
            {"type": "text", "text": "Answer in one sentence."},
        ],
        "max_tokens": 300,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["###"],
    }


async def test_default_max_tokens(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    await client.chat("hi", model="claude-sonnet-4-5")
    assert sent(fake)["max_tokens"] == 4096


async def test_default_max_tokens_from_config(fake: FakeAnthropicUpstream) -> None:
    config = make_config(
        config_text(fake, "default_max_tokens = 1000"), env={"ANTHROPIC_API_KEY": KEY}
    )
    async with daemon_client(config) as client:
        await client.chat("hi", model="claude-sonnet-4-5")
    assert sent(fake)["max_tokens"] == 1000


async def test_stream_text(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    events = await collect(client.chat_stream("hi", model="claude-sonnet-4-5", max_tokens=50))
    assert normalise(events) == [
        *(("content", p) for p in fa.ANSWER_PIECES),
        ("usage", fa.expected_usage(fa.Usage(31, 14))),
        ("done", "FINISH_REASON_STOP", fa.MODEL_SNAPSHOT, "anthropic"),
    ]
    assert sent(fake)["stream"] is True


@pytest.mark.parametrize("write_size", [1, 7, 64])
async def test_stream_split_across_reads(write_size: int) -> None:
    """Events that straddle network reads (down to one byte a read) decode the same."""
    async with FakeAnthropicUpstream(api_key=KEY, write_size=write_size) as fake:
        config = make_config(config_text(fake), env={"ANTHROPIC_API_KEY": KEY})
        async with daemon_client(config) as client:
            events = await collect(client.chat_stream("hi", model="anthropic:conf-reasoning"))
    usage = fa.expected_usage(fa.CONF_USAGE)
    expected = conformance_events(
        "conf-reasoning", provider="anthropic", model="conf-reasoning", usage=usage
    )
    assert normalise(events) == expected


async def test_raw_provider_options_merged_last(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    await client.chat(
        "hi", model="claude-sonnet-4-5", raw_provider_options={"metadata": {"user_id": "u-42"}}
    )
    assert sent(fake)["metadata"] == {"user_id": "u-42"}


async def test_unsupported_parameters_dropped_under_warn(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    await client.chat("hi", model="claude-sonnet-4-5", frequency_penalty=0.5, seed=7)
    body = sent(fake)
    assert "frequency_penalty" not in body and "seed" not in body


async def test_unsupported_parameter_refused_under_error_policy(
    fake: FakeAnthropicUpstream,
) -> None:
    config = make_config(config_text(fake, policy="error"), env={"ANTHROPIC_API_KEY": KEY})
    async with daemon_client(config) as client:
        with pytest.raises(UnsupportedParameter) as caught:
            await client.chat("hi", model="claude-sonnet-4-5", presence_penalty=0.5)
    assert caught.value.field == "options.presence_penalty"
    assert not fake.requests_to("/v1/messages")


# -- conformance --------------------------------------------------------------------------------

SUCCESS_SCENARIOS = ("conf-text", "conf-tool", "conf-parallel", "conf-reasoning")


@pytest.mark.parametrize("scenario", SUCCESS_SCENARIOS)
async def test_conformance_stream(client: ServiceClient, scenario: str) -> None:
    events = await collect(client.chat_stream("hi", model=f"anthropic:{scenario}", tools=[WEATHER]))
    usage = fa.expected_usage(fa.CONF_USAGE)
    expected = conformance_events(scenario, provider="anthropic", model=scenario, usage=usage)
    assert without_ids(normalise(events)) == without_ids(expected)
    starts = [e.tool_call_start for e in events if e.WhichOneof("event") == "tool_call_start"]
    assert [s.id for s in starts] == [fa.WEATHER_ID, fa.TIME_ID][: len(starts)]
    if scenario == "conf-tool":  # the argument text arrives in the pieces the API sent
        pieces = [
            e.tool_call_delta.arguments
            for e in events
            if e.WhichOneof("event") == "tool_call_delta"
        ]
        assert pieces == list(conf.WEATHER_ARGS_PIECES)


@pytest.mark.parametrize("scenario", SUCCESS_SCENARIOS)
async def test_conformance_chat(client: ServiceClient, scenario: str) -> None:
    reply = await client.chat("hi", model=f"anthropic:{scenario}", tools=[WEATHER])
    assert usage_dict(reply.usage) == {
        "prompt_tokens": conf.PROMPT_TOKENS,
        "completion_tokens": conf.COMPLETION_TOKENS,
        "total_tokens": conf.PROMPT_TOKENS + conf.COMPLETION_TOKENS,
        "cached_prompt_tokens": conf.CACHED_PROMPT_TOKENS,
        "cache_creation_tokens": 0,
    }
    assert reply.provider == "anthropic" and reply.model == scenario
    if scenario in ("conf-text", "conf-reasoning"):
        assert reply.content == conf.TEXT
        assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    if scenario == "conf-reasoning":
        assert reply.reasoning == conf.REASONING
        assert [(b.text, b.signature) for b in reply.reasoning_blocks] == [
            (conf.REASONING, conf.REASONING_SIGNATURE)
        ]
    if scenario in ("conf-tool", "conf-parallel"):
        assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
        calls = conf.TOOL_CALLS[:1] if scenario == "conf-tool" else conf.TOOL_CALLS
        assert [(c.name, c.arguments) for c in reply.tool_calls] == list(calls)
        assert [c.id for c in reply.tool_calls] == [fa.WEATHER_ID, fa.TIME_ID][: len(calls)]


# -- tools --------------------------------------------------------------------------------------


async def test_tool_call_after_text(client: ServiceClient) -> None:
    reply = await client.chat("ferry?", model="anthropic:tool-after-text", tools=[FERRY])
    assert reply.content == fa.PREAMBLE
    assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    (call,) = reply.tool_calls
    assert (call.id, call.name) == (fa.FERRY_ID, fa.FERRY_NAME)
    assert json.loads(call.arguments) == json.loads(fa.FERRY_JSON)


async def test_stream_tool_call_arguments_exact(client: ServiceClient) -> None:
    events = await collect(
        client.chat_stream("ferry?", model="anthropic:tool-after-text", tools=[FERRY])
    )
    assert normalise(events) == [
        ("content", fa.PREAMBLE),
        ("tool_start", 0, fa.FERRY_ID, fa.FERRY_NAME),
        ("tool_delta", 0, fa.FERRY_JSON),  # byte for byte what the model wrote
        ("tool_end", 0),
        ("usage", fa.expected_usage(fa.Usage(412, 77))),
        ("done", "FINISH_REASON_TOOL_CALLS", "tool-after-text", "anthropic"),
    ]
    pieces = [
        e.tool_call_delta.arguments for e in events if e.WhichOneof("event") == "tool_call_delta"
    ]
    assert pieces == list(fa.FERRY_PIECES)


async def test_tool_call_without_arguments(client: ServiceClient) -> None:
    tide = ToolDefinition("get_tide")
    reply = await client.chat("tide?", model="anthropic:tool-no-arguments", tools=[tide])
    assert reply.tool_calls[0].arguments == "{}"
    events = await collect(
        client.chat_stream("tide?", model="anthropic:tool-no-arguments", tools=[tide])
    )
    assert [e for e in normalise(events) if e[0] == "tool_delta"] == [("tool_delta", 0, "{}")]


async def test_tool_round_trip_history(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    calls = [
        chat_pb2.ToolCall(id="toolu_A", name="get_weather", arguments='{"city":"Oslo"}'),
        chat_pb2.ToolCall(id="toolu_B", name="get_weather", arguments=""),
    ]
    history = [
        Message.system("Be brief."),
        Message.user("Weather in Oslo and Bergen?"),
        Message.assistant("Checking both.", tool_calls=calls),
        Message.tool("toolu_A", {"temp": 14}),
        Message.tool("toolu_B", "rain"),
        Message.user("And tomorrow?"),
    ]
    await client.chat(
        history,
        tools=[WEATHER, FERRY],
        model="claude-sonnet-4-5",
        tool_choice="required",
        parallel_tool_calls=False,
    )
    body = sent(fake)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and Bergen?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {
                    "type": "tool_use",
                    "id": "toolu_A",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                {"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {}},
            ],
        },
        {
            # Both results in one user turn, results first, then the user's next words.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_A", "content": '{"temp": 14}'},
                {"type": "tool_result", "tool_use_id": "toolu_B", "content": "rain"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
        {
            "name": "lookup_ferry",
            "description": "Ferry departures",
            "input_schema": {"type": "object", "properties": {"harbor": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
        },
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
async def test_tool_choice(
    client: ServiceClient, fake: FakeAnthropicUpstream, choice: str, wire: dict[str, str]
) -> None:
    await client.chat("hi", tools=[WEATHER], model="claude-sonnet-4-5", tool_choice=choice)
    assert sent(fake)["tool_choice"] == wire


async def test_tool_result_with_image(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    call = chat_pb2.ToolCall(id="toolu_C", name="get_weather", arguments="{}")
    result = Message.tool("toolu_C", "see chart")
    result.parts.add(image=chat_pb2.ImagePart(data=PNG, mime_type="image/png"))
    await client.chat(
        [Message.user("chart?"), Message.assistant(tool_calls=[call]), result],
        tools=[WEATHER],
        model="claude-sonnet-4-5",
    )
    (block,) = sent(fake)["messages"][2]["content"]
    assert block["content"] == [
        {"type": "text", "text": "see chart"},
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG).decode(),
            },
        },
    ]


# -- thinking -----------------------------------------------------------------------------------


async def test_thinking_request_from_effort(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    options: dict[str, Any] = {"temperature": 0.2, "top_k": 5, "top_p": 0.5}
    await client.chat("hi", model="anthropic:thinking", reasoning_effort="high", **options)
    body = sent(fake)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert body["max_tokens"] == 4096 + 16384
    # The API refuses these alongside thinking, so they are left out.
    assert not {"temperature", "top_k", "top_p"} & set(body)
    await client.chat("hi", model="anthropic:thinking", reasoning_effort="high", top_p=0.97)
    assert sent(fake)["top_p"] == 0.97


@pytest.mark.parametrize(
    "case",
    [(2000, 10000, 2000, 10000), (20000, 8000, 7999, 8000), (100, None, 1024, 4096 + 1024)],
    ids=["within", "clamped below max_tokens", "raised to the minimum"],
)
async def test_thinking_budget(
    client: ServiceClient, fake: FakeAnthropicUpstream, case: tuple[int, int | None, int, int]
) -> None:
    budget, max_tokens, wire_budget, wire_max = case
    await client.chat(
        "hi", model="anthropic:thinking", reasoning_budget=budget, max_tokens=max_tokens
    )
    body = sent(fake)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": wire_budget}
    assert body["max_tokens"] == wire_max


async def test_thinking_needs_room(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.chat("hi", model="anthropic:thinking", reasoning_effort="low", max_tokens=500)
    assert caught.value.field == "options.max_tokens"
    assert not fake.requests_to("/v1/messages")


async def test_thinking_off(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    await client.chat("hi", model="claude-sonnet-4-5", reasoning_effort="none", temperature=0.2)
    body = sent(fake)
    assert body["thinking"] == {"type": "disabled"}
    assert body["temperature"] == 0.2


async def test_thinking_response(client: ServiceClient) -> None:
    reply = await client.chat("hi", model="anthropic:thinking", reasoning_effort="low")
    assert reply.reasoning == fa.THINKING
    assert reply.content == fa.ANSWER
    assert [(b.text, b.signature) for b in reply.reasoning_blocks] == [
        (fa.THINKING, fa.THINKING_SIGNATURE)
    ]


async def test_thinking_stream(client: ServiceClient) -> None:
    events = await collect(
        client.chat_stream("hi", model="anthropic:thinking", reasoning_effort="low")
    )
    assert normalise(events)[:-2] == [
        *(("reasoning", p) for p in fa.THINKING_PIECES),
        ("signature", fa.THINKING_SIGNATURE),
        ("block", fa.THINKING, fa.THINKING_SIGNATURE, b""),
        *(("content", p) for p in fa.ANSWER_PIECES),
    ]


async def test_two_thinking_blocks(client: ServiceClient) -> None:
    reply = await client.chat("hi", model="anthropic:two-thinking-blocks", reasoning_effort="low")
    first, second = "".join(fa.THINKING_PIECES[:2]), "".join(fa.THINKING_PIECES[2:])
    assert reply.reasoning == f"{first}\n\n{second}"
    assert reply.content == fa.PREAMBLE + fa.ANSWER
    assert [(b.text, b.signature) for b in reply.reasoning_blocks] == [
        (first, fa.THINKING_SIGNATURE),
        (second, fa.SECOND_SIGNATURE),
    ]
    events = await collect(
        client.chat_stream("hi", model="anthropic:two-thinking-blocks", reasoning_effort="low")
    )
    assert joined(events, "reasoning") == reply.reasoning
    assert [e[0] for e in normalise(events)][:10] == [
        "reasoning",
        "reasoning",
        "signature",
        "block",
        "content",
        "reasoning",
        "reasoning",
        "reasoning",
        "signature",
        "block",
    ]
    # Each block whole and exact (no joining blank line): as Chat answers them.
    assert [e.reasoning_block for e in events if e.HasField("reasoning_block")] == list(
        reply.reasoning_blocks
    )


async def test_redacted_thinking_kept(client: ServiceClient) -> None:
    reply = await client.chat("hi", model="anthropic:redacted-thinking", reasoning_effort="low")
    assert [(b.signature, b.redacted_data) for b in reply.reasoning_blocks] == [
        (fa.THINKING_SIGNATURE, b""),
        ("", fa.REDACTED_DATA.encode()),
    ]
    assert reply.reasoning == fa.THINKING
    streamed = await ChatStreamCollector.collect(
        client.chat_stream("hi", model="anthropic:redacted-thinking", reasoning_effort="low")
    )
    assert list(streamed.reasoning_blocks) == list(reply.reasoning_blocks)


async def test_reasoning_excluded_from_output(client: ServiceClient) -> None:
    reply = await client.chat(
        "hi", model="anthropic:thinking", reasoning_effort="low", exclude_reasoning=True
    )
    assert not reply.HasField("reasoning")
    assert reply.reasoning_blocks[0].signature == fa.THINKING_SIGNATURE  # still there to send back
    events = await collect(
        client.chat_stream(
            "hi", model="anthropic:thinking", reasoning_effort="low", exclude_reasoning=True
        )
    )
    # No reasoning text, but the signed block still comes, to send back (as with Chat).
    assert {e[0] for e in normalise(events)} == {"content", "block", "usage", "done"}
    assert [e.reasoning_block for e in events if e.HasField("reasoning_block")] == list(
        reply.reasoning_blocks
    )


def without_arguments(reply: chat_pb2.ChatResponse) -> chat_pb2.ChatResponse:
    copy = chat_pb2.ChatResponse()
    copy.CopyFrom(reply)
    for call in copy.tool_calls:
        call.ClearField("arguments")
    return copy


async def test_thinking_tool_use_second_turn(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    """A thinking turn that called a tool continues: its signed thinking goes back first."""
    question = Message.user("Ferry from Ålesund?")
    first = await client.chat(
        [question], tools=[FERRY], model="anthropic:thinking-tool", reasoning_effort="low"
    )
    assert first.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    result = Message.tool(first.tool_calls[0].id, {"departures": ["09:15"]})
    second = await client.chat(
        [question, Message.from_response(first), result],
        tools=[FERRY],
        model="anthropic:thinking",
        reasoning_effort="low",
    )
    assert second.content == fa.ANSWER
    turn = sent(fake)["messages"][1]
    assert turn["role"] == "assistant"
    assert turn["content"] == [
        {"type": "thinking", "thinking": fa.THINKING, "signature": fa.THINKING_SIGNATURE},
        {
            "type": "tool_use",
            "id": fa.FERRY_ID,
            "name": fa.FERRY_NAME,
            "input": json.loads(fa.FERRY_JSON),
        },
    ]

    # The same turn streamed and collected goes back exactly the same.
    streamed = await ChatStreamCollector.collect(
        client.chat_stream(
            [question], tools=[FERRY], model="anthropic:thinking-tool", reasoning_effort="low"
        )
    )
    # (Arguments as streamed keep the upstream's spacing; Chat re-serialises the object.)
    assert [ToolCall.parse_arguments(c) for c in streamed.tool_calls] == [
        ToolCall.parse_arguments(c) for c in first.tool_calls
    ]
    assert without_arguments(streamed) == without_arguments(first)
    await client.chat(
        [question, Message.from_response(streamed), result],
        tools=[FERRY],
        model="anthropic:thinking",
        reasoning_effort="low",
    )
    assert sent(fake)["messages"][1] == turn


async def test_reasoning_blocks_sent_back(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    assistant = Message.assistant("Earlier answer.")
    assistant.reasoning_blocks.add(text="thought", signature="sig-1")
    assistant.reasoning_blocks.add(redacted_data=b"opaque-blob")
    assistant.reasoning_blocks.add(text="unsigned thought from another provider")
    # Claude's thinking that came through OpenRouter carries Anthropic's signature.
    assistant.reasoning_blocks.add(text="routed", signature="sig-2", format="anthropic-claude-v1")
    # Other APIs' signatures and encrypted reasoning: Anthropic would refuse them.
    assistant.reasoning_blocks.add(text="gemini", signature="g-sig", format="google-gemini-v1")
    assistant.reasoning_blocks.add(redacted_data=b"gAAAA", format="openai-responses-v1")
    await client.chat(
        [Message.user("q"), assistant, Message.user("more")], model="claude-sonnet-4-5"
    )
    assert sent(fake)["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "thought", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque-blob"},
        {"type": "thinking", "thinking": "routed", "signature": "sig-2"},
        {"type": "text", "text": "Earlier answer."},
    ]


# -- images -------------------------------------------------------------------------------------


async def test_images(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    message = Message.user("What is in these?")
    message.parts.add(image=chat_pb2.ImagePart(data=PNG, mime_type="image/png"))
    message.parts.add(image=chat_pb2.ImagePart(url="https://example.org/ash.jpg"))
    message.parts.add(
        image=chat_pb2.ImagePart(url="data:image/webp;base64,UklGRiQAAABXRUJQVlA4IA==")
    )
    message.parts.add(text="Be brief.")
    await client.chat([message], model="claude-sonnet-4-5")
    assert sent(fake)["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG).decode(),
            },
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.org/ash.jpg"}},
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/webp",
                "data": "UklGRiQAAABXRUJQVlA4IA==",
            },
        },
        {"type": "text", "text": "Be brief."},
    ]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (
            chat_pb2.Message(
                role=chat_pb2.ROLE_SYSTEM,
                parts=[
                    chat_pb2.ContentPart(image=chat_pb2.ImagePart(url="https://example.org/a.png"))
                ],
            ),
            "messages[0].parts[0]",
        ),
        (
            chat_pb2.Message(
                role=chat_pb2.ROLE_USER,
                parts=[
                    chat_pb2.ContentPart(image=chat_pb2.ImagePart(url="data:image/png,not-base64"))
                ],
            ),
            "messages[0].parts[0].image.url",
        ),
    ],
    ids=["image in system", "malformed data url"],
)
async def test_images_refused(client: ServiceClient, message: chat_pb2.Message, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.chat([message, Message.user("hi")], model="claude-sonnet-4-5")
    assert caught.value.field == field


# -- structured output --------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "legs": {"type": "integer"},
    },
    "required": ["name"],
}


async def test_structured_output_by_forced_tool(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    reply = await client.chat("describe", model="anthropic:structured", response_format=SCHEMA)
    body = sent(fake)
    assert body["tools"] == [
        {
            "name": anthropic_provider.STRUCTURED_TOOL,
            "description": "Answer with the requested JSON object as this tool's input.",
            "input_schema": SCHEMA,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": anthropic_provider.STRUCTURED_TOOL}
    assert json.loads(reply.content) == json.loads(fa.STRUCTURED_JSON)
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert not reply.tool_calls


async def test_structured_output_stream(client: ServiceClient) -> None:
    events = await collect(
        client.chat_stream("describe", model="anthropic:structured", response_format=SCHEMA)
    )
    assert joined(events, "content") == fa.STRUCTURED_JSON
    assert {e[0] for e in normalise(events)} == {"content", "usage", "done"}
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_STOP


async def test_structured_output_openai_wrapper(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    wrapper = {"name": "creature", "strict": True, "schema": SCHEMA}
    await client.chat("describe", model="anthropic:structured", response_format=wrapper)
    assert sent(fake)["tools"][0]["input_schema"] == SCHEMA


async def test_json_object_by_forced_tool(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    reply = await client.chat(
        "describe", model="anthropic:structured", response_format="json_object"
    )
    assert sent(fake)["tools"][0]["input_schema"] == {"type": "object"}
    assert json.loads(reply.content)["name"] == "Ratatoskr"


@pytest.mark.parametrize("with_thinking", [True, False], ids=["thinking", "own tools"])
async def test_structured_output_native(
    client: ServiceClient, fake: FakeAnthropicUpstream, with_thinking: bool
) -> None:
    options: dict[str, Any] = {"reasoning_effort": "low"} if with_thinking else {}
    tools = [] if with_thinking else [WEATHER]
    reply = await client.chat(
        "describe", tools=tools, model="anthropic:structured", response_format=SCHEMA, **options
    )
    body = sent(fake)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "tool_choice" not in body
    assert [t["name"] for t in body.get("tools", [])] == [t.name for t in tools]
    assert reply.content == fa.STRUCTURED_JSON


async def test_json_object_with_thinking_asks_in_system(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    await client.chat(
        [Message.system("Be terse."), Message.user("describe")],
        model="anthropic:structured",
        response_format="json_object",
        reasoning_effort="low",
    )
    body = sent(fake)
    assert body["system"] == [
        {"type": "text", "text": "Be terse."},
        {"type": "text", "text": "Respond with a single JSON object and nothing else."},
    ]
    assert "tools" not in body


# -- prompt caching and usage -------------------------------------------------------------------


async def test_cache_prompt_marks_last_system_block(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    messages = [Message.system("Long instructions."), Message.system("More."), Message.user("hi")]
    reply = await client.chat(
        messages, tools=[WEATHER], model="anthropic:cache-write", cache_prompt=True
    )
    body = sent(fake)
    assert body["system"] == [
        {"type": "text", "text": "Long instructions."},
        {"type": "text", "text": "More.", "cache_control": {"type": "ephemeral"}},
    ]
    assert "cache_control" not in body["tools"][0]
    assert usage_dict(reply.usage) == {
        "prompt_tokens": 3 + 2048,
        "completion_tokens": 14,
        "total_tokens": 3 + 2048 + 14,
        "cached_prompt_tokens": 0,
        "cache_creation_tokens": 2048,
    }


async def test_cache_prompt_without_system(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    await client.chat("hi", tools=[WEATHER], model="claude-sonnet-4-5", cache_prompt=True)
    assert sent(fake)["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    await client.chat("hi", model="claude-sonnet-4-5", cache_prompt=True)
    assert sent(fake)["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


# -- finish reasons -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "finish"),
    [
        ("max-tokens", chat_pb2.FINISH_REASON_LENGTH),
        ("stop-sequence", chat_pb2.FINISH_REASON_STOP),
        ("refusal", chat_pb2.FINISH_REASON_CONTENT_FILTER),
    ],
)
async def test_finish_reasons(client: ServiceClient, scenario: str, finish: int) -> None:
    reply = await client.chat("hi", model=f"anthropic:{scenario}")
    assert reply.finish_reason == finish
    events = await collect(client.chat_stream("hi", model=f"anthropic:{scenario}"))
    assert events[-1].done and events[-1].finish_reason == finish
    assert joined(events, "content") == reply.content


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "cls", "code"),
    [
        ("permission", AuthenticationFailed, grpc.StatusCode.UNAUTHENTICATED),
        ("low-credit", QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("rate-limit-no-hint", RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
async def test_more_errors(
    client: ServiceClient, scenario: str, cls: type[Exception], code: grpc.StatusCode
) -> None:
    with pytest.raises(cls) as caught:
        await client.chat("hi", model=f"anthropic:{scenario}")
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert caught.value.retry_after is None  # type: ignore[attr-defined]


async def test_upstream_refusal_is_invalid_argument(client: ServiceClient) -> None:
    """What the API refuses as invalid comes back as INVALID_ARGUMENT with its message."""
    bad = {"thinking": {"type": "enabled", "budget_tokens": 10}}
    with pytest.raises(InvalidInput) as caught:
        await client.chat("hi", model="claude-sonnet-4-5", raw_provider_options=bad)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "UPSTREAM_INVALID_REQUEST"
    assert "budget_tokens" in str(caught.value)


async def test_prompt_too_long(client: ServiceClient) -> None:
    with pytest.raises(ContextLengthExceeded) as caught:
        await client.chat("hi", model="anthropic:prompt-too-long")
    assert caught.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert caught.value.limit == 200000
    assert str(caught.value) == "context length exceeded: 200000 tokens"


@pytest.mark.parametrize(
    "key", ["sk-ant-wrong-key-000000000000", None], ids=["wrong key", "no key"]
)
async def test_bad_key(fake: FakeAnthropicUpstream, key: str | None) -> None:
    env = {"ANTHROPIC_API_KEY": key} if key else {}
    async with daemon_client(make_config(config_text(fake), env=env)) as client:
        with pytest.raises(AuthenticationFailed) as caught:
            await client.chat("hi", model="claude-sonnet-4-5")
    assert "x-api-key" in str(caught.value)
    assert key is None or key not in str(caught.value)


@pytest.mark.parametrize(
    ("scenario", "reason", "received"),
    [
        ("api-error-mid-stream", "PROVIDER_UNAVAILABLE", fa.ANSWER_PIECES[:2]),
        ("unknown-error-mid-stream", "PROVIDER_UNAVAILABLE", fa.ANSWER_PIECES[:2]),
        ("ended-early", "UPSTREAM_PROTOCOL", fa.ANSWER_PIECES[:2]),
        ("cut", "UPSTREAM_PROTOCOL", fa.ANSWER_PIECES[:2]),
    ],
)
async def test_broken_streams(
    client: ServiceClient, scenario: str, reason: str, received: tuple[str, ...]
) -> None:
    got: list[str] = []
    with pytest.raises(ModelNotAvailable) as caught:
        async for event in client.chat_stream("hi", model=f"anthropic:{scenario}"):
            got.append(event.content)
    assert caught.value.reason == reason
    assert tuple(got) == received


async def test_unreachable_upstream() -> None:
    config = make_config(
        '[providers.anthropic]\nbase_url = "http://127.0.0.1:9"\n', env={"ANTHROPIC_API_KEY": KEY}
    )
    async with daemon_client(config) as client:
        with pytest.raises(ModelNotAvailable) as caught:
            await client.chat("hi", model="claude-sonnet-4-5")
    assert caught.value.reason == "PROVIDER_UNAVAILABLE"


# -- generate -----------------------------------------------------------------------------------


async def test_generate(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    reply = await client.generate(
        "Who runs up the ash?", model="claude-sonnet-4-5", max_tokens=64, stop=["\n"]
    )
    assert reply.text == fa.ANSWER
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert reply.provider == "anthropic"
    assert usage_dict(reply.usage)["prompt_tokens"] == 31
    body = sent(fake)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Who runs up the ash?"}]}
    ]
    assert (body["max_tokens"], body["stop_sequences"]) == (64, ["\n"])


async def test_generate_stream(client: ServiceClient) -> None:
    events = [
        e
        async for e in client.generate_stream(
            "hi", model="anthropic:thinking", reasoning_effort="low"
        )
    ]
    assert "".join(e.text for e in events) == fa.ANSWER
    assert "".join(e.reasoning for e in events) == fa.THINKING
    assert events[-1].done and events[-1].finish_reason == chat_pb2.FINISH_REASON_STOP
    assert events[-2].WhichOneof("event") == "usage"


# -- models -------------------------------------------------------------------------------------


async def test_list_models_follows_pages(fake: FakeAnthropicUpstream) -> None:
    fake.models_page_size = 2
    provider = AnthropicProvider(
        "anthropic", ProviderConfig(kind="anthropic", base_url=fake.base_url), Secret(KEY)
    )
    try:
        models = await provider.list_models()
    finally:
        await provider.close()
    assert [m.id for m in models] == [m["id"] for m in fa.MODELS]
    assert all(m.provider == "anthropic" for m in models)
    assert [r.query for r in fake.requests_to("/v1/models")] == [
        "limit=1000",
        f"limit=1000&after_id={fa.MODELS[1]['id']}",
    ]


# -- the real recorded fixtures (../shared) -----------------------------------------------------


def _fixtures(shared_dir: Path, prefix: str) -> list[tuple[dict[str, Any], Path]]:
    folder = shared_dir / "fixtures" / "providers" / "anthropic"
    cases = []
    for meta_path in sorted(folder.glob(f"{prefix}*.meta.json")):
        meta = json.loads(meta_path.read_text())
        cases.append((meta, folder / meta["response_file"]))
    return cases


def _plan() -> RequestPlan:
    return RequestPlan(body={}, structured_tool=False, show_reasoning=True)


def test_recorded_messages_parse(shared_dir: Path) -> None:
    cases = _fixtures(shared_dir, "messages-")
    assert cases
    for meta, path in cases:
        expect = meta["expect"]
        if path.suffix == ".json":
            reply = anthropic_provider.parse_message(
                json.loads(path.read_text()), "m", "anthropic", _plan()
            )
            content = reply.content
            reasoning = reply.reasoning
            signature = reply.reasoning_blocks[0].signature if reply.reasoning_blocks else None
            calls = [(c.id, c.name, json.loads(c.arguments)) for c in reply.tool_calls]
            usage = reply.usage
            finish = reply.finish_reason
        else:
            assembler = anthropic_provider.StreamAssembler(_plan(), "m", "anthropic")
            decoder = SseDecoder()
            events: list[chat_pb2.ChatStreamResponse] = []
            stream_error = None
            for sse in [*decoder.feed(path.read_bytes()), *decoder.close()]:
                payload = json.loads(sse.data)
                if sse.event == "error":
                    stream_error = payload["error"]["type"]
                    break
                events.extend(assembler.feed(payload))
            content, reasoning = joined(events, "content"), joined(events, "reasoning")
            signatures = [
                e.reasoning_signature
                for e in events
                if e.WhichOneof("event") == "reasoning_signature"
            ]
            signature = signatures[0] if signatures else None
            arguments: dict[int, str] = {}
            starts = []
            for event in events:
                if event.WhichOneof("event") == "tool_call_start":
                    starts.append(event.tool_call_start)
                elif event.WhichOneof("event") == "tool_call_delta":
                    index = event.tool_call_delta.index
                    arguments[index] = arguments.get(index, "") + event.tool_call_delta.arguments
            calls = [(s.id, s.name, json.loads(arguments[s.index])) for s in starts]
            usage = assembler.usage or chat_pb2.Usage()
            finish = assembler.finish_reason
            if "stream_error" in expect:
                assert stream_error == expect["stream_error"]["type"], path.name
        assert content == expect.get("text", ""), path.name
        assert (reasoning or None) == expect.get("reasoning"), path.name
        assert signature == expect.get("reasoning_signature"), path.name
        wanted_calls = [
            (c["id"], c["name"], c["arguments_json"]) for c in expect.get("tool_calls", [])
        ]
        assert calls == wanted_calls, path.name
        if expect.get("finish_reason"):
            assert finish == anthropic_provider.finish_reason(expect["finish_reason"]), path.name
        assert usage.prompt_tokens == expect["usage"]["prompt_tokens"], path.name
        assert usage.total_tokens == expect["usage"]["total_tokens"], path.name


ERROR_CLASSES = {
    "auth": "AuthenticationFailed",
    "model_not_found": "ModelNotFound",
    "rate_limit": "RateLimited",
    "upstream_5xx": "ProviderUnavailable",
    "overloaded": "ProviderOverloaded",
}


def test_recorded_errors_classify(shared_dir: Path) -> None:
    provider = AnthropicProvider(
        "anthropic", ProviderConfig(kind="anthropic", base_url="http://x"), None
    )
    cases = _fixtures(shared_dir, "error-")
    assert cases
    for meta, path in cases:
        expect = meta["expect"]["error"]
        error = provider.dialect.error_from_body(
            meta["status"], json.loads(path.read_text()), "m", meta["headers"]
        )
        assert type(error).__name__ == ERROR_CLASSES[expect["class"]], path.name
        assert error.fallback == expect["retryable"] or expect["class"] == "auth", path.name
        assert error.retry_after == expect.get("retry_after_seconds"), path.name


# -- the current reference (2026-12-04): adaptive thinking, server tools, new fields -------------

ADAPTIVE_MODEL = "claude-sonnet-5-5"  # adaptive-only (Sonnet 5 and later)


@pytest.mark.parametrize(
    ("effort", "wire"),
    [("low", "low"), ("minimal", "low"), ("medium", "medium"), ("xhigh", "xhigh")],
)
async def test_adaptive_thinking_from_effort(
    client: ServiceClient, fake: FakeAnthropicUpstream, effort: str, wire: str
) -> None:
    """Current models think adaptively: the effort goes to output_config.effort, no
    budget; sampling they refuse is dropped before the request (warn policy)."""
    fake.scenario = "adaptive"
    reply = await client.chat(
        "hi", model=ADAPTIVE_MODEL, reasoning_effort=effort, temperature=0.2, top_k=5
    )
    body = sent(fake)
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": wire}
    assert body["max_tokens"] == 4096  # no budget on top
    assert not {"temperature", "top_k", "top_p"} & set(body)
    assert reply.reasoning == fa.THINKING and reply.content == fa.ANSWER
    assert reply.usage.reasoning_tokens == 29  # output_tokens_details.thinking_tokens


async def test_adaptive_model_without_reasoning_options(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    """No reasoning asked: no thinking field (the model's default); effort none cannot
    turn an adaptive-only model's thinking off, so nothing is sent that it refuses."""
    fake.scenario = "adaptive"
    await client.chat("hi", model=ADAPTIVE_MODEL, top_p=0.5)
    assert not {"thinking", "output_config", "top_p"} & set(sent(fake))
    await client.chat("hi", model=ADAPTIVE_MODEL, reasoning_effort="none")
    assert "thinking" not in sent(fake)
    # Opus / Sonnet 4.6 take adaptive thinking and can still turn it off.
    await client.chat("hi", model="claude-sonnet-4-6", reasoning_effort="none")
    assert sent(fake)["thinking"] == {"type": "disabled"}
    await client.chat("hi", model="claude-sonnet-4-6", reasoning_budget=3000)
    assert sent(fake)["thinking"] == {"type": "adaptive"}
    assert "output_config" not in sent(fake)


async def test_adaptive_stream_reports_thinking_tokens(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    fake.scenario = "adaptive"
    events = await collect(client.chat_stream("hi", model=ADAPTIVE_MODEL, reasoning_effort="high"))
    assert joined(events, "content") == fa.ANSWER
    usage = next(e.usage for e in events if e.HasField("usage"))
    assert usage.reasoning_tokens == 29 and usage.completion_tokens == 40


async def test_structured_output_on_adaptive_model_is_native(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    """An adaptive-only model refuses a forced tool: the schema goes to
    output_config.format, beside the effort."""
    fake.scenario = "adaptive"
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    await client.chat(
        "name it", model=ADAPTIVE_MODEL, response_format=schema, reasoning_effort="low"
    )
    body = sent(fake)
    assert "tool_choice" not in body and not body.get("tools")
    assert body["output_config"] == {
        "effort": "low",
        "format": {"type": "json_schema", "schema": schema},
    }


def test_the_fake_refuses_what_adaptive_models_refuse() -> None:
    """The fake's strictness that the tests above lean on."""
    base = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    manual = {
        **base,
        "model": ADAPTIVE_MODEL,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    assert fa.check_request(manual) is not None
    assert fa.check_request({**base, "model": ADAPTIVE_MODEL, "temperature": 0.2}) is not None
    old = {**base, "model": "claude-sonnet-4-5", "thinking": {"type": "adaptive"}}
    assert fa.check_request(old) is not None
    assert (
        fa.check_request({**base, "model": ADAPTIVE_MODEL, "thinking": {"type": "adaptive"}})
        is None
    )


async def test_server_tool_blocks_skipped(
    client: ServiceClient, fake: FakeAnthropicUpstream
) -> None:
    """server_tool_use / web_search_tool_result blocks and citations have no place in a
    chat answer: skipped, the text kept; pause_turn is a normal stop."""
    fake.scenario = "server-tools"
    reply = await client.chat("when does the ferry leave?", model=ADAPTIVE_MODEL)
    assert reply.content == fa.PREAMBLE + "".join(fa.CITED_PIECES)
    assert not reply.tool_calls
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert usage_dict(reply.usage)["prompt_tokens"] == 31
    events = await collect(client.chat_stream("when does the ferry leave?", model=ADAPTIVE_MODEL))
    assert joined(events, "content") == reply.content
    assert not any(e.HasField("tool_call_start") for e in events)
    assert events[-1].done and events[-1].finish_reason == chat_pb2.FINISH_REASON_STOP


async def test_context_window_exceeded_is_length(client: ServiceClient) -> None:
    reply = await client.chat("hi", model="anthropic:context-window-exceeded")
    assert reply.finish_reason == chat_pb2.FINISH_REASON_LENGTH
    events = await collect(client.chat_stream("hi", model="anthropic:context-window-exceeded"))
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_LENGTH


async def test_count_tokens(client: ServiceClient, fake: FakeAnthropicUpstream) -> None:
    count = await client.count_tokens("one two three four", model=ADAPTIVE_MODEL)
    assert count == fa.COUNT_BASE + 4
    request = fake.last("/v1/messages/count_tokens")
    assert request.json == {
        "model": ADAPTIVE_MODEL,
        "messages": [{"role": "user", "content": "one two three four"}],
    }
    assert await client.count_tokens("", model=ADAPTIVE_MODEL) == 0
