"""Realtime sessions through a real in-process ratd (grpc.aio) to fake WebSocket
upstreams on loopback (tests/fakes/realtime_upstream.py) speaking OpenAI's Realtime API
and Gemini's Live API: audio in and audio, text and transcripts out with usage and cost;
a tool call round trip; interruption; the caller leaving mid-utterance; upstream errors
and refused handshakes as statuses; oversized and malformed input refused; fallback
before the session opens."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ratatoskr import (
    AuthenticationFailed,
    CallerUnauthenticated,
    InvalidInput,
    ModelNotAllowed,
    RatatoskrError,
    ServiceClient,
)
from ratatoskr.realtime import RealtimeSession
from ratatoskr.v1 import realtime_pb2 as rt
from ratd.core.realtime import MAX_AUDIO_CHUNK_BYTES
from ratd.providers.http import ws_url
from tests.fakes.realtime_upstream import AUDIO_CHUNK, FakeGeminiLive, FakeOpenAIRealtime
from tests.support.daemon import daemon_client, make_config, spawn_ratd

OPENAI_KEY = "sk-test-realtime-0123456789"
GOOGLE_KEY = "AIzaSyTest-Live-0123456789abcdef"
OPENAI_MODEL = "gpt-realtime"
GEMINI_MODEL = "gemini-3.1-flash-live-preview"
WEATHER = rt.RealtimeTool(
    name="get_weather",
    description="The weather in a city",
    parameters_json=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}}),
)
# Generous bound for waiting on an event the fake records (never a timing assertion).
WAIT = 10.0


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAIRealtime]:
    async with FakeOpenAIRealtime(OPENAI_KEY) as fake:
        yield fake


@pytest.fixture
async def gemini() -> AsyncIterator[FakeGeminiLive]:
    async with FakeGeminiLive(GOOGLE_KEY) as fake:
        yield fake


def config_text(openai: FakeOpenAIRealtime, gemini: FakeGeminiLive, extra: str = "") -> str:
    return f"""
