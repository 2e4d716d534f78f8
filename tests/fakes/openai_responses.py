"""OpenAI's Responses API (``POST /v1/responses``, and OpenRouter's ``/api/v1/responses``)
on the fake OpenAI upstream (``tests.fakes.openai_upstream``, which mounts it).

Follows the OpenAI API reference for Responses — "Create a model response" and
"Streaming events" (https://platform.openai.com/docs/api-reference/responses and
.../responses-streaming) — as of 2026-12-04, with every field name cross-checked against
the type definitions of the official ``openai`` Python package 3.60.0
(``openai/types/responses/*.py``: Response, ResponseUsage, ResponseReasoningItem,
ResponseFunctionToolCall, ResponseOutputMessage, the stream event classes,
ResponseCreateParams, ResponseInputItemParam, ResponseError / ResponseErrorEvent).
No recorded real response was available; texts, ids and numbers are the project's own.

What it reproduces:

* the request: the parameters the reference lists (anything else is a 400
  ``unknown_parameter``), ``input`` items of the types it knows (messages,
  ``function_call``, ``function_call_output``, ``reasoning``), a ``function_call_output``
  without its ``function_call`` (400), a reasoning item sent back with
  ``store: false`` whose ``encrypted_content`` the fake did not issue (400), encrypted
  reasoning asked of a model that does not reason (400), ``max_output_tokens`` below 16
  (400), ``temperature``/``top_p`` for a reasoning model (400), function tools that are
  strict (the default) with a schema strict mode refuses (400), ``text.format``
  json_schema without ``name`` or ``schema`` (400);
* the answer: a ``response`` object with ``output`` items (``reasoning`` with
  ``summary`` when ``reasoning.summary`` was asked for and ``encrypted_content`` when
  ``include`` asked for it, ``message`` with ``output_text``/``refusal`` parts,
  ``function_call``), ``status`` ``completed`` or ``incomplete`` with
  ``incomplete_details``, ``usage`` with ``input_tokens_details.cached_tokens`` and
  ``output_tokens_details.reasoning_tokens``;
* the stream: ``event: <type>`` / ``data: {...}`` SSE with ``sequence_number``s,
  ``response.created`` / ``in_progress``, ``output_item.added``/``done``,
  ``content_part.added``/``done``, ``output_text.delta``/``done``, ``refusal.delta``,
  ``reasoning_summary_part.added``/``done``, ``reasoning_summary_text.delta``/``done``,
  ``function_call_arguments.delta``/``done``, then ``response.completed`` or
  ``response.incomplete`` — and no ``[DONE]``; an ``error`` event mid-stream;
  ``response.failed``;
* the conversation of a reasoning model calling a tool (scenario ``reasoning-tools``):
  turn 1 answers a reasoning item and a ``function_call``; turn 2 is refused (400) unless
  its input carries that very reasoning item, encrypted content intact, right before the
  ``function_call`` it preceded.

The scenarios of the Chat Completions fake (``SCENARIOS`` there) are rendered in this
API's format; ``RESPONSES_SCENARIOS`` adds and overrides some.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import conformance as conf
from tests.fakes import openai_upstream as up

REFERENCE = "OpenAI API reference, Responses (create + streaming events), as of 2026-12-04"
SDK_TYPES = "openai 3.60.0, openai/types/responses"

PARAMETERS = frozenset(
    {
        "background",
        "context_management",
        "conversation",
        "include",
        "input",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "metadata",
        "model",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    }
)
ENCRYPTED = "reasoning.encrypted_content"
# A model family that reasons (takes no sampling parameters, may return reasoning items).
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5", "gpt-6", "scenario/", "conf-")

SUMMARY_PARTS = ("**Planning the crossing**\n\nFind the ferry first.", "Then answer briefly.")
TOOL_ANSWER = "The ferry leaves Ålesund at 09:30; bring a thermos."
STRUCTURED = {"harbor": "Ålesund", "departures": 3}
STRUCTURED_PIECES = up.split_every(json.dumps(STRUCTURED, ensure_ascii=False), (7, 5, 9))
RESPONSES_USAGE = {"prompt": 812, "completion": 240, "reasoning": 192, "cached": 512, "cost": 0}


@dataclass(frozen=True)
class Incomplete:
    """The response stops short: ``status: incomplete`` with this reason."""

    reason: str


# -- requests -----------------------------------------------------------------------------------


def _error(status: int, message: str, code: str | None, param: str | None = None) -> up.HttpReply:
    body = up._openai_error(message, "invalid_request_error", code, param)
    return up.HttpReply(status, up._json_bytes(body, indent=2), "application/json")


def _reasons(model: str) -> bool:
    return model.startswith(REASONING_PREFIXES)


def _check_item(fake: Any, item: Any, i: int, calls: set[str], store: bool) -> up.HttpReply | None:
    where = f"input[{i}]"
    if not isinstance(item, dict):
        return _error(
            400, f"Invalid type for '{where}': expected an object.", "invalid_type", where
        )
    kind = item.get("type", "message")
    if kind == "message":
        if item.get("role") not in ("user", "assistant", "system", "developer"):
            return _error(400, f"Invalid value: '{item.get('role')}'.", "invalid_value", where)
        content = item.get("content")
        if not isinstance(content, str | list):
            return _error(400, f"Missing required parameter: '{where}.content'.", None, where)
    elif kind == "function_call":
        calls.add(str(item.get("call_id")))
        if not isinstance(item.get("arguments"), str) or not item.get("name"):
            return _error(
                400, f"Invalid '{where}': a function_call needs name and arguments.", None, where
            )
    elif kind == "function_call_output":
        if item.get("call_id") not in calls:
            message = (
                f"No tool call found for function call output with call_id {item.get('call_id')}."
            )
            return _error(400, message, None, "input")
    elif kind == "reasoning":
        issued = fake.responses_issued.get(str(item.get("id")))
        if not store and (issued is None or item.get("encrypted_content") != issued):
            message = f"The encrypted content for item {item.get('id')} could not be verified."
            return _error(400, message, "invalid_encrypted_content", where)
        if not isinstance(item.get("summary"), list):
            return _error(400, f"Missing required parameter: '{where}.summary'.", None, where)
    else:
        return _error(400, f"Invalid value: '{kind}'.", "invalid_value", f"{where}.type")
    return None


def _check_tools(body: Mapping[str, Any]) -> up.HttpReply | None:
    for i, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") != "function" or not tool.get("name"):
            return _error(400, f"Invalid 'tools[{i}]'.", "invalid_value", f"tools[{i}]")
        schema = tool.get("parameters") or {}
        strict = tool.get("strict", True)
        props = set(schema.get("properties") or {})
        if strict and (
            schema.get("additionalProperties") is not False
            or set(schema.get("required") or ()) != props
        ):
            message = (
                f"Invalid schema for function '{tool['name']}': In context=(), "
                "'additionalProperties' is required to be supplied and to be false, and "
                "'required' must list every key in 'properties'."
            )
            return _error(400, message, "invalid_function_parameters", f"tools[{i}].parameters")
    return None


def _check_format(body: Mapping[str, Any]) -> up.HttpReply | None:
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        for key in ("name", "schema"):
            if key not in fmt:
                return _error(
                    400,
                    f"Missing required parameter: 'text.format.{key}'.",
                    "missing_required_parameter",
                    f"text.format.{key}",
                )
    return None


def rejects(fake: Any, body: Mapping[str, Any]) -> up.HttpReply | None:
    """The 400 the API answers for a request it does not take (see the module doc)."""
    for key in body:
        if key not in PARAMETERS:
            return _error(400, f"Unknown parameter: '{key}'.", "unknown_parameter", key)
    model = str(body.get("model") or "")
    if ENCRYPTED in (body.get("include") or ()) and not _reasons(model):
        return _error(400, "Encrypted content is not supported with this model.", None, "include")
    for name in ("temperature", "top_p"):
        value = body.get(name, 1)
        if value != 1 and _reasons(model) and not model.startswith(("scenario/", "conf-")):
            message = (
                f"Unsupported value: '{name}' does not support {value} with this model. Only "
                "the default (1) value is supported."
            )
            return _error(400, message, "unsupported_value", name)
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and limit < 16:
        message = (
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
            f"but got {limit} instead."
        )
        return _error(400, message, "integer_below_min_value", "max_output_tokens")
    items = body.get("input")
    calls: set[str] = set()
    store = body.get("store", True) is not False
    for i, item in enumerate(items if isinstance(items, list) else ()):
        found = _check_item(fake, item, i, calls, store)
        if found is not None:
            return found
    return _check_tools(body) or _check_format(body)


# -- rendering ----------------------------------------------------------------------------------


@dataclass
class _Item:
    kind: str  # "reasoning", "message", "function_call"
    id: str
    pieces: list[str] = field(default_factory=list)  # summary / text / argument pieces
    call_id: str = ""
    name: str = ""
    refusal: bool = False
    encrypted: str | None = None


class Renderer:
    """One response of the Responses API: the whole object, or its stream of events."""

    def __init__(self, ctx: up.Context) -> None:
        self.ctx = ctx
        self.body = ctx.body
        ids = ctx.fake.ids
        self.ids = ids
        self.id = f"resp_{ids.token(40)}"
        self.created = int(time.time())
        self.model = up.openai_snapshot(ctx.model)
        self.sequence = 0
        reasoning = self.body.get("reasoning") or {}
        self.summarise = reasoning.get("summary") in ("auto", "concise", "detailed")
        self.encrypt = ENCRYPTED in (self.body.get("include") or ())
        asked = {k: self.body.get(k) for k in ("model", "instructions", "input")}
        self.conversation = json.dumps(asked, sort_keys=True)
        self.reasoned = 0

    # -- the items a script means ----------------------------------------------------------------

    def _new_item(self, kind: str) -> _Item:
        prefix = {"reasoning": "rs", "message": "msg", "function_call": "fc"}[kind]
        item = _Item(kind, f"{prefix}_{self.ids.token(32)}")
        if kind == "reasoning":  # the same request reasons the same, streamed or not
            self.reasoned += 1
            seed = f"{self.conversation}:{self.reasoned}".encode()
            item.id = f"rs_{hashlib.sha256(seed).hexdigest()[:32]}"
        if kind == "reasoning" and self.encrypt:
            digest = hashlib.sha256(f"ratatoskr-fake:{item.id}".encode()).digest()
            item.encrypted = "gAAAAAB" + base64.urlsafe_b64encode(digest * 3).decode()
            self.ctx.fake.responses_issued[item.id] = item.encrypted
        return item

    def _reasoning_item(self, texts: list[str]) -> _Item:
        item = self._new_item("reasoning")
        item.pieces = texts if self.summarise else []
        return item

    def wire_item(self, item: _Item, *, done: bool = True) -> dict[str, Any]:
        status = "completed" if done else "in_progress"
        if item.kind == "reasoning":
            text = "".join(item.pieces)
            summary = [{"type": "summary_text", "text": text}] if done and text else []
            wire: dict[str, Any] = {"id": item.id, "type": "reasoning", "summary": summary}
            if item.encrypted is not None:
                wire["encrypted_content"] = item.encrypted
            return wire
        if item.kind == "message":
            content = []
            if done:
                text = "".join(item.pieces)
                part: dict[str, Any] = (
                    {"type": "refusal", "refusal": text}
                    if item.refusal
                    else {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                )
                content.append(part)
            return {
                "id": item.id,
                "type": "message",
                "status": status,
                "content": content,
                "role": "assistant",
            }
        return {
            "id": item.id,
            "type": "function_call",
            "status": status,
            "arguments": "".join(item.pieces) if done else "",
            "call_id": item.call_id,
            "name": item.name,
        }

    def response(
        self,
        items: list[_Item],
        status: str,
        usage: Mapping[str, float] | None,
        incomplete: str | None = None,
    ) -> dict[str, Any]:
        final = status in ("completed", "incomplete")
        reasoning = self.body.get("reasoning")
        text = self.body.get("text") or {"format": {"type": "text"}}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "completed_at": self.created + 2 if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": self.model,
            "output": [self.wire_item(i) for i in items] if final else [],
            "parallel_tool_calls": self.body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "prompt_cache_key": None,
            "reasoning": {
                "effort": (reasoning or {}).get("effort", "medium"),
                "summary": (reasoning or {}).get("summary"),
            }
            if _reasons(self.ctx.model)
            else {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": "default",
            "store": self.body.get("store", True),
            "temperature": self.body.get("temperature", 1.0),
            "text": {**text, "verbosity": "medium"},
            "tool_choice": self.body.get("tool_choice", "auto"),
            "tools": self.body.get("tools", []),
            "top_logprobs": 0,
            "top_p": self.body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage_wire(usage) if final and usage is not None else None,
            "user": None,
            "metadata": {},
        }

    # -- the whole response ----------------------------------------------------------------------

    def whole(self, script: up.Script) -> bytes:
        items: list[_Item] = []
        end = _End()
        for event in self._walk(script, items, end):
            del event  # the events of a stream are not sent; the items they made are
        status = "incomplete" if end.incomplete else "completed"
        return up._json_bytes(self.response(items, status, end.usage, end.incomplete), indent=2)

    # -- the stream ------------------------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> bytes:
        obj = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: ".encode() + up._json_bytes(obj) + b"\n\n"

    def frames(self, script: up.Script) -> Iterator[bytes]:
        items: list[_Item] = []
        end = _End()
        yield self.event("response.created", response=self.response([], "in_progress", None))
        yield self.event("response.in_progress", response=self.response([], "in_progress", None))
        for frame in self._walk(script, items, end):
            yield frame
            if end.error:
                return
        if script.ending != "done":
            return
        status = "incomplete" if end.incomplete else "completed"
        final = self.response(items, status, end.usage, end.incomplete)
        yield self.event(f"response.{status}", response=final)

    def _walk(self, script: up.Script, items: list[_Item], end: _End) -> Iterator[bytes]:
        """The stream events of a script's steps, collecting the output items."""
        opened: _Item | None = None
        calls: dict[int, _Item] = {}
        if _reasons_silently(script):  # a reasoning model reasons even when it shows nothing
            yield from self._open(silent := self._reasoning_item([]), 0)
            yield from self._close(silent, items)
        for step in script.steps:
            kind = _kind_of(step)
            if opened is not None and (kind != opened.kind or isinstance(step, up.ToolStart)):
                yield from self._close(opened, items)
                opened = None
            if isinstance(step, up.Reasoning):
                if opened is None:
                    opened = self._reasoning_item([])
                    yield from self._open(opened, len(items))
                if self.summarise:
                    opened.pieces.append(step.text)
                    yield self.event(
                        "response.reasoning_summary_text.delta",
                        item_id=opened.id,
                        output_index=len(items),
                        summary_index=0,
                        delta=step.text,
                        obfuscation=self.ids.token(4),
                    )
            elif isinstance(step, up.Content | up.Refusal):
                if opened is None:
                    opened = self._new_item("message")
                    opened.refusal = isinstance(step, up.Refusal)
                    yield from self._open(opened, len(items))
                opened.pieces.append(step.text)
                name = "refusal" if opened.refusal else "output_text"
                extra = {} if opened.refusal else {"logprobs": [], "obfuscation": self.ids.token(3)}
                yield self.event(
                    f"response.{name}.delta",
                    item_id=opened.id,
                    output_index=len(items),
                    content_index=0,
                    delta=step.text,
                    **extra,
                )
            elif isinstance(step, up.ToolStart):
                opened = calls[step.index] = self._new_item("function_call")
                opened.call_id, opened.name = step.id, step.name
                yield from self._open(opened, len(items))
            elif isinstance(step, up.ToolArgs) and opened is not None:
                opened.pieces.append(step.piece)
                yield self.event(
                    "response.function_call_arguments.delta",
                    item_id=opened.id,
                    output_index=len(items),
                    delta=step.piece,
                    obfuscation=self.ids.token(2),
                )
            elif isinstance(step, up.Finish):
                end.incomplete = "max_output_tokens" if step.reason == "length" else None
            elif isinstance(step, Incomplete):
                end.incomplete = step.reason
            elif isinstance(step, up.Usage):
                end.usage = step.numbers
            elif isinstance(step, up.StreamError):
                end.error = True
                error = step.error
                yield self.event(
                    "error",
                    code=error.get("code") or error.get("type"),
                    message=error.get("message"),
                    param=error.get("param"),
                )
                return
            elif isinstance(step, up.RawEvent):
                yield b"data: " + step.data + b"\n\n"
        if opened is not None:
            yield from self._close(opened, items)

    def _open(self, item: _Item, index: int) -> Iterator[bytes]:
        yield self.event(
            "response.output_item.added", output_index=index, item=self.wire_item(item, done=False)
        )
        if item.kind == "message":
            part = (
                {"type": "refusal", "refusal": ""}
                if item.refusal
                else {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            )
            yield self.event(
                "response.content_part.added",
                item_id=item.id,
                output_index=index,
                content_index=0,
                part=part,
            )
        if item.kind == "reasoning" and self.summarise:
            yield self.event(
                "response.reasoning_summary_part.added",
                item_id=item.id,
                output_index=index,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )

    def _close(self, item: _Item, items: list[_Item]) -> Iterator[bytes]:
        index = len(items)
        text = "".join(item.pieces)
        if item.kind == "reasoning" and self.summarise:
            yield self.event(
                "response.reasoning_summary_text.done",
                item_id=item.id,
                output_index=index,
                summary_index=0,
                text=text,
            )
            yield self.event(
                "response.reasoning_summary_part.done",
                item_id=item.id,
                output_index=index,
                summary_index=0,
                part={"type": "summary_text", "text": text},
            )
        elif item.kind == "message":
            name = "refusal" if item.refusal else "output_text"
            field_name = "refusal" if item.refusal else "text"
            extra: dict[str, Any] = {} if item.refusal else {"logprobs": []}
            yield self.event(
                f"response.{name}.done",
                item_id=item.id,
                output_index=index,
                content_index=0,
                **{field_name: text},
                **extra,
            )
            yield self.event(
                "response.content_part.done",
                item_id=item.id,
                output_index=index,
                content_index=0,
                part=self.wire_item(item)["content"][0],
            )
        elif item.kind == "function_call":
            yield self.event(
                "response.function_call_arguments.done",
                item_id=item.id,
                output_index=index,
                arguments=text,
            )
        items.append(item)
        yield self.event("response.output_item.done", output_index=index, item=self.wire_item(item))


@dataclass
class _End:
    usage: Mapping[str, float] | None = None
    incomplete: str | None = None
    error: bool = False


def _reasons_silently(script: up.Script) -> bool:
    """Reasoning tokens counted, no reasoning shown: the response still has an item."""
    counted = any(isinstance(s, up.Usage) and s.numbers.get("reasoning") for s in script.steps)
    return counted and not any(isinstance(s, up.Reasoning) for s in script.steps)


def _kind_of(step: Any) -> str:
    if isinstance(step, up.Reasoning):
        return "reasoning"
    if isinstance(step, up.Content | up.Refusal):
        return "message"
    if isinstance(step, up.ToolStart | up.ToolArgs):
        return "function_call"
    return "-"


def usage_wire(numbers: Mapping[str, float]) -> dict[str, Any]:
    prompt, completion = int(numbers["prompt"]), int(numbers["completion"])
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(numbers["cached"]), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(numbers["reasoning"])},
        "total_tokens": prompt + completion,
    }


