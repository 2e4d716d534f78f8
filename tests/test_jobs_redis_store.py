"""``RedisJobStore`` against a real ``redis-server``: records, per-tenant pages, leases
(one follower per running job, takeover once a lease expires, a stale writer refused,
cancel requests), and Redis stopped and started again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from google.longrunning import operations_proto_pb2 as operations_pb2

from ratd import errors
from ratd.config import parse_config
from ratd.jobs.redis_store import PREFIX, RedisJobStore
from ratd.jobs.store import (
    FileJobStore,
    JobLeases,
    JobRecord,
    LeaseLost,
    MemoryJobStore,
    Renewal,
)
from ratd.jobs.store import open_store as store_for
from tests.support.redis_server import PASSWORD, REDIS_SERVER, SKIP_REASON, RedisServer, started

pytestmark = pytest.mark.timeout(60)

if REDIS_SERVER is None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

LEASE = 0.4


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = started(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def open_store(redis: RedisServer) -> RedisJobStore:
    return RedisJobStore(redis.url, password=PASSWORD, timeout=2.0, lease=LEASE)


@pytest.fixture
async def replicas(redis: RedisServer) -> AsyncIterator[tuple[RedisJobStore, RedisJobStore]]:
    one, two = open_store(redis), open_store(redis)
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


def record(tenant: str, created: float, *, done: bool = False) -> JobRecord:
    name = f"operations/batch-{uuid.uuid4().hex}"
    operation = operations_pb2.Operation(name=name, done=done)
    return JobRecord(operation, "batch", tenant, b"request", created=created, updated=created)


async def test_records_pages_per_tenant_and_expiry(
    replicas: tuple[RedisJobStore, RedisJobStore],
) -> None:
    one, two = replicas
    assert isinstance(one, JobLeases)
    mine = [record("alpha", 100.0 + i) for i in range(5)]
    theirs = record("beta", 50.0)
    for kept in [*mine, theirs]:
        await one.put(kept)
    got = await two.get(mine[0].name)
    assert got is not None and got.to_bytes() == mine[0].to_bytes()
    assert await two.get("operations/batch-" + "0" * 32) is None

    first = await two.page("alpha", None, 0, 3)
    assert [r.name for r in first.records] == [r.name for r in reversed(mine)][:3]
    assert first.more
    rest = await two.page("alpha", None, 3, 3)
    assert [r.name for r in rest.records] == [mine[1].name, mine[0].name] and not rest.more
    assert [r.name for r in (await two.page("beta", None, 0, 10)).records] == [theirs.name]
    assert len((await two.page(None, None, 0, 10)).records) == 6
    assert await two.count() == 6

    mine[1].operation.done = True
    mine[1].updated = 200.0
    await one.put(mine[1])
    assert [r.name for r in (await two.page("alpha", True, 0, 10)).records] == [mine[1].name]
    assert len((await two.page("alpha", False, 0, 10)).records) == 4
    assert await two.finished(150.0, 10) == []
    assert await two.finished(None, 10) == [mine[1].name]
    await two.delete(mine[1].name)
    assert await two.get(mine[1].name) is None
    assert await two.count() == 5
    assert (await two.page("alpha", True, 0, 10)).records == []
    await two.delete(mine[2].name)  # running: not deleted
    assert await two.get(mine[2].name) is not None
    # A record ratd did not write is no job (skipped, not an error).
    await one.redis.set(f"{PREFIX}rec:{mine[3].name}", b"{not a record")
    assert await two.get(mine[3].name) is None
    assert mine[3].name not in [r.name for r in (await two.page("alpha", None, 0, 10)).records]


async def wait_for_orphans(store: RedisJobStore) -> list[JobRecord]:
    """What ``store`` takes over once the other replica's lease has expired (polled)."""
    for _ in range(200):
        found = await store.claim_orphans(8)
        if found:
            return found
        await asyncio.sleep(LEASE / 4)
    raise AssertionError("no job was free to take over")


async def test_one_follower_takeover_and_a_stale_writer_refused(
    replicas: tuple[RedisJobStore, RedisJobStore],
) -> None:
    one, two = replicas
    job = record("alpha", time.time())
    await one.put(job)  # one follows it
    assert not await two.claim(job.name)
    assert await two.claim_orphans(8) == []
    with pytest.raises(LeaseLost):
        await two.put(job)
    assert await one.renew([job.name]) == {job.name: Renewal.KEPT}
    assert await two.renew([job.name]) == {job.name: Renewal.LOST}

    # one stops renewing (it died, or paused): two takes the job over.
    [taken] = await wait_for_orphans(two)
    assert taken.name == job.name
    job.upstream["batch_id"] = "stale"
    with pytest.raises(LeaseLost):  # one woke up: its writes are refused
        await one.put(job)
    assert await one.renew([job.name]) == {job.name: Renewal.LOST}
    assert not await one.claim(job.name)
    taken.upstream["batch_id"] = "b1"
    await two.put(taken)

    await two.release([job.name])  # two stops cleanly: the job is free at once
    [again] = await one.claim_orphans(8)
    assert again.name == job.name
    await one.release([job.name])
    assert await two.claim(job.name)
    await one.release([job.name])  # not one's lease: left alone
    assert not await one.claim(job.name)

    await one.request_cancel(job.name)
    assert await two.renew([job.name]) == {job.name: Renewal.CANCEL}
    taken.operation.done = True
    await two.put(taken)
    kept = await one.get(job.name)
    assert kept is not None and kept.operation.done and kept.upstream == {"batch_id": "b1"}
    # Once done, a job is never written again, by anyone; its lease is gone with it.
    for store in (one, two):
        with pytest.raises(LeaseLost):
            await store.put(job)
        assert not await store.claim(job.name)
    assert await two.renew([job.name]) == {job.name: Renewal.LOST}
    assert await one.claim_orphans(8) == []


async def test_redis_stopped_and_started_again(
    redis: RedisServer, replicas: tuple[RedisJobStore, RedisJobStore]
) -> None:
    one, two = replicas
    job = record("alpha", time.time())
    await one.put(job)
    redis.stop()
    with pytest.raises(errors.StateUnavailable, match="job store"):
        await two.get(job.name)
    with pytest.raises(errors.StateUnavailable):
        await one.renew([job.name])
    redis.start()
    got = await two.get(job.name)  # kept (append-only file), and no restart needed
    assert got is not None and got.name == job.name
    # The lease may have lapsed while Redis was down: its follower takes it again.
    assert await one.renew([job.name]) == {job.name: Renewal.KEPT}
    await one.put(job)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('[state]\nbackend = "redis"\n', RedisJobStore),
        ('[state]\nbackend = "redis"\n[jobs]\nstore = "local"\n', FileJobStore),
        ('[jobs]\nstore = "redis"\n', RedisJobStore),
        ('[jobs]\ndir = ""\n', MemoryJobStore),
        ("", FileJobStore),
    ],
)
async def test_which_store_the_config_picks(text: str, kind: type) -> None:
    store = store_for(parse_config(text, "<test>", env={}))
    try:
        assert isinstance(store, kind)
        assert store.shared == (kind is RedisJobStore)
    finally:
        await store.close()
