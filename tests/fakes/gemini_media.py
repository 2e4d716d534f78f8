"""Gemini's media answers on the fake Gemini upstream (``FakeGeminiUpstream``), as the
API reference describes them (ai.google.dev/api: "Image generation", "Speech generation",
"Document/Audio/Video understanding", as of 2026-12), names checked against the
``google-genai`` 3.6.1 package's types (``Part.inline_data``/``Blob``,
``Part.file_data``/``FileData``, ``GenerationConfig.response_modalities``,
``speech_config.voice_config.prebuilt_voice_config.voice_name``, ``image_config.
aspect_ratio``):

* a request whose ``generationConfig.responseModalities`` holds ``IMAGE`` is answered
  with a text part and an ``inlineData`` PNG (``:generateContent``);
* one holding ``AUDIO`` (a TTS model) is answered on ``:streamGenerateContent?alt=sse``
  with events each carrying one ``inlineData`` part of ``audio/L16;codec=pcm;rate=24000``
  audio, the last with ``finishReason: STOP``. When ``fake.media.hold_speech`` is an
  ``asyncio.Event`` the fake sends the first event, then waits for it;
  ``fake.media.speech_finished`` says whether it had sent everything;
* ``inlineData`` parts must carry a ``mimeType`` and base64 ``data``; ``fileData`` parts
  a ``fileUri`` (400 otherwise, as the API answers).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.openai_media import tiny_png

REFERENCE = "ai.google.dev/api (image, speech, document/audio/video), 2026-12; google-genai 3.6.1"
SPEECH_EVENTS = 3
IMAGE_TEXT = "Here is the ash tree."
PCM_MIME = "audio/L16;codec=pcm;rate=24000"


def pcm_chunk(index: int) -> bytes:
    return bytes([index + 1, 0]) * 240


@dataclass
class GeminiMediaState:
    hold_speech: asyncio.Event | None = None
    speech_finished: bool = False


def check_parts(body: Mapping[str, Any]) -> str:
    """What the API refuses in inlineData / fileData parts ("" when nothing)."""
    for i, content in enumerate(body.get("contents") or ()):
        for j, part in enumerate(content.get("parts") or ()):
            where = f"contents[{i}].parts[{j}]"
            if "inlineData" in part:
                blob = part["inlineData"]
                if not blob.get("mimeType"):
                    return f"* GenerateContentRequest.{where}.inline_data.mime_type: required"
                try:
                    base64.b64decode(blob.get("data") or "", validate=True)
                except (binascii.Error, ValueError):
                    return f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
            if "fileData" in part and not part["fileData"].get("fileUri"):
                return f"* GenerateContentRequest.{where}.file_data.file_uri: required"
    return ""


def modalities(body: Mapping[str, Any]) -> list[str]:
    return list((body.get("generationConfig") or {}).get("responseModalities") or ())


def _usage(prompt: int, output: int) -> dict[str, Any]:
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output,
    }


def image_answer(model: str) -> web.Response:
    image = base64.b64encode(tiny_png(7)).decode()
    parts = [{"text": IMAGE_TEXT}, {"inlineData": {"mimeType": "image/png", "data": image}}]
    answer = {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": _usage(12, 1290),
        "modelVersion": model,
    }
    return web.json_response(answer)


async def speech_answer(
    request: web.Request, state: GeminiMediaState, model: str
) -> web.StreamResponse:
    state.speech_finished = False
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for index in range(SPEECH_EVENTS):
        last = index == SPEECH_EVENTS - 1
        candidate: dict[str, Any] = {
            "content": {
                "role": "model",
                "parts": [
                    {
                        "inlineData": {
                            "mimeType": PCM_MIME,
                            "data": base64.b64encode(pcm_chunk(index)).decode(),
                        }
                    }
                ],
            },
            "index": 0,
        }
        if last:
            candidate["finishReason"] = "STOP"
        event = {
            "candidates": [candidate],
            "usageMetadata": _usage(8, 40 * (index + 1)),
            "modelVersion": model,
        }
        await response.write(
            b"data: " + json.dumps(event, separators=(",", ": ")).encode() + b"\r\n\r\n"
        )
        if index == 0 and state.hold_speech is not None:
            await state.hold_speech.wait()
    await response.write_eof()
    state.speech_finished = True
    return response
