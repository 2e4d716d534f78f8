"""A batch at the Gemini API's batch mode: SubmitBatch with ``provider = "google"``
through a real in-process ratd to the fake batch API on loopback (inline requests, the
key in ``x-goog-api-key`` only, polled Operation, inline or file results, errors per
item), an upstream FAILED batch, what is refused before anything is sent, cancel
reaching the provider, and a ratd stopped mid-batch whose successor polls the same
batch."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.rpc import code_pb2

from ratatoskr import (
    InvalidInput,
    Message,
    ModelNotAllowed,
    ServiceClient,
    batch_result,
    job_metadata,
)
from ratatoskr.v1 import inference_pb2, jobs_pb2
from tests.fakes.gemini_batches import ANSWER_TOKENS, PROMPT_TOKENS, FakeGeminiBatches
from tests.fakes.gemini_upstream import EMBED_DIMENSIONS
from tests.support.daemon import make_config, running_daemon

pytestmark = pytest.mark.timeout(60)

KEY = "AIzaSy-rtsk-gemini-batches-0123456789"
MODEL = "gemini-3.5-flash"  # live on 2026-12-04 in the seed
EMBED_MODEL = "gemini-embedding-001"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiBatches]:
    async with FakeGeminiBatches(api_key=KEY) as upstream:
        yield upstream


def config(fake: FakeGeminiBatches, jobs_dir: str = "", extra: str = "") -> str:
    return f"""
