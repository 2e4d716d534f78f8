"""The Redis backend: every replica that shares one Redis enforces one set of limits.

Each reservation and each settlement is one Lua script, run atomically by Redis, so no
interleaving of replicas can pass a limit or apply a settlement twice (a settled marker
per call, kept for an hour). A reservation is the one round trip on a call's path;
settlements are queued after the answer and ride along in the pipeline of the next
reservation (or, none coming within SETTLE_DELAY, go in a pipeline of their own), so
under load a governed call costs one round trip in all. Numbers travel packed in one
argument per script: redis-py encodes each argument in Python, and that is most of the
client's CPU per command.

Every command is bounded by ``timeout``; a failure marks the backend down
(``ratatoskr_state_backend_up`` 0) and raises StateUnavailable, and the next command
simply connects again (the pool opens a new connection), so a replica that started or
ran while Redis was down recovers without a restart. Settlements that could not be
applied are kept (bounded) and replayed once Redis answers again; their markers make a
replay of one that did land (its reply lost) a no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from ratd import errors
from ratd.metrics import STATE_UP
from ratd.state.base import Counter, Denial, Settlement, StateBackend

log = logging.getLogger(__name__)

# KEYS: the counters; ARGV[1]: "amount limit ttl_ms" per counter, space-separated.
# Returns {0, 0} when every amount was added, else {index (1-based) of the full
# counter, its PTTL}.
RESERVE = """
local n = #KEYS
local v = {}
for number in string.gmatch(ARGV[1], '%S+') do v[#v + 1] = tonumber(number) end
for i = 1, n do
  local limit = v[3 * i - 1]
  if limit > 0 then
    local current = tonumber(redis.call('GET', KEYS[i]) or '0')
    if current + v[3 * i - 2] > limit then
      return {i, redis.call('PTTL', KEYS[i])}
    end
  end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], v[3 * i - 2])
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], v[3 * i])
  end
end
return {0, 0}
"""

# KEYS[1]: the settled marker, KEYS[2]: the usage bucket, KEYS[3..]: counters.
# ARGV[1]: "marker_ttl bucket_ttl delta..." (one delta per counter); ARGV[2]: the
# usage cells, "field RS amount RS field RS amount ..." (RS: the byte 0x1e). A counter
# whose window has passed (its key expired) is left alone.
SETTLE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]:match('^%S+')) then
  return 0
end
local v = {}
for number in string.gmatch(ARGV[1], '%S+') do v[#v + 1] = number end
local cells = 0
for field, amount in string.gmatch(ARGV[2], '([^\\30]+)\\30([^\\30]+)\\30?') do
  redis.call('HINCRBY', KEYS[2], field, amount)
  cells = cells + 1
end
if cells > 0 and redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], v[2])
end
for i = 3, #KEYS do
  local delta = tonumber(v[i])
  if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], delta)
  end
end
return 1
"""

# Settlements kept while Redis is down (the oldest are dropped beyond this).
MAX_PENDING = 100_000
# Most settlements sent in one pipeline.
MAX_BATCH = 512
# Seconds a settlement waits for a reservation to ride along with before it is sent alone.
SETTLE_DELAY = 0.002
# Seconds between replays of pending settlements.
REPLAY_EVERY = 0.5
# Connections to Redis per replica; a command waits (bounded) for a free one.
MAX_CONNECTIONS = 32
RS = "\x1e"


