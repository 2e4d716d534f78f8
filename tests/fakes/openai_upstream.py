"""A fake OpenAI-compatible upstream: OpenAI (``/v1/...``) and OpenRouter (``/api/v1/...``)
on one loopback aiohttp server, speaking each API's real wire format with its quirks.

The formats were learned from real recordings; every text, id and number here is the
project's own. What the fake reproduces:

* SSE framing ``data: {...}\\n\\n``, one write per event (or smaller pieces, see
  ``write_size``), ``data: [DONE]`` at the end;
* OpenAI chunks (``chat.completion.chunk`` with ``service_tier``, ``system_fingerprint``,
  ``obfuscation`` padding, ``usage: null``), and the final usage chunk with empty
  ``choices`` only when ``stream_options.include_usage`` is set;
* OpenRouter chunks (``provider``, ``native_finish_reason``, ``role`` repeated in every
  delta), ``: OPENROUTER PROCESSING`` comment lines before and between events, reasoning
  deltas (``delta.reasoning`` plus ``reasoning_details``), ``cost`` in usage and the usage
  chunk that still carries a choice with an empty delta;
* tool-call arguments split across many chunks, two parallel tool calls;
* ``completion_tokens_details.reasoning_tokens`` and ``prompt_tokens_details.cached_tokens``;
* errors: an error object after a 200 (OpenAI ``{"error": {...}}`` event, OpenRouter chunk
  with a top-level ``error`` plus usage), 401, unknown models (OpenAI 404
  ``model_not_found``, OpenRouter 400 ``is not a valid model ID``), 429 with
  ``Retry-After`` and ``x-ratelimit-*`` (OpenAI) or ``X-RateLimit-Reset`` in epoch
  milliseconds and no ``Retry-After`` (OpenRouter), ``insufficient_quota``, 402, 500, 502
  (OpenAI's is a Cloudflare HTML page), 503 (OpenRouter's with ``Retry-After``), content
  filters (OpenAI 400 ``content_policy_violation``, OpenRouter 403 moderation), a stream
  cut without ``[DONE]``, malformed and non-object chunks, and a 200 non-stream body that
  is an error object;
* refusals (``refusal`` instead of content), and a request held open until the client
  goes away (``hang``; ``fake.disconnected`` is set when it does), or, unstreamed, its
  answer begun and half sent before that silence (``stall``);
* OpenAI's strictness: an unknown request argument, ``tool_choice`` without ``tools`` or
  ``stream_options`` without ``stream`` is a 400, as the real API answers.

``SCENARIOS`` lists every scenario by name.

The scenario of a request is chosen, in this order, by a model name containing
``scenario/<name>`` (``"model": "scenario/tool-call"``), else by the ``scenario``
attribute of the API's ``Flavour`` (``fake.openai.scenario = "rate-limit"``), else by
``fake.scenario`` (default ``"text"``). Every request is recorded in ``fake.requests``.

``FakeOpenAIUpstream(static=True)`` answers every chat request with one precomputed
reply, recording nothing, for benchmarks: ``python -m tests.fakes.openai_upstream
--static`` serves it standalone. By default a streamed reply is the whole precomputed
SSE body in one write; ``static_chunks=N`` (``--static-chunks N``) makes it N content
chunks written one SSE event per write, ``static_interval`` seconds apart
(``--static-interval-ms``), as a real upstream streams tokens. This module does not
import pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import random
import re
import string
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes import conformance as conf

OPENAI = "openai"
OPENROUTER = "openrouter"
SCENARIO_MARK = "scenario/"
OPENROUTER_COMMENT = b": OPENROUTER PROCESSING\n\n"

# -- the project's own content -------------------------------------------------------------


def split_every(text: str, sizes: Sequence[int]) -> tuple[str, ...]:
    """``text`` cut into pieces whose lengths cycle through ``sizes``."""
    pieces, start, i = [], 0, 0
    while start < len(text):
        size = sizes[i % len(sizes)]
        pieces.append(text[start : start + size])
        start += size
        i += 1
    return tuple(pieces)


TEXT_PIECES = (
    "Ratatoskr",
    " runs",
    " up",
    " and",
    " down",
    " Yggdrasil",
    ",",
    " carrying",
    " gossip",
    " between",
    " the",
    " eagle",
    " and",
    " Níðhöggr",
    ".",
)
TEXT = "".join(TEXT_PIECES)

LENGTH_PIECES = ("The", " nine", " worlds", " hang", " from")
LENGTH_TEXT = "".join(LENGTH_PIECES)

REASONING_PIECES = (
    "The user asks",
    " how many roots",
    " the ash has.",
    " The sources agree on three;",
    " answer briefly.",
)
REASONING_TEXT = "".join(REASONING_PIECES)
REASONING_SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS1yYXRhdG9za3ItdGVzdC1zdWl0ZQ=="
ANSWER_PIECES = ("Three", " roots", " hold", " up", " the", " world", " tree.")
ANSWER_TEXT = "".join(ANSWER_PIECES)

PREAMBLE_TEXT = "Let me look up the crossing."
REFUSAL_PIECES = ("I'm sorry,", " but I can't", " help with", " that request.")
REFUSAL_TEXT = "".join(REFUSAL_PIECES)


@dataclass(frozen=True)
class ScriptedToolCall:
    id: str
    name: str
    arguments: str  # the exact JSON text the model "wrote"
    pieces: tuple[str, ...]  # how the stream delivers it

    def __post_init__(self) -> None:
        assert "".join(self.pieces) == self.arguments


_FERRY_ARGS = (
    '{"harbor":"Ålesund","date":"2025-06-01","passengers":3,'
    '"note":"bring a \\"thermos\\" \\\\ blanket"}'
)
FERRY_CALL = ScriptedToolCall(
    id="call_R4tat0skrF3rryL00kup9xQ",
    name="lookup_ferry_schedule",
    arguments=_FERRY_ARGS,
    pieces=split_every(_FERRY_ARGS, (2, 3, 5, 1, 4, 7)),
)
_CONVERT_ARGS = '{"amount":125.5,"from":"NOK","to":"EUR"}'
CONVERT_CALL = ScriptedToolCall(
    id="call_Cnv8pQ2wLx7ZtY1mB3nKd0Re",
    name="convert_currency",
    arguments=_CONVERT_ARGS,
    pieces=split_every(_CONVERT_ARGS, (3, 4, 2)),
)
_FEE_ARGS = '{"currency_pair":"NOK/EUR","tier":"retail"}'
FEE_CALL = ScriptedToolCall(
    id="call_Fee4uV9sHq2JcW6oTn8Xa5Lm",
    name="get_exchange_fee",
    arguments=_FEE_ARGS,
    pieces=split_every(_FEE_ARGS, (5, 2, 6)),
)
# OpenRouter passes on the upstream model's ids: Mistral's are short and not call_*.
OPENROUTER_FERRY_CALL = ScriptedToolCall(
    id="Xk29fQpLm", name=FERRY_CALL.name, arguments=FERRY_CALL.arguments, pieces=FERRY_CALL.pieces
)

# Usage numbers per scenario (provider-neutral; rendered per API below).
TEXT_USAGE = {"prompt": 23, "completion": 19, "reasoning": 0, "cached": 0, "cost": 0.0000371}
LENGTH_USAGE = {"prompt": 17, "completion": 5, "reasoning": 0, "cached": 0, "cost": 0.0000102}
TOOL_USAGE = {"prompt": 214, "completion": 41, "reasoning": 0, "cached": 0, "cost": 0.000187}
PARALLEL_USAGE = {"prompt": 305, "completion": 58, "reasoning": 0, "cached": 128, "cost": 0.000266}
REASONING_USAGE = {
    "prompt": 1187,
    "completion": 463,
    "reasoning": 448,
    "cached": 1024,
    "cost": 0.00512375,
}
ERROR_USAGE = {"prompt": 31, "completion": 8, "reasoning": 6, "cached": 0, "cost": 0}


# -- embeddings ------------------------------------------------------------------------------------


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``, exactly representable in float32."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend(b / 127.5 - 1.0 for b in digest)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    unit = [v / norm for v in values]
    packed = struct.pack(f"<{dimensions}f", *unit)
    return list(struct.unpack(f"<{dimensions}f", packed))


def embedding_dimensions(model: str, requested: int | None) -> int:
    if requested:
        return requested
    if "large" in model:
        return 3072
    if "small" in model or "ada" in model:
        return 1536
    return 64


# -- requests -------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    raw: bytes
    json: Any  # the parsed body, or None when it is not JSON
    peer: Any = None  # the client's (host, port): one per pooled connection

    @property
    def flavour(self) -> str:
        return OPENROUTER if self.path.startswith("/api/") else OPENAI


@dataclass
class Flavour:
    """Per-API settings of the fake."""

    name: str
    scenario: str | None = None  # overrides FakeOpenAIUpstream.scenario for this API
    api_key: str | None = None  # when set, any other bearer token is answered with 401
    retry_after_secs: int = 20  # OpenAI 429 Retry-After
    retry_after_header: str | None = None  # sent verbatim as Retry-After instead, when set
    reset_in_secs: float = 3600.0  # OpenRouter 429 X-RateLimit-Reset = now + this
    provider_label: str = "Fjordline"  # OpenRouter's "provider" field
    # The /models answer: (status, body) instead of the built-in list, when set.
    models_reply: tuple[int, bytes] | None = None
    # Scenarios for the next requests, one each, before ``scenario`` applies again
    # (fault injection: fail twice, then answer).
    script: list[str] = field(default_factory=list)


@dataclass
class Context:
    fake: FakeOpenAIUpstream
    flavour: Flavour
    request: web.Request
    body: dict[str, Any]
    model: str

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options") or {}
        return bool(isinstance(options, dict) and options.get("include_usage"))

    @property
    def is_openai(self) -> bool:
        return self.flavour.name == OPENAI

    def bearer(self) -> str | None:
        value = self.request.headers.get("Authorization", "")
        return value[7:] if value.startswith("Bearer ") else None


# -- what a scenario answers -------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class Refusal:
    """OpenAI's ``refusal`` text, sent instead of content (structured outputs)."""

    text: str


