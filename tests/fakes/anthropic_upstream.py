"""A fake Anthropic Messages API on loopback, speaking its real wire format.

The format was learned from real recordings and the API reference; every text, id and
number here is the project's own. What the fake reproduces:

* ``POST /v1/messages``: a ``message`` object, or (``"stream": true``) typed SSE events
  ``message_start``, ``content_block_start`` / ``content_block_delta`` /
  ``content_block_stop`` (``text_delta``, ``thinking_delta``, ``signature_delta``,
  ``input_json_delta`` starting with an empty ``partial_json``), ``ping`` (with its
  ``{"type": "ping"}`` spacing), ``message_delta`` with ``stop_reason`` and cumulative
  usage, ``message_stop``; JSON payloads right-padded with spaces before the last brace;
* ``event: error`` after a 200, with no ``message_delta`` / ``message_stop`` after it;
* errors ``{"type":"error","error":{"type","message"},"request_id"}``: 401
  ``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``, 429
  ``rate_limit_error`` with ``retry-after``, 500 ``api_error``, 529 ``overloaded_error``,
  400 ``invalid_request_error`` (prompt too long, low credit balance);
* the API's strictness where a gateway can get it wrong: the ``anthropic-version`` and
  ``x-api-key`` headers, ``max_tokens`` required, ``system`` never a message role, no
  empty text blocks, every ``tool_use`` answered by ``tool_result`` blocks at the start
  of the next user turn and no stray ``tool_result``, thinking budgets (at least 1024,
  below ``max_tokens``, no ``temperature`` / ``top_k`` alongside);
* ``GET /v1/models`` with ``limit`` / ``after_id`` pagination;
* ``POST /v1/messages/count_tokens`` (``{"input_tokens": n}``; n is the fake's own rule,
  ``COUNT_BASE`` plus one per whitespace-separated word of the messages' text);
* the models with adaptive thinking (``ADAPTIVE``, e.g. ``claude-sonnet-5-5``): they
  take ``thinking: {"type": "adaptive"}`` with ``output_config.effort``; the
  adaptive-only ones refuse ``enabled`` / ``disabled`` thinking, non-default
  ``temperature`` / ``top_p`` / ``top_k`` and forced tool use, and older models refuse
  ``adaptive``;
* blocks a gateway must skip: ``server_tool_use``, ``web_search_tool_result``,
  ``citations`` on text (``citations_delta`` in streams), and the newer stop reasons
  ``pause_turn`` and ``model_context_window_exceeded``; usage with the ``cache_creation``
  TTL breakdown, ``server_tool_use`` and ``output_tokens_details.thinking_tokens``.

Reference followed: the Messages API reference at platform.claude.com/docs/en/api (and
its thinking, adaptive-thinking and token-counting pages) and the types of the
``anthropic`` Python SDK 2.17.0 (``anthropic/types``), as read on 2026-12-04.

A request's scenario is its model name when that names one (``conf-text``,
``thinking``, ...; see ``SCENARIOS``), else ``fake.scenario`` when set, else ``text``.
This module does not import pytest.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import conformance as conf
from tests.fakes.loopback import LoopbackServer, json_bytes

# -- the project's own content ------------------------------------------------------------------

ANSWER_PIECES = ("Ratatoskr", " carries", " messages", " up and down", " the ash.")
ANSWER = "".join(ANSWER_PIECES)
THINKING_PIECES = ("The question is about", " the squirrel of", " Yggdrasil;", " keep it short.")
THINKING = "".join(THINKING_PIECES)
THINKING_SIGNATURE = "RXFrUmF0YXRvc2tyLXRoaW5raW5nLXNpZ25hdHVyZS0wMDE="
SECOND_SIGNATURE = "RXFrUmF0YXRvc2tyLXRoaW5raW5nLXNpZ25hdHVyZS0wMDI="
REDACTED_DATA = "RXJyUmVkYWN0ZWQtdGhpbmtpbmctYmxvY2stZm9yLXRlc3Rz"
PREAMBLE = "I'll look up the ferry."
FERRY_ID = "toolu_01FerryLookupRtsk0001"
FERRY_NAME = "lookup_ferry"
# Pretty-spaced, as the model writes tool input when streaming; split mid-token.
FERRY_PIECES = ('{"harbor": "Å', 'lesund", "pass', 'engers": 3, "note": "a \\"', 'thermos\\""}')
FERRY_JSON = "".join(FERRY_PIECES)
STRUCTURED_PIECES = ('{"name": "Rata', 'toskr", "kind": "squirrel",', ' "legs": 4}')
STRUCTURED_JSON = "".join(STRUCTURED_PIECES)
REFUSAL_TEXT = "I can't help with that."
LENGTH_PIECES = ("The nine", " worlds hang")
MODEL_SNAPSHOT = "claude-sonnet-4-5-20250929"
SEARCH_ID = "srvtoolu_01SearchRtsk000000001"
SEARCH_QUERY_PIECES = ('{"query": "ratato', 'skr ferry"}')
SOURCE_URL = "https://example.org/yggdrasil/ferries"
CITED_PIECES = ("The ferry leaves", " at dawn.")
COUNT_BASE = 7  # count_tokens: the fake's overhead for one message

# Models with adaptive thinking, and among them those that take nothing else.
ADAPTIVE = re.compile(
    r"^claude-(?:(?:opus|sonnet)-4-[6-9]|(?:opus|sonnet|haiku)-[5-9]|fable|mythos)"
)
ADAPTIVE_ONLY = re.compile(r"^claude-(?:opus-4-[7-9]|(?:opus|sonnet|haiku)-[5-9]|fable|mythos)")
EFFORTS = ("low", "medium", "high", "xhigh", "max")

WEATHER_ID = "toolu_01WeatherOslo0000000001"
TIME_ID = "toolu_01TimeOslo000000000002"


# -- what a reply is made of --------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    pieces: tuple[str, ...]
    # TextCitation objects (page_location / char_location), in the unstreamed answer.
    citations: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Thinking:
    pieces: tuple[str, ...]
    signature: str


@dataclass(frozen=True)
class Redacted:
    data: str


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    pieces: tuple[str, ...]  # the input JSON text exactly as streamed


@dataclass(frozen=True)
class ServerToolUse:
    """A tool the API runs itself (web search); its input streams like a tool's."""

    id: str
    name: str
    pieces: tuple[str, ...]


