"""OpenAI's media endpoints, as pure functions from the ratatoskr.v1 requests to the
upstream's bodies and back (the I/O is OpenAIProvider's).

Follows the API reference (platform.openai.com/docs/api-reference, as of 2026-12), names
checked against the ``openai`` 3.60.0 package's types:

* ``POST /images/generations`` (JSON: model, prompt, n, size, quality, output_format;
  ``response_format: b64_json`` for the DALL·E models only, which the GPT image models
  refuse) and ``POST /images/edits`` (multipart: ``image[]`` per input image, ``mask``,
  the same fields); answers ``ImagesResponse``: ``data[].b64_json``,
  ``data[].revised_prompt``, ``output_format``, ``usage`` (input/output tokens);
* ``POST /audio/transcriptions`` (multipart: ``file``, model, language, prompt,
  temperature, ``response_format`` json or, for segments, ``verbose_json`` with
  ``timestamp_granularities[]=segment``; ``stream=true`` for the GPT-4o transcribe
  models, whose answer is SSE ``transcript.text.delta`` / ``transcript.text.done``);
* ``POST /audio/speech`` (JSON: model, input, voice, response_format, speed,
  instructions): the audio bytes, chunked as they are made;
* Chat Completions content parts ``file`` (``file_data`` as a data: URL, ``filename``)
  and ``input_audio`` (base64 ``data``, ``format`` wav or mp3).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

from ratatoskr.v1 import chat_pb2, media_parts_pb2, media_pb2
from ratd import errors
from ratd.mime import sniff_image
from ratd.providers.messages import unsupported
from ratd.providers.multipart import Form

# Image MIME types by the output_format OpenAI names.
IMAGE_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_AUDIO_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/webm": "webm",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
}
# input_audio takes these two formats only.
_INPUT_AUDIO_FORMATS = {"audio/wav": "wav", "audio/mpeg": "mp3"}


def streams_transcription(model: str) -> bool:
    """The models that stream transcription events (``stream=true``); whisper-1 cannot."""
    return model.startswith("gpt-4o") and "transcribe" in model


# -- images -----------------------------------------------------------------------------------


def _image_fields(request: media_pb2.GenerateImageRequest, model: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": model, "prompt": request.prompt, "n": request.count or 1}
    if request.size:
        fields["size"] = request.size
    if request.quality:
        fields["quality"] = request.quality
    if model.startswith("dall-e"):
        fields["response_format"] = "b64_json"
    elif request.output_format:
        fields["output_format"] = request.output_format
    return fields


def image_generation_body(request: media_pb2.GenerateImageRequest, model: str) -> dict[str, Any]:
    return _image_fields(request, model)


def image_edit_form(request: media_pb2.GenerateImageRequest, model: str) -> tuple[bytes, str]:
    """The multipart body of ``/images/edits`` and its Content-Type."""
    form = Form()
    for name, value in _image_fields(request, model).items():
        form.add(name, value)
    many = len(request.input_images) > 1
    for i, image in enumerate(request.input_images):
        extension = image.mime_type.removeprefix("image/")
        form.add_file(
            "image[]" if many else "image", image.data, f"image-{i}.{extension}", image.mime_type
        )
    if request.HasField("mask"):
        form.add_file("mask", request.mask.data, "mask.png", request.mask.mime_type)
    return form.encode()


def images_from_wire(
    data: Mapping[str, Any], request: media_pb2.GenerateImageRequest, provider: str, model: str
) -> media_pb2.GenerateImageResponse:
    """``ImagesResponse`` → GenerateImageResponse (each image's type sniffed, the
    declared output_format as the fallback)."""
    items = data.get("data")
    if not isinstance(items, list) or not items:
        raise errors.UpstreamProtocolError(
            f"{provider}: the images answer has no data", provider=provider, model=model
        )
    declared = IMAGE_MIME.get(str(data.get("output_format") or request.output_format or "png"))
    answer = media_pb2.GenerateImageResponse(model=model, provider=provider)
    for item in items:
        encoded = item.get("b64_json") if isinstance(item, dict) else None
        if not isinstance(encoded, str):
            raise errors.UpstreamProtocolError(
                f"{provider}: an image came without b64_json", provider=provider, model=model
            )
        raw = base64.b64decode(encoded)
        answer.images.add(
            data=raw,
            mime_type=sniff_image(raw) or declared or "application/octet-stream",
            revised_prompt=str(item.get("revised_prompt") or ""),
        )
    usage = data.get("usage")
    if isinstance(usage, dict):
        answer.usage.CopyFrom(_tokens(usage))
    return answer


def _tokens(usage: Mapping[str, Any]) -> chat_pb2.Usage:
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    total = int(usage.get("total_tokens") or prompt + completion)
    return chat_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


# -- speech to text ---------------------------------------------------------------------------


def transcription_form(
    request: media_pb2.TranscribeRequest, model: str, provider: str = "openai"
) -> tuple[bytes, str]:
    form = Form()
    extension = _AUDIO_EXTENSIONS.get(request.mime_type, "bin")
    form.add_file("file", request.audio, f"audio.{extension}", request.mime_type)
    form.add("model", model)
    if request.language:
        form.add("language", request.language)
    if request.prompt:
        form.add("prompt", request.prompt)
    if request.HasField("temperature"):
        form.add("temperature", request.temperature)
    if request.timestamps:
        if streams_transcription(model):
            raise unsupported(
                provider, model, "timestamps", "only whisper-1 gives segments (verbose_json)"
            )
        form.add("response_format", "verbose_json")
        form.add("timestamp_granularities[]", "segment")
    else:
        form.add("response_format", "json")
    if streams_transcription(model):
        form.add("stream", True)
    return form.encode()


def transcription_from_wire(
    data: Mapping[str, Any], provider: str, model: str
) -> media_pb2.TranscribeResponse:
    """A ``Transcription`` or ``TranscriptionVerbose`` (or the streamed done event)."""
    text = data.get("text")
    if not isinstance(text, str):
        raise errors.UpstreamProtocolError(
            f"{provider}: the transcription has no text", provider=provider, model=model
        )
    answer = media_pb2.TranscribeResponse(
        text=text, language=str(data.get("language") or ""), model=model, provider=provider
    )
    if isinstance(data.get("duration"), int | float):
        answer.duration_secs = float(data["duration"])
    for segment in data.get("segments") or ():
        if isinstance(segment, dict):
            answer.segments.add(
                start_secs=float(segment.get("start") or 0),
                end_secs=float(segment.get("end") or 0),
                text=str(segment.get("text") or ""),
            )
    usage = data.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "tokens":
        answer.usage.CopyFrom(_tokens(usage))
    elif (
        isinstance(usage, dict)
        and usage.get("type") == "duration"
        and not answer.HasField("duration_secs")
    ):
        answer.duration_secs = float(usage.get("seconds") or 0)
    return answer


class TranscriptAssembler:
    """The streamed transcription events: deltas gathered, the done event the answer."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider, self.model = provider, model
        self.pieces: list[str] = []
        self.result: media_pb2.TranscribeResponse | None = None

    def feed(self, payload: Mapping[str, Any]) -> None:
        kind = payload.get("type")
        if kind == "transcript.text.delta":
            self.pieces.append(str(payload.get("delta") or ""))
        elif kind == "transcript.text.done":
            self.result = transcription_from_wire(payload, self.provider, self.model)

    def finish(self) -> media_pb2.TranscribeResponse:
        if self.result is None:
            raise errors.UpstreamProtocolError(
                f"{self.provider}: the transcription stream ended before transcript.text.done",
                provider=self.provider,
                model=self.model,
            )
        return self.result


