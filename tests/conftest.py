from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeOpenAIUpstream

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (fixtures, model assets); tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"needs ../shared beside the checkout ({SHARED} is missing)")
    return SHARED


@pytest.fixture
async def upstream() -> AsyncIterator[FakeOpenAIUpstream]:
    """The fake OpenAI + OpenRouter upstream on a free loopback port, in the test's loop.

    ``upstream.base_url_openai`` / ``.base_url_openrouter`` for the config,
    ``upstream.set_scenario(...)`` (or a ``scenario/<name>`` model) to choose the answer,
    ``upstream.requests`` for what it received.
    """
    async with FakeOpenAIUpstream() as fake:
        yield fake
