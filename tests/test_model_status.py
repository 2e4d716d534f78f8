"""ModelStatus of remote models says what a call would meet: UNAVAILABLE with a reason
when the provider has no key it needs or its model list could not be fetched, else
AVAILABLE naming the provider. In-process ratd, fake OpenAI upstream on loopback."""

from __future__ import annotations

import socket

from ratatoskr import models_pb2
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.daemon import daemon_client, make_config


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_available_names_the_provider(upstream: FakeOpenAIUpstream) -> None:
    config = make_config(
        f'[providers.openai]\nbase_url = "{upstream.base_url_openai}"\n',
        env={"OPENAI_API_KEY": "sk-status-0001"},
    )
    async with daemon_client(config) as client:
        status = await client.model_status("gpt-4o-mini")
    assert status.status == models_pb2.MODEL_STATUS_AVAILABLE
    assert "openai" in status.reason


async def test_a_provider_without_its_key_is_unavailable(upstream: FakeOpenAIUpstream) -> None:
    config = make_config(f'[providers.openai]\nbase_url = "{upstream.base_url_openai}"\n')
    async with daemon_client(config) as client:
        status = await client.model_status("gpt-4o-mini")
    assert status.status == models_pb2.MODEL_STATUS_UNAVAILABLE
    assert "openai" in status.reason and "no API key" in status.reason
    assert "OPENAI_API_KEY" in status.reason
    assert "sk-" not in status.reason


async def test_a_failed_live_refresh_is_unavailable_with_its_error() -> None:
    port = _closed_port()
    config = make_config(
        f"""
[providers.openai]
base_url = "http://127.0.0.1:{port}/v1"
[registry]
live = true
refresh_secs = 0
cache_path = ""
""",
        env={"OPENAI_API_KEY": "sk-status-0002"},
    )
    async with daemon_client(config) as client:
        # FetchModelMetadata awaits a refresh of the provider's list (it fails); the seed
        # still answers the metadata.
        assert await client.fetch_model_metadata("gpt-4o-mini") is not None
        status = await client.model_status("gpt-4o-mini")
    assert status.status == models_pb2.MODEL_STATUS_UNAVAILABLE
    assert "openai" in status.reason
    assert "model list" in status.reason
    assert f"127.0.0.1:{port}" in status.reason  # the error message is kept
