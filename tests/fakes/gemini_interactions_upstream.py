"""The fake Gemini API with its Interactions API (``/v1beta/interactions``) as well.

Follows the Interactions API reference on ai.google.dev as of December 2026 (GA June
2026; the quickstart and background-execution guides; ``Api-Revision: 2026-05-20``, the
revision with typed steps), cross-checked field by field against the ``google-genai``
3.6.1 SDK's types (``google/genai/_gaos/types/interactions``). No recorded responses
were available: every text, id and number here is the project's own. What it serves:

* ``POST /v1beta/interactions``: an Interaction (``id``, ``object``, ``status``,
  ``model`` or ``agent``, ``created``, ``updated``, ``steps``, ``usage``); with
  ``"stream": true`` SSE events ``interaction.created``, ``step.start`` / ``step.delta``
  (``text``, ``thought_summary``, ``thought_signature``, ``arguments_delta``) /
  ``step.stop``, ``interaction.completed`` (status and usage, no steps) and ``error``;
* ``"background": true``: answers at once ``in_progress``; ``GET
  /v1beta/interactions/{id}`` answers ``in_progress`` for the scenario's number of polls,
  then the finished interaction; ``POST /v1beta/interactions/{id}/cancel`` cancels it
  (recorded in ``cancelled``);
* ``store`` (true unless false): only stored interactions can be fetched; background
  needs it;
* the API's strictness: unknown top-level or ``generation_config`` fields, unknown step,
  content, tool and delta types, a ``function_result`` without its ``function_call`` in
  the input, a signed call sent back without its ``thought`` step, a background
  interaction with ``store: false``, agents with ``generation_config``: all 400s in
  Google's error format (shared with the generateContent fake, as are the key checks).

The scenario is the model (or agent) name, as in the generateContent fake.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import conformance as conf
from tests.fakes.gemini_upstream import (
    _HELP,
    _INTERNAL,
    _KEY_INVALID,
    _NO_KEY,
    _OVERLOADED,
    _QUOTA_FAILURE,
    ErrorReply,
    FakeGeminiUpstream,
    _error_response,
    _invalid,
    _retry_info,
)
from tests.fakes.loopback import json_bytes

REFERENCE = "ai.google.dev Interactions API reference, Api-Revision 2026-05-20, read 2026-12-04"
ANSWER_PIECES = ("Ratatoskr runs", " up and down", " the ash tree.")
THOUGHT_PIECES = ("**Recalling the squirrel**\n\nHe carries", " insults between eagle and wyrm.")
THOUGHT_SIGNATURE = "EqQBCqEBAdHtim9rYXRhdG9za3ItaW50ZXJhY3Rpb25zLXRob3VnaHQ="
CALL_SIGNATURE = "EqQBCqEBAdHtim9rYXRhdG9za3ItaW50ZXJhY3Rpb25zLWNhbGw="
FERRY_ARGS = {"harbor": "Ålesund", "passengers": 3}
FERRY_PIECES = ('{"harbor":', '"Ålesund",', '"passengers":3}')
STRUCTURED_PIECES = ('{"name": "Ratatoskr",', ' "kind": "squirrel"}')
REPORT = "Yggdrasil has three roots; the squirrel keeps the news moving."

# -- what a reply is made of --------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    pieces: tuple[str, ...]


@dataclass(frozen=True)
class Thought:
    pieces: tuple[str, ...]
    signature: str | None = None


@dataclass(frozen=True)
class FunctionCall:
    id: str
    name: str
    arguments: Mapping[str, Any]
    # The argument text as the stream delivers it (joined, it is the arguments).
    pieces: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Video:
    """A generated video in a ``model_output`` step: inline base64 ``data``, or a
    ``uri`` (the reference's delivery for larger files)."""

    data: bytes = b""
    mime_type: str = "video/mp4"
    uri: str = ""


Step = Output | Thought | FunctionCall | Video


@dataclass(frozen=True)
class Usage:
    input: int
    output: int
    thought: int | None = None
    cached: int | None = None


@dataclass(frozen=True)
class Reply:
    steps: tuple[Step, ...]
    status: str = "completed"
    usage: Usage = Usage(12, 9)
    # Stream only: an ``error`` event after the steps (and no interaction.completed).
    stream_error: Mapping[str, Any] | None = None
    # Unstreamed requests of a stream-error scenario get this HTTP error instead.
    http_error: ErrorReply | None = None
    # Background: how many GETs answer in_progress before the end (None: never ends).
    polls: int | None = 0
    # A failed interaction's errors.
    errors: tuple[Mapping[str, str], ...] = ()
    # Background: the first polls answer 503 (the API's passing trouble).
    poll_errors: int = 0
    # Stream only: the stream ends after the steps, without interaction.completed.
    ended_early: bool = False


CONF_USAGE = Usage(conf.PROMPT_TOKENS, conf.COMPLETION_TOKENS, cached=conf.CACHED_PROMPT_TOKENS)
CONF_REASONING_USAGE = Usage(
    conf.PROMPT_TOKENS,
    conf.COMPLETION_TOKENS - conf.REASONING_TOKENS,
    thought=conf.REASONING_TOKENS,
    cached=conf.CACHED_PROMPT_TOKENS,
)
_WEATHER = FunctionCall("fc_conf_weather_01", "get_weather", conf.WEATHER_ARGS)
_TIME = FunctionCall("fc_conf_time_02", "get_time", conf.TIME_ARGS)


def _answer(pieces: Sequence[str] = ANSWER_PIECES) -> Output:
    return Output(tuple(pieces))


# Gemini Omni Flash through the Interactions API (ai.google.dev video generation guide,
# read 2026-12-04): background only, response_modalities ["video"], the video inline as
# base64 in the model_output step, usage counting video tokens. The bytes are an ftyp
# box's start and the project's own filler, not a real clip.
VIDEO_MODEL = "gemini-omni-flash-preview"
VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 16
VIDEO_USAGE = Usage(14, 57920)


def _video(body: Mapping[str, Any]) -> Reply | ErrorReply:
    if body.get("response_modalities") != ["video"]:
        return _invalid("response_modalities: this model answers only with video")
    if not body.get("background"):
        return _invalid("video generation runs only as a background interaction")
    if not isinstance(body.get("input"), str) or not body["input"].strip():
        return _invalid("input: required")
    if str(body["input"]).startswith("blocked:"):
        errors = ({"code": "INVALID_ARGUMENT", "message": "The prompt was blocked."},)
        return Reply((), status="failed", polls=1, errors=errors, usage=VIDEO_USAGE)
    video = Video(uri="https://generativelanguage.googleapis.com/v1beta/files/rtsk01:download")
    if not str(body["input"]).startswith("uri:"):
        video = Video(VIDEO_BYTES)
    return Reply((Thought((), THOUGHT_SIGNATURE), video), polls=2, usage=VIDEO_USAGE)


def _ferry_call(body: Mapping[str, Any]) -> Reply:
    """Turn one calls lookup_ferry (signed); turn two, given its result, answers."""
    steps = body.get("input") if isinstance(body.get("input"), list) else []
    if any(isinstance(s, dict) and s.get("type") == "function_result" for s in steps):
        return Reply((_answer(),), usage=Usage(70, 12, thought=30))
    call = FunctionCall("fc_ferry_7f3a", "lookup_ferry", FERRY_ARGS, FERRY_PIECES)
    return Reply(
        (Thought(THOUGHT_PIECES, CALL_SIGNATURE), call),
        status="requires_action",
        usage=Usage(52, 17, thought=93),
    )


def rate_limited(delay: str) -> ErrorReply:
    """A 429 with its RetryInfo, as the generateContent fake has it."""
    message = "You exceeded your current quota, please check your plan and billing details."
    details = (_QUOTA_FAILURE, _HELP, _retry_info(delay))
    return ErrorReply(429, "RESOURCE_EXHAUSTED", message, details)


_Scenario = Callable[[Mapping[str, Any]], Reply | ErrorReply]

SCENARIOS: dict[str, _Scenario] = {
    "conf-text": lambda body: Reply((_answer(conf.TEXT_PIECES),), usage=CONF_USAGE),
    "conf-tool": lambda body: Reply(
        (FunctionCall(_WEATHER.id, _WEATHER.name, conf.WEATHER_ARGS, conf.WEATHER_ARGS_PIECES),),
        status="requires_action",
        usage=CONF_USAGE,
    ),
    "conf-parallel": lambda body: Reply((_WEATHER, _TIME), "requires_action", CONF_USAGE),
    "conf-reasoning": lambda body: Reply(
        (Thought(conf.REASONING_PIECES, conf.REASONING_SIGNATURE), _answer(conf.TEXT_PIECES)),
        usage=CONF_REASONING_USAGE,
    ),
    "conf-auth": lambda body: _KEY_INVALID,
    "conf-missing": lambda body: ErrorReply(404, "NOT_FOUND", "Model not found."),
    "conf-rate-limit": lambda body: rate_limited(f"{conf.RETRY_AFTER_SECONDS}s"),
    # The fake answers its first request 429 (a short RetryInfo), then this.
    "rate-limit-once": lambda body: Reply((_answer(),)),
    "conf-server-error": lambda body: _INTERNAL,
    "conf-overloaded": lambda body: _OVERLOADED,
    "conf-stream-error": lambda body: Reply(
        (_answer(conf.TEXT_PIECES[:1]),),
        usage=CONF_USAGE,
        stream_error={"code": "UNAVAILABLE", "message": _OVERLOADED.message},
        http_error=_OVERLOADED,
    ),
    "text": lambda body: Reply((_answer(),)),
    "thinking": lambda body: Reply(
        (Thought(THOUGHT_PIECES, THOUGHT_SIGNATURE), _answer()), usage=Usage(30, 9, thought=120)
    ),
    "function-call": _ferry_call,
    "structured": lambda body: Reply((_answer(STRUCTURED_PIECES),), usage=Usage(40, 11)),
    "max-tokens": lambda body: Reply((_answer(ANSWER_PIECES[:1]),), status="incomplete"),
    "no-key": lambda body: _NO_KEY,
    "internal-mid-stream": lambda body: Reply(
        (_answer(ANSWER_PIECES[:2]),),
        stream_error={"code": "INTERNAL", "message": _INTERNAL.message},
        http_error=_INTERNAL,
    ),
    "ended-early": lambda body: Reply((_answer(ANSWER_PIECES[:2]),), ended_early=True),
    "gemini-3.5-flash-bg": lambda body: Reply((_answer((REPORT,)),), polls=2),
    "deep-research-preview-04-2026": lambda body: Reply(
        (Thought(("Planning the search.",)), _answer((REPORT,))),
        usage=Usage(20, 300, thought=900),
        polls=1,
    ),
    VIDEO_MODEL: _video,
    "background-flaky": lambda body: Reply((_answer((REPORT,)),), polls=1, poll_errors=2),
    "background-forever": lambda body: Reply((_answer((REPORT,)),), polls=None),
    "background-fails": lambda body: Reply(
        (),
        status="failed",
        polls=1,
        errors=({"code": "RESOURCE_EXHAUSTED", "message": "Research budget exhausted."},),
    ),
}

# -- the request, checked as the API checks it ------------------------------------------------

_TOP_LEVEL = {
    "model", "agent", "agent_config", "background", "cached_content", "continuation_token",
    "environment", "generation_config", "input", "labels", "previous_interaction_id",
    "response_format", "response_mime_type", "response_modalities", "safety_settings",
    "service_tier", "store", "stream", "system_instruction", "tools", "webhook_config",
}  # fmt: skip
_GENERATION = {
    "image_config", "max_output_tokens", "seed", "speech_config", "stop_sequences",
    "temperature", "thinking_level", "thinking_summaries", "tool_choice", "top_p",
    "transcription_config", "video_config",
}  # fmt: skip
_THINKING_LEVELS = {"minimal", "low", "medium", "high", "xhigh"}
_STEP_TYPES = {"user_input", "model_output", "thought", "function_call", "function_result"}
_CONTENT_TYPES = {"text", "image", "audio", "video", "document"}
_TOOL_TYPES = {
    "function", "code_execution", "url_context", "google_search", "file_search",
    "google_maps", "computer_use", "tool_search", "mcp_server", "retrieval",
}  # fmt: skip


def _content_problem(item: Any, where: str) -> ErrorReply | None:
    if not isinstance(item, dict) or item.get("type") not in _CONTENT_TYPES:
        return _invalid(f"{where}: unknown content type {item!r:.60}")
    if item["type"] == "text" and not isinstance(item.get("text"), str):
        return _invalid(f"{where}.text: required")
    if item["type"] != "text" and not (item.get("data") or item.get("uri")):
        return _invalid(f"{where}: one of data or uri is required")
    return None


def _step_problem(step: Any, where: str, calls: set[str]) -> ErrorReply | None:
    kind = step.get("type") if isinstance(step, dict) else None
    if kind not in _STEP_TYPES:
        return _invalid(f"{where}.type: unknown step type {kind!r}")
    if kind in ("user_input", "model_output"):
        for j, item in enumerate(step.get("content") or ()):
            problem = _content_problem(item, f"{where}.content[{j}]")
            if problem:
                return problem
    elif kind == "function_call":
        if not (step.get("id") and step.get("name") and isinstance(step.get("arguments"), dict)):
            return _invalid(f"{where}: function_call needs id, name and arguments (an object)")
        calls.add(str(step["id"]))
    elif kind == "function_result":
        if step.get("call_id") not in calls:
            return _invalid(f"{where}.call_id: no function_call with id {step.get('call_id')!r}")
        if "result" not in step:
            return _invalid(f"{where}.result: required")
    elif kind == "thought" and not isinstance(step.get("signature", ""), str):
        return _invalid(f"{where}.signature: must be a string")
    return None


def _signature_problem(steps: Sequence[Any], signed: Mapping[str, str]) -> ErrorReply | None:
    """A call the fake signed must come back after a thought step with that signature."""
    signature = ""
    for step in steps:
        kind = step.get("type")
        if kind == "thought":
            signature = str(step.get("signature") or "")
        elif kind == "function_call" and step.get("id") in signed:
            if signature != signed[step["id"]]:
                return _invalid(
                    f"Function call {step['id']} is missing its thought signature; send the "
                    "thought step back with the call."
                )
        elif kind in ("user_input", "function_result"):
            signature = ""
    return None


def _input_problem(body: Mapping[str, Any], signed: Mapping[str, str]) -> ErrorReply | None:
    given = body.get("input")
    if isinstance(given, str):
        return None
    if isinstance(given, dict):
        return _content_problem(given, "input")
    if not isinstance(given, list) or not given:
        return _invalid("input: required")
    calls: set[str] = set()
    for i, step in enumerate(given):
        if isinstance(step, dict) and step.get("type") in _CONTENT_TYPES:
            problem = _content_problem(step, f"input[{i}]")
        else:
            problem = _step_problem(step, f"input[{i}]", calls)
        if problem:
            return problem
    return _signature_problem(given, signed)


def _config_problem(body: Mapping[str, Any]) -> ErrorReply | None:
    config = body.get("generation_config") or {}
    if config and "agent" in body:
        return _invalid("generation_config: not supported for agent interactions")
    agent_config = body.get("agent_config")
    if agent_config is not None and (
        "model" in body
        or not isinstance(agent_config, dict)
        or agent_config.get("type") not in ("deep-research", "dynamic")
    ):
        return _invalid("agent_config: an agent's, of a known type")
    for key in config:
        if key not in _GENERATION:
            return _invalid(
                f'Invalid JSON payload received. Unknown name "{key}" at '
                "'generation_config': Cannot find field."
            )
    if config.get("thinking_level", "low") not in _THINKING_LEVELS:
        return _invalid(f"generation_config.thinking_level: {config['thinking_level']!r}")
    if config.get("thinking_summaries", "auto") not in ("auto", "none"):
        return _invalid("generation_config.thinking_summaries: auto or none")
    choice = config.get("tool_choice", "auto")
    if not (choice in ("auto", "any", "none", "validated") or isinstance(choice, dict)):
        return _invalid(f"generation_config.tool_choice: {choice!r}")
    return None


def _format_problem(body: Mapping[str, Any]) -> ErrorReply | None:
    fmt = body.get("response_format")
    for item in fmt if isinstance(fmt, list) else [fmt] if fmt is not None else []:
        if not isinstance(item, dict) or item.get("type") not in (
            "text",
            "audio",
            "image",
            "video",
        ):
            return _invalid("response_format: unknown type")
        if item.get("mime_type", "text/plain") not in ("application/json", "text/plain"):
            return _invalid("response_format.mime_type: application/json or text/plain")
        if "schema" in item and not isinstance(item["schema"], dict):
            return _invalid("response_format.schema: must be an object")
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or tool.get("type") not in _TOOL_TYPES:
            return _invalid(f"tools[{i}].type: unknown tool type")
        if tool["type"] == "function" and not tool.get("name"):
            return _invalid(f"tools[{i}].name: required")
    return None


def check_request(body: Mapping[str, Any], signed: Mapping[str, str]) -> ErrorReply | None:
    """The 400 the real API answers for what it refuses (the checks a gateway can fail)."""
    for key in body:
        if key not in _TOP_LEVEL:
            return _invalid(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
            )
    if ("model" in body) == ("agent" in body):
        return _invalid("Exactly one of model or agent must be set.")
    if body.get("background") and body.get("store") is False:
        return _invalid("background=true requires store=true.")
    if body.get("background") and body.get("stream"):
        return _invalid("This fake does not stream background interactions.")
    return _input_problem(body, signed) or _config_problem(body) or _format_problem(body)


# -- rendering ----------------------------------------------------------------------------------


def usage_wire(usage: Usage) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "total_input_tokens": usage.input,
        "input_tokens_by_modality": [{"modality": "text", "tokens": usage.input}],
        "total_output_tokens": usage.output,
        "output_tokens_by_modality": [{"modality": "text", "tokens": usage.output}],
    }
    if usage.cached is not None:
        wire["total_cached_tokens"] = usage.cached
    if usage.thought is not None:
        wire["total_thought_tokens"] = usage.thought
    wire["total_tokens"] = usage.input + usage.output + (usage.thought or 0)
    return wire


