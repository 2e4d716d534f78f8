"""The HuggingFace Inference API provider through a real in-process ratd and real HTTP to a
fake Inference API on loopback: embeddings (sentence- and token-level), NLI, zero-shot,
stance, and every error class, checked on what the fake received."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from ratatoskr import (
    AuthenticationFailed,
    InvalidInput,
    ModelNotAvailable,
    ModelNotFound,
    RatatoskrError,
    RateLimited,
    ServiceClient,
    inference_pb2,
)
from ratd import errors
from ratd.config import Config, ProviderConfig
from ratd.providers.huggingface import (
    HuggingFaceProvider,
    parse_feature_extraction,
    parse_nli,
    parse_zero_shot,
    stance_label,
)
from ratd.secrets import Secret
from tests.fakes import conformance as conf
from tests.fakes.huggingface_upstream import (
    INVALID_TOKEN,
    LOADING_SECONDS,
    FakeHuggingFace,
    nli_scores,
    sentence_vector,
    token_vectors,
    zero_shot_scores,
)
from tests.support.daemon import daemon_client, make_config
from tests.support.replay import load_fixture, replay

KEY = "hf_TestTokenRatatoskr0123456789"
ST_MODEL = "huggingface:sentence-transformers/all-MiniLM-L6-v2"
NLI_MODEL = "huggingface:cross-encoder/nli-deberta-v3-base"
MNLI_MODEL = "huggingface:FacebookAI/roberta-large-mnli"
ZS_MODEL = "huggingface:facebook/bart-large-mnli"


def config_for(base_url: str, *, key: str | None = KEY, extra: str = "") -> Config:
    env = {"HF_API_KEY": key} if key else {}
    return make_config(f'[providers.huggingface]\nbase_url = "{base_url}"\n{extra}', env=env)


@pytest.fixture
async def hf() -> AsyncIterator[FakeHuggingFace]:
    async with FakeHuggingFace(api_key=KEY) as fake:
        yield fake


@pytest.fixture
async def client(hf: FakeHuggingFace) -> AsyncIterator[ServiceClient]:
    async with daemon_client(config_for(hf.base_url)) as c:
        yield c


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- embeddings --------------------------------------------------------------------------------


async def test_embed_one_text(client: ServiceClient, hf: FakeHuggingFace) -> None:
    reply = await client.embed("That is a happy person", model=ST_MODEL)
    assert list(reply.values) == pytest.approx(sentence_vector("That is a happy person"), abs=1e-6)
    assert reply.dimensions == len(reply.values) == 12
    assert reply.model == "sentence-transformers/all-MiniLM-L6-v2"
    request = hf.last()
    assert (
        request.path == "/models/sentence-transformers/all-MiniLM-L6-v2/pipeline/feature-extraction"
    )
    assert request.json == {"inputs": "That is a happy person"}
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert "X-Wait-For-Model" not in request.headers


async def test_embed_batch_keeps_order(client: ServiceClient, hf: FakeHuggingFace) -> None:
    texts = ["first text", "second text", "third text"]
    embeddings = await client.embed_batch(texts, model=ST_MODEL)
    assert [list(e.values) for e in embeddings] == [
        pytest.approx(sentence_vector(t), abs=1e-6) for t in texts
    ]
    assert hf.last().json == {"inputs": texts}


async def test_big_batches_go_in_chunks(client: ServiceClient, hf: FakeHuggingFace) -> None:
    texts = [f"text number {i}" for i in range(150)]
    embeddings = await client.embed_batch(texts, model=ST_MODEL)
    assert [list(e.values) for e in embeddings] == [
        pytest.approx(sentence_vector(t), abs=1e-6) for t in texts
    ]
    sizes = sorted(len(r.json["inputs"]) for r in hf.requests)
    assert sizes == [22, 64, 64]


@pytest.mark.parametrize("texts", [["hello"], ["hello", "That is a happy person"]])
async def test_token_level_outputs_are_mean_pooled(
    client: ServiceClient, hf: FakeHuggingFace, texts: list[str]
) -> None:
    embeddings = await client.embed_batch(texts, model="huggingface:facebook/bart-base")
    for text, embedding in zip(texts, embeddings, strict=True):
        expected = np.mean(np.asarray(token_vectors(text)), axis=0)
        assert list(embedding.values) == pytest.approx(expected.tolist(), abs=1e-5)
        assert embedding.dimensions == 12
    sent = hf.last().json["inputs"]
    assert sent == (texts[0] if len(texts) == 1 else texts)


def test_pooling_shapes() -> None:
    vector = [1.0, 2.0]
    tokens = [[1.0, 2.0], [3.0, 6.0]]
    assert parse_feature_extraction(vector, 1, batched=False) == [vector]
    assert parse_feature_extraction([tokens], 1, batched=False) == [[2.0, 4.0]]
    assert parse_feature_extraction(tokens, 1, batched=False) == [[2.0, 4.0]]
    assert parse_feature_extraction([vector, vector], 2, batched=True) == [vector, vector]
    assert parse_feature_extraction([[tokens], [tokens]], 2, batched=True) == [[2.0, 4.0]] * 2
    with pytest.raises(errors.UpstreamProtocolError):
        parse_feature_extraction([vector], 2, batched=True)
    with pytest.raises(errors.UpstreamProtocolError):
        parse_feature_extraction([[[[1.0]]], [[[1.0]]]], 1, batched=False)
    with pytest.raises(errors.UpstreamProtocolError):
        parse_feature_extraction({"error": "x"}, 1, batched=False)


# -- NLI ---------------------------------------------------------------------------------------

PAIRS = [
    ("A man is eating pizza in the park", "A man is eating pizza"),  # entailment
    ("The shop is open today", "The shop is not open today"),  # contradiction
    ("A woman reads a book", "The book is about ships"),  # neutral
]
LABELS = [
    inference_pb2.NLI_LABEL_ENTAILMENT,
    inference_pb2.NLI_LABEL_CONTRADICTION,
    inference_pb2.NLI_LABEL_NEUTRAL,
]


@pytest.mark.parametrize("model", [NLI_MODEL, MNLI_MODEL])
async def test_nli_labels_mapped_by_name(
    client: ServiceClient, hf: FakeHuggingFace, model: str
) -> None:
    premise, hypothesis = PAIRS[0]
    reply = await client.infer_nli(premise, hypothesis, model=model)
    scores = nli_scores(premise, hypothesis)
    assert reply.entailment == pytest.approx(scores["entailment"])
    assert reply.contradiction == pytest.approx(scores["contradiction"])
    assert reply.neutral == pytest.approx(scores["neutral"])
    assert reply.label == inference_pb2.NLI_LABEL_ENTAILMENT
    request = hf.last()
    assert request.path == f"/models/{model.removeprefix('huggingface:')}"
    assert request.json == {
        "inputs": {"text": premise, "text_pair": hypothesis},
        "parameters": {"top_k": 3},
    }


async def test_nli_batch_in_order(client: ServiceClient, hf: FakeHuggingFace) -> None:
    results = await client.infer_nli_batch(PAIRS, model=NLI_MODEL)
    assert [r.label for r in results] == LABELS
    sent = sorted((r.json["inputs"]["text"], r.json["inputs"]["text_pair"]) for r in hf.requests)
    assert sent == sorted(PAIRS)


async def test_nli_two_way_model(client: ServiceClient) -> None:
    reply = await client.infer_nli(*PAIRS[2], model="huggingface:some/rte-two-way")
    assert reply.label == inference_pb2.NLI_LABEL_NEUTRAL
    assert reply.contradiction == 0.0
    assert reply.entailment + reply.neutral == pytest.approx(1.0)


async def test_nli_model_without_label_names(client: ServiceClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.infer_nli(*PAIRS[0], model="huggingface:someone/nli-label-ids")
    assert "LABEL_0" in caught.value.message
    assert caught.value.field == "model"


def test_nli_labels_case_insensitive_and_ties() -> None:
    upper = parse_nli([[{"label": "NEUTRAL", "score": 0.2}, {"label": "Entailment", "score": 0.7}]])
    assert upper.label == inference_pb2.NLI_LABEL_ENTAILMENT and upper.contradiction == 0.0
    flat = parse_nli([{"label": "contradiction", "score": 0.5}, {"label": "neutral", "score": 0.5}])
    assert flat.label == inference_pb2.NLI_LABEL_CONTRADICTION


# -- zero-shot ---------------------------------------------------------------------------------

TEXT = "My new phone broke after a day and I want my money back as a refund"
CANDIDATES = ["refund", "legal", "faq"]


@pytest.mark.parametrize(
    "model", [ZS_MODEL, "huggingface:someone/zs-legacy", "huggingface:someone/zs-task-spec"]
)
async def test_zero_shot_in_every_answer_shape(
    client: ServiceClient, hf: FakeHuggingFace, model: str
) -> None:
    reply = await client.classify_zero_shot(TEXT, CANDIDATES, model=model)
    expected = zero_shot_scores(TEXT, CANDIDATES, False)
    assert dict(reply.scores) == pytest.approx(expected)
    assert reply.top_label == "refund"
    assert reply.confidence == pytest.approx(expected["refund"])
    assert hf.last().json == {"inputs": TEXT, "parameters": {"candidate_labels": CANDIDATES}}


async def test_zero_shot_options(client: ServiceClient, hf: FakeHuggingFace) -> None:
    reply = await client.classify_zero_shot(
        TEXT, CANDIDATES, model=ZS_MODEL, multi_label=True, hypothesis_template="The topic is {}."
    )
    assert dict(reply.scores) == pytest.approx(zero_shot_scores(TEXT, CANDIDATES, True))
    assert hf.last().json["parameters"] == {
        "candidate_labels": CANDIDATES,
        "multi_label": True,
        "hypothesis_template": "The topic is {}.",
    }


def test_zero_shot_ties_go_to_the_first_label() -> None:
    scores = parse_zero_shot({"labels": ["b", "a"], "scores": [0.5, 0.5]}, ["a", "b"])
    assert list(scores) == ["a", "b"]
    with pytest.raises(errors.UpstreamProtocolError):
        parse_zero_shot([{"label": "a", "score": 1.0}], ["a", "b"])


# -- stance ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (
            "I am strongly in favor of nuclear power, favor it fully",
            inference_pb2.STANCE_LABEL_FAVOR,
        ),
        ("I am against nuclear power, against it entirely", inference_pb2.STANCE_LABEL_AGAINST),
        ("I am neutral about this, neutral really", inference_pb2.STANCE_LABEL_NEUTRAL),
        ("Nuclear power exists.", inference_pb2.STANCE_LABEL_FAVOR),  # a three-way tie
    ],
)
async def test_stance_through_zero_shot(
    client: ServiceClient, hf: FakeHuggingFace, text: str, label: int
) -> None:
    reply = await client.classify_stance(text, "nuclear power", model=ZS_MODEL)
    assert reply.label == label
    assert reply.target == "nuclear power"
    assert reply.favor + reply.against + reply.neutral == pytest.approx(1.0, abs=1e-5)
    hypotheses = [
        "in favor of nuclear power",
        "against nuclear power",
        "neutral toward nuclear power",
    ]
    expected = zero_shot_scores(text, hypotheses, False)
    assert [reply.favor, reply.against, reply.neutral] == pytest.approx(
        [expected[h] for h in hypotheses]
    )
    assert hf.last().json == {
        "inputs": text,
        "parameters": {
            "candidate_labels": hypotheses,
            "multi_label": False,
            "hypothesis_template": "This text is {}.",
        },
    }


def test_stance_tie_rule() -> None:
    assert stance_label(0.4, 0.4, 0.2) == inference_pb2.STANCE_LABEL_FAVOR
    assert stance_label(0.2, 0.4, 0.4) == inference_pb2.STANCE_LABEL_AGAINST
    assert stance_label(0.1, 0.3, 0.6) == inference_pb2.STANCE_LABEL_NEUTRAL


# -- errors ------------------------------------------------------------------------------------


async def test_model_loading_is_unavailable_with_retry_info(client: ServiceClient) -> None:
    with pytest.raises(ModelNotAvailable) as caught:
        await client.embed("x", model="huggingface:loading/cold-model")
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason == "MODEL_NOT_AVAILABLE"
    assert caught.value.retry_after == pytest.approx(LOADING_SECONDS)
    assert "loading" in caught.value.message


async def test_wait_for_model_asks_the_api_to_wait(hf: FakeHuggingFace) -> None:
    config = config_for(hf.base_url, extra="wait_for_model = true\n")
    async with daemon_client(config) as c:
        reply = await c.embed("x", model="huggingface:loading/cold-model")
    assert reply.dimensions == 12
    assert hf.last().headers["X-Wait-For-Model"] == "true"


async def test_not_found_plain_text_and_json(client: ServiceClient) -> None:
    with pytest.raises(ModelNotFound) as plain:
        await client.embed("x", model="huggingface:gone/old-model")
    assert plain.value.code == grpc.StatusCode.NOT_FOUND
    assert "Not Found" in plain.value.message
    with pytest.raises(ModelNotFound) as structured:
        await client.infer_nli("a", "b", model="huggingface:conf-missing")
    assert "does not exist" in structured.value.message


async def test_bad_or_missing_token(hf: FakeHuggingFace) -> None:
    async with daemon_client(config_for(hf.base_url, key="hf_WrongToken000000000")) as c:
        with pytest.raises(AuthenticationFailed) as wrong:
            await c.embed("x", model=ST_MODEL)
    assert wrong.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert INVALID_TOKEN in wrong.value.message
    assert "hf_WrongToken" not in wrong.value.message
    async with daemon_client(config_for(hf.base_url, key=None)) as c:
        with pytest.raises(AuthenticationFailed):
            await c.embed("x", model=ST_MODEL)
    assert "Authorization" not in hf.last().headers


async def test_rate_limited_and_server_errors(client: ServiceClient) -> None:
    with pytest.raises(RateLimited) as limited:
        await client.embed("x", model="huggingface:conf-rate-limit")
    assert limited.value.retry_after == conf.RETRY_AFTER_SECONDS
    with pytest.raises(ModelNotAvailable) as server:
        await client.embed("x", model="huggingface:conf-server-error")
    assert server.value.reason == "PROVIDER_UNAVAILABLE"
    with pytest.raises(ModelNotAvailable) as busy:
        await client.embed("x", model="huggingface:busy/model")
    assert busy.value.reason == "PROVIDER_OVERLOADED"


async def test_unreachable_is_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hf-inference"
    async with daemon_client(config_for(url)) as c:
        with pytest.raises(ModelNotAvailable) as caught:
            await c.embed("x", model=ST_MODEL)
    assert url in caught.value.message


async def test_no_chat_through_huggingface(client: ServiceClient) -> None:
    with pytest.raises(RatatoskrError) as caught:
        await client.chat("hi", model="huggingface:HuggingFaceH4/zephyr-7b-beta")
    assert caught.value.code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE)
    assert (await client.health()).healthy


async def test_default_chain_reaches_huggingface(hf: FakeHuggingFace) -> None:
    """Without a prefix, a Hub id goes down the embed chain (local, huggingface)."""
    async with daemon_client(config_for(hf.base_url)) as c:
        reply = await c.embed("x", model="sentence-transformers/all-MiniLM-L6-v2")
    assert reply.dimensions == 12


# -- the conformance error classes, per capability ---------------------------------------------

FAILURES = {
    "conf-auth": grpc.StatusCode.UNAUTHENTICATED,
    "conf-missing": grpc.StatusCode.NOT_FOUND,
    "conf-rate-limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "conf-server-error": grpc.StatusCode.UNAVAILABLE,
    "conf-overloaded": grpc.StatusCode.UNAVAILABLE,
}


@pytest.mark.parametrize("scenario", sorted(FAILURES))
async def test_conformance_failures(client: ServiceClient, scenario: str) -> None:
    model = f"huggingface:{scenario}"
    calls = [
        client.embed("x", model=model),
        client.infer_nli("a", "b", model=model),
        client.classify_zero_shot("x", ["a", "b"], model=model),
        client.classify_stance("x", "y", model=model),
    ]
    for call in calls:
        with pytest.raises(RatatoskrError) as caught:
            await call
        assert caught.value.code == FAILURES[scenario]
        assert caught.value.provider == "huggingface"
        if scenario in ("conf-rate-limit", "conf-overloaded"):
            assert caught.value.retry_after == conf.RETRY_AFTER_SECONDS


async def test_conformance_text(client: ServiceClient) -> None:
    model = "huggingface:conf-text"
    reply = await client.embed(conf.TEXT, model=model)
    assert list(reply.values) == pytest.approx(sentence_vector(conf.TEXT), abs=1e-6)
    nli = await client.infer_nli(conf.TEXT, "The quick brown fox jumps", model=model)
    assert nli.label == inference_pb2.NLI_LABEL_ENTAILMENT
    zero = await client.classify_zero_shot(conf.TEXT, ["fox", "finance"], model=model)
    assert zero.top_label == "fox"


# -- the real recorded responses (../shared), through the provider's own code ------------------


def _provider(base_url: str) -> HuggingFaceProvider:
    config = ProviderConfig(kind="huggingface", base_url=base_url)
    return HuggingFaceProvider("huggingface", config, Secret(KEY))


async def test_recorded_feature_extraction(shared_dir: Path) -> None:
    single = load_fixture(shared_dir, "huggingface", "feature-extraction")
    model = "sentence-transformers/distilbert-base-nli-mean-tokens"
    async with replay({"*": single}) as url:
        provider = _provider(url)
        try:
            (embedding,) = await provider.embed(["That is a happy person"], model)
        finally:
            await provider.close()
    expected = single.expect["embedding"]
    assert embedding.dimensions == expected["dims"]
    assert list(embedding.values[:3]) == pytest.approx(expected["first_values"])

    batch = load_fixture(shared_dir, "huggingface", "feature-extraction-batch-token-level")
    async with replay({"*": batch}) as url:
        provider = _provider(url)
        try:
            embeddings = await provider.embed(
                ["hello", "That is a happy person"], "facebook/bart-base"
            )
        finally:
            await provider.close()
    assert len(embeddings) == batch.expect["embedding"]["count"]
    assert {e.dimensions for e in embeddings} == {batch.expect["embedding"]["dims"]}
    recorded = batch.json()
    for embedding, item in zip(embeddings, recorded, strict=True):
        pooled = np.mean(np.asarray(item[0], dtype=np.float64), axis=0)
        assert list(embedding.values) == pytest.approx(pooled.tolist(), rel=1e-5, abs=1e-5)


async def test_recorded_classification(shared_dir: Path) -> None:
    pair = load_fixture(shared_dir, "huggingface", "text-classification-nli-pair")
    result = parse_nli(pair.json())
    expected = pair.expect["scores"]
    assert (result.entailment, result.neutral, result.contradiction) == pytest.approx(
        (expected["entailment"], expected["neutral"], expected["contradiction"])
    )
    assert result.label == inference_pb2.NLI_LABEL_ENTAILMENT

    zero = load_fixture(shared_dir, "huggingface", "zero-shot-classification")
    labels = zero.meta["request_example"]["parameters"]["candidate_labels"]
    async with replay({"*": zero}) as url:
        provider = _provider(url)
        try:
            request = inference_pb2.ClassifyZeroShotRequest(text="refund please", labels=labels)
            reply = await provider.classify_zero_shot(request, "facebook/bart-large-mnli")
        finally:
            await provider.close()
    assert reply.top_label == zero.expect["top_label"]
    assert dict(reply.scores) == pytest.approx(dict(zero.expect["labels_by_score"]))


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("error-400-invalid-token", errors.AuthenticationFailed),
        ("error-404-legacy-host-plain-text", errors.ModelNotFound),
        ("error-404-model-not-found", errors.ModelNotFound),
        ("error-503-model-loading", errors.ModelNotAvailable),
    ],
)
async def test_recorded_errors(shared_dir: Path, case: str, error: type[Exception]) -> None:
    fixture = load_fixture(shared_dir, "huggingface", case)
    async with replay({"*": fixture}) as url:
        provider = _provider(url)
        try:
            with pytest.raises(error) as caught:
                await provider.embed(["Hello"], "tiiuae/falcon-7b-instruct")
        finally:
            await provider.close()
    expected = fixture.expect["error"]
    assert isinstance(caught.value, errors.GatewayError)
    assert caught.value.metadata["upstream_status"] == str(expected["status"])
    if "retry_after_seconds" in expected:
        assert caught.value.retry_after == pytest.approx(expected["retry_after_seconds"])
    if expected.get("message"):
        assert expected["message"] in caught.value.message


async def test_unusable_loading_estimates_are_no_retry_delay() -> None:
    provider = _provider("http://127.0.0.1:9/hf-inference")
    try:
        for estimate in (1e300, -5.0, float("nan")):
            body = {"error": "Model m is currently loading", "estimated_time": estimate}
            error = provider.errors.error_from_body(503, body, "m")
            assert isinstance(error, errors.ModelNotAvailable)
            assert error.retry_after is None
        usable = provider.errors.error_from_body(
            503, {"error": "loading", "estimated_time": 12}, "m"
        )
        assert usable.retry_after == 12.0
    finally:
        await provider.close()
