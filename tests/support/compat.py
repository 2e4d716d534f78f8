"""An in-process ratd whose OpenAI and OpenRouter providers point at the fake upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ratatoskr import RatatoskrError, ServiceClient, chat_pb2
from ratd.config import Config
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.daemon import daemon_client, make_config

OPENAI_KEY = "sk-test-openai-5b1f0c9e8d7a6b5c4d3e2f1a"
OPENROUTER_KEY = "sk-or-v1-test-9a8b7c6d5e4f3a2b1c0d9e8f"

# A model each flavour's routing sends where the test wants it.
OPENAI_MODEL = "gpt-4o-mini"
OPENROUTER_MODEL = "yggdrasil/ash-3-mini"
MODELS = {"openai": OPENAI_MODEL, "openrouter": OPENROUTER_MODEL}


def compat_config(
    fake: FakeOpenAIUpstream,
    *,
    policy: str = "warn",
    chain: Sequence[str] | None = None,
    openai_key: str = OPENAI_KEY,
    openrouter_key: str = OPENROUTER_KEY,
) -> Config:
    text = f"""
[providers.openai]
base_url = "{fake.base_url_openai}"
[providers.openrouter]
base_url = "{fake.base_url_openrouter}"
[validation]
parameter_policy = "{policy}"
"""
    if chain is not None:
        names = json.dumps(list(chain))
        text += f"[routing]\nchat = {names}\ngenerate = {names}\n"
    env = {"OPENAI_API_KEY": openai_key, "OPENROUTER_API_KEY": openrouter_key}
    return make_config(text, env=env)


@asynccontextmanager
async def compat_client(fake: FakeOpenAIUpstream, **config: Any) -> AsyncIterator[ServiceClient]:
    async with daemon_client(compat_config(fake, **config)) as client:
        yield client


def pinned(flavour: str, model: str) -> str:
    """``provider:model``: that provider only, no fallback."""
    return f"{flavour}:{model}"


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def collect_until_error(stream: AsyncIterator[Any]) -> tuple[list[Any], RatatoskrError]:
    """The events a stream yields before it fails, and the failure."""
    events: list[Any] = []
    try:
        async for event in stream:
            events.append(event)
    except RatatoskrError as err:
        return events, err
    raise AssertionError(f"the stream ended without an error after {len(events)} events")


def kinds(events: Sequence[Any]) -> list[str]:
    return [event.WhichOneof("event") for event in events]


def joined(events: Sequence[Any], kind: str) -> str:
    return "".join(getattr(e, kind) for e in events if e.WhichOneof("event") == kind)


def tool_arguments(events: Sequence[chat_pb2.ChatStreamResponse]) -> dict[int, str]:
    """The argument text of each streamed tool call, reassembled from its deltas."""
    found: dict[int, str] = {}
    for event in events:
        if event.WhichOneof("event") == "tool_call_delta":
            found[event.tool_call_delta.index] = (
                found.get(event.tool_call_delta.index, "") + event.tool_call_delta.arguments
            )
    return found