# -- text to speech ---------------------------------------------------------------------------


def speech_body(request: media_pb2.SynthesizeRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "input": request.text,
        "voice": request.voice or "alloy",
        "response_format": request.format or "mp3",
    }
    if request.HasField("speed"):
        body["speed"] = request.speed
    if request.instructions:
        body["instructions"] = request.instructions
    return body


# -- chat content parts -------------------------------------------------------------------------


def _data_url(mime_type: str, data: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode()}"


def document_part(
    part: media_parts_pb2.DocumentPart, provider: str, model: str, *, urls: bool
) -> dict[str, Any]:
    """A ``file`` part: the bytes as a data: URL in ``file_data``; a URL only where the
    API takes one there (OpenRouter), else refused."""
    filename = part.filename or (
        "document.pdf" if part.mime_type == "application/pdf" else "document.txt"
    )
    if part.WhichOneof("source") == "url":
        if not urls:
            raise unsupported(
                provider, model, "document.url", "Chat Completions takes files as bytes"
            )
        return {"type": "file", "file": {"filename": filename, "file_data": part.url}}
    return {
        "type": "file",
        "file": {"filename": filename, "file_data": _data_url(part.mime_type, part.data)},
    }


def audio_part(part: media_parts_pb2.AudioPart, provider: str, model: str) -> dict[str, Any]:
    """An ``input_audio`` part (wav or mp3 bytes)."""
    audio_format = _INPUT_AUDIO_FORMATS.get(part.mime_type)
    if part.WhichOneof("source") != "data" or audio_format is None:
        raise unsupported(provider, model, "audio", "input_audio takes wav or mp3 bytes only")
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(part.data).decode(), "format": audio_format},
    }


