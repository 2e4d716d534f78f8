"""The OpenAI HTTP door and the trust boundary: the same tenants and bearer keys as gRPC
(AuthenticationError, PermissionDeniedError from the real SDK), the model allow-list on
calls and on the model list, a key rotation by reload, the exposure rules at start, the
concurrency limit as a 429 with a retry hint, and the request log line."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from ratd.config import Config, ConfigError
from ratd.server import Daemon
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import make_config, running_daemon
from tests.support.openai_door import base_url, door_config_text, door_daemon
from tests.support.pki import Pki, make_pki

pytestmark = pytest.mark.timeout(60)

KEY = "rat_test-acme-http-6c5b4a3f2e"
KEY_OPS = "rat_test-ops-http-0a9b8c7d6e"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


TENANTS = f"""
[auth]
mode = "api_key"
[tenants.acme]
api_key_sha256 = ["{sha(KEY)}"]
roles = ["inference"]
models = ["gpt-4o-mini", "openai:gpt-4o-mini"]
[tenants.ops]
api_key_sha256 = ["{sha(KEY_OPS)}"]
roles = ["admin"]
"""


@pytest.fixture
async def daemon(upstream: FakeOpenAIUpstream) -> AsyncIterator[Daemon]:
    async with door_daemon(upstream, TENANTS) as running:
        yield running


def sdk(daemon: Daemon, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url(daemon), api_key=key, max_retries=0)


HI = [{"role": "user", "content": "Hi"}]


async def test_keys_roles_and_allow_list(daemon: Daemon, upstream: FakeOpenAIUpstream) -> None:
    async with sdk(daemon, KEY) as acme:
        answer = await acme.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert answer.choices[0].message.content == TEXT
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await acme.chat.completions.create(model="gpt-4o", messages=HI)
        assert denied.value.body["code"] == "model_not_allowed"  # type: ignore[index]
        ids = [m.id async for m in acme.models.list()]
        assert ids == ["gpt-4o-mini"]
        with pytest.raises(openai.NotFoundError):
            await acme.models.retrieve("gpt-4o")
    async with sdk(daemon, "rat_not-a-key") as stranger:
        with pytest.raises(openai.AuthenticationError) as refused:
            await stranger.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert refused.value.body["code"] == "invalid_api_key"  # type: ignore[index]
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()
    async with sdk(daemon, KEY_OPS) as ops:  # admin only: no inference role
        with pytest.raises(openai.PermissionDeniedError) as role:
            await ops.embeddings.create(model="text-embedding-3-small", input="x")
        assert role.value.body["code"] == "role_required"  # type: ignore[index]
        assert "gpt-4o" in [m.id async for m in ops.models.list()]  # the catalog is open
    async with aiohttp.ClientSession() as session:  # no Authorization header at all
        url = base_url(daemon) + "/chat/completions"
        async with session.post(url, json={"model": "gpt-4o-mini", "messages": HI}) as response:
            assert response.status == 401
            assert "Bearer" in (await response.json())["error"]["message"]
    # Only the allowed call reached the upstream, and it never saw the caller's key.
    (only,) = upstream.requests_to("openai")
    assert only.headers["Authorization"] == f"Bearer {OPENAI_KEY}"


async def test_request_log_names_the_tenant_not_the_key(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratd")
    async with sdk(daemon, KEY) as acme:
        await acme.chat.completions.create(model="gpt-4o-mini", messages=HI)
    lines = [r.getMessage() for r in caplog.records if r.name == "ratd.requests"]
    assert any("method=http.Chat" in line and "tenant=acme" in line for line in lines)
    assert not any(KEY in r.getMessage() or sha(KEY) in r.getMessage() for r in caplog.records)


async def test_overload_is_a_429_with_a_retry_hint(upstream: FakeOpenAIUpstream) -> None:
    text = f"""
