"""End to end: a spawned ``ratd`` process, the ``rat`` CLI and the Python clients, against
the fake OpenAI/OpenRouter upstream on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ratatoskr import (
    AuthenticationFailed,
    Message,
    ModelNotFound,
    RateLimited,
    ServiceClient,
    SyncServiceClient,
    ToolCall,
    ToolDefinition,
)
from ratd.config import embedded_default_text
from tests.fakes.openai_upstream import (
    ANSWER_TEXT,
    FERRY_CALL,
    REASONING_TEXT,
    TEXT,
    FakeOpenAIUpstream,
)
from tests.support.compat import OPENAI_KEY, OPENROUTER_KEY
from tests.support.daemon import SpawnedRatd, spawn_ratd

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ratd(upstream: FakeOpenAIUpstream, tmp_path: Path) -> Iterator[SpawnedRatd]:
    config = f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
"""
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY}
    with spawn_ratd(config, tmp_path, env=env) as process:
        yield process
    log = process.log()
    assert OPENAI_KEY not in log and OPENROUTER_KEY not in log, "a key reached the log"


async def rat(ratd: SpawnedRatd, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run the real ``rat`` CLI without blocking the loop that serves the fake upstream."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rat",
        "--address",
        ratd.address,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1"},
    )
    out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_rat_health(ratd: SpawnedRatd) -> None:
    code, out, _ = await rat(ratd, "health")
    assert code == 0
    assert "healthy" in out and "0.1.0" in out
    code, out, _ = await rat(ratd, "--json", "health")
    assert code == 0 and json.loads(out)["healthy"] is True


async def test_rat_chat_streams_the_answer(ratd: SpawnedRatd, upstream: FakeOpenAIUpstream) -> None:
    code, out, err = await rat(ratd, "chat", "Who carries the gossip?", "-m", "gpt-4o-mini")
    assert code == 0, err
    assert out == TEXT + "\n"
    sent = upstream.last("openai").json
    assert sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": "Who carries the gossip?"}]


async def test_rat_chat_json_system_and_options(
    ratd: SpawnedRatd, upstream: FakeOpenAIUpstream
) -> None:
    code, out, err = await rat(
        ratd,
        "chat",
        "--json",
        "hi",
        "-m",
        "gpt-4o-mini",
        "--system",
        "Be brief.",
        "--temperature",
        "0.3",
        "--max-tokens",
        "64",
        "--reasoning-effort",
        "low",
    )
    assert code == 0, err
    reply = json.loads(out)
    assert reply["content"] == TEXT
    assert reply["finish_reason"] == "FINISH_REASON_STOP"
    assert reply["provider"] == "openai"
    assert reply["usage"]["total_tokens"] > 0
    sent = upstream.last("openai").json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["temperature"] == pytest.approx(0.3)
    assert sent["max_completion_tokens"] == 64
    assert "stream" not in sent
    # gpt-4o-mini takes no reasoning effort: dropped, with a warning in the log.
    assert "reasoning_effort" not in sent
    code, _, err = await rat(
        ratd, "chat", "hi", "-m", "gpt-6-luna", "--reasoning-effort", "low", "--no-stream"
    )
    assert code == 0, err
    # The seed sends gpt-6-luna to the Responses API.
    assert upstream.last("openai", "/responses").json["reasoning"]["effort"] == "low"


async def test_rat_chat_reads_stdin_and_puts_reasoning_on_stderr(ratd: SpawnedRatd) -> None:
    code, out, err = await rat(
        ratd, "chat", "-m", "openrouter:scenario/reasoning", stdin="How many roots?\n"
    )
    assert code == 0, err
    assert out == ANSWER_TEXT + "\n"
    assert REASONING_TEXT in err and REASONING_TEXT not in out


async def test_rat_chat_prints_tool_calls(ratd: SpawnedRatd) -> None:
    code, out, err = await rat(ratd, "chat", "ferry?", "-m", "openai:scenario/tool-call")
    assert code == 0, err
    assert f"[tool call {FERRY_CALL.id}] {FERRY_CALL.name}({FERRY_CALL.arguments})" in out


