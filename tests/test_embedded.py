"""Embedded mode: ratd's real gateway and service served inside the test's process by
``ServiceClient.embedded()``, and ``ServiceClient.auto()`` choosing between a running
ratd and the embedded one. Upstreams are the fake OpenAI/OpenRouter on loopback; local
embeddings run the real all-MiniLM-L6-v2 (int8, from PyPI) in ONNX Runtime."""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ratatoskr import ModelNotAvailable, ServiceClient, SyncServiceClient
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import make_config, running_daemon

pytestmark = pytest.mark.timeout(120)


def write_config(tmp_path: Path, upstream: FakeOpenAIUpstream) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.local]
[retry]
max_attempts = 1
[registry]
live = false
cache_path = ""
"""
    )
    return path


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The OpenAI key from the environment, and an empty secrets file (never the user's)."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("")
    secrets.chmod(0o600)
    return secrets


def free_address() -> str:
    """A loopback address nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def test_embedded_chats_and_embeds_locally_without_a_daemon(
    upstream: FakeOpenAIUpstream, tmp_path: Path, keys: Path
) -> None:
    config = write_config(tmp_path, upstream)
    client = await ServiceClient.embedded(config, secrets_path=keys, timeout=60)
    try:
        assert client.mode == "embedded"
        reply = await client.chat("Who carries the gossip?", model="gpt-4o-mini")
        assert reply.content == TEXT
        assert upstream.last("openai").json["messages"] == [
            {"role": "user", "content": "Who carries the gossip?"}
        ]
        streamed = [
            event.content
            async for event in client.chat_stream("hi", model="gpt-4o-mini")
            if event.WhichOneof("event") == "content"
        ]
        assert "".join(streamed) == TEXT
        vector = await client.embed("hello", "all-MiniLM-L6-v2")
        assert len(vector.values) == 384
        assert math.isclose(math.fsum(v * v for v in vector.values), 1.0, rel_tol=1e-3)
        # Errors are ratd's own statuses, through the same translation as for a daemon.
        with pytest.raises(ModelNotAvailable, match="no-such-model-anywhere"):
            await client.chat("hi", model="no-such-model-anywhere")
        directory = client._embedded.directory if client._embedded else None
        assert directory is not None and directory.is_dir()
    finally:
        await client.close()
    assert not directory.exists(), "close() leaves the private socket directory behind"


async def test_auto_uses_a_running_ratd_when_one_answers(
    upstream: FakeOpenAIUpstream, tmp_path: Path, keys: Path
) -> None:
    config = make_config(
        f'[providers.openai]\nbase_url = "{upstream.base_url_openai}"\n',
        env={"OPENAI_API_KEY": OPENAI_KEY},
    )
    async with running_daemon(config) as daemon:
        client = await ServiceClient.auto(daemon.address, config_path=tmp_path / "unused.toml")
        try:
            assert client.mode == "remote"
            assert client._embedded is None
            assert (await client.chat("hi", model="gpt-4o-mini")).content == TEXT
        finally:
            await client.close()
        assert daemon.service.serving, "closing the client must not stop someone's ratd"


async def test_auto_falls_back_to_embedded_when_no_ratd_answers(
    upstream: FakeOpenAIUpstream, tmp_path: Path, keys: Path
) -> None:
    config = write_config(tmp_path, upstream)
    client = await ServiceClient.auto(
        free_address(), probe_secs=0.5, config_path=config, secrets_path=keys, timeout=60
    )
    try:
        assert client.mode == "embedded"
        assert (await client.chat("hi", model="gpt-4o-mini")).content == TEXT
    finally:
        await client.close()


async def test_sync_client_embedded(
    upstream: FakeOpenAIUpstream, tmp_path: Path, keys: Path
) -> None:
    """The blocking client runs the embedded gateway on its own loop (a thread here, so
    that the test's loop keeps serving the fake upstream)."""
    config = write_config(tmp_path, upstream)

    def use() -> tuple[str, str]:
        client = SyncServiceClient.embedded(config, secrets_path=keys, timeout=60)
        try:
            return client.mode, client.chat("hi", model="gpt-4o-mini").content
        finally:
            client.close()

    assert await asyncio.to_thread(use) == ("embedded", TEXT)


def test_the_client_imports_without_the_server_and_says_what_to_install(
    tmp_path: Path,
) -> None:
    """With ratd unimportable, ``import ratatoskr`` works and ``embedded()`` names the
    extra to install."""
    blocker = tmp_path / "ratd" / "__init__.py"
    blocker.parent.mkdir()
    blocker.write_text("raise ImportError('the server extra is not installed')\n")
    script = (
        "import asyncio, ratatoskr\n"
        "try:\n"
        "    asyncio.run(ratatoskr.ServiceClient.embedded())\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'ratatoskr[server]'" in result.stdout
