"""Jobs in Redis, shared by every replica (``[jobs] store = "redis"``, or "auto" with
``[state] backend = "redis"``): any replica answers Operations for any job, exactly one
follows each running job, and a replica that dies has its jobs taken over.

Keys (one hash tag, so one cluster slot; ``P`` = ``{ratjobs}:``):

* ``P rec:<name>``: the record (``JobRecord.to_bytes``);
* ``P lease:<name>``: the replica that follows the running job, with a time to live
  (``[jobs] lease_secs``) it renews while it polls;
* ``P cancel:<name>``: another replica asked for the job to be cancelled;
* ``P running``: the names of running jobs (the set the takeover scan reads);
* ``P tenant``: name -> owning tenant (to unindex a deleted job);
* ``P t:<a|0|1>:<tenant>`` and ``P all:<a|0|1>``: sorted sets by creation time, of all,
  running (0) and done (1) jobs, per tenant and of every tenant, which ListOperations
  pages through;
* ``P finished``: done jobs by last update (expiry, and room under ``max_jobs``).

Every write is a Lua script, atomic in Redis: a record is written only by the replica
holding its lease (or taking a free one), and never again once done, so a replica that
lost its lease (paused past it, taken over) cannot overwrite the job. Every command is
bounded by ``timeout``; a failure raises StateUnavailable (UNAVAILABLE to a caller) and
the next command connects again, so jobs go on by themselves once Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ratd import errors
from ratd.jobs.store import JobRecord, LeaseLost, Page, Renewal
from ratd.state.redis_state import connect

log = logging.getLogger(__name__)

PREFIX = "{ratjobs}:"
# Connections to Redis per replica for jobs.
MAX_CONNECTIONS = 8
# Records larger than this are encoded and decoded in a worker thread (bytes).
OFF_LOOP = 256 * 1024
# How long a cancel request waits for the job's follower to see it (seconds).
CANCEL_REQUEST_TTL = 86400

# ARGV: prefix, me, ttl_ms, name, tenant, record, done (0/1), created, updated.
PUT = """
local p, me, name, tenant = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local rec, lease = p .. 'rec:' .. name, p .. 'lease:' .. name
local running = redis.call('SISMEMBER', p .. 'running', name) == 1
if not running and redis.call('EXISTS', rec) == 1 then return 0 end
local holder = redis.call('GET', lease)
if holder and holder ~= me then return 0 end
local created = ARGV[8]
redis.call('SET', rec, ARGV[6])
redis.call('HSET', p .. 'tenant', name, tenant)
redis.call('ZADD', p .. 't:a:' .. tenant, created, name)
redis.call('ZADD', p .. 'all:a', created, name)
if ARGV[7] == '1' then
  redis.call('SREM', p .. 'running', name)
  redis.call('ZREM', p .. 't:0:' .. tenant, name)
  redis.call('ZREM', p .. 'all:0', name)
  redis.call('ZADD', p .. 't:1:' .. tenant, created, name)
  redis.call('ZADD', p .. 'all:1', created, name)
  redis.call('ZADD', p .. 'finished', ARGV[9], name)
  redis.call('DEL', lease, p .. 'cancel:' .. name)
else
  redis.call('SADD', p .. 'running', name)
  redis.call('ZADD', p .. 't:0:' .. tenant, created, name)
  redis.call('ZADD', p .. 'all:0', created, name)
  redis.call('SET', lease, me, 'PX', ARGV[3])
end
return 1
"""

# ARGV: prefix, name. A running job is not deleted (0).
DELETE = """
local p, name = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', p .. 'running', name) == 1 then return 0 end
local tenant = redis.call('HGET', p .. 'tenant', name)
redis.call('DEL', p .. 'rec:' .. name, p .. 'lease:' .. name, p .. 'cancel:' .. name)
redis.call('HDEL', p .. 'tenant', name)
for _, key in ipairs({'finished', 'all:a', 'all:0', 'all:1'}) do
  redis.call('ZREM', p .. key, name)
end
if tenant then
  for _, mode in ipairs({'a', '0', '1'}) do
    redis.call('ZREM', p .. 't:' .. mode .. ':' .. tenant, name)
  end
