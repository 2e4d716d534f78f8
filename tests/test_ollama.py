"""The Ollama provider through a real in-process ratd and real HTTP to a fake Ollama on
loopback: request bodies as sent, replies and streams in order, tool calls, thinking,
usage, native generation, embeddings, models, and every error class."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ratatoskr import (
    AuthenticationFailed,
    ChatOptions,
    GenerateOptions,
    Message,
    ModelNotAvailable,
    ModelNotFound,
    RatatoskrError,
    RateLimited,
    ServiceClient,
    ToolCall,
    ToolDefinition,
    UnsupportedParameter,
    chat_pb2,
    models_pb2,
)
from ratd import errors
from ratd.config import Config, ProviderConfig
from ratd.errors import ProviderUnavailable
from ratd.providers.ollama import OllamaProvider, stable_call_id
from ratd.secrets import Secret
from tests.fakes import conformance as conf
from tests.fakes.ollama_upstream import (
    BUSY_ERROR,
    CALL_IDS,
    JSON_TEXT,
    LEGACY_ARGS,
    LENGTH_PIECES,
    MEMORY_ERROR,
    SERVER_ERROR,
    STREAM_ERROR,
    FakeOllama,
    fake_vector,
)
from tests.support.daemon import daemon_client, make_config
from tests.support.replay import load_fixture, replay

KEY = "ollama-test-key-4f9a2c"
WEATHER_TOOL = ToolDefinition(
    "get_weather",
    "Weather forecast for a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        "required": ["city"],
    },
)
TIME_TOOL = ToolDefinition(
    "get_time", "", {"type": "object", "properties": {"city": {"type": "string"}}}
)
USAGE = (conf.PROMPT_TOKENS, conf.COMPLETION_TOKENS, conf.PROMPT_TOKENS + conf.COMPLETION_TOKENS)


def config_for(base_url: str, key: str | None = None) -> Config:
    env = {"OLLAMA_API_KEY": key} if key else {}
    return make_config(f'[providers.ollama]\nbase_url = "{base_url}"\n', env=env)


@pytest.fixture
async def ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama() as fake:
        yield fake


@pytest.fixture
async def client(ollama: FakeOllama) -> AsyncIterator[ServiceClient]:
    async with daemon_client(config_for(ollama.base_url)) as c:
        yield c


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


def kinds(events: list[Any]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def sent(ollama: FakeOllama, path: str = "/api/chat") -> dict[str, Any]:
    body = ollama.last(path).json
    assert isinstance(body, dict)
    return body


def usage_tuple(usage: chat_pb2.Usage) -> tuple[int, int, int]:
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- chat --------------------------------------------------------------------------------------


async def test_chat_text_and_the_request_as_sent(client: ServiceClient, ollama: FakeOllama) -> None:
    reply = await client.chat("Say the pangram.", model="conf-text:latest")
    assert reply.content == conf.TEXT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert reply.provider == "ollama"
    assert reply.model == "conf-text:latest"
    assert usage_tuple(reply.usage) == USAGE
    assert reply.usage.cached_prompt_tokens == conf.CACHED_PROMPT_TOKENS
    assert not reply.usage.HasField("reasoning_tokens")
    assert not reply.HasField("reasoning")
    body = sent(ollama)
    assert body == {
        "model": "conf-text:latest",
        "messages": [{"role": "user", "content": "Say the pangram."}],
        "stream": False,
    }
    assert "Authorization" not in ollama.last().headers


async def test_provider_prefix_routes_to_ollama(client: ServiceClient, ollama: FakeOllama) -> None:
    reply = await client.chat("hi", model="ollama:conf-text")
    assert reply.content == conf.TEXT
    assert sent(ollama)["model"] == "conf-text"


async def test_options_map_into_options(client: ServiceClient, ollama: FakeOllama) -> None:
    await client.chat(
        [Message.system("Be brief."), Message.user("hi")],
        model="conf-text:latest",
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_tokens=128,
        stop=["\n\n", "END"],
        seed=42,
        frequency_penalty=0.5,
        presence_penalty=-0.25,
    )
    body = sent(ollama)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert body["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 42,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.25,
        "num_predict": 128,
        "stop": ["\n\n", "END"],
    }
    assert "format" not in body and "think" not in body and "tools" not in body


async def test_raw_provider_options_go_to_options_or_the_body(
    client: ServiceClient, ollama: FakeOllama
) -> None:
    await client.chat(
        "hi",
        model="conf-text:latest",
        temperature=0.5,
        raw_provider_options={
            "num_ctx": 8192,
            "keep_alive": "10m",
            "options": {"mirostat": 2, "temperature": 0.1},
            "stream": True,  # ratd owns this one
        },
    )
    body = sent(ollama)
    assert body["options"] == {"temperature": 0.1, "num_ctx": 8192, "mirostat": 2}
    assert body["keep_alive"] == "10m"
    assert body["stream"] is False


async def test_structured_output_maps_to_format(client: ServiceClient, ollama: FakeOllama) -> None:
    reply = await client.chat("City?", model="json:latest", response_format="json_object")
    assert json.loads(reply.content) == json.loads(JSON_TEXT)
    assert sent(ollama)["format"] == "json"

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    await client.chat("City?", model="json:latest", response_format=schema)
    assert sent(ollama)["format"] == schema

    wrapped = {"name": "city", "schema": schema, "strict": True}
    await client.chat("City?", model="json:latest", response_format=wrapped)
    assert sent(ollama)["format"] == schema

    await client.chat("City?", model="json:latest", response_format="text")
    assert "format" not in sent(ollama)


async def test_images_are_sent_as_base64(client: ServiceClient, ollama: FakeOllama) -> None:
    png = b"\x89PNG\r\n\x1a\n-fake-image-bytes"
    gif = b"GIF89a-fake"
    data_url = f"data:image/gif;base64,{base64.b64encode(gif).decode()}"
    message = Message.user("What is in these?", images=[png], image_mime_type="image/png")
    message.parts.add(text="Compare them.")
    message.parts.add(image=chat_pb2.ImagePart(url=data_url))
    await client.chat([message], model="llava:7b")
    (wire,) = sent(ollama)["messages"]
    assert wire == {
        "role": "user",
        "content": "What is in these?\nCompare them.",
        "images": [base64.b64encode(png).decode(), base64.b64encode(gif).decode()],
    }


async def test_image_links_are_refused_naming_the_field(
    client: ServiceClient, ollama: FakeOllama
) -> None:
    message = Message.user("Look", images=["https://example.org/cat.png"])
    with pytest.raises(UnsupportedParameter) as caught:
        await client.chat([message], model="llava:7b")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field == "messages[0].parts[0].image.url"
    assert not ollama.requests_to("/api/chat")


async def test_tool_definitions_and_tool_history(client: ServiceClient, ollama: FakeOllama) -> None:
    call = chat_pb2.ToolCall(id="call_abc", name="get_weather", arguments=conf.WEATHER_ARGS_JSON)
    history = [
        Message.user("Weather in Oslo?"),
        Message.assistant(tool_calls=[call]),
        Message.tool("call_abc", {"temperature": 4}),
    ]
    history[1].reasoning_blocks.add(text="I should call the tool.")
    await client.chat(history, tools=[WEATHER_TOOL, TIME_TOOL], model="conf-text:latest")
    body = sent(ollama)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather forecast for a city.",
                "parameters": json.loads(WEATHER_TOOL.parameters_json),
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": json.loads(TIME_TOOL.parameters_json)},
        },
    ]
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "",
        "thinking": "I should call the tool.",
        "tool_calls": [
            {"id": "call_abc", "function": {"name": "get_weather", "arguments": conf.WEATHER_ARGS}}
        ],
    }
    assert body["messages"][2] == {
        "role": "tool",
        "content": '{"temperature": 4}',
        "tool_call_id": "call_abc",
        "tool_name": "get_weather",
    }


async def test_tool_choice_without_a_tool_choice_field(
    client: ServiceClient, ollama: FakeOllama
) -> None:
    tools = [WEATHER_TOOL, TIME_TOOL]
    await client.chat("hi", tools=tools, model="conf-text:latest", tool_choice="none")
    assert "tools" not in sent(ollama)
    await client.chat("hi", tools=tools, model="conf-text:latest", tool_choice="get_time")
    assert [t["function"]["name"] for t in sent(ollama)["tools"]] == ["get_time"]
    await client.chat("hi", tools=tools, model="conf-text:latest", tool_choice="required")
    assert len(sent(ollama)["tools"]) == 2
    assert "tool_choice" not in sent(ollama)


async def test_tool_call(client: ServiceClient) -> None:
    reply = await client.chat("Weather?", tools=[WEATHER_TOOL], model="conf-tool:latest")
    assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS  # Ollama says "stop"
    (call,) = reply.tool_calls
    assert (call.id, call.name, call.arguments) == (
        CALL_IDS[0],
        "get_weather",
        conf.WEATHER_ARGS_JSON,
    )
    assert ToolCall.parse_arguments(call) == conf.WEATHER_ARGS
    assert reply.content == ""


async def test_parallel_tool_calls(client: ServiceClient) -> None:
    reply = await client.chat(
        "Weather and time?", tools=[WEATHER_TOOL, TIME_TOOL], model="conf-parallel:latest"
    )
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        (CALL_IDS[0], "get_weather", conf.WEATHER_ARGS_JSON),
        (CALL_IDS[1], "get_time", conf.TIME_ARGS_JSON),
    ]
    assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS


async def test_tool_calls_without_ids_get_stable_ids(client: ServiceClient) -> None:
    first = await client.chat("Book it.", model="legacy-parallel:latest")
    again = await client.chat("Book it.", model="legacy-parallel:latest")
    ids = [c.id for c in first.tool_calls]
    assert ids == [c.id for c in again.tool_calls], "the same response gives the same ids"
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    assert first.tool_calls[0].arguments == json.dumps(LEGACY_ARGS, separators=(",", ":"))
    streamed = await collect(client.chat_stream("Book it.", model="legacy-parallel:latest"))
    stream_ids = [e.tool_call_start.id for e in streamed if e.HasField("tool_call_start")]
    assert len(set(stream_ids)) == 2 and all(i.startswith("call_") for i in stream_ids)


async def test_thinking_is_reasoning(client: ServiceClient, ollama: FakeOllama) -> None:
    reply = await client.chat("Pangram?", model="conf-reasoning:latest", reasoning_effort="high")
    assert reply.reasoning == conf.REASONING
    assert reply.content == conf.TEXT
    assert sent(ollama)["think"] is True


async def test_reasoning_config_maps_to_think(client: ServiceClient, ollama: FakeOllama) -> None:
    await client.chat("x", model="qwen3:0.6b", reasoning_effort="none")
    assert sent(ollama)["think"] is False
    await client.chat("x", model="qwen3:0.6b", reasoning_budget=2048)
    assert sent(ollama)["think"] is True
    # "gpt-oss:20b" alone matches the gpt-* rule (OpenAI) first: address Ollama explicitly.
    await client.chat("x", model="ollama:gpt-oss:20b", reasoning_effort="high")
    assert sent(ollama)["think"] == "high"
    await client.chat("x", model="ollama:gpt-oss:20b", reasoning_effort="minimal")
    assert sent(ollama)["think"] == "low"
    await client.chat("x", model="qwen3:0.6b")
    assert "think" not in sent(ollama)


async def test_excluded_reasoning_thinks_but_is_not_returned(
    client: ServiceClient, ollama: FakeOllama
) -> None:
    reply = await client.chat(
        "x", model="conf-reasoning:latest", reasoning_effort="low", exclude_reasoning=True
    )
    assert sent(ollama)["think"] is True
    assert not reply.HasField("reasoning") and reply.content == conf.TEXT
    events = await collect(
        client.chat_stream(
            "x", model="conf-reasoning:latest", reasoning_effort="low", exclude_reasoning=True
        )
    )
    assert "reasoning" not in kinds(events)


async def test_length_finish(client: ServiceClient) -> None:
    reply = await client.chat("x", model="length:latest", max_tokens=4)
    assert reply.finish_reason == chat_pb2.FINISH_REASON_LENGTH
    assert reply.content == "".join(LENGTH_PIECES)


async def test_missing_done_reason_and_counts(client: ServiceClient) -> None:
    reply = await client.chat("x", model="no-reason:latest")
    assert reply.finish_reason == chat_pb2.FINISH_REASON_UNSPECIFIED
    assert usage_tuple(reply.usage) == (8, 5, 13)
    bare = await client.chat("x", model="no-counts:latest")
    assert not bare.HasField("usage")


# -- streaming ---------------------------------------------------------------------------------


async def test_stream_text_in_order(client: ServiceClient, ollama: FakeOllama) -> None:
    events = await collect(client.chat_stream("Pangram.", model="conf-text:latest"))
    assert kinds(events) == ["content"] * len(conf.TEXT_PIECES) + ["usage", "done"]
    assert tuple(e.content for e in events[: len(conf.TEXT_PIECES)]) == conf.TEXT_PIECES
    assert usage_tuple(events[-2].usage) == USAGE
    done = events[-1]
    assert done.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert (done.model, done.provider) == ("conf-text:latest", "ollama")
    assert sent(ollama)["stream"] is True


@pytest.mark.parametrize("write_size", [1, 7, 64])
async def test_stream_lines_split_across_reads(write_size: int) -> None:
    async with (
        FakeOllama(write_size=write_size) as fake,
        daemon_client(config_for(fake.base_url)) as c,
    ):
        events = await collect(
            c.chat_stream("x", model="conf-reasoning:latest", reasoning_effort="high")
        )
    assert "".join(e.reasoning for e in events) == conf.REASONING
    assert "".join(e.content for e in events) == conf.TEXT
    assert kinds(events)[-2:] == ["usage", "done"]


async def test_stream_thinking_then_content(client: ServiceClient) -> None:
    events = await collect(
        client.chat_stream("x", model="conf-reasoning:latest", reasoning_effort="high")
    )
    n_reasoning, n_text = len(conf.REASONING_PIECES), len(conf.TEXT_PIECES)
    assert kinds(events) == ["reasoning"] * n_reasoning + ["content"] * n_text + ["usage", "done"]
    assert tuple(e.reasoning for e in events[:n_reasoning]) == conf.REASONING_PIECES


async def test_stream_tool_call(client: ServiceClient) -> None:
    events = await collect(client.chat_stream("x", tools=[WEATHER_TOOL], model="conf-tool:latest"))
    assert kinds(events) == ["tool_call_start", "tool_call_delta", "tool_call_end", "usage", "done"]
    start, delta, end = (
        events[0].tool_call_start,
        events[1].tool_call_delta,
        events[2].tool_call_end,
    )
    assert (start.index, start.id, start.name) == (0, CALL_IDS[0], "get_weather")
    assert (delta.index, delta.arguments) == (0, conf.WEATHER_ARGS_JSON)
    assert end.index == 0
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS


@pytest.mark.parametrize("model", ["conf-parallel:latest", "parallel-one-line:latest"])
async def test_stream_parallel_tool_calls(client: ServiceClient, model: str) -> None:
    events = await collect(client.chat_stream("x", tools=[WEATHER_TOOL, TIME_TOOL], model=model))
    assert kinds(events) == [
        "tool_call_start",
        "tool_call_delta",
        "tool_call_start",
        "tool_call_delta",
        "tool_call_end",
        "tool_call_end",
        "usage",
        "done",
    ]
    starts = [e.tool_call_start for e in events if e.HasField("tool_call_start")]
    deltas = [e.tool_call_delta for e in events if e.HasField("tool_call_delta")]
    assert [(s.index, s.id, s.name) for s in starts] == [
        (0, CALL_IDS[0], "get_weather"),
        (1, CALL_IDS[1], "get_time"),
    ]
    assert [(d.index, d.arguments) for d in deltas] == [
        (0, conf.WEATHER_ARGS_JSON),
        (1, conf.TIME_ARGS_JSON),
    ]
    assert [e.tool_call_end.index for e in events if e.HasField("tool_call_end")] == [0, 1]
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS


async def test_error_inside_a_200_stream(client: ServiceClient) -> None:
    events: list[chat_pb2.ChatStreamResponse] = []
    with pytest.raises(ModelNotAvailable) as caught:
        async for event in client.chat_stream("x", model="conf-stream-error:latest"):
            events.append(event)
    assert [e.content for e in events] == [conf.TEXT_PIECES[0]]
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert STREAM_ERROR in caught.value.message
    assert caught.value.provider == "ollama"
    assert caught.value.metadata["in_stream"] == "true"


async def test_stream_cut_short_is_a_protocol_error(client: ServiceClient) -> None:
    with pytest.raises(ModelNotAvailable) as caught:
        await collect(client.chat_stream("x", model="truncated:latest"))
    assert caught.value.reason == "UPSTREAM_PROTOCOL"
    with pytest.raises(ModelNotAvailable) as malformed:
        await collect(client.chat_stream("x", model="malformed:latest"))
    assert malformed.value.reason == "UPSTREAM_PROTOCOL"


async def test_stream_to_a_model_that_is_not_pulled(client: ServiceClient) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await collect(client.chat_stream("x", model="mistral:7b"))
    assert "ollama pull mistral:7b" in caught.value.message


# -- generation (native /api/generate) ---------------------------------------------------------


async def test_generate_uses_the_native_endpoint(client: ServiceClient, ollama: FakeOllama) -> None:
    reply = await client.generate(
        "Once upon a time",
        model="conf-text:latest",
        max_tokens=64,
        temperature=0.7,
        stop=["THE END"],
        raw_provider_options={"raw": True, "num_ctx": 4096},
    )
    assert reply.text == conf.TEXT
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert usage_tuple(reply.usage) == USAGE
    assert (reply.model, reply.provider) == ("conf-text:latest", "ollama")
    assert not ollama.requests_to("/api/chat")
    assert sent(ollama, "/api/generate") == {
        "model": "conf-text:latest",
        "prompt": "Once upon a time",
        "stream": False,
        "options": {"temperature": 0.7, "num_predict": 64, "stop": ["THE END"], "num_ctx": 4096},
        "raw": True,
    }


async def test_generate_with_thinking(client: ServiceClient, ollama: FakeOllama) -> None:
    options = GenerateOptions("conf-reasoning:latest", reasoning_effort="medium")
    reply = await client.generate("Pangram?", options)
    assert (reply.reasoning, reply.text) == (conf.REASONING, conf.TEXT)
    assert sent(ollama, "/api/generate")["think"] is True


async def test_generate_stream(client: ServiceClient, ollama: FakeOllama) -> None:
    events = await collect(
        client.generate_stream("x", model="conf-reasoning:latest", reasoning_effort="high")
    )
    n_reasoning, n_text = len(conf.REASONING_PIECES), len(conf.TEXT_PIECES)
    assert kinds(events) == ["reasoning"] * n_reasoning + ["text"] * n_text + ["usage", "done"]
    assert "".join(e.text for e in events) == conf.TEXT
    assert usage_tuple(events[-2].usage) == USAGE
    assert events[-1].finish_reason == chat_pb2.FINISH_REASON_STOP
    assert events[-1].provider == "ollama"
    assert sent(ollama, "/api/generate")["stream"] is True


async def test_generate_stream_error_mid_way(client: ServiceClient) -> None:
    texts: list[str] = []
    with pytest.raises(ModelNotAvailable) as caught:
        async for event in client.generate_stream("x", model="conf-stream-error:latest"):
            texts.append(event.text)
    assert texts == [conf.TEXT_PIECES[0]]
    assert STREAM_ERROR in caught.value.message


async def test_generate_length(client: ServiceClient) -> None:
    reply = await client.generate("x", model="length:latest")
    assert reply.finish_reason == chat_pb2.FINISH_REASON_LENGTH


# -- embeddings --------------------------------------------------------------------------------


async def test_embed_and_embed_batch(client: ServiceClient, ollama: FakeOllama) -> None:
    one = await client.embed("Hello fjord", model="nomic-embed-text:latest")
    assert list(one.values) == pytest.approx(fake_vector("Hello fjord"), abs=1e-6)
    assert one.dimensions == len(one.values) == 8
    assert one.model == "nomic-embed-text:latest"
    assert sent(ollama, "/api/embed") == {
        "model": "nomic-embed-text:latest",
        "input": ["Hello fjord"],
    }

    texts = ["first", "second", "third"]
    batch = await client.embed_batch(texts, model="ollama:nomic-embed-text")
    assert [list(e.values) for e in batch] == [
        pytest.approx(fake_vector(t), abs=1e-6) for t in texts
    ]
    assert sent(ollama, "/api/embed")["input"] == texts


async def test_embed_model_not_pulled(client: ServiceClient) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await client.embed("x", model="mxbai-embed-large:latest")
    assert "ollama pull mxbai-embed-large:latest" in caught.value.message


# -- models ------------------------------------------------------------------------------------


async def test_list_models_with_show_details(ollama: FakeOllama) -> None:
    provider = OllamaProvider(
        "ollama", ProviderConfig(kind="ollama", base_url=ollama.base_url), None
    )
    try:
        models = {m.id: m for m in await provider.list_models()}
    finally:
        await provider.close()
    assert set(models) == {
        "llama3.2:1b",
        "qwen3:0.6b",
        "gpt-oss:20b",
        "llava:7b",
        "nomic-embed-text:latest",
    }
    assert all(m.provider == "ollama" for m in models.values())
    qwen = models["qwen3:0.6b"]
    assert qwen.context_window == 40960
    assert models_pb2.MODEL_CAPABILITY_REASONING in qwen.capabilities
    assert models_pb2.MODEL_CAPABILITY_TOOL_USE in qwen.capabilities
    assert models_pb2.MODEL_CAPABILITY_CHAT in qwen.capabilities
    assert not qwen.HasField("dimensions")
    assert models_pb2.MODEL_CAPABILITY_VISION in models["llava:7b"].capabilities
    embed = models["nomic-embed-text:latest"]
    assert list(embed.capabilities) == [models_pb2.MODEL_CAPABILITY_EMBED]
    assert (embed.dimensions, embed.context_window) == (768, 2048)
    shown = sorted(r.json["model"] for r in ollama.requests_to("/api/show"))
    assert shown == sorted(models)


async def test_model_status(client: ServiceClient, ollama: FakeOllama) -> None:
    ready = await client.model_status("llama3.2:1b")
    assert ready.status == models_pb2.MODEL_STATUS_READY
    assert ready.local.name == "llama3.2:1b"
    assert ready.local.device == "gpu"
    assert ready.local.bytes > 0
    assert ready.local.expires_at.seconds > 0
    pulled = await client.model_status("qwen3:0.6b")
    assert pulled.status == models_pb2.MODEL_STATUS_AVAILABLE
    with pytest.raises(ModelNotFound) as caught:
        await client.model_status("phi4:14b")
    assert "ollama pull phi4:14b" in caught.value.message


async def test_model_status_when_ollama_is_not_running() -> None:
    async with daemon_client(config_for(f"http://127.0.0.1:{closed_port()}")) as c:
        status = await c.model_status("llama3.2:1b")
    assert status.status == models_pb2.MODEL_STATUS_UNAVAILABLE
    assert "127.0.0.1" in status.reason


# -- errors ------------------------------------------------------------------------------------


async def test_not_running_is_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with daemon_client(config_for(url)) as c:
        for call in (
            c.chat("x", model="llama3.2:1b"),
            c.generate("x", model="llama3.2:1b"),
            c.embed("x", model="nomic-embed-text:latest"),
            collect(c.chat_stream("x", model="llama3.2:1b")),
        ):
            with pytest.raises(ModelNotAvailable) as caught:
                await call
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            assert url in caught.value.message
            assert "ollama serve" in caught.value.message
            assert caught.value.reason == "PROVIDER_UNAVAILABLE"


async def test_not_pulled_is_not_found_with_a_pull_hint(
    client: ServiceClient, ollama: FakeOllama
) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await client.chat("x", model="llama3.3:70b")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert "`ollama pull llama3.3:70b`" in caught.value.message
    assert [r.path for r in ollama.requests] == ["/api/chat"], "ratd never pulls on its own"


async def test_cloud_key_is_sent_and_a_bad_one_refused() -> None:
    async with FakeOllama(api_key=KEY) as fake:
        async with daemon_client(config_for(fake.base_url, KEY)) as c:
            reply = await c.chat("x", model="conf-text:latest")
            assert reply.content == conf.TEXT
            assert fake.last().headers["Authorization"] == f"Bearer {KEY}"
        async with daemon_client(config_for(fake.base_url, "wrong-key-123456")) as c:
            with pytest.raises(AuthenticationFailed) as wrong:
                await c.chat("x", model="conf-text:latest")
            assert wrong.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "wrong-key-123456" not in wrong.value.message
        async with daemon_client(config_for(fake.base_url)) as c:
            with pytest.raises(AuthenticationFailed) as none:
                await c.chat("x", model="conf-text:latest")
            assert "OLLAMA_API_KEY" in none.value.message


async def test_error_statuses(client: ServiceClient) -> None:
    with pytest.raises(RateLimited) as limited:
        await client.chat("x", model="conf-rate-limit:latest")
    assert limited.value.retry_after == conf.RETRY_AFTER_SECONDS
    assert limited.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED

    with pytest.raises(ModelNotAvailable) as server:
        await client.chat("x", model="conf-server-error:latest")
    assert (server.value.code, server.value.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "PROVIDER_UNAVAILABLE",
    )
    assert SERVER_ERROR in server.value.message

    with pytest.raises(ModelNotAvailable) as busy:
        await client.chat("x", model="conf-overloaded:latest")
    assert busy.value.reason == "PROVIDER_OVERLOADED"
    assert BUSY_ERROR in busy.value.message

    with pytest.raises(ModelNotAvailable) as memory:
        await client.chat("x", model="memory:latest")
    assert memory.value.reason == "MODEL_NOT_AVAILABLE"
    assert MEMORY_ERROR in memory.value.message

    with pytest.raises(UnsupportedParameter) as tools:
        await client.chat("x", tools=[WEATHER_TOOL], model="no-tools:latest")
    assert tools.value.field == "tools"
    assert tools.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_server_that_is_not_ollama(ollama: FakeOllama) -> None:
    async with daemon_client(config_for(f"{ollama.base_url}/v1")) as c:
        with pytest.raises(ModelNotAvailable) as caught:
            await c.chat("x", model="llama3.2:1b")
    assert "does not serve the Ollama API" in caught.value.message


async def test_parallel_tool_calls_option_is_dropped(
    client: ServiceClient, ollama: FakeOllama
) -> None:
    await client.chat(
        "x",
        tools=[WEATHER_TOOL],
        model="conf-text:latest",
        options=ChatOptions(parallel_tool_calls=False),
    )
    assert "parallel_tool_calls" not in json.dumps(sent(ollama))


async def test_the_daemon_stays_up(client: ServiceClient) -> None:
    for model in ("conf-server-error:latest", "conf-auth:latest", "malformed:latest"):
        with pytest.raises(RatatoskrError) as caught:
            await client.chat("x", model=model)
        assert caught.value.code != grpc.StatusCode.INTERNAL
    assert (await client.health()).healthy


def test_stable_ids_differ_per_response() -> None:
    a = stable_call_id("2025-11-04T09:15:12Z", 0, "f", "{}")
    assert a == stable_call_id("2025-11-04T09:15:12Z", 0, "f", "{}")
    assert a != stable_call_id("2025-11-04T09:15:13Z", 0, "f", "{}")
    assert a != stable_call_id("2025-11-04T09:15:12Z", 1, "f", "{}")


# -- the shared conformance scenarios ----------------------------------------------------------

# What every adapter must make of each scenario: (text, reasoning, tool calls, finish,
# usage) for answers, the status code for failures.
ANSWERS: dict[str, tuple[str, str, list[tuple[str, str]], int]] = {
    "conf-text": (conf.TEXT, "", [], chat_pb2.FINISH_REASON_STOP),
    "conf-tool": ("", "", [conf.TOOL_CALLS[0]], chat_pb2.FINISH_REASON_TOOL_CALLS),
    "conf-parallel": ("", "", list(conf.TOOL_CALLS), chat_pb2.FINISH_REASON_TOOL_CALLS),
    "conf-reasoning": (conf.TEXT, conf.REASONING, [], chat_pb2.FINISH_REASON_STOP),
}
FAILURES: dict[str, grpc.StatusCode] = {
    "conf-auth": grpc.StatusCode.UNAUTHENTICATED,
    "conf-missing": grpc.StatusCode.NOT_FOUND,
    "conf-rate-limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "conf-server-error": grpc.StatusCode.UNAVAILABLE,
    "conf-overloaded": grpc.StatusCode.UNAVAILABLE,
    "conf-stream-error": grpc.StatusCode.UNAVAILABLE,
}


def test_every_conformance_scenario_is_covered() -> None:
    assert set(ANSWERS) | set(FAILURES) == set(conf.SCENARIOS)


@pytest.mark.parametrize("scenario", sorted(ANSWERS))
@pytest.mark.parametrize("address", ["{}:latest", "ollama:{}"])
async def test_conformance_answers(client: ServiceClient, scenario: str, address: str) -> None:
    text, reasoning, calls, finish = ANSWERS[scenario]
    model = address.format(scenario)
    tools = [WEATHER_TOOL, TIME_TOOL]
    reply = await client.chat("x", tools=tools, model=model, reasoning_effort="medium")
    assert (reply.content, reply.reasoning, reply.finish_reason) == (text, reasoning, finish)
    assert [(c.name, c.arguments) for c in reply.tool_calls] == calls
    assert usage_tuple(reply.usage) == USAGE

    events = await collect(
        client.chat_stream("x", tools=tools, model=model, reasoning_effort="medium")
    )
    assert "".join(e.content for e in events) == text
    assert "".join(e.reasoning for e in events) == reasoning
    starts = [e.tool_call_start for e in events if e.HasField("tool_call_start")]
    arguments = {i: "" for i in range(len(starts))}
    for e in events:
        if e.HasField("tool_call_delta"):
            arguments[e.tool_call_delta.index] += e.tool_call_delta.arguments
    assert [(s.name, arguments[s.index]) for s in starts] == calls
    assert [s.id for s in starts] == [c.id for c in reply.tool_calls]
    assert kinds(events)[-2:] == ["usage", "done"]
    assert usage_tuple(events[-2].usage) == USAGE
    assert events[-1].finish_reason == finish


@pytest.mark.parametrize("scenario", sorted(FAILURES))
async def test_conformance_failures(client: ServiceClient, scenario: str) -> None:
    model = f"{scenario}:latest"
    with pytest.raises(RatatoskrError) as unary:
        await client.chat("x", model=model)
    assert unary.value.code == FAILURES[scenario]
    assert unary.value.provider == "ollama"
    events: list[chat_pb2.ChatStreamResponse] = []
    with pytest.raises(RatatoskrError) as streamed:
        async for event in client.chat_stream("x", model=model):
            events.append(event)
    assert streamed.value.code == FAILURES[scenario]
    expected_events = [conf.TEXT_PIECES[0]] if scenario == "conf-stream-error" else []
    assert [e.content for e in events] == expected_events
    if scenario == "conf-rate-limit":
        assert unary.value.retry_after == streamed.value.retry_after == conf.RETRY_AFTER_SECONDS


# -- the real recorded responses (../shared), through the provider's own code ------------------


def _provider(base_url: str, key: str | None = None) -> OllamaProvider:
    return OllamaProvider(
        "ollama", ProviderConfig(kind="ollama", base_url=base_url), Secret(key) if key else None
    )


def _request(model: str, **options: Any) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        messages=[Message.user("hi")], options=ChatOptions(model, **options)
    )


async def test_recorded_chat_responses(shared_dir: Path) -> None:
    cases = {
        "chat-non-stream": "qwen2.5:0.5b",
        "chat-tool-call-non-stream": "llama3.2",
    }
    for case, model in cases.items():
        fixture = load_fixture(shared_dir, "ollama", case)
        expect = fixture.expect
        async with replay({"/api/chat": fixture}) as url:
            provider = _provider(url)
            try:
                reply = await provider.chat(_request(model), model)
            finally:
                await provider.close()
        assert reply.content == expect["text"], case
        usage = expect["usage"]
        assert usage_tuple(reply.usage) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
            usage["total_tokens"],
        )
        calls = expect.get("tool_calls") or []
        assert [(c.name, c.arguments) for c in reply.tool_calls] == [
            (c["name"], c["arguments"]) for c in calls
        ]
        expected_finish = (
            chat_pb2.FINISH_REASON_TOOL_CALLS if calls else chat_pb2.FINISH_REASON_STOP
        )
        assert reply.finish_reason == expected_finish
        cached = fixture.json().get("prompt_eval_cached_count")
        assert reply.usage.cached_prompt_tokens == (cached or 0)
        assert reply.usage.HasField("cached_prompt_tokens") == (cached is not None)
        for call, recorded in zip(reply.tool_calls, calls, strict=True):
            assert call.id == (
                recorded["id"]
                or stable_call_id(fixture.json()["created_at"], 0, call.name, call.arguments)
            )


@pytest.mark.parametrize("case", ["chat-stream", "chat-stream-thinking", "chat-stream-tool-call"])
async def test_recorded_chat_streams(shared_dir: Path, case: str) -> None:
    fixture = load_fixture(shared_dir, "ollama", case)
    expect = fixture.expect
    model = fixture.meta["request_example"]["model"]
    async with replay({"/api/chat": fixture}) as url:
        provider = _provider(url)
        try:
            events = await collect(
                provider.chat_stream(_request(model, reasoning_effort="medium"), model)
            )
        finally:
            await provider.close()
    assert "".join(e.content for e in events) == expect["text"]
    assert "".join(e.reasoning for e in events).startswith(expect.get("reasoning", ""))
    starts = [e.tool_call_start for e in events if e.HasField("tool_call_start")]
    deltas = [e.tool_call_delta.arguments for e in events if e.HasField("tool_call_delta")]
    calls = expect.get("tool_calls") or []
    assert [(s.id, s.name) for s in starts] == [(c["id"], c["name"]) for c in calls]
    assert deltas == [c["arguments"] for c in calls]
    usage = expect["usage"]
    assert kinds(events)[-2:] == ["usage", "done"]
    assert usage_tuple(events[-2].usage) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
    )
    expected = chat_pb2.FINISH_REASON_TOOL_CALLS if calls else chat_pb2.FINISH_REASON_STOP
    assert events[-1].finish_reason == expected


async def test_recorded_generate_responses(shared_dir: Path) -> None:
    for case in ("generate-non-stream", "generate-thinking"):
        fixture = load_fixture(shared_dir, "ollama", case)
        model = fixture.meta["request_example"]["model"]
        async with replay({"/api/generate": fixture}) as url:
            provider = _provider(url)
            try:
                request = chat_pb2.GenerateRequest(prompt="hi", options=GenerateOptions(model))
                reply = await provider.generate(request, model)
            finally:
                await provider.close()
        expect = fixture.expect
        assert reply.text == expect["text"]
        assert reply.reasoning == expect.get("reasoning", "")
        assert reply.usage.total_tokens == expect["usage"]["total_tokens"]
        native = expect["finish_reason"]
        assert reply.finish_reason == (
            chat_pb2.FINISH_REASON_STOP if native == "stop" else chat_pb2.FINISH_REASON_UNSPECIFIED
        )


async def test_recorded_generate_streams(shared_dir: Path) -> None:
    fixture = load_fixture(shared_dir, "ollama", "generate-stream")
    model = fixture.meta["request_example"]["model"]
    request = chat_pb2.GenerateRequest(prompt="hi", options=GenerateOptions(model))
    async with replay({"/api/generate": fixture}) as url:
        provider = _provider(url)
        try:
            events = await collect(provider.generate_stream(request, model))
        finally:
            await provider.close()
    assert "".join(e.text for e in events) == fixture.expect["text"]
    assert events[-2].usage.total_tokens == fixture.expect["usage"]["total_tokens"]
    assert events[-1].done and events[-1].finish_reason == chat_pb2.FINISH_REASON_STOP

    broken = load_fixture(shared_dir, "ollama", "generate-stream-mid-error")
    texts: list[str] = []
    async with replay({"/api/generate": broken}) as url:
        provider = _provider(url)
        try:
            with pytest.raises(ProviderUnavailable) as caught:
                async for event in provider.generate_stream(request, model):
                    texts.append(event.text)
        finally:
            await provider.close()
    assert "".join(texts) == broken.expect["text"]
    assert broken.expect["stream_error"] in caught.value.message


# A name from the recorded /api/tags: Ollama pulls GGUFs straight from Hugging Face, and
# its names look like OpenRouter's ("vendor/model"), so the routing sends them there.
HF_GGUF = "hf.co/bartowski/Ministral-8B-Instruct-2410-GGUF:IQ4_XS"


async def test_metadata_of_a_listed_model_whatever_its_name_looks_like() -> None:
    """Issue #14, defect 2: a model /api/tags lists has metadata from /api/show, even when
    its name routes elsewhere (no OpenRouter is configured here)."""
    pulled = {HF_GGUF: ("llama", ("completion", "tools"), 32768, 4096)}
    async with FakeOllama(pulled=pulled) as fake, daemon_client(config_for(fake.base_url)) as c:
        fetched = await c.fetch_model_metadata(HF_GGUF)
        assert fetched is not None
        assert (fetched.info.provider, fetched.info.id) == ("ollama", HF_GGUF)
        assert fetched.info.context_window == 32768
        assert models_pb2.MODEL_CAPABILITY_TOOL_USE in fetched.info.capabilities
        assert HF_GGUF in [r.json["model"] for r in fake.requests_to("/api/show")]
        # Now in the registry's memory: GetModelMetadata answers without asking again.
        shows = len(fake.requests_to("/api/show"))
        remembered = await c.model_metadata(HF_GGUF)
        assert remembered is not None and remembered.info.context_window == 32768
        assert len(fake.requests_to("/api/show")) == shows


async def test_recorded_embed_show_and_tags(shared_dir: Path) -> None:
    embed = load_fixture(shared_dir, "ollama", "embed")
    show = load_fixture(shared_dir, "ollama", "show")
    tags = load_fixture(shared_dir, "ollama", "tags")
    async with replay({"/api/embed": embed, "/api/show": show, "/api/tags": tags}) as url:
        provider = _provider(url)
        try:
            (vector,) = await provider.embed(["Hello world"], "nomic-embed-text")
            models = await provider.list_models()
        finally:
            await provider.close()
    expected = embed.expect["embedding"]
    assert vector.dimensions == expected["dims"]
    assert list(vector.values[:3]) == pytest.approx(expected["first_values"])
    assert [m.id for m in models] == tags.expect["model_names"]
    # Every model answered with the one recorded /api/show body.
    assert {m.context_window for m in models} == {show.expect["context_length"]}
    assert models_pb2.MODEL_CAPABILITY_CHAT in models[0].capabilities


async def test_recorded_errors(shared_dir: Path) -> None:
    missing = load_fixture(shared_dir, "ollama", "error-404-model-not-found")
    async with replay({"*": missing}) as url:
        provider = _provider(url)
        try:
            with pytest.raises(errors.ModelNotFound) as not_found:
                await provider.chat(_request("no-such-model"), "no-such-model")
        finally:
            await provider.close()
    assert missing.expect["error"]["message"] in not_found.value.message
    assert "ollama pull no-such-model" in not_found.value.message

    unauthorized = load_fixture(shared_dir, "ollama", "error-401-cloud-unauthorized")
    async with replay({"*": unauthorized}) as url:
        provider = _provider(url, KEY)
        try:
            with pytest.raises(errors.AuthenticationFailed):
                await provider.chat(_request("gpt-oss:120b"), "gpt-oss:120b")
        finally:
            await provider.close()