@dataclass(frozen=True)
class Reasoning:
    text: str


@dataclass(frozen=True)
class ReasoningSignature:
    signature: str


@dataclass(frozen=True)
class ReasoningItem:
    """A whole ``reasoning_details`` item with no reasoning text beside it: how OpenAI's
    reasoning comes through OpenRouter (a summary, then the encrypted reasoning)."""

    detail: Mapping[str, Any]


@dataclass(frozen=True)
class ToolStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolArgs:
    index: int
    piece: str


@dataclass(frozen=True)
class Finish:
    reason: str
    native: str | None = None  # OpenRouter's native_finish_reason, when it differs


@dataclass(frozen=True)
class Usage:
    numbers: Mapping[str, float]


@dataclass(frozen=True)
class Comment:
    """OpenRouter's keep-alive comment line (OpenAI sends none)."""


@dataclass(frozen=True)
class StreamError:
    error: Mapping[str, Any]
    usage: Mapping[str, float] | None = None  # OpenRouter attaches usage to the error chunk
    finish: str | None = None  # and may finish the choice in it ("error")


@dataclass(frozen=True)
class RawEvent:
    data: bytes  # sent as ``data: <data>\n\n`` untouched


Step = (
    Content
    | Refusal
    | Reasoning
    | ReasoningSignature
    | ReasoningItem
    | ToolStart
    | ToolArgs
    | Finish
    | Usage
    | Comment
    | StreamError
    | RawEvent
)


@dataclass(frozen=True)
class Script:
    """A model answer, rendered as a stream or as one completion object."""

    steps: tuple[Step, ...]
    # How a stream ends: "done" (data: [DONE]), "eof" (clean end without [DONE] or a
    # finish), "cut" (the connection drops in the middle of the chunked body), "hang"
    # (nothing more until the client disconnects), "stall" (unstreamed: the headers and
    # half the body, then nothing more until the client disconnects; streamed: "hang").
    ending: str = "done"


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def _json_bytes(obj: Any, *, indent: int | None = None) -> bytes:
    if indent is None:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(obj, indent=indent, ensure_ascii=False).encode()


def _json_reply(
    status: int, obj: Any, *, ctx: Context, headers: Mapping[str, str] | None = None
) -> HttpReply:
    content_type = "application/json; charset=utf-8" if ctx.is_openai else "application/json"
    body = _json_bytes(obj, indent=4 if ctx.is_openai and status >= 400 else None)
    return HttpReply(status, body, content_type, dict(headers or {}))


