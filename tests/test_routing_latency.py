"""``[routing] strategy = "latency"`` end to end: a real ratd (grpc.aio server in the test's
loop) in front of two fake OpenAI-compatible upstreams on loopback, one of which delays its
answers. Calls converge on the fast one; when the fast one turns slow and the slow one
recovers, exploration finds out and the traffic moves back. Assertions are on which
upstream served (counted by the upstreams themselves), never on measured times.

The exploration draws come from a seeded random source handed to the gateway's latency
table, so which calls explore is the same on every run."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from ratatoskr import ServiceClient
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.daemon import make_config, running_daemon

# The slow upstream's pause before each answer: far above a loopback round trip, even on a
# busy machine, so that the fast upstream never measures slower than it.
SLOW = 0.4
MODEL = "gpt-4o-mini"
KEYS = {"EAST_KEY": "sk-east-latency-1", "WEST_KEY": "sk-west-latency-1"}


def _config(east: FakeOpenAIUpstream, west: FakeOpenAIUpstream) -> str:
    return f"""
[providers.east]
kind = "openai"
base_url = "{east.base_url_openai}"
api_key_env = "EAST_KEY"
[providers.west]
kind = "openai"
base_url = "{west.base_url_openai}"
api_key_env = "WEST_KEY"
[routing]
chat = ["east", "west"]
strategy = "latency"
latency_alpha = 0.5
latency_explore = 0.2
"""


class Pair:
    """The two upstreams and a client of the ratd in front of them."""

    def __init__(
        self, east: FakeOpenAIUpstream, west: FakeOpenAIUpstream, client: ServiceClient
    ) -> None:
        self.east, self.west, self.client = east, west, client

    def counts(self) -> tuple[int, int]:
        return len(self.east.requests_to("openai")), len(self.west.requests_to("openai"))

    async def call(self, index: int) -> str:
        """One call (every third one streamed: its time to first event is what counts);
        the name of the upstream that received it."""
        before = self.counts()
        if index % 3 == 2:
            events = [e async for e in self.client.chat_stream("hi", model=MODEL)]
            assert events
        else:
            reply = await self.client.chat("hi", model=MODEL)
            assert reply.content == TEXT
        after = self.counts()
        assert sum(after) - sum(before) == 1, "one upstream request per call (no failures)"
        return "east" if after[0] > before[0] else "west"

    async def calls(self, n: int) -> list[str]:
        return [await self.call(i) for i in range(n)]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with FakeOpenAIUpstream() as east, FakeOpenAIUpstream() as west:
        config = make_config(_config(east, west), env=KEYS)
        async with running_daemon(config) as daemon:
            latency = daemon.gateway.latency
            assert latency is not None
            latency.rng = random.Random(20261204)
            client = await ServiceClient.connect(daemon.address, timeout=30)
            try:
                yield Pair(east, west, client)
            finally:
                await client.close()


def _gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value(
        "ratatoskr_provider_latency_seconds", {"provider": provider, "model": MODEL}
    )


async def test_calls_converge_on_the_fast_upstream_and_move_back_when_it_slows(
    pair: Pair,
) -> None:
    pair.east.reply_delay = SLOW
    first = await pair.calls(30)
    # Nothing measured: the chain's order (east); then west is probed, being unmeasured.
    assert first[:2] == ["east", "west"]
    settled = first[10:]
    # Of 20 calls, only explorations (a fifth, drawn) go to the slow upstream.
    assert settled.count("west") >= 14, first
    assert settled.count("east") >= 1, f"exploration never tried east: {first}"
    assert _gauge("east") is not None and _gauge("west") is not None

    # East recovers, west turns slow: west's average rises with each call, and an
    # exploration of east measures it fast again; the traffic moves back to east.
    pair.east.reply_delay, pair.west.reply_delay = 0.0, SLOW
    second = await pair.calls(40)
    settled = second[20:]
    assert settled.count("east") >= 14, second
    assert settled.count("west") >= 1, f"exploration never tried west: {second}"
    assert sum(pair.counts()) == 70
