"""GetCapabilities is derived from what is configured: the providers' kinds (their specs'
capabilities), the registry's models (reasoning, vision, structured output, tool use) and
local inference when [providers.local] exists. In-process ratd."""

from __future__ import annotations

from pathlib import Path

from ratatoskr import models_pb2
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.daemon import daemon_client, make_config

M = models_pb2


def names(values: list[int]) -> set[str]:
    return {M.ModelCapability.Name(v).removeprefix("MODEL_CAPABILITY_") for v in values}


async def test_openai_only(upstream: FakeOpenAIUpstream) -> None:
    config = make_config(
        f'[providers.openai]\nbase_url = "{upstream.base_url_openai}"\n',
        env={"OPENAI_API_KEY": "sk-caps-0001"},
    )
    async with daemon_client(config) as client:
        found = await client.capabilities()
    assert found == sorted(found)
    assert names(found) == {
        "CHAT",
        "CHAT_STREAMING",
        "GENERATE",
        "EMBED",
        "TOOL_USE",
        "REASONING",
        "VISION",
        "STRUCTURED_OUTPUT",
        # Media: the kind's endpoints, and the registry's models that read documents
        # and audio in chat.
        "IMAGE_GENERATION",
        "SPEECH_TO_TEXT",
        "TEXT_TO_SPEECH",
        "DOCUMENT_INPUT",
        "AUDIO_INPUT",
    }


async def test_local_only(tmp_path: Path) -> None:
    config = make_config(
        f'[providers.local]\nmodels_dir = "{tmp_path / "models"}"\nhub_downloads = false\n'
    )
    async with daemon_client(config) as client:
        found = names(await client.capabilities())
    assert found == {"EMBED", "NLI", "CLASSIFY", "STANCE", "TOKEN_COUNTING", "LOCAL_INFERENCE"}


async def test_a_chat_server_whose_models_say_nothing_more(tmp_path: Path) -> None:
    """A self-hosted OpenAI-compatible server with no registry entries: chat, but no
    claim of tools, reasoning or vision that nothing configured backs."""
    config = make_config(
        '[providers.mine]\nkind = "openai_compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    async with daemon_client(config) as client:
        found = names(await client.capabilities())
    assert found == {"CHAT", "CHAT_STREAMING", "GENERATE", "EMBED"}
