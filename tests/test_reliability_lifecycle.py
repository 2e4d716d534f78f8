"""The reliability suite, part two: cancellation reaching the upstream, backpressure on
slow clients, shutdown with streams in flight, reload under load, and keys that never
appear anywhere."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest

from ratatoskr import RatatoskrError, ServiceClient
from ratatoskr.v1 import admin_pb2, admin_pb2_grpc
from ratd.config import Config, ConfigError
from ratd.server import Daemon
from tests.fakes.openai_upstream import FLOOD_EVENTS, TEXT, FakeOpenAIUpstream
from tests.support.daemon import make_config, running_daemon, spawn_ratd

pytestmark = pytest.mark.timeout(120)

OPENAI_KEY = "sk-lifecycle-openai-4f2c9a1b7e"
OPENROUTER_KEY = "sk-or-v1-lifecycle-8d3e0b6a2c"
KEYS = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY}


def providers(upstream: FakeOpenAIUpstream) -> str:
    return f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
"""


async def eventually(check, tries: int = 500) -> None:  # type: ignore[no-untyped-def]
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_a_cancelled_stream_closes_the_upstream_request(upstream: FakeOpenAIUpstream) -> None:
    upstream.openai.scenario = "hang"
    async with (
        running_daemon(make_config(providers(upstream), env=KEYS)) as daemon,
        await ServiceClient.connect(daemon.address) as client,
    ):
        stream = client.chat_stream("hi", model="openai:gpt-4o-mini")
        first = await anext(stream)
        assert first.content
        await stream.aclose()  # the client goes away
        await asyncio.wait_for(upstream.disconnected.wait(), 10)
        assert daemon.guard.active == 0, "nothing keeps running for the cancelled call"


async def test_a_slow_client_slows_the_upstream_read(upstream: FakeOpenAIUpstream) -> None:
    upstream.openai.scenario = "flood"  # FLOOD_EVENTS events of 2 kB
    async with (
        running_daemon(make_config(providers(upstream), env=KEYS)) as daemon,
        await ServiceClient.connect(daemon.address) as client,
    ):
        stream = client.chat_stream("hi", model="openai:gpt-4o-mini")
        for _ in range(10):
            await anext(stream)
        # Stop reading. The writer upstream must soon stop too: buffers are bounded.
        last = -1
        for _ in range(100):
            await asyncio.sleep(0.05)
            if upstream.frames_written == last:
                break
            last = upstream.frames_written
        else:
            raise AssertionError("the upstream never stopped writing")
        # What is written is what the buffers on the way hold (a few thousand events,
        # depending on how far the kernel and HTTP/2 grew their windows), never the lot.
        assert upstream.frames_written < FLOOD_EVENTS // 2, (
            f"{upstream.frames_written} of {FLOOD_EVENTS} events were written to a client"
            " reading none"
        )
        print(f"events written while the client read none: {upstream.frames_written}")
        read = 10
        async for _ in stream:  # reading again lets it all through
            read += 1
        assert read >= FLOOD_EVENTS


