"""Media through a real grpc.aio ratd against the fake OpenAI upstream (its wire format
per tests/fakes/openai_media.py): image generation and edits, transcription (whole,
verbose with segments, streamed upstream events, client-streamed chunks), streamed speech
whose first chunk reaches the caller before the upstream has finished, document and
audio parts in Chat Completions, and the refusals of bad input."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import struct
import wave

import pytest

from ratatoskr import (
    InvalidInput,
    Message,
    ModelNotFound,
    Part,
    UnsupportedParameter,
    chat_pb2,
    media_pb2,
    models_pb2,
)
from ratd.providers.openai_media import image_generation_body
from tests.fakes.openai_media import TRANSCRIPT, speech_chunk, tiny_png
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import compat_client, compat_config
from tests.support.daemon import daemon_client, make_config

pytestmark = pytest.mark.timeout(60)


def wav_bytes(frames: int = 1600) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(struct.pack(f"<{frames}h", *([0] * frames)))
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def test_generate_image_gpt_image_and_dalle(upstream: FakeOpenAIUpstream) -> None:
    async with compat_client(upstream) as client:
        answer = await client.generate_image(
            "an ash tree", "gpt-image-2", count=2, size="1024x1024"
        )
        # dall-e-3 shut down on 2026-05-12 (the seed says so): refused before any upstream call.
        with pytest.raises(ModelNotFound) as retired:
            await client.generate_image("an ash tree", "dall-e-3", quality="hd")
    assert [i.data for i in answer.images] == [tiny_png(0), tiny_png(1)]
    assert {i.mime_type for i in answer.images} == {"image/png"}
    assert answer.provider == "openai" and answer.model == "gpt-image-2"
    assert answer.usage.prompt_tokens == 50 and answer.usage.completion_tokens == 544
    assert retired.value.reason == "MODEL_RETIRED" and "gpt-image-2" in str(retired.value)
    sent = [body for kind, body in upstream.media.calls if kind == "generations"]
    assert sent == [{"model": "gpt-image-2", "prompt": "an ash tree", "n": 2, "size": "1024x1024"}]


def test_dalle_models_are_asked_for_base64() -> None:
    """DALL·E names (still served by OpenAI-compatible servers) answer URLs by default."""
    request = media_pb2.GenerateImageRequest(prompt="an ash tree", quality="hd")
    body = image_generation_body(request, "dall-e-3")
    assert body["response_format"] == "b64_json" and body["quality"] == "hd"
    assert "response_format" not in image_generation_body(request, "gpt-image-2")


async def test_image_edit_sends_multipart(upstream: FakeOpenAIUpstream) -> None:
    async with compat_client(upstream) as client:
        one = await client.generate_image(
            "make it autumn", "gpt-image-2", input_images=[tiny_png(5)]
        )
        two = await client.generate_image(
            "merge", "gpt-image-2", input_images=[tiny_png(5), tiny_png(6)], output_format="png"
        )
    assert len(one.images) == 1 and len(two.images) == 1
    forms = [form for kind, form in upstream.media.calls if kind == "edits"]
    assert forms[0]["image"] == ("image-0.png", "image/png", tiny_png(5))
    assert forms[0]["prompt"] == "make it autumn" and forms[0]["model"] == "gpt-image-2"
    assert [f[2] for f in forms[1]["image[]"]] == [tiny_png(5), tiny_png(6)]


async def test_transcribe_json_verbose_and_streamed(upstream: FakeOpenAIUpstream) -> None:
    audio = wav_bytes()
    async with compat_client(upstream) as client:
        plain = await client.transcribe(audio, "whisper-1", language="en")
        verbose = await client.transcribe(audio, "whisper-1", timestamps=True)
        streamed = await client.transcribe(audio, "gpt-4o-mini-transcribe")
        chunked = await client.transcribe_stream(
            [audio[:1000], audio[1000:2000], audio[2000:]], "whisper-1", timestamps=True
        )
    assert plain.text == TRANSCRIPT and plain.usage.prompt_tokens == 14
    assert verbose.language == "english" and verbose.duration_secs == 2.5
    assert [(s.start_secs, s.end_secs) for s in verbose.segments] == [(0.0, 1.2), (1.2, 2.5)]
    assert streamed.text == TRANSCRIPT and streamed.usage.total_tokens == 23
    assert list(chunked.segments) == list(verbose.segments)
    forms = [form for kind, form in upstream.media.calls if kind == "transcriptions"]
    assert forms[0]["file"] == ("audio.wav", "audio/wav", audio)
    assert forms[0]["language"] == "en" and forms[0]["response_format"] == "json"
    assert forms[1]["response_format"] == "verbose_json"
    assert forms[1]["timestamp_granularities[]"] == ["segment"]
    assert forms[2]["stream"] == "true"
    assert forms[3]["file"][2] == audio


async def test_speech_first_chunk_arrives_before_the_upstream_finishes(
    upstream: FakeOpenAIUpstream,
) -> None:
    upstream.media.hold_speech = asyncio.Event()
    async with compat_client(upstream) as client:
        stream = client.synthesize("hello from the world tree", "gpt-4o-mini-tts", voice="coral")
        first = await anext(stream)
        assert first.audio == speech_chunk(0) and first.mime_type == "audio/mpeg"
        assert not upstream.media.speech_finished
        upstream.media.hold_speech.set()
        rest = [chunk async for chunk in stream]
    audio = first.audio + b"".join(c.audio for c in rest)
    assert audio == b"".join(speech_chunk(i) for i in range(4))
    assert rest[-1].done and rest[-1].provider == "openai"
    assert upstream.media.speech_finished
    (body,) = [b for kind, b in upstream.media.calls if kind == "speech"]
    assert body == {
        "model": "gpt-4o-mini-tts",
        "input": "hello from the world tree",
        "voice": "coral",
        "response_format": "mp3",
    }


async def test_chat_with_pdf_and_audio_parts(upstream: FakeOpenAIUpstream) -> None:
    audio = wav_bytes()
    message = Message.user(
        "summarise", parts=[Part.document(PDF, filename="tree.pdf"), Part.audio(audio)]
    )
    async with compat_client(upstream) as client:
        await client.chat([message], model="gpt-4o-mini")
        await client.chat(
            [Message.user("and this", parts=[Part.document("https://example.org/a.pdf")])],
            model="openrouter:openai/gpt-4o-mini",
        )
        with pytest.raises(UnsupportedParameter) as refused:
            await client.chat(
                [Message.user("x", parts=[Part.document("https://example.org/a.pdf")])],
                model="openai:gpt-4o-mini",
            )
        assert refused.value.field == "document.url"
    content = upstream.last("openai").json["messages"][0]["content"]
    assert content[1] == {
        "type": "file",
        "file": {
            "filename": "tree.pdf",
            "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
        },
    }
    assert content[2] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(audio).decode(), "format": "wav"},
    }
    routed = upstream.last("openrouter").json["messages"][0]["content"]
    assert routed[1]["file"]["file_data"] == "https://example.org/a.pdf"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("image_count", "count"),
        ("image_url_input", "input_images[0]"),
        ("image_not_image", "input_images[0].data"),
        ("audio_not_audio", "audio"),
        ("audio_declared_wrong", "audio"),
        ("speech_empty", "text"),
        ("speech_format", "format"),
        ("video_to_openai", "messages[0].parts[0].video"),
        ("pdf_declared_wrong", "messages[0].parts[0].document.data"),
        ("document_file_url", "messages[0].parts[0].document.url"),
    ],
)
async def test_bad_media_input_is_invalid_argument(
    upstream: FakeOpenAIUpstream, call: str, field: str
) -> None:
    async with compat_client(upstream) as client:
        stub = client._stub
        with pytest.raises((InvalidInput, UnsupportedParameter)) as refused:
            if call == "image_count":
                await client.generate_image("x", "gpt-image-2", count=11)
            elif call == "image_url_input":
                request = media_pb2.GenerateImageRequest(
                    model="gpt-image-2",
                    prompt="x",
                    input_images=[chat_pb2.ImagePart(url="https://example.org/a.png")],
                )
                await client._call(stub.GenerateImage, request, None)
            elif call == "image_not_image":
                await client.generate_image("x", "gpt-image-2", input_images=[b"not an image"])
            elif call == "audio_not_audio":
                await client.transcribe(b"plain words, not audio", "whisper-1")
            elif call == "audio_declared_wrong":
                request = media_pb2.TranscribeRequest(
                    model="whisper-1", audio=wav_bytes(), mime_type="audio/mpeg"
                )
                await client._call(stub.Transcribe, request, None)
            elif call == "speech_empty":
                await anext(client.synthesize("  ", "tts-1"))
            elif call == "speech_format":
                await anext(client.synthesize("hi", "tts-1", format="midi"))
            elif call == "video_to_openai":
                part = Part.video(b"\x00\x00\x00\x18ftypmp42" + bytes(16))
                await client.chat([Message.user(parts=[part])], model="openai:gpt-4o-mini")
            elif call == "pdf_declared_wrong":
                part = Part.document(b"\x89PNG\r\n\x1a\n" + bytes(20), mime_type="application/pdf")
                await client.chat([Message.user(parts=[part])], model="gpt-4o-mini")
            elif call == "document_file_url":
                part = Part.document("file:///etc/passwd")
                await client.chat([Message.user(parts=[part])], model="gpt-4o-mini")
    assert refused.value.field == field
    assert not upstream.media.calls


async def test_transcribe_stream_over_the_limit_is_refused(upstream: FakeOpenAIUpstream) -> None:
    config = compat_config(upstream)
    config = dataclasses.replace(
        config, media=dataclasses.replace(config.media, max_audio_bytes=4000)
    )
    async with daemon_client(config) as client:
        with pytest.raises(InvalidInput) as refused:
            await client.transcribe_stream([wav_bytes()[:3000]] * 3, "whisper-1")
    assert refused.value.field == "audio" and "media.max_audio_bytes" in str(refused.value)


async def test_capabilities_name_the_media(upstream: FakeOpenAIUpstream) -> None:
    async with compat_client(upstream) as client:
        found = set(await client.capabilities())
        meta = await client.model_metadata("gpt-image-2")
    assert {
        models_pb2.MODEL_CAPABILITY_IMAGE_GENERATION,
        models_pb2.MODEL_CAPABILITY_SPEECH_TO_TEXT,
        models_pb2.MODEL_CAPABILITY_TEXT_TO_SPEECH,
    } <= found
    assert models_pb2.MODEL_CAPABILITY_IMAGE_GENERATION in meta.info.capabilities


async def test_openrouter_image_output(upstream: FakeOpenAIUpstream) -> None:
    async with compat_client(upstream) as client:
        gemini = await client.generate_image(
            "an ash tree", "google/gemini-2.5-flash-image", size="1920x1080"
        )
        flux = await client.generate_image("an ash tree", "black-forest-labs/flux.1-schnell")
    assert [(i.data, i.mime_type) for i in gemini.images] == [(tiny_png(11), "image/png")]
    assert gemini.text == "An ash tree at dawn." and gemini.provider == "openrouter"
    assert gemini.usage.cost_usd == pytest.approx(0.0387)
    assert flux.images[0].data == tiny_png(11)
    first, second = [body for kind, body in upstream.media.calls if kind == "openrouter-image"]
    assert first["modalities"] == ["image", "text"]
    assert first["image_config"] == {"aspect_ratio": "16:9"}
    assert first["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "an ash tree"}]}
    ]
    assert second["modalities"] == ["image"]


async def test_responses_api_models_take_files_and_audio(upstream: FakeOpenAIUpstream) -> None:
    """gpt-5 goes to the Responses API (the seed's mark): input_file and input_audio."""
    audio = wav_bytes()
    message = Message.user(
        "read these",
        parts=[
            Part.document(PDF, filename="tree.pdf"),
            Part.document("https://example.org/edda.pdf"),
            Part.audio(audio),
        ],
    )
    async with compat_client(upstream) as client:
        await client.chat([message], model="gpt-5")
    sent = upstream.last("openai", "/responses").json
    content = sent["input"][0]["content"]
    assert content[0] == {"type": "input_text", "text": "read these"}
    assert content[1] == {
        "type": "input_file",
        "filename": "tree.pdf",
        "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
    }
    assert content[2] == {"type": "input_file", "file_url": "https://example.org/edda.pdf"}
    assert content[3] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(audio).decode(), "format": "wav"},
    }


