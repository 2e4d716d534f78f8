"""Governance across replicas: a real ``redis-server`` (Debian package) on a free loopback
port, three real ratd processes sharing it, the fake OpenAI upstream with known prices,
and a client spreading bursts of concurrent calls over the replicas round robin.

Budgets and rate limits hold fleet-wide, GetUsage equals the sum of the reported costs;
with Redis stopped, "deny" answers STATE_UNAVAILABLE within the bounded wait and "allow"
serves; with Redis started again every replica recovers by itself and the counters are
exact (settlements kept while it was down are applied once)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from ratatoskr import BudgetExceeded, ServiceClient, StateUnavailable, TenantRateLimited
from ratatoskr.v1 import chat_pb2
from ratd.config import parse_config
from ratd.state.base import Counter, Settlement
from ratd.state.redis_state import RedisState
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import SpawnedRatd, running_daemon, spawn_ratd
from tests.support.redis_server import (
    PASSWORD,
    REDIS_SERVER,
    SKIP_REASON,
    RedisServer,
    started,
)

pytestmark = pytest.mark.timeout(180)

if REDIS_SERVER is None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

TENANTS = ("fleet", "rl", "free", "after", "boss")
KEYS = {name: f"rat_test-{name}-9f8e7d6c5b" for name in TENANTS}
PROMPT = "Tell me about the weather in a few short words, please, and nothing more. " * 2
MAX_TOKENS = 24
COST = (23 * 0.15 + 19 * 0.6) / 1e6  # the fake's usage at gpt-4o-mini's seed prices
BUDGET = COST * 12
RPM = 10
Redis = RedisServer


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = started(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


LIMITS = {
    "fleet": f"budget_usd_daily = {BUDGET!r}",
    "rl": f"requests_per_minute = {RPM}",
    "free": "",
    "after": "budget_usd_daily = 1.0\ntokens_per_minute = 1000000",
    "boss": 'roles = ["inference", "admin"]',
}


def config_text(upstream: FakeOpenAIUpstream, redis: Redis, on_unavailable: str) -> str:
    tenants = "".join(
        f'[tenants.{name}]\napi_key_sha256 = ["{sha(KEYS[name])}"]\n{LIMITS[name]}\n'
        for name in TENANTS
    )
    return f"""
[server]
address = "127.0.0.1:0"
metrics_address = "127.0.0.1:0"
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
on_unavailable = "{on_unavailable}"
{tenants}"""


def secrets_file(directory: Path) -> Path:
    path = directory / "secrets.toml"
    path.write_text(f'[redis]\npassword = "{PASSWORD}"\n[openai]\napi_key = "{OPENAI_KEY}"\n')
    path.chmod(0o600)
    return path


@pytest.fixture
def fleet(
    upstream: FakeOpenAIUpstream, redis: Redis, tmp_path: Path
) -> Iterator[list[SpawnedRatd]]:
    """Three ratd processes sharing ``redis`` (on_unavailable = "deny")."""
    text = config_text(upstream, redis, "deny")
    with ExitStack() as stack:
        replicas = []
        for index in range(3):
            home = tmp_path / f"ratd{index}"
            home.mkdir()
            replicas.append(
                stack.enter_context(
                    spawn_ratd(text, home, extra_args=("--secrets", str(secrets_file(home))))
                )
            )
        yield replicas
        for replica in replicas:
            assert PASSWORD not in replica.log(), "the Redis password reached the ratd log"


class RoundRobin:
    """One client per replica for a tenant; call i goes to replica i % 3."""

    def __init__(self, clients: list[ServiceClient]) -> None:
        self.clients = clients
        self.turn = 0

    def next(self) -> ServiceClient:
        self.turn += 1
        return self.clients[self.turn % len(self.clients)]

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


async def spread(replicas: list[SpawnedRatd], tenant: str) -> RoundRobin:
    return RoundRobin(
        [await ServiceClient.connect(r.address, timeout=20, api_key=KEYS[tenant]) for r in replicas]
    )


async def chat_cost(client: ServiceClient) -> float:
    """The reported cost of one call; 0.0 when governance refused it."""
    try:
        answer = await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
    except (BudgetExceeded, TenantRateLimited):
        return 0.0
    return answer.usage.cost_usd


async def settled_usage(client: ServiceClient, requests: int) -> tuple[int, float]:
    """GetUsage once every replica's settlements have landed (they are applied off the
    call's path): (requests, cost). Polls a bounded number of times."""
    found = (0, 0.0)
    for _ in range(100):
        reply = await client.usage()
        found = (sum(r.requests for r in reply.rows), sum(r.cost_usd for r in reply.rows))
        if found[0] >= requests:
            return found
        await asyncio.sleep(0.05)
    return found