[providers.openai]
base_url = "{openai.base_url}"
[providers.google]
base_url = "{gemini.base_url}"
{extra}
"""


@pytest.fixture
async def client(
    openai: FakeOpenAIRealtime, gemini: FakeGeminiLive
) -> AsyncIterator[ServiceClient]:
    env = {"OPENAI_API_KEY": OPENAI_KEY, "GOOGLE_API_KEY": GOOGLE_KEY}
    async with daemon_client(make_config(config_text(openai, gemini), env=env)) as c:
        yield c


async def until(session: RealtimeSession, kind: str) -> list[rt.RealtimeResponse]:
    """Events up to and including the first of ``kind``."""
    seen = []
    async for event in session:
        seen.append(event)
        if event.WhichOneof("event") == kind:
            return seen
    raise AssertionError(f"the session ended before {kind}: {seen}")


def of(events: list[rt.RealtimeResponse], kind: str) -> list[Any]:
    return [getattr(e, kind) for e in events if e.WhichOneof("event") == kind]


async def test_openai_audio_in_audio_text_and_transcripts_out(
    client: ServiceClient, openai: FakeOpenAIRealtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratd.requests")
    async with client.realtime(
        OPENAI_MODEL,
        voice="marin",
        instructions="Be brief.",
        transcribe_input=True,
        manual_turns=True,
    ) as session:
        assert session.created.provider == "openai"
        assert session.created.session_id == "sess_fake_1"
        assert session.created.input_sample_rate_hz == 24000
        await session.send_audio(b"\x00\x01" * 2400)
        await session.send_audio(b"\x02\x03" * 2400)
        await session.commit()
        await session.create_response()
        events = await until(session, "response_done")
        await session.end()
        rest = [e async for e in session]
    audio = b"".join(d.data for d in of(events, "audio_delta"))
    assert audio == AUDIO_CHUNK * 3
    transcript = "".join(d.text for d in of(events, "output_transcript_delta"))
    assert transcript == "Hi there!"
    assert [d.text for d in of(events, "input_transcript_delta")] == ["hello there"]
    done = events[-1].response_done
    assert done.status == rt.REALTIME_RESPONSE_STATUS_COMPLETED
    assert (done.usage.input_tokens, done.usage.output_tokens) == (100, 50)
    assert (done.usage.input_audio_tokens, done.usage.output_audio_tokens) == (80, 40)
    assert done.usage.cached_tokens == 10
    # The seed's gpt-realtime prices (4 and 16 USD per million tokens).
    assert done.usage.cost_usd == pytest.approx((100 * 4 + 50 * 16) / 1e6)
    assert [e.WhichOneof("event") for e in rest] == ["session_ended"]
    assert rest[0].session_ended.usage.cost_usd == pytest.approx(done.usage.cost_usd)
    # What went upstream: the bearer key on the handshake, the model in the query, the
    # session as configured, then the caller's audio, commit and response.create.
    assert openai.handshakes[0]["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert openai.queries[0] == {"model": OPENAI_MODEL}
    update = openai.received[0]
    assert update["type"] == "session.update"
    assert update["session"]["instructions"] == "Be brief."
    assert update["session"]["audio"]["output"]["voice"] == "marin"
    assert update["session"]["audio"]["input"]["turn_detection"] is None
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    appended = [m for m in openai.received if m["type"] == "input_audio_buffer.append"]
    assert base64.b64decode(appended[0]["audio"]) == b"\x00\x01" * 2400
    assert openai.types()[-2:] == ["input_audio_buffer.commit", "response.create"]
    await asyncio.wait_for(openai.closed.wait(), WAIT)
    line = next(r for r in caplog.records if "method=Realtime" in r.getMessage())
    assert "status=OK" in line.getMessage()
    assert "tokens_in=100" in line.getMessage() and "tokens_out=50" in line.getMessage()
    assert OPENAI_KEY not in caplog.text


async def test_openai_text_session(client: ServiceClient, openai: FakeOpenAIRealtime) -> None:
    async with client.realtime(OPENAI_MODEL, text_only=True) as session:
        await session.send_text("Say hi")
        await session.create_response()
        events = await until(session, "response_done")
    assert "".join(d.text for d in of(events, "text_delta")) == "Hi there!"
    item = next(m for m in openai.received if m["type"] == "conversation.item.create")
    assert item["item"]["content"] == [{"type": "input_text", "text": "Say hi"}]
    assert openai.received[0]["session"]["output_modalities"] == ["text"]


async def test_gemini_audio_in_audio_and_transcripts_out(
    client: ServiceClient, gemini: FakeGeminiLive
) -> None:
    async with client.realtime(
        GEMINI_MODEL, voice="Puck", instructions="Be brief.", transcribe_input=True
    ) as session:
        assert session.created.provider == "google"
        assert session.created.input_sample_rate_hz == 16000
        assert session.created.output_sample_rate_hz == 24000
        await session.send_audio(b"\x00\x01" * 1600)
        await session.commit()
        events = await until(session, "response_done")
        await session.end()
        rest = [e async for e in session]
    assert b"".join(d.data for d in of(events, "audio_delta")) == AUDIO_CHUNK * 3
    assert "".join(d.text for d in of(events, "output_transcript_delta")) == "Hi there!"
    assert [d.text for d in of(events, "input_transcript_delta")] == ["hello there"]
    done = events[-1].response_done
    assert done.status == rt.REALTIME_RESPONSE_STATUS_COMPLETED
    assert done.response_id == "turn-1"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (120, 60)
    assert (done.usage.input_audio_tokens, done.usage.output_audio_tokens) == (100, 60)
    assert not done.usage.HasField("cost_usd")  # no price known for this model
    assert [e.WhichOneof("event") for e in rest] == ["session_ended"]
    setup = gemini.received[0]["setup"]
    assert setup["model"] == f"models/{GEMINI_MODEL}"
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    voice = setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
    assert voice == {"voiceName": "Puck"}
    assert setup["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert "inputAudioTranscription" in setup and "outputAudioTranscription" in setup
    audio = gemini.received[1]["realtimeInput"]["audio"]
    assert audio["mimeType"] == "audio/pcm;rate=16000"
    assert base64.b64decode(audio["data"]) == b"\x00\x01" * 1600
    assert gemini.received[2] == {"realtimeInput": {"audioStreamEnd": True}}
    assert gemini.handshakes[0]["x-goog-api-key"] == GOOGLE_KEY


@pytest.mark.parametrize("model", [OPENAI_MODEL, GEMINI_MODEL])
async def test_tool_call_round_trip(
    client: ServiceClient, openai: FakeOpenAIRealtime, gemini: FakeGeminiLive, model: str
) -> None:
    async with client.realtime(model, tools=[WEATHER], text_only=True) as session:
        await session.send_text("What is the weather in Oslo?")
        await session.create_response()
        events = await until(session, "tool_call")
        call = events[-1].tool_call
        assert call.name == "get_weather"
        assert json.loads(call.arguments_json) == {"city": "Oslo"}
        await session.send_tool_result(call.call_id, json.dumps({"sky": "sunny"}), call.name)
        await session.create_response()
        events = await until(session, "text_delta")
        assert events[-1].text_delta.text == "It is sunny in Oslo."
    if model == OPENAI_MODEL:
        tools = openai.received[0]["session"]["tools"]
        assert tools[0]["name"] == "get_weather" and tools[0]["type"] == "function"
        output = [
            m for m in openai.received if m.get("item", {}).get("type") == "function_call_output"
        ]
        assert output[0]["item"]["call_id"] == "call_weather_1"
        assert json.loads(output[0]["item"]["output"]) == {"sky": "sunny"}
    else:
        declared = gemini.received[0]["setup"]["tools"][0]["functionDeclarations"]
        assert declared[0]["name"] == "get_weather"
        response = next(m["toolResponse"] for m in gemini.received if "toolResponse" in m)
        assert response["functionResponses"] == [
            {"id": "fc_weather_1", "name": "get_weather", "response": {"sky": "sunny"}}
        ]


async def test_interruption_cancels_the_response_upstream(
    client: ServiceClient, openai: FakeOpenAIRealtime
) -> None:
    openai.audio_chunks = 10_000
    openai.chunk_delay = 0.005
    async with client.realtime(OPENAI_MODEL, manual_turns=True) as session:
        await session.send_audio(b"\x00" * 4800)
        await session.commit()
        await session.create_response()
        await until(session, "audio_delta")
        await session.cancel_response()
        events = await until(session, "response_done")
    assert events[-1].response_done.status == rt.REALTIME_RESPONSE_STATUS_CANCELLED
    assert "response.cancel" in openai.types()
    assert openai.sent_chunks < openai.audio_chunks


async def test_gemini_interruption_drops_the_rest_of_the_turn(
    client: ServiceClient, gemini: FakeGeminiLive
) -> None:
    gemini.audio_chunks = 50
    async with client.realtime(GEMINI_MODEL) as session:
        await session.send_audio(b"\x00" * 3200)
        await session.commit()
        await until(session, "audio_delta")
        await session.cancel_response()
        events = await until(session, "response_done")
    assert events[-1].response_done.status == rt.REALTIME_RESPONSE_STATUS_CANCELLED


@pytest.mark.parametrize("fake_name", ["openai", "gemini"])
async def test_caller_leaving_mid_utterance_closes_the_upstream(
    client: ServiceClient, openai: FakeOpenAIRealtime, gemini: FakeGeminiLive, fake_name: str
) -> None:
    fake = openai if fake_name == "openai" else gemini
    model = OPENAI_MODEL if fake_name == "openai" else GEMINI_MODEL
    async with client.realtime(model) as session:
        for _ in range(3):
            await session.send_audio(b"\x00\x01" * 800)
        fake.got_message.clear()
        await session.send_audio(b"\x00\x01" * 800)
        await asyncio.wait_for(fake.got_message.wait(), WAIT)
        assert not fake.closed.is_set()
        session.close()  # the caller goes mid-utterance, with no commit
    await asyncio.wait_for(fake.closed.wait(), WAIT)
    assert fake.sessions == 1


async def test_upstream_error_ends_the_call_with_a_clear_status(
    client: ServiceClient, openai: FakeOpenAIRealtime
) -> None:
    openai.fail_with = ("server_error", "The server had an error while processing")
    async with client.realtime(OPENAI_MODEL, manual_turns=True) as session:
        await session.send_text("hi")
        await session.create_response()
        with pytest.raises(RatatoskrError) as caught:
            await until(session, "response_done")
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "The server had an error while processing" in str(caught.value)
    assert "1011" in str(caught.value)


async def test_refused_keys_are_unauthenticated(
    openai: FakeOpenAIRealtime, gemini: FakeGeminiLive
) -> None:
    env = {"OPENAI_API_KEY": "sk-wrong", "GOOGLE_API_KEY": "AIza-wrong"}
    async with daemon_client(make_config(config_text(openai, gemini), env=env)) as client:
        for model in (OPENAI_MODEL, GEMINI_MODEL):
            with pytest.raises(AuthenticationFailed) as caught:
                async with client.realtime(model):
                    pass
            assert "wrong" not in str(caught.value)
    assert "API key not valid" in str(caught.value)


async def test_oversized_audio_chunk_is_invalid_argument(
    client: ServiceClient, openai: FakeOpenAIRealtime
) -> None:
    async with client.realtime(OPENAI_MODEL) as session:
        await session.send_audio(b"\x00" * (MAX_AUDIO_CHUNK_BYTES + 1))
        with pytest.raises(InvalidInput) as caught:
            await until(session, "response_done")
    assert f"at most {MAX_AUDIO_CHUNK_BYTES}" in str(caught.value)
    await asyncio.wait_for(openai.closed.wait(), WAIT)
    assert "input_audio_buffer.append" not in openai.types()


@pytest.mark.parametrize(
    ("first", "words"),
    [
        (rt.RealtimeRequest(audio=b"\x00\x00"), "first client event must configure"),
        (rt.RealtimeRequest(session=rt.RealtimeSessionConfig()), "session.model"),
    ],
)
async def test_a_session_must_be_configured_first(
    client: ServiceClient, openai: FakeOpenAIRealtime, first: rt.RealtimeRequest, words: str
) -> None:
    call = client._stub.Realtime(timeout=WAIT)
    await call.write(first)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (caught.value.details() or "")
    assert openai.sessions == 0


async def test_the_model_cannot_change_mid_session(
    client: ServiceClient, openai: FakeOpenAIRealtime
) -> None:
    async with client.realtime(OPENAI_MODEL) as session:
        await session.update(rt.RealtimeSessionConfig(model="gpt-realtime-mini"))
        with pytest.raises(InvalidInput, match="cannot change"):
            await until(session, "response_done")


async def test_fallback_happens_before_the_session_opens(
    openai: FakeOpenAIRealtime, gemini: FakeGeminiLive
) -> None:
    """The first provider refuses the handshake (503); the second serves the session."""
    async with FakeOpenAIRealtime(OPENAI_KEY) as backup:
        openai.refuse_status = 503
        extra = f"""
