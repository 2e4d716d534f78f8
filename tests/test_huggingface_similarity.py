"""Zero-shot classification and stance with a sentence-transformers model on the
HuggingFace Inference API: its pipeline is sentence-similarity (a list of cosine scores,
no labels), so ratd asks that pipeline for the similarity of the text to each label and
normalises the scores. Real in-process ratd, fake Inference API on loopback."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from ratatoskr import ServiceClient
from tests.fakes.huggingface_upstream import FakeHuggingFace, similarity
from tests.support.daemon import daemon_client, make_config

KEY = "hf_TestTokenSimilarity0123456789"
ST = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
TEXT = "The match went to penalties after extra time."
LABELS = ["sport", "politics", "cooking"]


@pytest.fixture
async def hf() -> AsyncIterator[FakeHuggingFace]:
    async with FakeHuggingFace(api_key=KEY) as fake:
        yield fake


@pytest.fixture
async def client(hf: FakeHuggingFace) -> AsyncIterator[ServiceClient]:
    config = make_config(
        f'[providers.huggingface]\nbase_url = "{hf.base_url}"\n', env={"HF_API_KEY": KEY}
    )
    async with daemon_client(config) as c:
        yield c


def softmax(values: list[float], scale: float) -> list[float]:
    exps = [math.exp(scale * v) for v in values]
    return [e / sum(exps) for e in exps]


async def test_zero_shot_single_label_is_a_scaled_softmax_of_similarities(
    client: ServiceClient, hf: FakeHuggingFace
) -> None:
    reply = await client.classify_zero_shot(TEXT, LABELS, f"huggingface:{ST}")
    cosines = [similarity(TEXT, label) for label in LABELS]
    expected = softmax(cosines, 20.0)
    assert list(reply.scores) == LABELS or set(reply.scores) == set(LABELS)
    for label, value in zip(LABELS, expected, strict=True):
        assert reply.scores[label] == pytest.approx(value, rel=1e-5)
    best = LABELS[cosines.index(max(cosines))]
    assert reply.top_label == best
    assert reply.confidence == pytest.approx(max(expected), rel=1e-5)
    sent = hf.last("/pipeline/sentence-similarity")
    assert sent.json == {"inputs": {"source_sentence": TEXT, "sentences": LABELS}}


async def test_zero_shot_multi_label_is_each_similarity_clipped(
    client: ServiceClient, hf: FakeHuggingFace
) -> None:
    reply = await client.classify_zero_shot(TEXT, LABELS, f"huggingface:{ST}", multi_label=True)
    for label in LABELS:
        assert reply.scores[label] == pytest.approx(
            min(1.0, max(0.0, similarity(TEXT, label))), abs=1e-6
        )


async def test_a_model_found_to_be_sentence_similarity_is_asked_that_way_next_time(
    client: ServiceClient, hf: FakeHuggingFace
) -> None:
    """A model whose name does not say so answers the zero-shot payload with bare scores:
    ratd asks its sentence-similarity pipeline instead, and remembers the model."""
    model = "someone/multilingual-similarity"
    first = await client.classify_zero_shot(TEXT, LABELS, f"huggingface:{model}")
    again = await client.classify_zero_shot(
        "Parliament passed the budget.", LABELS, f"huggingface:{model}"
    )
    assert first.top_label in LABELS and again.top_label in LABELS
    paths = [r.path for r in hf.requests]
    assert paths.count(f"/models/{model}") == 1
    assert paths.count(f"/models/{model}/pipeline/sentence-similarity") == 2
    # A sentence-transformers/ model goes to the pipeline at once.
    await client.classify_zero_shot(TEXT, LABELS, f"huggingface:{ST}")
    assert [r.path for r in hf.requests][-1] == f"/models/{ST}/pipeline/sentence-similarity"


async def test_stance_with_a_similarity_model(client: ServiceClient, hf: FakeHuggingFace) -> None:
    reply = await client.classify_stance(TEXT, "penalty shootouts", f"huggingface:{ST}")
    total = reply.favor + reply.against + reply.neutral
    assert total == pytest.approx(1.0, abs=1e-5)
    sentences = hf.last("/pipeline/sentence-similarity").json["inputs"]["sentences"]
    assert sentences == [
        "This text is in favor of penalty shootouts.",
        "This text is against penalty shootouts.",
        "This text is neutral toward penalty shootouts.",
    ]