@pytest.mark.parametrize(
    ("model", "exit_code", "status"),
    [
        ("openai:scenario/invalid-key", 6, "UNAUTHENTICATED"),
        ("openai:scenario/unknown-model", 4, "NOT_FOUND"),
        ("openrouter:scenario/unknown-model", 4, "NOT_FOUND"),
        ("openai:scenario/rate-limit", 7, "RESOURCE_EXHAUSTED"),
        ("openai:scenario/server-error", 3, "UNAVAILABLE"),
        ("openai:scenario/context-length", 11, "OUT_OF_RANGE"),
    ],
)
async def test_rat_errors_are_one_line_and_an_exit_code(
    ratd: SpawnedRatd, model: str, exit_code: int, status: str
) -> None:
    for extra in ((), ("--no-stream",)):
        code, out, err = await rat(ratd, "chat", "hi", "-m", model, *extra)
        assert code == exit_code, err
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rat: ") and status in lines[0]
        assert OPENAI_KEY not in err


async def test_rat_bad_input_and_unimplemented(ratd: SpawnedRatd) -> None:
    code, _, err = await rat(ratd, "chat", "hi", "-m", "gpt-4o-mini", "--temperature", "-1")
    assert code == 5 and "options.temperature" in err
    # No [providers.local] in this config: local model commands say so.
    code, _, err = await rat(ratd, "load", "all-MiniLM-L6-v2")
    assert code == 8 and "UNIMPLEMENTED" in err and "[providers.local]" in err


async def test_rat_presets_models_and_metadata(ratd: SpawnedRatd) -> None:
    code, out, err = await rat(ratd, "presets")
    assert code == 0, err
    assert out.splitlines()[0].startswith("free: ") and "premium: " in out
    code, out, err = await rat(ratd, "models")
    assert code == 0, err
    assert out.startswith("PROVIDER") and "gpt-4o-mini" in out and "openai/gpt-4o" in out
    code, out, err = await rat(ratd, "metadata", "gpt-4o-mini")
    assert code == 0, err
    assert "context   128000 tokens" in out and "$0.15" in out and "temperature" in out


async def test_rat_cannot_reach_ratd() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rat",
        "--address",
        "127.0.0.1:9",
        "health",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 3
    assert err.decode().startswith("rat: cannot reach ratd at 127.0.0.1:9")


async def test_service_client_chat_stream_and_tools(ratd: SpawnedRatd) -> None:
    async with await ServiceClient.connect(ratd.address, timeout=30) as client:
        reply = await client.chat([Message.user("hi")], model="gpt-4o-mini", temperature=0.0)
        assert reply.content == TEXT and reply.provider == "openai"

        pieces = [
            e.content
            async for e in client.chat_stream("hi", model="gpt-4o-mini")
            if e.WhichOneof("event") == "content"
        ]
        assert "".join(pieces) == TEXT and len(pieces) > 1

        ferry = ToolDefinition(
            FERRY_CALL.name,
            "Ferry times",
            {"type": "object", "properties": {"harbor": {"type": "string"}}},
        )
        reply = await client.chat(
            "ferry?", [ferry], model="openai:scenario/tool-call", tool_choice="auto"
        )
        (call,) = reply.tool_calls
        assert call.arguments == FERRY_CALL.arguments
        assert ToolCall.parse_arguments(call)["harbor"] == "Ålesund"

        with pytest.raises(ModelNotFound):
            await client.chat("hi", model="openai:scenario/unknown-model")
        with pytest.raises(RateLimited) as caught:
            await client.chat("hi", model="openai:scenario/rate-limit")
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
        with pytest.raises(AuthenticationFailed):
            async for _ in client.chat_stream("hi", model="openai:scenario/invalid-key"):
                pass