[providers.backup]
kind = "openai"
base_url = "{backup.base_url}"
api_key_env = "OPENAI_API_KEY"
[routing]
realtime = ["openai", "backup"]
"""
        env = {"OPENAI_API_KEY": OPENAI_KEY, "GOOGLE_API_KEY": GOOGLE_KEY}
        config = make_config(config_text(openai, gemini, extra), env=env)
        async with daemon_client(config) as client, client.realtime(OPENAI_MODEL) as session:
            assert session.created.provider == "backup"
        assert len(openai.handshakes) == 1 and backup.sessions == 1


async def test_a_model_without_a_realtime_provider_is_refused(client: ServiceClient) -> None:
    with pytest.raises(RatatoskrError) as caught:
        async with client.realtime("claude-sonnet-4-5"):
            pass
    assert caught.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED)


async def _stalled(fake: FakeOpenAIRealtime) -> int:
    """The fake's count of audio deltas sent, once it has stopped growing."""
    last = -1
    for _ in range(200):
        await asyncio.sleep(0.1)
        if fake.sent_chunks == last and last > 0:
            return last
        last = fake.sent_chunks
    raise AssertionError(f"the fake never stalled ({fake.sent_chunks} deltas sent)")


async def test_a_caller_that_stops_reading_stops_the_upstream(
    client: ServiceClient, openai: FakeOpenAIRealtime
) -> None:
    """Backpressure: ratd reads the upstream only as fast as the caller reads ratd, so a
    caller that reads nothing leaves the fake blocked on its socket (a few MiB in flight
    in socket and HTTP/2 buffers) rather than ratd buffering the ~300 MiB answer."""
    openai.audio_chunks = 200_000
    async with client.realtime(OPENAI_MODEL, manual_turns=True) as session:
        await session.create_response()
        stalled = await _stalled(openai)
        assert stalled < openai.audio_chunks // 10
        for _ in range(2 * stalled + 100):  # read on: the upstream moves again
            await session.receive()
        assert openai.sent_chunks > stalled
    await asyncio.wait_for(openai.closed.wait(), WAIT)


