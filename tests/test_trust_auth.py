"""Caller authentication with API keys, roles and model allow-lists: a real in-process
ratd (grpc.aio server, auth interceptor, gateway) on loopback, the real client, the fake
OpenAI upstream behind it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ratatoskr import (
    CallerUnauthenticated,
    ModelNotAllowed,
    RatatoskrError,
    RoleRequired,
    ServiceClient,
)
from ratatoskr.v1 import models_pb2, ratatoskr_pb2_grpc
from ratd.server import Daemon
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import make_config, running_daemon

pytestmark = pytest.mark.timeout(60)

KEY_OLD = "rat_test-acme-old-3f9d2c1b0a"
KEY_NEW = "rat_test-acme-new-8e7d6c5b4a"
KEY_OPS = "rat_test-ops-1a2b3c4d5e6f"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def config_text(upstream: FakeOpenAIUpstream, acme_keys: tuple[str, ...]) -> str:
    hashes = ", ".join(f'"{sha(k)}"' for k in acme_keys)
    return f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[auth]
mode = "api_key"
[tenants.acme]
api_key_sha256 = [{hashes}]
roles = ["inference"]
models = ["gpt-4o-mini", "openai:scenario/*"]
requests_per_minute = 600
tokens_per_minute = 200000
user_requests_per_minute = 60
budget_usd_daily = 5.0
budget_usd_monthly = 100.0
allow_unpriced_models = true  # the scenario/* models have no prices
[tenants.ops]
api_key_sha256 = ["{sha(KEY_OPS)}"]
roles = ["inference", "admin"]
"""


@pytest.fixture
async def daemon(upstream: FakeOpenAIUpstream) -> AsyncIterator[Daemon]:
    config = make_config(
        config_text(upstream, (KEY_OLD, KEY_NEW)), env={"OPENAI_API_KEY": OPENAI_KEY}
    )
    async with running_daemon(config) as running:
        yield running


async def connect(daemon: Daemon, api_key: str | None) -> ServiceClient:
    return await ServiceClient.connect(daemon.address, timeout=20, api_key=api_key or "")


async def test_no_key_and_a_wrong_key_are_caller_unauthenticated(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RATD_API_KEY", raising=False)
    for key in (None, "rat_not-a-key-of-this-ratd", KEY_OLD.upper()):
        async with await connect(daemon, key) as client:
            with pytest.raises(CallerUnauthenticated) as caught:
                await client.chat("hi", model="gpt-4o-mini")
            with pytest.raises(CallerUnauthenticated):
                async for _ in client.chat_stream("hi", model="gpt-4o-mini"):
                    pass
    err = caught.value
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert err.reason == "CALLER_UNAUTHENTICATED"
    assert "API key" in err.message and KEY_OLD.upper() not in err.message


async def test_malformed_authorization_metadata(daemon: Daemon) -> None:
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest())  # open, whatever the metadata
        ratatoskr = ratatoskr_pb2_grpc.RatatoskrStub(channel)
        for value in ("Basic abc", "Bearer", "Bearer  ", KEY_OPS):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await ratatoskr.ListPresets(
                    models_pb2.ListPresetsRequest(), metadata=(("authorization", value),)
                )
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_both_keys_of_a_rotation_work(daemon: Daemon, upstream: FakeOpenAIUpstream) -> None:
    for key in (KEY_OLD, KEY_NEW):
        async with await connect(daemon, key) as client:
            reply = await client.chat("hi", model="gpt-4o-mini")
            assert reply.content == TEXT
    assert len(upstream.requests) == 2


