"""The Gemini Interactions API dialect through a real in-process ratd, over real HTTP to
the fake API (tests/fakes/gemini_interactions_upstream.py): the request as sent (steps,
system instruction, tools, structured output, generation config, store=false, the API
revision), plain and streamed answers, function calls over turns with their thought
signatures sent back, background interactions polled to the end and cancelled when the
caller goes, and the errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from ratatoskr import (
    AuthenticationFailed,
    ChatStreamCollector,
    InvalidInput,
    Message,
    RatatoskrError,
    ServiceClient,
    ToolDefinition,
    chat_pb2,
)
from ratd.providers import gemini_interactions as gi
from tests.fakes import gemini_interactions_upstream as fi
from tests.fakes.gemini_interactions_upstream import FakeGeminiInteractionsUpstream
from tests.support.daemon import daemon_client, make_config

KEY = "AIzaSyTest-Interactions-0123456789abcdef"
FERRY_SCHEMA = {
    "type": "object",
    "properties": {"harbor": {"type": "string"}, "passengers": {"type": "integer"}},
    "required": ["harbor"],
    "additionalProperties": False,
}
FERRY = ToolDefinition("lookup_ferry", "Ferry departures", FERRY_SCHEMA)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-interactions-pixels"
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
    "required": ["name", "kind"],
    "additionalProperties": False,
}


def config_text(fake: FakeGeminiInteractionsUpstream, retry: int = 1) -> str:
    # google: the Interactions API for every model, one of them in the background (the
    # config's override); plain: generateContent but for the seed's marks (Deep Research).
    return f"""