end
return 1
"""

# ARGV: prefix, me, ttl_ms, name. 1: the lease is this replica's now.
CLAIM = """
local p, me, name = ARGV[1], ARGV[2], ARGV[4]
if redis.call('SISMEMBER', p .. 'running', name) == 0 then return 0 end
local lease = p .. 'lease:' .. name
local holder = redis.call('GET', lease)
if holder and holder ~= me then return 0 end
redis.call('SET', lease, me, 'PX', ARGV[3])
return 1
"""

# ARGV: prefix, me, ttl_ms, limit. The records of the running jobs claimed.
CLAIM_ORPHANS = """
local p, me, limit = ARGV[1], ARGV[2], tonumber(ARGV[4])
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', p .. 'running')) do
  if #out >= limit then break end
  local lease = p .. 'lease:' .. name
  if redis.call('EXISTS', lease) == 0 then
    local data = redis.call('GET', p .. 'rec:' .. name)
    if data then
      redis.call('SET', lease, me, 'PX', ARGV[3])
      out[#out + 1] = data
    else
      redis.call('SREM', p .. 'running', name)
    end
  end
end
return out
"""

# ARGV: prefix, me, ttl_ms, name... One answer per name: 0 lost, 1 kept, 2 kept and a
# cancel was asked for. A free lease of a running job is taken again (Redis was down
# past it, or restarted).
RENEW = """
local p, me = ARGV[1], ARGV[2]
local out = {}
for i = 4, #ARGV do
  local name = ARGV[i]
  local lease = p .. 'lease:' .. name
  local holder = redis.call('GET', lease)
  local state = 0
  if redis.call('SISMEMBER', p .. 'running', name) == 1 and (not holder or holder == me) then
    redis.call('SET', lease, me, 'PX', ARGV[3])
    state = 1
    if redis.call('EXISTS', p .. 'cancel:' .. name) == 1 then state = 2 end
  end
  out[#out + 1] = state
end
return out
"""

# ARGV: prefix, me, name... This replica's leases of ``names`` let go (a clean stop: the
# jobs are taken over at once, not when the leases would have expired).
RELEASE = """
local p, me = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  local lease = p .. 'lease:' .. ARGV[i]
  if redis.call('GET', lease) == me then redis.call('DEL', lease) end
end
return 1
"""

_RENEWALS = {0: Renewal.LOST, 1: Renewal.KEPT, 2: Renewal.CANCEL}


def replica_id() -> str:
    """This process, told apart from every other replica (and from its own restarts)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class RedisJobStore:
    """``JobStore`` and ``JobLeases`` over one Redis (see the module docstring)."""

    shared = True

    def __init__(self, url: str, *, password: str | None, timeout: float, lease: float) -> None:
        self.url = url
        self.timeout = timeout
        self.lease_ms = int(lease * 1000)
        self.me = replica_id()
        self.redis: Redis = connect(
            url, password=password, timeout=timeout, connections=MAX_CONNECTIONS
        )
        # register_script: EVALSHA, loading the script again after a Redis restart.
        self._put = self.redis.register_script(PUT)
        self._delete = self.redis.register_script(DELETE)
        self._claim = self.redis.register_script(CLAIM)
        self._orphans = self.redis.register_script(CLAIM_ORPHANS)
        self._renew = self.redis.register_script(RENEW)
        self._release = self.redis.register_script(RELEASE)
        # One write at a time, each encoded when its turn comes: writes of one job sent on
        # two connections could land out of order (progress over the provider's batch id).
        self._writing = asyncio.Lock()
        self.up = True

    async def _bounded(self, work: Awaitable[Any]) -> Any:
        """``await work`` within the timeout; StateUnavailable when Redis fails."""
        try:
            async with asyncio.timeout(self.timeout):
                found = await work
        except (RedisError, OSError, TimeoutError) as err:
            if self.up:
                log.warning("jobs: Redis is unreachable (%s): %s", self.url, type(err).__name__)
            self.up = False
            raise errors.StateUnavailable(
                "ratd's shared job store (Redis) is unavailable; try again shortly"
            ) from None
        if not self.up:
            log.warning("jobs: Redis answers again (%s)", self.url)
            self.up = True
        return found

    def _key(self, kind: str, name: str) -> str:
        return f"{PREFIX}{kind}:{name}"

    # -- JobStore -----------------------------------------------------------------------

    async def load(self) -> list[JobRecord]:
        return []  # running jobs are taken up by lease (claim_orphans), never all at once

    async def get(self, name: str) -> JobRecord | None:
        data = await self._bounded(self.redis.get(self._key("rec", name)))
        try:
            return None if data is None else await _decode(data)
        except ValueError as err:  # not one ratd wrote: no job of that name
            log.warning("jobs: skipping %s in Redis: %s", name, err)
            return None

    async def page(self, tenant: str | None, done: bool | None, offset: int, size: int) -> Page:
        mode = "a" if done is None else str(int(done))
        index = f"{PREFIX}all:{mode}" if tenant is None else f"{PREFIX}t:{mode}:{tenant}"
        names = await self._bounded(self.redis.zrevrange(index, offset, offset + size))
        more = len(names) > size
        names = names[:size]
        if not names:
            return Page([], more)
        keys = [self._key("rec", name.decode()) for name in names]
        found = [data for data in await self._bounded(self.redis.mget(keys)) if data is not None]
        if sum(len(data) for data in found) > OFF_LOOP:  # a page of results: not on the loop
            records = await asyncio.to_thread(_decode_page, found)
        else:
            records = _decode_page(found)
        return Page(records, more)

    async def count(self) -> int:
        return int(await self._bounded(self.redis.zcard(f"{PREFIX}all:a")))

    async def finished(self, before: float | None, limit: int) -> list[str]:
        top = "+inf" if before is None else f"({before}"
        found = await self._bounded(
            self.redis.zrangebyscore(f"{PREFIX}finished", "-inf", top, start=0, num=limit)
        )
        return [name.decode() for name in found]

    async def put(self, record: JobRecord) -> None:
        """Written only while this replica holds the job's lease (or takes a free one);
        raises LeaseLost otherwise."""
        async with self._writing:  # in order: a later state never lands before an earlier
            if record.operation.ByteSize() > OFF_LOOP:
                data = await asyncio.to_thread(record.to_bytes)
            else:
                data = record.to_bytes()
            args: list[Any] = [PREFIX, self.me, self.lease_ms, record.name, record.tenant, data]
            args += [int(record.operation.done), repr(record.created), repr(record.updated)]
            written = await self._bounded(self._put(keys=[f"{PREFIX}running"], args=args))
        if not written:
            raise LeaseLost(f"{record.name} is followed by another replica, or has ended")

    async def delete(self, name: str) -> None:
        await self._bounded(self._delete(keys=[f"{PREFIX}running"], args=[PREFIX, name]))

    async def close(self) -> None:
        await self.redis.aclose()

    # -- JobLeases ----------------------------------------------------------------------

    async def claim_orphans(self, limit: int) -> list[JobRecord]:
        args: list[Any] = [PREFIX, self.me, self.lease_ms, limit]
        found = await self._bounded(self._orphans(keys=[f"{PREFIX}running"], args=args))
        if sum(len(data) for data in found) > OFF_LOOP:
            return await asyncio.to_thread(_decode_page, found)
        return _decode_page(found)

    async def claim(self, name: str) -> bool:
        args: list[Any] = [PREFIX, self.me, self.lease_ms, name]
        return bool(await self._bounded(self._claim(keys=[f"{PREFIX}running"], args=args)))

    async def renew(self, names: Sequence[str]) -> dict[str, Renewal]:
        if not names:
            return {}
        args: list[Any] = [PREFIX, self.me, self.lease_ms, *names]
        found = await self._bounded(self._renew(keys=[f"{PREFIX}running"], args=args))
        return {name: _RENEWALS[int(state)] for name, state in zip(names, found, strict=True)}

    async def release(self, names: Sequence[str]) -> None:
        if names:
            args: list[Any] = [PREFIX, self.me, *names]
            await self._bounded(self._release(keys=[f"{PREFIX}running"], args=args))

    async def request_cancel(self, name: str) -> None:
        key = self._key("cancel", name)
        await self._bounded(self.redis.set(key, b"1", ex=CANCEL_REQUEST_TTL))


async def _decode(data: bytes) -> JobRecord:
    if len(data) > OFF_LOOP:
        return await asyncio.to_thread(JobRecord.from_bytes, data)
    return JobRecord.from_bytes(data)


def _decode_page(found: Sequence[bytes]) -> list[JobRecord]:
    """The records among ``found`` (one that is not a record ratd wrote is skipped)."""
    records = []
    for data in found:
        try:
            records.append(JobRecord.from_bytes(data))
        except ValueError as err:
            log.warning("jobs: skipping a record in Redis: %s", err)
    return records
