"""The reliability suite, part one: faults injected by the fake upstream, each answered
with the right status and ErrorInfo, retried and fallen back as configured, with no hang
and nothing left behind (tasks, connections)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psutil
import pytest
from prometheus_client import REGISTRY

from ratatoskr import RatatoskrError, ServiceClient
from ratd.config import RetryConfig
from ratd.core.retry import Retrier
from ratd.server import Daemon
from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.daemon import make_config, running_daemon

pytestmark = pytest.mark.timeout(60)

KEYS = {
    "OPENAI_API_KEY": "sk-faults-openai-01",
    "OPENROUTER_API_KEY": "sk-or-faults-01",
    "ANTHROPIC_API_KEY": "sk-ant-faults-01",
}
RETRY = """
[retry]
max_attempts = 3
initial_delay_ms = 5
max_delay_ms = 20
max_retry_after_secs = 2
budget_min_retries = 1000
"""


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def established_to(port: int) -> int:
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


@pytest.fixture
async def faults(upstream: FakeOpenAIUpstream) -> AsyncIterator[tuple[Daemon, ServiceClient]]:
    upstream.openai.retry_after_header = "0.05"
    upstream.openrouter.reset_in_secs = 0.05
    upstream.openrouter.retry_after_secs = 0
    config = make_config(
        f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
first_byte_timeout_secs = 0.5
read_timeout_secs = 0.5
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
first_byte_timeout_secs = 0.5
read_timeout_secs = 0.5
[routing]
chat = ["openai", "openrouter"]
{RETRY}""",
        env=KEYS,
    )
    async with running_daemon(config) as daemon:
        client = await ServiceClient.connect(daemon.address, timeout=30)
        try:
            yield daemon, client
        finally:
            await client.close()
    assert established_to(upstream.port) == 0, "a connection to the upstream outlived ratd"


async def failing(call: Any) -> RatatoskrError:
    with pytest.raises(RatatoskrError) as caught:
        result = call()
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    return caught.value


def ratd_tasks() -> list[str]:
    """Tasks of ratd and its clients: everything but the fake upstream's connection
    handlers, which a keep-alive connection rightly keeps."""
    names = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        where = getattr(getattr(coro, "cr_code", None), "co_filename", "")
        if "aiohttp/web_protocol" not in where:
            names.append(getattr(coro, "__qualname__", repr(coro)))
    return names


async def settled_tasks(baseline: int) -> None:
    """Wait until no task started for a call is left (bounded, no wall-clock assert)."""
    for _ in range(200):
        if len(ratd_tasks()) <= baseline:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks left behind: {ratd_tasks()}")


# -- retried, then answered --------------------------------------------------------------------


# Faults before any answer; "truncated", "malformed" and "hang" reach a stream only after
# its first event (see the mid-stream tests below), so they are tested unstreamed.
TRANSIENT = [
    ("openai", "rate-limit", False),  # Retry-After (fractional seconds)
    ("openai", "rate-limit", True),
    ("openrouter", "rate-limit", False),  # X-RateLimit-Reset, epoch milliseconds
    ("openrouter", "rate-limit", True),
    ("openai", "server-error", False),
    ("openai", "server-error", True),
    ("openai", "bad-gateway", False),
    ("openai", "bad-gateway", True),
    ("openai", "overloaded", False),
    ("openai", "overloaded", True),
    ("openai", "error-in-200", False),
    ("openai", "error-in-200", True),
    ("openai", "truncated", False),  # connection reset mid-body
    ("openai", "malformed", False),
    ("openai", "hang", False),  # stall before the first byte
]


@pytest.mark.parametrize(("flavour", "fault", "streamed"), TRANSIENT)
async def test_transient_faults_are_retried_then_answered(
    faults: tuple[Daemon, ServiceClient],
    upstream: FakeOpenAIUpstream,
    flavour: str,
    fault: str,
    streamed: bool,
) -> None:
    _, client = faults
    model = f"{flavour}:{'gpt-4o-mini' if flavour == 'openai' else 'yggdrasil/ash-3-mini'}"
    upstream.flavour(flavour).script = [fault, fault]
    before = counter("ratatoskr_retries_total", provider=flavour)
    baseline = len(ratd_tasks())
    if streamed:
        events = [e async for e in client.chat_stream("hi", model=model)]
        text = "".join(e.content for e in events if e.WhichOneof("event") == "content")
    else:
        text = (await client.chat("hi", model=model)).content
    assert text == TEXT
    assert len(upstream.requests_to(flavour)) == 3, "two failures, then the answer"
    assert counter("ratatoskr_retries_total", provider=flavour) - before == 2
    await settled_tasks(baseline)


