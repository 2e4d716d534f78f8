"""An in-process ratd with its OpenAI HTTP door on a free loopback port, its OpenAI and
OpenRouter providers pointed at the fake upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ratd.server import Daemon
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY, OPENROUTER_KEY
from tests.support.daemon import make_config, running_daemon


def door_config_text(fake: FakeOpenAIUpstream, extra: str = "") -> str:
    return f"""
[http]
address = "127.0.0.1:0"
[providers.openai]
base_url = "{fake.base_url_openai}"
[providers.openrouter]
base_url = "{fake.base_url_openrouter}"
{extra}
"""


@asynccontextmanager
async def door_daemon(fake: FakeOpenAIUpstream, extra: str = "") -> AsyncIterator[Daemon]:
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY}
    config = make_config(door_config_text(fake, extra), env=env)
    async with running_daemon(config) as daemon:
        yield daemon


def base_url(daemon: Daemon) -> str:
    return f"http://{daemon.http_address}/v1"
