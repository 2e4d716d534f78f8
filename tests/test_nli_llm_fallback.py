"""``[routing] nli_llm_fallback``: when no NLI model can answer (none routed, or the local
one missing), a chat model judges NLI, zero-shot classification and stance. A real ratd
(grpc.aio server in the test's loop) asks a fake OpenAI upstream on loopback, which answers
the JSON the test computes from the request; the gRPC answers are checked, and the
trailing metadata naming the model that served. Malformed answers are refused with
UNAVAILABLE. Off by default."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from ratatoskr.v1 import inference_pb2, ratatoskr_pb2_grpc
from ratd.config import ConfigError
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.daemon import make_config, running_daemon

KEYS = {"OPENAI_API_KEY": "sk-nli-fallback-1"}
FALLBACK = 'nli_llm_fallback = "openai:gpt-4o-mini"'
SERVED_BY = "ratatoskr-served-by"


def _system_and_data(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    messages = body["messages"]
    system = next(m["content"] for m in messages if m["role"] in ("system", "developer"))
    user = next(m["content"] for m in messages if m["role"] == "user")
    return system, json.loads(user)


def judging(body: dict[str, Any]) -> str:
    """A model that follows the prompt: NLI leans to entailment (its numbers sum to 0.9,
    as a model's rounding may), stance against, zero-shot the second label."""
    system, data = _system_and_data(body)
    if "natural language inference" in system:
        assert set(data) == {"premise", "hypothesis"}
        return json.dumps({"entailment": 0.7, "contradiction": 0.05, "neutral": 0.15})
    if "stance" in system:
        assert set(data) == {"text", "target"}
        return '```json\n{"favor": 0.1, "against": 0.6, "neutral": 0.3}\n```'
    labels = data["labels"]
    if "multi-label" in system:  # each label on its own: no sum to keep
        return json.dumps(dict.fromkeys(labels, 0.9))
    return json.dumps(
        {label: 0.7 if i == 1 else 0.3 / (len(labels) - 1) for i, label in enumerate(labels)}
    )


def _config(upstream: FakeOpenAIUpstream, routing: str, extra: str = "") -> str:
    return f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
{extra}
[routing]
{routing}
"""


class Served:
    """A raw stub (the trailing metadata is not in the client's return values)."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = ratatoskr_pb2_grpc.RatatoskrStub(self.channel)

    async def call(self, method: str, request: Any) -> tuple[Any, dict[str, str]]:
        call = getattr(self.stub, method)(request, timeout=30)
        answer = await call
        trailing = await call.trailing_metadata()
        return answer, {k: v for k, v in (trailing or ()) if isinstance(v, str)}


@pytest.fixture
async def served(upstream: FakeOpenAIUpstream) -> AsyncIterator[Callable[..., Any]]:
    """A factory: ``async with served(config_text) as stub``."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(text: str) -> AsyncIterator[Served]:
        async with running_daemon(make_config(text, env=KEYS)) as daemon:
            stub = Served(daemon.address)
            try:
                yield stub
            finally:
                await stub.channel.close()

    yield start


async def test_no_nli_provider_routed_the_chat_model_judges_all_three(
    upstream: FakeOpenAIUpstream, served: Callable[..., Any]
) -> None:
    upstream.answer = judging
    async with served(_config(upstream, FALLBACK)) as stub:
        nli, trailing = await stub.call(
            "InferNli",
            inference_pb2.InferNliRequest(
                premise="The ferry left at noon.",
                hypothesis="A boat departed.",
                model="cross-encoder/nli-deberta-v3-small",
            ),
        )
        assert nli.label == inference_pb2.NLI_LABEL_ENTAILMENT
        assert nli.entailment == pytest.approx(0.7 / 0.9, rel=1e-5)  # normalised
        assert nli.entailment + nli.contradiction + nli.neutral == pytest.approx(1.0, rel=1e-5)
        assert trailing[SERVED_BY].startswith("openai:gpt-4o-mini")

        sent = upstream.last("openai").json
        assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0
        schema = sent["response_format"]["json_schema"]
        assert schema["strict"] is True
        assert set(schema["schema"]["required"]) == {"entailment", "contradiction", "neutral"}

        labels = ["sports", "travel", "cooking"]
        zero_shot, trailing = await stub.call(
            "ClassifyZeroShot",
            inference_pb2.ClassifyZeroShotRequest(
                text="We took the night ferry to Bergen.", labels=labels, model="any-nli"
            ),
        )
        assert zero_shot.top_label == "travel"
        assert zero_shot.confidence == pytest.approx(0.7, rel=1e-5)
        assert set(zero_shot.scores) == set(labels)
        assert trailing[SERVED_BY].startswith("openai:gpt-4o-mini")

        multi, _ = await stub.call(
            "ClassifyZeroShot",
            inference_pb2.ClassifyZeroShotRequest(
                text="A ferry with a galley.", labels=labels, model="any-nli", multi_label=True
            ),
        )
        assert dict(multi.scores) == pytest.approx(dict.fromkeys(labels, 0.9))
        assert multi.top_label == "sports"  # a tie goes to the first label

        stance, _ = await stub.call(
            "ClassifyStance",
            inference_pb2.ClassifyStanceRequest(
                text="Tolls on the bridge are a scandal.", target="bridge tolls", model="any-nli"
            ),
        )
        assert stance.label == inference_pb2.STANCE_LABEL_AGAINST
        assert stance.target == "bridge tolls"
        assert stance.against == pytest.approx(0.6, rel=1e-5)
    assert len(upstream.requests_to("openai")) == 4


async def test_a_missing_local_model_is_judged_pair_by_pair(
    upstream: FakeOpenAIUpstream,
    served: Callable[..., Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Local NLI is configured but its files are absent and downloads are off."""
    upstream.answer = judging
    caplog.set_level(logging.INFO, logger="ratd.core.gateway")
    local = (
        f'[providers.local]\nmodels_dir = "{tmp_path / "models"}"\n'
        f'hub_cache_dir = "{tmp_path / "hub"}"\nhub_downloads = false\n'
    )
    async with served(_config(upstream, FALLBACK, local)) as stub:
        request = inference_pb2.InferNliBatchRequest(
            pairs=[
                inference_pb2.NliPair(premise=f"premise {i}", hypothesis=f"hypothesis {i}")
                for i in range(3)
            ],
            model="nli-deberta-v3-xsmall",
        )
        batch, trailing = await stub.call("InferNliBatch", request)
        assert [r.label for r in batch.results] == [inference_pb2.NLI_LABEL_ENTAILMENT] * 3
        assert trailing[SERVED_BY].startswith("openai:")
    premises = sorted(
        _system_and_data(r.json)[1]["premise"] for r in upstream.requests_to("openai")
    )
    assert premises == ["premise 0", "premise 1", "premise 2"]
    assert "no NLI model for 'nli-deberta-v3-xsmall' (nli-deberta-v3-xsmall: no model files" in (
        caplog.text
    )


@pytest.mark.parametrize(
    "answer",
    [
        "Entailment, clearly.",
        '{"entailment": 0.9, "contradiction": 0.1}',
        '{"entailment": 1.5, "contradiction": 0.0, "neutral": 0.0}',
        '{"entailment": "high", "contradiction": 0.0, "neutral": 0.0}',
        '{"entailment": 0, "contradiction": 0, "neutral": 0}',
        "[0.9, 0.05, 0.05]",
    ],
)
async def test_a_malformed_answer_is_unavailable_not_internal(
    upstream: FakeOpenAIUpstream, served: Callable[..., Any], answer: str
) -> None:
    upstream.answer = lambda body: answer
    async with served(_config(upstream, FALLBACK)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.call(
                "InferNli",
                inference_pb2.InferNliRequest(premise="p", hypothesis="h", model="any-nli"),
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "NLI fallback model openai:gpt-4o-mini gave no usable answer" in str(
        caught.value.details()
    )


async def test_off_by_default(upstream: FakeOpenAIUpstream, served: Callable[..., Any]) -> None:
    upstream.answer = judging
    async with served(_config(upstream, "")) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.call(
                "InferNli",
                inference_pb2.InferNliRequest(premise="p", hypothesis="h", model="any-nli"),
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no configured provider can serve model 'any-nli' for nli" in str(caught.value.details())
    assert not upstream.requests_to("openai")


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ('nli_llm_fallback = "gpt-4o-mini"', 'must be "provider:model"'),
        ('nli_llm_fallback = "anthropic:claude-3-haiku"', "names provider 'anthropic'"),
        ('strategy = "fastest"', "must be one of ordered, cheapest, latency"),
        ("latency_alpha = 0", "latency_alpha must be in (0, 1]"),
        ("latency_explore = 1.5", "latency_explore must be in [0, 1]"),
        ("latency_max_entries = 0", "latency_max_entries must be at least 1"),
    ],
)
def test_routing_settings_are_checked(routing: str, message: str) -> None:
    text = f"[providers.openai]\n[providers.huggingface]\n[routing]\n{routing}\n"
    with pytest.raises(ConfigError) as caught:
        make_config(text, env=KEYS)
    assert message in str(caught.value)


def test_the_fallback_must_serve_chat() -> None:
    with pytest.raises(ConfigError, match="does not serve chat"):
        make_config(
            '[providers.hfapi]\nkind = "huggingface"\n[providers.openai]\n'
            '[routing]\nnli_llm_fallback = "hfapi:some-model"\n'
        )


@pytest.mark.parametrize(
    ("allowed", "code"),
    [('["any-nli"]', grpc.StatusCode.PERMISSION_DENIED), ('["any-nli", "openai:*"]', None)],
)
async def test_a_tenant_needs_the_fallback_model_on_its_allow_list(
    upstream: FakeOpenAIUpstream,
    served: Callable[..., Any],
    allowed: str,
    code: grpc.StatusCode | None,
) -> None:
    """The chat model is asked on the caller's behalf: its allow-list applies to it."""
    upstream.answer = judging
    key = "rat_nli_fallback_tenant_key_1"
    auth = f"""
[auth]
mode = "api_key"
[tenants.acme]
api_key_sha256 = ["{hashlib.sha256(key.encode()).hexdigest()}"]
models = {allowed}
"""
    request = inference_pb2.InferNliRequest(premise="p", hypothesis="h", model="any-nli")
    metadata = (("authorization", f"Bearer {key}"),)
    async with served(_config(upstream, FALLBACK) + auth) as stub:
        call = stub.stub.InferNli(request, metadata=metadata, timeout=30)
        if code is None:
            assert (await call).label == inference_pb2.NLI_LABEL_ENTAILMENT
        else:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == code
            assert not upstream.requests_to("openai")
