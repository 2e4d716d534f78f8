"""The OpenAI door's media endpoints, driven by the official ``openai`` SDK against an
in-process ratd whose OpenAI provider is the fake upstream: images.generate (b64_json),
audio.transcriptions.create (json, verbose_json segments, text), streamed
audio.speech (the chunks as they arrive), and bad input as OpenAI's 400s."""

from __future__ import annotations

import base64

import openai
import pytest

from tests.fakes.openai_media import TRANSCRIPT, speech_chunk, tiny_png
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.openai_door import base_url, door_daemon
from tests.test_media_openai import wav_bytes

pytestmark = pytest.mark.timeout(60)


async def test_images_transcriptions_speech_through_the_sdk(upstream: FakeOpenAIUpstream) -> None:
    async with door_daemon(upstream) as daemon:
        client = openai.AsyncOpenAI(base_url=base_url(daemon), api_key="unused", max_retries=0)
        images = await client.images.generate(model="gpt-image-2", prompt="an ash tree", n=2)
        plain = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", wav_bytes(), "audio/wav")
        )
        verbose = await client.audio.transcriptions.create(
            model="whisper-1",
            file=("a.wav", wav_bytes(), "audio/wav"),
            response_format="verbose_json",
            timestamp_granularities=["segment"],
        )
        text = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", wav_bytes(), "audio/wav"), response_format="text"
        )
        async with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", input="hello", voice="coral"
        ) as speech:
            audio = b"".join([chunk async for chunk in speech.iter_bytes()])
            kind = speech.headers["content-type"]
        with pytest.raises(openai.BadRequestError) as refused:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", b"not audio", "audio/wav")
            )
        with pytest.raises(openai.BadRequestError):
            await client.images.generate(model="gpt-image-2", prompt="x", response_format="url")
        await client.close()
    assert [base64.b64decode(i.b64_json or "") for i in images.data] == [tiny_png(0), tiny_png(1)]
    assert images.usage is not None and images.usage.output_tokens == 544
    assert plain.text == TRANSCRIPT
    assert [(s.start, s.end) for s in verbose.segments or ()] == [(0.0, 1.2), (1.2, 2.5)]
    assert str(text).strip() == TRANSCRIPT
    assert audio == b"".join(speech_chunk(i) for i in range(4)) and kind == "audio/mpeg"
    assert "audio" in str(refused.value)


async def test_image_edits_through_the_sdk(upstream: FakeOpenAIUpstream) -> None:
    async with door_daemon(upstream) as daemon:
        client = openai.AsyncOpenAI(base_url=base_url(daemon), api_key="unused", max_retries=0)
        edited = await client.images.edit(
            model="gpt-image-2",
            image=[("a.png", tiny_png(4), "image/png"), ("b.png", tiny_png(5), "image/png")],
            prompt="merge them",
        )
        with pytest.raises(openai.BadRequestError):
            await client.images.edit(
                model="gpt-image-2", image=("a.png", b"not a png", "image/png"), prompt="x"
            )
        await client.close()
    assert base64.b64decode(edited.data[0].b64_json or "") == tiny_png(0)
    (form,) = [form for kind, form in upstream.media.calls if kind == "edits"]
    assert [f[2] for f in form["image[]"]] == [tiny_png(4), tiny_png(5)]
    assert form["prompt"] == "merge them"
