"""Incremental decoders for the streaming formats providers use: Server-Sent Events
(OpenAI, OpenRouter, Anthropic, Gemini) and newline-delimited JSON (Ollama).

They take bytes as they arrive, in chunks of any size, and return whole events. They
accept both ``\\n`` and ``\\r\\n`` line endings (Gemini separates events with
``\\r\\n\\r\\n``), skip SSE comment lines (OpenRouter's ``: OPENROUTER PROCESSING``) and
have no line-length limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

# Longest line, and longest event, accepted from an upstream.
MAX_LINE_BYTES = 8 * 1024 * 1024


class Oversized(ValueError):
    """A line or an event is longer than the decoder accepts."""


@dataclass(slots=True)
class SseEvent:
    event: str
    data: str


class LineDecoder:
    """Splits a byte stream into lines without their terminators."""

    __slots__ = ("_limit", "_pending", "_size")

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._pending: list[bytes] = []  # the pieces of an unfinished line
        self._size = 0
        self._limit = limit

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._pending:
            if b"\n" not in chunk:  # the line goes on: hold the piece, join it once later
                self._hold(chunk)
                return []
            chunk = b"".join((*self._pending, chunk))
            self._pending, self._size = [], 0
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            self._hold(rest)
        if len(chunk) > self._limit:  # only then can a whole line be over the limit
            for line in lines:
                if len(line) > self._limit:
                    raise Oversized(f"a line of {len(line)} bytes (limit {self._limit})")
        return [line[:-1] if line.endswith(b"\r") else line for line in lines]

    def _hold(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._size += len(piece)
        if self._size > self._limit:
            raise Oversized(f"a line of over {self._limit} bytes")

    def close(self) -> list[bytes]:
        """The last line, when the stream ended without a newline."""
        rest = b"".join(self._pending).rstrip(b"\r")
        self._pending, self._size = [], 0
        return [rest] if rest else []


class SseDecoder:
    """Turns SSE bytes into events (https://html.spec.whatwg.org/#event-stream-interpretation)."""

    __slots__ = ("_data", "_event", "_limit", "_lines", "_size")

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._lines = LineDecoder(limit)
        self._data: list[str] = []
        self._size = 0
        self._limit = limit
        self._event = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return self._interpret(self._lines.feed(chunk))

    def close(self) -> list[SseEvent]:
        """Events still pending when the stream ended (a last event with no blank line)."""
        return self._interpret([*self._lines.close(), b""])

    def _interpret(self, lines: list[bytes]) -> list[SseEvent]:
        events: list[SseEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(SseEvent(self._event or "message", "\n".join(self._data)))
                self._data, self._event, self._size = [], "", 0
                continue
            if line[0] == 0x3A:  # ":" starts a comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._size += len(value)
                if self._size > self._limit:
                    raise Oversized(f"an event of over {self._limit} bytes")
                self._data.append(value.decode("utf-8", errors="replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", errors="replace")
        return events


async def chunks(response: aiohttp.ClientResponse, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives; more than ``limit`` bytes in all is ``Oversized``."""
    received = 0
    async for chunk in response.content.iter_any():
        received += len(chunk)
        if received > limit:
            raise Oversized(f"a response of over {limit} bytes")
        yield chunk


# A stream is not held whole (each event is passed on as it arrives, and the caller's
# deadline and the read timeout bound it), so only its lines and events are capped.


async def iter_sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The data of each SSE event of a response body, as soon as its last byte arrives.
    (Event names are not needed: every API also says what an event is in its data.)"""
    decoder = SseDecoder()
    async for chunk in response.content.iter_any():
        for event in decoder.feed(chunk):
            yield event.data
    for event in decoder.close():
        yield event.data


async def iter_lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The non-empty lines of an NDJSON response body, as they arrive."""
    decoder = LineDecoder()
    async for chunk in response.content.iter_any():
        for line in decoder.feed(chunk):
            if line.strip():
                yield line
    for line in decoder.close():
        if line.strip():
            yield line
