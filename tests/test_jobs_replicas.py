"""Jobs across replicas: a real ``redis-server``, two real ratd processes sharing it
(``[state] backend = "redis"``, so jobs live in Redis), and OpenAI's Batch API faked on
loopback in the test's loop.

A batch submitted on one replica is read, listed and cancelled through the other, only
by its own tenant; killing the replica that follows a batch (SIGKILL) hands it to the
other once its lease expires, which polls the same batch to its results (nothing
submitted twice); with Redis stopped, Operations answer UNAVAILABLE, and once Redis is
back the job ends with its results; a replica stopped cleanly lets go of its jobs, which
the other takes up (and cancels when asked)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2

from ratatoskr import (
    JobNotFound,
    Message,
    ServiceClient,
    StateUnavailable,
    batch_result,
    job_metadata,
)
from ratatoskr.v1 import jobs_pb2
from tests.fakes.openai_batches import FakeOpenAIBatches
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import SpawnedRatd, spawn_ratd
from tests.support.redis_server import PASSWORD, REDIS_SERVER, SKIP_REASON, RedisServer, started

pytestmark = pytest.mark.timeout(120)

if REDIS_SERVER is None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

KEYS = {"alpha": "rat_test-alpha-5a4b3c2d1e", "beta": "rat_test-beta-1e2d3c4b5a"}
LEASE_SECS = 1.0


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = started(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeOpenAIUpstream, FakeOpenAIBatches]]:
    upstream = FakeOpenAIUpstream()
    batches = FakeOpenAIBatches(upstream)
    async with upstream:
        yield upstream, batches


def config_text(upstream: FakeOpenAIUpstream, redis: RedisServer) -> str:
    tenants = "".join(
        f'[tenants.{name}]\napi_key_sha256 = ["{hashlib.sha256(key.encode()).hexdigest()}"]\n'
        for name, key in KEYS.items()
    )
    return f"""