def worst_case() -> float:
    request = chat_pb2.ChatRequest(
        messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content=PROMPT)],
        options=chat_pb2.ChatOptions(model="gpt-4o-mini", max_tokens=MAX_TOKENS),
    )
    return math.ceil((request.ByteSize() * 0.15 + MAX_TOKENS * 0.6) * 1000) / 1e9


async def test_budget_rate_limits_and_usage_hold_across_three_replicas(
    fleet: list[SpawnedRatd],
) -> None:
    budget = await spread(fleet, "fleet")
    try:
        served: list[float] = []
        for _ in range(12):  # bursts of 9 concurrent calls, 3 per replica
            wave = await asyncio.gather(*(chat_cost(budget.next()) for _ in range(9)))
            if not any(wave):
                break
            served += [c for c in wave if c]
        assert all(c == pytest.approx(COST) for c in served)
        assert sum(served) <= BUDGET  # never overshot, whatever replica served the call
        assert len(served) > BUDGET // worst_case()  # settled to real costs fleet-wide
        requests, cost = await settled_usage(budget.clients[0], len(served))
        assert requests == len(served)
        assert cost == pytest.approx(sum(served), abs=1e-9 * len(served))
    finally:
        await budget.close()

    limited = await spread(fleet, "rl")
    try:
        minute = int(time.time() // 60)
        wave = await asyncio.gather(*(chat_cost(limited.next()) for _ in range(3 * RPM)))
        windows = int(time.time() // 60) - minute + 1  # a burst may straddle two minutes
        assert RPM <= sum(1 for c in wave if c) <= RPM * windows
        with pytest.raises(TenantRateLimited) as caught:
            for client in limited.clients:  # every replica refuses: the limit is shared
                await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
    finally:
        await limited.close()


def state_up() -> float | None:
    return REGISTRY.get_sample_value("ratatoskr_state_backend_up")


async def test_redis_down_deny_allow_and_exact_recovery(
    fleet: list[SpawnedRatd], redis: Redis, upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    free, after = await spread(fleet, "free"), await spread(fleet, "after")
    try:
        for _ in range(3):
            await free.next().chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
        before = await settled_usage(free.clients[0], 3)
        assert before[0] == 3

        redis.stop()
        # "deny": a call that needs a reservation is refused, well within its deadline.
        for client in after.clients:
            with pytest.raises(StateUnavailable) as caught:
                await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS, timeout=10)
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            assert caught.value.reason == "STATE_UNAVAILABLE"
        health = await after.clients[0].health()
        assert health.healthy and health.HasField("state_backend_up")
        assert not health.state_backend_up
        # A tenant without limits needs no reservation: served, its usage kept for later.
        for client in free.clients:
            await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS, timeout=10)
        # "allow": the same tenant with a budget is served while Redis is down.
        text = config_text(upstream, redis, "allow")
        config = parse_config(text, "<test>", secrets_path=secrets_file(tmp_path))
        async with running_daemon(config) as allowing:
            async with await ServiceClient.connect(
                allowing.address, timeout=20, api_key=KEYS["after"]
            ) as client:
                answer = await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
                assert answer.usage.cost_usd > 0
                assert state_up() == 0

                redis.start()
                # Every replica recovers by itself: no restart, no reload.
                for replica in after.clients:
                    await replica.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
                await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
                assert state_up() == 1
                assert (await after.clients[0].health()).state_backend_up
        # The settlements kept while Redis was down landed once each: 3 before, 3 during.
        requests, _ = await settled_usage(free.clients[1], 6)
        assert requests == 6
        await asyncio.sleep(0.5)  # one more replay period: nothing is applied twice
        assert (await settled_usage(free.clients[2], 6))[0] == 6
    finally:
        await free.close()
        await after.close()


async def test_a_settlement_applies_once_and_reservations_are_atomic(redis: Redis) -> None:
    state = RedisState(redis.url, password=PASSWORD, timeout=1.0)
    try:
        counters = [Counter("rat:{t}:budget", 40, 100, 60_000)]
        assert await state.reserve(counters) is None
        assert await state.reserve(counters) is None
        denial = await state.reserve(counters)
        assert denial is not None and denial.index == 0 and 0 < denial.retry_after <= 60
        settlement = Settlement(
            "rat:{t}:settled:one",
            60_000,
            [("rat:{t}:budget", -30)],
            "rat:{t}:u:1",
            60_000,
            [("r\x1fm\x1fp\x1fu", 1)],
        )
        for _ in range(3):  # a replay (a reply lost to a timeout) changes nothing
            state.settle(settlement)
            await state.flush()
        assert await state.redis.get("rat:{t}:budget") == b"50"
        assert (await state.read_usage(["rat:{t}:u:1"]))[0] == {"r\x1fm\x1fp\x1fu": 1}
        assert await state.reserve(counters) is None  # 50 + 40 fits again
    finally:
        await state.close()
