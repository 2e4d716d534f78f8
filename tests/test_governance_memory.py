"""Per-tenant limits and budgets on the memory backend, through a real in-process ratd
(grpc.aio server, auth interceptor, gateway) with API keys, in front of the fake OpenAI
upstream (gpt-4o-mini at the seed's prices: 0.15 / 0.60 USD per million tokens)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import openai
import pytest
from prometheus_client import REGISTRY

from ratatoskr import (
    BudgetExceeded,
    ModelUnpriced,
    RatatoskrError,
    RoleRequired,
    ServiceClient,
    TenantRateLimited,
)
from ratatoskr.v1 import chat_pb2
from ratd.server import Daemon
from tests.fakes.openai_upstream import TEXT_USAGE, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import make_config, running_daemon
from tests.support.openai_door import base_url, door_daemon

pytestmark = pytest.mark.timeout(60)

KEYS = {
    name: f"rat_test-{name}-5a4b3c2d1e" for name in ("rpm", "upm", "tpm", "budget", "open", "boss")
}
# A prompt longer than the upstream's reported 23 prompt tokens, so that the bound holds.
PROMPT = "Tell me about the weather in a few short words, please, and nothing more. " * 2
# The fake's answer: 23 prompt and 19 completion tokens at gpt-4o-mini's prices.
COST = (23 * 0.15 + 19 * 0.6) / 1e6
MAX_TOKENS = 24
BUDGET = COST * 10


OPEN_LIMITS = "budget_usd_monthly = 1.0\nallow_unpriced_models = true"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenant(name: str, extra: str) -> str:
    return f'[tenants.{name}]\napi_key_sha256 = ["{sha(KEYS[name])}"]\n{extra}\n'


async def fresh_minute() -> None:
    """Start near the beginning of a UTC minute: rate limits count per minute (and budgets
    per day), and a test of a few calls should not straddle two windows."""
    left = 60 - time.time() % 60
    if left < 10:
        await asyncio.sleep(left + 0.05)


@pytest.fixture
async def daemon(upstream: FakeOpenAIUpstream) -> AsyncIterator[Daemon]:
    await fresh_minute()
    text = f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[auth]
mode = "api_key"
{tenant("rpm", "requests_per_minute = 3")}
{tenant("upm", "user_requests_per_minute = 2")}
{tenant("tpm", "tokens_per_minute = 1000")}
{tenant("budget", f"budget_usd_daily = {BUDGET!r}")}
{tenant("open", OPEN_LIMITS)}
{tenant("boss", 'roles = ["inference", "admin"]')}
"""
    config = make_config(text, env={"OPENAI_API_KEY": OPENAI_KEY})
    async with running_daemon(config) as running:
        yield running


async def connect(daemon: Daemon, name: str, user: str | None = None) -> ServiceClient:
    return await ServiceClient.connect(daemon.address, timeout=20, api_key=KEYS[name], user=user)


async def test_requests_per_minute_refuses_with_retry_info(daemon: Daemon) -> None:
    async with await connect(daemon, "rpm") as client:
        for _ in range(3):
            await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=32)
        with pytest.raises(TenantRateLimited) as caught:
            await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=32)
        with pytest.raises(TenantRateLimited):  # streams count too
            async for _ in client.chat_stream(PROMPT, model="gpt-4o-mini", max_tokens=32):
                pass
    err = caught.value
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "TENANT_RATE_LIMITED"
    assert err.metadata["limit"] == "requests_per_minute"
    assert err.retry_after is not None and 0 < err.retry_after <= 120


async def test_user_requests_per_minute_is_per_user(daemon: Daemon) -> None:
    async with (
        await connect(daemon, "upm", user="alice") as alice,
        await connect(daemon, "upm", user="bob") as bob,
    ):
        for _ in range(2):
            await alice.chat(PROMPT, model="gpt-4o-mini", max_tokens=32)
        with pytest.raises(TenantRateLimited) as caught:
            await alice.chat(PROMPT, model="gpt-4o-mini", max_tokens=32)
        answer = await bob.chat(PROMPT, model="gpt-4o-mini", max_tokens=32)
    assert caught.value.metadata["limit"] == "user_requests_per_minute"
    assert answer.content


async def test_tokens_reserve_the_bound_and_settle_to_real_usage(daemon: Daemon) -> None:
    async with await connect(daemon, "tpm") as client:
        # One call that could use more than the whole minute's tokens is refused alone.
        with pytest.raises(TenantRateLimited) as caught:
            await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=5000)
        assert "this call alone" in caught.value.message
        # Each call reserves prompt bytes + 200, then settles to 23 + 19 = 42 tokens:
        # far more calls fit in 1000 tokens than the reservations alone would allow.
        for _ in range(12):
            await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=200)
        used = TEXT_USAGE["prompt"] + TEXT_USAGE["completion"]
        assert 12 * used < 1000
        with pytest.raises(TenantRateLimited) as caught:
            for _ in range(12):
                await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=200)
    assert caught.value.metadata["limit"] == "tokens_per_minute"


