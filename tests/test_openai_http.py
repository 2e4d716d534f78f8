"""The OpenAI-compatible HTTP door, driven by the official ``openai`` Python SDK (sync and
async) against an in-process ratd whose providers point at the fake OpenAI upstream:
chat plain, streamed and with tools, structured output, images, legacy completions,
embeddings, model listing, and the SDK's exception classes for ratd's errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest

from ratatoskr import ServiceClient
from ratd.server import Daemon
from tests.fakes.openai_upstream import (
    FERRY_CALL,
    REASONING_TEXT,
    TEXT,
    TEXT_USAGE,
    FakeOpenAIUpstream,
    fake_embedding,
)
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import make_config, running_daemon
from tests.support.openai_door import base_url, door_config_text, door_daemon

pytestmark = pytest.mark.timeout(60)

FERRY_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_ferry_schedule",
        "description": "Departures between two harbors on a date.",
        "parameters": {
            "type": "object",
            "properties": {"harbor": {"type": "string"}, "date": {"type": "string"}},
            "required": ["harbor"],
        },
    },
}


@pytest.fixture
async def daemon(upstream: FakeOpenAIUpstream) -> AsyncIterator[Daemon]:
    async with door_daemon(upstream) as running:
        yield running


@pytest.fixture
async def api(daemon: Daemon) -> AsyncIterator[openai.AsyncOpenAI]:
    """The async SDK client on ratd's door (no retries: each error is seen as it is)."""
    async with openai.AsyncOpenAI(
        base_url=base_url(daemon), api_key="unused", max_retries=0
    ) as found:
        yield found


async def test_chat_async_and_sync(
    api: openai.AsyncOpenAI, daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    answer = await api.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        temperature=0.2,
        max_tokens=50,
    )
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == TEXT
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == TEXT_USAGE["prompt"]
    assert answer.usage.completion_tokens == TEXT_USAGE["completion"]
    sent = upstream.last("openai").json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert sent["temperature"] == pytest.approx(0.2)

    def sync_call() -> str | None:
        with openai.OpenAI(base_url=base_url(daemon), api_key="unused", max_retries=0) as sync:
            reply = sync.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
            return reply.choices[0].message.content

    assert await asyncio.to_thread(sync_call) == TEXT


async def test_stream_with_usage(api: openai.AsyncOpenAI, daemon: Daemon) -> None:
    stream = await api.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == TEXT_USAGE["completion"]
    assert all(c.usage is None for c in chunks[:-1])


async def test_tools_round_trip(
    api: openai.AsyncOpenAI, daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    upstream.openai.script = ["tool-call", "tool-call", "text"]
    messages: list[dict[str, object]] = [{"role": "user", "content": "Ferry from Ålesund?"}]
    first = await api.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[FERRY_TOOL], tool_choice="auto"
    )
    (call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name) == (FERRY_CALL.id, FERRY_CALL.name)
    assert json.loads(call.function.arguments) == json.loads(FERRY_CALL.arguments)
    sent = upstream.last("openai").json
    assert sent["tools"][0]["function"]["name"] == "lookup_ferry_schedule"
    assert sent["tool_choice"] == "auto"

    streamed = await api.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[FERRY_TOOL], stream=True
    )
    arguments, ids = "", []
    async for chunk in streamed:
        for delta in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            ids += [delta.id] if delta.id else []
            arguments += delta.function.arguments or "" if delta.function else ""
    assert ids == [FERRY_CALL.id]
    assert arguments == FERRY_CALL.arguments

    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"departures":["08:15"]}'},
    ]
    final = await api.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[FERRY_TOOL]
    )
    assert final.choices[0].message.content == TEXT
    sent = upstream.last("openai").json
    assert sent["messages"][1]["tool_calls"][0]["id"] == FERRY_CALL.id
    assert sent["messages"][2] == {
        "role": "tool",
        "tool_call_id": FERRY_CALL.id,
        "content": '{"departures":["08:15"]}',
    }


