"""A fake Ollama server on loopback, speaking Ollama's native API as a real one does.

The wire format was learned from real recordings and Ollama's docs; every text, name and
number here is the project's own. What the fake reproduces:

* ``/api/chat`` and ``/api/generate``: streaming by default (``"stream"`` absent means
  true), NDJSON (``application/x-ndjson``), one object per line with ``model``,
  ``created_at`` (Go's RFC 3339 with nanoseconds) and ``done``; the last line carries
  ``done_reason`` and the counts and durations (``prompt_eval_count``, ``eval_count``,
  ``prompt_eval_cached_count``, nanosecond durations, and ``context`` on /api/generate);
  ``stream: false`` answers one object with everything joined;
* reasoning in ``message.thinking`` (chat) or top-level ``thinking`` (generate), with an
  empty ``content`` meanwhile;
* tool calls whole in one line, ``function.arguments`` a JSON object, ``done_reason``
  still ``"stop"``; newer servers send ``id`` and ``function.index``, older ones neither
  (scenario ``legacy-tool``);
* errors: ``{"error": "..."}`` bodies — 404 ``model 'NAME' not found`` for anything not
  pulled, 401 ``unauthorized`` (ollama.com without a key), 429 with ``Retry-After``, 500,
  503 ``server busy``, 400 ``does not support tools``; an error line inside a 200 stream
  with no done line after it; Go's plain-text ``404 page not found`` for unknown paths;
* ``/api/embed`` (normalised vectors, ``prompt_eval_count``), ``/api/tags``, ``/api/show``
  (``capabilities``, ``model_info`` with ``<arch>.context_length``), ``/api/ps``.

The scenario is the model name without its tag: the shared conformance scenarios
(``conf-text``, ``conf-tool``, ... see ``tests/fakes/conformance.py``) and the fake's own
(``SCENARIOS``). Models of the catalogue (``CATALOGUE``) answer the ``conf-text`` content.
Every request is recorded in ``fake.requests``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import conformance as conf
from tests.fakes.loopback import LoopbackServer, RecordedRequest

# -- the fake's own content --------------------------------------------------------------------

LENGTH_PIECES = ("Nine", " worlds", " hang", " from")
JSON_TEXT = '{"city":"Oslo","population":709037}'
LEGACY_ARGS = {"harbor": "Bergen", "passengers": 2}
STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
SERVER_ERROR = "llama runner process has terminated: exit status 2"
BUSY_ERROR = "server busy, please try again.  maximum pending requests exceeded"
RATE_LIMIT_ERROR = "you have reached your hourly usage limit, please try again later"
MEMORY_ERROR = "model requires more system memory (11.2 GiB) than is available (3.4 GiB)"
EMBED_DIMS = 8
CALL_IDS = ("call_w3a7h9rk", "call_t1m3z0n2")

# The pulled models: name -> (family, capabilities, context length, embedding length).
CATALOGUE: dict[str, tuple[str, tuple[str, ...], int, int]] = {
    "llama3.2:1b": ("llama", ("completion", "tools"), 131072, 2048),
    "qwen3:0.6b": ("qwen3", ("completion", "tools", "thinking"), 40960, 1024),
    "gpt-oss:20b": ("gptoss", ("completion", "tools", "thinking"), 131072, 2880),
    "llava:7b": ("llama", ("completion", "vision"), 32768, 4096),
    "nomic-embed-text:latest": ("nomic-bert", ("embedding",), 2048, 768),
}


def full_name(model: str) -> str:
    """Ollama's name for a model: no tag means ``:latest``."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def scenario_of(model: str) -> str:
    """The scenario a model name asks for: the name without its tag."""
    name = model.rsplit(":", 1)[0] if ":" in model.rsplit("/", 1)[-1] else model
    return name


def fake_vector(text: str, dims: int = EMBED_DIMS) -> list[float]:
    """A deterministic unit vector for ``text`` (what /api/embed answers)."""
    digest = hashlib.sha256(text.encode()).digest()
    values = [b / 127.5 - 1.0 for b in digest[:dims]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 7) for v in values]


# -- scripts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Think:
    text: str


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Call:
    name: str
    arguments: Mapping[str, Any]
    id: str | None = None  # older Ollama sends none
    index: int | None = None  # newer Ollama numbers them in function.index


@dataclass(frozen=True)
class Calls:
    """Tool calls that arrive together in one line."""

    calls: tuple[Call, ...]


@dataclass(frozen=True)
class StreamFail:
    message: str


@dataclass(frozen=True)
class RawLine:
    data: bytes


