"""The Gemini provider through a real in-process ratd, over real HTTP to the fake Gemini
API: request bodies as sent, plain and streamed answers, function calls with stable ids,
thought parts and signatures across turns, images, structured output, usage,
embeddings, token counting, the model list, and every error class."""

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
    ContentFiltered,
    ContextLengthExceeded,
    InvalidInput,
    Message,
    ModelNotAvailable,
    ModelNotFound,
    RateLimited,
    ServiceClient,
    ToolDefinition,
    chat_pb2,
    models_pb2,
)
from ratd import errors
from ratd.config import ProviderConfig
from ratd.providers import gemini_models, gemini_schemas
from ratd.providers.gemini import GeminiProvider, ResponseAssembler
from ratd.providers.streams import SseDecoder
from ratd.secrets import Secret
from tests.fakes import conformance as conf
from tests.fakes import gemini_upstream as fg
from tests.fakes.gemini_upstream import FakeGeminiUpstream
from tests.support.chat_events import (
    collect,
    conformance_events,
    joined,
    normalise,
    usage_dict,
    without_ids,
)
from tests.support.daemon import daemon_client, make_config

KEY = "AIzaSyTest-Ratatoskr-0123456789abcdefghi"
WEATHER = ToolDefinition(
    "get_weather",
    "Weather for a city",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
)
FERRY = ToolDefinition(
    "lookup_ferry",
    "Ferry departures",
    {"type": "object", "properties": {"harbor": {"type": "string"}}},
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01test-pixels"


def config_text(fake: FakeGeminiUpstream, policy: str = "warn") -> str:
    return f"""
[providers.google]
base_url = "{fake.base_url}"
[validation]
parameter_policy = "{policy}"
"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiUpstream]:
    async with FakeGeminiUpstream(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture
async def client(fake: FakeGeminiUpstream) -> AsyncIterator[ServiceClient]:
    async with daemon_client(make_config(config_text(fake), env={"GOOGLE_API_KEY": KEY})) as c:
        yield c


def sent(fake: FakeGeminiUpstream, suffix: str = "Content") -> dict[str, Any]:
    body = fake.last(suffix).json
    assert isinstance(body, dict)
    return body


# -- plain text ---------------------------------------------------------------------------------


async def test_text_request_and_response(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    messages = [
        Message.system("You are Ratatoskr."),
        Message.user("How many roots?"),
        Message.system("Answer in one sentence."),
    ]
    reply = await client.chat(
        messages,
        model="gemini-2.5-flash-lite",
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stop=["###"],
        max_tokens=300,
        seed=11,
        presence_penalty=0.5,
        frequency_penalty=0.25,
    )
    assert reply.content == fg.ANSWER
    assert reply.model == "gemini-2.5-flash-lite"
    assert reply.provider == "google"
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert usage_dict(reply.usage) == fg.expected_usage(fg.Usage(31, 14))

    request = fake.last(":generateContent")
    assert request.path == "/v1beta/models/gemini-2.5-flash-lite:generateContent"
    assert request.headers["x-goog-api-key"] == KEY
    assert KEY not in request.query and "key=" not in request.query  # never in the URL
    assert request.json == {
        "contents": [{"role": "user", "parts": [{"text": "How many roots?"}]}],
        "systemInstruction": {
            "parts": [{"text": "You are Ratatoskr."}, {"text": "Answer in one sentence."}]
        },
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "topK": 40,
            "maxOutputTokens": 300,
            "seed": 11,
            "presencePenalty": 0.5,
            "frequencyPenalty": 0.25,
            "stopSequences": ["###"],
        },
    }


async def test_stream_text(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    events = await collect(client.chat_stream("hi", model="gemini-2.5-flash-lite"))
    assert normalise(events) == [
        *(("content", p) for p in fg.ANSWER_PIECES),
        ("usage", fg.expected_usage(fg.Usage(31, 14))),
        ("done", "FINISH_REASON_STOP", "gemini-2.5-flash-lite", "google"),
    ]
    request = fake.last(":streamGenerateContent")
    assert request.query == "alt=sse"
    assert request.headers["x-goog-api-key"] == KEY


@pytest.mark.parametrize("write_size", [1, 5, 97])
async def test_stream_split_across_reads(write_size: int) -> None:
    """``\\r\\n\\r\\n`` separators cut between reads (even between \\r and \\n) decode the same."""
    async with (
        FakeGeminiUpstream(api_key=KEY, write_size=write_size) as fake,
        daemon_client(make_config(config_text(fake), env={"GOOGLE_API_KEY": KEY})) as client,
    ):
        events = await collect(client.chat_stream("hi", model="google:conf-reasoning"))
    usage = fg.expected_usage(fg.CONF_REASONING_USAGE)
    expected = conformance_events(
        "conf-reasoning", provider="google", model="conf-reasoning", usage=usage
    )
    assert normalise(events) == expected


async def test_raw_provider_options_merged_last(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    settings = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    await client.chat(
        "hi", model="gemini-2.5-flash-lite", raw_provider_options={"safetySettings": settings}
    )
    assert sent(fake)["safetySettings"] == settings


async def test_parallel_tool_calls_option_dropped(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    await client.chat("hi", tools=[FERRY], model="gemini-2.5-flash-lite", parallel_tool_calls=False)
    assert "parallel" not in json.dumps(sent(fake))


# -- conformance --------------------------------------------------------------------------------

SUCCESS_SCENARIOS = ("conf-text", "conf-tool", "conf-parallel", "conf-reasoning")


def conformance_usage(scenario: str) -> dict[str, int]:
    return fg.expected_usage(
        fg.CONF_REASONING_USAGE if scenario == "conf-reasoning" else fg.CONF_USAGE
    )


@pytest.mark.parametrize("scenario", SUCCESS_SCENARIOS)
async def test_conformance_stream(client: ServiceClient, scenario: str) -> None:
    events = await collect(client.chat_stream("hi", model=f"google:{scenario}", tools=[WEATHER]))
    expected = conformance_events(
        scenario, provider="google", model=scenario, usage=conformance_usage(scenario)
    )
    assert without_ids(normalise(events)) == without_ids(expected)
    starts = [e.tool_call_start for e in events if e.WhichOneof("event") == "tool_call_start"]
    assert [s.id for s in starts] == ["call_0_get_weather", "call_1_get_time"][: len(starts)]


@pytest.mark.parametrize("scenario", SUCCESS_SCENARIOS)
async def test_conformance_chat(client: ServiceClient, scenario: str) -> None:
    reply = await client.chat("hi", model=f"google:{scenario}", tools=[WEATHER])
    usage = conformance_usage(scenario)
    assert usage_dict(reply.usage) == usage
    assert usage["prompt_tokens"] == conf.PROMPT_TOKENS
    assert usage["completion_tokens"] == conf.COMPLETION_TOKENS
    assert usage["cached_prompt_tokens"] == conf.CACHED_PROMPT_TOKENS
    assert reply.provider == "google" and reply.model == scenario
    if scenario in ("conf-text", "conf-reasoning"):
        assert reply.content == conf.TEXT
        assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    if scenario == "conf-reasoning":
        assert usage["reasoning_tokens"] == conf.REASONING_TOKENS
        assert reply.reasoning == conf.REASONING
        assert [(b.text, b.signature) for b in reply.reasoning_blocks] == [
            (conf.REASONING, conf.REASONING_SIGNATURE)
        ]
    if scenario in ("conf-tool", "conf-parallel"):
        assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
        calls = conf.TOOL_CALLS[:1] if scenario == "conf-tool" else conf.TOOL_CALLS
        assert [(c.name, c.arguments) for c in reply.tool_calls] == list(calls)
        # The same ids as the stream gives: stable, from position and name.
        assert [c.id for c in reply.tool_calls] == ["call_0_get_weather", "call_1_get_time"][
            : len(calls)
        ]


# -- function calls -----------------------------------------------------------------------------


async def test_function_call_with_signature(client: ServiceClient) -> None:
    reply = await client.chat("ferry?", tools=[FERRY], model="google:function-call")
    assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    (call,) = reply.tool_calls
    assert (call.id, call.name) == ("call_0_lookup_ferry", "lookup_ferry")
    assert json.loads(call.arguments) == fg.FERRY_ARGS
    assert [(b.text, b.signature) for b in reply.reasoning_blocks] == [("", fg.CALL_SIGNATURE)]
    assert not reply.HasField("reasoning")
    assert usage_dict(reply.usage)["reasoning_tokens"] == 93


async def test_stream_function_call(client: ServiceClient) -> None:
    events = await collect(
        client.chat_stream("ferry?", tools=[FERRY], model="google:text-and-call")
    )
    arguments = json.dumps(fg.FERRY_ARGS, separators=(",", ":"), ensure_ascii=False)
    assert normalise(events) == [
        ("content", fg.PREAMBLE),
        ("tool_start", 0, "call_0_lookup_ferry", "lookup_ferry"),
        ("tool_delta", 0, arguments),
        ("tool_end", 0),
        ("usage", fg.expected_usage(fg.Usage(60, 21))),
        ("done", "FINISH_REASON_TOOL_CALLS", "text-and-call", "google"),
    ]


async def test_parallel_calls_get_distinct_stable_ids(client: ServiceClient) -> None:
    first = await client.chat("jokes", tools=[FERRY], model="google:parallel-calls")
    again = await client.chat("jokes", tools=[FERRY], model="google:parallel-calls")
    ids = [c.id for c in first.tool_calls]
    assert ids == ["call_0_generate_topic", "call_1_generate_topic", "call_2_generate_topic"]
    assert [c.id for c in again.tool_calls] == ids
    assert [json.loads(c.arguments) for c in first.tool_calls] == [{"topic": t} for t in fg.TOPICS]


async def test_function_call_without_arguments(client: ServiceClient) -> None:
    reply = await client.chat(
        "tide?", tools=[ToolDefinition("get_tide")], model="google:call-without-arguments"
    )
    assert reply.tool_calls[0].arguments == "{}"


async def test_upstream_call_id_kept_and_sent_back(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    first = await client.chat("ferry?", tools=[FERRY], model="google:call-with-id")
    assert first.tool_calls[0].id == "fc_4e1b2c3d"
    history = [
        Message.user("ferry?"),
        Message.assistant(tool_calls=first.tool_calls),
        Message.tool("fc_4e1b2c3d", {"departures": ["09:15"]}),
    ]
    await client.chat(history, tools=[FERRY], model="gemini-2.5-flash-lite")
    contents = sent(fake)["contents"]
    assert contents[1]["parts"][0]["functionCall"]["id"] == "fc_4e1b2c3d"
    assert contents[2]["parts"][0]["functionResponse"]["id"] == "fc_4e1b2c3d"


async def test_function_round_trip_history(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    """Tool results are functionResponse parts of one user turn, named by their call."""
    first = await client.chat("weather and time?", tools=[WEATHER], model="google:conf-parallel")
    assistant = Message.assistant(tool_calls=first.tool_calls)
    history = [
        Message.system("Be brief."),
        Message.user("weather and time?"),
        assistant,
        Message.tool(first.tool_calls[0].id, {"temp": 14, "sky": "rain"}),
        Message.tool(first.tool_calls[1].id, "09:15"),
        Message.user("Thanks!"),
    ]
    await client.chat(
        history, tools=[WEATHER], model="gemini-2.5-flash-lite", tool_choice="required"
    )
    body = sent(fake)
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "weather and time?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": conf.WEATHER_ARGS}},
                {"functionCall": {"name": "get_time", "args": conf.TIME_ARGS}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"temp": 14, "sky": "rain"},
                    }
                },
                {"functionResponse": {"name": "get_time", "response": {"result": "09:15"}}},
                {"text": "Thanks!"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    # additionalProperties is not a Gemini schema keyword: left out.
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string"},
                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                        },
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("lookup_ferry", {"mode": "ANY", "allowedFunctionNames": ["lookup_ferry"]}),
    ],
)
async def test_tool_choice(
    client: ServiceClient, fake: FakeGeminiUpstream, choice: str, wire: dict[str, Any]
) -> None:
    await client.chat("hi", tools=[FERRY], model="gemini-2.5-flash-lite", tool_choice=choice)
    assert sent(fake)["toolConfig"] == {"functionCallingConfig": wire}


async def test_function_without_parameters(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    await client.chat(
        "hi", tools=[ToolDefinition("get_tide", "Tide now")], model="gemini-2.5-flash-lite"
    )
    assert sent(fake)["tools"] == [
        {"functionDeclarations": [{"name": "get_tide", "description": "Tide now"}]}
    ]


def test_schema_translation() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email"},
            "note": {"type": ["string", "null"]},
            "size": {"type": ["integer", "string"]},
            "place": {"$ref": "#/$defs/Place"},
            "mode": {"const": "fast"},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "choice": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
        },
        "additionalProperties": False,
        "$defs": {
            "Place": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "title": "Place",
            }
        },
    }
    assert gemini_schemas.gemini_schema(schema) == {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string"},
            "note": {"type": "string", "nullable": True},
            "size": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "place": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "title": "Place",
            },
            "mode": {"enum": ["fast"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "choice": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
        },
    }


# A tree: a node whose children are nodes. Gemini's Schema object has no $ref, so no
# finite inlining of it is exact (it used to be cut at 16 levels into {"type": "object"}).
TREE = {
    "type": "object",
    "properties": {
        "label": {"type": "string"},
        "root": {"$ref": "#/$defs/Node"},
    },
    "required": ["label"],
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
            "required": ["name"],
        }
    },
}


def test_recursive_schema_refused_by_the_translation() -> None:
    """Gemini's Schema object cannot say a recursive $ref: the translation refuses it,
    naming the field and the definition, rather than cutting it silently."""
    with pytest.raises(gemini_schemas.RecursiveSchema) as caught:
        gemini_schemas.gemini_schema(TREE, "tools[0].parameters_json")
    assert isinstance(caught.value, errors.InvalidInput)
    assert caught.value.field == "tools[0].parameters_json"
    assert "#/$defs/Node" in str(caught.value)
    # Through others (A -> B -> A) and to the root ("#") alike.
    mutual = {
        "$ref": "#/$defs/A",
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}},
        },
    }
    with pytest.raises(gemini_schemas.RecursiveSchema, match="#/\\$defs/A"):
        gemini_schemas.gemini_schema(mutual)
    itself = {"type": "object", "properties": {"again": {"$ref": "#"}}}
    with pytest.raises(gemini_schemas.RecursiveSchema, match="'#'"):
        gemini_schemas.gemini_schema(itself)


def test_unresolvable_ref_refused() -> None:
    """A $ref that names nothing in the schema is the caller's error, not {"type": "object"}."""
    schema = {"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}}
    with pytest.raises(errors.InvalidInput, match="#/\\$defs/Missing") as caught:
        gemini_schemas.gemini_schema(schema, "options.response_format.json_schema")
    assert caught.value.field == "options.response_format.json_schema"
    remote = {"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}}
    with pytest.raises(errors.InvalidInput, match=r"example\.com"):
        gemini_schemas.gemini_schema(remote)


def test_deep_ref_chain_refused_not_internal() -> None:
    """A long chain of distinct definitions (no cycle) is refused by its depth, before it
    could exhaust the interpreter's stack (which would be INTERNAL)."""
    defs = {
        f"D{i}": {"type": "object", "properties": {"x": {"$ref": f"#/$defs/D{i + 1}"}}}
        for i in range(2000)
    }
    defs["D2000"] = {"type": "string"}
    with pytest.raises(errors.InvalidInput, match="levels"):
        gemini_schemas.gemini_schema({"$ref": "#/$defs/D0", "$defs": defs})


def test_schema_too_deep_for_the_body_refused() -> None:
    """A value nested just within what ratd parses (255 levels) but not within what the
    request body around it can encode is refused by name, not INTERNAL at encoding."""
    deep: Any = "leaf"
    for _ in range(245):
        deep = [deep]
    schema = {"type": "object", "properties": {"x": {"type": "string", "default": deep}}}
    with pytest.raises(errors.InvalidInput, match="nests too deeply"):
        gemini_schemas.gemini_schema(schema, "tools[0].parameters_json")


async def test_recursive_tool_schema_sent_as_json_schema(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    """Gemini takes JSON Schema with $defs and $ref as is in ``parametersJsonSchema``
    (it unrolls cycles itself): a recursive schema goes there verbatim."""
    tree = ToolDefinition("plant", "Plant a tree", TREE)
    await client.chat("hi", model="gemini-2.5-flash-lite", tools=[WEATHER, tree])
    (declarations,) = (t["functionDeclarations"] for t in sent(fake)["tools"])
    weather, planted = declarations
    assert "parameters" in weather and "parametersJsonSchema" not in weather
    assert planted["parametersJsonSchema"] == TREE
    assert "parameters" not in planted


async def test_recursive_response_schema_sent_as_json_schema(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    await client.chat(
        "describe", model="google:structured", response_format={"name": "t", "schema": TREE}
    )
    generation = sent(fake)["generationConfig"]
    assert generation["responseJsonSchema"] == TREE
    assert "responseSchema" not in generation
    assert generation["responseMimeType"] == "application/json"


async def test_recursive_schema_too_large_refused(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    """Sent as is, a recursive schema is still bounded by size."""
    big = {**TREE, "description": "x" * (gemini_schemas.MAX_SCHEMA_GROWTH_BYTES + 1)}
    with pytest.raises(InvalidInput) as caught:
        await client.chat("hi", model="gemini-2.5-flash-lite", tools=[ToolDefinition("t", "", big)])
    assert caught.value.field == "tools[0].parameters_json"
    assert "MiB" in str(caught.value)
    assert fake.requests == []


# Definitions that each refer twice to the next (no cycle): once inlined (Gemini's Schema
# object takes no $ref), 2**20 copies of the last (issue #13: 213 bytes of $refs became a
# 3.9 MB upstream body).
REF_BOMB = {
    "$ref": "#/$defs/N0",
    "$defs": {
        **{
            f"N{i}": {
                "type": "object",
                "properties": {
                    "a": {"$ref": f"#/$defs/N{i + 1}"},
                    "b": {"$ref": f"#/$defs/N{i + 1}"},
                },
            }
            for i in range(20)
        },
        "N20": {"type": "string"},
    },
}


async def test_schema_ref_bomb_in_tool_refused(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    bomb = ToolDefinition("explode", "Expands without end", REF_BOMB)
    with pytest.raises(InvalidInput) as caught:
        await client.chat("hi", model="gemini-2.5-flash-lite", tools=[WEATHER, bomb])
    assert caught.value.field == "tools[1].parameters_json"
    assert "$ref" in str(caught.value)
    assert fake.requests == []


async def test_schema_ref_bomb_in_response_format_refused(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await collect(
            client.chat_stream("describe", model="gemini-2.5-flash-lite", response_format=REF_BOMB)
        )
    assert caught.value.field == "options.response_format.json_schema"
    assert fake.requests == []
    # The daemon still serves the next call.
    reply = await client.chat("hi", model="gemini-2.5-flash-lite")
    assert reply.content


def test_schema_within_budget_still_inlined() -> None:
    """A wide but finite schema (many refs to one definition) is inlined as before."""
    leaf = {"type": "object", "properties": {"n": {"type": "integer"}}}
    schema = {
        "type": "object",
        "properties": {f"p{i}": {"$ref": "#/$defs/Leaf"} for i in range(200)},
        "$defs": {"Leaf": leaf},
    }
    converted = gemini_schemas.gemini_schema(schema)
    assert converted["properties"]["p199"] == leaf


def test_schema_text_copied_by_refs_counts_by_size() -> None:
    """Few nodes, but one long description copied by every $ref: refused by its size."""
    schema = {
        "type": "object",
        "properties": {f"p{i}": {"$ref": "#/$defs/Long"} for i in range(100)},
        "$defs": {"Long": {"type": "string", "description": "x" * 200_000}},
    }
    with pytest.raises(errors.InvalidInput) as caught:
        gemini_schemas.gemini_schema(schema, "tools[0].parameters_json")
    assert caught.value.field == "tools[0].parameters_json"
    assert "MiB" in str(caught.value)


def test_malformed_schema_keywords_ignored() -> None:
    """Keywords of the wrong JSON type are dropped, not a crash (INTERNAL)."""
    schema = {
        "type": "object",
        "definitions": ["not", "an", "object"],
        "allOf": ["not a schema"],
        "properties": {"x": {"type": "string", "format": ["date-time"]}},
    }
    assert gemini_schemas.gemini_schema(schema) == {
        "type": "object",
        "properties": {"x": {"type": "string"}},
    }


# -- thinking -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "thinking"),
    [
        ({"reasoning_effort": "high"}, {"thinkingBudget": 16384, "includeThoughts": True}),
        ({"reasoning_budget": 2048}, {"thinkingBudget": 2048, "includeThoughts": True}),
        ({"reasoning_effort": "none"}, {"thinkingBudget": 0, "includeThoughts": False}),
        (
            {"reasoning_effort": "low", "exclude_reasoning": True},
            {"thinkingBudget": 1024, "includeThoughts": False},
        ),
        ({"exclude_reasoning": False}, {"includeThoughts": True}),
    ],
)
async def test_thinking_config(
    client: ServiceClient,
    fake: FakeGeminiUpstream,
    options: dict[str, Any],
    thinking: dict[str, Any],
) -> None:
    await client.chat("hi", model="gemini-2.5-flash-lite", **options)
    assert sent(fake)["generationConfig"]["thinkingConfig"] == thinking


@pytest.mark.parametrize(
    ("model", "options", "thinking"),
    [
        ("gemini-3-flash-preview", {"reasoning_effort": "medium"}, {"thinkingLevel": "medium"}),
        ("gemini-3-flash-preview", {"reasoning_effort": "xhigh"}, {"thinkingLevel": "high"}),
        ("gemini-3.1-pro-preview", {"reasoning_effort": "minimal"}, {"thinkingLevel": "low"}),
        ("gemini-3.1-pro-preview", {"reasoning_effort": "medium"}, {"thinkingLevel": "medium"}),
        # Gemini 3 cannot stop thinking: "none" is the least it does, and none of it shown.
        (
            "gemini-3-flash-preview",
            {"reasoning_effort": "none"},
            {"thinkingLevel": "minimal", "includeThoughts": False},
        ),
        # An explicit budget is still passed as one (the API accepts it).
        ("gemini-3.1-pro-preview", {"reasoning_budget": 4096}, {"thinkingBudget": 4096}),
    ],
)
async def test_gemini_3_takes_a_thinking_level(
    client: ServiceClient,
    fake: FakeGeminiUpstream,
    model: str,
    options: dict[str, Any],
    thinking: dict[str, Any],
) -> None:
    await client.chat("hi", model=model, **options)
    assert sent(fake)["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, **thinking}


def test_gemini_3_pro_took_only_low_and_high() -> None:
    """Gemini 3 Pro is past its shutdown (calls fail fast), but its level rule stays:
    low and high only, where later Pro models take low to high."""
    from ratd.providers.gemini import thinking_levels

    assert thinking_levels("gemini-3-pro-preview") == ("low", "high")
    assert thinking_levels("gemini-3.1-pro-preview") == ("low", "medium", "high")


async def test_thinking_response(client: ServiceClient) -> None:
    reply = await client.chat("roots?", model="google:thinking", reasoning_effort="medium")
    assert reply.reasoning == fg.THOUGHT
    assert reply.content == fg.ANSWER
    assert [(b.text, b.signature) for b in reply.reasoning_blocks] == [
        (fg.THOUGHT, fg.THOUGHT_SIGNATURE)
    ]
    assert usage_dict(reply.usage) == fg.expected_usage(fg.Usage(34, 20, thoughts=241))
    assert reply.usage.completion_tokens == 20 + 241
    assert reply.usage.total_tokens == 34 + 20 + 241


async def test_thinking_stream(client: ServiceClient) -> None:
    events = await collect(
        client.chat_stream("roots?", model="google:thinking", reasoning_effort="medium")
    )
    assert normalise(events)[:-2] == [
        *(("reasoning", p) for p in fg.THOUGHT_PIECES),
        ("signature", fg.THOUGHT_SIGNATURE),
        ("block", "".join(fg.THOUGHT_PIECES), fg.THOUGHT_SIGNATURE, b""),
        *(("content", p) for p in fg.ANSWER_PIECES),
    ]


async def test_signature_without_thoughts(client: ServiceClient) -> None:
    reply = await client.chat("hi", model="google:signature-only")
    assert not reply.HasField("reasoning")
    assert [(b.text, b.signature) for b in reply.reasoning_blocks] == [("", fg.THOUGHT_SIGNATURE)]


async def test_reasoning_excluded_from_output(client: ServiceClient) -> None:
    reply = await client.chat(
        "roots?", model="google:thinking", reasoning_effort="low", exclude_reasoning=True
    )
    assert not reply.HasField("reasoning")
    events = await collect(
        client.chat_stream(
            "roots?", model="google:thinking", reasoning_effort="low", exclude_reasoning=True
        )
    )
    # The signed block still comes, to send back (as with Chat).
    assert {e[0] for e in normalise(events)} == {"content", "block", "usage", "done"}
    assert [e.reasoning_block for e in events if e.HasField("reasoning_block")] == list(
        reply.reasoning_blocks
    )


async def test_signatures_sent_back_on_their_parts(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    """Gemini 3 requires a call's thought signature back on that call in the next turn."""
    first = await client.chat(
        "jokes", tools=[FERRY], model="google:parallel-calls", reasoning_effort="low"
    )
    results = [Message.tool(call.id, "a joke") for call in first.tool_calls]
    await client.chat(
        [Message.user("jokes"), Message.from_response(first), *results],
        tools=[FERRY],
        model="gemini-2.5-flash-lite",
    )
    model_turn = sent(fake)["contents"][1]
    assert model_turn["role"] == "model"
    assert [p.get("thoughtSignature") for p in model_turn["parts"]] == [
        fg.CALL_SIGNATURE,
        None,
        None,
    ]
    # Streamed and collected, the same turn goes back the same.
    streamed = await ChatStreamCollector.collect(
        client.chat_stream(
            "jokes", tools=[FERRY], model="google:parallel-calls", reasoning_effort="low"
        )
    )
    assert streamed == first
    await client.chat(
        [Message.user("jokes"), Message.from_response(streamed), *results],
        tools=[FERRY],
        model="gemini-2.5-flash-lite",
    )
    assert sent(fake)["contents"][1] == model_turn
    assert sent(fake)["contents"][2]["parts"][0] == {
        "functionResponse": {"name": "generate_topic", "response": {"result": "a joke"}}
    }

    text_turn = Message.assistant("Three roots.")
    # Claude's signature would be refused: only Gemini's own (or untagged) blocks go back.
    text_turn.reasoning_blocks.add(text="claude", signature="c-sig", format="anthropic-claude-v1")
    text_turn.reasoning_blocks.add(text="thinking", signature=fg.THOUGHT_SIGNATURE)
    await client.chat(
        [Message.user("roots?"), text_turn, Message.user("sure?")], model="gemini-2.5-flash-lite"
    )
    assert sent(fake)["contents"][1]["parts"] == [
        {"text": "Three roots.", "thoughtSignature": fg.THOUGHT_SIGNATURE}
    ]


# -- images -------------------------------------------------------------------------------------


async def test_images(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    message = Message.user("What is in these?")
    message.parts.add(image=chat_pb2.ImagePart(data=PNG, mime_type="image/png"))
    message.parts.add(image=chat_pb2.ImagePart(url="https://example.org/ash.jpg"))
    message.parts.add(
        image=chat_pb2.ImagePart(url="https://example.org/tree?size=2", mime_type="image/webp")
    )
    message.parts.add(image=chat_pb2.ImagePart(url="data:image/gif;base64,R0lGODlh"))
    await client.chat([message], model="gemini-2.5-flash-lite")
    assert sent(fake)["contents"][0]["parts"] == [
        {"text": "What is in these?"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.org/ash.jpg"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.org/tree?size=2"}},
        {"inlineData": {"mimeType": "image/gif", "data": "R0lGODlh"}},
    ]


async def test_image_in_system_refused(client: ServiceClient) -> None:
    system = chat_pb2.Message(
        role=chat_pb2.ROLE_SYSTEM,
        parts=[chat_pb2.ContentPart(image=chat_pb2.ImagePart(url="https://example.org/a.png"))],
    )
    with pytest.raises(InvalidInput) as caught:
        await client.chat([system, Message.user("hi")], model="gemini-2.5-flash-lite")
    assert caught.value.field == "messages[0].parts[0]"


# -- structured output --------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "legs": {"type": "integer"}},
    "required": ["name"],
    "additionalProperties": False,
}


async def test_structured_output(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    reply = await client.chat(
        "describe",
        model="google:structured",
        response_format={"name": "creature", "schema": SCHEMA},
    )
    assert json.loads(reply.content) == json.loads(fg.STRUCTURED)
    assert sent(fake)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "legs": {"type": "integer"}},
            "required": ["name"],
        },
    }
    events = await collect(
        client.chat_stream("describe", model="google:structured", response_format=SCHEMA)
    )
    assert joined(events, "content") == fg.STRUCTURED


async def test_json_object(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    await client.chat("describe", model="google:structured", response_format="json_object")
    assert sent(fake)["generationConfig"] == {"responseMimeType": "application/json"}


# -- finish reasons and blocks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "finish", "content"),
    [
        ("max-tokens", chat_pb2.FINISH_REASON_LENGTH, "".join(fg.ANSWER_PIECES[:2])),
        ("safety", chat_pb2.FINISH_REASON_CONTENT_FILTER, ""),
        ("recitation", chat_pb2.FINISH_REASON_CONTENT_FILTER, fg.ANSWER_PIECES[0]),
    ],
)
async def test_finish_reasons(
    client: ServiceClient, scenario: str, finish: int, content: str
) -> None:
    reply = await client.chat("hi", model=f"google:{scenario}")
    assert (reply.finish_reason, reply.content) == (finish, content)
    events = await collect(client.chat_stream("hi", model=f"google:{scenario}"))
    assert events[-1].done and events[-1].finish_reason == finish
    assert joined(events, "content") == content


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_blocked_prompt(client: ServiceClient, stream: bool) -> None:
    with pytest.raises(ContentFiltered) as caught:
        if stream:
            await collect(client.chat_stream("hi", model="google:blocked"))
        else:
            await client.chat("hi", model="google:blocked")
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "PROHIBITED_CONTENT" in str(caught.value)


# -- errors -------------------------------------------------------------------------------------


async def test_fractional_retry_delay(client: ServiceClient) -> None:
    with pytest.raises(RateLimited) as caught:
        await client.chat("hi", model="google:rate-limit-fractional")
    assert caught.value.retry_after == pytest.approx(34.5)
    assert str(caught.value) == "Rate limited, retry after 34.5s"


async def test_context_too_long(client: ServiceClient) -> None:
    with pytest.raises(ContextLengthExceeded) as caught:
        await client.chat("hi", model="google:context-too-long")
    assert caught.value.limit == 1048576


@pytest.mark.parametrize(
    ("key", "status"),
    [("AIzaSyWrong-key-000000000000000000000", 400), (None, 403)],
    ids=["wrong key (400 API_KEY_INVALID)", "no key (403)"],
)
async def test_bad_key(fake: FakeGeminiUpstream, key: str | None, status: int) -> None:
    env = {"GOOGLE_API_KEY": key} if key else {}
    async with daemon_client(make_config(config_text(fake), env=env)) as client:
        with pytest.raises(AuthenticationFailed) as caught:
            await client.chat("hi", model="gemini-2.5-flash-lite")
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.metadata["upstream_status"] == str(status)
    assert key is None or key not in str(caught.value)


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [("internal-mid-stream", "PROVIDER_UNAVAILABLE"), ("ended-early", "UPSTREAM_PROTOCOL")],
)
async def test_broken_streams(client: ServiceClient, scenario: str, reason: str) -> None:
    got: list[str] = []
    with pytest.raises(ModelNotAvailable) as caught:
        async for event in client.chat_stream("hi", model=f"google:{scenario}"):
            got.append(event.content)
    assert caught.value.reason == reason
    assert got == list(fg.ANSWER_PIECES[:2])


async def test_upstream_refusals_surface_as_invalid_argument(client: ServiceClient) -> None:
    """What the API refuses comes back as INVALID_ARGUMENT with its message."""
    with pytest.raises(InvalidInput) as caught:
        await client.chat(
            "hi", model="gemini-2.5-flash-lite", raw_provider_options={"bogusField": 1}
        )
    assert caught.value.reason == "UPSTREAM_INVALID_REQUEST"
    assert "bogusField" in str(caught.value)


# -- generate -----------------------------------------------------------------------------------


async def test_generate(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    reply = await client.generate("How many roots?", model="gemini-2.5-flash-lite", max_tokens=64)
    assert reply.text == fg.ANSWER
    assert reply.provider == "google"
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert sent(fake) == {
        "contents": [{"role": "user", "parts": [{"text": "How many roots?"}]}],
        "generationConfig": {"maxOutputTokens": 64},
    }


async def test_generate_stream(client: ServiceClient) -> None:
    events = [
        e
        async for e in client.generate_stream(
            "roots?", model="google:thinking", reasoning_effort="low"
        )
    ]
    assert "".join(e.text for e in events) == fg.ANSWER
    assert "".join(e.reasoning for e in events) == fg.THOUGHT
    assert events[-1].done and events[-1].finish_reason == chat_pb2.FINISH_REASON_STOP


# -- embeddings and tokens ----------------------------------------------------------------------


async def test_embed_one(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    reply = await client.embed("the ash tree", model="gemini-embedding-001")
    assert list(reply.values) == pytest.approx(fg.fake_embedding("the ash tree"))
    assert reply.dimensions == fg.EMBED_DIMENSIONS
    request = fake.last(":embedContent")
    assert request.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert request.json == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "the ash tree"}]},
    }
    assert request.headers["x-goog-api-key"] == KEY


async def test_embed_batch_in_chunks_of_100(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    texts = [f"text number {i}" for i in range(230)]
    reply = await client.embed_batch(texts, model="gemini-embedding-001")
    assert len(reply) == 230
    for text, embedding in zip(texts, reply, strict=True):
        assert list(embedding.values) == pytest.approx(fg.fake_embedding(text))
    batches = [r.json["requests"] for r in fake.requests_to(":batchEmbedContents")]
    assert sorted(len(b) for b in batches) == [30, 100, 100]
    assert all(
        item["model"] == "models/gemini-embedding-001" for batch in batches for item in batch
    )


async def test_embed_errors(client: ServiceClient) -> None:
    with pytest.raises(ModelNotFound):
        await client.embed("x", model="google:conf-missing")
    with pytest.raises(RateLimited) as caught:
        await client.embed_batch(["a", "b"], model="google:conf-rate-limit")
    assert caught.value.retry_after == conf.RETRY_AFTER_SECONDS


async def test_count_tokens(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    count = await client.count_tokens("one two three four", model="gemini-2.5-flash-lite")
    assert count == 4
    request = fake.last(":countTokens")
    assert request.json == {
        "contents": [{"role": "user", "parts": [{"text": "one two three four"}]}]
    }


# -- models -------------------------------------------------------------------------------------


async def test_list_models_follows_pages(fake: FakeGeminiUpstream) -> None:
    fake.models_page_size = 2
    provider = GeminiProvider(
        "google", ProviderConfig(kind="google", base_url=fake.base_url), Secret(KEY)
    )
    try:
        models = await provider.list_models()
    finally:
        await provider.close()
    assert [m.id for m in models] == [
        "gemini-2.5-flash",
        "gemini-2.0-flash",
        "gemini-embedding-001",
    ]
    flash, _, embedder = models
    assert flash.context_window == 1048576 and flash.max_output_tokens == 65536
    assert models_pb2.MODEL_CAPABILITY_CHAT in flash.capabilities
    assert models_pb2.MODEL_CAPABILITY_REASONING in flash.capabilities
    assert list(embedder.capabilities) == [
        models_pb2.MODEL_CAPABILITY_EMBED,
        models_pb2.MODEL_CAPABILITY_TOKEN_COUNTING,
    ]
    assert [r.query for r in fake.requests_to("/v1beta/models")] == [
        "pageSize=1000",
        "pageSize=1000&pageToken=2",
    ]
    assert all(r.headers["x-goog-api-key"] == KEY for r in fake.requests_to("/v1beta/models"))


# -- the real recorded fixtures (../shared) -----------------------------------------------------


def _fixtures(shared_dir: Path, prefix: str) -> list[tuple[dict[str, Any], Path]]:
    folder = shared_dir / "fixtures" / "providers" / "gemini"
    return [
        (meta, folder / meta["response_file"])
        for meta in (json.loads(p.read_text()) for p in sorted(folder.glob(f"{prefix}*.meta.json")))
    ]


def test_recorded_responses_parse(shared_dir: Path) -> None:
    cases = _fixtures(shared_dir, "generate-") + _fixtures(shared_dir, "stream-")
    assert len(cases) == 7
    for meta, path in cases:
        expect = meta["expect"]
        assembler = ResponseAssembler("google")
        if path.suffix == ".json":
            assembler.feed(json.loads(path.read_text()), "m")
        else:
            decoder = SseDecoder()
            for event in [*decoder.feed(path.read_bytes()), *decoder.close()]:
                assembler.feed(json.loads(event.data), "m")
        reply = assembler.response("m")
        assert reply.content == expect.get("text", ""), path.name
        if "reasoning" in expect:
            assert reply.reasoning.startswith(expect["reasoning"][:40]), path.name
        calls = [(c.name, json.loads(c.arguments)) for c in reply.tool_calls]
        assert calls == [(c["name"], c["arguments_json"]) for c in expect.get("tool_calls", [])], (
            path.name
        )
        assert len({c.id for c in reply.tool_calls}) == len(reply.tool_calls), path.name
        signatures = [b.signature for b in reply.reasoning_blocks if b.signature]
        assert len(signatures) == expect.get("thought_signature_count", len(signatures)), path.name
        usage = expect["usage"]
        reasoning = usage.get("reasoning_tokens", 0)
        assert reply.usage.prompt_tokens == usage["prompt_tokens"], path.name
        # Normalised completion tokens include the thoughts Gemini counts apart.
        assert reply.usage.completion_tokens == usage["completion_tokens"] + reasoning, path.name
        assert reply.usage.total_tokens == usage["total_tokens"], path.name
        expected_finish = (
            chat_pb2.FINISH_REASON_TOOL_CALLS if calls else chat_pb2.FINISH_REASON_STOP
        )
        assert reply.finish_reason == expected_finish, path.name


ERROR_CLASSES = {
    "auth": "AuthenticationFailed",
    "model_not_found": "ModelNotFound",
    "rate_limit": "RateLimited",
    "overloaded": "ProviderOverloaded",
}


def test_recorded_errors_classify(shared_dir: Path) -> None:
    provider = GeminiProvider("google", ProviderConfig(kind="google", base_url="http://x"), None)
    cases = _fixtures(shared_dir, "error-")
    assert len(cases) == 5
    for meta, path in cases:
        expect = meta["expect"]["error"]
        error = provider.error_from_body(
            meta["status"], json.loads(path.read_text()), "m", meta["headers"]
        )
        assert type(error).__name__ == ERROR_CLASSES[expect["class"]], path.name
        assert error.retry_after == expect.get("retry_after_seconds"), path.name


def test_recorded_embeddings_and_models(shared_dir: Path) -> None:
    folder = shared_dir / "fixtures" / "providers" / "gemini"
    batch = json.loads((folder / "batch-embed-contents.response.json").read_text())
    assert [len(e["values"]) for e in batch["embeddings"]] == [768, 768, 768]
    listed = json.loads((folder / "models-list.response.json").read_text())
    infos = [gemini_models.model_info(item, "google") for item in listed["models"]]
    assert [i.id for i in infos] == ["gemini-2.5-flash", "gemini-2.0-flash", "text-embedding-004"]
    count = json.loads((folder / "count-tokens.response.json").read_text())
    assert count["totalTokens"] == 5
