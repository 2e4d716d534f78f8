"""A batch at OpenAI's Batch API: SubmitBatch with ``provider = "openai"`` through a real
in-process ratd to the fake Files and Batch APIs on loopback (upload, create, poll,
results out of order, errors per item), cancel reaching the provider, and a ratd
stopped mid-batch whose successor polls the same batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.rpc import code_pb2

from ratatoskr import InvalidInput, Message, ServiceClient, batch_result, job_metadata
from ratatoskr.v1 import inference_pb2, jobs_pb2
from tests.fakes.openai_batches import EMBED_DIMENSIONS, MISSING, FakeOpenAIBatches, answer_to
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import make_config, running_daemon

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeOpenAIUpstream, FakeOpenAIBatches]]:
    upstream = FakeOpenAIUpstream()
    batches = FakeOpenAIBatches(upstream)
    async with upstream:
        yield upstream, batches


def config(upstream: FakeOpenAIUpstream, jobs_dir: str = "") -> str:
    return f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
[jobs]
dir = "{jobs_dir}"
"""


def chat(custom_id: str, text: str, model: str = "gpt-4o-mini") -> jobs_pb2.BatchItem:
    request = ServiceClient.chat_request([Message.user(text)], model=model)
    return jobs_pb2.BatchItem(custom_id=custom_id, chat=request)


async def connected(daemon_address: str) -> ServiceClient:
    return await ServiceClient.connect(daemon_address, timeout=20)


async def test_a_chat_batch_at_openai(fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches]) -> None:
    upstream, batches = fake
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": "sk-or-test"}
    async with running_daemon(make_config(config(upstream), env=env)) as daemon:
        async with await connected(daemon.address) as client:
            items = [
                chat("a", "one", "openai:gpt-4o-mini"),
                chat("b", "two"),
                chat("c", "x", MISSING),
            ]
            started = await client.submit_batch(items, provider="openai")
            assert started.metadata.provider == "openai"
            operation = await client.wait_operation(started.name)
    assert operation.done and not operation.HasField("error"), operation.error
    results = batch_result(operation).results
    assert [r.custom_id for r in results] == ["a", "b", "c"]
    assert results[0].chat.content == "batch answer to: one"
    assert results[1].chat.content == "batch answer to: two"
    usage = results[1].chat.usage
    assert usage.prompt_tokens == 9
    # At the batch price: half of the seed's $0.15 / $0.60 per million tokens.
    expected = (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.6) / 1e6 / 2
    assert usage.cost_usd == pytest.approx(expected)
    assert results[2].error.code == "NOT_FOUND" and MISSING in results[2].error.message
    meta = job_metadata(operation)
    assert (meta.upstream_status, meta.completed, meta.failed) == ("completed", 2, 1)
    [uploaded] = [lines for lines in batches.files.values() if lines[0].get("url")]
    assert [line["custom_id"] for line in uploaded] == ["0", "1", "2"]
    assert uploaded[0]["url"] == "/v1/chat/completions"
    assert uploaded[0]["body"]["model"] == "gpt-4o-mini"  # the provider prefix taken off
    assert answer_to(uploaded[1]["body"]) == "batch answer to: two"
    assert not upstream.requests_to("openai")  # nothing went to /chat/completions itself


async def test_an_embedding_batch_at_openai(
    fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches],
) -> None:
    upstream, _ = fake
    env = {"OPENAI_API_KEY": OPENAI_KEY}
    async with running_daemon(make_config(config(upstream), env=env)) as daemon:
        async with await connected(daemon.address) as client:
            embed = inference_pb2.EmbedRequest(text="ash", model="text-embedding-3-small")
            started = await client.submit_batch(
                [jobs_pb2.BatchItem(custom_id="e", embed=embed)], provider="openai"
            )
            operation = await client.wait_operation(started.name)
    [result] = batch_result(operation).results
    assert result.embed.dimensions == EMBED_DIMENSIONS == len(result.embed.values)


async def test_what_a_provider_batch_refuses(
    fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches],
) -> None:
    upstream, batches = fake
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": "sk-or-test"}
    async with running_daemon(make_config(config(upstream), env=env)) as daemon:
        async with await connected(daemon.address) as client:
            embed = jobs_pb2.BatchItem(embed=inference_pb2.EmbedRequest(text="t", model="m"))
            with pytest.raises(InvalidInput, match="one endpoint"):
                await client.submit_batch([chat("a", "x"), embed], provider="openai")
            for name in ("openrouter", "nope"):
                with pytest.raises(InvalidInput, match="kind openai"):
                    await client.submit_batch([chat("a", "x")], provider=name)
            with pytest.raises(InvalidInput, match="needs a model"):
                await client.submit_batch([chat("a", "x", "")], provider="openai")
    assert not batches.files