async def test_sync_client(ratd: SpawnedRatd) -> None:
    def work() -> tuple[str, str]:
        with SyncServiceClient(ratd.address, timeout=30) as client:
            unary = client.chat("hi", model="gpt-4o-mini").content
            streamed = "".join(
                e.content
                for e in client.chat_stream("hi", model="gpt-4o-mini")
                if e.WhichOneof("event") == "content"
            )
            assert client.health().healthy
            return unary, streamed

    unary, streamed = await asyncio.to_thread(work)
    assert unary == streamed == TEXT


async def test_sigterm_drains_and_exits_zero(upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    config = f'[providers.openai]\nbase_url = "{upstream.base_url_openai}"\n'
    with spawn_ratd(config, tmp_path, env={"OPENAI_API_KEY": OPENAI_KEY}) as process:
        async with await ServiceClient.connect(process.address, timeout=30) as client:
            assert (await client.health()).healthy
            process.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.process.wait, 20)
    assert code == 0
    assert "ratd stopped" in process.log()


async def test_rat_chat_reaches_each_provider_by_the_default_table(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    """claude-* to Anthropic, gemini-* to Google, name:tag to Ollama, vendor/model to
    OpenRouter: the built-in routing table, through a real ratd and the real CLI."""
    from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
    from tests.fakes.gemini_upstream import FakeGeminiUpstream
    from tests.fakes.ollama_upstream import FakeOllama

    async with (
        FakeAnthropicUpstream() as anthropic,
        FakeGeminiUpstream() as gemini,
        FakeOllama() as ollama,
    ):
        config = f"""
[providers.anthropic]
base_url = "{anthropic.base_url}"
[providers.google]
base_url = "{gemini.base_url}"
[providers.ollama]
base_url = "{ollama.base_url}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
"""
        env = {
            "ANTHROPIC_API_KEY": "sk-ant-e2e-000001",
            "GOOGLE_API_KEY": "AIza-e2e-000001",
            "OPENROUTER_API_KEY": OPENROUTER_KEY,
        }
        with spawn_ratd(config, tmp_path, env=env) as process:
            for model, reached in (
                ("claude-sonnet-4-5", lambda: anthropic.requests_to("/v1/messages")),
                ("gemini-3.8-flash", lambda: gemini.requests_to(":streamGenerateContent")),
                ("llama3.2:1b", lambda: ollama.requests_to("/api/chat")),
                ("openai/gpt-4o-mini", lambda: upstream.requests_to("openrouter")),
            ):
                assert not reached()
                code, out, err = await rat(process, "chat", "hello", "-m", model)
                assert code == 0, f"{model}: {err}"
                assert out.strip(), model
                assert len(reached()) == 1, f"{model} did not reach its provider"


async def test_rat_embed_on_the_embedded_default_config(tmp_path: Path) -> None:
    """What a new user runs after ``make run``: ``rat embed "hello"``, no model named, on
    the embedded default config, with no key, no Hub and no ../shared (the default model
    comes from its PyPI package)."""
    config = (
        embedded_default_text()
        .replace('address = "127.0.0.1:9741"', 'address = "127.0.0.1:0"')
        .replace('metrics_address = "127.0.0.1:9742"', 'metrics_address = "127.0.0.1:0"')
    )
    with spawn_ratd(config, tmp_path) as ratd:
        code, out, err = await rat(ratd, "embed", "hello")
        assert code == 0, err
        values = json.loads(out)
        assert len(values) == 384
        assert abs(sum(v * v for v in values) - 1) < 1e-3  # normalised, as the model says
        code, out, err = await rat(ratd, "--json", "embed", "hello", "world")
        assert code == 0, err
        assert [json.loads(line)["model"] for line in out.splitlines()] == ["all-MiniLM-L6-v2"] * 2


async def test_rat_embed_dimensions(ratd: SpawnedRatd, upstream: FakeOpenAIUpstream) -> None:
    code, out, err = await rat(
        ratd, "embed", "--dimensions", "8", "-m", "text-embedding-3-small", "ash", "elm"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and all(len(line.split(",")) == 8 for line in lines)
    assert upstream.last("openai", "/embeddings").json["dimensions"] == 8
