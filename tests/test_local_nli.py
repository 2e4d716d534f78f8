"""NLI, zero-shot classification and stance on small randomly initialised
sequence-classification graphs (tests/fakes/hub_models.py), run by real ONNX Runtime
sessions in an in-process ratd. Expected values are recomputed here in numpy from the
graph's weights; the label orders are not the cross-encoder default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from ratatoskr import InvalidInput, ModelNotAvailable, ServiceClient, inference_pb2
from ratd.local.zero_shot import STANCE_HYPOTHESES, stance_label
from tests.fakes.hub_models import TinyModel, make_tokenizer, write_model
from tests.support.daemon import daemon_client, make_config

# Neither the cross-encoder order (contradiction, entailment, neutral) nor alphabetical.
LABELS = {0: "NEUTRAL", 1: "Entailment", 2: "contradiction"}
TOKENIZER = make_tokenizer()


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture
def models(tmp_path: Path) -> dict[str, TinyModel]:
    return {
        "tiny-nli": write_model(tmp_path / "tiny-nli", "nli", id2label=LABELS, seed=1),
        "tiny-nli-2": write_model(
            tmp_path / "tiny-nli-2", "nli", id2label={0: "entailment", 1: "not_entailment"}, seed=2
        ),
        "tiny-nli-nolabels": write_model(
            tmp_path / "tiny-nli-nolabels",
            "nli",
            id2label={0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"},
        ),
    }


@pytest.fixture
async def client(tmp_path: Path, models: dict[str, TinyModel]) -> AsyncIterator[ServiceClient]:
    tables = "".join(
        f'[providers.local.models.{name}]\nkind = "nli"\npath = "{tmp_path / name}"\n'
        for name in models
    )
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
{tables}
[providers.local.models.tiny-nli-templated]
kind = "nli"
path = "{tmp_path / "tiny-nli"}"
hypothesis_template = "we really like {{}}"
"""
    )
    async with daemon_client(config) as c:
        yield c


PAIRS = [
    ("cats love rain", "this is good"),
    ("the weather is terrible", "i like the sun"),
    ("dogs hate snow", "dogs like snow"),
    ("hello world", "the quick brown fox jumps over the lazy dog"),
]


def expected_nli(model: TinyModel, pairs: list[tuple[str, str]]) -> np.ndarray:
    """[pairs, (entailment, contradiction, neutral)] from the model's own label order."""
    probs = softmax(model.expected_logits(TOKENIZER, pairs))
    return probs[:, [1, 2, 0]]


async def test_nli_scores_follow_id2label(
    client: ServiceClient, models: dict[str, TinyModel]
) -> None:
    expected = expected_nli(models["tiny-nli"], PAIRS)
    for (premise, hypothesis), want in zip(PAIRS, expected, strict=True):
        reply = await client.infer_nli(premise, hypothesis, "tiny-nli")
        got = np.array([reply.entailment, reply.contradiction, reply.neutral])
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert abs(got.sum() - 1) < 1e-5
        label = [
            inference_pb2.NLI_LABEL_ENTAILMENT,
            inference_pb2.NLI_LABEL_CONTRADICTION,
            inference_pb2.NLI_LABEL_NEUTRAL,
        ][int(np.argmax(want))]
        assert reply.label == label


