"""OpenAI's Realtime API (GA interface, ``wss://api.openai.com/v1/realtime?model=...``,
bearer key), as a realtime dialect.

Follows the GA Realtime API reference (client events ``session.update``,
``input_audio_buffer.append``/``commit``, ``conversation.item.create``,
``response.create``/``cancel``; server events ``session.created``,
``response.output_audio.delta``, ``response.output_text.delta``,
``response.output_audio_transcript.delta``,
``conversation.item.input_audio_transcription.delta``,
``response.function_call_arguments.done``, ``response.done``, ``error``) as checked
against the ``openai`` 3.60.0 package's ``types/realtime`` definitions (2026-12-04).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from ratatoskr.v1 import realtime_pb2 as rt
from ratd import errors
from ratd.providers.realtime import close_error, usage_of

_FORMATS = {
    rt.REALTIME_AUDIO_FORMAT_UNSPECIFIED: {"type": "audio/pcm", "rate": 24000},
    rt.REALTIME_AUDIO_FORMAT_PCM16: {"type": "audio/pcm", "rate": 24000},
    rt.REALTIME_AUDIO_FORMAT_G711_ULAW: {"type": "audio/pcmu"},
    rt.REALTIME_AUDIO_FORMAT_G711_ALAW: {"type": "audio/pcma"},
}
_STATUS = {
    "completed": rt.REALTIME_RESPONSE_STATUS_COMPLETED,
    "cancelled": rt.REALTIME_RESPONSE_STATUS_CANCELLED,
    "incomplete": rt.REALTIME_RESPONSE_STATUS_INCOMPLETE,
    "failed": rt.REALTIME_RESPONSE_STATUS_FAILED,
}
# The transcription model asked for when the caller wants its audio transcribed.
TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"


def _rate(fmt: int) -> int:
    return (
        24000
        if fmt in (rt.REALTIME_AUDIO_FORMAT_UNSPECIFIED, rt.REALTIME_AUDIO_FORMAT_PCM16)
        else 8000
    )


def _turn_detection(td: rt.RealtimeTurnDetection) -> dict[str, Any] | None:
    if td.mode == rt.REALTIME_TURN_DETECTION_MODE_NONE:
        return None
    kind = (
        "semantic_vad" if td.mode == rt.REALTIME_TURN_DETECTION_MODE_SEMANTIC_VAD else "server_vad"
    )
    found: dict[str, Any] = {"type": kind}
    if kind == "server_vad":
        for name in ("threshold", "silence_duration_ms", "prefix_padding_ms"):
            if td.HasField(name):
                found[name] = getattr(td, name)
    return found


def tool_parameters(tool: rt.RealtimeTool) -> dict[str, Any]:
    """A tool's JSON Schema as an object (INVALID_ARGUMENT when it is not one)."""
    if not tool.parameters_json:
        return {"type": "object", "properties": {}}
    try:
        found = orjson.loads(tool.parameters_json)
    except orjson.JSONDecodeError as err:
        raise errors.InvalidInput(
            f"session.tools: {tool.name}: parameters_json is not JSON: {err}",
            field="session.tools.parameters_json",
        ) from None
    if not isinstance(found, dict):
        raise errors.InvalidInput(
            f"session.tools: {tool.name}: parameters_json must be a JSON object",
            field="session.tools.parameters_json",
        )
    return found


