"""Bad input to the local inference RPCs: clear statuses, and the daemon stays up. Runs on
the default all-MiniLM-L6-v2 from its PyPI package and a generated NLI graph (no
../shared needed)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ratatoskr import InvalidInput, ModelNotFound, Overloaded, ServiceClient
from ratd.local.provider import LocalProvider
from tests.fakes.hub_models import write_model
from tests.support.daemon import daemon_client, make_config, running_daemon

MEGABYTE_TEXT = ("lorem ipsum dolor sit amet " * 40_000)[: 1024 * 1024]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ServiceClient]:
    write_model(tmp_path / "tiny-nli", "nli")
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
max_queue = 64
[providers.local.models.tiny-nli]
kind = "nli"
path = "{tmp_path / "tiny-nli"}"
"""
    )
    async with daemon_client(config) as c:
        yield c
        assert (await c.health()).healthy, "the daemon must stay up after bad input"
        assert (await c.embed("still serving", "all-MiniLM-L6-v2")).dimensions == 384


@pytest.mark.parametrize("text", ["", "   \n\t"])
async def test_empty_text(client: ServiceClient, text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.embed(text, "all-MiniLM-L6-v2")
    assert caught.value.field == "text"
    with pytest.raises(InvalidInput) as caught:
        await client.embed_batch(["fine", text], "all-MiniLM-L6-v2")
    assert caught.value.field == "texts[1]"
    with pytest.raises(InvalidInput):
        await client.infer_nli(text, "hypothesis", "tiny-nli")
    with pytest.raises(InvalidInput):
        await client.classify_zero_shot(text, ["a"], "tiny-nli")


async def test_one_megabyte_text_is_truncated_not_refused(client: ServiceClient) -> None:
    reply = await client.embed(MEGABYTE_TEXT, "all-MiniLM-L6-v2")
    assert reply.dimensions == 384
    nli = await client.infer_nli(MEGABYTE_TEXT, "dogs like snow", "tiny-nli")
    assert abs(nli.entailment + nli.contradiction + nli.neutral - 1) < 1e-5
    assert await client.count_tokens(MEGABYTE_TEXT, "all-MiniLM-L6-v2") > 200_000


async def test_ten_thousand_texts_in_one_batch(client: ServiceClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.embed_batch([f"text {i}" for i in range(10_000)], "all-MiniLM-L6-v2")
    assert "limit" in caught.value.message and caught.value.field == "texts"


async def test_unknown_model(client: ServiceClient) -> None:
    with pytest.raises(ModelNotFound, match="no local model named"):
        await client.embed("hello", "no-such-embedder")
    with pytest.raises(ModelNotFound):
        await client.infer_nli("a", "b", "no-such-nli-model")
    with pytest.raises(ModelNotFound):
        await client.load_model("no-such-embedder")


async def test_no_labels(client: ServiceClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.classify_zero_shot("some text", [], "tiny-nli")
    assert caught.value.field == "labels"


async def test_full_queue_is_resource_exhausted(tmp_path: Path) -> None:
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
max_queue = 64
"""
    )
    async with running_daemon(config) as daemon:
        client = await ServiceClient.connect(daemon.address, timeout=60)
        try:
            await client.load_model("all-MiniLM-L6-v2")
            local = daemon.gateway.providers["local"]
            assert isinstance(local, LocalProvider)
            # Keep every inference worker busy, so that queued texts stay queued.
            release = threading.Event()
            for _ in range(8):
                local.inference_pool.submit(release.wait, 60)
            texts = [[f"text {i} {j}" for j in range(40)] for i in range(3)]
            tasks = [asyncio.create_task(client.embed_batch(t, "all-MiniLM-L6-v2")) for t in texts]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=60)
            release.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            refused = [r for r in results if isinstance(r, Exception)]
            # 40 + 40 texts > 64: whichever came second or third was refused at once.
            assert refused and all(isinstance(r, Overloaded) for r in refused)
            assert "max_queue" in str(refused[0])
            assert not isinstance(results[0], Exception) or len(refused) >= 2
            with pytest.raises(InvalidInput, match="split it"):
                await client.embed_batch([f"text {j}" for j in range(65)], "all-MiniLM-L6-v2")
            assert (await client.health()).healthy
        finally:
            await client.close()