[server]
address = "127.0.0.1:0"
metrics_address = ""
max_concurrent_requests = 1
[http]
address = "127.0.0.1:0"
[providers.openai]
base_url = "{upstream.base_url_openai}"
"""
    config = make_config(text, env={"OPENAI_API_KEY": OPENAI_KEY})
    upstream.set_scenario("hang")
    async with running_daemon(config) as daemon, sdk(daemon, "unused") as api:
        held = asyncio.ensure_future(api.chat.completions.create(model="gpt-4o-mini", messages=HI))
        while not upstream.requests_to("openai"):  # noqa: ASYNC110 (the fake records, no event)
            await asyncio.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as limited:
            await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert limited.value.response.headers["retry-after"] == "1"
        assert limited.value.body["code"] == "overloaded"  # type: ignore[index]
        held.cancel()


@pytest.mark.parametrize(
    ("http", "auth", "problem"),
    [
        ('"0.0.0.0:9743"', "", "OpenAI HTTP on 0.0.0.0:9743 without TLS"),
        ('"127.0.0.1"', "", "http.address must be host:port"),
    ],
)
def test_exposure_and_address_rules(http: str, auth: str, problem: str) -> None:
    text = f"[http]\naddress = {http}\n{auth}"
    with pytest.raises(ConfigError, match=problem):
        Daemon(make_config(text))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def https_client(daemon: Daemon, pki: Pki, name: str | None) -> openai.AsyncOpenAI:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if name is not None:
        pair = pki.clients[name]
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return openai.AsyncOpenAI(
        base_url=f"https://{daemon.http_address}/v1",
        api_key="unused-under-mtls",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(verify=context),
    )


async def test_https_with_mutual_tls_names_the_tenant(
    pki: Pki, upstream: FakeOpenAIUpstream
) -> None:
    """With the [server] TLS files the door serves HTTPS; under auth mode "mtls" the
    client certificate names the tenant, as on gRPC."""
    extra = f"""
[server]
address = "127.0.0.1:0"
metrics_address = ""
tls_cert_file = "{pki.server.cert}"
tls_key_file = "{pki.server.key}"
tls_client_ca_file = "{pki.ca}"
[auth]
mode = "mtls"
[tenants.acme]
mtls_subjects = ["CN=acme-batch"]
[tenants.batch]
mtls_subjects = ["spiffe://example.org/batch"]
[tenants.ops]
mtls_subjects = ["CN=ops"]
roles = ["admin"]
"""
    async with door_daemon(upstream, extra) as daemon:
        for name in ("acme", "spiffe"):
            async with https_client(daemon, pki, name) as api:
                answer = await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
                assert answer.choices[0].message.content == TEXT
        async with https_client(daemon, pki, "stranger") as api:
            with pytest.raises(openai.AuthenticationError):
                await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        async with https_client(daemon, pki, "ops") as api:
            with pytest.raises(openai.PermissionDeniedError):
                await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        for refused in ("foreign", None):  # another CA's certificate, or none: no handshake
            async with https_client(daemon, pki, refused) as api:
                with pytest.raises(openai.APIConnectionError):
                    await api.models.list()


async def test_reload_rotates_the_keys_of_the_http_door(upstream: FakeOpenAIUpstream) -> None:
    """A config reload (SIGHUP, ReloadConfig) gives the HTTP door the new tenants too."""
    env = {"OPENAI_API_KEY": OPENAI_KEY}
    key = ["rat_test-rotated-out-11aa22bb"]

    def read() -> Config:
        tenants = TENANTS.replace(sha(KEY), sha(key[0]))
        return make_config(door_config_text(upstream, tenants), env=env)

    daemon = Daemon(read(), reread=read)
    await daemon.start()
    try:
        async with sdk(daemon, KEY) as acme:
            with pytest.raises(openai.AuthenticationError):
                await acme.chat.completions.create(model="gpt-4o-mini", messages=HI)
            key[0] = KEY
            assert (await daemon.reload())[0]
            answer = await acme.chat.completions.create(model="gpt-4o-mini", messages=HI)
            assert answer.choices[0].message.content == TEXT
    finally:
        await daemon.stop()