Step = Think | Say | Call | Calls | StreamFail | RawLine


@dataclass(frozen=True)
class Counts:
    prompt: int
    completion: int
    cached: int | None = None


@dataclass(frozen=True)
class Script:
    steps: tuple[Step, ...]
    done_reason: str | None = "stop"
    counts: Counts | None = Counts(
        conf.PROMPT_TOKENS, conf.COMPLETION_TOKENS, conf.CACHED_PROMPT_TOKENS
    )
    # "done": a final done line; "eof": the stream just ends (cut short, or after an error).
    ending: str = "done"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps({"error": message}).encode(), headers=dict(headers or {}))


def not_found(model: str) -> Reply:
    return error_reply(404, f"model '{full_name(model)}' not found")


def _text_script() -> Script:
    return Script(tuple(Say(p) for p in conf.TEXT_PIECES))


def _scenario(
    name: str, model: str, body: Mapping[str, Any], catalogue: Mapping[str, Any] = CATALOGUE
) -> Script | Reply | None:
    """What the fake answers for a model; None when it is not pulled."""
    weather = Call("get_weather", conf.WEATHER_ARGS, CALL_IDS[0], 0)
    clock = Call("get_time", conf.TIME_ARGS, CALL_IDS[1], 1)
    reasoning = tuple(Think(p) for p in conf.REASONING_PIECES)
    scripts: dict[str, Script | Reply] = {
        "conf-text": _text_script(),
        "conf-tool": Script((weather,)),
        "conf-parallel": Script((weather, clock)),
        "conf-reasoning": Script((*reasoning, *(Say(p) for p in conf.TEXT_PIECES))),
        "conf-auth": error_reply(401, "unauthorized"),
        "conf-missing": not_found(model),
        "conf-rate-limit": error_reply(
            429, RATE_LIMIT_ERROR, {"Retry-After": str(conf.RETRY_AFTER_SECONDS)}
        ),
        "conf-server-error": error_reply(500, SERVER_ERROR),
        "conf-overloaded": error_reply(503, BUSY_ERROR),
        "conf-stream-error": Script(
            (Say(conf.TEXT_PIECES[0]), StreamFail(STREAM_ERROR)), ending="eof"
        ),
        # The fake's own.
        "length": Script(
            tuple(Say(p) for p in LENGTH_PIECES), done_reason="length", counts=Counts(12, 4)
        ),
        "json": Script((Say(JSON_TEXT[:10]), Say(JSON_TEXT[10:])), counts=Counts(30, 12)),
        "legacy-tool": Script((Call("book_ferry", LEGACY_ARGS),), counts=Counts(150, 19)),
        "legacy-parallel": Script(
            (
                Calls(
                    (
                        Call("book_ferry", LEGACY_ARGS),
                        Call("book_ferry", {"harbor": "Oslo", "passengers": 1}),
                    )
                ),
            ),
        ),
        "parallel-one-line": Script((Calls((weather, clock)),)),
        "truncated": Script(tuple(Say(p) for p in conf.TEXT_PIECES[:2]), ending="eof"),
        "malformed": Script(
            (Say(conf.TEXT_PIECES[0]), RawLine(b'{"model":"malformed","message":{'))
        ),
        "no-reason": Script(
            tuple(Say(p) for p in conf.TEXT_PIECES), done_reason=None, counts=Counts(8, 5)
        ),
        "no-counts": Script(tuple(Say(p) for p in conf.TEXT_PIECES), counts=None),
        "memory": error_reply(500, MEMORY_ERROR),
        "no-tools": error_reply(
            400, f"registry.ollama.ai/library/{full_name(model)} does not support tools"
        )
        if body.get("tools")
        else _text_script(),
    }
    if name in scripts:
        return scripts[name]
    if full_name(model) in catalogue:
        return _text_script()
    return None


# -- rendering -------------------------------------------------------------------------------------


def _created_at(i: int) -> str:
    """Go's time format, nanoseconds included, a few milliseconds apart per line."""
    nanos = 481516234 + i * 7_340_117
    return f"2025-11-04T09:15:{12 + nanos // 10**9:02d}.{nanos % 10**9:09d}Z"


def _call_to_wire(call: Call) -> dict[str, Any]:
    function: dict[str, Any] = {"name": call.name, "arguments": dict(call.arguments)}
    if call.index is not None:
        function = {"index": call.index, **function}
    wire: dict[str, Any] = {"function": function}
    if call.id is not None:
        wire = {"id": call.id, **wire}
    return wire


