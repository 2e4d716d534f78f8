"""Batcher telemetry on the metrics endpoint after real batched calls: queue depth while
inputs wait, batch sizes and padded batch tokens, and failed inputs by kind. The model is
a generated embedding graph in a real ONNX Runtime session inside an in-process ratd."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ratatoskr import InvalidInput, Overloaded, ServiceClient
from ratd.local.provider import LocalProvider
from ratd.server import Daemon
from tests.fakes.hub_models import write_model
from tests.support.daemon import make_config, running_daemon

MODEL = "batch-metrics-tiny"  # a name no other test uses: the registry is per process
WAIT = 60.0


async def scrape(daemon: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the /metrics endpoint, keyed by name and labels."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{daemon.metrics.bound}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset({"model": MODEL, **labels}.items())), 0.0)


async def test_batch_metrics_after_real_batched_calls(tmp_path: Path) -> None:
    write_model(tmp_path / MODEL, "embedding")
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
max_queue = 32
max_batch_size = 8
max_wait_ms = 0
[providers.local.models.{MODEL}]
kind = "embedding"
path = "{tmp_path / MODEL}"
"""
    )
    async with running_daemon(config) as daemon:
        client = await ServiceClient.connect(daemon.address, timeout=WAIT)
        release = threading.Event()
        try:
            await client.load_model(MODEL)
            local = daemon.gateway.providers["local"]
            assert isinstance(local, LocalProvider)
            model = local.manager.entries[MODEL].model
            assert model is not None
            texts = [f"text number {i:02d} for the batch" for i in range(20)]
            lengths = {encoded.length for encoded in model.encode_texts(texts)}
            assert len(lengths) == 1, "one length: padded tokens are rows x that length"
            (length,) = lengths
            before = await scrape(daemon)

            # Every inference worker busy: the first batch of 8 waits for a worker and
            # the other 12 texts wait in the queue.
            for _ in range(8):
                local.inference_pool.submit(release.wait, WAIT)
            call = asyncio.create_task(client.embed_batch(texts, MODEL))
            loop = asyncio.get_running_loop()
            end = loop.time() + WAIT
            while value(await scrape(daemon), "ratatoskr_batch_queue_depth") != 12:
                assert loop.time() < end, "the queue never held the 12 waiting texts"
                await asyncio.sleep(0.02)
            with pytest.raises(Overloaded):  # 12 queued + 21 > 32
                await client.embed_batch([f"more {i}" for i in range(21)], MODEL)
            with pytest.raises(InvalidInput):  # more than the whole queue
                await client.embed_batch([f"huge {i}" for i in range(33)], MODEL)
            release.set()
            assert len(await asyncio.wait_for(call, WAIT)) == 20
        finally:
            release.set()
            await client.close()
        after = await scrape(daemon)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # 20 texts of one length in batches of at most 8: 8, 8, 4.
    assert delta("ratatoskr_batch_size_count") == 3
    assert delta("ratatoskr_batch_size_sum") == 20
    assert delta("ratatoskr_batch_size_bucket", le="4.0") == 1
    assert delta("ratatoskr_batch_size_bucket", le="8.0") == 3
    assert delta("ratatoskr_batch_tokens_count") == 3
    assert delta("ratatoskr_batch_tokens_sum") == 20 * length
    assert value(after, "ratatoskr_batch_queue_depth") == 0
    assert delta("ratatoskr_batch_failures_total", kind="overloaded") == 21
    assert delta("ratatoskr_batch_failures_total", kind="too_large") == 33
    assert delta("ratatoskr_batch_failures_total", kind="inference") == 0