[providers.google]
base_url = "{fake.base_url}"
apis = {{ "gemini-3.5-flash-bg" = "interactions_background", "background-*" = "interactions_background", "*" = "interactions" }}
[providers.plain]
kind = "google"
base_url = "{fake.base_url}"
api_key_env = "GOOGLE_API_KEY"
[validation]
parameter_policy = "warn"
[retry]
max_attempts = {retry}
"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiInteractionsUpstream]:
    async with FakeGeminiInteractionsUpstream(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture
async def client(fake: FakeGeminiInteractionsUpstream) -> AsyncIterator[ServiceClient]:
    config = make_config(config_text(fake), env={"GOOGLE_API_KEY": KEY})
    async with daemon_client(config) as c:
        yield c


def created(fake: FakeGeminiInteractionsUpstream) -> dict[str, Any]:
    body = fake.last("/v1beta/interactions").json
    assert isinstance(body, dict)
    return body


# -- plain and streamed -------------------------------------------------------------------------


async def test_plain_request_and_answer(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    history = [
        Message.system("Be brief."),
        Message.system("Answer in English."),
        Message.user("Who runs?"),
    ]
    reply = await client.chat(
        history, model="google:text", temperature=0.4, top_p=0.9, max_tokens=300, stop=["END"]
    )
    assert reply.content == "".join(fi.ANSWER_PIECES)
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert (reply.provider, reply.model) == ("google", "text")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 9)
    assert reply.usage.total_tokens == 21
    request = fake.last("/v1beta/interactions")
    assert request.method == "POST"
    assert request.headers["Api-Revision"] == gi.API_REVISION
    assert request.headers["x-goog-api-key"] == KEY
    assert "key" not in request.query
    assert created(fake) == {
        "model": "text",
        "input": [{"type": "user_input", "content": [{"type": "text", "text": "Who runs?"}]}],
        "system_instruction": "Be brief.\n\nAnswer in English.",
        "generation_config": {
            "temperature": 0.4,
            "top_p": 0.9,
            "max_output_tokens": 300,
            "stop_sequences": ["END"],
        },
        "store": False,
    }


async def test_parameters_the_api_lacks_are_dropped(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    await client.chat("hi", model="google:text", top_k=20, presence_penalty=0.5)
    assert "generation_config" not in created(fake)


async def test_streamed_thinking(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    events = [
        e
        async for e in client.chat_stream(
            "Who runs?", model="google:thinking", reasoning_effort="high"
        )
    ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == [
        "reasoning",
        "reasoning",
        "reasoning_signature",
        "reasoning_block",
        "content",
        "content",
        "content",
        "usage",
        "done",
    ]
    assert "".join(e.reasoning for e in events) == "".join(fi.THOUGHT_PIECES)
    block = events[3].reasoning_block
    assert (block.signature, block.format, block.summary) == (
        fi.THOUGHT_SIGNATURE,
        "google-gemini-v1",
        True,
    )
    usage = events[-2].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens) == (30, 129, 120)
    body = created(fake)
    assert body["stream"] is True and body["store"] is False
    assert body["generation_config"] == {"thinking_level": "high", "thinking_summaries": "auto"}
    streamed = await ChatStreamCollector.collect(
        client.chat_stream("Who runs?", model="google:thinking", reasoning_effort="high")
    )
    assert streamed == await client.chat(
        "Who runs?", model="google:thinking", reasoning_effort="high"
    )


@pytest.mark.parametrize(
    ("options", "config"),
    [
        ({"reasoning_effort": "xhigh"}, {"thinking_level": "xhigh", "thinking_summaries": "auto"}),
        ({"reasoning_effort": "none"}, {"thinking_level": "minimal", "thinking_summaries": "auto"}),
        ({"reasoning_budget": 4000}, {"thinking_level": "medium", "thinking_summaries": "auto"}),
        (
            {"reasoning_effort": "low", "exclude_reasoning": True},
            {"thinking_level": "low", "thinking_summaries": "none"},
        ),
    ],
)
async def test_reasoning_config(
    client: ServiceClient,
    fake: FakeGeminiInteractionsUpstream,
    options: dict[str, Any],
    config: dict[str, str],
) -> None:
    reply = await client.chat("hi", model="google:thinking", **options)
    assert created(fake)["generation_config"] == config
    if options.get("exclude_reasoning"):
        assert reply.reasoning == ""
        assert [b.signature for b in reply.reasoning_blocks] == [fi.THOUGHT_SIGNATURE]


def test_pro_models_think_at_least_low() -> None:
    effort = chat_pb2.ReasoningConfig(effort=chat_pb2.REASONING_EFFORT_MINIMAL)
    assert gi.thinking_level(effort, "gemini-3.1-pro-preview") == "low"
    assert gi.thinking_level(effort, "gemini-3.5-flash") == "minimal"
    assert gi.thinking_level(chat_pb2.ReasoningConfig(max_tokens=100000), "x") == "xhigh"


async def test_images_inline_and_by_uri(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content="What is this?")
    message.parts.add().image.CopyFrom(chat_pb2.ImagePart(data=PNG, mime_type="image/png"))
    message.parts.add().image.url = "https://example.org/ash.jpg"
    await client.chat([message], model="google:text")
    (step,) = created(fake)["input"]
    assert step["content"][0] == {"type": "text", "text": "What is this?"}
    assert step["content"][1]["type"] == "image" and step["content"][1]["mime_type"] == "image/png"
    assert step["content"][2] == {
        "type": "image",
        "uri": "https://example.org/ash.jpg",
        "mime_type": "image/jpeg",
    }


async def test_structured_output(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    reply = await client.chat(
        "describe",
        model="google:structured",
        response_format={"name": "creature", "schema": SCHEMA},
    )
    assert reply.content == "".join(fi.STRUCTURED_PIECES)
    assert created(fake)["response_format"] == {
        "type": "text",
        "mime_type": "application/json",
        "schema": SCHEMA,  # plain JSON Schema, as sent
    }
    await client.chat("describe", model="google:structured", response_format="json_object")
    assert created(fake)["response_format"] == {"type": "text", "mime_type": "application/json"}


async def test_finish_reason_of_an_incomplete_interaction(client: ServiceClient) -> None:
    reply = await client.chat("hi", model="google:max-tokens")
    assert reply.finish_reason == chat_pb2.FINISH_REASON_LENGTH


# -- tools over turns ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
async def test_tool_calls_over_turns_with_signatures(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream, stream: bool
) -> None:
    question = [Message.system("You book ferries."), Message.user("Three of us to Ålesund?")]
    options = {
        "model": "google:function-call",
        "reasoning_effort": "medium",
        "tool_choice": "required",
    }
    if stream:
        first = await ChatStreamCollector.collect(client.chat_stream(question, [FERRY], **options))
    else:
        first = await client.chat(question, [FERRY], **options)
    assert first.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    (call,) = first.tool_calls
    assert (call.id, call.name) == ("fc_ferry_7f3a", "lookup_ferry")
    assert call.arguments == '{"harbor":"Ålesund","passengers":3}'
    assert [b.signature for b in first.reasoning_blocks] == [fi.CALL_SIGNATURE]
    body = created(fake)
    assert body["tools"] == [
        {
            "type": "function",
            "name": "lookup_ferry",
            "description": "Ferry departures",
            "parameters": FERRY_SCHEMA,  # JSON Schema as it is (additionalProperties too)
        }
    ]
    assert body["generation_config"]["tool_choice"] == "any"

    assistant = Message.assistant(tool_calls=first.tool_calls)
    assistant.reasoning_blocks.extend(first.reasoning_blocks)
    turn_two = [*question, assistant, Message.tool(call.id, {"departures": ["09:15"]})]
    second = await client.chat(turn_two, [FERRY], model="google:function-call")
    assert second.content == "".join(fi.ANSWER_PIECES)
    assert created(fake)["input"][1:] == [
        {
            "type": "thought",
            "signature": fi.CALL_SIGNATURE,
            "summary": [{"type": "text", "text": "".join(fi.THOUGHT_PIECES)}],
        },
        {
            "type": "function_call",
            "id": "fc_ferry_7f3a",
            "name": "lookup_ferry",
            "arguments": {"harbor": "Ålesund", "passengers": 3},
        },
        {
            "type": "function_result",
            "call_id": "fc_ferry_7f3a",
            "result": {"departures": ["09:15"]},
            "name": "lookup_ferry",
        },
    ]


async def test_a_call_sent_back_without_its_signature_is_refused(client: ServiceClient) -> None:
    """What the signature is for: the API refuses the call's turn without it."""
    first = await client.chat("Ferry?", [FERRY], model="google:function-call")
    (call,) = first.tool_calls
    history = [
        Message.user("Ferry?"),
        Message.assistant(tool_calls=first.tool_calls),
        Message.tool(call.id, "x"),
    ]
    with pytest.raises(InvalidInput) as caught:
        await client.chat(history, [FERRY], model="google:function-call")
    assert caught.value.reason == "UPSTREAM_INVALID_REQUEST"
    assert "thought signature" in caught.value.message


async def test_text_tool_results_and_parallel_calls(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    first = await client.chat("weather and time?", [FERRY], model="google:conf-parallel")
    assert [c.id for c in first.tool_calls] == ["fc_conf_weather_01", "fc_conf_time_02"]
    history = [
        Message.user("weather and time?"),
        Message.assistant(tool_calls=first.tool_calls),
        Message.tool(first.tool_calls[0].id, "rain"),
        Message.tool(first.tool_calls[1].id, "[1, 2]"),
    ]
    await client.chat(history, [FERRY], model="google:text")
    results = [s for s in created(fake)["input"] if s["type"] == "function_result"]
    assert [(r["name"], r["result"]) for r in results] == [
        ("get_weather", "rain"),
        ("get_time", "[1, 2]"),  # a JSON list would read as contents: sent as text
    ]


# -- background ---------------------------------------------------------------------------------


async def test_background_model_polled_until_done(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    reply = await client.chat("Report on the ash.", model="google:gemini-3.5-flash-bg")
    assert reply.content == fi.REPORT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    body = created(fake)
    assert (body["background"], body["store"]) == (True, True)
    assert "stream" not in body
    (interaction_id,) = fake.state.stored
    polls = fake.requests_to(f"/v1beta/interactions/{interaction_id}")
    assert len(polls) == 3 and all(p.method == "GET" for p in polls)
    assert all(p.headers["Api-Revision"] == gi.API_REVISION for p in polls)
    assert fake.state.cancelled == []


async def test_background_model_streamed(client: ServiceClient) -> None:
    events = [e async for e in client.chat_stream("Report.", model="google:gemini-3.5-flash-bg")]
    assert [e.WhichOneof("event") for e in events] == ["content", "usage", "done"]
    assert events[0].content == fi.REPORT


async def test_deep_research_agent_by_the_seed_mark(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    """The seed marks Deep Research as served only by background interactions: a
    provider without an ``apis`` override sends it there, named as an agent."""
    model = "plain:deep-research-preview-04-2026"
    reply = await client.chat("Research Yggdrasil.", model=model, temperature=0.2)
    assert reply.content == fi.REPORT
    assert reply.reasoning == ""  # no summaries asked for
    assert reply.usage.reasoning_tokens == 900
    body = created(fake)
    assert body["agent"] == "deep-research-preview-04-2026" and "model" not in body
    assert "generation_config" not in body  # agents take none: temperature dropped
    assert body["background"] is True

    reply = await client.chat("Research Yggdrasil.", model=model, reasoning_effort="high")
    assert reply.reasoning == "Planning the search."
    assert created(fake)["agent_config"] == {"type": "deep-research", "thinking_summaries": "auto"}


async def test_plain_provider_keeps_generate_content(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    await client.chat("hi", model="plain:text")
    assert fake.last().path == "/v1beta/models/text:generateContent"


async def test_caller_deadline_cancels_the_upstream_interaction(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    with pytest.raises(RatatoskrError) as caught:
        await client.chat("Never done.", model="google:background-forever", timeout=1.5)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(fake.state.cancel_seen.wait(), timeout=10)
    (interaction_id,) = fake.state.stored
    assert fake.state.cancelled == [interaction_id]
    assert fake.state.stored[interaction_id].status == "cancelled"


async def test_caller_cancel_cancels_the_upstream_interaction(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    async def consume() -> None:
        async for _ in client.chat_stream("Never done.", model="google:background-forever"):
            pass

    task = asyncio.create_task(consume())
    for _ in range(200):  # until the interaction exists and was polled once
        if fake.state.stored and next(iter(fake.state.stored.values())).polls:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.state.cancel_seen.wait(), timeout=10)
    assert fake.state.cancelled == list(fake.state.stored)


async def test_polls_survive_passing_upstream_trouble(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    """Two polls answered 503 in a row do not lose a long interaction."""
    reply = await client.chat("Report.", model="google:background-flaky")
    assert reply.content == fi.REPORT
    (interaction_id,) = fake.state.stored
    assert len(fake.requests_to(f"/v1beta/interactions/{interaction_id}")) == 3  # 503, 503, done
    assert fake.state.cancelled == []


async def test_failed_background_interaction(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    with pytest.raises(RatatoskrError) as caught:
        await client.chat("hi", model="google:background-fails")
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Research budget exhausted." in caught.value.message
    assert fake.state.cancelled == []


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "code", "reason"),
    [
        ("conf-auth", grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_FAILED"),
        ("no-key", grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_FAILED"),
        ("conf-missing", grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
        ("conf-rate-limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
        ("conf-server-error", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        ("conf-overloaded", grpc.StatusCode.UNAVAILABLE, "PROVIDER_OVERLOADED"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
async def test_errors(
    client: ServiceClient, scenario: str, code: grpc.StatusCode, reason: str, stream: bool
) -> None:
    with pytest.raises(RatatoskrError) as caught:
        if stream:
            async for _ in client.chat_stream("hi", model=f"google:{scenario}"):
                pass
        else:
            await client.chat("hi", model=f"google:{scenario}")
    assert (caught.value.code, caught.value.reason) == (code, reason), caught.value.message
    assert caught.value.provider == "google"
    if scenario == "conf-rate-limit":
        assert caught.value.retry_after is not None and caught.value.retry_after > 5


async def test_wrong_key(fake: FakeGeminiInteractionsUpstream) -> None:
    wrong = "AIzaSyWrong-key-000000000000000000000"
    async with daemon_client(make_config(config_text(fake), env={"GOOGLE_API_KEY": wrong})) as c:
        with pytest.raises(AuthenticationFailed) as caught:
            await c.chat("hi", model="google:text")
    assert caught.value.metadata["upstream_status"] == "400"
    assert wrong not in str(caught.value)


async def test_upstream_refusal_is_invalid_argument(client: ServiceClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.chat("hi", model="google:text", raw_provider_options={"bogus_field": 1})
    assert caught.value.reason == "UPSTREAM_INVALID_REQUEST"
    assert "bogus_field" in caught.value.message


async def test_rate_limit_retried_after_its_delay(fake: FakeGeminiInteractionsUpstream) -> None:
    config = make_config(config_text(fake, retry=2), env={"GOOGLE_API_KEY": KEY})
    async with daemon_client(config) as c:
        reply = await c.chat("hi", model="google:rate-limit-once")
    assert reply.content == "".join(fi.ANSWER_PIECES)
    assert len(fake.requests_to("/v1beta/interactions")) == 2


@pytest.mark.parametrize(
    ("scenario", "reason", "says"),
    [
        ("internal-mid-stream", "PROVIDER_UNAVAILABLE", "internal error"),
        ("ended-early", "UPSTREAM_PROTOCOL", "before the response was complete"),
    ],
)
async def test_broken_streams(client: ServiceClient, scenario: str, reason: str, says: str) -> None:
    """An error event, or a stream that stops before interaction.completed: what came
    before is delivered, then UNAVAILABLE."""
    seen: list[str] = []
    with pytest.raises(RatatoskrError) as caught:
        async for event in client.chat_stream("hi", model=f"google:{scenario}"):
            seen.append(event.content)
    assert seen == list(fi.ANSWER_PIECES[:2])
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.UNAVAILABLE, reason)
    assert says in caught.value.message


def test_the_fake_names_its_reference() -> None:
    assert "Api-Revision 2026-05-20" in fi.REFERENCE


def test_odd_events_are_read_without_guessing() -> None:
    """Events of kinds this version does not know, deltas of steps never started, a
    stop without a start: left out, and the answer still reads."""
    assembler = gi.InteractionAssembler("google", requested="m")
    odd = [
        {
            "event_type": "interaction.created",
            "interaction": {"id": "v1_x", "status": "in_progress"},
        },
        {
            "event_type": "step.delta",
            "index": 7,
            "delta": {"type": "arguments_delta", "arguments": "{"},
        },
        {"event_type": "step.stop", "index": 9},
        {"event_type": "step.start", "index": 0, "step": {"type": "google_search_call", "id": "s"}},
        {"event_type": "step.delta", "index": 0, "delta": {"type": "google_search_call"}},
        {"event_type": "future.event", "index": "zero"},
        {"event_type": "step.start", "index": 1, "step": {"type": "model_output"}},
        {"event_type": "step.delta", "index": 1, "delta": {"type": "text", "text": "ok"}},
        {"event_type": "step.delta", "index": 1, "delta": {"type": "image", "data": "AAAA"}},
        {"event_type": "step.stop", "index": 1},
    ]
    events = [e for payload in odd for e in assembler.feed(payload)]
    assert [e.content for e in events] == ["ok"]
    assert not assembler.complete
    assembler.feed({"event_type": "interaction.completed", "interaction": {"status": "completed"}})
    assert assembler.complete
    reply = assembler.response()
    assert (reply.content, reply.finish_reason) == ("ok", chat_pb2.FINISH_REASON_STOP)
    assert not reply.tool_calls and not reply.HasField("usage")
