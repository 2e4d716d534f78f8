"""Model and tokenizer files from the HuggingFace Hub, through huggingface_hub against a
fake Hub on loopback (tests/fakes/hub.py): download on first use into the cache, the
DownloadModel progress stream, sha256 verification, and air-gapped use of the cache."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from ratatoskr import ModelNotAvailable, ModelNotFound, models_pb2
from ratd.config import LocalConfig, LocalModelConfig
from ratd.local.catalog import BUILTIN, Catalog
from tests.fakes.hub import FakeHub
from tests.fakes.hub_models import TinyModel, make_tokenizer, write_model
from tests.support.daemon import daemon_client, make_config

REPO = "acme/tiny-embedder"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[FakeHub]:
    fake = await FakeHub().start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def tiny(tmp_path: Path, hub: FakeHub) -> TinyModel:
    # Laid out like a sentence-transformers repository with its ONNX export in onnx/.
    model = write_model(
        tmp_path / "repo", "embedding", onnx_name="onnx/model.onnx", ballast_rows=20_000
    )
    hub.add(REPO, tmp_path / "repo")
    return model


def config(tmp_path: Path, endpoint: str, *, downloads: bool = True, revision: str = "") -> str:
    return f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_cache_dir = "{tmp_path / "hub-cache"}"
hub_endpoint = "{endpoint}"
hub_downloads = {"true" if downloads else "false"}
[providers.local.models.tiny]
kind = "embedding"
hub_repo = "{REPO}"
revision = "{revision}"
"""


async def test_first_use_downloads_then_the_cache_serves_offline(
    tmp_path: Path, hub: FakeHub, tiny: TinyModel
) -> None:
    expected = tiny.expected_embedding(make_tokenizer(), "hello world")
    async with daemon_client(make_config(config(tmp_path, hub.endpoint))) as client:
        status = await client.model_status("tiny")
        assert status.status == models_pb2.MODEL_STATUS_AVAILABLE
        assert "Hub" in status.reason
        reply = await client.embed("hello world", REPO)  # the Hub id is an alias
        np.testing.assert_allclose(reply.values, expected, atol=1e-5)
        (loaded,) = await client.list_loaded()
        assert loaded.source.startswith(f"hub {REPO}@0123456789ab")
    assert "/acme/tiny-embedder/resolve/main/onnx/model.onnx" in hub.downloads()
    fetched = len(hub.downloads())
    # Air-gapped: downloads off and the Hub unreachable; the cache is enough.
    async with daemon_client(
        make_config(config(tmp_path, "http://127.0.0.1:9", downloads=False))
    ) as client:
        reply = await client.embed("hello world", "tiny")
        np.testing.assert_allclose(reply.values, expected, atol=1e-5)
    assert len(hub.downloads()) == fetched


async def test_download_rpc_reports_progress(tmp_path: Path, hub: FakeHub, tiny: TinyModel) -> None:
    async with daemon_client(
        make_config(config(tmp_path, hub.endpoint, revision="main"))
    ) as client:
        events = [event async for event in client.download_model("tiny")]
        assert events[-1].done
        path = Path(events[-1].path)
        assert (path / "onnx" / "model.onnx").is_file() and (path / "tokenizer.json").is_file()
        progress = [e for e in events if e.file == "onnx/model.onnx" and not e.done]
        size = (tmp_path / "repo" / "onnx" / "model.onnx").stat().st_size
        assert progress and progress[-1].downloaded_bytes == size
        assert all(e.total_bytes == size for e in progress)
        assert [e.downloaded_bytes for e in progress] == sorted(
            e.downloaded_bytes for e in progress
        )
        # Downloaded but not loaded; the next request loads from the cache.
        assert await client.list_loaded() == []
        before = len(hub.downloads())
        assert (await client.embed("hello", "tiny")).dimensions == 16
        assert len(hub.downloads()) == before


async def test_sha256_mismatch_is_refused(tmp_path: Path, hub: FakeHub, tiny: TinyModel) -> None:
    hub.repos[REPO].corrupt_sha256.add("onnx/model.onnx")
    async with daemon_client(make_config(config(tmp_path, hub.endpoint))) as client:
        with pytest.raises(ModelNotAvailable, match="sha256 mismatch"):
            await client.embed("hello", "tiny")
        with pytest.raises(ModelNotAvailable, match="sha256 mismatch"):
            async for _ in client.download_model("tiny"):
                pass
        assert (await client.health()).healthy


async def test_unknown_repository_or_revision(tmp_path: Path, hub: FakeHub) -> None:
    async with daemon_client(make_config(config(tmp_path, hub.endpoint, revision="v9"))) as client:
        with pytest.raises(ModelNotFound, match="no repository"):
            async for _ in client.download_model("tiny"):
                pass
        with pytest.raises(ModelNotFound):
            async for _ in client.download_model("not-a-configured-model"):
                pass


