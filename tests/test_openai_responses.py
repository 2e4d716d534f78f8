"""OpenAI's Responses API through a real in-process ratd: the models the seed marks go
there, replies and streams come back as Chat Completions' do, a reasoning model's
encrypted reasoning returns with the next turn, and the API's errors are classified.
The fake (tests/fakes/openai_responses.py) refuses what the real API refuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest

from ratatoskr import (
    ChatStreamCollector,
    Message,
    RatatoskrError,
    ServiceClient,
    ToolDefinition,
    chat_pb2,
)
from ratd.providers.openai_responses import RESPONSES_FORMAT, reasoning_items
from tests.fakes.openai_responses import (
    RESPONSES_USAGE,
    STRUCTURED,
    SUMMARY_PARTS,
    TOOL_ANSWER,
)
from tests.fakes.openai_upstream import (
    ANSWER_TEXT,
    FERRY_CALL,
    LENGTH_TEXT,
    REASONING_USAGE,
    REFUSAL_TEXT,
    TEXT,
    TEXT_PIECES,
    TEXT_USAGE,
    FakeOpenAIUpstream,
    expected_usage,
    openai_snapshot,
)
from tests.support.compat import (
    OPENAI_KEY,
    OPENROUTER_KEY,
    collect,
    collect_until_error,
    joined,
    kinds,
)
from tests.support.daemon import daemon_client, make_config

RESPONSES = "/responses"
FERRY_TOOL = ToolDefinition(
    "lookup_ferry_schedule",
    "Departures from a harbor on a date.",
    {"type": "object", "properties": {"harbor": {"type": "string"}}, "required": ["harbor"]},
)


def _config(upstream: FakeOpenAIUpstream, extra: str = "") -> str:
    return f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
{extra}
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
[retry]
max_attempts = 2
initial_delay_ms = 1
max_delay_ms = 5
"""


async def _client(upstream: FakeOpenAIUpstream, extra: str = "") -> AsyncIterator[ServiceClient]:
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY}
    async with daemon_client(make_config(_config(upstream, extra), env=env)) as client:
        yield client


@pytest.fixture
async def ratd(upstream: FakeOpenAIUpstream) -> AsyncIterator[ServiceClient]:
    async for client in _client(upstream):
        yield client


def sent(upstream: FakeOpenAIUpstream) -> dict[str, object]:
    body = upstream.last("openai", RESPONSES).json
    assert isinstance(body, dict)
    return body


def assert_usage(usage: chat_pb2.Usage, numbers: dict[str, float]) -> None:
    want = expected_usage(numbers)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        want["prompt_tokens"],
        want["completion_tokens"],
        want["total_tokens"],
    )
    assert usage.HasField("reasoning_tokens") and usage.reasoning_tokens == want["reasoning_tokens"]
    assert usage.cached_prompt_tokens == want["cached_prompt_tokens"]


# -- replies and streams ------------------------------------------------------------------------