async def test_an_image_counts_as_many_tokens_as_it_may_cost(daemon: Daemon) -> None:
    image = chat_pb2.ContentPart(image=chat_pb2.ImagePart(url="https://example.com/a.png"))
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content="What is this?", parts=[image])
    async with await connect(daemon, "tpm") as client:
        # A few bytes of URL, but up to IMAGE_BOUND tokens: over 1000 tokens alone.
        with pytest.raises(TenantRateLimited) as caught:
            await client.chat(message, model="gpt-4o-mini", max_tokens=10)
    assert "this call alone" in caught.value.message


def worst_case(client: ServiceClient) -> float:
    """What ratd reserves for one call: a token per byte of the request, MAX_TOKENS out."""
    size = client.chat_request(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS).ByteSize()
    assert size > TEXT_USAGE["prompt"]
    return (size * 0.15 + MAX_TOKENS * 0.6) / 1e6


async def chat_cost(client: ServiceClient) -> float:
    """One call's reported cost, or 0 when the budget refused it."""
    try:
        answer = await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
    except BudgetExceeded as err:
        assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.metadata["limit"] == "budget_usd_daily"
        assert err.retry_after is not None and err.retry_after > 0
        return 0.0
    assert answer.usage.cost_usd > 0
    return answer.usage.cost_usd


async def test_budget_is_never_overshot_under_concurrency(daemon: Daemon) -> None:
    served: list[float] = []
    async with await connect(daemon, "budget") as client:
        for _ in range(10):  # waves of concurrent calls until the budget refuses them all
            wave = [c for c in await asyncio.gather(*(chat_cost(client) for _ in range(4))) if c]
            if not wave:
                break
            served += wave
        worst = worst_case(client)
    assert all(c == pytest.approx(COST) for c in served)
    assert sum(served) <= BUDGET
    # Settling to the real cost let more calls through than worst-case reservations would.
    assert len(served) > BUDGET // worst


