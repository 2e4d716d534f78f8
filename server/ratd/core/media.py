"""Media in requests, checked before any provider sees them: sizes against ``[media]``,
MIME types sniffed from the bytes (a declared type the bytes contradict is refused), and
URLs that are only ever passed on (ratd never fetches one itself).

Every refusal is INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ratatoskr.v1 import chat_pb2, media_parts_pb2, media_pb2
from ratd import errors
from ratd.config import MediaConfig
from ratd.core.validation import IMAGE_TYPES
from ratd.errors import InvalidInput
from ratd.mime import sniff_audio, sniff_image, sniff_video
from ratd.providers.base import ChatLike, Provider

DOCUMENT_TYPES = frozenset({"application/pdf", "text/plain"})
AUDIO_TYPES = frozenset(
    {
        "audio/wav",
        "audio/mpeg",
        "audio/ogg",
        "audio/flac",
        "audio/webm",
        "audio/mp4",
        "audio/aac",
    }
)
VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-matroska"})
SPEECH_FORMATS = frozenset({"mp3", "wav", "opus", "aac", "flac", "pcm"})
IMAGE_FORMATS = frozenset({"png", "jpeg", "webp"})
# "1024x1024", or a word the providers take ("auto").
_SIZE = re.compile(r"^(?:\d{2,5}x\d{2,5}|auto)$")
# A PDF's page objects ("/Type /Page", not "/Pages"), counted with bytes.count (C speed,
# no regex over tens of MB on the event loop): close enough for a limit (compressed
# object streams hide some; those PDFs pass).
_PAGE_MARKS = (b"/Type /Page", b"/Type/Page")
# Most characters of a transcription prompt or a synthesis instruction.
_MAX_HINT = 4096


def _fail(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", field=field)


def sniff_document(data: bytes) -> str | None:
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text/plain"


def pdf_pages(data: bytes) -> int:
    return sum(data.count(mark) - data.count(mark + b"s") for mark in _PAGE_MARKS)


def _url(field: str, url: str) -> None:
    """A URL passed on to a provider: https (or a provider's file URI), never fetched here."""
    if not url.startswith(("https://", "http://", "gs://")):
        raise _fail(field, "must be an http(s) URL or a provider file URI (gs://)")
    if len(url) > 8192:
        raise _fail(field, "is longer than 8192 characters")


def _bytes(field: str, data: bytes, limit: int, key: str) -> None:
    if not data:
        raise _fail(field, "is empty")
    if len(data) > limit:
        raise _fail(field, f"{len(data)} bytes exceeds the limit of {limit} bytes (media.{key})")


def _sniffed(field: str, declared: str, found: str | None, allowed: frozenset[str]) -> str:
    """The MIME type of bytes: the sniffed one, which a declared type must agree with."""
    if found is None:
        raise _fail(field, f"the bytes are none of {', '.join(sorted(allowed))}")
    if declared and declared != found and not (found == "audio/mp4" and declared == "video/mp4"):
        raise _fail(field, f"declared {declared!r}, but the bytes are {found}")
    return found


def check_document(field: str, part: media_parts_pb2.DocumentPart, media: MediaConfig) -> None:
    if part.WhichOneof("source") is None:
        raise _fail(field, "needs a url or data")
    if part.WhichOneof("source") == "url":
        _url(f"{field}.url", part.url)
        return
    _bytes(f"{field}.data", part.data, media.max_document_bytes, "max_document_bytes")
    kind = _sniffed(f"{field}.data", part.mime_type, sniff_document(part.data), DOCUMENT_TYPES)
    if kind == "application/pdf" and (pages := pdf_pages(part.data)) > media.max_pdf_pages:
        raise _fail(
            f"{field}.data",
            f"the PDF has {pages} pages, over the limit of {media.max_pdf_pages} "
            "(media.max_pdf_pages)",
        )
    part.mime_type = kind


def check_audio(field: str, part: media_parts_pb2.AudioPart, media: MediaConfig) -> None:
    _sourced_part(field, part, media.max_audio_part_bytes, "max_audio_part_bytes", sniff_audio)


def check_video(field: str, part: media_parts_pb2.VideoPart, media: MediaConfig) -> None:
    _sourced_part(field, part, media.max_video_bytes, "max_video_bytes", sniff_video)


def _sourced_part(
    field: str,
    part: media_parts_pb2.AudioPart | media_parts_pb2.VideoPart,
    limit: int,
    limit_name: str,
    sniff: Callable[[bytes], str | None],
) -> None:
    """An audio or video part: a URL passed on as it is, or bytes within ``limit`` whose
    MIME type is sniffed (and must be one of the kind's types)."""
    source = part.WhichOneof("source")
    if source is None:
        raise _fail(field, "needs a url or data")
    if source == "url":
        _url(f"{field}.url", part.url)
        return
    types = AUDIO_TYPES if isinstance(part, media_parts_pb2.AudioPart) else VIDEO_TYPES
    _bytes(f"{field}.data", part.data, limit, limit_name)
    part.mime_type = _sniffed(f"{field}.data", part.mime_type, sniff(part.data), types)


def check_parts(
    request: chat_pb2.ChatRequest | chat_pb2.ChatStreamRequest, media: MediaConfig
) -> None:
    """Document, audio and video parts of a chat request, their MIME types filled in
    from the bytes (the request is the service's own copy)."""
    for i, message in enumerate(request.messages):
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("part")
            field = f"messages[{i}].parts[{j}].{kind}"
            if kind == "document":
                check_document(field, part.document, media)
            elif kind == "audio":
                check_audio(field, part.audio, media)
            elif kind == "video":
                check_video(field, part.video, media)


def check_readable(
    request: ChatLike, kinds: frozenset[str], provider: Provider, model: str
) -> None:
    """Refuse a request with parts of ``kinds`` that ``provider`` cannot read for
    ``model`` (UnsupportedParameter: the fallback chain moves on), naming the first."""
    unread = kinds - provider.media_parts(model)
    if not unread:
        return
    for i, message in enumerate(request.messages):
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("part")
            if kind in unread:
                where = f"messages[{i}].parts[{j}].{kind}"
                raise errors.UnsupportedParameter(
                    f"{where}: {provider.name} cannot read {kind} parts for {model}",
                    provider=provider.name,
                    model=model,
                    field=where,
                    parameter=kind or "",
                )


def _image_input(field: str, image: chat_pb2.ImagePart, media: MediaConfig) -> None:
    if image.WhichOneof("source") != "data":
        raise _fail(field, "input images go as bytes (data); ratd fetches no URL")
    _bytes(f"{field}.data", image.data, media.max_image_bytes, "max_image_bytes")
    image.mime_type = _sniffed(
        f"{field}.data", image.mime_type, sniff_image(image.data), IMAGE_TYPES
    )


def check_image_request(request: media_pb2.GenerateImageRequest, media: MediaConfig) -> None:
    if not request.prompt.strip():
        raise _fail("prompt", "must not be empty")
    if len(request.prompt) > 32000:
        raise _fail("prompt", "is longer than 32000 characters")
    if request.count > media.max_images:
        raise _fail(
            "count", f"{request.count} is over the limit of {media.max_images} (media.max_images)"
        )
    if len(request.input_images) > media.max_images:
        raise _fail(
            "input_images",
            f"{len(request.input_images)} images, over the limit of {media.max_images} "
            "(media.max_images)",
        )
    if request.size and not _SIZE.match(request.size):
        raise _fail("size", f"must be WIDTHxHEIGHT or auto, got {request.size[:40]!r}")
    if request.output_format and request.output_format not in IMAGE_FORMATS:
        raise _fail("output_format", f"must be one of {', '.join(sorted(IMAGE_FORMATS))}")
    for i, image in enumerate(request.input_images):
        _image_input(f"input_images[{i}]", image, media)
    if request.HasField("mask"):
        if not request.input_images:
            raise _fail("mask", "a mask needs an input image to edit")
        _image_input("mask", request.mask, media)


def check_transcribe(request: media_pb2.TranscribeRequest, media: MediaConfig) -> None:
    _bytes("audio", request.audio, media.max_audio_bytes, "max_audio_bytes")
    request.mime_type = _sniffed(
        "audio", request.mime_type, sniff_audio(request.audio), AUDIO_TYPES
    )
    if request.language and not re.fullmatch(r"[a-z]{2,3}(?:-[A-Za-z]{2,4})?", request.language):
        raise _fail(
            "language", f"must be an ISO-639 code such as 'en', got {request.language[:20]!r}"
        )
    if len(request.prompt) > _MAX_HINT:
        raise _fail("prompt", f"is longer than {_MAX_HINT} characters")
    if request.HasField("temperature") and not 0 <= request.temperature <= 1:
        raise _fail("temperature", "must be between 0 and 1")


def check_synthesize(request: media_pb2.SynthesizeRequest, media: MediaConfig) -> None:
    if not request.text.strip():
        raise _fail("text", "must not be empty")
    if len(request.text) > media.max_speech_chars:
        raise _fail(
            "text",
            f"{len(request.text)} characters, over the limit of {media.max_speech_chars} "
            "(media.max_speech_chars)",
        )
    if request.format and request.format not in SPEECH_FORMATS:
        raise _fail("format", f"must be one of {', '.join(sorted(SPEECH_FORMATS))}")
    if request.HasField("speed") and not 0.25 <= request.speed <= 4.0:
        raise _fail("speed", "must be between 0.25 and 4")
    if len(request.instructions) > _MAX_HINT:
        raise _fail("instructions", f"is longer than {_MAX_HINT} characters")
    if len(request.voice) > 64:
        raise _fail("voice", "is longer than 64 characters")
