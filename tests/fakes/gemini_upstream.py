"""A fake Gemini API (``/v1beta``) on loopback, speaking its real wire format.

The format was learned from real recordings and the API reference; every text, id and
number here is the project's own. What the fake reproduces:

* ``models/{model}:generateContent`` (a pretty-printed ``GenerateContentResponse``) and
  ``:streamGenerateContent?alt=sse`` (``data: {...}`` events separated by ``\\r\\n\\r\\n``,
  JSON with ``": "`` after keys, cumulative ``usageMetadata`` on every event, the
  ``finishReason`` on the last);
* function calls without ids, ``args`` as objects delivered whole in one event,
  ``finishReason: STOP`` (with ``finishMessage``) when the model called functions,
  ``thoughtSignature`` on the first call or on a text part, thought parts
  (``"thought": true``), ``thoughtsTokenCount`` / ``cachedContentTokenCount``;
* ``SAFETY`` candidates without content, prompts blocked in ``promptFeedback``;
* errors ``{"error": {"code", "message", "status", "details"}}``: 400 ``API_KEY_INVALID``
  (a bad key is not a 401 here), 403 for a missing key, 404, 429 with
  ``google.rpc.RetryInfo.retryDelay`` in the body and no ``Retry-After``, 500, 503, and an
  ``{"error": ...}`` event after a 200;
* the API's strictness where a gateway can get it wrong: unknown fields are 400s
  (``Invalid JSON payload received. Unknown name ...``, e.g. ``additionalProperties`` in a
  schema), OBJECT schemas need properties, contents need parts and a user/model role,
  function responses must answer every call of the previous turn;
* ``:embedContent``, ``:batchEmbedContents`` (at most 100 requests, each naming the same
  model), ``:countTokens``, ``GET /v1beta/models`` with ``pageSize`` / ``pageToken``.

A request's scenario is its model name when that names one (``conf-text``,
``thinking``, ...; see ``SCENARIOS``), else ``fake.scenario`` when set, else ``text``.
This module does not import pytest.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import conformance as conf
from tests.fakes import gemini_media
from tests.fakes.loopback import LoopbackServer, json_bytes

# -- the project's own content ------------------------------------------------------------------

ANSWER_PIECES = ("Three roots", " hold up", " the world", " tree.")
ANSWER = "".join(ANSWER_PIECES)
THOUGHT_PIECES = ("**Counting the roots**\n\nThe sources", " agree on three.\n\n")
THOUGHT = "".join(THOUGHT_PIECES)
THOUGHT_SIGNATURE = "CiQB0e2Kb3RhdG9za3ItZ2VtaW5pLXRob3VnaHQtc2lnbmF0dXJl"
CALL_SIGNATURE = "CiQB0e2Kb3RhdG9za3ItZ2VtaW5pLWNhbGwtc2lnbmF0dXJlLTAx"
FERRY_ARGS = {"harbor": "Ålesund", "passengers": 3, "options": {"cabin": True, "meal": None}}
TOPICS = ("skiing", "herring", "trolls")
STRUCTURED = '{"name": "Ratatoskr", "kind": "squirrel", "legs": 4}'
PREAMBLE = "Let me check the ferry."
EMBED_DIMENSIONS = 8
RETRY_DELAY = "34.5s"


# -- what a reply is made of --------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str
    signature: str | None = None


@dataclass(frozen=True)
class Thought:
    text: str
    signature: str | None = None


@dataclass(frozen=True)
class Call:
    name: str
    args: Mapping[str, Any]
    signature: str | None = None
    id: str | None = None


Part = Text | Thought | Call


@dataclass(frozen=True)
class Usage:
    prompt: int  # includes cached tokens, as Gemini counts them
    candidates: int
    thoughts: int | None = None
    cached: int | None = None


@dataclass(frozen=True)
class Reply:
    # Stream events, each a list of parts; a plain response joins them.
    chunks: tuple[tuple[Part, ...], ...]
    finish: str | None = "STOP"
    usage: Usage = Usage(31, 14)
    finish_message: str | None = None
    # Stream only: an ``{"error": ...}`` event after the chunks.
    stream_error: Mapping[str, Any] | None = None
    # Non-stream requests of a stream-error scenario get this HTTP error instead.
    http_error: ErrorReply | None = None
    # The candidate carries no content at all (a SAFETY stop).
    no_content: bool = False


@dataclass(frozen=True)
class ErrorReply:
    code: int
    status: str
    message: str
    details: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Blocked:
    reason: str


@dataclass
class Context:
    fake: FakeGeminiUpstream
    body: dict[str, Any]
    model: str
    stream: bool


# The conformance usage: 23 prompt tokens (4 of them cached), 11 completion tokens; with
# reasoning, 9 of the 11 are thoughts (Gemini counts them apart from candidates).
CONF_USAGE = Usage(conf.PROMPT_TOKENS, conf.COMPLETION_TOKENS, cached=conf.CACHED_PROMPT_TOKENS)
CONF_REASONING_USAGE = Usage(
    conf.PROMPT_TOKENS,
    conf.COMPLETION_TOKENS - conf.REASONING_TOKENS,
    thoughts=conf.REASONING_TOKENS,
    cached=conf.CACHED_PROMPT_TOKENS,
)
_CALLS_MESSAGE = "Model generated function call(s)."


# -- scenarios ----------------------------------------------------------------------------------


def _texts(pieces: Sequence[str]) -> tuple[tuple[Part, ...], ...]:
    return tuple((Text(p),) for p in pieces)


def _conf_text(ctx: Context) -> Reply:
    return Reply(_texts(conf.TEXT_PIECES), usage=CONF_USAGE)


def _conf_tool(ctx: Context) -> Reply:
    return Reply(
        ((Call("get_weather", conf.WEATHER_ARGS),),),
        usage=CONF_USAGE,
        finish_message=_CALLS_MESSAGE,
    )


def _conf_parallel(ctx: Context) -> Reply:
    calls = (Call("get_weather", conf.WEATHER_ARGS), Call("get_time", conf.TIME_ARGS))
    return Reply((calls,), usage=CONF_USAGE, finish_message=_CALLS_MESSAGE)


def _conf_reasoning(ctx: Context) -> Reply:
    thoughts: tuple[tuple[Part, ...], ...] = tuple((Thought(p),) for p in conf.REASONING_PIECES)
    first, *rest = conf.TEXT_PIECES
    texts = ((Text(first, conf.REASONING_SIGNATURE),), *_texts(rest))
    return Reply((*thoughts, *texts), usage=CONF_REASONING_USAGE)


def _error(
    code: int, status: str, message: str, *details: Mapping[str, Any]
) -> Callable[[Context], ErrorReply]:
    return lambda ctx: ErrorReply(code, status, message, details)


def _conf_missing(ctx: Context) -> ErrorReply:
    message = (
        f"models/{ctx.model} is not found for API version v1beta, or is not supported for "
        "generateContent. Call ModelService.ListModels to see the list of available models "
        "and their supported methods."
    )
    return ErrorReply(404, "NOT_FOUND", message)


def _error_info(reason: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }


def _retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


_QUOTA_FAILURE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [
        {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
            "quotaValue": "10",
        }
    ],
}
_HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}
_KEY_INVALID = ErrorReply(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    (
        _error_info("API_KEY_INVALID"),
        {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
            "locale": "en-US",
            "message": "API key not valid. Please pass a valid API key.",
        },
    ),
)
_NO_KEY = ErrorReply(
    403,
    "PERMISSION_DENIED",
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API.",
)
_OVERLOADED = ErrorReply(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
_INTERNAL = ErrorReply(
    500,
    "INTERNAL",
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
)


def _rate_limit(delay: str) -> Callable[[Context], ErrorReply]:
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
    )
    return _error(429, "RESOURCE_EXHAUSTED", message, _QUOTA_FAILURE, _HELP, _retry_info(delay))


def _error_object(reply: ErrorReply) -> dict[str, Any]:
    error: dict[str, Any] = {"code": reply.code, "message": reply.message, "status": reply.status}
    if reply.details:
        error["details"] = [dict(d) for d in reply.details]
    return {"error": error}


def _conf_stream_error(ctx: Context) -> Reply:
    return Reply(
        _texts(conf.TEXT_PIECES[:1]),
        finish=None,
        usage=CONF_USAGE,
        stream_error=_error_object(_OVERLOADED),
        http_error=_OVERLOADED,
    )


def _text(ctx: Context) -> Reply:
    return Reply(_texts(ANSWER_PIECES))


def _thinking(ctx: Context) -> Reply:
    thoughts: tuple[tuple[Part, ...], ...] = tuple((Thought(p),) for p in THOUGHT_PIECES)
    first, *rest = ANSWER_PIECES
    chunks = (*thoughts, (Text(first, THOUGHT_SIGNATURE),), *_texts(rest))
    return Reply(chunks, usage=Usage(34, 20, thoughts=241))


def _signature_only(ctx: Context) -> Reply:
    """Thinking happened but no thoughts were asked for: only the signature shows."""
    first, *rest = ANSWER_PIECES
    return Reply(
        ((Text(first, THOUGHT_SIGNATURE),), *_texts(rest)), usage=Usage(9, 20, thoughts=180)
    )


def _function_call(ctx: Context) -> Reply:
    chunk = (Call("lookup_ferry", FERRY_ARGS, CALL_SIGNATURE),)
    return Reply((chunk,), usage=Usage(52, 17, thoughts=93), finish_message=_CALLS_MESSAGE)


def _parallel_calls(ctx: Context) -> Reply:
    calls = tuple(
        Call("generate_topic", {"topic": t}, CALL_SIGNATURE if i == 0 else None)
        for i, t in enumerate(TOPICS)
    )
    return Reply((calls,), usage=Usage(83, 30, thoughts=190), finish_message=_CALLS_MESSAGE)


def _text_and_call(ctx: Context) -> Reply:
    return Reply(((Text(PREAMBLE),), (Call("lookup_ferry", FERRY_ARGS),)), usage=Usage(60, 21))


def _call_without_arguments(ctx: Context) -> Reply:
    return Reply(((Call("get_tide", {}),),), usage=Usage(40, 5), finish_message=_CALLS_MESSAGE)


def _call_with_id(ctx: Context) -> Reply:
    return Reply(((Call("lookup_ferry", FERRY_ARGS, id="fc_4e1b2c3d"),),), usage=Usage(52, 17))


def _structured(ctx: Context) -> Reply:
    return Reply(((Text(STRUCTURED[:20]),), (Text(STRUCTURED[20:]),)), usage=Usage(40, 16))


def _safety(ctx: Context) -> Reply:
    return Reply((), finish="SAFETY", usage=Usage(12, 0), no_content=True)


def _recitation(ctx: Context) -> Reply:
    return Reply(_texts(ANSWER_PIECES[:1]), finish="RECITATION", usage=Usage(12, 3))


def _max_tokens(ctx: Context) -> Reply:
    return Reply(_texts(ANSWER_PIECES[:2]), finish="MAX_TOKENS", usage=Usage(12, 4))


def _internal_mid_stream(ctx: Context) -> Reply:
    return Reply(_texts(ANSWER_PIECES[:2]), finish=None, stream_error=_error_object(_INTERNAL))


def _ended_early(ctx: Context) -> Reply:
    return Reply(_texts(ANSWER_PIECES[:2]), finish=None)


def _blocked(ctx: Context) -> Blocked:
    return Blocked("PROHIBITED_CONTENT")


_TOO_LONG = (
    "The input token count (1203317) exceeds the maximum number of tokens allowed (1048576)."
)

SCENARIOS: dict[str, Callable[[Context], Reply | ErrorReply | Blocked]] = {
    "conf-text": _conf_text,
    "conf-tool": _conf_tool,
    "conf-parallel": _conf_parallel,
    "conf-reasoning": _conf_reasoning,
    "conf-auth": lambda ctx: _KEY_INVALID,
    "conf-missing": _conf_missing,
    "conf-rate-limit": _rate_limit(f"{conf.RETRY_AFTER_SECONDS}s"),
    "conf-server-error": lambda ctx: _INTERNAL,
    "conf-overloaded": lambda ctx: _OVERLOADED,
    "conf-stream-error": _conf_stream_error,
    "text": _text,
    "thinking": _thinking,
    "signature-only": _signature_only,
    "function-call": _function_call,
    "parallel-calls": _parallel_calls,
    "text-and-call": _text_and_call,
    "call-without-arguments": _call_without_arguments,
    "call-with-id": _call_with_id,
    "structured": _structured,
    "safety": _safety,
    "recitation": _recitation,
    "max-tokens": _max_tokens,
    "blocked": _blocked,
    "internal-mid-stream": _internal_mid_stream,
    "ended-early": _ended_early,
    "rate-limit-fractional": _rate_limit(RETRY_DELAY),
    "no-key": lambda ctx: _NO_KEY,
    "context-too-long": _error(400, "INVALID_ARGUMENT", _TOO_LONG),
}


def _model(
    name: str, display: str, inputs: int, outputs: int, methods: list[str], **extra: Any
) -> dict[str, Any]:
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": display,
        "description": f"{display}, as the fake serves it.",
        "inputTokenLimit": inputs,
        "outputTokenLimit": outputs,
        "supportedGenerationMethods": methods,
        **extra,
    }


_CHAT_METHODS = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
MODELS = [
    _model(
        "gemini-2.5-flash",
        "Gemini 2.5 Flash",
        1048576,
        65536,
        _CHAT_METHODS,
        thinking=True,
        temperature=1,
    ),
    _model("gemini-2.0-flash", "Gemini 2.0 Flash", 1048576, 8192, _CHAT_METHODS, temperature=1),
    _model(
        "gemini-embedding-001", "Gemini Embedding 001", 2048, 1, ["embedContent", "countTokens"]
    ),
]


# -- rendering ----------------------------------------------------------------------------------


def _usage_wire(usage: Usage, *, final: bool, thoughts_so_far: int | None = None) -> dict[str, Any]:
    wire: dict[str, Any] = {"promptTokenCount": usage.prompt}
    thoughts = usage.thoughts if final else thoughts_so_far
    total = usage.prompt + (thoughts or 0)
    if final:
        wire["candidatesTokenCount"] = usage.candidates
        total += usage.candidates
    wire["totalTokenCount"] = total
    if usage.cached is not None:
        wire["cachedContentTokenCount"] = usage.cached
    wire["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.prompt}]
    if usage.cached is not None:
        wire["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.cached}]
    if final and usage.candidates:
        wire["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.candidates}]
    if thoughts is not None:
        wire["thoughtsTokenCount"] = thoughts
    return wire


def _part_wire(part: Part) -> dict[str, Any]:
    wire: dict[str, Any]
    if isinstance(part, Call):
        call: dict[str, Any] = {"name": part.name, "args": dict(part.args)}
        if part.id:
            call = {"id": part.id, **call}
        wire = {"functionCall": call}
    elif isinstance(part, Thought):
        wire = {"text": part.text, "thought": True}
    else:
        wire = {"text": part.text}
    if part.signature:
        wire["thoughtSignature"] = part.signature
    return wire


def _joined(parts: Sequence[Part]) -> list[Part]:
    """Parts as a whole response has them: adjacent texts (and thoughts) in one part."""
    out: list[Part] = []
    for part in parts:
        previous = out[-1] if out else None
        if isinstance(part, Text) and isinstance(previous, Text) and not part.signature:
            out[-1] = Text(previous.text + part.text, previous.signature)
        elif isinstance(part, Thought) and isinstance(previous, Thought) and not previous.signature:
            out[-1] = Thought(previous.text + part.text, part.signature)
        else:
            out.append(part)
    return out


class _Renderer:
    def __init__(self, ctx: Context, reply: Reply) -> None:
        self.ctx = ctx
        self.reply = reply
        ctx.fake.counter += 1
        self.response_id = f"RtskGemini{ctx.fake.counter:012d}"

    def _candidate(self, parts: Sequence[Part], finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {}
        if not self.reply.no_content:
            candidate["content"] = {"parts": [_part_wire(p) for p in parts], "role": "model"}
        if finish:
            candidate["finishReason"] = finish
            if self.reply.finish_message:
                candidate["finishMessage"] = self.reply.finish_message
        candidate["index"] = 0
        return candidate

    def response(self) -> bytes:
        parts = _joined([p for chunk in self.reply.chunks for p in chunk])
        obj = {
            "candidates": [self._candidate(parts, self.reply.finish)],
            "usageMetadata": _usage_wire(self.reply.usage, final=True),
            "modelVersion": self.ctx.model,
            "responseId": self.response_id,
        }
        return json_bytes(obj, indent=2)

    def frames(self) -> list[bytes]:
        reply = self.reply
        frames: list[bytes] = []
        chunks = list(reply.chunks) or [()]
        thoughts_seen = 0
        thought_chunks = sum(1 for c in chunks if any(isinstance(p, Thought) for p in c))
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if any(isinstance(p, Thought) for p in chunk):
                thoughts_seen += 1
            so_far = None
            if reply.usage.thoughts is not None and thought_chunks:
                so_far = reply.usage.thoughts * thoughts_seen // thought_chunks
            final = last and reply.finish is not None
            obj = {
                "candidates": [self._candidate(chunk, reply.finish if final else None)],
                "usageMetadata": _usage_wire(reply.usage, final=final, thoughts_so_far=so_far),
                "modelVersion": self.ctx.model,
                "responseId": self.response_id,
            }
            frames.append(b"data: " + json_bytes(obj, separators=(",", ": ")) + b"\r\n\r\n")
        if reply.stream_error is not None:
            frames.append(
                b"data: "
                + json_bytes(dict(reply.stream_error), separators=(",", ": "))
                + b"\r\n\r\n"
            )
        return frames


def _error_response(reply: ErrorReply) -> web.Response:
    return web.Response(
        status=reply.code,
        body=json_bytes(_error_object(reply), indent=2),
        content_type="application/json",
        charset="UTF-8",
    )


# -- the API's request checking -----------------------------------------------------------------

_TOP_LEVEL = {
    "contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
    "generationConfig", "cachedContent", "labels",
}  # fmt: skip
_GENERATION = {
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
    "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK",
    "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
    "thinkingConfig", "mediaResolution", "speechConfig", "imageConfig",
}  # fmt: skip
_SCHEMA = {
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
}  # fmt: skip
_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}


def _invalid(message: str) -> ErrorReply:
    return ErrorReply(400, "INVALID_ARGUMENT", message)


def _unknown(name: str, where: str) -> ErrorReply:
    return _invalid(
        f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
    )


def _check_schema(schema: Any, where: str) -> ErrorReply | None:
    if not isinstance(schema, dict):
        return _invalid(f"* {where}: must be an object")
    for key in schema:
        if key not in _SCHEMA:
            return _unknown(key, where)
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.lower() not in _TYPES):
        return _invalid(f"* {where}.type: Invalid value {kind!r}")
    if isinstance(kind, str) and kind.lower() == "object" and not schema.get("properties"):
        return _invalid(f"* {where}.properties: should be non-empty for OBJECT type")
    for name, sub in (schema.get("properties") or {}).items():
        problem = _check_schema(sub, f"{where}.properties[{name}].value")
        if problem:
            return problem
    if "items" in schema:
        return _check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or ()):
        problem = _check_schema(sub, f"{where}.any_of[{i}]")
        if problem:
            return problem
    return None


def check_request(body: Mapping[str, Any]) -> ErrorReply | None:
    """The 400 the real API answers for what it refuses (the checks a gateway can fail)."""
    for key in body:
        if key not in _TOP_LEVEL:
            return _unknown(key, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return _invalid("* GenerateContentRequest.contents: contents is not specified")
    pending_calls = 0
    for i, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return _invalid(f"Please use a valid role: user, model. (contents[{i}])")
        parts = content.get("parts") or []
        if not parts:
            return _invalid(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        responses = sum(1 for p in parts if "functionResponse" in p)
        if pending_calls and responses != pending_calls:
            return _invalid(
                "Please ensure that the number of function response parts is equal to the number "
                "of function call parts of the function call turn."
            )
        pending_calls = (
            sum(1 for p in parts if "functionCall" in p) if content["role"] == "model" else 0
        )
        for part in parts:
            if "functionResponse" in part and not isinstance(
                part["functionResponse"].get("response"), dict
            ):
                return _invalid(
                    f"* GenerateContentRequest.contents[{i}]: "
                    "functionResponse.response must be an object"
                )
    generation = body.get("generationConfig") or {}
    for key in generation:
        if key not in _GENERATION:
            return _unknown(key, "generation_config")
    if "responseSchema" in generation and "responseJsonSchema" in generation:
        return _invalid("response_schema and response_json_schema are mutually exclusive")
    if "responseJsonSchema" in generation and "responseMimeType" not in generation:
        return _invalid("response_json_schema requires response_mime_type")
    if "responseSchema" in generation:
        problem = _check_schema(
            generation["responseSchema"], "GenerateContentRequest.generation_config.response_schema"
        )
        if problem:
            return problem
    for t, tool in enumerate(body.get("tools") or ()):
        for d, declaration in enumerate(tool.get("functionDeclarations") or ()):
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                return _invalid("parameters and parameters_json_schema are mutually exclusive")
            if not isinstance(declaration.get("parametersJsonSchema", {}), dict):
                return _invalid("parameters_json_schema must describe an object")
            if "parameters" in declaration:
                where = f"GenerateContentRequest.tools[{t}].function_declarations[{d}].parameters"
                problem = _check_schema(declaration["parameters"], where)
                if problem:
                    return problem
    return None


# -- embeddings ---------------------------------------------------------------------------------


def fake_embedding(text: str, dimensions: int = EMBED_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for ``text``, exactly representable in float32."""
    digest = hashlib.sha256(text.encode()).digest()
    values = [b / 127.5 - 1.0 for b in digest[:dimensions]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return list(
        struct.unpack(
            f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values))
        )
    )