async def test_a_seed_marked_model_is_answered_through_the_responses_api(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    reply = await ratd.chat(
        [Message.system("Be brief."), Message.user("Who runs up the ash?")],
        model="gpt-5",
        max_tokens=256,
    )
    assert reply.content == TEXT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert (reply.provider, reply.model) == ("openai", openai_snapshot("gpt-5"))
    assert_usage(reply.usage, TEXT_USAGE)
    body = sent(upstream)
    assert body["instructions"] == "Be brief."
    assert body["input"] == [{"type": "message", "role": "user", "content": "Who runs up the ash?"}]
    assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
    assert body["max_output_tokens"] == 256
    assert "messages" not in body and "stream" not in body
    assert not upstream.requests_to("openai"), "nothing went to /chat/completions"


async def test_a_stream_is_the_chat_completions_event_sequence(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    events = await collect(ratd.chat_stream("Who runs up the ash?", model="o3"))
    assert kinds(events) == ["content"] * len(TEXT_PIECES) + ["usage", "done"]
    assert joined(events, "content") == TEXT
    assert_usage(events[-2].usage, TEXT_USAGE)
    done = events[-1]
    assert (done.finish_reason, done.provider) == (chat_pb2.FINISH_REASON_STOP, "openai")
    assert done.model == openai_snapshot("o3")
    assert sent(upstream)["stream"] is True


async def test_usage_counts_reasoning_and_cached_tokens_and_keeps_the_silent_reasoning(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("reasoning", "openai")
    reply = await ratd.chat("How many roots?", model="gpt-6-luna", reasoning_effort="high")
    assert reply.content == ANSWER_TEXT
    assert_usage(reply.usage, REASONING_USAGE)
    assert sent(upstream)["reasoning"] == {"effort": "high", "summary": "auto"}
    # Reasoning counted but not shown: one encrypted block, no text.
    (block,) = reply.reasoning_blocks
    assert not reply.reasoning and not block.text
    assert block.format == RESPONSES_FORMAT and block.id.startswith("rs_")
    assert block.redacted_data.decode() == upstream.responses_issued[block.id]

    streamed = await ChatStreamCollector.collect(
        ratd.chat_stream("How many roots?", model="gpt-6-luna", reasoning_effort="high")
    )
    assert_usage(streamed.usage, REASONING_USAGE)
    assert streamed.content == ANSWER_TEXT and len(streamed.reasoning_blocks) == 1


async def test_a_reasoning_models_tool_conversation_carries_its_encrypted_reasoning(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """Issue 19's "done when": turn 1 streams reasoning and a tool call; turn 2 sends the
    encrypted reasoning item back before the call, which the fake requires."""
    upstream.set_scenario("reasoning-tools", "openai")
    question = Message.user("When does the ferry leave Ålesund?")
    turn1 = await ChatStreamCollector.collect(
        ratd.chat_stream([question], [FERRY_TOOL], model="gpt-6-luna", reasoning_effort="low")
    )
    assert turn1.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    (call,) = turn1.tool_calls
    assert (call.id, call.name, call.arguments) == (
        FERRY_CALL.id,
        FERRY_CALL.name,
        FERRY_CALL.arguments,
    )
    assert turn1.reasoning == SUMMARY_PARTS[0]
    (block,) = turn1.reasoning_blocks
    assert (block.format, block.text, block.summary) == (RESPONSES_FORMAT, SUMMARY_PARTS[0], True)
    assert block.redacted_data.decode() == upstream.responses_issued[block.id]
    first = sent(upstream)
    assert first["tools"] == [
        {
            "type": "function",
            "name": FERRY_TOOL.name,
            "description": FERRY_TOOL.description,
            "parameters": json.loads(FERRY_TOOL.parameters_json),
            "strict": False,
        }
    ]

    # Another API's signed thinking is not this API's to verify: it stays out.
    foreign = chat_pb2.ReasoningBlock(text="hmm", signature="sig", format="anthropic-claude-v1")
    assistant = Message.from_response(turn1)
    assistant.reasoning_blocks.append(foreign)
    history = [question, assistant, Message.tool(call.id, {"departures": ["09:30"]})]
    turn2 = await ratd.chat(history, [FERRY_TOOL], model="gpt-6-luna", reasoning_effort="low")
    assert turn2.content == TOOL_ANSWER
    assert turn2.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert turn2.reasoning == SUMMARY_PARTS[1]
    assert_usage(turn2.usage, RESPONSES_USAGE)
    items = sent(upstream)["input"]
    assert isinstance(items, list)
    assert items[1:] == [
        {
            "type": "reasoning",
            "id": block.id,
            "summary": [{"type": "summary_text", "text": SUMMARY_PARTS[0]}],
            "encrypted_content": upstream.responses_issued[block.id],
        },
        {
            "type": "function_call",
            "call_id": FERRY_CALL.id,
            "name": FERRY_CALL.name,
            "arguments": FERRY_CALL.arguments,
        },
        {"type": "function_call_output", "call_id": call.id, "output": '{"departures": ["09:30"]}'},
    ]

    # Without its reasoning the API refuses the turn: the fake checks for it.
    bare = Message.assistant(tool_calls=turn1.tool_calls)
    with pytest.raises(RatatoskrError) as caught:
        await ratd.chat([question, bare, history[2]], [FERRY_TOOL], model="gpt-6-luna")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "without its required 'reasoning' item" in caught.value.message


async def test_structured_output_and_tool_choice(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("structured", "openai")
    schema = {
        "type": "object",
        "properties": {"harbor": {"type": "string"}, "departures": {"type": "integer"}},
        "required": ["harbor", "departures"],
        "additionalProperties": False,
    }
    wrapper = {"name": "departures", "schema": schema, "strict": True}
    reply = await ratd.chat(
        "How many departures?",
        [FERRY_TOOL],
        model="gpt-5-mini",
        response_format=wrapper,
        tool_choice="none",
        parallel_tool_calls=False,
    )
    assert json.loads(reply.content) == STRUCTURED
    body = sent(upstream)
    assert body["text"] == {"format": {"type": "json_schema", **wrapper}}
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("none", False)
    await ratd.chat("Which?", [FERRY_TOOL], model="gpt-5-mini", tool_choice=FERRY_TOOL.name)
    assert sent(upstream)["tool_choice"] == {"type": "function", "name": FERRY_TOOL.name}


async def test_what_the_api_has_no_field_for_is_dropped_under_warn(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    reply = await ratd.chat("hi", model="gpt-5", seed=7, stop=["\n"], presence_penalty=0.5)
    assert reply.content == TEXT
    body = sent(upstream)
    assert not {"seed", "stop", "presence_penalty"} & set(body)


@pytest.mark.parametrize(
    ("scenario", "finish", "text"),
    [
        ("incomplete", chat_pb2.FINISH_REASON_LENGTH, LENGTH_TEXT),
        ("refusal", chat_pb2.FINISH_REASON_CONTENT_FILTER, REFUSAL_TEXT),
    ],
)
async def test_incomplete_and_refused_answers(
    ratd: ServiceClient,
    upstream: FakeOpenAIUpstream,
    scenario: str,
    finish: chat_pb2.FinishReason,
    text: str,
) -> None:
    upstream.set_scenario(scenario, "openai")
    reply = await ratd.chat("Tell me everything.", model="gpt-5")
    assert (reply.content, reply.finish_reason) == (text, finish)
    events = await collect(ratd.chat_stream("Tell me everything.", model="gpt-5"))
    assert joined(events, "content") == text
    assert events[-1].finish_reason == finish


# -- errors -------------------------------------------------------------------------------------

ERRORS = {
    "bad-request": (grpc.StatusCode.INVALID_ARGUMENT, "input[0].content"),
    "invalid-key": (grpc.StatusCode.UNAUTHENTICATED, "Incorrect API key"),
    "unknown-model": (grpc.StatusCode.NOT_FOUND, "does not exist"),
    "context-length": (grpc.StatusCode.OUT_OF_RANGE, "128000 tokens"),
    "server-error": (grpc.StatusCode.UNAVAILABLE, "The server had an error"),
    "overloaded": (grpc.StatusCode.UNAVAILABLE, "overloaded"),
    "insufficient-quota": (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota"),
}


@pytest.mark.parametrize("scenario", sorted(ERRORS))
async def test_error_statuses(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, scenario: str
) -> None:
    upstream.set_scenario(scenario, "openai")
    code, words = ERRORS[scenario]
    for streamed in (False, True):
        with pytest.raises(RatatoskrError) as caught:
            if streamed:
                await collect(ratd.chat_stream("hi", model="openai:gpt-5"))
            else:
                await ratd.chat("hi", model="openai:gpt-5")
        assert caught.value.code == code, caught.value.message
        assert words in caught.value.message
        assert caught.value.provider == "openai"


async def test_the_apis_own_refusals_name_the_parameter(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    with pytest.raises(RatatoskrError) as caught:
        await ratd.chat("hi", model="openai:gpt-5", max_tokens=5)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_output_tokens" in caught.value.message


async def test_a_429_is_retried(ratd: ServiceClient, upstream: FakeOpenAIUpstream) -> None:
    upstream.openai.retry_after_secs = 0
    upstream.openai.script = ["rate-limit", "text"]
    reply = await ratd.chat("hi", model="openai:gpt-5")
    assert reply.content == TEXT
    assert len(upstream.requests_to("openai", RESPONSES)) == 2


@pytest.mark.parametrize(
    ("scenario", "before", "code"),
    [
        ("mid-stream-error", "".join(TEXT_PIECES[:4]), grpc.StatusCode.UNAVAILABLE),
        ("response-failed", TEXT_PIECES[0], grpc.StatusCode.UNAVAILABLE),
        ("rate-limited-event", TEXT_PIECES[0], grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
async def test_an_error_in_the_middle_of_a_stream(
    ratd: ServiceClient,
    upstream: FakeOpenAIUpstream,
    scenario: str,
    before: str,
    code: grpc.StatusCode,
) -> None:
    """``error`` events and ``response.failed``, classified by their code."""
    upstream.set_scenario(scenario, "openai")
    events, err = await collect_until_error(ratd.chat_stream("hi", model="openai:gpt-5"))
    assert joined(events, "content") == before, "what came before the error is delivered"
    assert err.code == code
    assert err.provider == "openai"


@pytest.mark.parametrize("scenario", ["truncated", "ended-early"])
async def test_a_stream_that_stops_before_the_response_is_complete(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, scenario: str
) -> None:
    upstream.set_scenario(scenario, "openai")
    _, err = await collect_until_error(ratd.chat_stream("hi", model="openai:gpt-5"))
    assert err.code == grpc.StatusCode.UNAVAILABLE


# -- which models go there ----------------------------------------------------------------------


async def test_the_config_overrides_the_seed_and_other_kinds_keep_chat_completions(
    upstream: FakeOpenAIUpstream,
) -> None:
    extra = 'apis = { "gpt-4o*" = "responses", "o3" = "chat_completions" }'
    async for client in _client(upstream, extra):
        await client.chat("hi", model="gpt-4o-mini")
        body = sent(upstream)
        assert body["model"] == "gpt-4o-mini"
        assert "include" not in body, "a model that does not reason is not asked for it"
        await client.chat("hi", model="o3")
        assert upstream.last("openai").json["model"] == "o3"  # on /chat/completions
        await client.chat("hi", model="openrouter:openai/gpt-5")
        assert upstream.last("openrouter").json["model"] == "openai/gpt-5"
        assert not upstream.requests_to("openrouter", RESPONSES)


async def test_openrouter_configured_for_the_responses_api(upstream: FakeOpenAIUpstream) -> None:
    """Any OpenAI-speaking kind may be sent there by its config (OpenRouter serves the
    API at /api/v1/responses); vendor-prefixed names are judged by their model part."""
    env = {"OPENROUTER_API_KEY": OPENROUTER_KEY}
    text = f"""
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
apis = {{ "openai/*" = "responses" }}
"""
    async with daemon_client(make_config(text, env=env)) as client:
        reply = await client.chat("hi", model="openai/gpt-4o-mini")
        assert (reply.content, reply.provider) == (TEXT, "openrouter")
        body = upstream.last("openrouter", RESPONSES).json
        assert body["model"] == "openai/gpt-4o-mini" and "include" not in body
        await client.chat("hi", model="yggdrasil/ash-3-mini")
        assert upstream.last("openrouter").json["model"] == "yggdrasil/ash-3-mini"


def test_blocks_of_one_item_are_merged_and_only_verifiable_ones_go_back() -> None:
    """OpenRouter gives an OpenAI reasoning item as a summary and an encrypted block of
    one id; they go back as one item. Blocks without encrypted content, without an id or
    in another format stay out."""
    blocks = [
        chat_pb2.ReasoningBlock(id="rs_1", text="Plan.", summary=True, format=RESPONSES_FORMAT),
        chat_pb2.ReasoningBlock(id="rs_1", redacted_data=b"enc-1", format=RESPONSES_FORMAT),
        chat_pb2.ReasoningBlock(id="rs_2", text="no data", summary=True, format=RESPONSES_FORMAT),
        chat_pb2.ReasoningBlock(redacted_data=b"no id", format=RESPONSES_FORMAT),
        chat_pb2.ReasoningBlock(id="rs_3", redacted_data=b"x", format="google-gemini-v1"),
    ]
    assert reasoning_items(blocks) == [
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Plan."}],
            "encrypted_content": "enc-1",
        }
    ]
