"""The HuggingFace Inference API's media tasks, as pure functions (the I/O is
HuggingFaceProvider's). Follows huggingface.co/docs/inference-providers/tasks
(automatic-speech-recognition, text-to-image, text-to-speech; as of 2026-12):

* automatic-speech-recognition: ``{"inputs": <base64 audio>, "parameters":
  {"return_timestamps": true}}`` → ``{"text", "chunks": [{"text", "timestamp": [start,
  end]}]}``;
* text-to-image: ``{"inputs": prompt, "parameters": {"width", "height"}}`` → the image
  bytes (``image/jpeg`` or ``image/png``);
* text-to-speech: ``{"inputs": text}`` → the audio bytes (whole, not streamed: ratd passes
  them on as one chunk).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from ratatoskr.v1 import media_pb2
from ratd import errors
from ratd.mime import sniff_audio, sniff_image
from ratd.providers.messages import unsupported


def asr_body(request: media_pb2.TranscribeRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": base64.b64encode(request.audio).decode()}
    if request.timestamps:
        body["parameters"] = {"return_timestamps": True}
    return body


def transcription(data: Any, provider: str, model: str) -> media_pb2.TranscribeResponse:
    if not isinstance(data, Mapping) or not isinstance(data.get("text"), str):
        raise errors.UpstreamProtocolError(
            f"{provider}: the speech recognition answer has no text", provider=provider, model=model
        )
    answer = media_pb2.TranscribeResponse(text=data["text"], model=model, provider=provider)
    for chunk in data.get("chunks") or ():
        stamp = chunk.get("timestamp") if isinstance(chunk, Mapping) else None
        if isinstance(stamp, list) and len(stamp) == 2:
            start, end = stamp
            answer.segments.add(
                start_secs=float(start or 0),
                end_secs=float(end if end is not None else start or 0),
                text=str(chunk.get("text") or ""),
            )
    return answer


def image_body(
    request: media_pb2.GenerateImageRequest, provider: str, model: str
) -> dict[str, Any]:
    if request.input_images:
        raise unsupported(provider, model, "input_images", "text-to-image takes no input image")
    if request.count > 1:
        raise unsupported(provider, model, "count", "text-to-image makes one image per request")
    body: dict[str, Any] = {"inputs": request.prompt}
    if request.size and request.size != "auto":
        width, _, height = request.size.partition("x")
        body["parameters"] = {"width": int(width), "height": int(height)}
    return body


def image(raw: bytes, provider: str, model: str) -> media_pb2.GenerateImageResponse:
    kind = sniff_image(raw)
    if kind is None:
        raise errors.UpstreamProtocolError(
            f"{provider}: text-to-image answered something that is not an image",
            provider=provider,
            model=model,
        )
    answer = media_pb2.GenerateImageResponse(model=model, provider=provider)
    answer.images.add(data=raw, mime_type=kind)
    return answer


def speech_body(request: media_pb2.SynthesizeRequest, provider: str, model: str) -> dict[str, Any]:
    for field in ("voice", "instructions"):
        if getattr(request, field):
            raise unsupported(provider, model, field, "text-to-speech takes the text alone")
    if request.HasField("speed"):
        raise unsupported(provider, model, "speed", "text-to-speech takes the text alone")
    return {"inputs": request.text}


def speech_mime(raw: bytes, content_type: str) -> str:
    return sniff_audio(raw) or content_type or "application/octet-stream"