@dataclass(frozen=True)
class ServerToolResult:
    """A server tool's result block (``web_search_tool_result`` ...), sent whole."""

    type: str
    tool_use_id: str
    content: Any


Block = Text | Thinking | Redacted | ToolUse | ServerToolUse | ServerToolResult


@dataclass(frozen=True)
class Usage:
    input: int  # uncached input tokens (Anthropic's input_tokens)
    output: int
    cache_read: int = 0
    cache_creation: int = 0
    web_search_requests: int | None = None  # usage.server_tool_use, when set
    thinking_tokens: int | None = None  # usage.output_tokens_details, when set


@dataclass(frozen=True)
class Reply:
    blocks: tuple[Block, ...]
    stop_reason: str = "end_turn"
    usage: Usage = Usage(19, 11, conf.CACHED_PROMPT_TOKENS)
    stop_sequence: str | None = None
    # Stream only: after the blocks (the last one left open), this error event ends it.
    stream_error: Mapping[str, Any] | None = None
    # Stream only: "complete", "eof" (ends after the blocks without message_delta or
    # message_stop) or "cut" (the connection drops mid-body).
    ending: str = "complete"
    # Non-stream requests of a stream-error scenario get this HTTP error instead.
    http_error: ErrorReply | None = None
    model: str | None = None


@dataclass(frozen=True)
class ErrorReply:
    status: int
    type: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Context:
    fake: FakeAnthropicUpstream
    body: dict[str, Any]
    model: str

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


# The usage the conformance scenarios report: 23 prompt tokens of which 4 were read from
# the cache (Anthropic counts them apart from input_tokens), 11 output tokens.
CONF_USAGE = Usage(
    conf.PROMPT_TOKENS - conf.CACHED_PROMPT_TOKENS,
    conf.COMPLETION_TOKENS,
    conf.CACHED_PROMPT_TOKENS,
)


# -- scenarios ----------------------------------------------------------------------------------