async def test_api_key_from_the_environment(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATD_API_KEY", KEY_NEW)
    async with await ServiceClient.connect(daemon.address, timeout=20) as client:
        assert (await client.chat("hi", model="gpt-4o-mini")).content == TEXT


async def test_inference_tenant_may_not_call_admin(daemon: Daemon) -> None:
    async with await connect(daemon, KEY_OLD) as client:
        with pytest.raises(RoleRequired) as caught:
            await client.list_loaded()
        assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert caught.value.reason == "ROLE_REQUIRED"
        assert caught.value.role == "admin"
        with pytest.raises(RoleRequired):
            await client.reload_config()
        with pytest.raises(RoleRequired):  # a streaming admin RPC, refused the same way
            async for _ in client.download_model("all-MiniLM-L6-v2"):
                pass
        # The catalog is open to every tenant.
        assert await client.list_presets() is not None
    async with await connect(daemon, KEY_OPS) as client:
        assert isinstance(await client.list_loaded(), list)


async def test_model_outside_the_allow_list(daemon: Daemon, upstream: FakeOpenAIUpstream) -> None:
    async with await connect(daemon, KEY_OLD) as client:
        for model in ("gpt-4o", "openai:gpt-4o", "anthropic:scenario/text"):
            with pytest.raises(ModelNotAllowed) as caught:
                await client.chat("hi", model=model)
            assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert caught.value.reason == "MODEL_NOT_ALLOWED"
        with pytest.raises(ModelNotAllowed):
            async for _ in client.chat_stream("hi", model="gpt-4o"):
                pass
        with pytest.raises(ModelNotAllowed):
            await client.embed("text", "local:all-MiniLM-L6-v2")
        assert not upstream.requests  # refused before any provider was asked
        # On the list: a bare name, and provider:model by a pattern with a colon.
        assert (await client.chat("hi", model="openai:gpt-4o-mini")).content == TEXT
        assert (await client.chat("hi", model="openai:scenario/text")).content
    async with await connect(daemon, KEY_OPS) as client:  # no allow-list: every model
        assert (await client.chat("hi", model="gpt-4o")).content == TEXT


async def test_health_is_open_and_reflection_needs_a_key(daemon: Daemon) -> None:
    async with await connect(daemon, None) as client:
        assert (await client.health()).healthy
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")

        async def services(metadata: tuple[tuple[str, str], ...]) -> list[str]:
            call = stub.ServerReflectionInfo(iter([ask]), metadata=metadata)
            names = []
            async for reply in call:
                names += [s.name for s in reply.list_services_response.service]
            return names

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await services(())
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "ratatoskr.v1.Ratatoskr" in await services((("authorization", f"Bearer {KEY_OLD}"),))


async def test_log_names_the_tenant_and_no_key_or_hash(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with await connect(daemon, KEY_OLD) as client:
        await client.chat("hi", model="gpt-4o-mini")
        with pytest.raises(ModelNotAllowed):
            await client.chat("hi", model="gpt-4o")
    async with await connect(daemon, "rat_wrong-key-0123456789") as client:
        with pytest.raises(CallerUnauthenticated):
            await client.chat("hi", model="gpt-4o-mini")
    lines = [r.getMessage() for r in caplog.records]
    requests = [line for line in lines if line.startswith("request ")]
    assert any("tenant=acme" in line and "status=OK" in line for line in requests)
    assert any("tenant=acme" in line and "PERMISSION_DENIED" in line for line in requests)
    assert any("status=UNAUTHENTICATED" in line for line in requests)
    text = "\n".join(lines)
    for secret in (KEY_OLD, sha(KEY_OLD), "rat_wrong-key-0123456789", KEY_OPS, sha(KEY_OPS)):
        assert secret not in text


async def test_reload_rotates_keys(upstream: FakeOpenAIUpstream) -> None:
    env = {"OPENAI_API_KEY": OPENAI_KEY}
    keys = [(KEY_OLD,)]
    config = make_config(config_text(upstream, keys[0]), env=env)
    daemon = Daemon(config, reread=lambda: make_config(config_text(upstream, keys[0]), env=env))
    await daemon.start()
    try:
        async with await connect(daemon, KEY_NEW) as client:
            with pytest.raises(CallerUnauthenticated):
                await client.chat("hi", model="gpt-4o-mini")
        keys[0] = (KEY_NEW,)
        async with await connect(daemon, KEY_OPS) as admin:
            assert (await admin.reload_config()).reloaded
        async with await connect(daemon, KEY_NEW) as client:
            assert (await client.chat("hi", model="gpt-4o-mini")).content == TEXT
        async with await connect(daemon, KEY_OLD) as client:
            with pytest.raises(CallerUnauthenticated):
                await client.chat("hi", model="gpt-4o-mini")
    finally:
        await daemon.stop()


async def test_a_fallback_never_leads_outside_the_allow_list(upstream: FakeOpenAIUpstream) -> None:
    """A tenant allowed "openai:*" asks for gpt-4o-mini while OpenAI is down: the chain
    would go on to OpenRouter (openrouter:openai/gpt-4o-mini), which is not on its list,
    so the call fails with OpenAI's error and OpenRouter is never asked. A tenant that
    may use the model by name gets the fallback."""
    narrow, wide = "rat_test-narrow-5a4b3c2d1e", "rat_test-wide-9f8e7d6c5b"
    text = f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
[routing]
chat = ["openrouter"]
[auth]
mode = "api_key"
[tenants.narrow]
api_key_sha256 = ["{sha(narrow)}"]
roles = ["inference"]
models = ["openai:*"]
[tenants.wide]
api_key_sha256 = ["{sha(wide)}"]
roles = ["inference"]
models = ["gpt-4o-mini"]
"""
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": OPENAI_KEY}
    upstream.set_scenario("server-error", "openai")
    async with running_daemon(make_config(text, env=env)) as daemon:
        async with await connect(daemon, narrow) as client:
            with pytest.raises(RatatoskrError) as caught:
                await client.chat("hi", model="gpt-4o-mini")
            assert caught.value.metadata["tried"] == "openai"
            assert not upstream.requests_to("openrouter")
            with pytest.raises(ModelNotAllowed):  # nothing on its list serves this one
                await client.chat("hi", model="anthropic/claude-sonnet-4")
        async with await connect(daemon, wide) as client:
            assert (await client.chat("hi", model="gpt-4o-mini")).provider == "openrouter"