def connect(url: str, *, password: str | None, timeout: float, connections: int) -> Redis:
    """A client for ``url`` over a bounded pool (a command waits at most ``timeout`` for a
    free connection), with no retries of its own: the callers bound and retry. No
    socket_timeout: every command is bounded as a whole by its caller, and a second timer
    per read would cost CPU on every call."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=connections,
        timeout=timeout,
        password=password,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis(connection_pool=pool)


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


class RedisState(StateBackend):
    shared = True

    def __init__(self, url: str, *, password: str | None, timeout: float) -> None:
        self.timeout = timeout
        self.url = url
        # Every command is bounded as a whole (_bounded).
        self.redis: Redis = connect(
            url, password=password, timeout=timeout, connections=MAX_CONNECTIONS
        )
        self._batch: list[Settlement] = []
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._pending: deque[Settlement] = deque(maxlen=MAX_PENDING)
        self._replayer: asyncio.Task[None] | None = None
        self.up = True
        STATE_UP.set(1)

    # -- health ------------------------------------------------------------------------------

    def _failed(self, err: BaseException) -> errors.StateUnavailable:
        if self.up:
            log.warning("state backend: Redis is unreachable (%s): %s", self.url, _describe(err))
        self.up = False
        STATE_UP.set(0)
        return errors.StateUnavailable(
            "ratd's shared state (Redis) is unavailable; try again shortly"
        )

    def _answered(self) -> None:
        if not self.up:
            log.warning("state backend: Redis answers again (%s)", self.url)
            self.up = True
            STATE_UP.set(1)

    async def _bounded(self, work: Any) -> Any:
        """``await work`` within the timeout; StateUnavailable when Redis fails,
        _NoScript when it answers without our scripts (restarted: they are loaded
        again and the work repeated)."""
        try:
            async with asyncio.timeout(self.timeout):
                found = await work
        except NoScriptError:
            self._answered()
            raise _NoScript() from None
        except (RedisError, OSError, TimeoutError) as err:
            raise self._failed(err) from None
        self._answered()
        return found

    async def _scripted(self, make: Any) -> Any:
        """``make()``'s work, once more after loading the scripts if Redis lacked them."""
        try:
            return await self._bounded(make())
        except _NoScript:
            await self._bounded(self._load_scripts())
            return await self._bounded(make())

    async def _load_scripts(self) -> None:
        """After a Redis restart (or on first use) its script cache is empty."""
        await self.redis.script_load(RESERVE)
        await self.redis.script_load(SETTLE)

    # -- reserve ------------------------------------------------------------------------------

    async def reserve(self, counters: Sequence[Counter]) -> Denial | None:
        """One round trip: the reservation, with the settlements waiting to be sent
        riding in the same pipeline (so under load a call costs one round trip in all)."""
        keys = [c.key for c in counters]
        packed = " ".join(f"{c.amount} {c.limit} {c.ttl_ms}" for c in counters)
        riders, self._batch = self._batch[:MAX_BATCH], self._batch[MAX_BATCH:]
        if not riders:
            found = await self._scripted(
                lambda: self.redis.evalsha(_RESERVE_SHA, len(keys), *keys, packed)
            )
        else:
            try:
                found = (await self._scripted(lambda: self._pipeline(riders, keys, packed)))[-1]
            except errors.StateUnavailable:
                self._keep(riders)
                raise
        index, ttl = found
        if int(index) == 0:
            return None
        return Denial(int(index) - 1, max(int(ttl), 0) / 1000)

    # -- settle -------------------------------------------------------------------------------

    def settle(self, settlement: Settlement) -> None:
        """Queue ``settlement``: the next reservation takes it along, or (none within
        SETTLE_DELAY) a pipeline of its own."""
        self._batch.append(settlement)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY, self._start_sender)

    def _start_sender(self) -> None:
        self._timer = None
        if self._batch and (self._sender is None or self._sender.done()):
            self._sender = asyncio.get_running_loop().create_task(self._send_batches())

    async def _send_batches(self) -> None:
        """Send what has gathered, in pipelines, until nothing is left; what fails is kept
        for the replayer."""
        while self._batch:
            batch, self._batch = self._batch[:MAX_BATCH], self._batch[MAX_BATCH:]
            try:
                await self._send(batch)
            except errors.StateUnavailable:
                self._keep(batch)

    async def _send(self, batch: Sequence[Settlement]) -> None:
        """One pipeline of settle scripts (repeated whole if Redis lacked the script:
        the markers make the part that ran a no-op)."""
        await self._scripted(lambda: self._pipeline(batch))

    async def _pipeline(
        self, batch: Sequence[Settlement], keys: Sequence[str] = (), packed: str = ""
    ) -> list[Any]:
        """Settle scripts for ``batch`` and, when ``keys`` are given, a reservation last."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in batch:
                names = [s.marker, s.usage_key, *(key for key, _ in s.deltas)]
                numbers = " ".join(
                    (str(s.marker_ttl_ms), str(s.usage_ttl_ms), *(str(d) for _, d in s.deltas))
                )
                cells = RS.join(f"{field}{RS}{amount}" for field, amount in s.cells)
                pipe.evalsha(_SETTLE_SHA, len(names), *names, numbers, cells)
            if keys:
                pipe.evalsha(_RESERVE_SHA, len(keys), *keys, packed)
            return list(await pipe.execute())

    def _keep(self, batch: Sequence[Settlement]) -> None:
        if len(self._pending) + len(batch) > MAX_PENDING:
            log.warning("state backend: too many settlements pending; dropping the oldest")
        self._pending.extend(batch)
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        """Apply the kept settlements, in order, once Redis answers (each at most once:
        the script's marker makes a replay of one that did land a no-op)."""
        while self._pending:
            await asyncio.sleep(REPLAY_EVERY)
            while self._pending:
                batch = [self._pending[i] for i in range(min(MAX_BATCH, len(self._pending)))]
                try:
                    await self._send(batch)
                except errors.StateUnavailable:
                    break
                for _ in batch:
                    self._pending.popleft()
        log.warning("state backend: the settlements kept while Redis was down are applied")

    # -- usage --------------------------------------------------------------------------------

    async def read_usage(self, keys: Sequence[str]) -> list[Mapping[str, int]]:
        async def run() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                return list(await pipe.execute())

        found = await self._bounded(run())
        return [{k.decode(): int(v) for k, v in bucket.items()} for bucket in found]

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._batch)

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._start_sender()
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def close(self) -> None:
        await self.flush()
        if self._replayer is not None and not self._replayer.done():
            log.warning("state backend: %d settlements were never applied", len(self._pending))
            self._replayer.cancel()
        await self.redis.aclose()


_RESERVE_SHA = _sha(RESERVE)
_SETTLE_SHA = _sha(SETTLE)


class _NoScript(Exception):
    """Redis answered NOSCRIPT: its script cache was emptied (a restart)."""


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
