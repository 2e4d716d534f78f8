"""Gemini's Live API (``BidiGenerateContent`` over a WebSocket, key in
``x-goog-api-key``), as a realtime dialect.

Follows the Live API reference (client messages ``setup``, ``realtimeInput``,
``clientContent``, ``toolResponse``; server messages ``setupComplete``,
``serverContent`` with ``modelTurn`` parts (``inlineData`` audio, text),
``inputTranscription``/``outputTranscription``, ``interrupted``, ``turnComplete``;
``toolCall``; ``usageMetadata``) as checked against the ``google-genai`` 3.6.1 package's
``LiveClientMessage``/``LiveServerMessage`` types (2026-12-04).

The Live API has no message that cancels a response: ``response_cancel`` drops the rest
of the turn in progress here (nothing more of it reaches the caller) and its
``response_done`` says CANCELLED. Its turns have no ids: ratd numbers them ``turn-N``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from ratatoskr.v1 import realtime_pb2 as rt
from ratd import errors
from ratd.providers.realtime import close_error, usage_of
from ratd.providers.realtime_openai import _b64, tool_parameters

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
INPUT_RATE = 16000
OUTPUT_RATE = 24000


def _tokens(details: Any, modality: str) -> int:
    return sum(
        int(d.get("tokenCount") or 0)
        for d in details or ()
        if isinstance(d, Mapping) and d.get("modality") == modality
    )


class GeminiLive:
    """One session's translations and the little state a turn needs."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.responding = False
        self._manual = False  # turn detection NONE: activityStart/activityEnd
        self._speaking = False
        self._cancelled = False
        self._interrupted = False
        self._turns = 0
        self._usage = rt.RealtimeUsage()

    def path(self) -> tuple[str, dict[str, str]]:
        return PATH, {}

    def _setup(self, config: rt.RealtimeSessionConfig) -> dict[str, Any]:
        for name in ("input_audio_format", "output_audio_format"):
            if getattr(config, name) not in (
                rt.REALTIME_AUDIO_FORMAT_UNSPECIFIED,
                rt.REALTIME_AUDIO_FORMAT_PCM16,
            ):
                raise errors.UnsupportedParameter(
                    f"session.{name}: Gemini's Live API takes PCM16 audio only",
                    field=f"session.{name}",
                    parameter=name,
                    provider=self.provider,
                    model=self.model,
                )
        text_only = bool(config.output_modalities) and (
            rt.REALTIME_MODALITY_AUDIO not in config.output_modalities
        )
        generation: dict[str, Any] = {"responseModalities": ["TEXT" if text_only else "AUDIO"]}
        if config.voice:
            generation["speechConfig"] = {
                "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": config.voice}}
            }
        if config.HasField("temperature"):
            generation["temperature"] = config.temperature
        setup: dict[str, Any] = {"model": f"models/{self.model}", "generationConfig": generation}
        if config.instructions:
            setup["systemInstruction"] = {"parts": [{"text": config.instructions}]}
        if config.tools:
            declarations = [
                {"name": t.name, "description": t.description, "parameters": tool_parameters(t)}
                for t in config.tools
            ]
            setup["tools"] = [{"functionDeclarations": declarations}]
        if config.transcribe_input:
            setup["inputAudioTranscription"] = {}
        if not text_only:
            setup["outputAudioTranscription"] = {}
        self._manual = config.turn_detection.mode == rt.REALTIME_TURN_DETECTION_MODE_NONE
        if self._manual:
            setup["realtimeInputConfig"] = {"automaticActivityDetection": {"disabled": True}}
        return {"setup": setup}

    def opening(self, config: rt.RealtimeSessionConfig) -> list[dict[str, Any]]:
        return [self._setup(config)]

    def ready(self, message: Mapping[str, Any]) -> rt.RealtimeSessionCreated | None:
        if "setupComplete" not in message:
            return None
        return rt.RealtimeSessionCreated(
            provider=self.provider,
            model=self.model,
            input_sample_rate_hz=INPUT_RATE,
            output_sample_rate_hz=OUTPUT_RATE,
        )

    def to_upstream(self, event: rt.RealtimeRequest) -> list[dict[str, Any]]:
        kind = event.WhichOneof("event")
        if kind == "audio":
            out: list[dict[str, Any]] = []
            if self._manual and not self._speaking:
                self._speaking = True
                out.append({"realtimeInput": {"activityStart": {}}})
            blob = {
                "data": base64.b64encode(event.audio).decode(),
                "mimeType": f"audio/pcm;rate={INPUT_RATE}",
            }
            out.append({"realtimeInput": {"audio": blob}})
            return out
        if kind == "commit":
            if self._manual:
                self._speaking = False
                return [{"realtimeInput": {"activityEnd": {}}}]
            return [{"realtimeInput": {"audioStreamEnd": True}}]
        if kind == "text":
            turn = {"role": "user", "parts": [{"text": event.text}]}
            return [{"clientContent": {"turns": [turn], "turnComplete": True}}]
        if kind == "response_create":
            return [{"clientContent": {"turnComplete": True}}]
        if kind == "response_cancel":
            if self.responding:
                self._cancelled = True
            return []
        if kind == "tool_result":
            return [
                {
                    "toolResponse": {
                        "functionResponses": [self._function_response(event.tool_result)]
                    }
                }
            ]
        if kind == "session":
            raise errors.InvalidInput(
                "session: Gemini's Live API cannot change a session once set up",
                field="session",
                provider=self.provider,
                model=self.model,
            )
        return []

    @staticmethod
    def _function_response(result: rt.RealtimeToolResult) -> dict[str, Any]:
        try:
            output = orjson.loads(result.output_json) if result.output_json else {}
        except orjson.JSONDecodeError:
            output = result.output_json
        if not isinstance(output, dict):
            output = {"result": output}
        return {"id": result.call_id, "name": result.name, "response": output}

    def _turn_id(self) -> str:
        return f"turn-{self._turns + 1}"

    def from_upstream(self, message: Mapping[str, Any]) -> list[rt.RealtimeResponse]:
        out: list[rt.RealtimeResponse] = []
        if isinstance(message.get("usageMetadata"), Mapping):
            self._usage = self._usage_of(message["usageMetadata"])
        content = message.get("serverContent")
        if isinstance(content, Mapping):
            out += self._content(content)
        call = message.get("toolCall")
        if isinstance(call, Mapping):
            for fc in call.get("functionCalls") or ():
                args = orjson.dumps(fc.get("args") or {}).decode()
                found = rt.RealtimeToolCall(
                    call_id=str(fc.get("id") or ""),
                    name=str(fc.get("name") or ""),
                    arguments_json=args,
                    response_id=self._turn_id(),
                )
                out.append(rt.RealtimeResponse(tool_call=found))
        return out

    def _content(self, content: Mapping[str, Any]) -> list[rt.RealtimeResponse]:
        out: list[rt.RealtimeResponse] = []
        turn = self._turn_id()
        transcript = content.get("inputTranscription")
        if isinstance(transcript, Mapping) and transcript.get("text"):
            delta = rt.RealtimeTextDelta(text=str(transcript["text"]))
            out.append(rt.RealtimeResponse(input_transcript_delta=delta))
        model_turn = content.get("modelTurn")
        if isinstance(model_turn, Mapping):
            self.responding = True
            if not self._cancelled:
                out += self._parts(model_turn.get("parts") or (), turn)
        transcript = content.get("outputTranscription")
        if isinstance(transcript, Mapping) and transcript.get("text") and not self._cancelled:
            self.responding = True
            delta = rt.RealtimeTextDelta(text=str(transcript["text"]), response_id=turn)
            out.append(rt.RealtimeResponse(output_transcript_delta=delta))
        if content.get("interrupted"):
            self._interrupted = True
            out.append(rt.RealtimeResponse(speech_started=rt.RealtimeSpeechStarted()))
        if content.get("turnComplete"):
            out.append(rt.RealtimeResponse(response_done=self._turn_done(turn)))
        return out

    def _parts(self, parts: Any, turn: str) -> list[rt.RealtimeResponse]:
        out = []
        for part in parts:
            if not isinstance(part, Mapping):
                continue
            inline = part.get("inlineData")
            if isinstance(inline, Mapping) and str(inline.get("mimeType", "")).startswith("audio/"):
                data = _b64(inline.get("data"), self.provider, self.model)
                out.append(
                    rt.RealtimeResponse(
                        audio_delta=rt.RealtimeAudioDelta(data=data, response_id=turn)
                    )
                )
            elif part.get("text") and not part.get("thought"):
                delta = rt.RealtimeTextDelta(text=str(part["text"]), response_id=turn)
                out.append(rt.RealtimeResponse(text_delta=delta))
        return out

    def _turn_done(self, turn: str) -> rt.RealtimeResponseDone:
        cancelled = self._cancelled or self._interrupted
        status = (
            rt.REALTIME_RESPONSE_STATUS_CANCELLED
            if cancelled
            else rt.REALTIME_RESPONSE_STATUS_COMPLETED
        )
        done = rt.RealtimeResponseDone(response_id=turn, status=status, usage=self._usage)
        self._turns += 1
        self._usage = rt.RealtimeUsage()
        self.responding = self._cancelled = self._interrupted = False
        return done

    @staticmethod
    def _usage_of(meta: Mapping[str, Any]) -> rt.RealtimeUsage:
        """A turn's usage: the last ``usageMetadata`` before its ``turnComplete``."""
        output = meta.get("responseTokenCount", meta.get("candidatesTokenCount"))
        return usage_of(
            int(meta.get("promptTokenCount") or 0),
            int(output or 0),
            input_audio=_tokens(meta.get("promptTokensDetails"), "AUDIO"),
            output_audio=_tokens(
                meta.get("responseTokensDetails", meta.get("candidatesTokensDetails")), "AUDIO"
            ),
            cached=int(meta.get("cachedContentTokenCount") or 0),
        )

    def closed(self, code: int, reason: str) -> errors.GatewayError:
        return close_error(self.provider, self.model, code, reason)