def _conf_text(ctx: Context) -> Reply:
    return Reply((Text(conf.TEXT_PIECES),), usage=CONF_USAGE)


def _conf_tool(ctx: Context) -> Reply:
    return Reply(
        (ToolUse(WEATHER_ID, "get_weather", conf.WEATHER_ARGS_PIECES),), "tool_use", CONF_USAGE
    )


def _conf_parallel(ctx: Context) -> Reply:
    time_pieces = (conf.TIME_ARGS_JSON[:5], conf.TIME_ARGS_JSON[5:])
    blocks = (
        ToolUse(WEATHER_ID, "get_weather", conf.WEATHER_ARGS_PIECES),
        ToolUse(TIME_ID, "get_time", time_pieces),
    )
    return Reply(blocks, "tool_use", CONF_USAGE)


def _conf_reasoning(ctx: Context) -> Reply:
    blocks = (Thinking(conf.REASONING_PIECES, conf.REASONING_SIGNATURE), Text(conf.TEXT_PIECES))
    return Reply(blocks, usage=CONF_USAGE)


def _error(status: int, kind: str, message: str, **headers: str) -> Callable[[Context], ErrorReply]:
    return lambda ctx: ErrorReply(status, kind, message, headers)


def _conf_missing(ctx: Context) -> ErrorReply:
    return ErrorReply(404, "not_found_error", f"model: {ctx.model}")


_OVERLOADED = {
    "type": "error",
    "error": {"details": None, "type": "overloaded_error", "message": "Overloaded"},
}


def _conf_stream_error(ctx: Context) -> Reply:
    return Reply(
        (Text(conf.TEXT_PIECES[:1]),),
        usage=CONF_USAGE,
        stream_error=_OVERLOADED,
        http_error=ErrorReply(529, "overloaded_error", "Overloaded"),
    )


def _text(ctx: Context) -> Reply:
    return Reply((Text(ANSWER_PIECES),), usage=Usage(31, 14), model=MODEL_SNAPSHOT)


def _thinking(ctx: Context) -> Reply:
    blocks = (Thinking(THINKING_PIECES, THINKING_SIGNATURE), Text(ANSWER_PIECES))
    return Reply(blocks, usage=Usage(57, 212))


def _redacted(ctx: Context) -> Reply:
    blocks = (
        Thinking(THINKING_PIECES, THINKING_SIGNATURE),
        Redacted(REDACTED_DATA),
        Text(ANSWER_PIECES),
    )
    return Reply(blocks, usage=Usage(57, 230))


def _two_thinking_blocks(ctx: Context) -> Reply:
    """Interleaved thinking: think, say something, think again, answer."""
    blocks = (
        Thinking(THINKING_PIECES[:2], THINKING_SIGNATURE),
        Text((PREAMBLE,)),
        Thinking(THINKING_PIECES[2:], SECOND_SIGNATURE),
        Text(ANSWER_PIECES),
    )
    return Reply(blocks, usage=Usage(57, 260))


def _tool_after_text(ctx: Context) -> Reply:
    blocks = (Text((PREAMBLE,)), ToolUse(FERRY_ID, FERRY_NAME, FERRY_PIECES))
    return Reply(blocks, "tool_use", Usage(412, 77))


def _tool_no_arguments(ctx: Context) -> Reply:
    return Reply(
        (ToolUse("toolu_01NoArgs000000000000001", "get_tide", ("",)),), "tool_use", Usage(88, 12)
    )


def _thinking_tool(ctx: Context) -> Reply:
    blocks = (
        Thinking(THINKING_PIECES, THINKING_SIGNATURE),
        ToolUse(FERRY_ID, FERRY_NAME, FERRY_PIECES),
    )
    return Reply(blocks, "tool_use", Usage(401, 190))


def _structured(ctx: Context) -> Reply:
    choice = ctx.body.get("tool_choice") or {}
    if choice.get("type") == "tool":
        block: Block = ToolUse("toolu_01Structured00000000001", choice["name"], STRUCTURED_PIECES)
        return Reply((block,), "tool_use", Usage(140, 25))
    return Reply((Text(STRUCTURED_PIECES),), usage=Usage(140, 25))