def _stats(script: Script, kind: str) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    if script.done_reason is not None:
        stats["done_reason"] = script.done_reason
    if kind == "generate":
        stats["context"] = [105, 2364, 107, 3048, 506, 236743, 108]
    stats["total_duration"] = 1_204_331_807
    stats["load_duration"] = 40_112_958
    if script.counts is not None:
        stats["prompt_eval_count"] = script.counts.prompt
        if script.counts.cached is not None:
            stats["prompt_eval_cached_count"] = script.counts.cached
        stats["prompt_eval_duration"] = 88_401_000
        stats["eval_count"] = script.counts.completion
        stats["eval_duration"] = 907_553_000
    return stats


class Renderer:
    """A Script as /api/chat or /api/generate objects."""

    def __init__(self, kind: str, model: str) -> None:
        self.kind = kind  # "chat" or "generate"
        self.model = model
        self.line = 0

    def _head(self) -> dict[str, Any]:
        head = {"model": self.model, "created_at": _created_at(self.line)}
        self.line += 1
        return head

    def _piece(
        self, content: str = "", thinking: str = "", calls: Sequence[Call] = ()
    ) -> dict[str, Any]:
        obj = self._head()
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = [_call_to_wire(c) for c in calls]
            obj["message"] = message
        else:
            obj["response"] = content
            if thinking:
                obj["thinking"] = thinking
        obj["done"] = False
        return obj

    def lines(self, script: Script) -> list[bytes]:
        out: list[bytes] = []
        for step in script.steps:
            if isinstance(step, Say):
                out.append(_line(self._piece(content=step.text)))
            elif isinstance(step, Think):
                out.append(_line(self._piece(thinking=step.text)))
            elif isinstance(step, Call):
                out.append(_line(self._piece(calls=[step])))
            elif isinstance(step, Calls):
                out.append(_line(self._piece(calls=step.calls)))
            elif isinstance(step, StreamFail):
                out.append(_line({"error": step.message}))
            elif isinstance(step, RawLine):
                out.append(step.data + b"\n")
        if script.ending == "done":
            final = self._piece()
            final["done"] = True
            final.update(_stats(script, self.kind))
            out.append(_line(final))
        return out

    def whole(self, script: Script) -> dict[str, Any] | Reply:
        """The ``stream: false`` answer: everything in one object (or the error status a
        runner failure becomes when nothing has been sent yet)."""
        fail = next((s for s in script.steps if isinstance(s, StreamFail)), None)
        if fail is not None:
            return error_reply(500, fail.message)
        broken = next((s for s in script.steps if isinstance(s, RawLine)), None)
        if broken is not None:
            return Reply(200, broken.data)
        content = "".join(s.text for s in script.steps if isinstance(s, Say))
        thinking = "".join(s.text for s in script.steps if isinstance(s, Think))
        calls: list[Call] = []
        for step in script.steps:
            if isinstance(step, Call):
                calls.append(step)
            elif isinstance(step, Calls):
                calls.extend(step.calls)
        obj = self._piece(content=content, thinking=thinking, calls=calls)
        obj["done"] = True
        obj.update(_stats(script, self.kind))
        return obj


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


# -- the server ----------------------------------------------------------------------------