async def test_after_the_retries_the_chain_moves_on(
    faults: tuple[Daemon, ServiceClient], upstream: FakeOpenAIUpstream
) -> None:
    _, client = faults
    upstream.openai.scenario = "server-error"
    before = counter("ratatoskr_fallbacks_total", provider="openai", capability="chat")
    reply = await client.chat("hi", model="gpt-4o-mini")
    assert reply.provider == "openrouter"
    assert len(upstream.requests_to("openai")) == 3 and len(upstream.requests_to("openrouter")) == 1
    assert counter("ratatoskr_fallbacks_total", provider="openai", capability="chat") - before == 1


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [
        ("bad-request", grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_INVALID_REQUEST"),
        ("invalid-key", grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_FAILED"),
        ("unknown-model", grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
        ("insufficient-quota", grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED"),
        ("context-length", grpc.StatusCode.OUT_OF_RANGE, "CONTEXT_LENGTH_EXCEEDED"),
    ],
)
async def test_other_4xx_are_never_retried(
    faults: tuple[Daemon, ServiceClient],
    upstream: FakeOpenAIUpstream,
    fault: str,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    _, client = faults
    upstream.openai.scenario = fault
    err = await failing(lambda: client.chat("hi", model="openai:gpt-4o-mini"))
    assert (err.code, err.reason, err.provider) == (code, reason, "openai")
    assert len(upstream.requests_to("openai")) == 1


async def test_every_attempt_failing_gives_the_last_status_and_error_info(
    faults: tuple[Daemon, ServiceClient], upstream: FakeOpenAIUpstream
) -> None:
    _, client = faults
    upstream.openai.scenario = "overloaded"
    err = await failing(lambda: client.chat("hi", model="openai:gpt-4o-mini"))
    assert err.code == grpc.StatusCode.UNAVAILABLE and err.reason == "PROVIDER_OVERLOADED"
    assert err.metadata["tried"] == "openai" and err.metadata["upstream_status"] == "503"
    assert len(upstream.requests_to("openai")) == 3


async def test_connection_refused_is_retried_then_falls_back(upstream: FakeOpenAIUpstream) -> None:
    config = make_config(
        f"""
[providers.openai]
base_url = "http://127.0.0.1:9/v1"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
[routing]
chat = ["openai", "openrouter"]
{RETRY}""",
        env=KEYS,
    )
    before = counter("ratatoskr_retries_total", provider="openai")
    async with (
        running_daemon(config) as daemon,
        await ServiceClient.connect(daemon.address) as client,
    ):
        reply = await client.chat("hi", model="gpt-4o-mini")
    assert reply.provider == "openrouter"
    assert counter("ratatoskr_retries_total", provider="openai") - before == 2


async def test_529_overloaded_is_retried(upstream: FakeOpenAIUpstream) -> None:
    async with FakeAnthropicUpstream() as anthropic:
        config = make_config(
            f'[providers.anthropic]\nbase_url = "{anthropic.base_url}"\n{RETRY}', env=KEYS
        )
        async with (
            running_daemon(config) as daemon,
            await ServiceClient.connect(daemon.address) as client,
        ):
            err = await failing(lambda: client.chat("hi", model="anthropic:conf-overloaded"))
        assert err.code == grpc.StatusCode.UNAVAILABLE and err.reason == "PROVIDER_OVERLOADED"
        assert err.metadata["upstream_status"] == "529"
        assert len(anthropic.requests_to("/v1/messages")) == 3


# -- hints, deadlines, budgets -----------------------------------------------------------------


async def test_a_hint_longer_than_the_limit_is_not_waited_for(
    faults: tuple[Daemon, ServiceClient], upstream: FakeOpenAIUpstream
) -> None:
    _, client = faults
    upstream.openai.retry_after_header = "20"  # over max_retry_after_secs = 2
    upstream.openai.scenario = "rate-limit"
    err = await failing(lambda: client.chat("hi", model="openai:gpt-4o-mini"))
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and err.retry_after == 20
    assert err.message == "Rate limited, retry after 20s"
    assert len(upstream.requests_to("openai")) == 1


async def test_no_wait_goes_past_the_callers_deadline(
    faults: tuple[Daemon, ServiceClient], upstream: FakeOpenAIUpstream
) -> None:
    _, client = faults
    upstream.openai.retry_after_header = "1.5"  # under the limit, but over the deadline
    upstream.openai.scenario = "rate-limit"
    err = await failing(lambda: client.chat("hi", model="openai:gpt-4o-mini", timeout=1.0))
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED, "the provider's answer, not a timeout"
    assert len(upstream.requests_to("openai")) == 1


async def test_the_retry_budget_stops_a_retry_storm(upstream: FakeOpenAIUpstream) -> None:
    config = make_config(
        f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[retry]
max_attempts = 5
initial_delay_ms = 1
max_delay_ms = 2
budget_ratio = 0.0
budget_min_retries = 2
""",
        env=KEYS,
    )
    upstream.openai.scenario = "server-error"
    async with (
        running_daemon(config) as daemon,
        await ServiceClient.connect(daemon.address) as client,
    ):
        for _ in range(6):
            await failing(lambda: client.chat("hi", model="openai:gpt-4o-mini"))
    # Six requests; of the up to 24 retries they could want, the budget allows two.
    assert len(upstream.requests_to("openai")) == 6 + 2


async def test_each_provider_has_its_own_retry_budget(upstream: FakeOpenAIUpstream) -> None:
    """A provider that is down spends its own budget, not the retries of the next one."""
    config = make_config(
        f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
[routing]
chat = ["openai", "openrouter"]
[retry]
max_attempts = 3
initial_delay_ms = 1
max_delay_ms = 2
budget_ratio = 0.0
budget_min_retries = 2
""",
        env=KEYS,
    )
    upstream.openai.scenario = "server-error"
    upstream.openrouter.scenario = "server-error"
    async with (
        running_daemon(config) as daemon,
        await ServiceClient.connect(daemon.address) as client,
    ):
        for _ in range(3):  # openai: 3 requests and its 2 retries; openrouter untouched
            await failing(lambda: client.chat("hi", model="openai:gpt-4o-mini"))
        assert len(upstream.requests_to("openai")) == 3 + 2
        assert not upstream.requests_to("openrouter")
        # Through the chain: openai, out of budget, fails once and falls back; openrouter
        # still has both of its retries.
        err = await failing(lambda: client.chat("hi", model="gpt-4o-mini"))
        assert err.metadata["tried"] == "openai,openrouter"
        assert len(upstream.requests_to("openai")) == 3 + 2 + 1
        assert len(upstream.requests_to("openrouter")) == 1 + 2


def test_jitter_is_applied_and_bounded() -> None:
    retrier = Retrier(
        RetryConfig(initial_delay_ms=100, max_delay_ms=1000, jitter=0.5), random.Random(7)
    )
    for attempt, base in ((1, 0.1), (2, 0.2), (3, 0.4), (5, 1.0), (9, 1.0)):
        delays = {retrier.backoff(attempt) for _ in range(50)}
        assert all(base * 0.5 <= d <= base for d in delays)
        assert len(delays) > 40, "every delay is jittered"


# -- faults in the middle of a stream ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("mid-stream-error", "PROVIDER_UNAVAILABLE"),
        ("truncated", "UPSTREAM_PROTOCOL"),
        ("ended-early", "UPSTREAM_PROTOCOL"),
        ("malformed", "UPSTREAM_PROTOCOL"),
        ("hang", "PROVIDER_UNAVAILABLE"),  # a stall between chunks
    ],
)
async def test_faults_after_the_first_event_end_the_stream_without_retry(
    faults: tuple[Daemon, ServiceClient], upstream: FakeOpenAIUpstream, fault: str, reason: str
) -> None:
    _, client = faults
    upstream.openai.scenario = fault
    seen: list[str] = []

    async def read() -> None:
        async for event in client.chat_stream("hi", model="gpt-4o-mini"):
            if event.WhichOneof("event") == "content":
                seen.append(event.content)

    err = await failing(read)
    assert seen, "what arrived before the fault was delivered"
    assert err.code == grpc.StatusCode.UNAVAILABLE and err.reason == reason
    assert len(upstream.requests_to("openai")) == 1, "no retry once the stream has begun"
    assert not upstream.requests_to("openrouter"), "no fallback once the stream has begun"


@pytest.mark.parametrize("scenario", ["hang", "stall"], ids=["before-headers", "mid-body"])
async def test_an_unstreamed_answer_is_bounded_in_all_by_the_first_byte_timeout(
    faults: tuple[Daemon, ServiceClient], upstream: FakeOpenAIUpstream, scenario: str
) -> None:
    """A whole JSON answer has one time limit for all of it, first_byte_timeout_secs (it
    arrives at once when it comes), whether the upstream says nothing or stops halfway
    through the body, and the error says so."""
    _, client = faults
    upstream.openai.scenario = scenario
    upstream.openrouter.scenario = scenario
    err = await failing(lambda: client.chat("hi", model="gpt-4o-mini"))
    assert err.code == grpc.StatusCode.UNAVAILABLE and err.reason == "PROVIDER_UNAVAILABLE"
    assert "did not answer within 0.5s" in err.message, err.message
    assert len(upstream.requests_to("openai")) == 3, "each attempt bounded, then retried"


def test_the_retry_budget_counts_in_constant_space() -> None:
    """Requests that never fail must not accumulate (a leak once, seen in the soak): they
    are counted per second of the window, and a tenth of them may be retried."""
    from ratd.core.retry import RetryBudget

    budget = RetryBudget(ratio=0.1, window=10.0, minimum=0)
    for _ in range(10_000):
        budget.request()
    assert len(budget._requests.counts) == 10
    spent = sum(budget.try_spend() for _ in range(2_000))
    assert spent == 1_000
