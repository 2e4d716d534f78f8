"""Local models in the registry (issue #14 item 4): the built-in catalog and the models
configured under [providers.local.models] are listed with their capabilities, known
dimensions and a price of zero, without loading anything, with no live refresh."""

from __future__ import annotations

from pathlib import Path

from ratatoskr import ServiceClient, models_pb2
from ratd.config import embedded_default_text
from tests.support.daemon import make_config, running_daemon, spawn_ratd
from tests.test_e2e import rat

M = models_pb2


async def test_catalog_and_configured_models_are_in_the_registry(tmp_path: Path) -> None:
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
[providers.local.models.my-embedder]
kind = "embedding"
path = "{tmp_path / "my-embedder"}"
max_seq_length = 128
"""
    )
    async with running_daemon(config) as daemon:
        client = await ServiceClient.connect(daemon.address, timeout=30)
        try:
            listed = {info.id: info for info in await client.list_models("local")}
            assert {"all-MiniLM-L6-v2", "nli-deberta-v3-small", "my-embedder"} <= set(listed)
            minilm = listed["all-MiniLM-L6-v2"]
            assert minilm.provider == "local" and minilm.dimensions == 384
            assert {M.MODEL_CAPABILITY_EMBED, M.MODEL_CAPABILITY_TOKEN_COUNTING} <= set(
                minilm.capabilities
            )
            assert M.MODEL_CAPABILITY_NLI not in minilm.capabilities
            nli = listed["nli-deberta-v3-small"]
            assert {
                M.MODEL_CAPABILITY_NLI,
                M.MODEL_CAPABILITY_CLASSIFY,
                M.MODEL_CAPABILITY_STANCE,
                M.MODEL_CAPABILITY_TOKEN_COUNTING,
                M.MODEL_CAPABILITY_LOCAL_INFERENCE,
            } <= set(nli.capabilities)
            assert listed["my-embedder"].context_window == 128
            md = await client.model_metadata("all-MiniLM-L6-v2")
            assert md is not None and md.info.provider == "local"
            assert md.pricing.prompt_cost_per_mtok == 0
            assert md.pricing.HasField("prompt_cost_per_mtok")
            assert md.pricing.completion_cost_per_mtok == 0
            status = await client.model_status("all-MiniLM-L6-v2")
            assert status.status != M.MODEL_STATUS_READY, "describing loads nothing"
        finally:
            await client.close()


async def test_rat_models_and_metadata_on_the_default_config(tmp_path: Path) -> None:
    text = (
        embedded_default_text()
        .replace('address = "127.0.0.1:9741"', 'address = "127.0.0.1:0"')
        .replace('metrics_address = "127.0.0.1:9742"', 'metrics_address = "127.0.0.1:0"')
    )
    with spawn_ratd(text, tmp_path) as ratd:
        code, out, err = await rat(ratd, "models")
        assert code == 0, err
        assert "all-MiniLM-L6-v2" in out and "nli-deberta-v3-small" in out
        code, out, err = await rat(ratd, "metadata", "all-MiniLM-L6-v2")
        assert code == 0, err
        assert "local" in out and "384" in out