async def test_media_fall_back_along_the_chain(upstream: FakeOpenAIUpstream) -> None:
    """A provider that cannot be reached is passed over for the next of the capability's
    chain, for images and for streamed speech alike (before the first chunk)."""
    text = f"""
[providers.google]
base_url = "http://127.0.0.1:9"
[providers.openai]
base_url = "{upstream.base_url_openai}"
[routing]
image = ["google", "openai"]
speech = ["google", "openai"]
"""
    config = make_config(text, env={"OPENAI_API_KEY": "sk-test", "GOOGLE_API_KEY": "AIza-test"})
    async with daemon_client(config) as client:
        made = await client.generate_image("an ash tree", "gemini-2.5-flash-image")
        chunks = [c async for c in client.synthesize("hi", "gemini-2.5-flash-preview-tts")]
        missing = client.generate_image("x", "openai:gpt-image-missing")
        with pytest.raises(ModelNotFound):
            await missing
    assert made.provider == "openai" and made.images[0].data == tiny_png(0)
    assert chunks[-1].done and chunks[-1].provider == "openai"


async def test_pdf_page_limit(upstream: FakeOpenAIUpstream) -> None:
    config = compat_config(upstream)
    config = dataclasses.replace(config, media=dataclasses.replace(config.media, max_pdf_pages=1))
    two_pages = PDF.replace(b"/Kids [3 0 R] /Count 1", b"/Kids [3 0 R 4 0 R] /Count 2") + (
        b"4 0 obj << /Type /Page /Parent 2 0 R >> endobj\n"
    )
    async with daemon_client(config) as client:
        await client.chat([Message.user("one", parts=[Part.document(PDF)])], model="gpt-4o-mini")
        with pytest.raises(InvalidInput) as refused:
            await client.chat(
                [Message.user("two", parts=[Part.document(two_pages)])], model="gpt-4o-mini"
            )
    assert refused.value.field == "messages[0].parts[0].document.data"
    assert "2 pages" in str(refused.value) and "media.max_pdf_pages" in str(refused.value)