@pytest.mark.parametrize("model", [OPENAI_MODEL, GEMINI_MODEL])
async def test_the_python_example_runs(
    client: ServiceClient, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/realtime.py against the fakes: audio in, a tool call answered, the
    answer's audio written out, the session ended cleanly."""
    example = _example()
    answer = await example.converse(client, model, b"\x00\x01" * 4800, "")
    assert answer.text == "Hi there!"
    assert bytes(answer.audio) == AUDIO_CHUNK * 3
    assert "you said: hello there" in capsys.readouterr().out
    answer = await example.converse(client, model, b"", "What is the weather?")
    assert answer.text == "It is sunny in Oslo."


def _example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "realtime_example", Path(__file__).parents[1] / "examples" / "realtime.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _new_key(tenant: str) -> tuple[str, str]:
    """``ratd keys new``: the key and its config lines."""
    result = subprocess.run(
        [sys.executable, "-m", "ratd", "keys", "new", tenant],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    key = next(line for line in lines if line.startswith("rat_"))
    return key, "\n".join(line for line in lines if not line.startswith(("#", "rat_")))


async def test_spawned_ratd_with_tenants(
    openai: FakeOpenAIRealtime, gemini: FakeGeminiLive, tmp_path: Path
) -> None:
    """A real ratd process with [auth]: the tenant's allow-list holds for realtime as for
    chat, callers without a key are refused, and a session works end to end."""
    key, table = _new_key("acme")
    config = f"""
[server]
address = "127.0.0.1:0"
metrics_address = "127.0.0.1:0"
[auth]
mode = "api_key"
{table}
models = ["{OPENAI_MODEL}"]
{config_text(openai, gemini)}
"""
    env = {"OPENAI_API_KEY": OPENAI_KEY, "GOOGLE_API_KEY": GOOGLE_KEY}
    with spawn_ratd(config, tmp_path, env=env) as ratd:
        async with await ServiceClient.connect(ratd.address, api_key=key, timeout=30) as client:
            async with client.realtime(OPENAI_MODEL, manual_turns=True) as session:
                await session.send_audio(b"\x00\x01" * 2400)
                await session.commit()
                await session.create_response()
                events = await until(session, "response_done")
            assert b"".join(d.data for d in of(events, "audio_delta")) == AUDIO_CHUNK * 3
            with pytest.raises(ModelNotAllowed):
                async with client.realtime(GEMINI_MODEL):
                    pass
        async with await ServiceClient.connect(ratd.address, timeout=30) as anonymous:
            with pytest.raises(CallerUnauthenticated):
                async with anonymous.realtime(OPENAI_MODEL):
                    pass
        await asyncio.wait_for(openai.closed.wait(), WAIT)
    assert gemini.sessions == 0 and openai.sessions == 1
    log = ratd.log()
    assert "method=Realtime" in log and "tenant=acme" in log
    assert key not in log and OPENAI_KEY not in log


async def test_a_redirected_handshake_is_refused_not_followed(
    client: ServiceClient, openai: FakeOpenAIRealtime
) -> None:
    """The key goes to the configured origin only: a redirect elsewhere is not followed."""
    async with FakeOpenAIRealtime(OPENAI_KEY) as elsewhere:
        openai.redirect_to = f"{elsewhere.base_url}/realtime?model={OPENAI_MODEL}"
        with pytest.raises(RatatoskrError) as caught:
            async with client.realtime(OPENAI_MODEL):
                pass
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert "redirect" in str(caught.value)
        assert len(openai.handshakes) == 1 and not elsewhere.handshakes


async def test_an_upstream_that_stops_reading_stops_the_caller(
    client: ServiceClient, openai: FakeOpenAIRealtime
) -> None:
    """Backpressure the other way: while the upstream takes nothing, ratd reads nothing
    more of the caller, so the caller's writes block (after a few MiB in socket and
    HTTP/2 buffers) instead of ratd buffering its audio."""
    chunk = b"\x00" * MAX_AUDIO_CHUNK_BYTES
    total = 4000  # 1 GiB, were nothing to hold it back
    sent = 0
    async with client.realtime(OPENAI_MODEL, manual_turns=True) as session:
        openai.stop_reading.set()

        async def send_all() -> None:
            nonlocal sent
            for _ in range(total):
                await session.send_audio(chunk)
                sent += 1

        sender = asyncio.create_task(send_all())
        last = -1
        for _ in range(200):
            await asyncio.sleep(0.1)
            if sent == last and sent > 0:
                break
            last = sent
        assert not sender.done()
        print(f"the caller's writes stalled after {sent} chunks of {len(chunk)} bytes")
        assert sent < total // 20, f"{sent} chunks went out while the upstream read nothing"
        sender.cancel()
    openai.resume_reading.set()  # the fake reads on, and finds the session closed
    await asyncio.wait_for(openai.closed.wait(), WAIT)


def test_websocket_urls_come_from_the_configured_base_url() -> None:
    assert ws_url("https://api.openai.com/v1") == "wss://api.openai.com/v1"
    assert ws_url("http://127.0.0.1:8080/v1") == "ws://127.0.0.1:8080/v1"
    assert (
        ws_url("HTTPS://generativelanguage.googleapis.com")
        == "wss://generativelanguage.googleapis.com"
    )