class FakeOllama(LoopbackServer):
    """A fake Ollama on a free loopback port: ``async with FakeOllama() as fake``."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        write_size: int | None = None,
        running: Sequence[str] = ("llama3.2:1b",),
        pulled: Mapping[str, tuple[str, tuple[str, ...], int, int]] | None = None,
    ) -> None:
        """``api_key``: when set, a request without ``Authorization: Bearer <key>`` gets 401
        (ollama.com). ``write_size``: stream writes of this many bytes, splitting lines
        anywhere. ``running``: the models /api/ps reports loaded. ``pulled``: models pulled
        besides the catalogue's, in its notation."""
        super().__init__(write_size=write_size)
        self.catalogue = {**CATALOGUE, **(pulled or {})}
        self.api_key = api_key
        self.running = list(running)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", functools.partial(self.generation, kind="chat"))
        app.router.add_post("/api/generate", functools.partial(self.generation, kind="generate"))
        app.router.add_post("/api/embed", self.embed)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_post("/api/show", self.show)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_route("*", "/{tail:.*}", self.unknown)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def last(self, path: str = "/api/chat") -> RecordedRequest:
        found = self.requests_to(path)
        if not found:
            raise AssertionError(f"no request to {path} was recorded")
        return found[-1]

    # -- handlers ---------------------------------------------------------------------------------

    def _refused(self, request: web.Request) -> Reply | None:
        if (
            self.api_key is not None
            and request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            return error_reply(401, "unauthorized")
        return None

    async def _send(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))
        response.headers["Content-Type"] = reply.content_type
        return response

    async def generation(self, request: web.Request, kind: str) -> web.StreamResponse:
        record = await self.record(request)
        refused = self._refused(request)
        if refused is not None:
            return await self._send(request, refused)
        body = record.json if isinstance(record.json, dict) else {}
        model = str(body.get("model") or "")
        if not model:
            return await self._send(request, error_reply(400, "model is required"))
        answer = _scenario(scenario_of(model), model, body, self.catalogue)
        if answer is None:
            return await self._send(request, not_found(model))
        if isinstance(answer, Reply):
            return await self._send(request, answer)
        renderer = Renderer(kind, model)
        if body.get("stream", True) is False:
            whole = renderer.whole(answer)
            if isinstance(whole, Reply):
                return await self._send(request, whole)
            payload = json.dumps(whole, separators=(",", ":"), ensure_ascii=False).encode()
            return await self._send(request, Reply(200, payload))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in renderer.lines(answer):
            size = self.write_size or len(line)
            for start in range(0, len(line), size):
                await response.write(line[start : start + size])
        await response.write_eof()
        return response

    async def embed(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        refused = self._refused(request)
        if refused is not None:
            return await self._send(request, refused)
        body = record.json if isinstance(record.json, dict) else {}
        model = str(body.get("model") or "")
        answer = _scenario(scenario_of(model), model, body, self.catalogue)
        if answer is None:
            return await self._send(request, not_found(model))
        if isinstance(answer, Reply):
            return await self._send(request, answer)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        obj = {
            "model": model,
            "embeddings": [fake_vector(t) for t in texts],
            "total_duration": 14_392_811,
            "load_duration": 1_093_250,
            "prompt_eval_count": sum(len(t.split()) + 1 for t in texts),
        }
        return await self._send(
            request, Reply(200, json.dumps(obj, separators=(",", ":")).encode())
        )

    async def tags(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        refused = self._refused(request)
        if refused is not None:
            return await self._send(request, refused)
        models = []
        for i, (name, (family, _caps, _ctx, _emb)) in enumerate(self.catalogue.items()):
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": f"2025-10-{10 + i:02d}T08:30:00.123456789+02:00",
                    "size": 1_300_000_000 + i * 700_000_000,
                    "digest": hashlib.sha256(name.encode()).hexdigest(),
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": family,
                        "families": [family],
                        "parameter_size": "1.2B",
                        "quantization_level": "Q4_K_M",
                    },
                }
            )
        return await self._send(request, Reply(200, json.dumps({"models": models}).encode()))

    async def show(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        refused = self._refused(request)
        if refused is not None:
            return await self._send(request, refused)
        body = record.json if isinstance(record.json, dict) else {}
        model = str(body.get("model") or body.get("name") or "")
        entry = self.catalogue.get(full_name(model))
        if entry is None:
            return await self._send(request, not_found(model))
        family, capabilities, context, embedding = entry
        obj = {
            "license": "Test licence of the fake Ollama.",
            "modelfile": f"FROM {model}\n",
            "parameters": 'stop "<|end|>"',
            "template": "{{ .Prompt }}",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": family,
                "families": [family],
            },
            "model_info": {
                "general.architecture": family,
                "general.parameter_count": 1_235_814_432,
                f"{family}.context_length": context,
                f"{family}.embedding_length": embedding,
                f"{family}.block_count": 16,
                "tokenizer.ggml.tokens": None,
            },
            "capabilities": list(capabilities),
            "modified_at": "2025-10-10T08:30:00.123456789+02:00",
        }
        return await self._send(request, Reply(200, json.dumps(obj).encode()))

    async def ps(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        refused = self._refused(request)
        if refused is not None:
            return await self._send(request, refused)
        models = []
        for name in self.running:
            size = 2_019_377_152
            models.append(
                {
                    "name": name,
                    "model": name,
                    "size": size,
                    "digest": hashlib.sha256(name.encode()).hexdigest(),
                    "details": {"format": "gguf", "family": "llama"},
                    "expires_at": "2025-11-04T09:20:12.481516234+01:00",
                    "size_vram": size,
                    "context_length": 4096,
                }
            )
        return await self._send(request, Reply(200, json.dumps({"models": models}).encode()))

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        return await self._send(request, Reply(404, b"404 page not found", "text/plain"))
