"""Gemini media through a real grpc.aio ratd and the fake Gemini upstream: image output
(responseModalities IMAGE, imageConfig aspect ratio, input images for edits), streamed
speech whose first chunk arrives before the upstream has finished, and documents, audio
and video in chat, inline and by file URI."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest

from ratatoskr import Message, Part, ServiceClient, UnsupportedParameter
from tests.fakes.gemini_interactions_upstream import FakeGeminiInteractionsUpstream
from tests.fakes.gemini_media import IMAGE_TEXT, PCM_MIME, SPEECH_EVENTS, pcm_chunk
from tests.fakes.gemini_upstream import FakeGeminiUpstream
from tests.fakes.openai_media import tiny_png
from tests.support.daemon import daemon_client, make_config
from tests.test_gemini_interactions import KEY as INTERACTIONS_KEY
from tests.test_gemini_interactions import config_text
from tests.test_media_openai import PDF, wav_bytes

pytestmark = pytest.mark.timeout(60)
KEY = "AIzaSyTest-Ratatoskr-media-0123456789abcd"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(32)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiUpstream]:
    async with FakeGeminiUpstream(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture
async def client(fake: FakeGeminiUpstream) -> AsyncIterator[ServiceClient]:
    config = make_config(
        f'[providers.google]\nbase_url = "{fake.base_url}"\n', env={"GOOGLE_API_KEY": KEY}
    )
    async with daemon_client(config) as c:
        yield c


def last_body(fake: FakeGeminiUpstream) -> dict:
    body = fake.requests[-1].json
    assert isinstance(body, dict)
    return body


async def test_image_output(client: ServiceClient, fake: FakeGeminiUpstream) -> None:
    answer = await client.generate_image(
        "an ash tree", "gemini-2.5-flash-image", size="1536x1024", input_images=[tiny_png(3)]
    )
    assert [(i.data, i.mime_type) for i in answer.images] == [(tiny_png(7), "image/png")]
    assert answer.text == IMAGE_TEXT and answer.provider == "google"
    assert answer.usage.completion_tokens == 1290
    body = last_body(fake)
    assert fake.requests[-1].path.endswith("/gemini-2.5-flash-image:generateContent")
    assert body["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"aspectRatio": "3:2"},
    }
    parts = body["contents"][0]["parts"]
    assert parts[0] == {"text": "an ash tree"}
    assert parts[1]["inlineData"]["data"] == base64.b64encode(tiny_png(3)).decode()
    with pytest.raises(UnsupportedParameter) as refused:
        await client.generate_image("x", "gemini-2.5-flash-image", size="1000x10")
    assert refused.value.field == "size"


async def test_speech_streams_before_the_upstream_finishes(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    fake.media.hold_speech = asyncio.Event()
    stream = client.synthesize(
        "Say cheerfully: hello", "gemini-2.5-flash-preview-tts", voice="Puck"
    )
    first = await anext(stream)
    assert (first.audio, first.mime_type) == (pcm_chunk(0), PCM_MIME)
    assert not fake.media.speech_finished
    fake.media.hold_speech.set()
    rest = [chunk async for chunk in stream]
    assert [c.audio for c in rest[:-1]] == [pcm_chunk(i) for i in range(1, SPEECH_EVENTS)]
    assert rest[-1].done and rest[-1].usage.completion_tokens == 40 * SPEECH_EVENTS
    body = last_body(fake)
    assert fake.requests[-1].path.endswith(":streamGenerateContent")
    assert body["generationConfig"] == {
        "responseModalities": ["AUDIO"],
        "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}},
    }
    with pytest.raises(UnsupportedParameter) as refused:
        await anext(client.synthesize("hi", "gemini-2.5-flash-preview-tts", format="mp3"))
    assert refused.value.field == "format"
    fake.media.hold_speech = None
    wav = [c async for c in client.synthesize("hi", "gemini-2.5-flash-preview-tts", format="wav")]
    audio = b"".join(c.audio for c in wav)
    assert audio[:4] == b"RIFF" and audio[8:16] == b"WAVEfmt " and audio[36:40] == b"data"
    assert audio[44:] == b"".join(pcm_chunk(i) for i in range(SPEECH_EVENTS))
    assert {c.mime_type for c in wav if c.audio} == {"audio/wav"}


async def test_documents_audio_video_in_chat(
    client: ServiceClient, fake: FakeGeminiUpstream
) -> None:
    message = Message.user(
        "what is in these?",
        parts=[
            Part.document(PDF),
            Part.audio(wav_bytes()),
            Part.video(MP4),
            Part.video(
                "https://generativelanguage.googleapis.com/v1beta/files/abc", mime_type="video/mp4"
            ),
        ],
    )
    reply = await client.chat([message], model="gemini-3.5-flash-lite")
    assert reply.content
    parts = last_body(fake)["contents"][0]["parts"]
    assert parts[0] == {"text": "what is in these?"}
    assert parts[1] == {
        "inlineData": {"mimeType": "application/pdf", "data": base64.b64encode(PDF).decode()}
    }
    assert parts[2]["inlineData"]["mimeType"] == "audio/wav"
    assert parts[3]["inlineData"]["mimeType"] == "video/mp4"
    assert parts[4] == {
        "fileData": {
            "mimeType": "video/mp4",
            "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
        }
    }


async def test_interactions_api_takes_documents_audio_video() -> None:
    """A model sent to the Interactions API: DocumentContent / AudioContent / VideoContent
    in the user_input step, inline or by URI."""
    async with FakeGeminiInteractionsUpstream(api_key=INTERACTIONS_KEY) as fake:
        config = make_config(config_text(fake), env={"GOOGLE_API_KEY": INTERACTIONS_KEY})
        message = Message.user(
            "what is in these?",
            parts=[
                Part.document(PDF),
                Part.audio(wav_bytes()),
                Part.video("https://example.org/tree.mp4", mime_type="video/mp4"),
            ],
        )
        async with daemon_client(config) as client:
            await client.chat([message], model="google:text")
        (step,) = fake.last("/v1beta/interactions").json["input"]
    assert step["content"][1] == {
        "type": "document",
        "data": base64.b64encode(PDF).decode(),
        "mime_type": "application/pdf",
    }
    assert step["content"][2]["type"] == "audio" and step["content"][2]["mime_type"] == "audio/wav"
    assert step["content"][3] == {
        "type": "video",
        "uri": "https://example.org/tree.mp4",
        "mime_type": "video/mp4",
    }