def _max_tokens(ctx: Context) -> Reply:
    return Reply((Text(LENGTH_PIECES),), "max_tokens", Usage(12, 4))


def _stop_sequence(ctx: Context) -> Reply:
    return Reply((Text(ANSWER_PIECES[:2]),), "stop_sequence", Usage(12, 4), stop_sequence="###")


def _refusal(ctx: Context) -> Reply:
    return Reply((Text((REFUSAL_TEXT,)),), "refusal", Usage(15, 7))


def _cache_write(ctx: Context) -> Reply:
    return Reply((Text(ANSWER_PIECES),), usage=Usage(3, 14, cache_read=0, cache_creation=2048))


def _api_error_mid_stream(ctx: Context) -> Reply:
    error = {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}
    return Reply((Text(ANSWER_PIECES[:2]),), stream_error=error)


def _unknown_error_mid_stream(ctx: Context) -> Reply:
    error = {"type": "error", "error": {"type": "mystery_error", "message": "Something new"}}
    return Reply((Text(ANSWER_PIECES[:2]),), stream_error=error)


def _ended_early(ctx: Context) -> Reply:
    return Reply((Text(ANSWER_PIECES[:2]),), ending="eof")


# Citations into the request's documents, as the API reference's CitationPageLocation and
# CitationCharLocation (docs.anthropic.com "Citations", 2026-12; anthropic 2.17.0 types).
CITATIONS = (
    {
        "type": "page_location",
        "cited_text": "Ratatoskr runs up and down the ash.",
        "document_index": 0,
        "document_title": "Yggdrasil",
        "start_page_number": 1,
        "end_page_number": 2,
    },
    {
        "type": "char_location",
        "cited_text": "the ash",
        "document_index": 1,
        "document_title": None,
        "start_char_index": 4,
        "end_char_index": 11,
    },
)


def _cited(ctx: Context) -> Reply:
    return Reply((Text(ANSWER_PIECES, CITATIONS),))


def _cut(ctx: Context) -> Reply:
    return Reply((Text(ANSWER_PIECES[:2]),), ending="cut")


_PROMPT_TOO_LONG = "prompt is too long: 213408 tokens > 200000 maximum"
_LOW_CREDIT = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
    "to upgrade or purchase credits."
)

_SEARCH_RESULTS = [
    {
        "type": "web_search_result",
        "url": SOURCE_URL,
        "title": "Ferries of the nine worlds",
        "encrypted_content": "RXJyU2VhcmNoLXJlc3VsdC1jb250ZW50",
        "page_age": "2026-11-30",
    }
]
_CITATION = {
    "type": "web_search_result_location",
    "url": SOURCE_URL,
    "title": "Ferries of the nine worlds",
    "encrypted_index": "RXJySW5kZXgtMDAx",
    "cited_text": "The ferry leaves at dawn.",
}


def _server_tools(ctx: Context) -> Reply:
    """A web search the API ran itself, its result, and a cited answer; then pause_turn."""
    return Reply(
        (
            Text((PREAMBLE,)),
            ServerToolUse(SEARCH_ID, "web_search", SEARCH_QUERY_PIECES),
            ServerToolResult("web_search_tool_result", SEARCH_ID, _SEARCH_RESULTS),
            Text(CITED_PIECES, citations=(_CITATION,)),
        ),
        stop_reason="pause_turn",
        usage=Usage(31, 17, web_search_requests=1),
    )


def _adaptive(ctx: Context) -> Reply:
    return Reply(
        (Thinking(THINKING_PIECES, THINKING_SIGNATURE), Text(ANSWER_PIECES)),
        usage=Usage(19, 40, thinking_tokens=29),
    )


def _context_window(ctx: Context) -> Reply:
    return Reply((Text(LENGTH_PIECES),), stop_reason="model_context_window_exceeded")


