"""``POST /v1/responses`` on the HTTP door, driven by the official ``openai`` SDK
(``client.responses.create`` and its ``responses.stream`` helper, which checks the event
order and folds the events into the final response) against an in-process ratd whose
providers point at the fake upstream: whatever API the provider speaks behind it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from ratd.server import Daemon
from tests.fakes.openai_responses import SUMMARY_PARTS, TOOL_ANSWER
from tests.fakes.openai_upstream import (
    FERRY_CALL,
    REASONING_SIGNATURE,
    REASONING_TEXT,
    TEXT,
    TEXT_USAGE,
    FakeOpenAIUpstream,
)
from tests.support.openai_door import base_url, door_daemon

pytestmark = pytest.mark.timeout(60)

FERRY_TOOL = {
    "type": "function",
    "name": "lookup_ferry_schedule",
    "description": "Departures from a harbor on a date.",
    "parameters": {
        "type": "object",
        "properties": {"harbor": {"type": "string"}},
        "required": ["harbor"],
    },
    "strict": False,
}


@pytest.fixture
async def daemon(upstream: FakeOpenAIUpstream) -> AsyncIterator[Daemon]:
    async with door_daemon(upstream) as running:
        yield running


@pytest.fixture
async def api(daemon: Daemon) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=base_url(daemon), api_key="unused", max_retries=0
    ) as found:
        yield found


async def test_a_response_through_chat_completions_upstream(
    api: openai.AsyncOpenAI, upstream: FakeOpenAIUpstream
) -> None:
    reply = await api.responses.create(
        model="gpt-4o-mini", instructions="Be brief.", input="Who runs up the ash?"
    )
    assert reply.object == "response" and reply.status == "completed"
    assert reply.output_text == TEXT
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (
        TEXT_USAGE["prompt"],
        TEXT_USAGE["completion"],
    )
    sent = upstream.last("openai").json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who runs up the ash?"},
    ]


async def test_a_stream_in_the_responses_event_format(
    api: openai.AsyncOpenAI, upstream: FakeOpenAIUpstream
) -> None:
    kinds: list[str] = []
    text = ""
    async with api.responses.stream(model="gpt-4o-mini", input="Who runs up the ash?") as stream:
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = await stream.get_final_response()
    assert text == TEXT and final.output_text == TEXT
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert final.usage is not None and final.usage.total_tokens == sum(
        int(TEXT_USAGE[k]) for k in ("prompt", "completion")
    )
    assert upstream.last("openai").json["stream"] is True


async def test_a_reasoning_models_tool_conversation_end_to_end(
    api: openai.AsyncOpenAI, upstream: FakeOpenAIUpstream
) -> None:
    """SDK → door → the Responses dialect → the fake: turn 1's encrypted reasoning item
    comes out of the door as the SDK knows it and goes back in turn 2's input."""
    upstream.set_scenario("reasoning-tools", "openai")
    question = {"role": "user", "content": "When does the ferry leave Ålesund?"}
    async with api.responses.stream(
        model="gpt-6-luna", input=[question], tools=[FERRY_TOOL], reasoning={"effort": "low"}
    ) as stream:
        turn1 = await stream.get_final_response()
    reasoning, call = turn1.output
    assert reasoning.type == "reasoning" and call.type == "function_call"
    # Streamed, the item's id was announced before the upstream's came: the upstream's
    # item travels wrapped in encrypted_content (unstreamed, it would be as it is).
    assert reasoning.encrypted_content and reasoning.encrypted_content.startswith("ratd1.")
    assert [s.text for s in reasoning.summary] == [SUMMARY_PARTS[0]]
    assert (call.call_id, call.name, call.arguments) == (
        FERRY_CALL.id,
        FERRY_CALL.name,
        FERRY_CALL.arguments,
    )

    history: list[Any] = [question, *(item.model_dump(exclude_none=True) for item in turn1.output)]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "09:30"})
    turn2 = await api.responses.create(model="gpt-6-luna", input=history, tools=[FERRY_TOOL])
    assert turn2.output_text == TOOL_ANSWER
    sent = upstream.last("openai", "/responses").json["input"]
    assert sent[1]["id"].startswith("rs_")
    assert sent[1]["encrypted_content"] == upstream.responses_issued[sent[1]["id"]]

    # Unstreamed, the upstream's item is the door's: its own id, its encrypted content.
    upstream.set_scenario("reasoning-tools", "openai")
    whole = await api.responses.create(
        model="gpt-6-luna", input=[question], tools=[FERRY_TOOL], reasoning={"effort": "low"}
    )
    item = whole.output[0]
    assert item.type == "reasoning"
    assert item.encrypted_content == upstream.responses_issued[item.id]


