"""The secure setup end to end, as an operator runs it: certificates from ``openssl``,
a key from ``ratd keys new``, a spawned ratd with TLS and API keys, the ``rat`` CLI and
the Python clients with and without the right credentials."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ratatoskr import CallerUnauthenticated, ServiceClient, SyncServiceClient
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import SpawnedRatd, spawn_ratd
from tests.support.pki import Pki, make_pki

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def new_key(tenant: str) -> tuple[str, str]:
    """``ratd keys new``: the key and the config lines."""
    result = subprocess.run(
        [sys.executable, "-m", "ratd", "keys", "new", tenant],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    key = next(line for line in lines if line.startswith("rat_"))
    table = "\n".join(line for line in lines if not line.startswith(("#", "rat_")))
    return key, table


@pytest.fixture
def secure(
    upstream: FakeOpenAIUpstream, pki: Pki, tmp_path: Path
) -> Iterator[tuple[SpawnedRatd, str, str]]:
    key, table = new_key("acme")
    config = f"""
[server]
address = "127.0.0.1:0"
metrics_address = "127.0.0.1:0"
tls_cert_file = "{pki.server.cert}"
tls_key_file = "{pki.server.key}"
[auth]
mode = "api_key"
{table}
models = ["gpt-4o-mini"]
[providers.openai]
base_url = "{upstream.base_url_openai}"
"""
    digest = table.split('"')[1]
    with spawn_ratd(config, tmp_path, env={"OPENAI_API_KEY": OPENAI_KEY}) as process:
        yield process, key, digest
    log = process.log()
    for secret in (key, digest, OPENAI_KEY):
        assert secret not in log, "a key or its hash reached the ratd log"
    assert "tenant=acme" in log


async def rat(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rat",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1", **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_rat_with_tls_and_a_key(secure: tuple[SpawnedRatd, str, str], pki: Pki) -> None:
    process, key, _ = secure
    address = f"https://localhost:{process.address.rsplit(':', 1)[1]}"
    tls = ("--address", address, "--tls-ca", str(pki.ca))
    code, out, err = await rat(*tls, "--api-key", key, "health")
    assert code == 0, err
    assert "healthy" in out
    code, out, err = await rat(*tls, "--api-key", key, "chat", "hi", "-m", "gpt-4o-mini")
    assert code == 0, err
    assert out == TEXT + "\n"
    # The key from the environment, and a model outside the allow-list.
    code, _, err = await rat(*tls, "chat", "hi", "-m", "gpt-4o", env={"RATD_API_KEY": key})
    assert code == 13 and "MODEL_NOT_ALLOWED" in err
    # No key: health stays open, chat is refused with the reason.
    code, out, _ = await rat(*tls, "health")
    assert code == 0
    code, _, err = await rat(*tls, "chat", "hi", "-m", "gpt-4o-mini")
    assert code == 12
    assert "CALLER_UNAUTHENTICATED" in err and "UNAUTHENTICATED" in err
    # Plaintext to the TLS port: a clear connection error with a hint.
    code, _, err = await rat("--address", process.address, "--api-key", key, "health")
    assert code == 3
    assert "cannot reach ratd" in err and "https://" in err
    assert key not in err


async def test_python_clients_with_tls_and_a_key(
    secure: tuple[SpawnedRatd, str, str], pki: Pki
) -> None:
    process, key, _ = secure
    async with await ServiceClient.connect(
        process.address, tls_ca=pki.ca, api_key=key, timeout=20
    ) as client:
        assert (await client.chat("hi", model="gpt-4o-mini")).content == TEXT
    async with await ServiceClient.connect(
        process.address, tls_ca=pki.ca, api_key="", timeout=20
    ) as client:
        with pytest.raises(CallerUnauthenticated):
            await client.chat("hi", model="gpt-4o-mini")

    def sync_call() -> str:
        with SyncServiceClient(process.address, timeout=20, tls_ca=pki.ca, api_key=key) as c:
            return c.chat("hi", model="gpt-4o-mini").content

    assert await asyncio.to_thread(sync_call) == TEXT
