"""Serve the real recorded provider responses of ``../shared/fixtures/providers`` on loopback,
read from there at test time (they are never copied into the project), so that a provider's
own request and parsing code runs against the exact recorded bytes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Fixture:
    """One recorded response: its body bytes exactly as stored, and its meta.json."""

    body: bytes
    meta: Mapping[str, Any]

    @property
    def status(self) -> int:
        return int(self.meta.get("status", 200))

    @property
    def content_type(self) -> str:
        headers = self.meta.get("headers") or {}
        return str(headers.get("content-type") or "application/json")

    @property
    def expect(self) -> Mapping[str, Any]:
        return self.meta.get("expect") or {}

    def lines(self) -> list[dict[str, Any]]:
        """The objects of an NDJSON body."""
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]

    def json(self) -> Any:
        return json.loads(self.body)


def load_fixture(shared: Path, provider: str, case: str) -> Fixture:
    folder = shared / "fixtures" / "providers" / provider
    meta = json.loads((folder / f"{case}.meta.json").read_text())
    body = (folder / meta["response_file"]).read_bytes()
    return Fixture(body, meta)


@asynccontextmanager
async def replay(routes: Mapping[str, Fixture]) -> AsyncIterator[str]:
    """A loopback server answering each path with its fixture (any method; a path not
    listed gets the fixture under ``"*"``). Yields its base URL."""

    async def answer(request: web.Request) -> web.StreamResponse:
        fixture = routes.get(request.path) or routes.get("*")
        if fixture is None:
            return web.Response(status=404, text="no fixture for this path")
        await request.read()
        response = web.Response(status=fixture.status, body=fixture.body)
        response.headers["Content-Type"] = fixture.content_type
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]  # port 0 asked the OS for a free one
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