SCENARIOS: dict[str, Callable[[Context], Reply | ErrorReply]] = {
    "server-tools": _server_tools,
    "adaptive": _adaptive,
    "context-window-exceeded": _context_window,
    "conf-text": _conf_text,
    "conf-tool": _conf_tool,
    "conf-parallel": _conf_parallel,
    "conf-reasoning": _conf_reasoning,
    "conf-auth": _error(401, "authentication_error", "invalid x-api-key"),
    "conf-missing": _conf_missing,
    "conf-rate-limit": _error(
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
        **{
            "retry-after": str(conf.RETRY_AFTER_SECONDS),
            "anthropic-ratelimit-requests-remaining": "0",
        },
    ),
    "conf-server-error": _error(500, "api_error", "Internal server error"),
    "conf-overloaded": _error(529, "overloaded_error", "Overloaded", **{"x-should-retry": "true"}),
    "conf-stream-error": _conf_stream_error,
    "text": _text,
    "thinking": _thinking,
    "redacted-thinking": _redacted,
    "two-thinking-blocks": _two_thinking_blocks,
    "tool-after-text": _tool_after_text,
    "tool-no-arguments": _tool_no_arguments,
    "thinking-tool": _thinking_tool,
    "structured": _structured,
    "max-tokens": _max_tokens,
    "stop-sequence": _stop_sequence,
    "refusal": _refusal,
    "cache-write": _cache_write,
    "api-error-mid-stream": _api_error_mid_stream,
    "unknown-error-mid-stream": _unknown_error_mid_stream,
    "ended-early": _ended_early,
    "cut": _cut,
    "cited": _cited,
    "permission": _error(
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    "prompt-too-long": _error(400, "invalid_request_error", _PROMPT_TOO_LONG),
    "low-credit": _error(400, "invalid_request_error", _LOW_CREDIT),
    "rate-limit-no-hint": _error(
        429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."
    ),
}


def _model(model_id: str, name: str, created: str) -> dict[str, str]:
    return {"type": "model", "id": model_id, "display_name": name, "created_at": created}


MODELS = [
    _model("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    _model("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    _model("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
]


# -- rendering ----------------------------------------------------------------------------------


def _padded(obj: Mapping[str, Any], padding: int) -> bytes:
    """Compact JSON right-padded with spaces before its last brace, as the API sends it."""
    text = json_bytes(obj)
    return text[:-1] + b" " * padding + b"}" if padding else text


class _Renderer:
    def __init__(self, ctx: Context, reply: Reply) -> None:
        self.ctx = ctx
        self.reply = reply
        ctx.fake.counter += 1
        self.id = f"msg_01RtskFake{ctx.fake.counter:014d}"
        self.model = reply.model or ctx.model
        self._events = 0

    def _usage(self, *, start: bool) -> dict[str, Any]:
        usage = self.reply.usage
        wire: dict[str, Any] = {
            "input_tokens": usage.input,
            "cache_creation_input_tokens": usage.cache_creation,
            "cache_read_input_tokens": usage.cache_read,
        }
        if start:
            wire["cache_creation"] = {
                "ephemeral_5m_input_tokens": usage.cache_creation,
                "ephemeral_1h_input_tokens": 0,
            }
            wire["output_tokens"] = 1
            wire["service_tier"] = "standard"
        else:
            wire["output_tokens"] = usage.output
        if usage.web_search_requests is not None:
            wire["server_tool_use"] = {
                "web_search_requests": usage.web_search_requests,
                "web_fetch_requests": 0,
            }
        if usage.thinking_tokens is not None and not start:
            wire["output_tokens_details"] = {"thinking_tokens": usage.thinking_tokens}
        return wire

    # -- one message ----------------------------------------------------------------------

    def message(self) -> bytes:
        content: list[dict[str, Any]] = []
        for block in self.reply.blocks:
            if isinstance(block, Text):
                text: dict[str, Any] = {"type": "text", "text": "".join(block.pieces)}
                if block.citations:
                    text["citations"] = list(block.citations)
                content.append(text)
            elif isinstance(block, ServerToolUse):
                content.append(
                    {
                        "type": "server_tool_use",
                        "id": block.id,
                        "name": block.name,
                        "input": json.loads("".join(block.pieces)),
                    }
                )
            elif isinstance(block, ServerToolResult):
                content.append(
                    {"type": block.type, "tool_use_id": block.tool_use_id, "content": block.content}
                )
            elif isinstance(block, Thinking):
                content.append(
                    {
                        "type": "thinking",
                        "thinking": "".join(block.pieces),
                        "signature": block.signature,
                    }
                )
            elif isinstance(block, Redacted):
                content.append({"type": "redacted_thinking", "data": block.data})
            else:
                text = "".join(block.pieces)
                content.append(
                    {
                        "type": "tool_use",
                        "id": block.id,
                        "name": block.name,
                        "input": json.loads(text) if text else {},
                    }
                )
        usage = {**self._usage(start=True), **self._usage(start=False)}
        obj = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.reply.stop_reason,
            "stop_sequence": self.reply.stop_sequence,
            "usage": usage,
        }
        return json_bytes(obj)

    # -- a stream ------------------------------------------------------------------------------

    def _event(self, name: str, obj: Mapping[str, Any]) -> bytes:
        self._events += 1
        padding = (self._events * 7) % 16 if self._events % 3 else 0
        return b"event: " + name.encode() + b"\ndata: " + _padded(obj, padding) + b"\n\n"

    def _ping(self) -> bytes:
        return b'event: ping\ndata: {"type": "ping"}\n\n'

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return self._event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def frames(self) -> list[bytes]:
        reply = self.reply
        start = {
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": self._usage(start=True),
            },
        }
        frames = [self._event("message_start", start)]
        for index, block in enumerate(reply.blocks):
            if isinstance(block, Text):
                opening: dict[str, Any] = {"type": "text", "text": ""}
                if block.citations:
                    opening["citations"] = []
            elif isinstance(block, ServerToolUse):
                opening = {
                    "type": "server_tool_use",
                    "id": block.id,
                    "name": block.name,
                    "input": {},
                }
            elif isinstance(block, ServerToolResult):
                opening = {
                    "type": block.type,
                    "tool_use_id": block.tool_use_id,
                    "content": block.content,
                }
            elif isinstance(block, Thinking):
                opening = {"type": "thinking", "thinking": "", "signature": ""}
            elif isinstance(block, Redacted):
                opening = {"type": "redacted_thinking", "data": block.data}
            else:
                opening = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            frames.append(
                self._event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opening},
                )
            )
            if index == 0:
                frames.append(self._ping())
            if isinstance(block, Text):
                # Citations stream as citations_delta events ahead of the text they back.
                frames.extend(
                    self._delta(index, {"type": "citations_delta", "citation": dict(c)})
                    for c in block.citations
                )
                frames.extend(
                    self._delta(index, {"type": "text_delta", "text": p}) for p in block.pieces
                )
            elif isinstance(block, ServerToolUse):
                frames.extend(
                    self._delta(index, {"type": "input_json_delta", "partial_json": p})
                    for p in block.pieces
                )
            elif isinstance(block, Thinking):
                frames.extend(
                    self._delta(index, {"type": "thinking_delta", "thinking": p})
                    for p in block.pieces
                )
                frames.append(self._delta(index, {"type": "thinking_delta", "thinking": ""}))
                frames.append(
                    self._delta(index, {"type": "signature_delta", "signature": block.signature})
                )
            elif isinstance(block, ToolUse):
                frames.append(self._delta(index, {"type": "input_json_delta", "partial_json": ""}))
                for i, piece in enumerate(block.pieces):
                    if piece:
                        frames.append(
                            self._delta(index, {"type": "input_json_delta", "partial_json": piece})
                        )
                    if i == 0:
                        frames.append(self._ping())
            last = index == len(reply.blocks) - 1
            if last and reply.stream_error is not None:
                frames.append(self._event("error", reply.stream_error))
                return frames
            frames.append(
                self._event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
        if reply.ending != "complete":
            return frames
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            "usage": self._usage(start=False),
        }
        frames.append(self._event("message_delta", delta))
        frames.append(self._event("message_stop", {"type": "message_stop"}))
        return frames