[providers.google]
base_url = "{fake.base_url}"
[jobs]
dir = "{jobs_dir}"
{extra}
"""


ENV = {"GOOGLE_API_KEY": KEY}
TENANT_KEY = "rat_test-gemini-batch-tenant-0123"
TENANTS = f"""max_batch_items = 3
[auth]
mode = "api_key"
[tenants.acme]
api_key_sha256 = ["{hashlib.sha256(TENANT_KEY.encode()).hexdigest()}"]
roles = ["inference"]
models = ["google:gemini-3.1-*", "google:deep-research-*", "google:gemini-embedding-001"]
"""


def chat(custom_id: str, text: str, model: str = MODEL) -> jobs_pb2.BatchItem:
    request = ServiceClient.chat_request([Message.user(text)], model=model)
    return jobs_pb2.BatchItem(custom_id=custom_id, chat=request)


def embed(custom_id: str, text: str, model: str = EMBED_MODEL) -> jobs_pb2.BatchItem:
    return jobs_pb2.BatchItem(
        custom_id=custom_id, embed=inference_pb2.EmbedRequest(text=text, model=model)
    )


async def connected(address: str) -> ServiceClient:
    return await ServiceClient.connect(address, timeout=20)


async def test_a_chat_batch_at_gemini(fake: FakeGeminiBatches) -> None:
    async with running_daemon(make_config(config(fake), env=ENV)) as daemon:
        async with await connected(daemon.address) as client:
            items = [
                chat("a", "one", f"google:{MODEL}"),
                chat("b", "two"),
                chat("c", "please refuse this"),
                chat("d", "a missing thing"),
            ]
            started = await client.submit_batch(items, provider="google", display_name="nightly")
            assert started.metadata.provider == "google"
            operation = await client.wait_operation(started.name)
    assert operation.done and not operation.HasField("error"), operation.error
    results = batch_result(operation).results
    assert [r.custom_id for r in results] == ["a", "b", "c", "d"]
    assert [r.chat.content for r in results[:2]] == [
        "batch answer to: one",
        "batch answer to: two",
    ]
    usage = results[0].chat.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, ANSWER_TOKENS)
    # At the batch price: half of the seed's $1.50 / $9 per million tokens.
    assert usage.cost_usd == pytest.approx((9 * 1.5 + 5 * 9) / 1e6 / 2)
    assert results[2].error.code == "INVALID_ARGUMENT" and "refused" in results[2].error.message
    assert results[3].error.code == "NOT_FOUND"
    meta = job_metadata(operation)
    assert (meta.upstream_status, meta.completed, meta.failed, meta.progress) == (
        "BATCH_STATE_SUCCEEDED",
        2,
        2,
        1.0,
    )
    [created] = fake.requests_to(f"/v1beta/models/{MODEL}:batchGenerateContent")
    batch = created.json["batch"]
    assert batch["displayName"] == "nightly"
    sent = batch["inputConfig"]["requests"]["requests"]
    assert [r["metadata"]["key"] for r in sent] == ["0", "1", "2", "3"]
    assert sent[1]["request"]["contents"] == [{"role": "user", "parts": [{"text": "two"}]}]
    assert not fake.requests_to(":generateContent")  # nothing went unbatched
    for recorded in fake.requests:  # the key only in its header, never in a URL
        assert recorded.headers.get("x-goog-api-key") == KEY
        assert KEY not in recorded.path and KEY not in recorded.query


async def test_an_embedding_batch_with_a_responses_file(fake: FakeGeminiBatches) -> None:
    fake.responses_file = True
    async with running_daemon(make_config(config(fake), env=ENV)) as daemon:
        async with await connected(daemon.address) as client:
            started = await client.submit_batch(
                [embed("e", "ash"), embed("f", "elm"), embed("g", "refuse me")],
                provider="google",
            )
            operation = await client.wait_operation(started.name)
    first, second, third = batch_result(operation).results
    assert first.embed.dimensions == EMBED_DIMENSIONS == len(first.embed.values)
    assert list(first.embed.values) != list(second.embed.values)
    assert third.error.code == "INVALID_ARGUMENT"
    [created] = fake.requests_to(f"/v1beta/models/{EMBED_MODEL}:asyncBatchEmbedContent")
    sent = created.json["batch"]["inputConfig"]["requests"]["requests"]
    assert sent[0]["request"]["content"] == {"parts": [{"text": "ash"}]}
    [downloaded] = fake.requests_to(":download")
    assert downloaded.path.startswith("/download/v1beta/files/")
    assert downloaded.query == "alt=media"


async def test_a_failed_or_expired_batch_fails_the_job(fake: FakeGeminiBatches) -> None:
    fake.fail_with = {"code": 3, "message": "the batch input is invalid", "details": []}
    async with running_daemon(make_config(config(fake), env=ENV)) as daemon:
        async with await connected(daemon.address) as client:
            started = await client.submit_batch([chat("a", "one")], provider="google")
            operation = await client.wait_operation(started.name)
            fake.expire = True
            started = await client.submit_batch([chat("b", "two")], provider="google")
            expired = await client.wait_operation(started.name)
    assert operation.error.code == code_pb2.INVALID_ARGUMENT
    assert "the batch input is invalid" in operation.error.message
    assert job_metadata(operation).upstream_status == "BATCH_STATE_FAILED"
    assert expired.error.code == code_pb2.UNAVAILABLE
    assert "ended BATCH_STATE_EXPIRED" in expired.error.message


async def test_what_a_gemini_batch_refuses_before_sending_anything(
    fake: FakeGeminiBatches,
) -> None:
    env = {**ENV, "OPENAI_API_KEY": "sk-test-not-used"}
    lite, pro = "gemini-3.1-flash-lite", "gemini-3.1-pro-preview"
    async with running_daemon(make_config(config(fake, extra=TENANTS), env=env)) as daemon:
        async with await ServiceClient.connect(
            daemon.address, timeout=20, api_key=TENANT_KEY
        ) as client:
            with pytest.raises(InvalidInput, match="one method"):
                await client.submit_batch(
                    [chat("a", "x", lite), embed("b", "y")], provider="google"
                )
            with pytest.raises(InvalidInput, match="one model"):
                await client.submit_batch(
                    [chat("a", "x", lite), chat("b", "y", pro)], provider="google"
                )
            with pytest.raises(InvalidInput, match="needs a model"):
                await client.submit_batch([chat("a", "x", "")], provider="google")
            with pytest.raises(InvalidInput, match="Interactions API, which has no batch"):
                await client.submit_batch(
                    [chat("a", "x", "deep-research-preview-04-2026")], provider="google"
                )
            with pytest.raises(InvalidInput, match="kind openai"):
                await client.submit_batch([chat("a", "x", lite)], provider="nope")
            with pytest.raises(InvalidInput, match="max_batch_items"):
                await client.submit_batch(
                    [chat(str(i), "x", lite) for i in range(4)], provider="google"
                )
            with pytest.raises(ModelNotAllowed, match=f"may not use google:{MODEL}"):
                await client.submit_batch([chat("a", "x", lite), chat("b", "y")], provider="google")
            await client.submit_batch([chat("a", "x", lite)], provider="google")  # allowed
    assert [b.model for b in fake.batches.values()] == [lite]
    assert len(fake.requests_to(":batchGenerateContent")) == 1  # the allowed one only


async def test_a_batch_over_20_mb_goes_as_an_uploaded_file(fake: FakeGeminiBatches) -> None:
    big = "x" * (7 * 2**20)  # three of them: over the 20 MB an inline batch takes
    async with running_daemon(make_config(config(fake), env=ENV)) as daemon:
        async with await connected(daemon.address) as client:
            items = [chat(str(i), f"{i}{big}") for i in range(3)]
            started = await client.submit_batch(items, provider="google")
            operation = await client.wait_operation(started.name)
    assert operation.done and not operation.HasField("error"), operation.error
    answers = [r.chat.content for r in batch_result(operation).results]
    assert answers == [f"batch answer to: {i}{big[:39]}" for i in range(3)]
    start, finish = fake.requests_to("/upload/v1beta/files")
    assert start.headers["X-Goog-Upload-Command"] == "start"
    assert int(start.headers["X-Goog-Upload-Header-Content-Length"]) == len(finish.raw)
    assert finish.headers["X-Goog-Upload-Command"] == "upload, finalize"
    assert finish.headers.get("x-goog-api-key") == KEY
    [created] = fake.requests_to(f"/v1beta/models/{MODEL}:batchGenerateContent")
    [file_name] = fake.files.keys() & {created.json["batch"]["inputConfig"]["fileName"]}
    assert [line["key"] for line in fake.files[file_name]] == ["0", "1", "2"]
    assert fake.requests_to(":download")  # the answers came as a responses file


async def test_an_upload_url_elsewhere_gets_neither_the_key_nor_the_file(
    fake: FakeGeminiBatches,
) -> None:
    fake.upload_origin = "http://127.0.0.2:9"  # not the configured base_url
    big = "y" * (11 * 2**20)
    async with running_daemon(make_config(config(fake), env=ENV)) as daemon:
        async with await connected(daemon.address) as client:
            items = [chat(str(i), big) for i in range(2)]
            started = await client.submit_batch(items, provider="google")
            operation = await client.wait_operation(started.name)
    assert operation.error.code == code_pb2.UNAVAILABLE
    assert "upload URL outside the provider's base_url" in operation.error.message
    [start] = fake.requests_to("/upload/v1beta/files")  # the start only
    assert start.headers["X-Goog-Upload-Command"] == "start"
    assert not fake.batches


async def test_cancel_and_a_restart_mid_batch(fake: FakeGeminiBatches, tmp_path: Path) -> None:
    fake.hold = True
    text = config(fake, str(tmp_path / "jobs"))
    async with running_daemon(make_config(text, env=ENV)) as first:
        async with await connected(first.address) as client:
            kept = await client.submit_batch([chat("k", "kept")], provider="google")
            dropped = await client.submit_batch([chat("d", "dropped")], provider="google")
            while fake.poll_count < 2:  # noqa: ASYNC110 (the fake counts polls)
                await asyncio.sleep(0.01)
            await client.cancel_operation(dropped.name)
            cancelled = await client.get_operation(dropped.name)
            running = await client.get_operation(kept.name)
    assert cancelled.error.code == code_pb2.CANCELLED
    assert len(fake.cancelled) == 1
    assert fake.batches[fake.cancelled[0]].state == "BATCH_STATE_CANCELLED"
    assert job_metadata(running).upstream_status in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")
    polls = fake.poll_count
    async with running_daemon(make_config(text, env=ENV)) as second:
        async with await connected(second.address) as client:
            assert not (await client.get_operation(kept.name)).done
            while fake.poll_count == polls:  # noqa: ASYNC110 (the fake counts polls)
                await asyncio.sleep(0.01)  # the new ratd polls the same batch
            fake.hold = False
            operation = await client.wait_operation(kept.name)
    assert batch_result(operation).results[0].chat.content == "batch answer to: kept"
    assert len(fake.batches) == 2  # resumed, not submitted again
