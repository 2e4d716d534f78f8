"""Fake realtime WebSocket upstreams on loopback: OpenAI's Realtime API and Gemini's Live
API, each speaking its event sequences as its reference describes them.

- ``FakeOpenAIRealtime`` follows OpenAI's GA Realtime API reference (the ``openai``
  3.60.0 package's ``types/realtime`` event definitions, read 2026-12-04): the key as a
  bearer token on the handshake, ``session.created`` first; ``session.update`` ->
  ``session.updated``; ``input_audio_buffer.append``/``commit`` -> ``committed`` and an
  input transcription delta; ``response.create`` -> ``response.created``,
  ``response.output_audio.delta``/``response.output_audio_transcript.delta`` (or
  ``response.output_text.delta`` for text sessions) or a
  ``response.function_call_arguments.done``, then ``response.done`` with usage;
  ``response.cancel`` -> ``response.done`` with status ``cancelled``; ``error`` events.
- ``FakeGeminiLive`` follows the Live API reference (the ``google-genai`` 3.6.1
  package's ``LiveClientMessage``/``LiveServerMessage`` types, read 2026-12-04): the key in
  ``x-goog-api-key``; ``setup`` -> ``setupComplete``; ``realtimeInput.audio`` then
  ``audioStreamEnd`` -> ``serverContent`` with ``inputTranscription``, ``modelTurn``
  parts of ``inlineData`` audio, ``outputTranscription``, then ``usageMetadata`` and
  ``turnComplete``; ``clientContent`` text naming the weather -> ``toolCall``;
  ``toolResponse`` -> a text turn. A bad key closes the socket with 1008.

Both record every message received (``received``), the handshake headers, and set
``closed`` when the socket ends, so tests can see ratd close it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from tests.fakes.loopback import LoopbackServer

AUDIO_CHUNK = bytes(range(256)) * 4  # 1 KiB of "audio" per delta
GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


class _FakeRealtime(LoopbackServer):
    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.received: list[dict[str, Any]] = []
        self.handshakes: list[CIMultiDict[str]] = []
        self.queries: list[dict[str, str]] = []
        self.sessions = 0
        self.responses = 0
        self.closed = asyncio.Event()
        self.got_message = asyncio.Event()
        # Deltas per response, and the pause between them (a long answer to interrupt).
        self.audio_chunks = 3
        self.chunk_delay = 0.0
        # Audio deltas sent so far (backpressure tests watch it stall).
        self.sent_chunks = 0
        # (code, message): fail the next response with an error event and a close.
        self.fail_with: tuple[str, str] | None = None
        # HTTP status to refuse the handshake with (a down provider).
        self.refuse_status: int | None = None
        # Set: the fake stops reading its socket (an upstream that takes no more input)
        # until resume_reading is set.
        self.stop_reading = asyncio.Event()
        self.resume_reading = asyncio.Event()
        # A URL to redirect the handshake to (ratd must not follow it).
        self.redirect_to: str | None = None
        # False: do not keep what was received (a long benchmark run).
        self.keep_received = True

    def types(self) -> list[str]:
        return [str(m.get("type") or next(iter(m), "")) for m in self.received]

    async def _receive(self, ws: web.WebSocketResponse) -> dict[str, Any] | None:
        if self.stop_reading.is_set():
            await self.resume_reading.wait()
        msg = await ws.receive()
        if msg.type != WSMsgType.TEXT:
            return None
        found: dict[str, Any] = json.loads(msg.data)
        if self.keep_received:
            self.received.append(found)
        self.got_message.set()
        return found


class FakeOpenAIRealtime(_FakeRealtime):
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/realtime", self.handle)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes.append(CIMultiDict(request.headers))
        self.queries.append(dict(request.query))
        if self.redirect_to is not None:
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        if self.refuse_status is not None:
            return web.json_response(
                {"error": {"message": "overloaded", "type": "server_error"}},
                status=self.refuse_status,
            )
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            body = {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
            return web.json_response(body, status=401)
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        self.sessions += 1
        self.closed.clear()
        try:
            await self.session(ws, request.query.get("model", ""))
        finally:
            self.closed.set()
        return ws

    async def session(self, ws: web.WebSocketResponse, model: str) -> None:
        session: dict[str, Any] = {"id": "sess_fake_1", "type": "realtime", "model": model}
        await ws.send_json({"type": "session.created", "event_id": "ev_1", "session": session})
        responding: asyncio.Task[None] | None = None
        state: dict[str, Any] = {"session": {}, "items": [], "cancel": asyncio.Event()}
        while True:
            msg = await self._receive(ws)
            if msg is None:
                break
            kind = msg.get("type")
            if kind == "session.update":
                state["session"].update(msg.get("session") or {})
                await ws.send_json({"type": "session.updated", "session": state["session"]})
            elif kind == "input_audio_buffer.commit":
                await ws.send_json({"type": "input_audio_buffer.committed", "item_id": "item_in"})
                await ws.send_json(
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": "item_in",
                        "content_index": 0,
                        "delta": "hello there",
                    }
                )
            elif kind == "conversation.item.create":
                state["items"].append(msg.get("item") or {})
            elif kind == "response.create":
                state["cancel"] = asyncio.Event()
                responding = asyncio.create_task(self.respond(ws, state))
            elif kind == "response.cancel":
                state["cancel"].set()
        if responding is not None:
            responding.cancel()

    async def respond(self, ws: web.WebSocketResponse, state: dict[str, Any]) -> None:
        self.responses += 1
        rid = f"resp_{self.responses}"
        await ws.send_json({"type": "response.created", "response": {"id": rid}})
        if self.fail_with is not None:
            code, message = self.fail_with
            await ws.send_json(
                {
                    "type": "error",
                    "error": {"type": "server_error", "code": code, "message": message},
                }
            )
            await ws.close(code=1011, message=message.encode())
            return
        items = state["items"]
        last = items[-1] if items else {}
        asked_weather = last.get("type") == "message" and "weather" in json.dumps(last)
        if asked_weather and state["session"].get("tools"):
            await ws.send_json(
                {
                    "type": "response.function_call_arguments.done",
                    "response_id": rid,
                    "item_id": "item_fc",
                    "output_index": 0,
                    "call_id": "call_weather_1",
                    "name": "get_weather",
                    "arguments": '{"city":"Oslo"}',
                }
            )
            await self.done(ws, rid, "completed")
            return
        text_only = state["session"].get("output_modalities") == ["text"]
        if last.get("type") == "function_call_output":
            words = [f"It is {json.loads(last['output'])['sky']} in Oslo."]
        else:
            words = ["Hi", " there", "!"]
        for i in range(self.audio_chunks):
            if state["cancel"].is_set():
                await self.done(ws, rid, "cancelled")
                return
            word = words[i] if i < len(words) else ""
            if text_only:
                if word:
                    await ws.send_json(
                        {"type": "response.output_text.delta", "response_id": rid, "delta": word}
                    )
            else:
                audio = base64.b64encode(AUDIO_CHUNK).decode()
                await ws.send_json(
                    {"type": "response.output_audio.delta", "response_id": rid, "delta": audio}
                )
                self.sent_chunks += 1
                if word:
                    await ws.send_json(
                        {
                            "type": "response.output_audio_transcript.delta",
                            "response_id": rid,
                            "delta": word,
                        }
                    )
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await self.done(ws, rid, "completed")

    @staticmethod
    async def done(ws: web.WebSocketResponse, rid: str, status: str) -> None:
        usage = {
            "total_tokens": 150,
            "input_tokens": 100,
            "output_tokens": 50,
            "input_token_details": {"audio_tokens": 80, "text_tokens": 20, "cached_tokens": 10},
            "output_token_details": {"audio_tokens": 40, "text_tokens": 10},
        }
        response = {"id": rid, "object": "realtime.response", "status": status, "usage": usage}
        await ws.send_json({"type": "response.done", "response": response})


class FakeGeminiLive(_FakeRealtime):
    def routes(self, app: web.Application) -> None:
        app.router.add_get(GEMINI_PATH, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes.append(CIMultiDict(request.headers))
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        self.closed.clear()
        try:
            if request.headers.get("x-goog-api-key") != self.api_key:
                await ws.close(
                    code=1008, message=b"API key not valid. Please pass a valid API key."
                )
                return ws
            self.sessions += 1
            await self.session(ws)
        finally:
            self.closed.set()
        return ws

    async def session(self, ws: web.WebSocketResponse) -> None:
        setup = await self._receive(ws)
        if setup is None or "setup" not in setup:
            await ws.close(code=1007, message=b"the first message must be setup")
            return
        await ws.send_json({"setupComplete": {}})
        tools = setup["setup"].get("tools")
        while True:
            msg = await self._receive(ws)
            if msg is None:
                return
            realtime = msg.get("realtimeInput") or {}
            if realtime.get("audioStreamEnd") or "activityEnd" in realtime:
                await self.audio_turn(ws)
            content = msg.get("clientContent")
            if content and "weather" in json.dumps(content) and tools:
                call = {"id": "fc_weather_1", "name": "get_weather", "args": {"city": "Oslo"}}
                await ws.send_json({"toolCall": {"functionCalls": [call]}})
            if "toolResponse" in msg:
                sky = msg["toolResponse"]["functionResponses"][0]["response"]["sky"]
                part = {"text": f"It is {sky} in Oslo."}
                await ws.send_json({"serverContent": {"modelTurn": {"parts": [part]}}})
                await self.turn_complete(ws)

    async def audio_turn(self, ws: web.WebSocketResponse) -> None:
        await ws.send_json({"serverContent": {"inputTranscription": {"text": "hello there"}}})
        for i in range(self.audio_chunks):
            part = {
                "inlineData": {
                    "mimeType": "audio/pcm;rate=24000",
                    "data": base64.b64encode(AUDIO_CHUNK).decode(),
                }
            }
            await ws.send_json({"serverContent": {"modelTurn": {"parts": [part]}}})
            self.sent_chunks += 1
            if i < 3:
                word = ["Hi", " there", "!"][i]
                await ws.send_json({"serverContent": {"outputTranscription": {"text": word}}})
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await self.turn_complete(ws)

    @staticmethod
    async def turn_complete(ws: web.WebSocketResponse) -> None:
        usage = {
            "promptTokenCount": 120,
            "responseTokenCount": 60,
            "totalTokenCount": 180,
            "promptTokensDetails": [
                {"modality": "AUDIO", "tokenCount": 100},
                {"modality": "TEXT", "tokenCount": 20},
            ],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 60}],
        }
        await ws.send_json({"usageMetadata": usage})
        await ws.send_json({"serverContent": {"generationComplete": True}})
        await ws.send_json({"serverContent": {"turnComplete": True}})


async def _serve(key: str, chunks: int) -> None:
    """Serve a fake OpenAI Realtime API until killed (the benchmark's upstream); prints
    ``realtime <base_url>`` once listening."""
    fake = FakeOpenAIRealtime(key)
    fake.audio_chunks = chunks
    fake.keep_received = False
    await fake.start()
    print("realtime", fake.base_url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--key", default="sk-bench-not-a-real-key")
    parser.add_argument("--chunks", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(_serve(args.key, args.chunks))
