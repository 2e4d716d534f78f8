"""``rat image``, ``rat transcribe``, ``rat say`` and the attachments of ``rat chat --file``:
files in, files out, through the media RPCs."""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import sys
from pathlib import Path
from typing import BinaryIO

from rat.output import print_json
from ratatoskr import Part, ServiceClient, chat_pb2

DEFAULT_IMAGE_MODEL = "gpt-image-2"
DEFAULT_TRANSCRIBE_MODEL = "whisper-1"
DEFAULT_SPEECH_MODEL = "gpt-4o-mini-tts"
# Audio larger than this goes as a client stream of chunks of this size (TranscribeStream).
STREAM_CHUNK_BYTES = 1024 * 1024
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_SPEECH_FORMATS = {".mp3": "mp3", ".wav": "wav", ".opus": "opus", ".aac": "aac", ".flac": "flac"}


class MediaUsageError(Exception):
    """A file that cannot be read or written (exit code 2, as other usage errors)."""


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise MediaUsageError(f"cannot read {path}: {err.strerror}") from None


def attachment(path: str) -> chat_pb2.ContentPart:
    """A file as a content part, by its type: image, audio, video, else a document."""
    data = _read(path)
    guessed = mimetypes.guess_type(path)[0] or ""
    name = Path(path).name
    if guessed.startswith("image/"):
        return Part.image(data, guessed)
    if guessed.startswith("audio/"):
        return Part.audio(data)
    if guessed.startswith("video/"):
        return Part.video(data)
    return Part.document(data, filename=name)


def _numbered(output: Path, index: int, count: int, mime_type: str) -> Path:
    """``out.png``; ``out-1.png``, ``out-2.png``... for several images."""
    suffix = output.suffix or "." + _EXTENSIONS.get(mime_type, "png")
    stem = output.with_suffix("")
    return Path(f"{stem}-{index + 1}{suffix}") if count > 1 else stem.with_suffix(suffix)


async def image(client: ServiceClient, args: argparse.Namespace) -> None:
    answer = await client.generate_image(
        args.prompt,
        args.model,
        size=args.size or "",
        quality=args.quality or "",
        count=args.count,
        input_images=[_read(p) for p in args.edit or ()],
    )
    if args.json:
        print_json(answer)
        return
    for i, made in enumerate(answer.images):
        path = _numbered(Path(args.output), i, len(answer.images), made.mime_type)
        try:
            path.write_bytes(made.data)
        except OSError as err:
            raise MediaUsageError(f"cannot write {path}: {err.strerror}") from None
        print(path)
        if made.revised_prompt:
            print(f"  revised prompt: {made.revised_prompt}", file=sys.stderr)
    if answer.text:
        print(answer.text, file=sys.stderr)


async def transcribe(client: ServiceClient, args: argparse.Namespace) -> None:
    audio = _read(args.file)
    if len(audio) > STREAM_CHUNK_BYTES:
        chunks = [
            audio[i : i + STREAM_CHUNK_BYTES] for i in range(0, len(audio), STREAM_CHUNK_BYTES)
        ]
        answer = await client.transcribe_stream(
            chunks, args.model, language=args.language or "", timestamps=args.timestamps
        )
    else:
        answer = await client.transcribe(
            audio, args.model, language=args.language or "", timestamps=args.timestamps
        )
    if args.json:
        print_json(answer)
        return
    if args.timestamps and answer.segments:
        for segment in answer.segments:
            print(f"[{segment.start_secs:7.2f} - {segment.end_secs:7.2f}] {segment.text.strip()}")
    else:
        print(answer.text)


async def say(client: ServiceClient, args: argparse.Namespace, text: str) -> None:
    """The audio written as it arrives (to stdout with ``-o -``)."""
    audio_format = args.format or _SPEECH_FORMATS.get(Path(args.output).suffix.lower(), "")
    sink: BinaryIO
    try:
        sink = (
            sys.stdout.buffer
            if args.output == "-"
            else await asyncio.to_thread(open, args.output, "wb")
        )
    except OSError as err:
        raise MediaUsageError(f"cannot write {args.output}: {err.strerror}") from None
    try:
        async for chunk in client.synthesize(
            text, args.model, voice=args.voice or "", format=audio_format, speed=args.speed
        ):
            if chunk.audio:
                sink.write(chunk.audio)
                sink.flush()
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
    if args.output != "-":
        print(args.output)


def add_parsers(
    add: argparse._SubParsersAction,  # type: ignore[type-arg,unused-ignore]
    common: argparse.ArgumentParser,
) -> None:
    """The media commands' arguments."""
    p = add.add_parser(
        "image", help="images from a prompt (or an edit of --edit images)", parents=[common]
    )
    p.add_argument("prompt")
    p.add_argument("-o", "--output", default="image.png", help="file (several: name-1.png ...)")
    p.add_argument(
        "-m", "--model", default=DEFAULT_IMAGE_MODEL, help=f"default: {DEFAULT_IMAGE_MODEL}"
    )
    p.add_argument("--size", help="e.g. 1024x1024")
    p.add_argument("--quality")
    p.add_argument("-n", "--count", type=int, default=0)
    p.add_argument("--edit", action="append", metavar="IMAGE", help="an image to edit (repeatable)")
    p = add.add_parser("transcribe", help="speech to text of an audio file", parents=[common])
    p.add_argument("file")
    p.add_argument(
        "-m",
        "--model",
        default=DEFAULT_TRANSCRIBE_MODEL,
        help=f"default: {DEFAULT_TRANSCRIBE_MODEL}",
    )
    p.add_argument("--language", help="ISO-639-1 code of the speech")
    p.add_argument("--timestamps", action="store_true", help="segments with times")
    p = add.add_parser("say", help="text to speech, written as it arrives", parents=[common])
    p.add_argument("text", nargs="*")
    p.add_argument("-o", "--output", default="speech.mp3", help="file, or - for stdout")
    p.add_argument(
        "-m", "--model", default=DEFAULT_SPEECH_MODEL, help=f"default: {DEFAULT_SPEECH_MODEL}"
    )
    p.add_argument("--voice")
    p.add_argument("--format", help="mp3, wav, opus, aac, flac, pcm (default: from -o)")
    p.add_argument("--speed", type=float)
