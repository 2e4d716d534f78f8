"""Realtime sessions: the caller's client events validated and relayed to one upstream
session, the upstream's server events relayed back, the usage settled at the end.

The session opens with the first provider (of the model's route, those serving
``realtime``, those the caller may use) that accepts it; once open, nothing falls back:
a failure ends the call with its status. Two loops run: the caller's events go upstream
in a task of their own (``_pump``), the upstream's events come back in the caller's
stream. Each waits on its socket, so neither buffers more than one message: a caller
that stops reading stops ratd reading the upstream, an upstream that stops taking input
stops ratd reading the caller. When the caller goes (cancelled), or either side fails,
the upstream socket is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ratatoskr.v1 import chat_pb2
from ratatoskr.v1 import realtime_pb2 as rt
from ratd import errors
from ratd.core.calls import CallInfo
from ratd.core.validation import validate_model, validate_size
from ratd.providers.base import Provider
from ratd.providers.realtime import RealtimeUpstream

if TYPE_CHECKING:
    from ratd.core.gateway import Gateway

log = logging.getLogger(__name__)

# Largest audio chunk one client event may carry: 256 KiB is over 5 s of 24 kHz PCM16,
# far more than a live caller sends at once (OpenAI takes up to 15 MiB per append; a
# smaller cap keeps one event from holding ratd's memory).
MAX_AUDIO_CHUNK_BYTES = 256 * 1024
CAPABILITY = "realtime"


@dataclass(slots=True)
class _State:
    """What the caller's side tells the upstream side."""

    input_done: bool = False
    failure: BaseException | None = None


def _validate_config(config: rt.RealtimeSessionConfig, max_bytes: int) -> None:
    validate_model("session.model", config.model)
    if config.ByteSize() > max_bytes:
        raise errors.InvalidInput(
            f"session: {config.ByteSize()} bytes; at most {max_bytes} (server.max_request_bytes)",
            field="session",
        )
    names = set()
    for i, tool in enumerate(config.tools):
        if not tool.name:
            raise errors.InvalidInput(f"session.tools[{i}].name: required", field="session.tools")
        if tool.name in names:
            raise errors.InvalidInput(
                f"session.tools[{i}].name: {tool.name!r} is named twice", field="session.tools"
            )
        names.add(tool.name)


def validate_event(event: rt.RealtimeRequest, model: str, max_bytes: int) -> None:
    """Refuse a client event after the first that is empty, too large, or changes the
    session's model."""
    kind = event.WhichOneof("event")
    if kind is None:
        raise errors.InvalidInput("event: a client event with nothing set", field="event")
    if kind == "audio" and len(event.audio) > MAX_AUDIO_CHUNK_BYTES:
        raise errors.InvalidInput(
            f"audio: {len(event.audio)} bytes in one event; at most {MAX_AUDIO_CHUNK_BYTES} "
            "(send the audio in smaller chunks)",
            field="audio",
        )
    if kind == "text":
        validate_size("text", event.text, max_bytes)
    if kind == "tool_result":
        if not event.tool_result.call_id:
            raise errors.InvalidInput("tool_result.call_id: required", field="tool_result.call_id")
        validate_size("tool_result.output_json", event.tool_result.output_json, max_bytes)
    if kind == "session":
        _validate_config(event.session, max_bytes)
        if event.session.model != model:
            raise errors.InvalidInput(
                f"session.model: a session's model cannot change ({model!r} to "
                f"{event.session.model!r}); open a new session",
                field="session.model",
            )


async def _first(requests: AsyncIterator[rt.RealtimeRequest]) -> rt.RealtimeSessionConfig:
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise errors.InvalidInput(
            "session: the caller ended the stream before configuring a session", field="session"
        ) from None
    if first.WhichOneof("event") != "session":
        raise errors.InvalidInput(
            "session: the first client event must configure the session "
            f"(got {first.WhichOneof('event') or 'an empty event'})",
            field="session",
        )
    return first.session


async def _pump(
    requests: AsyncIterator[rt.RealtimeRequest],
    upstream: RealtimeUpstream,
    state: _State,
    model: str,
    max_bytes: int,
) -> None:
    """The caller's events upstream, one at a time; at their end, the session closed
    unless a response is on its way (the other loop ends it after that response)."""
    try:
        async for event in requests:
            validate_event(event, model, max_bytes)
            await upstream.send(event)
        state.input_done = True
        if not upstream.responding:
            await upstream.close()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the call's failure, raised by the other loop
        state.failure = exc
        await upstream.close()


class Settlement:
    """The usage of a session's responses, priced and counted as they end."""

    def __init__(self, gateway: Gateway, provider: Provider, model: str, info: CallInfo | None):
        self.gateway, self.provider, self.model, self.info = gateway, provider, model, info
        self.total = rt.RealtimeUsage()
        self.total_chat = chat_pb2.Usage()

    def response(self, usage: rt.RealtimeUsage) -> None:
        """Price one response's usage (in place) and add it to the session's."""
        chat = chat_pb2.Usage(
            prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            total_tokens=usage.input_tokens + usage.output_tokens,
        )
        self.gateway._account(self.provider, self.model, chat, self.info)
        total = self.total
        for name in (
            "input_tokens",
            "output_tokens",
            "input_audio_tokens",
            "output_audio_tokens",
            "cached_tokens",
        ):
            setattr(total, name, getattr(total, name) + getattr(usage, name))
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            setattr(self.total_chat, name, getattr(self.total_chat, name) + getattr(chat, name))
        if chat.HasField("cost_usd"):
            usage.cost_usd = chat.cost_usd
            total.cost_usd = total.cost_usd + chat.cost_usd
            self.total_chat.cost_usd = total.cost_usd
        if self.info is not None:
            self.info.usage = self.total_chat


async def session(
    gateway: Gateway,
    requests: AsyncIterator[rt.RealtimeRequest],
    info: CallInfo | None,
) -> AsyncIterator[rt.RealtimeResponse]:
    """One realtime session, from the caller's first event to its end."""
    config = await _first(requests)
    _validate_config(config, gateway.max_bytes)

    def unit(provider: Provider, model: str) -> Awaitable[RealtimeUpstream]:
        return provider.realtime(config, model)

    upstream: RealtimeUpstream = await gateway._first_success(CAPABILITY, config.model, unit, info)
    provider = gateway.providers[upstream.dialect.provider]
    settlement = Settlement(gateway, provider, upstream.dialect.model, info)
    state = _State()
    pump = asyncio.create_task(
        _pump(requests, upstream, state, config.model, gateway.max_bytes),
        name="realtime-pump",
    )
    try:
        yield rt.RealtimeResponse(session_created=upstream.created)
        while True:
            events = await upstream.receive()
            if events is None:
                if state.failure is not None:
                    raise state.failure
                if state.input_done:
                    break
                raise upstream.closed_error()
            for event in events:
                if event.WhichOneof("event") == "response_done":
                    settlement.response(event.response_done.usage)
                yield event
            if state.input_done and not upstream.responding:
                break
        yield rt.RealtimeResponse(session_ended=rt.RealtimeSessionEnded(usage=settlement.total))
    finally:
        pump.cancel()
        await upstream.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