async def test_a_failed_call_refunds_its_reservation(
    daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    async with await connect(daemon, "budget") as client:
        upstream.set_scenario("server-error")
        for _ in range(8):
            with pytest.raises(RatatoskrError) as caught:
                await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
            assert caught.value.reason == "PROVIDER_UNAVAILABLE"
        upstream.set_scenario("text")
        assert await chat_cost(client) == pytest.approx(COST)


async def test_a_cut_stream_keeps_its_worst_case(
    daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    async with await connect(daemon, "budget") as client:
        upstream.set_scenario("truncated")
        cut = 0
        while cut < 10:
            try:
                async for _ in client.chat_stream(
                    PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS
                ):
                    pass
            except BudgetExceeded:
                break
            except RatatoskrError as err:
                assert err.reason == "UPSTREAM_PROTOCOL"
                cut += 1
        worst = worst_case(client)
    # No usage came: each cut stream was charged its reserved worst case.
    assert cut == int(BUDGET * 1e9) // math.ceil(worst * 1e9)


async def test_unpriced_models_are_refused_under_a_budget_unless_allowed(
    daemon: Daemon,
) -> None:
    async with await connect(daemon, "budget") as client:
        with pytest.raises(ModelUnpriced) as caught:
            await client.chat(PROMPT, model="openai:scenario/text")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.reason == "MODEL_UNPRICED"
    assert "allow_unpriced_models" in caught.value.message
    async with await connect(daemon, "open") as client:
        answer = await client.chat(PROMPT, model="openai:scenario/text")
    assert answer.content


async def rat(*args: str, key: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rat",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1", "RATD_API_KEY": key},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


def tenant_series(name: str, tenant: str = "upm") -> float:
    return REGISTRY.get_sample_value(name, {"tenant": tenant}) or 0.0


async def test_usage_a_tenant_sees_its_own_an_admin_sees_all(daemon: Daemon) -> None:
    requests_before = tenant_series("ratatoskr_tenant_requests_total")
    spend_before = tenant_series("ratatoskr_tenant_spend_usd_total")
    async with (
        await connect(daemon, "upm", user="alice") as alice,
        await connect(daemon, "upm", user="bob") as bob,
    ):
        reported = [
            (await alice.chat(PROMPT, model="gpt-4o-mini", max_tokens=32)).usage,
            (await bob.chat(PROMPT, model="gpt-4o-mini", max_tokens=32)).usage,
        ]
        async for event in alice.chat_stream(PROMPT, model="gpt-4o-mini", max_tokens=32):
            if event.HasField("usage"):
                reported.append(event.usage)
        own = await alice.usage(group_by="user")
        with pytest.raises(RoleRequired):
            await alice.usage(tenant="rpm")
    by_user = {row.key: row for row in own.rows}
    assert set(by_user) == {"alice", "bob"}
    assert all(row.tenant == "upm" for row in own.rows)
    assert (by_user["alice"].requests, by_user["bob"].requests) == (2, 1)
    assert sum(r.requests for r in own.rows) == len(reported)
    assert sum(r.prompt_tokens for r in own.rows) == sum(u.prompt_tokens for u in reported)
    assert sum(r.completion_tokens for r in own.rows) == sum(u.completion_tokens for u in reported)
    assert sum(r.cost_usd for r in own.rows) == pytest.approx(sum(u.cost_usd for u in reported))
    assert own.end_unix - own.start_unix >= 86_400
    # Per-tenant series (the process's registry: counted since the test began).
    assert tenant_series("ratatoskr_tenant_requests_total") - requests_before == 3
    spent = tenant_series("ratatoskr_tenant_spend_usd_total") - spend_before
    assert spent == pytest.approx(sum(u.cost_usd for u in reported))
    async with await connect(daemon, "boss") as boss:
        everyone = await boss.usage(group_by="model")
    assert [(r.tenant, r.key, r.requests) for r in everyone.rows] == [("upm", "gpt-4o-mini", 3)]
    code, out, err = await rat("--address", daemon.address, "usage", "--json", key=KEYS["upm"])
    assert code == 0, err
    assert json.loads(out)["rows"][0]["requests"] == "3"
    code, out, err = await rat(
        "--address", daemon.address, "usage", "--by", "user", key=KEYS["boss"]
    )
    assert code == 0, err
    assert "alice" in out and "TOKENS IN" in out
    code, out, err = await rat(
        "--address", daemon.address, "usage", "--tenant", "boss", key=KEYS["upm"]
    )
    assert code != 0 and "admin" in err


async def test_the_openai_http_door_is_governed_alike(upstream: FakeOpenAIUpstream) -> None:
    """The same tenant limits through the HTTP door: the SDK's RateLimitError with a
    retry-after, the user from the x-ratatoskr-user header."""
    await fresh_minute()
    extra = f"""
[auth]
mode = "api_key"
{tenant("upm", "user_requests_per_minute = 1")}
"""
    async with door_daemon(upstream, extra) as running:
        client = openai.AsyncOpenAI(
            base_url=base_url(running),
            api_key=KEYS["upm"],
            max_retries=0,
            default_headers={"x-ratatoskr-user": "carol"},
        )
        messages: list[Any] = [{"role": "user", "content": PROMPT}]
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=32)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, max_tokens=32
            )
        await client.close()
    assert caught.value.response.headers["retry-after"]
    assert "user_requests_per_minute" in caught.value.message


async def test_a_cancelled_stream_settles_when_it_ends(
    daemon: Daemon, upstream: FakeOpenAIUpstream
) -> None:
    """The client walks away after the first words (the upstream then says nothing more):
    the stream settles as it closes, keeping its worst case, and nothing leaks: once the
    budget is spent on such streams, the next call is refused."""
    async with await connect(daemon, "budget") as client:
        upstream.set_scenario("hang")
        worst = worst_case(client)
        walked_away = 0
        for _ in range(20):
            try:
                async for event in client.chat_stream(
                    PROMPT, model="gpt-4o-mini", max_tokens=MAX_TOKENS
                ):
                    assert event.WhichOneof("event") == "content"
                    break  # closes the call: a cancellation on the server
            except BudgetExceeded:
                break
            walked_away += 1
        # Each settled as it closed: recorded in the usage at its worst case.
        for _ in range(100):  # the server handles a cancellation a moment after the client
            rows = (await client.usage()).rows
            if rows and rows[0].requests == walked_away:
                break
            await asyncio.sleep(0.02)
    assert walked_away == int(BUDGET * 1e9) // math.ceil(worst * 1e9)
    assert rows[0].requests == walked_away
    assert rows[0].cost_usd == pytest.approx(walked_away * math.ceil(worst * 1e9) / 1e9)


async def test_embeddings_count_against_the_request_limits(daemon: Daemon) -> None:
    async with await connect(daemon, "rpm") as client:
        await client.chat(PROMPT, model="gpt-4o-mini", max_tokens=32)
        await client.embed("a sentence", model="text-embedding-3-small")
        await client.embed_batch(["one", "two"], model="text-embedding-3-small")
        with pytest.raises(TenantRateLimited):
            await client.embed("a sentence", model="text-embedding-3-small")
        rows = (await client.usage(group_by="model")).rows
    assert {(r.key, r.requests) for r in rows} == {
        ("gpt-4o-mini", 1),
        ("text-embedding-3-small", 2),
    }
