"""Video generation jobs: GenerateVideo through a real ratd to the fake Gemini API's
Interactions API (Gemini Omni Flash in background mode), polled until the video is
there; the job survives its ratd being killed (SIGKILL) and restarted mid-job, the new
process polling the same interaction; cancel reaches the provider; failures are the
provider's errors."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.rpc import code_pb2

from ratatoskr import (
    InvalidInput,
    ModelNotAllowed,
    ServiceClient,
    job_metadata,
    video_result,
)
from ratatoskr.v1 import jobs_pb2
from tests.fakes.gemini_interactions_upstream import (
    VIDEO_BYTES,
    VIDEO_MODEL,
    FakeGeminiInteractionsUpstream,
)
from tests.support.daemon import daemon_client, make_config, running_daemon, spawn_ratd

pytestmark = pytest.mark.timeout(90)

KEY = "AIzaSyTest-Video-0123456789abcdef0123"


def config_text(fake: FakeGeminiInteractionsUpstream, jobs_dir: str = "") -> str:
    return f"""
[providers.google]
base_url = "{fake.base_url}"
[jobs]
dir = "{jobs_dir}"
"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiInteractionsUpstream]:
    async with FakeGeminiInteractionsUpstream(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture
async def client(fake: FakeGeminiInteractionsUpstream) -> AsyncIterator[ServiceClient]:
    config = make_config(config_text(fake), env={"GOOGLE_API_KEY": KEY})
    async with daemon_client(config) as connected:
        yield connected


def creates(fake: FakeGeminiInteractionsUpstream) -> list[dict[str, object]]:
    return [
        r.json
        for r in fake.requests
        if r.method == "POST" and r.path == "/v1beta/interactions" and isinstance(r.json, dict)
    ]


async def test_a_video_is_generated_and_delivered_as_bytes(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    started = await client.generate_video("A squirrel runs up an ash tree", display_name="clip")
    assert started.name.startswith("operations/video-")
    assert (started.metadata.provider, started.metadata.model) == ("google", VIDEO_MODEL)
    operation = await client.wait_operation(started.name)
    assert operation.done and not operation.HasField("error")
    result = video_result(operation)
    assert [(v.mime_type, v.data) for v in result.videos] == [("video/mp4", VIDEO_BYTES)]
    meta = job_metadata(operation)
    assert (meta.kind, meta.state, meta.upstream_status) == (
        "video",
        jobs_pb2.JOB_STATE_SUCCEEDED,
        "completed",
    )
    [body] = creates(fake)
    assert body == {
        "model": VIDEO_MODEL,
        "input": "A squirrel runs up an ash tree",
        "response_modalities": ["video"],
        "background": True,
        "store": True,
    }


async def test_a_video_delivered_by_uri_and_a_blocked_prompt(client: ServiceClient) -> None:
    by_uri = await client.generate_video("uri: a long clip")
    result = video_result(await client.wait_operation(by_uri.name))
    assert result.videos[0].uri.endswith(":download") and not result.videos[0].data
    blocked = await client.generate_video("blocked: something")
    failed = await client.wait_operation(blocked.name)
    assert failed.done and failed.error.code == code_pb2.INVALID_ARGUMENT
    assert "blocked" in failed.error.message
    assert job_metadata(failed).state == jobs_pb2.JOB_STATE_FAILED


async def test_cancel_reaches_the_provider(
    client: ServiceClient, fake: FakeGeminiInteractionsUpstream
) -> None:
    fake.state.hold = True
    started = await client.generate_video("A very long take")
    while not fake.state.polls:  # noqa: ASYNC110 (the fake counts polls, no event)
        await asyncio.sleep(0.01)
    await client.cancel_operation(started.name)
    await asyncio.wait_for(fake.state.cancel_seen.wait(), 10)
    assert len(fake.state.cancelled) == 1
    operation = await client.get_operation(started.name)
    assert operation.error.code == code_pb2.CANCELLED


async def test_bad_video_requests(client: ServiceClient) -> None:
    with pytest.raises(InvalidInput, match="prompt"):
        await client.generate_video("  ")
    with pytest.raises(Exception, match="no configured provider of kind google named 'nope'"):
        await client.generate_video("x", model="nope:gemini-omni-flash-preview")


async def test_the_allow_list_applies(fake: FakeGeminiInteractionsUpstream) -> None:
    key = "rat_test-video-narrow-0a1b2c3d"
    text = (
        config_text(fake)
        + f"""
[auth]
mode = "api_key"
[tenants.narrow]
api_key_sha256 = ["{hashlib.sha256(key.encode()).hexdigest()}"]
roles = ["inference"]
models = ["gemini-2.5-flash"]
"""
    )
    config = make_config(text, env={"GOOGLE_API_KEY": KEY})
    async with running_daemon(config) as daemon:
        async with await ServiceClient.connect(daemon.address, api_key=key) as connected:
            with pytest.raises(ModelNotAllowed):
                await connected.generate_video("x")
    assert not creates(fake)


async def test_a_video_job_survives_a_killed_ratd(
    fake: FakeGeminiInteractionsUpstream, tmp_path: Path
) -> None:
    jobs_dir = tmp_path / "jobs"
    config = config_text(fake, str(jobs_dir))
    env = {"GOOGLE_API_KEY": KEY}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    fake.state.hold = True
    with spawn_ratd(config, tmp_path / "one", env=env) as first:
        async with await ServiceClient.connect(first.address, timeout=20) as client:
            started = await client.generate_video("A squirrel carries a message down")
            while not fake.state.polls:  # noqa: ASYNC110 (the fake counts polls, no event)
                await asyncio.sleep(0.01)
        first.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.process.wait, 20)
    polls_before = fake.state.polls
    with spawn_ratd(config, tmp_path / "two", env=env) as second:
        async with await ServiceClient.connect(second.address, timeout=20) as client:
            running = await client.get_operation(started.name)
            assert not running.done
            while fake.state.polls == polls_before:  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.01)  # the new ratd polls the same interaction
            fake.state.hold = False
            operation = await client.wait_operation(started.name)
    assert operation.done and not operation.HasField("error"), operation.error
    assert video_result(operation).videos[0].data == VIDEO_BYTES
    assert len(creates(fake)) == 1  # resumed, not started again
    assert "resuming operations/video-" in second.log()


async def test_rat_video_writes_the_file(
    fake: FakeGeminiInteractionsUpstream, tmp_path: Path
) -> None:
    from tests.test_jobs_cli import rat

    out = tmp_path / "clip.mp4"
    with spawn_ratd(
        config_text(fake, str(tmp_path / "jobs")), tmp_path, env={"GOOGLE_API_KEY": KEY}
    ) as ratd:
        code, stdout, err = await rat(ratd, "video", "A squirrel", "on an ash", "-o", str(out))
        assert code == 0, err
        assert out.read_bytes() == VIDEO_BYTES
        assert f'"bytes": {len(VIDEO_BYTES)}' in stdout
        code, stdout, _ = await rat(ratd, "video", "uri: long", "--no-wait")
        name = stdout.strip()
        assert code == 0 and name.startswith("video-")
        code, stdout, _ = await rat(ratd, "jobs", "wait", name)
        assert code == 0 and "succeeded" in stdout
        code, stdout, _ = await rat(ratd, "jobs", "result", name)
        assert code == 0 and ":download" in stdout
