"""What the Anthropic and Gemini fakes share: an aiohttp app on a free loopback port that
records every request it receives (method, path, query, headers, body).

Both fakes expose ``base_url`` (what ratd's ``[providers.*] base_url`` should be),
``requests`` and ``last(...)``, like the OpenAI fake. This module does not import pytest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    raw: bytes
    json: Any  # the parsed body, or None when it is not JSON


def json_bytes(
    obj: Any, *, indent: int | None = None, separators: tuple[str, str] = (",", ":")
) -> bytes:
    if indent is not None:
        return json.dumps(obj, indent=indent, ensure_ascii=False).encode()
    return json.dumps(obj, separators=separators, ensure_ascii=False).encode()


def pieces(frame: bytes, size: int | None) -> Iterable[bytes]:
    """``frame`` in writes of ``size`` bytes (None: one write), to test decoders on
    events that straddle network reads."""
    if not size:
        yield frame
        return
    for start in range(0, len(frame), size):
        yield frame[start : start + size]


class LoopbackServer:
    """Lifecycle and request recording; subclasses add routes in ``routes``."""

    def __init__(self, *, write_size: int | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        # None: one write per SSE event; n: stream bodies are written n bytes at a time.
        self.write_size = write_size
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # port=0 asks the OS for a free port; read back the one it bound.
        sockets = getattr(site._server, "sockets", None)
        assert sockets
        self.host = host
        self.port = sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            request.method,
            request.path,
            request.query_string,
            CIMultiDict(request.headers),
            raw,
            parsed,
        )
        self.requests.append(record)
        return record

    def requests_to(self, suffix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    def last(self, suffix: str = "") -> RecordedRequest:
        found = self.requests_to(suffix)
        if not found:
            raise AssertionError(f"no request to *{suffix} was recorded")
        return found[-1]

    async def stream(
        self,
        request: web.Request,
        frames: Iterable[bytes],
        *,
        content_type: str,
        cut: bool = False,
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """Send ``frames`` as a chunked body; ``cut`` drops the connection mid-body."""
        response = web.StreamResponse(
            status=200, headers={"Content-Type": content_type, **(headers or {})}
        )
        await response.prepare(request)
        for frame in frames:
            for piece in pieces(frame, self.write_size):
                await response.write(piece)
        if cut:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response