def _openai_error(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _openrouter_error(
    ctx: Context, code: int, message: str, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "code": code}
    if metadata is not None:
        error["metadata"] = dict(metadata)
    return {"error": error, "user_id": ctx.fake.openrouter_user}


def _mask_key(key: str) -> str:
    return f"{key[:6]}{'*' * max(0, len(key) - 10)}{key[-4:]}" if len(key) > 10 else "***"


# -- scenarios -------------------------------------------------------------------------------------


def _text(ctx: Context) -> Script:
    if ctx.fake.answer is not None:  # the test computes the content from the request
        return Script((Content(ctx.fake.answer(ctx.body)), Finish("stop"), Usage(TEXT_USAGE)))
    return Script((*(Content(p) for p in TEXT_PIECES), Finish("stop"), Usage(TEXT_USAGE)))


def _length(ctx: Context) -> Script:
    return Script(
        (*(Content(p) for p in LENGTH_PIECES), Finish("length", "max_tokens"), Usage(LENGTH_USAGE))
    )


def _tool_steps(index: int, call: ScriptedToolCall) -> tuple[Step, ...]:
    return (ToolStart(index, call.id, call.name), *(ToolArgs(index, p) for p in call.pieces))


def _tool_call(ctx: Context) -> Script:
    if ctx.is_openai:
        steps: tuple[Step, ...] = _tool_steps(0, FERRY_CALL)
    else:  # an Anthropic-style model behind OpenRouter says something first
        steps = (Content(PREAMBLE_TEXT), *_tool_steps(0, OPENROUTER_FERRY_CALL))
    return Script((*steps, Finish("tool_calls", "tool_use"), Usage(TOOL_USAGE)))


REASONING_SUMMARY = "**Finding the ferry**\n\nLook up departures from the harbour."
ENCRYPTED_REASONING = "gAAAAABpRatatoskrEncryptedReasoningBlob0001=="
REASONING_ITEM_ID = "rs_0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def _encrypted_reasoning(ctx: Context) -> Script:
    """An OpenAI reasoning model behind OpenRouter calling a tool: its reasoning comes as
    a summary and an encrypted item, both to be sent back with the turn."""
    common = {"id": REASONING_ITEM_ID, "format": "openai-responses-v1"}
    summary = {"type": "reasoning.summary", "summary": REASONING_SUMMARY, **common, "index": 0}
    encrypted = {"type": "reasoning.encrypted", "data": ENCRYPTED_REASONING, **common, "index": 1}
    steps = (ReasoningItem(summary), ReasoningItem(encrypted), *_tool_steps(0, FERRY_CALL))
    return Script((*steps, Finish("tool_calls"), Usage(TOOL_USAGE)))


def _parallel_tool_calls(ctx: Context) -> Script:
    steps = (*_tool_steps(0, CONVERT_CALL), *_tool_steps(1, FEE_CALL))
    if not ctx.is_openai:
        steps = (Comment(), *steps[:4], Comment(), *steps[4:])
    return Script((*steps, Finish("tool_calls"), Usage(PARALLEL_USAGE)))


def _reasoning(ctx: Context) -> Script:
    if ctx.is_openai:  # o-series: reasoning is counted, never shown
        return Script(
            (*(Content(p) for p in ANSWER_PIECES), Finish("stop"), Usage(REASONING_USAGE))
        )
    reasoning = [Reasoning(p) for p in REASONING_PIECES]
    steps: tuple[Step, ...] = (
        Comment(),
        Comment(),
        *reasoning[:2],
        Comment(),
        Comment(),
        *reasoning[2:],
        ReasoningSignature(REASONING_SIGNATURE),
        *(Content(p) for p in ANSWER_PIECES),
        Finish("stop", "end_turn"),
        Usage(REASONING_USAGE),
    )
    return Script(steps)


_OPENAI_SERVER_ERROR = (
    "The server had an error while processing your request. Sorry about that! "
    "You can retry your request. (Please include the request ID req_5e0a1c2b3d4f in your message.)"
)


def _mid_stream_error(ctx: Context) -> Script:
    if ctx.is_openai:
        error = _openai_error(_OPENAI_SERVER_ERROR, "server_error", None)["error"]
        return Script((*(Content(p) for p in TEXT_PIECES[:4]), StreamError(error)))
    steps = (
        *(Comment() for _ in range(5)),
        *(Reasoning(p) for p in REASONING_PIECES[:2]),
        *(Content(p) for p in TEXT_PIECES[:3]),
        Finish("length"),
        Finish("length"),
        StreamError({"code": 400, "message": "Token limit reached"}, usage=ERROR_USAGE),
    )
    return Script(steps)


def _mid_stream_provider_error(ctx: Context) -> Script:
    """OpenRouter's documented mid-stream failure: ``error.code`` is a string here, and the
    same chunk carries ``finish_reason: "error"``."""
    if ctx.is_openai:
        return _mid_stream_error(ctx)
    error = {"code": "server_error", "message": "Provider disconnected unexpectedly"}
    steps = (Comment(), *(Content(p) for p in TEXT_PIECES[:3]), StreamError(error, finish="error"))
    return Script(steps)


def _refusal(ctx: Context) -> Script:
    return Script((*(Refusal(p) for p in REFUSAL_PIECES), Finish("stop"), Usage(LENGTH_USAGE)))


FLOOD_PIECE = "Yggdrasil " * 200  # 2 kB of content per event
# 60 MB: several times what the buffers on the way (socket buffers of two loopback
# connections, HTTP/2 flow-control windows, ratd's stream buffer) can hold together.
FLOOD_EVENTS = 30_000


def _flood(ctx: Context) -> Script:
    """A long stream, for backpressure: a slow reader must slow the writer."""
    return Script((*(Content(FLOOD_PIECE) for _ in range(FLOOD_EVENTS)), Finish("stop")))


def _hang(ctx: Context) -> Script:
    """The first words, then silence until the client gives up (no reply at all unstreamed)."""
    return Script(tuple(Content(p) for p in TEXT_PIECES[:2]), ending="hang")


def _stall(ctx: Context) -> Script:
    """An answer begun and half sent, then silence until the client gives up."""
    return Script(tuple(Content(p) for p in TEXT_PIECES[:2]), ending="stall")


def _truncated(ctx: Context) -> Script:
    return Script(tuple(Content(p) for p in TEXT_PIECES[:5]), ending="cut")


def _ended_early(ctx: Context) -> Script:
    return Script(tuple(Content(p) for p in TEXT_PIECES[:5]), ending="eof")


def _malformed(ctx: Context) -> Script:
    return Script(
        (Content(TEXT_PIECES[0]), RawEvent(b'{"id":"chatcmpl-broken","choices":[{"delta":'))
    )


def _non_object_chunk(ctx: Context) -> Script:
    return Script((Content(TEXT_PIECES[0]), RawEvent(b'"keep-alive"')))


def _invalid_key(ctx: Context) -> HttpReply:
    key = ctx.bearer()
    if ctx.is_openai:
        if key is None:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return _json_reply(401, _openai_error(message, "invalid_request_error", None), ctx=ctx)
        message = (
            f"Incorrect API key provided: {_mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return _json_reply(
            401, _openai_error(message, "invalid_request_error", "invalid_api_key"), ctx=ctx
        )
    message = "No auth credentials found" if key is None else "User not found."
    return _json_reply(401, {"error": {"message": message, "code": 401}}, ctx=ctx)


def _unknown_model(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        message = f"The model `{ctx.model}` does not exist or you do not have access to it."
        return _json_reply(
            404, _openai_error(message, "invalid_request_error", "model_not_found"), ctx=ctx
        )
    return _json_reply(
        400, _openrouter_error(ctx, 400, f"{ctx.model} is not a valid model ID"), ctx=ctx
    )


def _rate_limit(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        wait = ctx.flavour.retry_after_secs
        message = (
            f"Rate limit reached for {ctx.model} in organization org-RtTsKr0000Test on requests "
            f"per min (RPM): Limit 60, Used 60, Requested 1. Please try again in {wait}s. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        )
        headers = {
            "retry-after": str(wait),
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{wait}s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149380",
            "x-ratelimit-reset-tokens": "248ms",
            "x-request-id": "req_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        }
        if ctx.flavour.retry_after_header is not None:
            headers["retry-after"] = ctx.flavour.retry_after_header
        body = _openai_error(message, "requests", "rate_limit_exceeded")
        return _json_reply(429, body, ctx=ctx, headers=headers)
    reset_ms = int((time.time() + ctx.flavour.reset_in_secs) * 1000)
    limit_headers = {
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset_ms),
    }
    message = (
        f"Rate limit exceeded: limit_rpm/{ctx.model}/4f1c9a2e-6b7d-4e3f-9a8b-0c1d2e3f4a5b. "
        f"High demand for {ctx.model} on OpenRouter - limited to 20 requests per minute. "
        "Please retry shortly."
    )
    body = _openrouter_error(ctx, 429, message, {"headers": limit_headers, "provider_name": None})
    return _json_reply(429, body, ctx=ctx, headers=limit_headers)


def _rate_limit_upstream(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        return _rate_limit(ctx)
    raw = f"{ctx.model} is temporarily rate-limited upstream. Please retry shortly."
    metadata = {"provider_name": ctx.flavour.provider_label, "raw": raw}
    return _json_reply(
        429, _openrouter_error(ctx, 429, "Provider returned error", metadata), ctx=ctx
    )


def _insufficient_quota(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        message = (
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes."
        )
        body = _openai_error(message, "insufficient_quota", "insufficient_quota")
        return _json_reply(429, body, ctx=ctx)
    message = "Insufficient credits. Add more using https://openrouter.ai/settings/credits"
    return _json_reply(402, _openrouter_error(ctx, 402, message), ctx=ctx)


def _server_error(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        return _json_reply(500, _openai_error(_OPENAI_SERVER_ERROR, "server_error", None), ctx=ctx)
    return _json_reply(500, _openrouter_error(ctx, 500, "Internal Server Error"), ctx=ctx)


_CLOUDFLARE_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def _bad_gateway(ctx: Context) -> HttpReply:
    if ctx.is_openai:  # the edge answers before the API does: HTML, not JSON
        return HttpReply(502, _CLOUDFLARE_502.encode(), "text/html")
    metadata = {"provider_name": ctx.flavour.provider_label, "raw": "upstream connect error"}
    return _json_reply(
        502, _openrouter_error(ctx, 502, "Provider returned error", metadata), ctx=ctx
    )


def _overloaded(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        message = "The engine is currently overloaded, please try again later."
        return _json_reply(503, _openai_error(message, "server_error", None), ctx=ctx)
    message = f"No endpoints available for {ctx.model} right now"
    headers = {"Retry-After": str(ctx.flavour.retry_after_secs)}
    return _json_reply(503, _openrouter_error(ctx, 503, message), ctx=ctx, headers=headers)


def _content_filter(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        message = (
            "Your request was rejected as a result of our safety system. Your prompt may contain "
            "text that is not allowed by our safety system."
        )
        body = _openai_error(message, "invalid_request_error", "content_policy_violation")
        return _json_reply(400, body, ctx=ctx)
    message = (
        f"{ctx.model} requires moderation on {ctx.flavour.provider_label}. Your input was "
        'flagged for "harassment". No credits were charged.'
    )
    metadata = {
        "reasons": ["harassment"],
        "flagged_input": "...",
        "provider_name": ctx.flavour.provider_label,
        "model_slug": ctx.model,
    }
    return _json_reply(403, _openrouter_error(ctx, 403, message, metadata), ctx=ctx)


def _unsupported_parameter(ctx: Context) -> Script | HttpReply:
    """What OpenAI answers a reasoning model sent a sampling temperature."""
    if "temperature" not in ctx.body:
        return _text(ctx)
    message = (
        f"Unsupported value: 'temperature' does not support {ctx.body['temperature']} with this "
        "model. Only the default (1) value is supported."
    )
    body = _openai_error(message, "invalid_request_error", "unsupported_value", "temperature")
    return _json_reply(400, body, ctx=ctx)


def _bad_request(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        message = (
            "Invalid 'messages[0].content': string too long. Expected a maximum length of 10485760."
        )
        body = _openai_error(
            message, "invalid_request_error", "string_above_max_length", "messages[0].content"
        )
        return _json_reply(400, body, ctx=ctx)
    return _json_reply(
        400, _openrouter_error(ctx, 400, 'Input required: specify "prompt" or "messages"'), ctx=ctx
    )


def _context_length(ctx: Context) -> HttpReply:
    message = (
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 131311 tokens. Please reduce the length of the messages."
    )
    if ctx.is_openai:
        body = _openai_error(
            message, "invalid_request_error", "context_length_exceeded", "messages"
        )
        return _json_reply(400, body, ctx=ctx)
    return _json_reply(400, _openrouter_error(ctx, 400, message), ctx=ctx)


def _error_in_200(ctx: Context) -> HttpReply:
    if ctx.is_openai:
        return _json_reply(200, _openai_error(_OPENAI_SERVER_ERROR, "server_error", None), ctx=ctx)
    metadata = {
        "provider_name": ctx.flavour.provider_label,
        "raw": "model backend closed the connection",
    }
    return _json_reply(
        200, _openrouter_error(ctx, 502, "Provider returned error", metadata), ctx=ctx
    )


def _echo_key(ctx: Context) -> HttpReply:
    """A careless proxy that quotes the whole Authorization header back."""
    header = ctx.request.headers.get("Authorization", "")
    message = f"Invalid request: unsupported value in header Authorization: {header!r}"
    if ctx.is_openai:
        return _json_reply(400, _openai_error(message, "invalid_request_error", None), ctx=ctx)
    return _json_reply(400, _openrouter_error(ctx, 400, message), ctx=ctx)


# -- the cross-provider conformance scenarios (tests/fakes/conformance.py) ------------------------

CONF_USAGE = {
    "prompt": conf.PROMPT_TOKENS,
    "completion": conf.COMPLETION_TOKENS,
    "reasoning": 0,
    "cached": conf.CACHED_PROMPT_TOKENS,
    "cost": 0.0000125,
}
CONF_REASONING_USAGE = {**CONF_USAGE, "reasoning": conf.REASONING_TOKENS}


def _conf_call(index: int, name: str, arguments: str, pieces: Sequence[str]) -> tuple[Step, ...]:
    return (ToolStart(index, f"call_conf_{index}", name), *(ToolArgs(index, p) for p in pieces))


def _conf_text(ctx: Context) -> Script:
    return Script((*(Content(p) for p in conf.TEXT_PIECES), Finish("stop"), Usage(CONF_USAGE)))


def _conf_tool(ctx: Context) -> Script:
    call = _conf_call(0, "get_weather", conf.WEATHER_ARGS_JSON, conf.WEATHER_ARGS_PIECES)
    return Script((*call, Finish("tool_calls"), Usage(CONF_USAGE)))


def _conf_parallel(ctx: Context) -> Script:
    first = _conf_call(0, "get_weather", conf.WEATHER_ARGS_JSON, conf.WEATHER_ARGS_PIECES)
    second = _conf_call(1, "get_time", conf.TIME_ARGS_JSON, (conf.TIME_ARGS_JSON,))
    return Script((*first, *second, Finish("tool_calls"), Usage(CONF_USAGE)))


def _conf_reasoning(ctx: Context) -> Script:
    # OpenAI counts reasoning tokens but never shows the text; OpenRouter shows it.
    shown = () if ctx.is_openai else tuple(Reasoning(p) for p in conf.REASONING_PIECES)
    content = tuple(Content(p) for p in conf.TEXT_PIECES)
    return Script((*shown, *content, Finish("stop"), Usage(CONF_REASONING_USAGE)))


def _conf_rate_limit(ctx: Context) -> HttpReply:
    wait = conf.RETRY_AFTER_SECONDS
    if ctx.is_openai:
        body = _openai_error(
            "Rate limit reached, try again later.", "requests", "rate_limit_exceeded"
        )
        return _json_reply(429, body, ctx=ctx, headers={"retry-after": str(wait)})
    reset = {"X-RateLimit-Reset": str(int((time.time() + wait) * 1000))}
    return _json_reply(
        429, _openrouter_error(ctx, 429, "Rate limit exceeded"), ctx=ctx, headers=reset
    )


def _conf_stream_error(ctx: Context) -> Script:
    if ctx.is_openai:
        error = _openai_error(_OPENAI_SERVER_ERROR, "server_error", None)["error"]
    else:
        error = {"code": 502, "message": "Provider returned error"}
    return Script((Content(conf.TEXT_PIECES[0]), StreamError(error)))


SCENARIOS: dict[str, Callable[[Context], Script | HttpReply]] = {
    "text": _text,
    "length": _length,
    "tool-call": _tool_call,
    "encrypted-reasoning": _encrypted_reasoning,
    "parallel-tool-calls": _parallel_tool_calls,
    "reasoning": _reasoning,
    "mid-stream-error": _mid_stream_error,
    "mid-stream-provider-error": _mid_stream_provider_error,
    "truncated": _truncated,
    "hang": _hang,
    "stall": _stall,
    "flood": _flood,
    "ended-early": _ended_early,
    "malformed": _malformed,
    "non-object-chunk": _non_object_chunk,
    "refusal": _refusal,
    "content-filter": _content_filter,
    "invalid-key": _invalid_key,
    "unknown-model": _unknown_model,
    "rate-limit": _rate_limit,
    "rate-limit-upstream": _rate_limit_upstream,
    "insufficient-quota": _insufficient_quota,
    "server-error": _server_error,
    "bad-gateway": _bad_gateway,
    "overloaded": _overloaded,
    "bad-request": _bad_request,
    "unsupported-parameter": _unsupported_parameter,
    "context-length": _context_length,
    "error-in-200": _error_in_200,
    "echo-key": _echo_key,
    "conf-text": _conf_text,
    "conf-tool": _conf_tool,
    "conf-parallel": _conf_parallel,
    "conf-reasoning": _conf_reasoning,
    "conf-auth": _invalid_key,
    "conf-missing": _unknown_model,
    "conf-rate-limit": _conf_rate_limit,
    "conf-server-error": _server_error,
    "conf-overloaded": _overloaded,
    "conf-stream-error": _conf_stream_error,
}


# -- rendering -------------------------------------------------------------------------------------


def _usage_wire(numbers: Mapping[str, float], openai: bool) -> dict[str, Any]:
    prompt, completion = int(numbers["prompt"]), int(numbers["completion"])
    if openai:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": int(numbers["cached"]), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": int(numbers["reasoning"]),
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
    cost = numbers["cost"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": cost,
        "is_byok": False,
        "prompt_tokens_details": {
            "cached_tokens": int(numbers["cached"]),
            "audio_tokens": 0,
            "video_tokens": 0,
        },
        "cost_details": {
            "upstream_inference_cost": None,
            "upstream_inference_prompt_cost": round(cost * 0.2, 10),
            "upstream_inference_completions_cost": round(cost * 0.8, 10),
        },
        "completion_tokens_details": {
            "reasoning_tokens": int(numbers["reasoning"]),
            "image_tokens": 0,
        },
    }


def expected_usage(numbers: Mapping[str, float]) -> dict[str, float]:
    """What a gateway should report for a scenario's usage numbers."""
    prompt, completion = int(numbers["prompt"]), int(numbers["completion"])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "reasoning_tokens": int(numbers["reasoning"]),
        "cached_prompt_tokens": int(numbers["cached"]),
        "cost_usd": numbers["cost"],
    }


def openai_snapshot(model: str) -> str:
    """OpenAI answers with the dated snapshot of an alias (gpt-4o-mini → gpt-4o-mini-2024-…)."""
    if model.startswith(SCENARIO_MARK) or model[-10:-6].isdigit():
        return model
    return f"{model}-2025-04-14"


class _Ids:
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def token(self, n: int) -> str:
        return "".join(self._random.choices(string.ascii_letters + string.digits, k=n))


class _Renderer:
    """One response of one API: chunk envelopes, ids and the non-stream object."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.openai = ctx.is_openai
        ids = ctx.fake.ids
        self.created = int(time.time())
        if self.openai:
            self.id = f"chatcmpl-{ids.token(29)}"
            self.model = openai_snapshot(ctx.model)
        else:
            self.id = f"gen-{self.created}-{ids.token(20)}"
            self.model = ctx.model
        self.fingerprint = "fp_9d2c7b41e0"
        self._ids = ids

    # -- stream ---------------------------------------------------------------------------------

    def _chunk(
        self,
        delta: dict[str, Any] | None,
        finish: str | None = None,
        native: str | None = None,
        *,
        usage: Mapping[str, float] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> bytes:
        if self.openai:
            obj: dict[str, Any] = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": self.fingerprint,
                "choices": []
                if delta is None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                "usage": _usage_wire(usage, True) if usage is not None else None,
                "obfuscation": self._ids.token(1 + len(self.id) % 11),
            }
        else:
            obj = {"id": self.id, "provider": self.ctx.flavour.provider_label}
            if error is not None:
                obj["error"] = dict(error)
            obj |= {
                "model": self.model,
                "object": "chat.completion.chunk",
                "created": self.created,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta
                        if delta is not None
                        else {"role": "assistant", "content": ""},
                        "finish_reason": finish,
                        "native_finish_reason": (native or finish) if finish else None,
                        "logprobs": None,
                    }
                ],
            }
            if usage is not None:
                obj["usage"] = _usage_wire(usage, False)
        return b"data: " + _json_bytes(obj) + b"\n\n"

    def _delta(self, **fields: Any) -> dict[str, Any]:
        if self.openai:
            return fields
        return {"role": "assistant", **fields}  # OpenRouter repeats the role every time

    @staticmethod
    def _tool_wire(step: ToolStart | ToolArgs, openai: bool) -> dict[str, Any]:
        if isinstance(step, ToolStart):
            return {
                "index": step.index,
                "id": step.id,
                "type": "function",
                "function": {"name": step.name, "arguments": ""},
            }
        wire: dict[str, Any] = {"index": step.index, "function": {"arguments": step.piece}}
        if not openai:
            wire["type"] = "function"
        return wire

    def frames(self, script: Script) -> list[bytes]:
        steps = list(script.steps)
        thinking = any(isinstance(s, Reasoning) for s in steps)
        frames: list[bytes] = []
        while steps and isinstance(steps[0], Comment):
            steps.pop(0)
            if not self.openai:
                frames.append(OPENROUTER_COMMENT)
        # The opening chunk: the role, merged with a first tool call on OpenAI.
        if self.openai and steps and isinstance(steps[0], ToolStart):
            first = steps.pop(0)
            assert isinstance(first, ToolStart)
            delta = {
                "role": "assistant",
                "content": None,
                "tool_calls": [self._tool_wire(first, True)],
                "refusal": None,
            }
            frames.append(self._chunk(delta))
        elif self.openai and steps and isinstance(steps[0], Refusal):
            frames.append(self._chunk({"role": "assistant", "content": None, "refusal": ""}))
        elif self.openai:
            frames.append(self._chunk({"role": "assistant", "content": "", "refusal": None}))
        elif thinking:
            frames.append(
                self._chunk(self._delta(content="", reasoning=None, reasoning_details=[]))
            )
        else:
            frames.append(self._chunk(self._delta(content="")))
        last_usage: Mapping[str, float] | None = None
        for step in steps:
            if isinstance(step, Comment):
                if not self.openai:
                    frames.append(OPENROUTER_COMMENT)
            elif isinstance(step, Content):
                if self.openai:
                    frames.append(self._chunk({"content": step.text}))
                elif thinking:  # a reasoning model's deltas always carry both fields
                    frames.append(
                        self._chunk(
                            self._delta(content=step.text, reasoning=None, reasoning_details=[])
                        )
                    )
                else:
                    frames.append(self._chunk(self._delta(content=step.text)))
            elif isinstance(step, Refusal):
                if self.openai:
                    frames.append(self._chunk({"refusal": step.text}))
                else:
                    frames.append(self._chunk(self._delta(content=None, refusal=step.text)))
            elif isinstance(step, Reasoning):
                if not self.openai:
                    detail = {
                        "type": "reasoning.text",
                        "text": step.text,
                        "format": "anthropic-claude-v1",
                        "index": 0,
                    }
                    frames.append(
                        self._chunk(
                            self._delta(content="", reasoning=step.text, reasoning_details=[detail])
                        )
                    )
            elif isinstance(step, ReasoningItem):
                if not self.openai:
                    delta = self._delta(
                        content="", reasoning=None, reasoning_details=[dict(step.detail)]
                    )
                    frames.append(self._chunk(delta))
            elif isinstance(step, ReasoningSignature):
                if not self.openai:
                    detail = {
                        "type": "reasoning.text",
                        "signature": step.signature,
                        "format": "anthropic-claude-v1",
                        "index": 0,
                    }
                    frames.append(
                        self._chunk(
                            self._delta(content="", reasoning=None, reasoning_details=[detail])
                        )
                    )
            elif isinstance(step, ToolStart | ToolArgs):
                wire = self._tool_wire(step, self.openai)
                if self.openai:
                    frames.append(self._chunk({"tool_calls": [wire]}))
                else:
                    frames.append(self._chunk(self._delta(content=None, tool_calls=[wire])))
            elif isinstance(step, Finish):
                delta = {} if self.openai else self._delta(content="")
                frames.append(self._chunk(delta, step.reason, step.native))
            elif isinstance(step, Usage):
                last_usage = step.numbers
                if self.openai:
                    if self.ctx.include_usage:
                        frames.append(self._chunk(None, usage=step.numbers))
                else:
                    frames.append(self._chunk(self._delta(content=""), usage=step.numbers))
            elif isinstance(step, StreamError):
                if self.openai:
                    frames.append(b"data: " + _json_bytes({"error": dict(step.error)}) + b"\n\n")
                else:
                    usage = step.usage if step.usage is not None else last_usage
                    delta = self._delta(content="")
                    frames.append(self._chunk(delta, step.finish, usage=usage, error=step.error))
            elif isinstance(step, RawEvent):
                frames.append(b"data: " + step.data + b"\n\n")
        if script.ending == "done":
            frames.append(b"data: [DONE]\n\n")
        return frames

    # -- one object --------------------------------------------------------------------------------

    def completion(self, script: Script) -> bytes:
        content = "".join(s.text for s in script.steps if isinstance(s, Content))
        refusal = "".join(s.text for s in script.steps if isinstance(s, Refusal)) or None
        reasoning = "".join(s.text for s in script.steps if isinstance(s, Reasoning))
        signature = next(
            (s.signature for s in script.steps if isinstance(s, ReasoningSignature)), None
        )
        calls: dict[int, dict[str, Any]] = {}
        for step in script.steps:
            if isinstance(step, ToolStart):
                calls[step.index] = {
                    "id": step.id,
                    "type": "function",
                    "function": {"name": step.name, "arguments": ""},
                }
            elif isinstance(step, ToolArgs):
                calls[step.index]["function"]["arguments"] += step.piece
        finish = next((s for s in reversed(script.steps) if isinstance(s, Finish)), Finish("stop"))
        usage = next((s.numbers for s in script.steps if isinstance(s, Usage)), TEXT_USAGE)
        if self.openai:
            message: dict[str, Any] = {"role": "assistant", "content": content or None}
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
            message |= {"refusal": refusal, "annotations": []}
            obj: dict[str, Any] = {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish.reason,
                    }
                ],
                "usage": _usage_wire(usage, True),
                "service_tier": "default",
                "system_fingerprint": self.fingerprint,
            }
            return _json_bytes(obj, indent=2)
        message = {
            "role": "assistant",
            "content": content,
            "refusal": refusal,
            "reasoning": reasoning or None,
        }
        if reasoning:
            details: list[dict[str, Any]] = [
                {
                    "type": "reasoning.text",
                    "text": reasoning,
                    "format": "anthropic-claude-v1",
                    "index": 0,
                }
            ]
            if signature:
                details[0]["signature"] = signature
            message["reasoning_details"] = details
        items = [dict(s.detail) for s in script.steps if isinstance(s, ReasoningItem)]
        if items:
            message["reasoning_details"] = items
        if calls:
            message["tool_calls"] = [{**calls[i], "index": i} for i in sorted(calls)]
        obj = {
            "id": self.id,
            "provider": self.ctx.flavour.provider_label,
            "model": self.model,
            "object": "chat.completion",
            "created": self.created,
            "choices": [
                {
                    "logprobs": None,
                    "finish_reason": finish.reason,
                    "native_finish_reason": finish.native or finish.reason,
                    "index": 0,
                    "message": message,
                }
            ],
            "usage": _usage_wire(usage, False),
        }
        return _json_bytes(obj)


# -- OpenAI's request checking ---------------------------------------------------------------------

OPENAI_CHAT_PARAMETERS = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)


def _openai_rejects(body: dict[str, Any]) -> HttpReply | None:
    """The 400 the real API answers for arguments it does not take."""
    for key in body:
        if key not in OPENAI_CHAT_PARAMETERS:
            message = f"Unrecognized request argument supplied: {key}"
            return HttpReply(
                400, _json_bytes(_openai_error(message, "invalid_request_error", None), indent=4)
            )
    if "stream_options" in body and not body.get("stream"):
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return HttpReply(
            400,
            _json_bytes(
                _openai_error(message, "invalid_request_error", None, "stream_options"), indent=4
            ),
        )
    if "tool_choice" in body and not body.get("tools"):
        message = (
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified."
        )
        error = _openai_error(message, "invalid_request_error", None, "tool_choice")
        return HttpReply(400, _json_bytes(error, indent=4))
    model = str(body.get("model", ""))
    if "max_tokens" in body and model[:2] in ("o1", "o3", "o4"):
        message = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
        return HttpReply(
            400,
            _json_bytes(
                _openai_error(
                    message, "invalid_request_error", "unsupported_parameter", "max_tokens"
                ),
                indent=4,
            ),
        )
    return None


# -- the server ------------------------------------------------------------------------------------


class FakeOpenAIUpstream:
    """Both APIs on one loopback port. ``await start()``, then point ratd at
    ``base_url_openai`` and ``base_url_openrouter``; ``await close()`` at the end."""

    def __init__(
        self,
        *,
        static: bool = False,
        write_size: int | None = None,
        seed: int = 7,
        static_chunks: int | None = None,
        static_interval: float = 0.0,
    ) -> None:
        self.static = static
        # Static mode: None streams the precomputed body in one write; n streams n content
        # chunks, one event per write, static_interval seconds apart.
        self.static_chunks = static_chunks
        self.static_interval = static_interval
        self.scenario = "text"
        self.openai = Flavour(OPENAI)
        self.openrouter = Flavour(OPENROUTER)
        # None: one write per SSE event; n: the stream body is written n bytes at a time.
        self.write_size = write_size
        self.requests: list[RecordedRequest] = []
        # Set when a client goes away while a "hang" scenario holds its request open.
        self.disconnected = asyncio.Event()
        # Stream frames written so far, and a pause after each (slow upstreams).
        self.frames_written = 0
        self.frame_delay = 0.0
        # Seconds every chat request waits before its answer begins (a slow upstream).
        self.reply_delay = 0.0
        # The "text" scenario's content, computed from the request body, when set (a model
        # that answers what the test decides, e.g. JSON for a structured-output prompt).
        self.answer: Callable[[dict[str, Any]], str] | None = None
        self.ids = _Ids(seed)
        # Responses API: the encrypted reasoning issued, by reasoning item id (a reasoning
        # item sent back with store=false must carry exactly this).
        self.responses_issued: dict[str, str] = {}
        self.openrouter_user = "user_2hQm9TfKx0RatatoskrTests1"
        # OpenAI's image and audio endpoints (tests.fakes.openai_media).
        from tests.fakes.openai_media import MediaState

        self.media = MediaState()
        self.app = create_app(self)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._static_json = b""
        self._static_sse = b""
        self._static_frames: list[bytes] = []
        if static:
            self._prepare_static()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeOpenAIUpstream:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # the bound port (port=0 asks the OS for a free one)
        assert server is not None and server.sockets
        self.host = host
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAIUpstream:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url_openai(self) -> str:
        return f"{self.url}/v1"

    @property
    def base_url_openrouter(self) -> str:
        return f"{self.url}/api/v1"

    # -- scenarios and records ---------------------------------------------------------------------

    def flavour(self, name: str) -> Flavour:
        return self.openai if name == OPENAI else self.openrouter

    def set_scenario(self, name: str, flavour: str | None = None) -> None:
        """Answer every following request (of one API, or both) with scenario ``name``."""
        from tests.fakes.openai_responses import RESPONSES_SCENARIOS  # imports this module

        if name not in SCENARIOS and name not in RESPONSES_SCENARIOS:
            raise KeyError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
        if flavour is None:
            self.scenario = name
            self.openai.scenario = self.openrouter.scenario = None
        else:
            self.flavour(flavour).scenario = name

    def requests_to(
        self, flavour: str | None = None, endpoint: str = "/chat/completions"
    ) -> list[RecordedRequest]:
        """The recorded requests to one endpoint, of one API or both."""
        return [
            r
            for r in self.requests
            if r.path.endswith(endpoint) and (flavour is None or r.flavour == flavour)
        ]

    def last(
        self, flavour: str | None = None, endpoint: str = "/chat/completions"
    ) -> RecordedRequest:
        found = self.requests_to(flavour, endpoint)
        if not found:
            raise AssertionError(f"no request to {flavour or 'any API'} {endpoint} was recorded")
        return found[-1]

    def _scenario_for(self, flavour: Flavour, model: str) -> str:
        if flavour.script:
            return flavour.script.pop(0)
        if SCENARIO_MARK in model:
            return model.split(SCENARIO_MARK, 1)[1]
        if model.rsplit("/", 1)[-1] in SCENARIOS:  # "conf-text", "openai/conf-text"
            return model.rsplit("/", 1)[-1]
        return flavour.scenario or self.scenario

    # -- static mode (benchmarks) ------------------------------------------------------------------

    def _prepare_static(self) -> None:
        ctx = Context(
            self,
            self.openai,
            None,
            {"stream": True, "stream_options": {"include_usage": True}},
            "static-model",
        )  # type: ignore[arg-type]
        renderer = _Renderer(ctx)
        if self.static_chunks is None:
            script = _text(ctx)
        else:
            pieces = (TEXT_PIECES[i % len(TEXT_PIECES)] for i in range(self.static_chunks))
            script = Script((*(Content(p) for p in pieces), Finish("stop"), Usage(TEXT_USAGE)))
        self._static_json = renderer.completion(script)
        self._static_frames = renderer.frames(script)
        self._static_sse = b"".join(self._static_frames)

    async def _static_reply(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if _STREAM_TRUE.search(raw):  # compact or spaced JSON, as clients send it
            if self.static_chunks is None:
                return web.Response(body=self._static_sse, content_type="text/event-stream")
            response = web.StreamResponse(
                status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"}
            )
            await response.prepare(request)
            for index, frame in enumerate(self._static_frames):
                if index and self.static_interval > 0:
                    await asyncio.sleep(self.static_interval)
                await response.write(frame)
            await response.write_eof()
            return response
        return web.Response(body=self._static_json, content_type="application/json")

    # -- handlers ----------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            request.method,
            request.path,
            request.query_string,
            CIMultiDict(request.headers),
            raw,
            parsed,
            request.transport.get_extra_info("peername") if request.transport else None,
        )
        self.requests.append(record)
        return record

    def _auth_failure(self, ctx: Context) -> HttpReply | None:
        expected = ctx.flavour.api_key
        if expected is not None and ctx.bearer() != expected:
            return _invalid_key(ctx)
        return None

    async def chat(self, request: web.Request, flavour: Flavour) -> web.StreamResponse:
        if self.static:
            return await self._static_reply(request)
        record = await self._record(request)
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        body = record.json if isinstance(record.json, dict) else {}
        ctx = Context(self, flavour, request, body, str(body.get("model", "")))
        reply = self._auth_failure(ctx)
        if reply is None and ctx.is_openai:
            reply = _openai_rejects(body)
        if reply is None:
            scenario = self._scenario_for(flavour, ctx.model)
            handler = SCENARIOS.get(scenario)
            if handler is None:
                return web.Response(
                    status=500, text=f"fake upstream: unknown scenario {scenario!r}"
                )
            answer = handler(ctx)
            if isinstance(answer, HttpReply):
                reply = answer
            elif answer.ending == "hang" and not ctx.stream:
                await self._wait_for_disconnect(request)
                return web.Response(status=504)
            elif answer.ending in ("cut", "stall") and not ctx.stream:
                body = _Renderer(ctx).completion(answer)
                return await self._half_completion(request, body, answer.ending)
            elif not ctx.stream and any(isinstance(s, RawEvent) for s in answer.steps):
                raw = next(s for s in answer.steps if isinstance(s, RawEvent))
                reply = HttpReply(200, raw.data, "application/json")
            elif ctx.stream:
                return await self._stream(request, ctx, answer)
            else:
                reply = HttpReply(200, _Renderer(ctx).completion(answer), "application/json")
        return _to_response(reply)

    async def _stream(
        self, request: web.Request, ctx: Context, script: Script
    ) -> web.StreamResponse:
        if ctx.is_openai:
            headers = {
                "Content-Type": "text/event-stream; charset=utf-8",
                "openai-processing-ms": "187",
            }
        else:
            headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        for frame in _Renderer(ctx).frames(script):
            for piece in _pieces(frame, self.write_size):
                await response.write(piece)
            self.frames_written += 1
            if self.frame_delay:
                await asyncio.sleep(self.frame_delay)
        if script.ending == "cut":
            # Drop the connection mid-body: no terminating chunk, no [DONE], no finish.
            assert request.transport is not None
            request.transport.close()
            return response
        if script.ending in ("hang", "stall"):
            await self._wait_for_disconnect(request)
            return response
        await response.write_eof()
        return response

    async def _half_completion(
        self, request: web.Request, body: bytes, ending: str
    ) -> web.StreamResponse:
        """Announce the whole body and send half of it; then drop the connection ("cut")
        or say nothing more until the client goes away ("stall")."""
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if ending == "stall":
            await self._wait_for_disconnect(request)
            return response
        assert request.transport is not None
        request.transport.close()
        return response

    async def _wait_for_disconnect(self, request: web.Request) -> None:
        """Hold the request open, sending nothing, until the client closes the connection."""
        # aiohttp has no disconnect event for a handler that is not reading: poll.
        while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self.disconnected.set()

    async def embeddings(
        self, request: web.Request, flavour: Flavour | None = None
    ) -> web.StreamResponse:
        """``/embeddings`` in OpenAI's shape (OpenRouter serves the same at /api/v1)."""
        flavour = flavour or self.openai
        record = await self._record(request)
        body = record.json if isinstance(record.json, dict) else {}
        model = str(body.get("model", ""))
        ctx = Context(self, flavour, request, body, model)
        reply = self._auth_failure(ctx)
        if reply is not None:
            return _to_response(reply)
        scenario = self._scenario_for(flavour, model)
        if scenario not in ("text", "embedding-count-mismatch"):
            handler = SCENARIOS[scenario]
            answer = handler(ctx)
            if isinstance(answer, HttpReply):
                return _to_response(answer)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not texts:
            message = "'input' : input must be a string or an array of strings"
            return _to_response(
                HttpReply(400, _json_bytes(_openai_error(message, "invalid_request_error", None)))
            )
        dims = embedding_dimensions(model, body.get("dimensions"))
        as_base64 = body.get("encoding_format") == "base64"
        if scenario == "embedding-count-mismatch":
            texts = texts[:-1]
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dims)
            value: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(max(1, len(t.split())) for t in texts)
        obj = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.Response(body=_json_bytes(obj), content_type="application/json")

    async def models(self, request: web.Request, flavour: Flavour) -> web.StreamResponse:
        await self._record(request)
        if flavour.models_reply is not None:
            status, body = flavour.models_reply
            return web.Response(status=status, body=body, content_type="application/json")
        if flavour.name == OPENAI:
            return web.Response(
                body=_json_bytes(OPENAI_MODELS, indent=2), content_type="application/json"
            )
        return web.Response(body=_json_bytes(OPENROUTER_MODELS), content_type="application/json")

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        message = f"Invalid URL ({request.method} {request.path})"
        return _to_response(
            HttpReply(404, _json_bytes(_openai_error(message, "invalid_request_error", None)))
        )


OPENAI_MODELS = {
    "object": "list",
    "data": [
        {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
        {"id": "o4-mini", "object": "model", "created": 1744225351, "owned_by": "system"},
        {
            "id": "text-embedding-3-small",
            "object": "model",
            "created": 1705948997,
            "owned_by": "system",
        },
    ],
}
OPENROUTER_MODELS = {
    "data": [
        {
            "id": "yggdrasil/ash-3-mini",
            "canonical_slug": "yggdrasil/ash-3-mini-20250501",
            "hugging_face_id": "",
            "name": "Yggdrasil: Ash 3 Mini",
            "created": 1746057600,
            "description": "A small test model that answers with squirrel gossip.",
            "context_length": 131072,
            "architecture": {
                "modality": "text+image->text",
                "input_modalities": ["text", "image"],
                "output_modalities": ["text"],
                "tokenizer": "Other",
                "instruct_type": None,
            },
            "pricing": {
                "prompt": "0.0000002",
                "completion": "0.0000008",
                "request": "0",
                "image": "0",
                "web_search": "0",
                "internal_reasoning": "0",
            },
            "top_provider": {
                "context_length": 131072,
                "max_completion_tokens": 16384,
                "is_moderated": False,
            },
            "per_request_limits": None,
            "supported_parameters": [
                "max_tokens",
                "reasoning",
                "response_format",
                "seed",
                "stop",
                "temperature",
                "tool_choice",
                "tools",
                "top_k",
                "top_p",
            ],
            "default_parameters": {"temperature": None, "top_p": None, "frequency_penalty": None},
        },
        {
            "id": "openai/gpt-4o-mini",
            "canonical_slug": "openai/gpt-4o-mini",
            "hugging_face_id": None,
            "name": "OpenAI: GPT-4o-mini",
            "created": 1721260800,
            "description": "GPT-4o mini, as routed by OpenRouter.",
            "context_length": 128000,
            "architecture": {
                "modality": "text+image->text",
                "input_modalities": ["text", "image", "file"],
                "output_modalities": ["text"],
                "tokenizer": "GPT",
                "instruct_type": None,
            },
            "pricing": {
                "prompt": "0.00000015",
                "completion": "0.0000006",
                "input_cache_read": "0.000000075",
            },
            "top_provider": {
                "context_length": 128000,
                "max_completion_tokens": 16384,
                "is_moderated": True,
            },
            "per_request_limits": None,
            "supported_parameters": [
                "max_tokens",
                "response_format",
                "seed",
                "temperature",
                "tools",
                "top_p",
            ],
            "default_parameters": {},
        },
    ]
}


_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')


def _pieces(frame: bytes, size: int | None) -> Iterable[bytes]:
    if not size:
        yield frame
        return
    for start in range(0, len(frame), size):
        yield frame[start : start + size]


def _to_response(reply: HttpReply) -> web.Response:
    response = web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))
    response.headers["Content-Type"] = reply.content_type
    return response


def create_app(fake: FakeOpenAIUpstream) -> web.Application:
    """The aiohttp application serving ``fake`` (both APIs)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)

    def chat_for(flavour: Flavour) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            if flavour.name == OPENROUTER and not fake.static:
                from tests.fakes.openai_media import openrouter_image

                made = await openrouter_image(fake, request)
                if made is not None:
                    return made
            return await fake.chat(request, flavour)

        return handler

    def models_for(flavour: Flavour) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await fake.models(request, flavour)

        return handler

    app.router.add_post("/v1/chat/completions", chat_for(fake.openai))
    app.router.add_post("/v1/embeddings", fake.embeddings)
    app.router.add_get("/v1/models", models_for(fake.openai))
    app.router.add_post("/api/v1/chat/completions", chat_for(fake.openrouter))
    app.router.add_get("/api/v1/models", models_for(fake.openrouter))

    async def openrouter_embeddings(request: web.Request) -> web.StreamResponse:
        return await fake.embeddings(request, fake.openrouter)

    app.router.add_post("/api/v1/embeddings", openrouter_embeddings)
    # The Responses API lives in a module of its own, which builds on this one (imported
    # here, not at the top, as it imports this module).
    from tests.fakes import openai_responses

    app.router.add_routes(openai_responses.routes(fake))
    from tests.fakes import openai_media

    app.router.add_routes(openai_media.routes(fake))
    app.router.add_route("*", "/{tail:.*}", fake.not_found)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the fake standalone (e.g. for a benchmark): prints the base URLs, runs until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--static", action="store_true", help="one precomputed reply, no recording")
    parser.add_argument(
        "--static-chunks",
        type=int,
        default=None,
        help="static streams: this many content chunks, one SSE event per write",
    )
    parser.add_argument(
        "--static-interval-ms",
        type=float,
        default=0.0,
        help="static streams with --static-chunks: pause between two events",
    )
    parser.add_argument("--scenario", default="text", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)

    async def serve() -> None:
        fake = FakeOpenAIUpstream(
            static=args.static,
            static_chunks=args.static_chunks,
            static_interval=args.static_interval_ms / 1000,
        )
        fake.set_scenario(args.scenario)
        await fake.start(args.host, args.port)
        print(f"openai {fake.base_url_openai}", flush=True)
        print(f"openrouter {fake.base_url_openrouter}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