def _error_response(reply: ErrorReply, ctx_fake: FakeAnthropicUpstream) -> web.Response:
    ctx_fake.counter += 1
    request_id = f"req_01RtskFake{ctx_fake.counter:014d}"
    body = {
        "type": "error",
        "error": {"type": reply.type, "message": reply.message},
        "request_id": request_id,
    }
    headers = {"request-id": request_id, **reply.headers}
    return web.Response(
        status=reply.status, body=json_bytes(body), headers=headers, content_type="application/json"
    )


# -- the API's request checking -----------------------------------------------------------------


def _invalid(message: str) -> ErrorReply:
    return ErrorReply(400, "invalid_request_error", message)


def _check_document(block: Mapping[str, Any]) -> str:
    """What the API refuses in a document block (its DocumentBlockParam sources): ""
    when nothing."""
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") != "application/pdf":
            return "source.base64.media_type: Input should be 'application/pdf'"
        try:
            if not base64.b64decode(source.get("data") or "", validate=True).startswith(b"%PDF"):
                return "source.base64.data: The PDF specified was not valid."
        except ValueError:
            return "source.base64.data: invalid base64"
        return ""
    if kind == "url":
        return "" if str(source.get("url", "")).startswith("https://") else "source.url: invalid"
    if kind == "text":
        ok = source.get("media_type") == "text/plain" and source.get("data")
        return "" if ok else "source.text: media_type text/plain and data required"
    return f"source.type: unknown source type {kind!r}"


