"""The HuggingFace Inference API's media tasks on the fake (``FakeHuggingFace``), as
huggingface.co/docs/inference-providers/tasks describes them (as of 2026-12), chosen by
the model's name as the real API chooses by the model's pipeline:

* automatic-speech-recognition (``*whisper*``): ``{"inputs": <base64 audio>,
  "parameters": {"return_timestamps"?}}`` → ``{"text", "chunks"?: [{"text", "timestamp":
  [start, end]}]}``; inputs that are not base64 audio are a 400;
* text-to-image (``*FLUX*``, ``*diffusion*``): ``{"inputs": prompt, "parameters"?:
  {"width", "height"}}`` → PNG bytes (``image/png``);
* text-to-speech (``*Kokoro*``, ``*tts*``): ``{"inputs": text}`` → FLAC bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes.openai_media import tiny_png

REFERENCE = "huggingface.co/docs/inference-providers/tasks (ASR, text-to-image, TTS), 2026-12"
HF_TRANSCRIPT = "nine worlds on one tree"
FLAC = b"fLaC\x00\x00\x00\x22" + bytes(range(34)) + b"frames"


def task(model: str) -> str:
    lowered = model.lower()
    if "whisper" in lowered:
        return "automatic-speech-recognition"
    if "flux" in lowered or "diffusion" in lowered:
        return "text-to-image"
    if "kokoro" in lowered or "tts" in lowered:
        return "text-to-speech"
    return ""


def answer(model: str, body: Mapping[str, Any]) -> web.Response:
    kind = task(model)
    inputs = body.get("inputs")
    if kind == "automatic-speech-recognition":
        try:
            audio = base64.b64decode(str(inputs), validate=True)
        except (binascii.Error, ValueError):
            audio = b""
        if not audio.startswith(b"RIFF"):
            return web.json_response({"error": "Malformed soundfile"}, status=400)
        result: dict[str, Any] = {"text": HF_TRANSCRIPT}
        if (body.get("parameters") or {}).get("return_timestamps"):
            result["chunks"] = [
                {"text": " nine worlds", "timestamp": [0.0, 0.8]},
                {"text": " on one tree", "timestamp": [0.8, 1.6]},
            ]
        return web.json_response(result)
    if not isinstance(inputs, str) or not inputs:
        return web.json_response({"error": "inputs must be a non-empty string"}, status=400)
    if kind == "text-to-image":
        return web.Response(body=tiny_png(len(inputs)), content_type="image/png")
    return web.Response(body=FLAC, content_type="audio/flac")