def _whole_step(step: Step, summaries: bool) -> dict[str, Any]:
    if isinstance(step, Video):
        item: dict[str, Any] = {"type": "video", "mime_type": step.mime_type}
        if step.uri:
            item["uri"] = step.uri
        else:
            item["data"] = base64.b64encode(step.data).decode()
        return {"type": "model_output", "content": [item]}
    if isinstance(step, Output):
        return {"type": "model_output", "content": [{"type": "text", "text": "".join(step.pieces)}]}
    if isinstance(step, Thought):
        wire: dict[str, Any] = {"type": "thought"}
        if step.signature:
            wire["signature"] = step.signature
        if summaries:
            wire["summary"] = [{"type": "text", "text": "".join(step.pieces)}]
        return wire
    return {
        "type": "function_call",
        "id": step.id,
        "name": step.name,
        "arguments": dict(step.arguments),
    }


def _deltas(step: Step, summaries: bool) -> list[dict[str, Any]]:
    if isinstance(step, Video):
        return []  # background only: never streamed
    if isinstance(step, Output):
        return [{"type": "text", "text": p} for p in step.pieces]
    if isinstance(step, Thought):
        out: list[dict[str, Any]] = []
        if summaries:
            out = [
                {"type": "thought_summary", "content": {"type": "text", "text": p}}
                for p in step.pieces
            ]
        if step.signature:
            out.append({"type": "thought_signature", "signature": step.signature})
        return out
    if step.pieces is None:
        return []
    return [{"type": "arguments_delta", "arguments": p} for p in step.pieces]