# -- scenarios of this API ----------------------------------------------------------------------


def _reasoning_tools(ctx: up.Context) -> up.Script | up.HttpReply:
    """Turn 1: reasoning, then a function call. Turn 2 (the call's output in the input):
    refused unless the reasoning item came back right before its function call."""
    items = ctx.body.get("input") or []
    outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    reasoning = tuple(up.Reasoning(p) for p in SUMMARY_PARTS[:1])
    if not outputs:
        steps = (*reasoning, *up._tool_steps(0, up.FERRY_CALL))
        return up.Script((*steps, up.Finish("tool_calls"), up.Usage(RESPONSES_USAGE)))
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("type") == "function_call":
            before = items[i - 1] if i else {}
            if before.get("type") != "reasoning" or not before.get("encrypted_content"):
                message = (
                    f"Item '{item.get('call_id')}' of type 'function_call' was provided "
                    "without its required 'reasoning' item."
                )
                return _error(400, message, None, "input")
    answer = (up.Reasoning(SUMMARY_PARTS[1]), up.Content(TOOL_ANSWER))
    return up.Script((*answer, up.Finish("stop"), up.Usage(RESPONSES_USAGE)))


def _structured(ctx: up.Context) -> up.Script:
    steps = tuple(up.Content(p) for p in STRUCTURED_PIECES)
    return up.Script((*steps, up.Finish("stop"), up.Usage(up.TEXT_USAGE)))


