"""OpenAI's media endpoints on the fake upstream (``FakeOpenAIUpstream``), as the API
reference describes them (platform.openai.com/docs/api-reference: Images, Audio, as of
2026-12), field names checked against the ``openai`` 3.60.0 package's types
(``ImagesResponse``, ``TranscriptionVerbose``, ``TranscriptionTextDeltaEvent`` /
``TranscriptionTextDoneEvent``, ``SpeechCreateParams``):

* ``POST /v1/images/generations``: JSON; ``response_format`` is refused for the GPT
  image models (400 as the API answers: they always return base64); answers
  ``{"created", "data": [{"b64_json", "revised_prompt"?}], "output_format", "usage"?}``;
* ``POST /v1/images/edits``: multipart with ``image`` (one) or ``image[]`` (several),
  ``mask``, ``prompt``, ``model``, ``n``; parsed here with the standard library's MIME
  parser, independently of ratd's encoder;
* ``POST /v1/audio/transcriptions``: multipart ``file`` + ``model``; ``response_format``
  ``json`` (``{"text", "usage": {"type": "tokens", ...}}``) or ``verbose_json``
  (``task``, ``language`` as a name, ``duration``, ``segments`` with ``start``/``end``,
  ``usage: {"type": "duration"}``); ``stream=true`` (GPT-4o transcribe models only,
  400 for whisper-1) answers SSE ``transcript.text.delta`` events then
  ``transcript.text.done`` with the text and usage;
* ``POST /v1/audio/speech``: JSON; ``voice`` required; the audio written in chunks. When
  ``fake.media.hold_speech`` is an ``asyncio.Event``, the fake writes the first chunk,
  then waits for it before writing the rest (``fake.media.speech_finished`` tells a test
  whether the upstream had finished when its first chunk arrived).

Every request's form or JSON is recorded in ``fake.media.calls``.
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

REFERENCE = "platform.openai.com/docs/api-reference (Images, Audio), 2026-12; openai 3.60.0"
SPEECH_TEXT_CHUNKS = 4
TRANSCRIPT = "the squirrel runs up the ash tree"
_GPT_IMAGE = ("gpt-image-",)


def tiny_png(seed: int = 0) -> bytes:
    """A valid 1x1 PNG whose pixel depends on ``seed``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = zlib.compress(bytes([0, seed % 256, 120, 40]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel) + chunk(b"IEND", b"")
    )


def speech_chunk(index: int) -> bytes:
    """A piece of the fake's "mp3": an ID3 header first, then frames of known bytes."""
    if index == 0:
        return b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(32))
    return b"\xff\xfb\x90\x00" + bytes([index]) * 60


@dataclass
class MediaState:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    hold_speech: asyncio.Event | None = None
    speech_finished: bool = False


def _error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