def _check_messages(messages: Any) -> ErrorReply | None:
    if not isinstance(messages, list) or not messages:
        return _invalid("messages: at least one message is required")
    pending: list[str] = []  # tool_use ids the next user turn must answer
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return _invalid(f'messages.{i}.role: Input should be "user" or "assistant"')
        content = message.get("content")
        blocks = (
            [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        )
        for j, block in enumerate(blocks):
            if block.get("type") == "text" and not block.get("text"):
                return _invalid(f"messages.{i}: text content blocks must be non-empty")
            if block.get("type") == "document" and (bad := _check_document(block)):
                return _invalid(f"messages.{i}.content.{j}.document.{bad}")
        if role == "user":
            results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
            stray = [r for r in results if r not in pending]
            if stray:
                return _invalid(
                    f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {stray[0]}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
            missing = [p for p in pending if p not in results]
            kinds = [b.get("type") for b in blocks]
            if missing or (results and kinds[: len(results)] != ["tool_result"] * len(results)):
                return _invalid(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing or pending)}. Each `tool_use` block "
                    "must have a corresponding `tool_result` block in the next message."
                )
            pending = []
        else:
            if pending:
                return _invalid(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    "immediately after"
                )
            pending = [b["id"] for b in blocks if b.get("type") == "tool_use"]
    return None


def _check_thinking_style(body: Mapping[str, Any]) -> ErrorReply | None:
    """Adaptive thinking where the model has it; what the adaptive-only models refuse."""
    model = str(body.get("model") or "")
    kind = (body.get("thinking") or {}).get("type")
    effort = (body.get("output_config") or {}).get("effort")
    if effort is not None and effort not in EFFORTS:
        return _invalid(f"output_config.effort: Input should be {', '.join(EFFORTS)}")
    if kind == "adaptive" and not ADAPTIVE.match(model):
        return _invalid(f"thinking.type.adaptive is not supported by {model}.")
    if not ADAPTIVE_ONLY.match(model):
        return None
    if kind in ("enabled", "disabled"):
        return _invalid(
            f"thinking.type.{kind} is not supported for this model. "
            "Use thinking.type.adaptive and output_config.effort instead."
        )
    for name in ("temperature", "top_p", "top_k"):
        if name in body:
            return _invalid(f"`{name}` cannot be set for this model; leave it at its default.")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return _invalid("tool_choice: forcing tool use is not supported for this model.")
    return None


def count_tokens(body: Mapping[str, Any]) -> int:
    """The fake's own count: COUNT_BASE plus one per word of the messages' text."""
    words = 0
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, str):
            words += len(content.split())
        else:
            words += sum(len(str(b.get("text") or "").split()) for b in content or ())
    return COUNT_BASE + words