# -- OpenRouter's image output --------------------------------------------------------------
# openrouter.ai/docs "Image Generation" (2026-12): Chat Completions with ``modalities``
# (["image", "text"], or ["image"] for image-only models such as Flux), the size as
# ``image_config.aspect_ratio``; the images in ``choices[0].message.images[].image_url.url``
# as data: URLs.

_IMAGE_ONLY = ("flux", "sourceful", "seedream", "riverflow")


def openrouter_image_body(
    request: media_pb2.GenerateImageRequest, model: str, provider: str
) -> dict[str, Any]:
    if request.count > 1:
        raise unsupported(provider, model, "count", "one image per request")
    content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
    for image in request.input_images:
        url = _data_url(image.mime_type, image.data)
        content.append({"type": "image_url", "image_url": {"url": url}})
    image_only = any(name in model.lower() for name in _IMAGE_ONLY)
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "modalities": ["image"] if image_only else ["image", "text"],
    }
    if request.size and request.size != "auto":
        width, _, height = request.size.partition("x")
        divisor = math.gcd(int(width), int(height))
        body["image_config"] = {"aspect_ratio": f"{int(width) // divisor}:{int(height) // divisor}"}
    return body


def openrouter_images_from_wire(
    data: Mapping[str, Any], provider: str, model: str
) -> media_pb2.GenerateImageResponse:
    choices = data.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    message = message if isinstance(message, dict) else {}
    answer = media_pb2.GenerateImageResponse(
        model=str(data.get("model") or model),
        provider=provider,
        text=str(message.get("content") or ""),
    )
    for item in message.get("images") or ():
        url = str(((item or {}).get("image_url") or {}).get("url") or "")
        header, _, payload = url.partition(",")
        if not header.startswith("data:") or not header.endswith(";base64"):
            continue  # only inline images are kept: ratd fetches no URL
        raw = base64.b64decode(payload)
        answer.images.add(data=raw, mime_type=sniff_image(raw) or header[5:].split(";")[0])
    if not answer.images:
        raise errors.UpstreamProtocolError(
            f"{provider}: the answer holds no image", provider=provider, model=model
        )
    usage = data.get("usage")
    if isinstance(usage, dict):
        answer.usage.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        answer.usage.completion_tokens = int(usage.get("completion_tokens") or 0)
        answer.usage.total_tokens = int(usage.get("total_tokens") or 0)
        if isinstance(usage.get("cost"), int | float):
            answer.usage.cost_usd = float(usage["cost"])
    return answer
