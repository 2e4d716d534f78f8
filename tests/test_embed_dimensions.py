"""``dimensions`` on Embed/EmbedBatch: sent as OpenAI's ``dimensions`` (OpenAI and
OpenRouter, on the fake upstream), Gemini's ``outputDimensionality`` (fake Gemini),
Matryoshka truncation plus re-normalisation for local models marked as supporting it
(the real all-MiniLM-L6-v2 in ONNX Runtime), INVALID_ARGUMENT naming the field
everywhere else; and a cached native embedding never answers a shorter request."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ratatoskr import InvalidInput
from tests.fakes import gemini_upstream as fg
from tests.fakes.gemini_upstream import FakeGeminiUpstream
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import FakeOpenAIUpstream, fake_embedding
from tests.support.compat import compat_client
from tests.support.daemon import daemon_client, make_config

pytestmark = pytest.mark.timeout(120)


def unit(values: list[float]) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float64)
    return vector / np.linalg.norm(vector)


async def test_openai_sends_dimensions_and_caches_each_length_apart(
    upstream: FakeOpenAIUpstream,
) -> None:
    async with compat_client(upstream) as client:
        native = await client.embed("the world tree", "text-embedding-3-small")
        short = await client.embed("the world tree", "text-embedding-3-small", dimensions=256)
        again = await client.embed("the world tree", "text-embedding-3-small", dimensions=256)
        batch = await client.embed_batch(["a", "b"], "text-embedding-3-large", dimensions=64)
    assert native.dimensions == 1536 and len(native.values) == 1536
    assert short.dimensions == 256
    assert list(short.values) == fake_embedding("the world tree", 256)
    assert list(again.values) == list(short.values)
    sent = [r.json for r in upstream.requests if r.path.endswith("/embeddings")]
    # The native answer was cached; the 256-long one was not served from it, and the
    # repeated 256-long request was.
    assert [body.get("dimensions") for body in sent] == [None, 256, 64]
    assert [e.dimensions for e in batch] == [64, 64]


async def test_openai_ada_and_bad_values_are_refused_naming_the_field(
    upstream: FakeOpenAIUpstream,
) -> None:
    async with compat_client(upstream) as client:
        with pytest.raises(InvalidInput) as refused:
            await client.embed("x", "text-embedding-ada-002", dimensions=256)
        assert refused.value.field == "dimensions"
        for bad in (0, 70000):
            with pytest.raises(InvalidInput) as invalid:
                await client.embed("x", "text-embedding-3-small", dimensions=bad)
            assert invalid.value.field == "dimensions"
    assert not [r for r in upstream.requests if r.path.endswith("/embeddings")]


async def test_openrouter_embeddings(upstream: FakeOpenAIUpstream) -> None:
    async with compat_client(upstream) as client:
        reply = await client.embed("ash", "openrouter:openai/text-embedding-3-small")
        short = await client.embed_batch(
            ["ash", "elm"], "openai/text-embedding-3-small", dimensions=32
        )
    assert list(reply.values) == fake_embedding("ash", 1536)
    assert [list(e.values) for e in short] == [fake_embedding(t, 32) for t in ("ash", "elm")]
    sent = upstream.last("openrouter", "/embeddings")
    assert sent.path == "/api/v1/embeddings"
    assert sent.json["dimensions"] == 32 and sent.json["model"] == "openai/text-embedding-3-small"


async def test_gemini_sends_output_dimensionality() -> None:
    async with FakeGeminiUpstream(api_key="AIzaSyTest-Ratatoskr-0123456789abcdefghi") as fake:
        text = f'[providers.google]\nbase_url = "{fake.base_url}"\n'
        config = make_config(
            text, env={"GOOGLE_API_KEY": "AIzaSyTest-Ratatoskr-0123456789abcdefghi"}
        )
        async with daemon_client(config) as client:
            one = await client.embed("ash", "gemini-embedding-001", dimensions=4)
            body = fake.last(":embedContent").json
            many = await client.embed_batch(["a", "b"], "gemini-embedding-001", dimensions=3)
            batch = fake.last(":batchEmbedContents").json
    assert body["outputDimensionality"] == 4
    assert list(one.values) == pytest.approx(fg.fake_embedding("ash")[:4])
    assert [r["outputDimensionality"] for r in batch["requests"]] == [3, 3]
    assert [e.dimensions for e in many] == [3, 3]


async def test_ollama_refuses_dimensions() -> None:
    async with FakeOllama() as ollama:
        config = make_config(f'[providers.ollama]\nbase_url = "{ollama.base_url}"\n')
        async with daemon_client(config) as client:
            with pytest.raises(InvalidInput, match="dimensions") as refused:
                await client.embed("x", "ollama:nomic-embed-text", dimensions=64)
    assert refused.value.field == "dimensions"


LOCAL = "[providers.local]\n"
MATRYOSHKA = LOCAL + '[providers.local.models."all-MiniLM-L6-v2"]\nmatryoshka = true\n'


async def test_local_model_not_marked_matryoshka_refuses() -> None:
    async with daemon_client(make_config(LOCAL)) as client:
        with pytest.raises(InvalidInput, match="Matryoshka") as refused:
            await client.embed("hello", "all-MiniLM-L6-v2", dimensions=128)
        assert refused.value.field == "dimensions"
        assert (await client.embed("hello", "all-MiniLM-L6-v2")).dimensions == 384


async def test_local_matryoshka_truncates_and_renormalises() -> None:
    texts = ["hello", "The quick brown fox jumps over the lazy dog."]
    async with daemon_client(make_config(MATRYOSHKA)) as client:
        full = await client.embed_batch(texts, "all-MiniLM-L6-v2")
        short = await client.embed_batch(texts, "all-MiniLM-L6-v2", dimensions=128)
        with pytest.raises(InvalidInput) as too_long:
            await client.embed("hello", "all-MiniLM-L6-v2", dimensions=512)
    assert too_long.value.field == "dimensions"
    for whole, cut in zip(full, short, strict=True):
        assert cut.dimensions == 128 and whole.dimensions == 384
        values = np.asarray(cut.values, dtype=np.float64)
        assert math.isclose(float(np.linalg.norm(values)), 1.0, rel_tol=1e-5)
        np.testing.assert_allclose(values, unit(list(whole.values)[:128]), atol=1e-6)