def _start_step(step: Step) -> dict[str, Any]:
    if isinstance(step, Video):
        return {"type": "model_output"}
    if isinstance(step, Output):
        return {"type": "model_output"}
    if isinstance(step, Thought):
        return {"type": "thought"}
    arguments = {} if step.pieces is not None else dict(step.arguments)
    return {"type": "function_call", "id": step.id, "name": step.name, "arguments": arguments}


def _event(obj: Mapping[str, Any]) -> bytes:
    return b"data: " + json_bytes(obj) + b"\n\n"


@dataclass
class Stored:
    """One interaction the fake keeps (``store``) or runs in the background."""

    id: str
    body: dict[str, Any]
    reply: Reply
    polls: int = 0
    status: str = "in_progress"
    created: str = "2026-12-04T10:00:00Z"

    def name(self) -> dict[str, str]:
        key = "agent" if "agent" in self.body else "model"
        return {key: str(self.body[key])}

    def summaries(self) -> bool:
        config = self.body.get("generation_config") or self.body.get("agent_config") or {}
        return config.get("thinking_summaries") == "auto"

    def whole(self, *, finished: bool) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "interaction",
            "status": self.status,
            **self.name(),
            "created": self.created,
            "updated": "2026-12-04T10:00:07Z",
        }
        if finished and self.status not in ("in_progress", "cancelled"):
            obj["steps"] = [_whole_step(s, self.summaries()) for s in self.reply.steps]
            obj["usage"] = usage_wire(self.reply.usage)
            if self.reply.errors:
                obj["errors"] = [dict(e) for e in self.reply.errors]
        return obj

    def frames(self) -> list[bytes]:
        head = {**self.whole(finished=False), "status": "in_progress"}
        frames = [_event({"event_type": "interaction.created", "interaction": head})]
        for index, step in enumerate(self.reply.steps):
            frames.append(
                _event({"event_type": "step.start", "index": index, "step": _start_step(step)})
            )
            for delta in _deltas(step, self.summaries()):
                frames.append(_event({"event_type": "step.delta", "index": index, "delta": delta}))
            frames.append(_event({"event_type": "step.stop", "index": index}))
        if self.reply.stream_error is not None:
            frames.append(_event({"event_type": "error", "error": dict(self.reply.stream_error)}))
            return frames
        if self.reply.ended_early:
            return frames
        end = {**self.whole(finished=False), "usage": usage_wire(self.reply.usage)}
        frames.append(_event({"event_type": "interaction.completed", "interaction": end}))
        return frames