def _incomplete(ctx: up.Context) -> up.Script:
    text = tuple(up.Content(p) for p in up.LENGTH_PIECES)
    steps: tuple[Any, ...] = (*text, Incomplete("max_output_tokens"), up.Usage(up.LENGTH_USAGE))
    return up.Script(steps)


def _failed(ctx: up.Context) -> up.Script:
    failed = {
        "code": "server_error",
        "message": "The model failed to generate a response.",
    }
    steps: tuple[Any, ...] = (up.Content(up.TEXT_PIECES[0]), _Failed(failed))
    return up.Script(steps)


@dataclass(frozen=True)
class _Failed:
    error: Mapping[str, Any]


def _rate_limited_event(ctx: up.Context) -> up.Script:
    """An ``error`` event of the rate limiter after the first words."""
    error = {"code": "rate_limit_exceeded", "message": "Rate limit reached for requests."}
    return up.Script((up.Content(up.TEXT_PIECES[0]), up.StreamError(error)))


def _conf_reasoning(ctx: up.Context) -> up.Script:
    shown = tuple(up.Reasoning(p) for p in conf.REASONING_PIECES)
    content = tuple(up.Content(p) for p in conf.TEXT_PIECES)
    usage = up.Usage(up.CONF_REASONING_USAGE)
    return up.Script((*shown, *content, up.Finish("stop"), usage))