async def test_sigterm_drains_fifty_streams_in_flight(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    upstream.frame_delay = 0.02  # each stream takes about 0.4 s
    config = providers(upstream) + '[server]\naddress = "127.0.0.1:0"\nshutdown_grace_secs = 30\n'
    with spawn_ratd(config, tmp_path, env=KEYS) as ratd:
        async with await ServiceClient.connect(ratd.address, timeout=60) as client:

            async def one() -> str:
                parts = []
                async for event in client.chat_stream("hi", model="openai:gpt-4o-mini"):
                    if event.WhichOneof("event") == "content":
                        parts.append(event.content)
                return "".join(parts)

            tasks = [asyncio.create_task(one()) for _ in range(50)]
            await eventually(lambda: len(upstream.requests_to("openai")) == 50)
            ratd.process.send_signal(signal.SIGTERM)
            texts = await asyncio.gather(*tasks)
        code = await asyncio.to_thread(ratd.process.wait, 60)
    assert code == 0
    assert texts == [TEXT] * 50, "every stream in flight finished"


async def test_reload_under_load_fails_no_request(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    text = providers(upstream)
    configs = [
        make_config(
            text + f'[server]\naddress = "127.0.0.1:0"\nmax_concurrent_requests = {n}\n', env=KEYS
        )
        for n in (300, 400)
    ]
    serial = iter(range(1_000))

    def reread() -> Config:
        return configs[next(serial) % 2]

    daemon = Daemon(configs[0], reread=reread)
    await daemon.start()
    try:
        async with await ServiceClient.connect(daemon.address, timeout=30) as client:
            stop = asyncio.Event()
            results: list[str] = []

            async def load() -> None:
                while not stop.is_set():
                    results.append((await client.chat("hi", model="openai:gpt-4o-mini")).content)

            workers = [asyncio.create_task(load()) for _ in range(20)]
            gateways = [daemon.gateway]  # objects, not ids: a retired one's id may be reused
            for _ in range(5):
                await eventually(lambda: len(results) > 20)
                reloaded, message = await daemon.reload()
                assert reloaded, message
                gateways.append(daemon.gateway)
                results.clear()
            stop.set()
            await asyncio.gather(*workers)
            assert len({id(g) for g in gateways}) == 6, "each reload swapped in a new gateway"
            assert daemon.guard.max_concurrent in (300, 400)
            assert all(r == TEXT for r in results)

            # Through the admin RPC, and an invalid config: rejected, the old one stays.
            def broken() -> Config:
                raise ConfigError("test.toml: unknown key server.adress")

            daemon.reread = broken
            stub = admin_pb2_grpc.AdminServiceStub(client._channel)
            answer = await stub.ReloadConfig(admin_pb2.ReloadConfigRequest())
            assert not answer.reloaded and "unknown key server.adress" in answer.message
            assert (await client.chat("hi", model="openai:gpt-4o-mini")).content == TEXT
    finally:
        await daemon.stop()


async def test_sighup_reloads_the_config_file(upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    with spawn_ratd(providers(upstream), tmp_path, env=KEYS) as ratd:
        async with await ServiceClient.connect(ratd.address, timeout=30) as client:
            assert (await client.chat("hi", model="gpt-4o-mini")).provider == "openai"
            config = tmp_path / "config.toml"
            config.write_text(
                config.read_text()
                + '\n[[routing.rules]]\nmatch = "gpt-*"\nprovider = "openrouter"\n'
            )
            ratd.process.send_signal(signal.SIGHUP)
            await eventually(lambda: "config reloaded" in ratd.log())
            assert (await client.chat("hi", model="gpt-4o-mini")).provider == "openrouter"
            config.write_text("[server]\nnot valid toml")
            ratd.process.send_signal(signal.SIGHUP)
            await eventually(lambda: "reload rejected" in ratd.log())
            assert (await client.chat("hi", model="gpt-4o-mini")).provider == "openrouter"


async def test_keys_never_reach_a_log_line_or_an_error(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    config = (
        providers(upstream)
        + '[server]\naddress = "127.0.0.1:0"\nlog_level = "debug"\nlog_format = "json"\n'
    )
    messages: list[str] = []
    with spawn_ratd(config, tmp_path, env=KEYS) as ratd:
        async with await ServiceClient.connect(ratd.address, timeout=30) as client:
            for scenario in (
                "text",
                "echo-key",
                "invalid-key",
                "rate-limit",
                "server-error",
                "bad-request",
                "mid-stream-error",
                "unknown-model",
            ):
                for flavour in ("openai", "openrouter"):
                    model = f"{flavour}:scenario/{scenario}"
                    for streamed in (False, True):
                        try:
                            if streamed:
                                async for _ in client.chat_stream("hi", model=model):
                                    pass
                            else:
                                await client.chat("hi", model=model)
                        except RatatoskrError as err:
                            messages.append(f"{err.message} {err.metadata}")
    log = ratd.log()
    assert "echo" in " ".join(messages) or messages, "the scenarios produced errors to inspect"
    for key in (OPENAI_KEY, OPENROUTER_KEY, OPENAI_KEY[7:], OPENROUTER_KEY[9:]):
        assert key not in log, "a key reached the log"
        assert all(key not in m for m in messages), "a key reached an error"
    assert '"status": "OK"' in log, "the JSON request log was written"


async def test_limits_answer_resource_exhausted_at_once(upstream: FakeOpenAIUpstream) -> None:
    upstream.openai.scenario = "hang"
    config = make_config(
        providers(upstream) + '[server]\naddress = "127.0.0.1:0"\nmax_concurrent_requests = 2\n',
        env=KEYS,
    )
    async with (
        running_daemon(config) as daemon,
        await ServiceClient.connect(daemon.address) as client,
    ):
        streams = [client.chat_stream("hi", model="openai:gpt-4o-mini") for _ in range(2)]
        for stream in streams:
            await anext(stream)
        with pytest.raises(RatatoskrError) as caught:
            await client.chat("hi", model="openai:gpt-4o-mini")
        assert (
            caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            and caught.value.reason == "OVERLOADED"
        )
        for stream in streams:
            await stream.aclose()