def _form(raw: bytes, content_type: str) -> dict[str, Any]:
    """A multipart body as {name: value}: text fields as str, files as
    (filename, content type, bytes); a repeated name (``image[]``) as a list."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        filename = part.get_filename()
        value: Any = (filename, part.get_content_type(), payload) if filename else payload.decode()
        if name.endswith("[]"):
            fields.setdefault(name, []).append(value)
        else:
            fields[name] = value
    return fields


def _authorised(fake: Any, request: web.Request) -> web.Response | None:
    expected = fake.openai.api_key
    if expected is not None and request.headers.get("Authorization") != f"Bearer {expected}":
        return _error(401, "Incorrect API key provided.", code="invalid_api_key")
    return None


def _images_answer(model: str, count: int, output_format: str) -> dict[str, Any]:
    data = []
    for i in range(count):
        item: dict[str, Any] = {"b64_json": base64.b64encode(tiny_png(i)).decode()}
        if model.startswith("dall-e-3"):
            item["revised_prompt"] = f"a detailed picture, number {i + 1}"
        data.append(item)
    answer: dict[str, Any] = {"created": int(time.time()), "data": data}
    if model.startswith(_GPT_IMAGE):
        answer["output_format"] = output_format or "png"
        answer["usage"] = {
            "input_tokens": 50,
            "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
            "output_tokens": 272 * count,
            "total_tokens": 50 + 272 * count,
        }
    return answer


def routes(fake: Any) -> list[web.RouteDef]:
    state: MediaState = fake.media

    async def generations(request: web.Request) -> web.StreamResponse:
        await fake._record(request)
        if (refused := _authorised(fake, request)) is not None:
            return refused
        body = await request.json()
        state.calls.append(("generations", body))
        model = body.get("model", "dall-e-2")
        if not body.get("prompt"):
            return _error(400, "Missing required parameter: 'prompt'.", param="prompt")
        if model.startswith(_GPT_IMAGE) and "response_format" in body:
            return _error(
                400,
                "Unknown parameter: 'response_format'.",
                param="response_format",
                code="unknown_parameter",
            )
        if model == "gpt-image-missing":
            return _error(404, f"The model '{model}' does not exist.", code="model_not_found")
        return web.json_response(
            _images_answer(model, int(body.get("n", 1)), body.get("output_format", ""))
        )

    async def edits(request: web.Request) -> web.StreamResponse:
        record = await fake._record(request)
        if (refused := _authorised(fake, request)) is not None:
            return refused
        if not request.content_type.startswith("multipart/form-data"):
            return _error(400, "Expected multipart/form-data.")
        form = _form(record.raw, request.headers["Content-Type"])
        state.calls.append(("edits", form))
        images = form.get("image[]") or ([form["image"]] if "image" in form else [])
        if not images:
            return _error(400, "Missing required parameter: 'image'.", param="image")
        return web.json_response(
            _images_answer(
                form.get("model", "dall-e-2"),
                int(form.get("n", "1")),
                form.get("output_format", ""),
            )
        )

    async def transcriptions(request: web.Request) -> web.StreamResponse:
        record = await fake._record(request)
        if (refused := _authorised(fake, request)) is not None:
            return refused
        form = _form(record.raw, request.headers.get("Content-Type", ""))
        state.calls.append(("transcriptions", form))
        if "file" not in form or "model" not in form:
            return _error(400, "Missing required parameter: 'file'.", param="file")
        model = form["model"]
        if form.get("stream") == "true":
            if model.startswith("whisper"):
                return _error(
                    400, "Streaming is not supported for the whisper-1 model.", param="stream"
                )
            return await _transcript_stream(request)
        if form.get("response_format") == "verbose_json":
            if not model.startswith("whisper"):
                return _error(
                    400,
                    f"response_format 'verbose_json' is not compatible with model '{model}'.",
                    param="response_format",
                )
            words = TRANSCRIPT.split()
            return web.json_response(
                {
                    "task": "transcribe",
                    "language": "english",
                    "duration": 2.5,
                    "text": TRANSCRIPT,
                    "segments": [
                        {
                            "id": 0,
                            "seek": 0,
                            "start": 0.0,
                            "end": 1.2,
                            "text": " " + " ".join(words[:4]),
                            "tokens": [1, 2],
                            "temperature": 0.0,
                            "avg_logprob": -0.2,
                            "compression_ratio": 1.1,
                            "no_speech_prob": 0.01,
                        },
                        {
                            "id": 1,
                            "seek": 0,
                            "start": 1.2,
                            "end": 2.5,
                            "text": " " + " ".join(words[4:]),
                            "tokens": [3, 4],
                            "temperature": 0.0,
                            "avg_logprob": -0.3,
                            "compression_ratio": 1.0,
                            "no_speech_prob": 0.02,
                        },
                    ],
                    "usage": {"type": "duration", "seconds": 3},
                }
            )
        return web.json_response(
            {
                "text": TRANSCRIPT,
                "usage": {
                    "type": "tokens",
                    "input_tokens": 14,
                    "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
                    "output_tokens": 9,
                    "total_tokens": 23,
                },
            }
        )

    async def _transcript_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in TRANSCRIPT.split(" "):
            event = {"type": "transcript.text.delta", "delta": word + " ", "logprobs": None}
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        done = {
            "type": "transcript.text.done",
            "text": TRANSCRIPT,
            "usage": {
                "type": "tokens",
                "input_tokens": 14,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
                "output_tokens": 9,
                "total_tokens": 23,
            },
        }
        await response.write(b"data: " + json.dumps(done).encode() + b"\n\n")
        await response.write_eof()
        return response

    async def speech(request: web.Request) -> web.StreamResponse:
        await fake._record(request)
        if (refused := _authorised(fake, request)) is not None:
            return refused
        body = await request.json()
        state.calls.append(("speech", body))
        if not body.get("voice"):
            return _error(400, "Missing required parameter: 'voice'.", param="voice")
        if not body.get("input"):
            return _error(400, "Missing required parameter: 'input'.", param="input")
        kind = {"mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/ogg"}.get(
            body.get("response_format", "mp3"), "application/octet-stream"
        )
        state.speech_finished = False
        response = web.StreamResponse(
            headers={"Content-Type": kind, "Transfer-Encoding": "chunked"}
        )
        await response.prepare(request)
        for index in range(SPEECH_TEXT_CHUNKS):
            await response.write(speech_chunk(index))
            if index == 0 and state.hold_speech is not None:
                await state.hold_speech.wait()
        await response.write_eof()
        state.speech_finished = True
        return response

    return [
        web.post("/v1/images/generations", generations),
        web.post("/v1/images/edits", edits),
        web.post("/v1/audio/transcriptions", transcriptions),
        web.post("/v1/audio/speech", speech),
    ]


async def openrouter_image(fake: Any, request: web.Request) -> web.StreamResponse | None:
    """OpenRouter's image output (openrouter.ai/docs "Image Generation", 2026-12): a chat
    completion asked with ``modalities`` holding ``image`` answers the images in
    ``choices[0].message.images[]`` as ``{"type": "image_url", "image_url": {"url":
    "data:image/png;base64,..."}}``; image-only models (Flux) must be asked with
    ``["image"]`` alone, text-and-image ones with ``["image", "text"]``. None: not such a
    request (the ordinary chat answers it)."""
    body = await request.json()
    modalities = body.get("modalities") or []
    if "image" not in modalities:
        return None
    await fake._record(request)
    fake.media.calls.append(("openrouter-image", body))
    model = str(body.get("model", ""))
    if "flux" in model and modalities != ["image"]:
        return _error(400, f"{model} only outputs images: use modalities ['image']")
    url = "data:image/png;base64," + base64.b64encode(tiny_png(11)).decode()
    message = {
        "role": "assistant",
        "content": "" if "flux" in model else "An ash tree at dawn.",
        "images": [{"type": "image_url", "image_url": {"url": url}, "index": 0}],
    }
    answer = {
        "id": "gen-1767000000-ImageRatatoskr01",
        "provider": "Google",
        "model": model,
        "object": "chat.completion",
        "created": int(time.time()),
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "native_finish_reason": "STOP",
                "message": message,
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 1299,
            "total_tokens": 1308,
            "cost": 0.0387,
        },
    }
    return web.json_response(answer)