def check_request(body: Mapping[str, Any]) -> ErrorReply | None:
    """The 400 the real API answers for what it refuses (the checks a gateway can fail)."""
    if not isinstance(body.get("max_tokens"), int):
        return _invalid("max_tokens: Field required")
    if not body.get("model"):
        return _invalid("model: Field required")
    problem = _check_messages(body.get("messages"))
    if problem is not None:
        return problem
    problem = _check_thinking_style(body)
    if problem is not None:
        return problem
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return _invalid(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if budget >= body["max_tokens"]:
            return _invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
        if "temperature" in body and body["temperature"] != 1:
            return _invalid("`temperature` may only be set to 1 when thinking is enabled.")
        if "top_k" in body:
            return _invalid("`top_k` is not supported when thinking is enabled.")
        choice = (body.get("tool_choice") or {}).get("type")
        if choice in ("any", "tool"):
            return _invalid("Thinking may not be enabled when tool_choice forces tool use.")
    output = (body.get("output_config") or {}).get("format")
    if output is not None and (
        output.get("type") != "json_schema" or not isinstance(output.get("schema"), dict)
    ):
        return _invalid("output_config.format: a json_schema format needs a schema")
    for i, tool in enumerate(body.get("tools") or ()):
        if (tool.get("input_schema") or {}).get("type") != "object":
            return _invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
    return None


# -- the server ---------------------------------------------------------------------------------


class FakeAnthropicUpstream(LoopbackServer):
    """``async with FakeAnthropicUpstream() as fake:`` then point ratd's
    ``[providers.anthropic] base_url`` at ``fake.base_url``."""

    def __init__(self, *, api_key: str | None = None, write_size: int | None = None) -> None:
        super().__init__(write_size=write_size)
        self.api_key = api_key  # when set, any other x-api-key is answered with 401
        self.scenario: str | None = None
        self.models_page_size: int | None = None  # smaller pages than `limit` asks for
        self.counter = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.models)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    def _auth(self, request: web.Request) -> ErrorReply | None:
        if not request.headers.get("anthropic-version"):
            return _invalid("anthropic-version: header is required")
        key = request.headers.get("x-api-key")
        if self.api_key is not None and key != self.api_key:
            return ErrorReply(
                401,
                "authentication_error",
                "x-api-key header is required" if key is None else "invalid x-api-key",
            )
        return None

    def scenario_for(self, model: str) -> str:
        if model in SCENARIOS:
            return model
        return self.scenario or "text"

    async def messages(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        body = record.json if isinstance(record.json, dict) else {}
        problem = self._auth(request) or check_request(body)
        if problem is not None:
            return _error_response(problem, self)
        ctx = Context(self, body, str(body["model"]))
        answer = SCENARIOS[self.scenario_for(ctx.model)](ctx)
        if isinstance(answer, ErrorReply):
            return _error_response(answer, self)
        if not ctx.stream:
            if answer.http_error is not None:
                return _error_response(answer.http_error, self)
            return web.Response(
                body=_Renderer(ctx, answer).message(), content_type="application/json"
            )
        frames = _Renderer(ctx, answer).frames()
        return await self.stream(
            request,
            frames,
            content_type="text/event-stream; charset=utf-8",
            cut=answer.ending == "cut",
            headers={"Cache-Control": "no-cache"},
        )

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        body = record.json if isinstance(record.json, dict) else {}
        problem = self._auth(request)
        if problem is None and not body.get("model"):
            problem = _invalid("model: Field required")
        problem = problem or _check_messages(body.get("messages"))
        if problem is not None:
            return _error_response(problem, self)
        return web.json_response({"input_tokens": count_tokens(body)})

    async def models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        problem = self._auth(request)
        if problem is not None:
            return _error_response(problem, self)
        limit = int(request.query.get("limit", "20"))
        if self.models_page_size:
            limit = min(limit, self.models_page_size)
        after = request.query.get("after_id")
        start = next((i + 1 for i, m in enumerate(MODELS) if m["id"] == after), 0)
        page = MODELS[start : start + limit]
        body = {
            "data": page,
            "has_more": start + limit < len(MODELS),
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
        return web.Response(body=json_bytes(body), content_type="application/json")

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        return _error_response(ErrorReply(404, "not_found_error", "Not found"), self)


def expected_usage(usage: Usage) -> dict[str, int]:
    """What a gateway should report for a reply's usage (prompt includes cached tokens)."""
    prompt = usage.input + usage.cache_read + usage.cache_creation
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output,
        "total_tokens": prompt + usage.output,
        "cached_prompt_tokens": usage.cache_read,
        "cache_creation_tokens": usage.cache_creation,
    }
