"""The fake OpenAI/OpenRouter upstream itself: the wire details other tests rely on, the
static mode for benchmarks, and its use outside pytest."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import pytest

from ratatoskr import ModelNotFound
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.compat import OPENAI_MODEL, OPENROUTER_MODEL, collect, compat_client, joined
from tests.support.daemon import REPO


async def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, dict(response.headers), await response.read()


async def test_openai_refuses_arguments_it_does_not_know(upstream: FakeOpenAIUpstream) -> None:
    """As the real API does: so a test passing through the fake proves ratd did not send it."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "top_k": 5}
    status, _, raw = await post(f"{upstream.base_url_openai}/chat/completions", body)
    assert status == 400
    assert json.loads(raw)["error"]["message"] == "Unrecognized request argument supplied: top_k"
    status, _, _ = await post(f"{upstream.base_url_openrouter}/chat/completions", body)
    assert status == 200, "OpenRouter ignores what it does not use"


async def test_openai_usage_chunk_only_when_asked(upstream: FakeOpenAIUpstream) -> None:
    url = f"{upstream.base_url_openai}/chat/completions"
    base = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    _, headers, without = await post(url, base)
    _, _, with_usage = await post(url, {**base, "stream_options": {"include_usage": True}})
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert b'"choices":[],"usage":{' not in without
    assert b'"choices":[],"usage":{' in with_usage
    assert without.endswith(b"data: [DONE]\n\n") and with_usage.endswith(b"data: [DONE]\n\n")


async def test_openrouter_stream_opens_with_a_comment(upstream: FakeOpenAIUpstream) -> None:
    upstream.set_scenario("reasoning")
    body = {"model": "x/y", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    _, _, raw = await post(f"{upstream.base_url_openrouter}/chat/completions", body)
    assert raw.startswith(b": OPENROUTER PROCESSING\n\n")
    assert raw.count(b": OPENROUTER PROCESSING\n\n") == 4
    assert b'"reasoning_details":[{"type":"reasoning.text"' in raw


async def test_requests_are_recorded(upstream: FakeOpenAIUpstream) -> None:
    await post(f"{upstream.base_url_openrouter}/chat/completions", {"model": "a/b", "messages": []})
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{upstream.url}/v2/nothing") as response,
    ):
        assert response.status == 404
    assert [(r.method, r.path, r.flavour) for r in upstream.requests] == [
        ("POST", "/api/v1/chat/completions", "openrouter"),
        ("GET", "/v2/nothing", "openai"),
    ]
    assert upstream.requests[0].json == {"model": "a/b", "messages": []}


async def test_unknown_scenario_is_refused() -> None:
    fake = FakeOpenAIUpstream()
    with pytest.raises(KeyError, match="unknown scenario"):
        fake.set_scenario("no-such-thing")


async def test_static_mode_through_ratd() -> None:
    """The benchmark's upstream: one precomputed answer, nothing recorded."""
    async with FakeOpenAIUpstream(static=True) as fake, compat_client(fake) as client:
        reply = await client.chat("hi", model=OPENAI_MODEL)
        events = await collect(client.chat_stream("hi", model=OPENROUTER_MODEL))
        assert reply.content == TEXT
        assert joined(events, "content") == TEXT
        assert events[-1].done and events[-1].provider == "openrouter"
        assert fake.requests == []


def test_module_imports_without_pytest() -> None:
    code = (
        "import sys, tests.fakes.openai_upstream as m\n"
        "m.FakeOpenAIUpstream(static=True)\n"
        "print('pytest' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


async def test_standalone_server() -> None:
    """``python -m tests.fakes.openai_upstream --static`` prints its URLs and serves."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.openai_upstream",
        "--static",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        openai_line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()
        assert openai_line[0] == "openai" and openai_line[1].endswith("/v1")
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        status, _, raw = await post(f"{openai_line[1]}/chat/completions", body)
        assert status == 200
        assert json.loads(raw)["choices"][0]["message"]["content"] == TEXT
    finally:
        process.terminate()
        await process.wait()


async def test_scenario_chosen_by_model_name(upstream: FakeOpenAIUpstream) -> None:
    """``scenario/<name>`` in the model picks the answer per request, whatever is set."""
    async with compat_client(upstream) as client:
        plain = await client.chat("hi", model=OPENAI_MODEL)
        called = await client.chat("hi", model="openai:scenario/tool-call")
        with pytest.raises(ModelNotFound):
            await client.chat("hi", model="openrouter:scenario/unknown-model")
    assert plain.content == TEXT
    assert [c.name for c in called.tool_calls] == ["lookup_ferry_schedule"]
    assert upstream.last("openai").json["model"] == "scenario/tool-call"