async def test_another_apis_signed_reasoning_round_trips_through_encrypted_content(
    api: openai.AsyncOpenAI, upstream: FakeOpenAIUpstream
) -> None:
    """Claude's signed thinking (via OpenRouter) has no place in OpenAI's format: the
    door carries the whole block in ``encrypted_content`` and restores it."""
    upstream.set_scenario("reasoning", "openrouter")
    turn1 = await api.responses.create(model="yggdrasil/ash-3-mini", input="Roots?")
    reasoning = turn1.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert [s.text for s in reasoning.summary] == [REASONING_TEXT]
    upstream.set_scenario("text", "openrouter")
    history = [
        {"role": "user", "content": "Roots?"},
        *(item.model_dump(exclude_none=True) for item in turn1.output),
        {"role": "user", "content": "And branches?"},
    ]
    await api.responses.create(model="yggdrasil/ash-3-mini", input=history)
    (detail,) = upstream.last("openrouter").json["messages"][1]["reasoning_details"]
    assert (detail["signature"], detail["text"]) == (REASONING_SIGNATURE, REASONING_TEXT)


async def test_structured_output_and_options_reach_the_gateway(
    api: openai.AsyncOpenAI, upstream: FakeOpenAIUpstream
) -> None:
    schema = {
        "type": "object",
        "properties": {"roots": {"type": "integer"}},
        "required": ["roots"],
        "additionalProperties": False,
    }
    await api.responses.create(
        model="gpt-4o-mini",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Roots?"}]}],
        text={"format": {"type": "json_schema", "name": "roots", "schema": schema, "strict": True}},
        max_output_tokens=64,
        temperature=0.25,
        tools=[FERRY_TOOL],
        tool_choice={"type": "function", "name": "lookup_ferry_schedule"},
    )
    sent = upstream.last("openai").json
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "roots", "schema": schema, "strict": True},
    }
    assert sent["max_completion_tokens"] == 64 and sent["temperature"] == 0.25
    assert sent["tool_choice"] == {
        "type": "function",
        "function": {"name": "lookup_ferry_schedule"},
    }


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "function tools"),
        ({"include": ["file_search_call.results"]}, "not served"),
        ({"frobnicate": True}, "frobnicate"),
    ],
)
async def test_what_the_door_does_not_serve_is_a_400(
    api: openai.AsyncOpenAI, extra: dict[str, Any], words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await api.responses.create(model="gpt-4o-mini", input="hi", extra_body=extra)
    assert words in json.dumps(caught.value.body)


async def test_an_error_after_the_stream_began_is_an_error_event(
    api: openai.AsyncOpenAI, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("mid-stream-error", "openai")
    stream = await api.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    events = [event async for event in stream]
    assert events[0].type == "response.created"
    assert events[-1].type == "error"
    assert "The server had an error" in events[-1].message
    assert not any(e.type == "response.completed" for e in events)


BAD_BODIES = [
    {"input": "hi"},
    {"model": "gpt-4o-mini"},
    {"model": "gpt-4o-mini", "input": 7},
    {"model": "gpt-4o-mini", "input": []},
    {"model": "gpt-4o-mini", "input": [7]},
    {"model": "gpt-4o-mini", "input": [{"type": "computer_call"}]},
    {"model": "gpt-4o-mini", "input": [{"role": "tool", "content": "x"}]},
    {"model": "gpt-4o-mini", "input": [{"role": "user", "content": 3}]},
    {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
    {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
    {"model": "gpt-4o-mini", "input": [{"type": "function_call", "name": "f"}]},
    {"model": "gpt-4o-mini", "input": [{"type": "function_call_output", "output": "x"}]},
    {
        "model": "gpt-4o-mini",
        "input": [{"type": "function_call_output", "call_id": "c", "output": 5}],
    },
    {"model": "gpt-4o-mini", "input": [{"type": "reasoning", "encrypted_content": "ratd1.%%%"}]},
    {"model": "gpt-4o-mini", "input": "hi", "instructions": 5},
    {"model": "gpt-4o-mini", "input": "hi", "text": "json"},
    {"model": "gpt-4o-mini", "input": "hi", "text": {"format": {"type": "json_schema"}}},
    {"model": "gpt-4o-mini", "input": "hi", "text": {"format": {"type": "yaml"}}},
    {"model": "gpt-4o-mini", "input": "hi", "reasoning": "high"},
    {"model": "gpt-4o-mini", "input": "hi", "reasoning": {"effort": "extreme"}},
    {"model": "gpt-4o-mini", "input": "hi", "tool_choice": "sometimes"},
    {"model": "gpt-4o-mini", "input": "hi", "tools": {"type": "function"}},
    {"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "function"}]},
    {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 0},
    {"model": "gpt-4o-mini", "input": "hi", "temperature": "warm"},
    {"model": "gpt-4o-mini", "input": "hi", "stream": "yes"},
    {"model": "gpt-4o-mini", "input": "hi", "include": "all"},
    {"model": "gpt-4o-mini", "input": "hi", "background": True},
]


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_malformed_requests_are_400s_naming_the_field(
    daemon: Daemon, body: dict[str, Any]
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base_url(daemon)}/responses", json=body) as response,
    ):
        answer = await response.json()
    assert response.status == 400, answer
    assert answer["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("scenario", ["text", "tool-call", "reasoning-tools"])
async def test_the_doors_answers_validate_as_the_sdks_types(
    daemon: Daemon, upstream: FakeOpenAIUpstream, scenario: str
) -> None:
    """Strict validation (required fields, literal values) of the door's response object
    and of every event of its stream, with the openai package's pydantic types."""
    upstream.set_scenario(scenario, "openai")
    events = pydantic.TypeAdapter(ResponseStreamEvent)
    body = {"model": "gpt-6-luna", "input": "Ferry?", "tools": [FERRY_TOOL]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url(daemon)}/responses", json=body) as response:
            whole = Response.model_validate(await response.json())
        assert whole.output
        async with session.post(
            f"{base_url(daemon)}/responses", json={**body, "stream": True}
        ) as response:
            raw = (await response.read()).decode()
    frames = [f for f in raw.split("\n\n") if f.strip()]
    found = [events.validate_python(json.loads(f.split("data: ", 1)[1])) for f in frames]
    assert [e.sequence_number for e in found] == list(range(len(found)))
    assert found[-1].type == "response.completed"
    final = found[-1].response
    # A block known only at the end (no reasoning text streamed) comes after the output.
    assert sorted(item.type for item in final.output) == sorted(i.type for i in whole.output)


async def test_reasoning_announced_after_the_call_still_goes_back_before_it(
    api: openai.AsyncOpenAI, upstream: FakeOpenAIUpstream
) -> None:
    """Without a summary nothing of the reasoning streams: its item (known at the end)
    follows the call in the door's output, and still precedes it upstream next turn."""
    upstream.set_scenario("reasoning-tools", "openai")
    question = {"role": "user", "content": "When does the ferry leave?"}
    async with api.responses.stream(model="gpt-6-luna", input=[question], tools=[FERRY_TOOL]) as s:
        turn1 = await s.get_final_response()
    assert [item.type for item in turn1.output] == ["function_call", "reasoning"]
    call = turn1.output[0]
    history: list[Any] = [question, *(item.model_dump(exclude_none=True) for item in turn1.output)]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "09:30"})
    turn2 = await api.responses.create(model="gpt-6-luna", input=history, tools=[FERRY_TOOL])
    assert turn2.output_text == TOOL_ANSWER
    sent = upstream.last("openai", "/responses").json["input"]
    assert [item["type"] for item in sent] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
