"""HuggingFace Inference API media tasks through a real grpc.aio ratd and the fake
Inference API: automatic-speech-recognition (with timestamps as segments),
text-to-image (the image bytes, size as width/height) and text-to-speech (the audio,
whole, as one chunk); what a task cannot take is refused naming the field. HF model ids
look like OpenRouter's, so they are named ``huggingface:<id>``."""

from __future__ import annotations

import base64

import pytest

from ratatoskr import UnsupportedParameter
from tests.fakes.huggingface_media import FLAC, HF_TRANSCRIPT
from tests.fakes.huggingface_upstream import FakeHuggingFace
from tests.fakes.openai_media import tiny_png
from tests.support.daemon import daemon_client
from tests.test_huggingface import KEY, config_for
from tests.test_media_openai import wav_bytes

pytestmark = pytest.mark.timeout(60)


async def test_asr_text_to_image_text_to_speech() -> None:
    audio = wav_bytes()
    async with (
        FakeHuggingFace(api_key=KEY) as fake,
        daemon_client(config_for(fake.base_url)) as client,
    ):
        plain = await client.transcribe(audio, "huggingface:openai/whisper-large-v3")
        timed = await client.transcribe(
            audio, "huggingface:openai/whisper-large-v3", timestamps=True
        )
        sent_asr = fake.last("/models/openai/whisper-large-v3").json
        picture = await client.generate_image(
            "ash", "huggingface:black-forest-labs/FLUX.1-schnell", size="512x768"
        )
        sent_image = fake.last("/models/black-forest-labs/FLUX.1-schnell").json
        chunks = [c async for c in client.synthesize("hello", "huggingface:hexgrad/Kokoro-82M")]
        with pytest.raises(UnsupportedParameter) as refused:
            await anext(client.synthesize("hi", "huggingface:hexgrad/Kokoro-82M", voice="x"))
    assert plain.text == HF_TRANSCRIPT and not plain.segments
    assert [(s.start_secs, s.end_secs, s.text) for s in timed.segments] == [
        (0.0, 0.8, " nine worlds"),
        (0.8, 1.6, " on one tree"),
    ]
    assert sent_asr == {
        "inputs": base64.b64encode(audio).decode(),
        "parameters": {"return_timestamps": True},
    }
    assert [(i.data, i.mime_type) for i in picture.images] == [(tiny_png(3), "image/png")]
    assert sent_image == {"inputs": "ash", "parameters": {"width": 512, "height": 768}}
    assert (chunks[0].audio, chunks[0].mime_type) == (FLAC, "audio/flac")
    assert chunks[-1].done and chunks[-1].provider == "huggingface"
    assert refused.value.field == "voice"
