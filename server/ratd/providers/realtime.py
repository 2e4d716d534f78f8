"""One realtime session with a provider's WebSocket API: the transport written once, each
API a *dialect* (``realtime_openai``, ``realtime_gemini``): pure functions from the
``ratatoskr.v1`` realtime events to the upstream's JSON messages and back, no I/O.

Backpressure is the sockets' own: ``send`` waits for aiohttp's writer to drain, and
nothing is read from the upstream until ``receive`` is called (aiohttp's reader pauses
the socket when its small buffer is full), so a caller that stops reading stops the
upstream, and ratd holds at most one message in flight each way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson

from ratatoskr.v1 import realtime_pb2 as rt
from ratd import errors
from ratd.providers.http import HttpClient

log = logging.getLogger(__name__)

# Largest message ratd takes from an upstream (an audio delta is a few KiB).
MAX_UPSTREAM_MESSAGE_BYTES = 4 * 1024 * 1024


class RealtimeDialect(Protocol):
    """What one realtime API means, as pure translations."""

    # The provider's name and the model's name there, for errors.
    provider: str
    model: str
    # True while the upstream is producing a response (the session ends after it when
    # the caller has stopped sending).
    responding: bool

    def path(self) -> tuple[str, dict[str, str]]:
        """The WebSocket path below base_url, and its query parameters."""

    def opening(self, config: rt.RealtimeSessionConfig) -> list[dict[str, Any]]:
        """The messages sent as soon as the socket is open."""

    def ready(self, message: Mapping[str, Any]) -> rt.RealtimeSessionCreated | None:
        """The session as created, if ``message`` says it is open (else None)."""

    def to_upstream(self, event: rt.RealtimeRequest) -> list[dict[str, Any]]:
        """The upstream messages one client event means (after the first)."""

    def from_upstream(self, message: Mapping[str, Any]) -> list[rt.RealtimeResponse]:
        """The server events one upstream message means (none for many)."""

    def closed(self, code: int, reason: str) -> errors.GatewayError:
        """The error an upstream close (before the caller ended the session) means."""


class RealtimeUpstream:
    """An open upstream session: ``send`` client events, ``receive`` server events,
    ``close`` (at once; safe to call twice, from any task)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, dialect: RealtimeDialect) -> None:
        self.ws = ws
        self.dialect = dialect
        self.created = rt.RealtimeSessionCreated()
        # Why the upstream closed, from its close frame.
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def responding(self) -> bool:
        return self.dialect.responding

    async def start(self, opening: list[dict[str, Any]]) -> rt.RealtimeSessionCreated:
        """Send the opening messages and wait for the upstream to say the session is open.
        Closes the socket if that fails."""
        try:
            for message in opening:
                await self._send_json(message)
            while True:
                found = await self._next()
                if found is None:  # a refusal (bad key, unknown model) closes the socket
                    raise self._closed_error()
                created = self.dialect.ready(found)
                if created is not None:
                    self.created = created
                    return created
        except BaseException:
            await self.close()
            raise

    async def send(self, event: rt.RealtimeRequest) -> None:
        for message in self.dialect.to_upstream(event):
            await self._send_json(message)

    async def receive(self) -> list[rt.RealtimeResponse] | None:
        """The server events of the next upstream message (maybe none); None once the
        upstream has closed (``closed_error`` says why)."""
        message = await self._next()
        if message is None:
            return None
        return self.dialect.from_upstream(message)

    def closed_error(self) -> errors.GatewayError:
        return self._closed_error()

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()

    # -- transport --------------------------------------------------------------------------

    async def _send_json(self, message: Mapping[str, Any]) -> None:
        if self.ws.closed:
            raise self._closed_error()
        try:
            await self.ws.send_str(orjson.dumps(message).decode())
        except (ConnectionError, aiohttp.ClientError) as err:
            raise errors.ProviderUnavailable(
                f"{self.dialect.provider}: the realtime connection failed while sending: {err}",
                provider=self.dialect.provider,
                model=self.dialect.model,
            ) from None

    async def _next(self) -> Mapping[str, Any] | None:
        """The next JSON message, or None once the socket is closed."""
        while True:
            msg = await self.ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                try:
                    found = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    raise self._protocol(
                        f"a message that is not JSON: {msg.data[:200]!r}"
                    ) from None
                if not isinstance(found, dict):
                    raise self._protocol("a message that is not a JSON object")
                return found
            if msg.type == aiohttp.WSMsgType.ERROR:
                if isinstance(msg.data, aiohttp.WebSocketError):
                    raise self._protocol(str(msg.data))
                return None
            if msg.type == aiohttp.WSMsgType.CLOSE:
                # From the frame itself: ws.close_code may read 1006 if answering the
                # close fails because the upstream has already dropped the connection.
                self.close_code = int(msg.data or 1005)
                self.close_reason = str(msg.extra or "")
                return None
            if msg.type in (
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                return None

    def _protocol(self, what: str) -> errors.UpstreamProtocolError:
        return errors.UpstreamProtocolError(
            f"{self.dialect.provider}: the realtime API sent {what}",
            provider=self.dialect.provider,
            model=self.dialect.model,
        )

    def _closed_error(self) -> errors.GatewayError:
        code = self.close_code or self.ws.close_code or 1006
        reason = ""
        exc = self.ws.exception()
        if exc is not None:
            reason = str(exc)
        return self.dialect.closed(code, self.close_reason or reason)


async def open_session(
    http: HttpClient,
    dialect: RealtimeDialect,
    config: rt.RealtimeSessionConfig,
) -> RealtimeUpstream:
    """Connect, send the session's opening and wait until the upstream says it is open.
    The opening is built first, so that a configuration the API cannot take is refused
    before anything is sent."""
    opening = dialect.opening(config)
    path, params = dialect.path()
    ws = await http.websocket(
        path, params=params, model=dialect.model, max_message_bytes=MAX_UPSTREAM_MESSAGE_BYTES
    )
    upstream = RealtimeUpstream(ws, dialect)
    await upstream.start(opening)
    return upstream


def close_error(provider: str, model: str, code: int, reason: str) -> errors.GatewayError:
    """The error an upstream WebSocket close means, by its code and (for 1008, the code
    both APIs use for refusals) its reason's words."""
    common: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "metadata": {"upstream_close_code": str(code)},
    }
    text = f"{provider}: the realtime session was closed ({code}{': ' + reason if reason else ''})"
    lowered = reason.lower()
    if code == 1008:
        if "key" in lowered or "auth" in lowered or "permission" in lowered:
            return errors.AuthenticationFailed(text, **common)
        if "quota" in lowered or "rate" in lowered or "exhausted" in lowered:
            return errors.RateLimited(text, **common)
        if "not found" in lowered or "not supported" in lowered:
            return errors.ModelNotFound(text, **common)
        return errors.UpstreamInvalidRequest(text, **common)
    if code == 1007:
        return errors.UpstreamInvalidRequest(text, **common)
    if code == 1013:
        return errors.ProviderOverloaded(text, **common)
    return errors.ProviderUnavailable(text, **common)


def usage_of(
    input_tokens: int,
    output_tokens: int,
    *,
    input_audio: int = 0,
    output_audio: int = 0,
    cached: int = 0,
) -> rt.RealtimeUsage:
    return rt.RealtimeUsage(
        input_tokens=max(0, input_tokens),
        output_tokens=max(0, output_tokens),
        input_audio_tokens=max(0, input_audio),
        output_audio_tokens=max(0, output_audio),
        cached_tokens=max(0, cached),
    )
