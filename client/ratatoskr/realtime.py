"""A realtime session with ratd (``ServiceClient.realtime``): send audio, text, tool
results and interruptions; receive audio, text, transcripts, tool calls and the usage.

    async with client.realtime("gpt-realtime", voice="marin") as session:
        await session.send_audio(pcm16_chunk)
        await session.commit()
        await session.create_response()
        async for event in session:
            ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from ratatoskr.errors import from_rpc_error
from ratatoskr.v1 import realtime_pb2 as rt


def session_config(
    model: str,
    *,
    voice: str = "",
    instructions: str = "",
    text_only: bool = False,
    tools: Iterable[rt.RealtimeTool] = (),
    transcribe_input: bool = False,
    manual_turns: bool = False,
    temperature: float | None = None,
) -> rt.RealtimeSessionConfig:
    """A session configuration from plain values (``manual_turns``: no voice activity
    detection; the caller commits its audio and asks for responses)."""
    config = rt.RealtimeSessionConfig(
        model=model,
        voice=voice,
        instructions=instructions,
        tools=list(tools),
        transcribe_input=transcribe_input,
    )
    if text_only:
        config.output_modalities.append(rt.REALTIME_MODALITY_TEXT)
    if manual_turns:
        config.turn_detection.mode = rt.REALTIME_TURN_DETECTION_MODE_NONE
    if temperature is not None:
        config.temperature = temperature
    return config


class RealtimeSession:
    """One open session: ``send`` client events, ``receive`` server events (None once the
    session has ended), or iterate over them. Errors raise ``RatatoskrError``s."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self.created = rt.RealtimeSessionCreated()

    async def send(self, event: rt.RealtimeRequest) -> None:
        try:
            await self._call.write(event)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    async def send_audio(self, data: bytes) -> None:
        await self.send(rt.RealtimeRequest(audio=data))

    async def commit(self) -> None:
        await self.send(rt.RealtimeRequest(commit=rt.RealtimeCommit()))

    async def send_text(self, text: str) -> None:
        await self.send(rt.RealtimeRequest(text=text))

    async def create_response(self, instructions: str = "") -> None:
        create = rt.RealtimeResponseCreate(instructions=instructions)
        await self.send(rt.RealtimeRequest(response_create=create))

    async def cancel_response(self) -> None:
        await self.send(rt.RealtimeRequest(response_cancel=rt.RealtimeResponseCancel()))

    async def send_tool_result(self, call_id: str, output_json: str, name: str = "") -> None:
        result = rt.RealtimeToolResult(call_id=call_id, name=name, output_json=output_json)
        await self.send(rt.RealtimeRequest(tool_result=result))

    async def update(self, config: rt.RealtimeSessionConfig) -> None:
        await self.send(rt.RealtimeRequest(session=config))

    async def end(self) -> None:
        """Send nothing more: ratd ends the session after the response in progress (its
        last event is ``session_ended`` with the session's usage)."""
        try:
            await self._call.done_writing()
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    async def receive(self) -> rt.RealtimeResponse | None:
        try:
            event = await self._call.read()
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        if event is grpc.aio.EOF:
            return None
        return event

    async def __aiter__(self) -> AsyncIterator[rt.RealtimeResponse]:
        while (event := await self.receive()) is not None:
            yield event

    def close(self) -> None:
        """Leave at once (ratd closes the upstream session)."""
        self._call.cancel()


class RealtimeOpening:
    """``async with client.realtime(...) as session``: the session configured and opened
    (its ``created`` event read), cancelled on leaving."""

    def __init__(self, call: Any, config: rt.RealtimeSessionConfig) -> None:
        self._session = RealtimeSession(call)
        self._config = config

    async def __aenter__(self) -> RealtimeSession:
        session = self._session
        try:
            await session.update(self._config)
            first = await session.receive()
            if first is None or first.WhichOneof("event") != "session_created":
                raise RuntimeError(f"ratd opened no realtime session (got {first})")
            session.created = first.session_created
        except BaseException:
            session.close()
            raise
        return session

    async def __aexit__(self, *_: object) -> None:
        self._session.close()