async def test_no_files_and_downloads_off_is_unavailable(
    tmp_path: Path, hub: FakeHub, tiny: TinyModel
) -> None:
    async with daemon_client(
        make_config(config(tmp_path, hub.endpoint, downloads=False))
    ) as client:
        status = await client.model_status("tiny")
        assert status.status == models_pb2.MODEL_STATUS_UNAVAILABLE
        assert "downloads are off" in status.reason
        with pytest.raises(ModelNotAvailable, match="rat download tiny"):
            await client.embed("hello", "tiny")
    assert hub.downloads() == []


async def test_tokenizer_from_the_hub(tmp_path: Path, hub: FakeHub, shared_dir: Path) -> None:
    repo = tmp_path / "claude-tokenizer"
    repo.mkdir()
    (repo / "tokenizer.json").write_bytes(
        (shared_dir / "assets" / "tokenizers" / "claude-legacy.tokenizer.json").read_bytes()
    )
    hub.add("Xenova/claude-tokenizer", repo)
    async with daemon_client(make_config(config(tmp_path, hub.endpoint))) as client:
        tokens = await client.tokenize("Hello, Claude!", "claude-opus-4")
        assert "".join(t.text for t in tokens) == "Hello, Claude!"
    assert "/Xenova/claude-tokenizer/resolve/main/tokenizer.json" in hub.downloads()


# -- the built-ins' pins ------------------------------------------------------------------------


async def test_built_in_pins_are_requested_and_their_sha256_enforced(
    tmp_path: Path, hub: FakeHub, tiny: TinyModel
) -> None:
    """A built-in model downloads its pinned commit (never main), and a file whose sha256 is
    not the pinned one is refused, even when the Hub's own metadata vouches for it (the
    fake Hub here serves other files under the real repository's name and commit)."""
    spec = BUILTIN["bge-small-en-v1.5"]
    hub.add(spec.hub_repo, tmp_path / "repo", commit=spec.revision)
    async with daemon_client(make_config(config(tmp_path, hub.endpoint))) as client:
        with pytest.raises(ModelNotAvailable, match="sha256 mismatch") as caught:
            await client.embed("hello", "bge-small-en-v1.5")
        assert spec.sha256["onnx/model.onnx"] in str(caught.value)
        assert (await client.health()).healthy
    paths = [path for _, path in hub.requests]
    assert f"/api/models/{spec.hub_repo}/revision/{spec.revision}" in paths
    fetched = [path for path in paths if "/resolve/" in path]
    assert fetched and all(f"/resolve/{spec.revision}/" in path for path in fetched)
    assert not any("/main" in path for path in paths)


async def test_configured_pins_accept_the_right_file_and_refuse_another(
    tmp_path: Path, hub: FakeHub, tiny: TinyModel
) -> None:
    """A configured revision is the one requested; a configured sha256 is checked instead
    of the Hub's LFS sha256 (which, here, is honest)."""
    onnx = tmp_path / "repo" / "onnx" / "model.onnx"
    right = hashlib.sha256(onnx.read_bytes()).hexdigest()
    commit = hub.repos[REPO].commit

    def pinned(digest: str, models: str) -> str:
        return config(tmp_path / models, hub.endpoint, revision=commit) + (
            f'sha256 = {{ "onnx/model.onnx" = "{digest}" }}\n'
        )

    async with daemon_client(make_config(pinned(right, "a"))) as client:
        assert (await client.embed("hello", "tiny")).dimensions == 16
    assert f"/api/models/{REPO}/revision/{commit}" in [path for _, path in hub.requests]
    assert all(f"/resolve/{commit}/" in path for path in hub.downloads())
    async with daemon_client(make_config(pinned("ab" * 32, "b"))) as client:
        with pytest.raises(ModelNotAvailable, match="sha256 mismatch"):
            await client.embed("hello", "tiny")


def test_a_new_location_drops_the_built_in_pins() -> None:
    """Pointing a built-in name at another repository or directory drops its revision and
    checksums (they name the built-in's files), unless the config gives its own."""
    moved = Catalog(LocalConfig(models={"bge-small-en-v1.5": LocalModelConfig(hub_repo=REPO)}))
    spec = moved.get("bge-small-en-v1.5")
    assert spec is not None and spec.hub_repo == REPO
    assert spec.revision == "" and dict(spec.sha256) == {}
    assert spec.pooling == "cls"  # what the model is stays
    kept = Catalog(LocalConfig(models={"bge-small-en-v1.5": LocalModelConfig(pooling="mean")})).get(
        "bge-small-en-v1.5"
    )
    assert kept is not None and kept.revision == BUILTIN["bge-small-en-v1.5"].revision
    assert dict(kept.sha256) == dict(BUILTIN["bge-small-en-v1.5"].sha256)