async def test_nli_batch_equals_single(client: ServiceClient, models: dict[str, TinyModel]) -> None:
    # Different lengths in one batch: padding must not change any result.
    results = await client.infer_nli_batch(PAIRS * 3, "tiny-nli")
    expected = expected_nli(models["tiny-nli"], PAIRS * 3)
    got = np.array([[r.entailment, r.contradiction, r.neutral] for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-5)


async def test_two_label_model(client: ServiceClient, models: dict[str, TinyModel]) -> None:
    probs = softmax(models["tiny-nli-2"].expected_logits(TOKENIZER, PAIRS[:1]))[0]
    reply = await client.infer_nli(*PAIRS[0], "tiny-nli-2")
    assert reply.entailment == pytest.approx(probs[0], abs=1e-5)
    assert reply.contradiction == pytest.approx(probs[1], abs=1e-5)
    assert reply.neutral == 0


async def test_model_without_nli_labels_is_a_clear_error(client: ServiceClient) -> None:
    with pytest.raises(ModelNotAvailable) as caught:
        await client.infer_nli("a", "b", "tiny-nli-nolabels")
    assert "id2label" in caught.value.message
    # Nothing else is affected.
    assert (await client.infer_nli("cats love rain", "this is good", "tiny-nli")).label


async def test_zero_shot_single_label(client: ServiceClient, models: dict[str, TinyModel]) -> None:
    text, labels = "cats love rain", ["weather", "sport", "politics"]
    reply = await client.classify_zero_shot(text, labels, "tiny-nli")
    logits = models["tiny-nli"].expected_logits(
        TOKENIZER, [(text, f"This example is {label}.") for label in labels]
    )
    want = softmax(logits[:, 1])  # the entailment logit of each label, one softmax across labels
    got = np.array([reply.scores[label] for label in labels])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert reply.top_label == labels[int(np.argmax(want))]
    assert reply.confidence == pytest.approx(want.max(), abs=1e-6)


async def test_zero_shot_multi_label_and_template(
    client: ServiceClient, models: dict[str, TinyModel]
) -> None:
    text, labels = "dogs hate snow", ["weather", "dogs", "tax"]
    reply = await client.classify_zero_shot(
        text, labels, "tiny-nli", multi_label=True, hypothesis_template="it is about {}"
    )
    logits = models["tiny-nli"].expected_logits(
        TOKENIZER, [(text, f"it is about {label}") for label in labels]
    )
    # Each label alone: entailment against contradiction.
    want = softmax(logits[:, [2, 1]], axis=1)[:, 1]
    got = np.array([reply.scores[label] for label in labels])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert reply.top_label == labels[int(np.argmax(want))]


async def test_configured_template_is_the_default(
    client: ServiceClient, models: dict[str, TinyModel]
) -> None:
    text, labels = "cats love rain", ["sun", "snow"]
    reply = await client.classify_zero_shot(text, labels, "tiny-nli-templated")
    logits = models["tiny-nli"].expected_logits(
        TOKENIZER, [(text, f"we really like {label}") for label in labels]
    )
    np.testing.assert_allclose(
        [reply.scores[label] for label in labels], softmax(logits[:, 1]), atol=1e-5
    )


async def test_stance(client: ServiceClient, models: dict[str, TinyModel]) -> None:
    text, target = "we support the climate policy", "climate policy"
    reply = await client.classify_stance(text, target, "tiny-nli")
    claims = [template.replace("{}", target) for template in STANCE_HYPOTHESES.values()]
    want = softmax(models["tiny-nli"].expected_logits(TOKENIZER, [(text, c) for c in claims])[:, 1])
    np.testing.assert_allclose([reply.favor, reply.against, reply.neutral], want, atol=1e-5)
    assert reply.target == target
    assert reply.label == stance_label(*want)


def test_stance_ties_go_favor_then_against_then_neutral() -> None:
    assert stance_label(0.4, 0.4, 0.2) == inference_pb2.STANCE_LABEL_FAVOR
    assert stance_label(1 / 3, 1 / 3, 1 / 3) == inference_pb2.STANCE_LABEL_FAVOR
    assert stance_label(0.2, 0.4, 0.4) == inference_pb2.STANCE_LABEL_AGAINST
    assert stance_label(0.1, 0.2, 0.7) == inference_pb2.STANCE_LABEL_NEUTRAL


async def test_wrong_kind_and_bad_labels_are_invalid(client: ServiceClient) -> None:
    with pytest.raises(InvalidInput, match="embedding model"):
        await client.embed("hello", "tiny-nli")
    with pytest.raises(InvalidInput, match="duplicate"):
        await client.classify_zero_shot("x", ["a", "a"], "tiny-nli")
    with pytest.raises(InvalidInput, match="hypothesis_template"):
        await client.classify_zero_shot("x", ["a", "b"], "tiny-nli", hypothesis_template="no slot")
