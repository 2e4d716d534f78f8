"""HuggingFace beyond the Inference API's pipelines: chat through its OpenAI-compatible
router (kind ``huggingface_router``), dedicated Inference Endpoints (kind ``huggingface``
with ``dedicated_endpoint``: the model answers at the endpoint's own URL), and
``use_cache = false`` (``X-Use-Cache: false``). Real in-process ratd, fakes on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ratatoskr import ChatOptions
from ratd.config import parse_config
from ratd.providers.specs import BY_KIND
from tests.fakes.huggingface_upstream import FakeHuggingFace, sentence_vector, similarity
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import daemon_client, make_config

KEY = "hf_TestTokenEndpoints0123456789"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
async def hf() -> AsyncIterator[FakeHuggingFace]:
    async with FakeHuggingFace(api_key=KEY) as fake:
        yield fake


def test_the_router_is_a_kind_of_its_own_enabled_by_the_hf_key() -> None:
    spec = BY_KIND["huggingface_router"]
    assert spec.base_url == "https://router.huggingface.co/v1"
    assert {"chat", "generate"} <= spec.capabilities
    assert BY_KIND["huggingface"].base_url == "https://router.huggingface.co/hf-inference"
    config = parse_config("", "<test>", env={"HF_TOKEN": KEY})
    assert {"huggingface", "huggingface_router"} <= set(config.providers)


async def test_chat_through_the_router(upstream: FakeOpenAIUpstream) -> None:
    """The router speaks Chat Completions and reads max_tokens (not OpenAI's
    max_completion_tokens); the HF token travels as a bearer token."""
    config = make_config(
        f"""
[providers.hf]
kind = "huggingface_router"
base_url = "{upstream.base_url_openai}"
api_key_env = "MY_HF_TOKEN"
""",
        env={"MY_HF_TOKEN": OPENAI_KEY},
    )
    async with daemon_client(config) as client:
        reply = await client.chat(
            "hi", options=ChatOptions(model="hf:meta-llama/Llama-3.1-8B-Instruct", max_tokens=7)
        )
        assert reply.content
        text = await client.generate("once upon", model="hf:meta-llama/Llama-3.1-8B-Instruct")
        assert text.text
    sent = upstream.requests_to("openai")[0]
    assert sent.json["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert sent.json["max_tokens"] == 7 and "max_completion_tokens" not in sent.json
    assert sent.headers["Authorization"] == f"Bearer {OPENAI_KEY}"


async def test_a_dedicated_endpoint_answers_at_its_own_url(hf: FakeHuggingFace) -> None:
    url = hf.dedicated_url(MODEL)
    config = make_config(
        f"""
[providers.my-endpoint]
kind = "huggingface"
base_url = "{url}"
dedicated_endpoint = true
api_key_env = "MY_HF_TOKEN"
""",
        env={"MY_HF_TOKEN": KEY},
    )
    async with daemon_client(config) as client:
        one = await client.embed("hello", "my-endpoint:minilm")
        batch = await client.embed_batch(["a", "b"], "my-endpoint:minilm")
        reply = await client.classify_zero_shot("a match", ["sport", "food"], "my-endpoint:x")
    assert list(one.values) == pytest.approx(sentence_vector("hello"))
    assert [list(e.values) for e in batch] == [
        pytest.approx(sentence_vector("a")),
        pytest.approx(sentence_vector("b")),
    ]
    cosines = {label: similarity("a match", label) for label in ("sport", "food")}
    assert reply.top_label == max(cosines, key=lambda k: cosines[k])
    paths = {r.path for r in hf.requests}
    assert paths == {f"/dedicated/{MODEL}"}  # no /models/... nor /pipeline/... below it
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in hf.requests)
    assert all("X-Use-Cache" not in r.headers for r in hf.requests)


async def test_use_cache_false_sends_the_header(hf: FakeHuggingFace) -> None:
    config = make_config(
        f'[providers.huggingface]\nbase_url = "{hf.base_url}"\nuse_cache = false\n',
        env={"HF_API_KEY": KEY},
    )
    async with daemon_client(config) as client:
        await client.embed("hello", f"huggingface:{MODEL}")
    assert hf.requests[-1].headers["X-Use-Cache"] == "false"
