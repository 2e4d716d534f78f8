"""The OpenAI door's media endpoints, as translations to and from the media RPCs:

* ``POST /v1/images/generations`` (JSON) as GenerateImage → ``{"created", "data":
  [{"b64_json", "revised_prompt"?}], "output_format"?, "usage"?}`` (``response_format:
  url`` is refused: ratd hosts no images);
* ``POST /v1/audio/transcriptions`` (multipart: ``file``, ``model``, ``language``,
  ``prompt``, ``temperature``, ``response_format`` json / verbose_json / text) as
  Transcribe;
* ``POST /v1/audio/speech`` (JSON) as Synthesize, the audio written as it arrives.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2, media_pb2
from ratd.openai_http import fields
from ratd.openai_http.fields import Body, bad

_IMAGE_KEYS = frozenset(
    {"model", "prompt", "n", "size", "quality", "output_format", "response_format", "user"}
)
_SPEECH_KEYS = frozenset({"model", "input", "voice", "response_format", "speed", "instructions"})
_TRANSCRIPTION_FORMATS = ("json", "verbose_json", "text")
_TRANSCRIPTION_KEYS = frozenset(
    {"file", "model", "language", "prompt", "temperature", "response_format",
     "timestamp_granularities[]"}
)  # fmt: skip


def image_request(body: Body) -> media_pb2.GenerateImageRequest:
    fields.check_keys(body, _IMAGE_KEYS)
    if body.get("response_format") not in (None, "b64_json"):
        raise bad("response_format", "ratd answers images as b64_json only (it hosts no URLs)")
    return media_pb2.GenerateImageRequest(
        model=fields.required_string(body, "model"),
        prompt=fields.required_string(body, "prompt"),
        count=fields.integer(body, "n", 1) or 0,
        size=fields.optional_string(body, "size") or "",
        quality=fields.optional_string(body, "quality") or "",
        output_format=fields.optional_string(body, "output_format") or "",
    )


def images_json(answer: media_pb2.GenerateImageResponse, _: str) -> bytes:
    data = []
    for image in answer.images:
        item: dict[str, Any] = {"b64_json": base64.b64encode(image.data).decode()}
        if image.revised_prompt:
            item["revised_prompt"] = image.revised_prompt
        data.append(item)
    body: dict[str, Any] = {"created": int(time.time()), "data": data}
    if answer.HasField("usage"):
        usage = answer.usage
        body["usage"] = {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    return orjson.dumps(body)


def speech_request(body: Body) -> media_pb2.SynthesizeRequest:
    fields.check_keys(body, _SPEECH_KEYS)
    request = media_pb2.SynthesizeRequest(
        model=fields.required_string(body, "model"),
        text=fields.required_string(body, "input"),
        voice=fields.optional_string(body, "voice") or "",
        format=fields.optional_string(body, "response_format") or "",
        instructions=fields.optional_string(body, "instructions") or "",
    )
    speed = fields.number(body, "speed")
    if speed is not None:
        request.speed = speed
    return request


def transcription_request(
    form: Mapping[str, Any], audio: bytes
) -> tuple[media_pb2.TranscribeRequest, str]:
    """The request, and the response_format asked for."""
    for key in form:
        if key not in _TRANSCRIPTION_KEYS:
            raise bad(key, f"Unrecognized request argument supplied: {key}")
    if not audio:
        raise bad("file", "an audio file is required")
    model = form.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model", "a non-empty string is required")
    response_format = str(form.get("response_format") or "json")
    if response_format not in _TRANSCRIPTION_FORMATS:
        raise bad("response_format", f"must be one of {', '.join(_TRANSCRIPTION_FORMATS)}")
    request = media_pb2.TranscribeRequest(
        model=model,
        audio=audio,
        language=str(form.get("language") or ""),
        prompt=str(form.get("prompt") or ""),
        timestamps=response_format == "verbose_json",
    )
    if form.get("temperature") not in (None, ""):
        try:
            request.temperature = float(form["temperature"])
        except ValueError:
            raise bad("temperature", "must be a number") from None
    return request, response_format


def transcription_body(answer: media_pb2.TranscribeResponse, response_format: str) -> bytes:
    if response_format == "text":
        return answer.text.encode()
    body: dict[str, Any] = {"text": answer.text}
    if response_format == "verbose_json":
        body.update(
            task="transcribe",
            language=answer.language,
            duration=answer.duration_secs,
            segments=[
                {"id": i, "start": s.start_secs, "end": s.end_secs, "text": s.text}
                for i, s in enumerate(answer.segments)
            ],
        )
    if answer.HasField("usage"):
        usage = answer.usage
        body["usage"] = {
            "type": "tokens",
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    return orjson.dumps(body)


_EDIT_KEYS = frozenset(
    {"image", "image[]", "mask", "model", "prompt", "n", "size", "quality", "output_format",
     "response_format", "user"}
)  # fmt: skip


def edit_request(
    form: Mapping[str, Any], images: list[bytes], mask: bytes | None
) -> media_pb2.GenerateImageRequest:
    """``/v1/images/edits``: the form's text fields, the images and the mask as bytes."""
    for key in form:
        if key not in _EDIT_KEYS:
            raise bad(key, f"Unrecognized request argument supplied: {key}")
    if not images:
        raise bad("image", "at least one image file is required")
    body: dict[str, Any] = {k: v for k, v in form.items() if k not in ("image", "image[]", "mask")}
    if "n" in body:
        try:
            body["n"] = int(body["n"])
        except ValueError:
            raise bad("n", "must be an integer") from None
    request = image_request(body)
    request.input_images.extend(chat_pb2.ImagePart(data=data) for data in images)
    if mask is not None:
        request.mask.data = mask
    return request
