"""The media commands of the real ``rat`` CLI against a spawned ``ratd`` and the fake
OpenAI upstream: ``rat image``, ``rat transcribe`` (small files unary, large ones as a
client stream), ``rat say`` to a file and to stdout, ``rat chat --file doc.pdf``, and the
exit code of a bad file."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_media import TRANSCRIPT, speech_chunk, tiny_png
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY, OPENROUTER_KEY
from tests.support.daemon import SpawnedRatd, spawn_ratd
from tests.test_e2e import rat
from tests.test_media_openai import PDF, wav_bytes

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def ratd(upstream: FakeOpenAIUpstream, tmp_path: Path) -> Iterator[SpawnedRatd]:
    config = f'[providers.openai]\nbase_url = "{upstream.base_url_openai}"\n'
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY}
    with spawn_ratd(config, tmp_path, env=env) as process:
        yield process
    assert OPENAI_KEY not in process.log()


async def test_rat_image(ratd: SpawnedRatd, upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    out = tmp_path / "tree.png"
    code, stdout, err = await rat(ratd, "image", "an ash tree", "-o", str(out), "-n", "2")
    assert code == 0, err
    first, second = tmp_path / "tree-1.png", tmp_path / "tree-2.png"
    assert stdout.split() == [str(first), str(second)]
    assert first.read_bytes() == tiny_png(0) and second.read_bytes() == tiny_png(1)
    source = tmp_path / "in.png"
    source.write_bytes(tiny_png(9))
    code, stdout, err = await rat(
        ratd, "image", "autumn", "-o", str(out), "--edit", str(source), "--json"
    )
    assert code == 0, err
    assert base64.b64decode(json.loads(stdout)["images"][0]["data"]) == tiny_png(0)
    assert [kind for kind, _ in upstream.media.calls] == ["generations", "edits"]


async def test_rat_transcribe(
    ratd: SpawnedRatd, upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    small = tmp_path / "small.wav"
    small.write_bytes(wav_bytes())
    code, stdout, err = await rat(ratd, "transcribe", str(small))
    assert (code, stdout.strip()) == (0, TRANSCRIPT), err
    large = tmp_path / "large.wav"
    large.write_bytes(wav_bytes(700_000))  # 1.4 MB: a client stream of two chunks
    code, stdout, err = await rat(ratd, "transcribe", str(large), "--timestamps")
    assert code == 0, err
    assert stdout.splitlines()[0].startswith("[   0.00 -    1.20]")
    forms = [form for kind, form in upstream.media.calls if kind == "transcriptions"]
    assert forms[1]["file"][2] == large.read_bytes()
    code, _, err = await rat(ratd, "transcribe", str(tmp_path / "missing.wav"))
    assert code == 2 and "cannot read" in err
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio at all")
    code, _, err = await rat(ratd, "transcribe", str(notes))
    assert code != 0 and "audio" in err


async def test_rat_say(ratd: SpawnedRatd, upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    out = tmp_path / "hello.mp3"
    code, stdout, err = await rat(ratd, "say", "hello there", "-o", str(out), "--voice", "ash")
    assert (code, stdout.strip()) == (0, str(out)), err
    assert out.read_bytes() == b"".join(speech_chunk(i) for i in range(4))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rat",
        "--address",
        ratd.address,
        "say",
        "hello",
        "-o",
        "-",
        "--format",
        "wav",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "")},
    )
    audio, err_bytes = await process.communicate()
    assert process.returncode == 0, err_bytes
    assert audio == b"".join(speech_chunk(i) for i in range(4))
    bodies = [body for kind, body in upstream.media.calls if kind == "speech"]
    assert bodies[0]["voice"] == "ash" and bodies[0]["response_format"] == "mp3"
    assert bodies[1]["response_format"] == "wav"


async def test_rat_chat_with_a_pdf(
    ratd: SpawnedRatd, upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    doc = tmp_path / "edda.pdf"
    doc.write_bytes(PDF)
    code, stdout, err = await rat(
        ratd, "chat", "summarise", "--file", str(doc), "-m", "gpt-4o-mini", "--no-stream"
    )
    assert code == 0, err
    assert stdout.strip()
    content = upstream.last("openai").json["messages"][0]["content"]
    assert content[1]["file"]["filename"] == "edda.pdf"
    assert content[1]["file"]["file_data"].startswith("data:application/pdf;base64,")