[server]
address = "127.0.0.1:0"
metrics_address = ""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[registry]
live = false
cache_path = ""
[auth]
mode = "api_key"
[state]
backend = "redis"
redis_url = "{redis.url}"
timeout_ms = 300
[jobs]
lease_secs = {LEASE_SECS}
{tenants}"""


@contextmanager
def replica(
    fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches], redis: RedisServer, home: Path
) -> Iterator[SpawnedRatd]:
    """One ratd process on ``redis``, its files under ``home``."""
    home.mkdir()
    secrets = home / "secrets.toml"
    secrets.write_text(f'[redis]\npassword = "{PASSWORD}"\n[openai]\napi_key = "{OPENAI_KEY}"\n')
    secrets.chmod(0o600)
    text = config_text(fake[0], redis)
    with spawn_ratd(text, home, extra_args=("--secrets", str(secrets))) as spawned:
        yield spawned
    assert PASSWORD not in spawned.log(), "the Redis password reached the ratd log"


@pytest.fixture
def pair(
    fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches], redis: RedisServer, tmp_path: Path
) -> Iterator[list[SpawnedRatd]]:
    """Two ratd processes sharing ``redis``."""
    with ExitStack() as stack:
        yield [stack.enter_context(replica(fake, redis, tmp_path / f"ratd{i}")) for i in range(2)]


def chat(custom_id: str, text: str) -> jobs_pb2.BatchItem:
    request = ServiceClient.chat_request([Message.user(text)], model="gpt-4o-mini")
    return jobs_pb2.BatchItem(custom_id=custom_id, chat=request)


async def client(replica: SpawnedRatd, tenant: str) -> ServiceClient:
    return await ServiceClient.connect(replica.address, timeout=20, api_key=KEYS[tenant])


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition()`` holds: the fake counts what it was sent."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


async def test_any_replica_reads_cancels_and_takes_over(
    pair: list[SpawnedRatd], fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches]
) -> None:
    first, second = pair
    _, batches = fake
    batches.hold = True
    on_a, on_b, other = await client(first, "alpha"), await client(second, "alpha"), None
    try:
        other = await client(second, "beta")
        kept = await on_a.submit_batch([chat("k", "kept")], provider="openai")
        seen = await on_b.get_operation(kept.name)
        assert seen.name == kept.name and not seen.done
        assert job_metadata(seen).provider == "openai"
        assert [op.name for op in (await on_b.list_operations()).operations] == [kept.name]
        # Another tenant sees nothing of it, on any replica.
        with pytest.raises(JobNotFound):
            await other.get_operation(kept.name)
        with pytest.raises(JobNotFound):
            await other.cancel_operation(kept.name)
        assert not (await other.list_operations()).operations

        dropped = await on_a.submit_batch([chat("d", "dropped")], provider="openai")
        await until(lambda: len(batches.batches) == 2 and batches.poll_count >= 2, "polled")
        await on_b.cancel_operation(dropped.name)  # the first replica follows it
        cancelled = await on_b.get_operation(dropped.name)
        assert cancelled.done and cancelled.error.code == code_pb2.CANCELLED
        assert len(batches.cancelled) == 1
        assert (await on_b.list_operations(done=True)).operations[0].name == dropped.name
        await on_b.delete_operation(dropped.name)
        with pytest.raises(JobNotFound):
            await on_a.get_operation(dropped.name)

        first.process.kill()  # SIGKILL mid-batch: no goodbye, its lease just expires
        first.process.wait()
        polls = batches.poll_count
        await until(lambda: batches.poll_count > polls, "the second replica polls the batch")
        batches.hold = False
        operation = await on_b.wait_operation(kept.name, wait=60)
        assert operation.done and not operation.HasField("error"), operation.error
        assert batch_result(operation).results[0].chat.content == "batch answer to: kept"
        assert len(batches.batches) == 2  # taken over, not submitted again
        assert f"taking over {kept.name}" in second.log()
    finally:
        for each in (on_a, on_b, other):
            if each is not None:
                await each.close()


async def test_redis_down_answers_unavailable_and_the_job_goes_on(
    pair: list[SpawnedRatd],
    fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches],
    redis: RedisServer,
    tmp_path: Path,
) -> None:
    first, second = pair
    _, batches = fake
    batches.hold = True
    on_a, on_b = await client(first, "alpha"), await client(second, "alpha")
    try:
        started_job = await on_a.submit_batch([chat("k", "through")], provider="openai")
        await until(lambda: batches.poll_count >= 1, "polled")
        redis.stop()
        with pytest.raises(StateUnavailable) as caught:
            await on_b.get_operation(started_job.name)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert "job store (Redis) is unavailable" in str(caught.value)
        with pytest.raises(StateUnavailable):
            await on_b.list_operations()
        polls = batches.poll_count
        batches.hold = False  # the batch ends while Redis is down
        await until(lambda: batches.poll_count > polls, "the batch is polled to its end")
        # A replica started while Redis is down serves, and recovers by itself.
        with replica(fake, redis, tmp_path / "late") as late:
            on_late = await client(late, "alpha")
            try:
                with pytest.raises(StateUnavailable):
                    await on_late.get_operation(started_job.name)
                redis.start()
                operation = await on_b.wait_operation(started_job.name, wait=60)
                assert operation.done and not operation.HasField("error"), operation.error
                assert (await on_late.get_operation(started_job.name)).done
            finally:
                await on_late.close()
        assert batch_result(operation).results[0].chat.content == "batch answer to: through"
        assert len(batches.batches) == 1
    finally:
        await on_a.close()
        await on_b.close()


async def test_a_replica_stopped_cleanly_hands_its_jobs_over(
    pair: list[SpawnedRatd], fake: tuple[FakeOpenAIUpstream, FakeOpenAIBatches]
) -> None:
    first, second = pair
    _, batches = fake
    batches.hold = True
    on_a, on_b = await client(first, "alpha"), await client(second, "alpha")
    try:
        kept = await on_a.submit_batch([chat("k", "handed over")], provider="openai")
        dropped = await on_a.submit_batch([chat("d", "dropped")], provider="openai")
        await until(lambda: len(batches.batches) == 2 and batches.poll_count >= 2, "polled")
        first.process.send_signal(signal.SIGTERM)  # lets go of its leases as it stops
        assert await asyncio.to_thread(first.process.wait, 30) == 0
        # No replica follows it until the second takes it up: cancelling it there takes
        # it and cancels it (or, taken up already, cancels it as its follower).
        await on_b.cancel_operation(dropped.name)
        cancelled = await on_b.get_operation(dropped.name)
        assert cancelled.done and cancelled.error.code == code_pb2.CANCELLED
        assert len(batches.cancelled) == 1
        batches.hold = False
        operation = await on_b.wait_operation(kept.name, wait=60)
        assert batch_result(operation).results[0].chat.content == "batch answer to: handed over"
        assert len(batches.batches) == 2
        assert f"taking over {kept.name}" in second.log()
    finally:
        await on_a.close()
        await on_b.close()