def _bad_request(ctx: up.Context) -> up.HttpReply:
    message = "Invalid 'input[0].content': string too long. Expected a maximum length of 10485760."
    return _error(400, message, "string_above_max_length", "input[0].content")


RESPONSES_SCENARIOS: dict[str, Callable[[up.Context], up.Script | up.HttpReply]] = {
    "reasoning-tools": _reasoning_tools,
    "structured": _structured,
    "incomplete": _incomplete,
    "response-failed": _failed,
    "rate-limited-event": _rate_limited_event,
    "conf-reasoning": _conf_reasoning,
    "bad-request": _bad_request,
}


def scenario(name: str) -> Callable[[up.Context], up.Script | up.HttpReply] | None:
    return RESPONSES_SCENARIOS.get(name) or up.SCENARIOS.get(name)


# -- the handler --------------------------------------------------------------------------------


async def handle(fake: Any, request: web.Request, flavour: up.Flavour) -> web.StreamResponse:
    record = await fake._record(request)
    body = record.json if isinstance(record.json, dict) else {}
    ctx = up.Context(fake, flavour, request, body, str(body.get("model", "")))
    reply = fake._auth_failure(ctx) or rejects(fake, body)
    if reply is not None:
        return up._to_response(reply)
    name = fake._scenario_for(flavour, ctx.model)
    handler = scenario(name)
    if handler is None:
        return web.Response(status=500, text=f"fake upstream: unknown scenario {name!r}")
    answer = handler(ctx)
    if isinstance(answer, up.HttpReply):
        return up._to_response(answer)
    if ctx.stream:
        return await _stream(fake, request, ctx, answer)
    failure = _failure_of(answer)
    if failure is not None:  # unstreamed, a failure is the error status itself
        return up._to_response(failure)
    body_bytes = Renderer(ctx).whole(answer)
    return web.Response(body=body_bytes, content_type="application/json")