def _embedding_of(request: Mapping[str, Any]) -> list[float]:
    """The vector an embed request gets: with ``outputDimensionality``, the first values
    of the full one, not normalised again (as Gemini's docs describe)."""
    vector = fake_embedding(_content_text(request.get("content")))
    size = request.get("outputDimensionality")
    return vector[:size] if isinstance(size, int) and size > 0 else vector


def _content_text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    return "".join(str(p.get("text") or "") for p in parts or ())


# -- the server ---------------------------------------------------------------------------------


class FakeGeminiUpstream(LoopbackServer):
    """``async with FakeGeminiUpstream() as fake:`` then point ratd's
    ``[providers.google] base_url`` at ``fake.base_url``."""

    def __init__(self, *, api_key: str | None = None, write_size: int | None = None) -> None:
        super().__init__(write_size=write_size)
        self.api_key = api_key  # when set, any other x-goog-api-key is refused
        self.scenario: str | None = None
        self.models_page_size: int | None = None
        self.counter = 0
        self.media = gemini_media.GeminiMediaState()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1beta/models", self.models)
        app.router.add_post("/v1beta/models/{target}", self.model_method)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    def _auth(self, request: web.Request) -> ErrorReply | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if self.api_key is None:
            return None
        if key is None:
            return _NO_KEY
        return None if key == self.api_key else _KEY_INVALID

    def scenario_for(self, model: str) -> str:
        if model in SCENARIOS:
            return model
        return self.scenario or "text"

    async def model_method(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        body = record.json if isinstance(record.json, dict) else {}
        model, _, method = request.match_info["target"].partition(":")
        problem = self._auth(request)
        if problem is not None:
            return _error_response(problem)
        scenario = self.scenario_for(model)
        if method in ("generateContent", "streamGenerateContent"):
            return await self._generate(
                request, body, model, scenario, stream=method == "streamGenerateContent"
            )
        answer = SCENARIOS[scenario](Context(self, body, model, False))
        if isinstance(answer, ErrorReply):
            return _error_response(answer)
        if method == "embedContent":
            return web.json_response({"embedding": {"values": _embedding_of(body)}})
        if method == "batchEmbedContents":
            return self._batch_embed(body, model)
        if method == "countTokens":
            words = sum(len(_content_text(c).split()) for c in body.get("contents") or ())
            return web.json_response(
                {
                    "totalTokens": words,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": words}],
                }
            )
        return _error_response(ErrorReply(404, "NOT_FOUND", f"Method {method} not found"))

    def _batch_embed(self, body: Mapping[str, Any], model: str) -> web.Response:
        requests = body.get("requests") or []
        if len(requests) > 100:
            return _error_response(
                _invalid(
                    "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
                )
            )
        vectors = []
        for i, item in enumerate(requests):
            if item.get("model") != f"models/{model}":
                return _error_response(
                    _invalid(
                        f"Model names should be the same in the request and in requests[{i}].model."
                    )
                )
            vectors.append({"values": _embedding_of(item)})
        return web.json_response({"embeddings": vectors})

    async def _generate(
        self, request: web.Request, body: dict[str, Any], model: str, scenario: str, *, stream: bool
    ) -> web.StreamResponse:
        if stream and request.query.get("alt") != "sse":
            return _error_response(
                _invalid("this fake serves streamGenerateContent only with alt=sse")
            )
        problem = check_request(body)
        if problem is not None:
            return _error_response(problem)
        bad_part = gemini_media.check_parts(body)
        if bad_part:
            return _error_response(_invalid(bad_part))
        wanted = gemini_media.modalities(body)
        if "IMAGE" in wanted and not stream:
            return gemini_media.image_answer(model)
        if "AUDIO" in wanted and stream:
            return await gemini_media.speech_answer(request, self.media, model)
        ctx = Context(self, body, model, stream)
        answer = SCENARIOS[scenario](ctx)
        if isinstance(answer, ErrorReply):
            return _error_response(answer)
        if isinstance(answer, Blocked):
            obj = {
                "promptFeedback": {"blockReason": answer.reason},
                "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
                "modelVersion": model,
            }
            if not stream:
                return web.Response(body=json_bytes(obj, indent=2), content_type="application/json")
            frame = b"data: " + json_bytes(obj, separators=(",", ": ")) + b"\r\n\r\n"
            return await self.stream(request, [frame], content_type="text/event-stream")
        if not stream:
            if answer.http_error is not None:
                return _error_response(answer.http_error)
            return web.Response(
                body=_Renderer(ctx, answer).response(), content_type="application/json"
            )
        return await self.stream(
            request, _Renderer(ctx, answer).frames(), content_type="text/event-stream"
        )

    async def models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        problem = self._auth(request)
        if problem is not None:
            return _error_response(problem)
        size = int(request.query.get("pageSize", "50"))
        if self.models_page_size:
            size = min(size, self.models_page_size)
        start = int(request.query.get("pageToken") or 0)
        page = MODELS[start : start + size]
        body: dict[str, Any] = {"models": page}
        if start + size < len(MODELS):
            body["nextPageToken"] = str(start + size)
        return web.Response(body=json_bytes(body, indent=2), content_type="application/json")

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        return web.Response(
            status=404,
            text="<html><body>404. That's an error.</body></html>",
            content_type="text/html",
        )


def expected_usage(usage: Usage) -> dict[str, int]:
    """What a gateway should report: completion includes thoughts, so prompt + completion
    is the total, as with every other provider."""
    completion = usage.candidates + (usage.thoughts or 0)
    expected = {
        "prompt_tokens": usage.prompt,
        "completion_tokens": completion,
        "total_tokens": usage.prompt + completion,
    }
    if usage.thoughts is not None:
        expected["reasoning_tokens"] = usage.thoughts
    if usage.cached is not None:
        expected["cached_prompt_tokens"] = usage.cached
    return expected