class OpenAIRealtime:
    """One session's translations (it remembers whether a response is in progress)."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.responding = False

    def path(self) -> tuple[str, dict[str, str]]:
        return "/realtime", {"model": self.model}

    def session(self, config: rt.RealtimeSessionConfig) -> dict[str, Any]:
        session: dict[str, Any] = {"type": "realtime"}
        if config.output_modalities:
            text_only = rt.REALTIME_MODALITY_AUDIO not in config.output_modalities
            session["output_modalities"] = ["text"] if text_only else ["audio"]
        if config.instructions:
            session["instructions"] = config.instructions
        audio_in: dict[str, Any] = {"format": _FORMATS[config.input_audio_format]}
        if config.HasField("turn_detection"):
            audio_in["turn_detection"] = _turn_detection(config.turn_detection)
        if config.transcribe_input:
            audio_in["transcription"] = {"model": TRANSCRIPTION_MODEL}
        audio_out: dict[str, Any] = {"format": _FORMATS[config.output_audio_format]}
        if config.voice:
            audio_out["voice"] = config.voice
        session["audio"] = {"input": audio_in, "output": audio_out}
        if config.tools:
            session["tools"] = [
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool_parameters(tool),
                }
                for tool in config.tools
            ]
        return session

    def opening(self, config: rt.RealtimeSessionConfig) -> list[dict[str, Any]]:
        self._config = config
        return [{"type": "session.update", "session": self.session(config)}]

    def ready(self, message: Mapping[str, Any]) -> rt.RealtimeSessionCreated | None:
        if message.get("type") != "session.created":
            return None
        session = message.get("session") or {}
        config = self._config
        return rt.RealtimeSessionCreated(
            provider=self.provider,
            model=self.model,
            session_id=str(session.get("id") or ""),
            input_sample_rate_hz=_rate(config.input_audio_format),
            output_sample_rate_hz=_rate(config.output_audio_format),
        )

    def to_upstream(self, event: rt.RealtimeRequest) -> list[dict[str, Any]]:
        kind = event.WhichOneof("event")
        if kind == "audio":
            return [
                {
                    "type": "input_audio_buffer.append",
                    "audio": base64.b64encode(event.audio).decode(),
                }
            ]
        if kind == "commit":
            return [{"type": "input_audio_buffer.commit"}]
        if kind == "text":
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": event.text}],
            }
            return [{"type": "conversation.item.create", "item": item}]
        if kind == "response_create":
            create: dict[str, Any] = {"type": "response.create"}
            if event.response_create.instructions:
                create["response"] = {"instructions": event.response_create.instructions}
            return [create]
        if kind == "response_cancel":
            return [{"type": "response.cancel"}]
        if kind == "tool_result":
            result = event.tool_result
            item = {
                "type": "function_call_output",
                "call_id": result.call_id,
                "output": result.output_json,
            }
            return [{"type": "conversation.item.create", "item": item}]
        if kind == "session":
            return [{"type": "session.update", "session": self.session(event.session)}]
        return []

    def from_upstream(  # noqa: PLR0911 (one answer per event type)
        self, message: Mapping[str, Any]
    ) -> list[rt.RealtimeResponse]:
        kind = message.get("type")
        response_id = str(message.get("response_id") or "")
        if kind == "response.output_audio.delta":
            data = _b64(message.get("delta"), self.provider, self.model)
            return [
                rt.RealtimeResponse(
                    audio_delta=rt.RealtimeAudioDelta(data=data, response_id=response_id)
                )
            ]
        if kind == "response.output_text.delta":
            delta = rt.RealtimeTextDelta(
                text=str(message.get("delta") or ""), response_id=response_id
            )
            return [rt.RealtimeResponse(text_delta=delta)]
        if kind == "response.output_audio_transcript.delta":
            delta = rt.RealtimeTextDelta(
                text=str(message.get("delta") or ""), response_id=response_id
            )
            return [rt.RealtimeResponse(output_transcript_delta=delta)]
        if kind == "conversation.item.input_audio_transcription.delta":
            delta = rt.RealtimeTextDelta(text=str(message.get("delta") or ""))
            return [rt.RealtimeResponse(input_transcript_delta=delta)]
        if kind == "response.function_call_arguments.done":
            call = rt.RealtimeToolCall(
                call_id=str(message.get("call_id") or ""),
                name=str(message.get("name") or ""),
                arguments_json=str(message.get("arguments") or ""),
                response_id=response_id,
            )
            return [rt.RealtimeResponse(tool_call=call)]
        if kind == "response.created":
            self.responding = True
            return []
        if kind == "response.done":
            self.responding = False
            return [rt.RealtimeResponse(response_done=_done(message.get("response") or {}))]
        if kind == "input_audio_buffer.speech_started":
            return [rt.RealtimeResponse(speech_started=rt.RealtimeSpeechStarted())]
        if kind == "error":
            error = message.get("error") or {}
            found = rt.RealtimeError(
                code=str(error.get("code") or error.get("type") or ""),
                message=str(error.get("message") or ""),
            )
            return [rt.RealtimeResponse(error=found)]
        return []

    def closed(self, code: int, reason: str) -> errors.GatewayError:
        return close_error(self.provider, self.model, code, reason)


def _done(response: Mapping[str, Any]) -> rt.RealtimeResponseDone:
    usage = response.get("usage") or {}
    details_in = usage.get("input_token_details") or {}
    details_out = usage.get("output_token_details") or {}
    return rt.RealtimeResponseDone(
        response_id=str(response.get("id") or ""),
        status=_STATUS.get(str(response.get("status")), rt.REALTIME_RESPONSE_STATUS_UNSPECIFIED),
        usage=usage_of(
            int(usage.get("input_tokens") or 0),
            int(usage.get("output_tokens") or 0),
            input_audio=int(details_in.get("audio_tokens") or 0),
            output_audio=int(details_out.get("audio_tokens") or 0),
            cached=int(details_in.get("cached_tokens") or 0),
        ),
    )


def _b64(value: Any, provider: str, model: str) -> bytes:
    try:
        return base64.b64decode(str(value or ""), validate=True)
    except (binascii.Error, ValueError):
        raise errors.UpstreamProtocolError(
            f"{provider}: the realtime API sent audio that is not base64",
            provider=provider,
            model=model,
        ) from None
