"""Client-side load balancing over many ratd replicas: with ``load_balancing="round_robin"``
one ServiceClient spreads its calls over every address its target resolves to; without
it (gRPC's pick_first) all go to one replica. Two real in-process ratds, each tagging its
answers through an interceptor, so the answer says which replica served it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import pairwise

import pytest

from ratatoskr import ServiceClient
from ratd.server import Daemon
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY, OPENAI_MODEL
from tests.support.daemon import make_config, running_daemon

pytestmark = pytest.mark.timeout(60)

SAMPLES = "tests.support.sample_interceptors"


def replica_config(fake: FakeOpenAIUpstream, tag: str) -> object:
    text = f"""
[providers.openai]
base_url = "{fake.base_url_openai}"
[interceptors]
chain = ["{SAMPLES}:Tagger"]
[interceptors.settings."{SAMPLES}:Tagger"]
tag = "{tag}"
"""
    return make_config(text, env={"OPENAI_API_KEY": OPENAI_KEY})


@asynccontextmanager
async def replicas(fake: FakeOpenAIUpstream, count: int) -> AsyncIterator[list[Daemon]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(running_daemon(replica_config(fake, str(i))))  # type: ignore[arg-type]
            for i in range(count)
        ]


def target(daemons: list[Daemon]) -> str:
    """One gRPC target resolving to every replica (as DNS of a headless Service does)."""
    return "ipv4:" + ",".join(d.address for d in daemons)


async def served_by(client: ServiceClient) -> str:
    answer = await client.generate("which replica?", model=OPENAI_MODEL)
    return answer.text.rsplit("<", 1)[1].rstrip(">")


async def test_round_robin_spreads_calls_over_replicas(upstream: FakeOpenAIUpstream) -> None:
    async with replicas(upstream, 2) as daemons:
        client = await ServiceClient.connect(
            target(daemons), load_balancing="round_robin", wait_ready=10
        )
        try:
            seen = [await served_by(client)]
            while len(set(seen)) < 2 and len(seen) < 200:  # until both replicas are up
                seen.append(await served_by(client))
            assert set(seen) == {"0", "1"}
            # Once both are connected, calls alternate.
            tail = [await served_by(client) for _ in range(6)]
            assert all(a != b for a, b in pairwise(tail))
        finally:
            await client.close()


async def test_pick_first_pins_one_replica(upstream: FakeOpenAIUpstream) -> None:
    async with replicas(upstream, 2) as daemons:
        client = await ServiceClient.connect(target(daemons), wait_ready=10)
        try:
            seen = {await served_by(client) for _ in range(10)}
        finally:
            await client.close()
    assert len(seen) == 1


async def test_max_connection_age_makes_clients_reconnect(upstream: FakeOpenAIUpstream) -> None:
    """With [server] max_connection_age_secs, ratd ends each connection (GOAWAY) after that
    long: the client's channel leaves READY by itself, and its next call reconnects
    (resolving the target again, which is how round_robin clients find new replicas)."""
    import grpc

    config = make_config(
        f"""
[server]
address = "127.0.0.1:0"
metrics_address = "127.0.0.1:0"
max_connection_age_secs = 0.3
[providers.openai]
base_url = "{upstream.base_url_openai}"
""",
        env={"OPENAI_API_KEY": OPENAI_KEY},
    )
    async with running_daemon(config) as daemon:
        client = await ServiceClient.connect(daemon.address, wait_ready=10)
        try:
            channel = client._channel
            await client.generate("first", model=OPENAI_MODEL)
            assert channel.get_state() == grpc.ChannelConnectivity.READY
            await channel.wait_for_state_change(grpc.ChannelConnectivity.READY)
            assert channel.get_state() != grpc.ChannelConnectivity.READY
            answer = await client.generate("second", model=OPENAI_MODEL)
            assert answer.text
        finally:
            await client.close()
