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


@dataclass(slots=True)
class SseEvent:
    event: str
    data: str


class LineDecoder:
    """Splits a byte stream into lines without their terminators."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        return [line[:-1] if line.endswith(b"\r") else line for line in lines]

    def close(self) -> list[bytes]:
        """The last line, when the stream ended without a newline."""
        rest, self._buffer = self._buffer.rstrip(b"\r"), b""
        return [rest] if rest else []


class SseDecoder:
    """Turns SSE bytes into events (https://html.spec.whatwg.org/#event-stream-interpretation)."""

    __slots__ = ("_data", "_event", "_lines")

    def __init__(self) -> None:
        self._lines = LineDecoder()
        self._data: list[str] = []
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
                self._data, self._event = [], ""
                continue
            if line[0] == 0x3A:  # ":" starts a comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", errors="replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", errors="replace")
        return events


async def iter_sse(response: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    """The SSE events of a response body, each as soon as its last byte arrives."""
    decoder = SseDecoder()
    async for chunk in response.content.iter_any():
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event


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