async def test_structured_output_reasoning_effort_and_images(
    api: openai.AsyncOpenAI, daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    schema = {
        "type": "object",
        "properties": {"roots": {"type": "integer"}},
        "required": ["roots"],
        "additionalProperties": False,
    }
    await api.chat.completions.create(
        model="gpt-6-luna",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "How many roots?"},
                    {"type": "image_url", "image_url": {"url": "https://example.org/ash.png"}},
                ],
            }
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "roots", "schema": schema, "strict": True},
        },
        reasoning_effort="low",
        max_completion_tokens=64,
    )
    sent = upstream.last("openai").json
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == schema
    assert sent["reasoning_effort"] == "low"
    assert sent["max_completion_tokens"] == 64
    parts = sent["messages"][0]["content"]
    assert {"type": "text", "text": "How many roots?"} in parts
    assert any(p.get("image_url", {}).get("url") == "https://example.org/ash.png" for p in parts)


async def test_reasoning_is_surfaced(
    api: openai.AsyncOpenAI, daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("reasoning", "openrouter")
    stream = await api.chat.completions.create(
        model="yggdrasil/ash-3-mini", messages=[{"role": "user", "content": "Roots?"}], stream=True
    )
    reasoning = ""
    async for chunk in stream:
        extra = chunk.choices[0].delta.model_extra or {} if chunk.choices else {}
        reasoning += extra.get("reasoning_content") or ""
    assert reasoning == REASONING_TEXT  # OpenRouter's reasoning deltas, relayed


async def test_legacy_completions(
    api: openai.AsyncOpenAI, daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    answer = await api.completions.create(model="gpt-4o-mini", prompt="Say hi", max_tokens=20)
    assert answer.object == "text_completion"
    assert answer.choices[0].text == TEXT
    assert upstream.last("openai").json["messages"][-1]["content"] == "Say hi"
    stream = await api.completions.create(model="gpt-4o-mini", prompt="Say hi", stream=True)
    assert "".join([c.choices[0].text async for c in stream if c.choices]) == TEXT


async def test_embeddings_float_and_base64(api: openai.AsyncOpenAI, daemon: Daemon) -> None:
    model = "text-embedding-3-small"
    # The SDK asks for base64 by default and decodes it.
    answer = await api.embeddings.create(model=model, input=["one", "two"])
    assert [d.index for d in answer.data] == [0, 1]
    assert answer.data[1].embedding == pytest.approx(fake_embedding("two", 1536), abs=1e-7)
    floats = await api.embeddings.create(model=model, input="one", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(fake_embedding("one", 1536), abs=1e-7)
    with pytest.raises(openai.BadRequestError) as refused:
        await api.embeddings.create(model=model, input="one", dimensions=256)
    assert refused.value.param == "dimensions"


async def test_model_listing(api: openai.AsyncOpenAI, daemon: Daemon) -> None:
    ids = [model.id async for model in api.models.list()]
    assert "gpt-4o-mini" in ids
    slashed = next(i for i in ids if "/" in i)
    assert (await api.models.retrieve(slashed)).id == slashed
    assert (await api.models.retrieve("gpt-4o-mini")).owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        await api.models.retrieve("no-such-model-anywhere")


@pytest.mark.parametrize(
    ("scenario", "exception", "status"),
    [
        ("rate-limit", openai.RateLimitError, 429),
        ("unknown-model", openai.NotFoundError, 404),
        ("bad-request", openai.BadRequestError, 400),
        ("context-length", openai.BadRequestError, 400),
        ("server-error", openai.InternalServerError, 502),
        ("overloaded", openai.InternalServerError, 503),
    ],
)
async def test_error_classes(
    api: openai.AsyncOpenAI,
    upstream: FakeOpenAIUpstream,
    scenario: str,
    exception: type[openai.APIStatusError],
    status: int,
) -> None:
    upstream.set_scenario(scenario)
    with pytest.raises(exception) as raised:
        await api.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert raised.value.status_code == status
    body = raised.value.body
    assert isinstance(body, dict) and set(body) >= {"message", "type", "param", "code"}
    if scenario == "rate-limit":
        assert raised.value.response.headers["retry-after"] == "20"
        assert body["code"] == "rate_limit_exceeded"


async def test_rate_limit_retry_hint_is_honoured(
    daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    """The SDK retries a 429 after ratd's ``retry-after`` (1 s here), then succeeds."""
    upstream.openai.retry_after_secs = 1
    upstream.openai.script = ["rate-limit", "text"]
    async with openai.AsyncOpenAI(
        base_url=base_url(daemon), api_key="unused", max_retries=1
    ) as retrying:
        raw = await retrying.chat.completions.with_raw_response.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert raw.retries_taken == 1
    assert raw.parse().choices[0].message.content == TEXT


async def test_bad_requests(api: openai.AsyncOpenAI, daemon: Daemon) -> None:
    with pytest.raises(openai.BadRequestError) as unknown:
        await api.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hi"}],
            extra_body={"frobnicate": 1},
        )
    assert "frobnicate" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as empty:
        await api.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert empty.value.param == "messages"
    async with aiohttp.ClientSession() as session:
        url = base_url(daemon) + "/chat/completions"
        async with session.post(url, data=b"{not json") as response:
            assert response.status == 400
            assert (await response.json())["error"]["type"] == "invalid_request_error"
        async with session.get(url) as response:
            assert response.status == 404
            assert "Invalid URL" in (await response.json())["error"]["message"]


async def test_client_disconnect_cancels_the_upstream_call(
    daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("hang")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    async with aiohttp.ClientSession() as session:
        request = asyncio.ensure_future(
            session.post(base_url(daemon) + "/chat/completions", json=body)
        )
        while not upstream.requests_to("openai"):  # noqa: ASYNC110 (the fake records, no event)
            await asyncio.sleep(0.01)
        request.cancel()
    await asyncio.wait_for(upstream.disconnected.wait(), 10)


async def test_exact_sse_bytes(daemon: Daemon) -> None:
    """One curl-style check of the bytes on the wire, chunk by chunk."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with aiohttp.ClientSession() as session:
        url = base_url(daemon) + "/chat/completions"
        async with session.post(url, json=body) as response:
            assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            raw = await response.read()
    first = json.loads(raw.split(b"\n\n", 1)[0].removeprefix(b"data: "))
    head = (
        f'{{"id":"{first["id"]}","object":"chat.completion.chunk","created":{first["created"]},'
        f'"model":"gpt-4o-mini","system_fingerprint":null,"choices":'
    )

    def chunk(delta: str, finish: str = "null") -> str:
        choice = f'[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]'
        return f'data: {head}{choice},"usage":null}}\n\n'

    from tests.fakes.openai_upstream import TEXT_PIECES

    pieces = [json.dumps(p, ensure_ascii=False, separators=(",", ":")) for p in TEXT_PIECES]
    expected = chunk(f'{{"role":"assistant","content":{pieces[0]}}}')
    expected += "".join(chunk(f'{{"content":{p}}}') for p in pieces[1:])
    expected += chunk("{}", '"stop"')
    usage = (
        f'{{"prompt_tokens":{TEXT_USAGE["prompt"]},"completion_tokens":'
        f'{TEXT_USAGE["completion"]},"total_tokens":'
        f"{TEXT_USAGE['prompt'] + TEXT_USAGE['completion']},"
        '"prompt_tokens_details":{"cached_tokens":0},'
        '"completion_tokens_details":{"reasoning_tokens":0}'
    )
    assert raw.decode().startswith(expected)
    tail = raw.decode()[len(expected) :]
    assert tail.startswith(f'data: {head}[],"usage":{usage}')
    assert tail.endswith("}\n\ndata: [DONE]\n\n")


async def test_local_embeddings_and_models(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 on local ONNX Runtime, through the SDK: the same vectors as the
    gRPC EmbedBatch of the same daemon, and the local model in the model list."""
    text = f"""
[http]
address = "127.0.0.1:0"
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
"""
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug."]
    async with (
        running_daemon(make_config(text)) as daemon,
        openai.AsyncOpenAI(base_url=base_url(daemon), api_key="x", max_retries=0) as api,
    ):
        answer = await api.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
        assert [len(d.embedding) for d in answer.data] == [384, 384]
        client = await ServiceClient.connect(daemon.address, timeout=20)
        try:
            direct = await client.embed_batch(texts, "all-MiniLM-L6-v2")
        finally:
            await client.close()
        for got, want in zip(answer.data, direct, strict=True):
            assert got.embedding == pytest.approx(list(want.values), abs=1e-6)
        assert "all-MiniLM-L6-v2" in [m.id async for m in api.models.list()]


async def test_stop_drains_a_stream_in_flight(upstream: FakeOpenAIUpstream) -> None:
    """SIGTERM's drain covers the HTTP door: a stream that has begun runs to [DONE]."""
    upstream.frame_delay = 0.05
    config = make_config(door_config_text(upstream), env={"OPENAI_API_KEY": OPENAI_KEY})
    daemon = Daemon(config)
    await daemon.start()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    stopping = None
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(daemon) + "/chat/completions", json=body) as response:
            first = await response.content.readline()
            assert first.startswith(b"data: {")
            stopping = asyncio.ensure_future(daemon.stop())
            rest = await response.read()
    await stopping
    assert rest.endswith(b"data: [DONE]\n\n")
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in (first + rest).split(b"\n\n")
        if line.startswith(b"data: {")
    )
    assert text == TEXT


async def test_error_after_the_stream_began(
    api: openai.AsyncOpenAI, upstream: FakeOpenAIUpstream
) -> None:
    """An upstream failure mid-stream ends the SSE stream with an ``error`` event, which
    the SDK raises as APIError after the content it already gave."""
    upstream.set_scenario("mid-stream-error", "openai")
    stream = await api.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    text = ""
    with pytest.raises(openai.APIError) as failed:
        async for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text  # what came before the failure
    assert failed.value.body is not None
    assert "reason" in failed.value.body  # type: ignore[operator]


async def test_metrics_count_the_http_calls(api: openai.AsyncOpenAI, daemon: Daemon) -> None:
    await api.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{daemon.metrics.bound}/metrics") as response,
    ):
        text = await response.text()
    assert 'ratatoskr_requests_total{operation="http.Chat",provider="openai",status="OK"}' in text


async def test_body_limit_and_deadline(upstream: FakeOpenAIUpstream) -> None:
    """A body over the limit (16 MiB here: 4 x max_request_bytes, at least 16 MiB) is a 413
    in OpenAI's shape; a call past server.request_timeout_secs is a 504 (the SDK's
    InternalServerError)."""
    text = door_config_text(upstream).replace(
        "[http]",
        '[server]\naddress = "127.0.0.1:0"\nmetrics_address = ""\n'
        "request_timeout_secs = 0.5\nmax_request_bytes = 1024\n[http]",
    )
    upstream.set_scenario("hang")
    async with running_daemon(make_config(text, env={"OPENAI_API_KEY": OPENAI_KEY})) as daemon:
        async with aiohttp.ClientSession() as session:
            huge = b'{"model":"gpt-4o-mini","messages":"' + b"a" * (17 * 2**20) + b'"}'
            url = base_url(daemon) + "/chat/completions"
            async with session.post(url, data=huge) as response:
                assert response.status == 413, await response.text()
                assert (await response.json())["error"]["code"] == "request_too_large"
        async with openai.AsyncOpenAI(base_url=base_url(daemon), api_key="x", max_retries=0) as api:
            with pytest.raises(openai.InternalServerError) as late:
                await api.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
                )
    assert late.value.status_code == 504
    assert late.value.body["code"] == "timeout"  # type: ignore[index]


async def _cancelled_streams(session: aiohttp.ClientSession, daemon: Daemon) -> float:
    """ratatoskr_requests_total for http.ChatStream calls that ended CANCELLED."""
    series = (
        'ratatoskr_requests_total{operation="http.ChatStream",provider="openai",status="CANCELLED"}'
    )
    async with session.get(f"http://{daemon.metrics.bound}/metrics") as metrics:
        for line in (await metrics.text()).splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_client_gone_mid_stream_is_a_cancelled_call(
    daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    """A client that closes its connection after the first chunk ends the relay (and the
    upstream stream): the call is counted CANCELLED, not as an error."""
    upstream.frame_delay = 0.2
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        before = await _cancelled_streams(session, daemon)
        response = await session.post(base_url(daemon) + "/chat/completions", json=body)
        assert (await response.content.readline()).startswith(b"data: {")
        response.close()  # drop the connection mid-stream
        for _ in range(200):
            if await _cancelled_streams(session, daemon) == before + 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the dropped stream was never counted as CANCELLED")
    assert len(upstream.requests_to("openai")) == 1