def _failure_of(script: up.Script) -> up.HttpReply | None:
    for step in script.steps:
        if isinstance(step, up.StreamError | _Failed):
            error = {
                "message": step.error.get("message"),
                "type": "server_error",
                "param": None,
                "code": step.error.get("code"),
            }
            return up.HttpReply(500, up._json_bytes({"error": error}, indent=2))
    return None


async def _stream(
    fake: Any, request: web.Request, ctx: up.Context, script: up.Script
) -> web.StreamResponse:
    headers = {"Content-Type": "text/event-stream; charset=utf-8", "openai-processing-ms": "93"}
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    renderer = Renderer(ctx)
    failed = next((s for s in script.steps if isinstance(s, _Failed)), None)
    if failed is not None:
        steps = tuple(s for s in script.steps if not isinstance(s, _Failed))
        script = up.Script(steps, ending="failed")
    for frame in renderer.frames(script):
        await response.write(frame)
        fake.frames_written += 1
    if failed is not None:
        obj = renderer.response([], "failed", None)
        obj["error"] = dict(failed.error)
        await response.write(renderer.event("response.failed", response=obj))
    if script.ending == "cut":
        assert request.transport is not None
        request.transport.close()
        return response
    if script.ending == "hang":
        await fake._wait_for_disconnect(request)
        return response
    await response.write_eof()
    return response


def routes(fake: Any) -> list[web.RouteDef]:
    async def openai(request: web.Request) -> web.StreamResponse:
        return await handle(fake, request, fake.openai)

    async def openrouter(request: web.Request) -> web.StreamResponse:
        return await handle(fake, request, fake.openrouter)

    return [web.post("/v1/responses", openai), web.post("/api/v1/responses", openrouter)]


__all__ = ["REFERENCE", "RESPONSES_SCENARIOS", "Renderer", "handle", "routes"]
