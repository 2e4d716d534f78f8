"""Jobs: SubmitBatch run by the local batch runner, followed through the standard
google.longrunning.Operations service, on a real in-process ratd (grpc.aio server,
auth interceptor, gateway) in front of the fake OpenAI upstream on loopback; the
file-backed job store across daemons; tenants seeing only their own jobs."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2_grpc
from google.longrunning import operations_proto_pb2 as operations_pb2
from google.rpc import code_pb2

from ratatoskr import (
    InvalidInput,
    JobNotFinished,
    JobNotFound,
    Message,
    RatatoskrError,
    ServiceClient,
    batch_result,
    job_metadata,
)
from ratatoskr.v1 import chat_pb2, inference_pb2, jobs_pb2
from ratd.jobs.store import FileJobStore, JobRecord
from ratd.server import Daemon
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import make_config, running_daemon

pytestmark = pytest.mark.timeout(30)

KEY_ACME = "rat_test-jobs-acme-5e4d3c2b1a"
KEY_BETA = "rat_test-jobs-beta-0f9e8d7c6b"
KEY_OPS = "rat_test-jobs-ops-a1b2c3d4e5"
HANG = "openai:scenario/hang"  # the fake holds the request open until the caller goes


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def config_text(upstream: FakeOpenAIUpstream, jobs: str = "", auth: bool = False) -> str:
    text = f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[jobs]
dir = "{jobs}"
batch_concurrency = 2
"""
    if auth:
        text += f"""
[auth]
mode = "api_key"
[tenants.acme]
api_key_sha256 = ["{sha(KEY_ACME)}"]
roles = ["inference"]
[tenants.beta]
api_key_sha256 = ["{sha(KEY_BETA)}"]
roles = ["inference"]
[tenants.ops]
api_key_sha256 = ["{sha(KEY_OPS)}"]
roles = ["inference", "admin"]
"""
    return text


def daemon_for(upstream: FakeOpenAIUpstream, jobs: str = "", auth: bool = False) -> Daemon:
    config = make_config(config_text(upstream, jobs, auth), env={"OPENAI_API_KEY": OPENAI_KEY})
    return Daemon(config)


@pytest.fixture
async def daemon(upstream: FakeOpenAIUpstream) -> AsyncIterator[Daemon]:
    async with running_daemon(daemon_for(upstream).config) as running:
        yield running


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[ServiceClient]:
    async with await ServiceClient.connect(daemon.address, timeout=20) as connected:
        yield connected


def chat_item(custom_id: str, text: str, model: str = "gpt-4o-mini") -> jobs_pb2.BatchItem:
    request = ServiceClient.chat_request([Message.user(text)], model=model)
    return jobs_pb2.BatchItem(custom_id=custom_id, chat=request)


def embed_item(custom_id: str, text: str) -> jobs_pb2.BatchItem:
    request = inference_pb2.EmbedRequest(text=text, model="text-embedding-3-small")
    return jobs_pb2.BatchItem(custom_id=custom_id, embed=request)


