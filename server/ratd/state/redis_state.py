"""The Redis backend: every replica that shares one Redis enforces one set of limits.

Each reservation and each settlement is one Lua script, run atomically by Redis, so no
interleaving of replicas can pass a limit or apply a settlement twice (a settled marker
per request id, kept for an hour). Every command is bounded by ``timeout``; a failure
marks the backend down (``ratatoskr_state_backend_up`` 0) and raises StateUnavailable,
and the next command simply connects again (redis-py's pool), so a replica that started
or ran while Redis was down recovers without a restart. Settlements that could not be
applied are kept (bounded) and replayed once Redis answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ratd import errors
from ratd.metrics import STATE_UP
from ratd.state.base import Counter, Denial, Settlement, StateBackend

log = logging.getLogger(__name__)

# KEYS: the counters; ARGV: (amount, limit, ttl_ms) per counter. Returns {0, 0} when
# every amount was added, else {index (1-based) of the full counter, its PTTL}.
RESERVE = """
local n = #KEYS
for i = 1, n do
  local limit = tonumber(ARGV[3 * i - 1])
  if limit > 0 then
    local current = tonumber(redis.call('GET', KEYS[i]) or '0')
    if current + tonumber(ARGV[3 * i - 2]) > limit then
      return {i, redis.call('PTTL', KEYS[i])}
    end
  end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[3 * i])
  end
end
return {0, 0}
"""

# KEYS[1]: the settled marker, KEYS[2]: the usage bucket, KEYS[3..]: counters.
# ARGV: marker ttl, bucket ttl, number of cells, (field, amount) per cell, then one
# delta per counter. A counter whose window has passed (the key expired) is left alone.
SETTLE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return 0
end
local cells = tonumber(ARGV[3])
local a = 4
for i = 1, cells do
  redis.call('HINCRBY', KEYS[2], ARGV[a], ARGV[a + 1])
  a = a + 2
end
if cells > 0 and redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
for i = 3, #KEYS do
  local delta = tonumber(ARGV[a])
  a = a + 1
  if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], delta)
  end
end
return 1
"""

# Settlements kept while Redis is down (the oldest are dropped beyond this).
MAX_PENDING = 100_000
# Seconds between replays of pending settlements.
REPLAY_EVERY = 0.5


class RedisState(StateBackend):
    def __init__(self, url: str, *, password: str | None, timeout: float) -> None:
        self.timeout = timeout
        self.url = url
        self.redis: Redis = Redis.from_url(
            url,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._reserve = self.redis.register_script(RESERVE)
        self._settle = self.redis.register_script(SETTLE)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: deque[Settlement] = deque(maxlen=MAX_PENDING)
        self._replayer: asyncio.Task[None] | None = None
        self.up = True
        STATE_UP.set(1)

    def _failed(self, err: BaseException) -> errors.StateUnavailable:
        if self.up:
            log.warning("state backend: Redis is unreachable (%s); %s", self.url, _describe(err))
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

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                found = await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as err:
            raise self._failed(err) from None
        self._answered()
        return found

    async def reserve(self, counters: Sequence[Counter]) -> Denial | None:
        args: list[int] = []
        for counter in counters:
            args += (counter.amount, counter.limit, counter.ttl_ms)
        index, ttl = await self._run(self._reserve, [c.key for c in counters], args)
        if int(index) == 0:
            return None
        return Denial(int(index) - 1, max(int(ttl), 0) / 1000)

    def settle(self, settlement: Settlement) -> None:
        task = asyncio.get_running_loop().create_task(self._apply(settlement))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply(self, settlement: Settlement) -> None:
        try:
            await self._send(settlement)
        except errors.StateUnavailable:
            self._keep(settlement)

    async def _send(self, settlement: Settlement) -> None:
        keys = [settlement.marker, settlement.usage_key]
        args: list[Any] = [settlement.marker_ttl_ms, settlement.usage_ttl_ms, len(settlement.cells)]
        for field, amount in settlement.cells:
            args += (field, amount)
        for key, delta in settlement.deltas:
            keys.append(key)
            args.append(delta)
        await self._run(self._settle, keys, args)

    def _keep(self, settlement: Settlement) -> None:
        if len(self._pending) == self._pending.maxlen:
            log.warning("state backend: too many settlements pending; dropping the oldest")
        self._pending.append(settlement)
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        """Apply the kept settlements, in order, once Redis answers (each at most once:
        the script's marker makes a replay of one that did land a no-op)."""
        while self._pending:
            await asyncio.sleep(REPLAY_EVERY)
            while self._pending:
                try:
                    await self._send(self._pending[0])
                except errors.StateUnavailable:
                    break
                self._pending.popleft()
        log.info("state backend: pending settlements applied")

    async def read_usage(self, keys: Sequence[str]) -> list[Mapping[str, int]]:
        try:
            async with (
                asyncio.timeout(self.timeout * 4),
                self.redis.pipeline(transaction=False) as pipe,
            ):
                for key in keys:
                    pipe.hgetall(key)
                found = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as err:
            raise self._failed(err) from None
        self._answered()
        return [{k.decode(): int(v) for k, v in bucket.items()} for bucket in found]

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        if self._replayer is not None:
            self._replayer.cancel()
        await self.redis.aclose()


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
