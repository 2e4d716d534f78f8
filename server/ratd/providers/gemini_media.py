"""Gemini's media, as pure functions (the I/O is GeminiProvider's).

Follows the Gemini API reference (ai.google.dev/api, "Image generation", "Speech
generation", "Document understanding", "Audio understanding", "Video understanding", as
of 2026-12), names checked against the ``google-genai`` 3.6.1 package's types (``Part``,
``Blob``, ``FileData``, ``GenerationConfig.response_modalities``, ``SpeechConfig``,
``ImageConfig``):

* documents, audio and video in chat are ``inlineData`` parts (``mimeType``, base64
  ``data``) or, by URI, ``fileData`` parts (``mimeType``, ``fileUri``);
* images are made by ``generateContent`` with ``responseModalities: ["TEXT", "IMAGE"]``
  (input images for edits as ``inlineData`` parts after the prompt, the size as
  ``imageConfig.aspectRatio``); they come back as ``inlineData`` parts;
* speech is ``streamGenerateContent?alt=sse`` of a TTS model with
  ``responseModalities: ["AUDIO"]`` and ``speechConfig.voiceConfig.prebuiltVoiceConfig
  .voiceName``; each event's ``inlineData`` is 16-bit PCM (``audio/L16;codec=pcm;
  rate=24000``), passed on as it arrives.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping
from typing import Any

from ratatoskr.v1 import chat_pb2, media_pb2
from ratd import errors
from ratd.mime import sniff_image
from ratd.providers.messages import unsupported

# The aspect ratios imageConfig takes.
ASPECT_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
DEFAULT_VOICE = "Kore"
PCM_MIME = "audio/L16;codec=pcm;rate=24000"


def media_part(part: chat_pb2.ContentPart) -> dict[str, Any]:
    """A document, audio or video part: inline bytes, or a file URI the API fetches."""
    kind = part.WhichOneof("part")
    media = getattr(part, kind or "document")
    if media.WhichOneof("source") == "url":
        return {"fileData": {"mimeType": media.mime_type, "fileUri": media.url}}
    return {
        "inlineData": {"mimeType": media.mime_type, "data": base64.b64encode(media.data).decode()}
    }


def aspect_ratio(size: str, provider: str, model: str) -> str:
    """ "1024x1024" → "1:1", when it is one of the ratios the API takes."""
    width, _, height = size.partition("x")
    divisor = math.gcd(int(width), int(height))
    ratio = f"{int(width) // divisor}:{int(height) // divisor}"
    if ratio not in ASPECT_RATIOS:
        raise unsupported(provider, model, "size", f"aspect ratio {ratio} is none of Gemini's")
    return ratio


def image_body(
    request: media_pb2.GenerateImageRequest, provider: str, model: str
) -> dict[str, Any]:
    if request.count > 1:
        raise unsupported(provider, model, "count", "Gemini makes one image per request")
    if request.HasField("mask"):
        raise unsupported(provider, model, "mask", "Gemini edits by prompt, without masks")
    parts: list[dict[str, Any]] = [{"text": request.prompt}]
    for image in request.input_images:
        data = base64.b64encode(image.data).decode()
        parts.append({"inlineData": {"mimeType": image.mime_type, "data": data}})
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if request.size and request.size != "auto":
        config["imageConfig"] = {"aspectRatio": aspect_ratio(request.size, provider, model)}
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def _parts(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    candidates = data.get("candidates") or []
    if not candidates or not isinstance(candidates[0], dict):
        return []
    content = candidates[0].get("content") or {}
    return [p for p in content.get("parts") or () if isinstance(p, dict)]


def usage(data: Mapping[str, Any]) -> chat_pb2.Usage | None:
    meta = data.get("usageMetadata")
    if not isinstance(meta, dict):
        return None
    prompt = int(meta.get("promptTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0)
    total = int(meta.get("totalTokenCount") or prompt + completion)
    return chat_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def images_from_wire(
    data: Mapping[str, Any], provider: str, model: str
) -> media_pb2.GenerateImageResponse:
    answer = media_pb2.GenerateImageResponse(model=model, provider=provider)
    texts: list[str] = []
    for part in _parts(data):
        inline = part.get("inlineData")
        if isinstance(inline, dict) and str(inline.get("mimeType", "")).startswith("image/"):
            raw = base64.b64decode(str(inline.get("data") or ""))
            answer.images.add(data=raw, mime_type=sniff_image(raw) or str(inline["mimeType"]))
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
    answer.text = "".join(texts)
    if not answer.images:
        raise errors.UpstreamProtocolError(
            f"{provider}: the answer holds no image"
            + (f" (the model said: {answer.text[:200]!r})" if answer.text else ""),
            provider=provider,
            model=model,
        )
    found = usage(data)
    if found is not None:
        answer.usage.CopyFrom(found)
    return answer


def wav_header(rate: int = 24000) -> bytes:
    """The header of a streamed WAV of 16-bit mono PCM at ``rate``: its sizes are the
    largest a RIFF can say, as for any WAV written before its length is known."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


def speech_body(request: media_pb2.SynthesizeRequest, provider: str, model: str) -> dict[str, Any]:
    if request.format not in ("", "pcm", "wav"):
        raise unsupported(
            provider, model, "format", "Gemini speaks 24 kHz 16-bit PCM (pcm, or wav around it)"
        )
    if request.HasField("speed"):
        raise unsupported(provider, model, "speed", "say the pace in instructions instead")
    text = f"{request.instructions}: {request.text}" if request.instructions else request.text
    voice = {"prebuiltVoiceConfig": {"voiceName": request.voice or DEFAULT_VOICE}}
    return {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": voice},
        },
    }


def audio_chunks(data: Mapping[str, Any]) -> list[tuple[bytes, str]]:
    """The audio of one streamed response, with its MIME type."""
    found: list[tuple[bytes, str]] = []
    for part in _parts(data):
        inline = part.get("inlineData")
        if isinstance(inline, dict) and str(inline.get("mimeType", "")).startswith("audio/"):
            found.append((base64.b64decode(str(inline.get("data") or "")), str(inline["mimeType"])))
    return found