async def test_cancel_and_a_restart_mid_batch(
    fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches], tmp_path: Path
) -> None:
    upstream, batches = fake
    batches.hold = True
    text = config(upstream, str(tmp_path / "jobs"))
    env = {"OPENAI_API_KEY": OPENAI_KEY}
    async with running_daemon(make_config(text, env=env)) as first:
        async with await connected(first.address) as client:
            kept = await client.submit_batch([chat("k", "kept")], provider="openai")
            dropped = await client.submit_batch([chat("d", "dropped")], provider="openai")
            while batches.poll_count < 2:  # noqa: ASYNC110 (the fake counts polls)
                await asyncio.sleep(0.01)
            await client.cancel_operation(dropped.name)
            cancelled = await client.get_operation(dropped.name)
    assert cancelled.error.code == code_pb2.CANCELLED
    assert len(batches.cancelled) == 1
    polls = batches.poll_count
    async with running_daemon(make_config(text, env=env)) as second:
        async with await connected(second.address) as client:
            assert not (await client.get_operation(kept.name)).done
            while batches.poll_count == polls:  # noqa: ASYNC110 (the fake counts polls)
                await asyncio.sleep(0.01)  # the new ratd polls the same batch
            batches.hold = False
            operation = await client.wait_operation(kept.name)
    assert batch_result(operation).results[0].chat.content == "batch answer to: kept"
    assert len(batches.batches) == 2  # resumed, not submitted again


# -- Anthropic's Message Batches ------------------------------------------------------------


ANTHROPIC_KEY = "sk-ant-test-batches-0123456789"


async def test_a_batch_at_anthropic_with_cancel_and_a_restart(tmp_path: Path) -> None:
    from tests.fakes.anthropic_batches import MISSING as CLAUDE_MISSING
    from tests.fakes.anthropic_batches import FakeAnthropicBatches

    async with FakeAnthropicBatches(api_key=ANTHROPIC_KEY) as fake:
        text = f"""
[providers.anthropic]
base_url = "{fake.base_url}"
[jobs]
dir = "{tmp_path / "jobs"}"
"""
        env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY}
        async with running_daemon(make_config(text, env=env)) as first:
            async with await connected(first.address) as client:
                items = [
                    chat("a", "one", "claude-sonnet-4-5"),
                    chat("b", "two", "anthropic:claude-sonnet-4-5"),
                    chat("c", "x", CLAUDE_MISSING),
                ]
                done = await client.submit_batch(items, provider="anthropic")
                operation = await client.wait_operation(done.name)
                embed = jobs_pb2.BatchItem(embed=inference_pb2.EmbedRequest(text="t", model="m"))
                with pytest.raises(InvalidInput, match="chat items only"):
                    await client.submit_batch([embed], provider="anthropic")
                fake.hold = True
                kept = await client.submit_batch(
                    [chat("k", "kept", "claude-sonnet-4-5")], provider="anthropic"
                )
                dropped = await client.submit_batch(
                    [chat("d", "gone", "claude-sonnet-4-5")], provider="anthropic"
                )
                polls = fake.poll_count
                while fake.poll_count < polls + 2:  # noqa: ASYNC110 (the fake counts polls)
                    await asyncio.sleep(0.01)
                await client.cancel_operation(dropped.name)
        results = batch_result(operation).results
        assert [r.custom_id for r in results] == ["a", "b", "c"]
        assert [r.chat.content for r in results[:2]] == [
            "batch answer to: one",
            "batch answer to: two",
        ]
        assert results[0].chat.usage.prompt_tokens == 11
        assert results[0].chat.usage.cost_usd == pytest.approx((11 * 3 + 7 * 15) / 1e6 / 2)
        assert results[2].error.code == "NOT_FOUND"
        meta = job_metadata(operation)
        assert (meta.provider, meta.upstream_status, meta.completed, meta.failed) == (
            "anthropic",
            "ended",
            2,
            1,
        )
        sent = fake.batches[next(iter(fake.batches))].requests
        assert [r["custom_id"] for r in sent] == ["0", "1", "2"]
        assert sent[1]["params"]["model"] == "claude-sonnet-4-5"
        assert len(fake.cancelled) == 1
        polls = fake.poll_count
        async with running_daemon(make_config(text, env=env)) as second:
            async with await connected(second.address) as client:
                while fake.poll_count == polls:  # noqa: ASYNC110 (the fake counts polls)
                    await asyncio.sleep(0.01)  # the new ratd polls the same batch
                fake.hold = False
                resumed = await client.wait_operation(kept.name)
        assert batch_result(resumed).results[0].chat.content == "batch answer to: kept"
        assert len(fake.batches) == 3  # resumed, not submitted again