async def test_a_batch_runs_through_the_gateway_and_is_followed_by_operations(
    client: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    items = [chat_item(f"q{i}", f"question {i}") for i in range(5)]
    items.append(embed_item("e0", "an ash tree"))
    bad = jobs_pb2.BatchItem(custom_id="bad", chat=chat_pb2.ChatRequest())  # no messages
    items.append(bad)
    started = await client.submit_batch(items, display_name="nightly")
    assert started.name.startswith("operations/batch-")
    assert started.metadata.total == 7
    assert started.metadata.display_name == "nightly"

    done = await client.wait_operation(started.name)
    assert done.done and not done.HasField("error")
    meta = job_metadata(done)
    assert (meta.state, meta.completed, meta.failed) == (jobs_pb2.JOB_STATE_SUCCEEDED, 6, 1)
    assert meta.progress == pytest.approx(1.0)
    results = batch_result(done).results
    assert [r.custom_id for r in results] == ["q0", "q1", "q2", "q3", "q4", "e0", "bad"]
    assert all(r.chat.content for r in results[:5])
    assert len(results[5].embed.values) == results[5].embed.dimensions > 0
    assert results[6].error.code == "INVALID_ARGUMENT" and results[6].error.message
    # Every chat item and the embedding reached the upstream, as calls of their own.
    assert len(upstream.requests_to("openai")) == 5

    listed = await client.list_operations()
    assert [op.name for op in listed.operations] == [started.name]
    assert not (await client.list_operations(done=False)).operations
    assert (await client.get_operation(started.name)).done
    await client.delete_operation(started.name)
    with pytest.raises(JobNotFound):
        await client.get_operation(started.name)


async def test_the_standard_operations_stub_works_against_ratd(daemon: Daemon) -> None:
    """Any gRPC client's google.longrunning stub, not only ours."""
    async with await ServiceClient.connect(daemon.address, timeout=20) as client:
        started = await client.submit_batch([chat_item("only", "hi")])
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = operations_pb2_grpc.OperationsStub(channel)
        request = operations_pb2.WaitOperationRequest(name=started.name)
        request.timeout.FromSeconds(15)
        operation = await stub.WaitOperation(request, timeout=20)
        while not operation.done:  # pragma: no cover - a slow machine
            operation = await stub.WaitOperation(request, timeout=20)
        listed = await stub.ListOperations(operations_pb2.ListOperationsRequest(), timeout=20)
    assert [op.name for op in listed.operations] == [started.name]
    result = jobs_pb2.BatchResult()
    assert operation.response.Unpack(result)
    assert result.results[0].chat.content


async def test_cancel_stops_the_items_and_closes_the_upstream_call(
    client: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    started = await client.submit_batch([chat_item("slow", "wait", model=HANG)])
    while not upstream.requests_to("openai"):  # noqa: ASYNC110 (the fake records, no event)
        await asyncio.sleep(0.01)
    running = await client.get_operation(started.name)
    assert not running.done
    with pytest.raises(JobNotFinished):
        await client.delete_operation(started.name)
    await client.cancel_operation(started.name)
    cancelled = await client.get_operation(started.name)
    assert cancelled.done and cancelled.error.code == code_pb2.CANCELLED
    assert job_metadata(cancelled).state == jobs_pb2.JOB_STATE_CANCELLED
    await asyncio.wait_for(upstream.disconnected.wait(), 10)
    await client.cancel_operation(started.name)  # a finished job: left as it is
    await client.delete_operation(started.name)


async def test_wait_operation_answers_a_running_job_when_its_timeout_passes(
    client: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    started = await client.submit_batch([chat_item("slow", "wait", model=HANG)])
    operation = await client.wait_operation(started.name, wait=0.05)
    assert not operation.done
    assert job_metadata(operation).state == jobs_pb2.JOB_STATE_RUNNING
    await client.cancel_operation(started.name)


async def test_bad_requests_name_the_problem(client: ServiceClient) -> None:
    with pytest.raises(InvalidInput, match="at least one item"):
        await client.submit_batch([])
    with pytest.raises(InvalidInput, match="used twice"):
        await client.submit_batch([chat_item("a", "x"), chat_item("a", "y")])
    with pytest.raises(InvalidInput, match="needs a request"):
        await client.submit_batch([jobs_pb2.BatchItem(custom_id="empty")])
    for name in ("", "operations/batch-nothex", "../../etc/passwd", "operations/batch-" + "0" * 32):
        with pytest.raises(JobNotFound):
            await client.get_operation(name)
    with pytest.raises(InvalidInput, match="filter"):
        await client._call(
            client._operations.ListOperations,
            operations_pb2.ListOperationsRequest(filter="name=x"),
            None,
        )
    with pytest.raises(InvalidInput, match="page_token"):
        await client.list_operations(page_token="abc")


async def test_too_many_items_are_refused(upstream: FakeOpenAIUpstream) -> None:
    text = config_text(upstream) + "max_batch_items = 2\n"
    config = make_config(text, env={"OPENAI_API_KEY": OPENAI_KEY})
    async with running_daemon(config) as daemon:
        async with await ServiceClient.connect(daemon.address, timeout=20) as client:
            with pytest.raises(InvalidInput, match="max_batch_items"):
                await client.submit_batch([chat_item(str(i), "x") for i in range(3)])


async def test_tenants_see_and_cancel_only_their_own_jobs(upstream: FakeOpenAIUpstream) -> None:
    async with running_daemon(daemon_for(upstream, auth=True).config) as daemon:
        connect = ServiceClient.connect
        async with (
            await connect(daemon.address, timeout=20, api_key=KEY_ACME) as acme,
            await connect(daemon.address, timeout=20, api_key=KEY_BETA) as beta,
            await connect(daemon.address, timeout=20, api_key=KEY_OPS) as ops,
        ):
            mine = await acme.submit_batch([chat_item("s", "wait", model=HANG)])
            theirs = await beta.submit_batch([chat_item("b", "hello")])
            assert job_metadata(await acme.get_operation(mine.name)).tenant == "acme"
            for call in (beta.get_operation, beta.cancel_operation, beta.delete_operation):
                with pytest.raises(JobNotFound):
                    await call(mine.name)
            with pytest.raises(JobNotFound):
                await beta.wait_operation(mine.name, wait=0.01)
            assert [op.name for op in (await acme.list_operations()).operations] == [mine.name]
            assert [op.name for op in (await beta.list_operations()).operations] == [theirs.name]
            everything = {op.name for op in (await ops.list_operations()).operations}
            assert everything == {mine.name, theirs.name}
            await ops.cancel_operation(mine.name)  # the admin may
            assert (await acme.get_operation(mine.name)).error.code == code_pb2.CANCELLED


async def test_jobs_survive_a_restart_in_the_file_store(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    jobs_dir = tmp_path / "jobs"
    config = daemon_for(upstream, jobs=str(jobs_dir)).config
    async with running_daemon(config) as first:
        async with await ServiceClient.connect(first.address, timeout=20) as client:
            finished = await client.submit_batch([chat_item("a", "hello")])
            await client.wait_operation(finished.name)
            running = await client.submit_batch([chat_item("s", "w", model=HANG)])
            while len(upstream.requests_to("openai")) < 2:  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.01)
    assert len(list(jobs_dir.glob("batch-*.json"))) == 2
    async with running_daemon(config) as second:
        async with await ServiceClient.connect(second.address, timeout=20) as client:
            kept = await client.get_operation(finished.name)
            assert batch_result(kept).results[0].chat.content
            lost = await client.get_operation(running.name)
            # The local runner's items ran in the process that stopped: it cannot resume.
            assert lost.done and lost.error.code == code_pb2.ABORTED
            assert job_metadata(lost).state == jobs_pb2.JOB_STATE_FAILED


async def test_the_oldest_finished_job_makes_room(upstream: FakeOpenAIUpstream) -> None:
    text = config_text(upstream) + "max_jobs = 2\n"
    config = make_config(text, env={"OPENAI_API_KEY": OPENAI_KEY})
    async with running_daemon(config) as daemon:
        async with await ServiceClient.connect(daemon.address, timeout=20) as client:
            old = await client.submit_batch([chat_item("a", "x")])
            await client.wait_operation(old.name)
            hung = await client.submit_batch([chat_item("h", "w", model=HANG)])
            new = await client.submit_batch([chat_item("b", "y")])  # drops `old`
            with pytest.raises(JobNotFound):
                await client.get_operation(old.name)
            await client.wait_operation(new.name)
            await client.cancel_operation(hung.name)
            third = await client.submit_batch([chat_item("c", "z")])
            names = {op.name for op in (await client.list_operations()).operations}
            assert len(names) == 2 and third.name in names


async def test_at_the_limit_with_every_job_running_a_new_one_is_refused(
    upstream: FakeOpenAIUpstream,
) -> None:
    text = config_text(upstream) + "max_jobs = 1\n"
    config = make_config(text, env={"OPENAI_API_KEY": OPENAI_KEY})
    async with running_daemon(config) as daemon:
        async with await ServiceClient.connect(daemon.address, timeout=20) as client:
            hung = await client.submit_batch([chat_item("h", "w", model=HANG)])
            with pytest.raises(RatatoskrError, match=r"jobs\.max_jobs") as refused:
                await client.submit_batch([chat_item("b", "y")])
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            await client.cancel_operation(hung.name)


async def test_the_file_store_skips_what_it_cannot_read(tmp_path: Path) -> None:
    store = FileJobStore(tmp_path)
    record = JobRecord(operations_pb2.Operation(name="operations/batch-" + "a" * 32), "batch", "")
    await store.put(record)
    (tmp_path / ("batch-" + "b" * 32 + ".json")).write_bytes(b"{not json")
    (tmp_path / ("batch-" + "c" * 32 + ".json")).write_bytes(record.to_bytes())  # wrong name
    (tmp_path / ".batch-x.json.tmp").write_bytes(b"half")
    loaded = await store.load()
    assert [r.name for r in loaded] == [record.name]
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError):
        await store.put(JobRecord(operations_pb2.Operation(name="operations/../x"), "batch", ""))
