"""The OpenAI HTTP door driven by the official ``openai`` npm package under Node: chat,
streaming with usage, tools, embeddings (base64 decoded by the SDK), model listing, and
RateLimitError / AuthenticationError. ``tests/node/`` holds the script and the package
pin; ``npm ci`` installs it into the (gitignored) ``tests/node/node_modules`` on first run.
Skipped, with the reason, when Node or npm is missing or the install fails (offline)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import (
    FERRY_CALL,
    TEXT,
    TEXT_USAGE,
    FakeOpenAIUpstream,
    fake_embedding,
)
from tests.support.openai_door import base_url, door_daemon

NODE_DIR = Path(__file__).resolve().parent / "node"
KEY = "rat_test-node-7f6e5d4c3b"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def node_openai() -> Path:
    """``node`` with the openai package installed beside the script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the openai npm package check")
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci of the openai package timed out (offline?)")
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"npm ci failed: {reason[0]}")
            pytest.skip(f"npm ci of the openai package failed: {reason[0]}")
    return Path(node)


async def test_openai_npm_package(node_openai: Path, upstream: FakeOpenAIUpstream) -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    tenants = f'[auth]\nmode = "api_key"\n[tenants.node]\napi_key_sha256 = ["{digest}"]\n'
    async with door_daemon(upstream, tenants) as daemon:
        env = {**os.environ, "RATD_BASE_URL": base_url(daemon), "RATD_API_KEY": KEY}
        process = await asyncio.create_subprocess_exec(
            str(node_openai),
            str(NODE_DIR / "openai_door_check.mjs"),
            cwd=NODE_DIR,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["chat"] == TEXT
    assert result["usage"]["completion_tokens"] == TEXT_USAGE["completion"]
    assert result["streamed"] == TEXT
    assert result["streamUsage"]["prompt_tokens"] == TEXT_USAGE["prompt"]
    (call,) = result["toolCalls"]
    assert call["function"]["name"] == FERRY_CALL.name
    assert json.loads(call["function"]["arguments"]) == json.loads(FERRY_CALL.arguments)
    assert result["dimensions"] == [1536, 1536]
    assert result["embeddings"][1] == pytest.approx(fake_embedding("two", 1536)[:4], abs=1e-7)
    assert "gpt-4o-mini" in result["models"]
    assert result["rateLimit"] == {
        "isRateLimitError": True,
        "status": 429,
        "retryAfter": "20",
        "code": "rate_limit_exceeded",
    }
    assert result["auth"] == {"isAuthenticationError": True}