@dataclass
class InteractionsState:
    stored: dict[str, Stored] = field(default_factory=dict)
    # Ids of the interactions cancelled through the API, in order.
    cancelled: list[str] = field(default_factory=list)
    cancel_seen: asyncio.Event = field(default_factory=asyncio.Event)
    # Function call id -> the signature the fake gave with it.
    signed: dict[str, str] = field(default_factory=dict)
    counter: int = 0
    rate_limited: bool = False
    # While set, background interactions stay in_progress however often they are
    # polled (a test restarts ratd in the middle of a job); polls are still counted.
    hold: bool = False
    polls: int = 0


class FakeGeminiInteractionsUpstream(FakeGeminiUpstream):
    """The generateContent fake plus the Interactions API on the same origin."""

    reference = REFERENCE

    def __init__(self, *, api_key: str | None = None, write_size: int | None = None) -> None:
        super().__init__(api_key=api_key, write_size=write_size)
        self.state = InteractionsState()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/interactions", self.create)
        app.router.add_get("/v1beta/interactions/{id}", self.fetch)
        app.router.add_post("/v1beta/interactions/{id}/cancel", self.cancel)
        super().routes(app)

    async def create(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        body = record.json if isinstance(record.json, dict) else {}
        problem = self._auth(request) or check_request(body, self.state.signed)
        if problem is not None:
            return _error_response(problem)
        name = str(body.get("model") or body.get("agent") or "")
        if name == "rate-limit-once" and not self.state.rate_limited:
            self.state.rate_limited = True
            return _error_response(rate_limited("0.2s"))
        answer = SCENARIOS.get(name, SCENARIOS["text"])(body)
        if isinstance(answer, ErrorReply):
            return _error_response(answer)
        self.state.counter += 1
        stored = Stored(f"v1_RtskInteraction{self.state.counter:08d}", body, answer)
        self._sign(answer)
        if body.get("store", True):
            self.state.stored[stored.id] = stored
        if body.get("background"):
            return web.json_response(stored.whole(finished=False))
        if not body.get("stream"):
            if answer.http_error is not None:
                return _error_response(answer.http_error)
            stored.status = answer.status
            return web.json_response(stored.whole(finished=True))
        stored.status = answer.status
        return await self.stream(request, stored.frames(), content_type="text/event-stream")

    def _sign(self, reply: Reply) -> None:
        signature = ""
        for step in reply.steps:
            if isinstance(step, Thought) and step.signature:
                signature = step.signature
            elif isinstance(step, FunctionCall) and signature:
                self.state.signed[step.id] = signature
                signature = ""

    def _stored(self, request: web.Request) -> Stored | ErrorReply:
        found = self.state.stored.get(request.match_info["id"])
        if found is None:
            return ErrorReply(
                404, "NOT_FOUND", f"Interaction {request.match_info['id']} not found."
            )
        return found

    async def fetch(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        found = self._auth(request) or self._stored(request)
        if isinstance(found, ErrorReply):
            return _error_response(found)
        if found.status == "in_progress":
            self.state.polls += 1
            if self.state.hold:
                return web.json_response(found.whole(finished=True))
            found.polls += 1
            if found.polls <= found.reply.poll_errors:
                return _error_response(_OVERLOADED)
            limit = found.reply.polls
            if limit is not None and found.polls > limit:
                found.status = found.reply.status
        return web.json_response(found.whole(finished=True))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        found = self._auth(request) or self._stored(request)
        if isinstance(found, ErrorReply):
            return _error_response(found)
        if found.status != "in_progress":
            return _error_response(_invalid(f"Interaction {found.id} is {found.status}."))
        found.status = "cancelled"
        self.state.cancelled.append(found.id)
        self.state.cancel_seen.set()
        return web.json_response(found.whole(finished=False))
