"""Google's Gemini API (``generativelanguage.googleapis.com/v1beta``): chat through
``generateContent`` and ``streamGenerateContent?alt=sse``, embeddings through
``embedContent`` / ``batchEmbedContents``, ``countTokens``, and the model list.

What this adapter has to get right, beyond renaming fields:

* Messages are ``contents`` of ``parts``; the assistant's role is ``model``; system
  messages go to ``systemInstruction``; tool results are ``functionResponse`` parts of
  a user turn, named by the function (Gemini matches results by name and order, not id).
* Function calls come without ids (their ``args`` are objects, whole, never streamed in
  pieces). They get stable ids from their position and name (``call_0_get_weather``),
  so the same response always yields the same ids, stream or not.
* Thought parts (``"thought": true``) are reasoning. ``thoughtSignature`` rides on a
  text or function-call part; it is kept as a reasoning block's signature and sent back
  on the matching part of the assistant turn, which Gemini 3 requires for tool use.
* Reasoning effort becomes ``thinkingBudget`` tokens on Gemini 2.x and ``thinkingLevel``
  on Gemini 3 and later (the nearest level the model takes; they cannot stop thinking).
* ``usageMetadata.candidatesTokenCount`` excludes thinking; the normalised completion
  count adds ``thoughtsTokenCount`` so that prompt + completion = total, as elsewhere.
* The finish reason of a turn that called functions is ``STOP``: normalised to tool calls.
* Errors: a bad key is ``400`` with ``ErrorInfo.reason`` ``API_KEY_INVALID``; ``429``
  carries its retry delay in the body (``RetryInfo.retryDelay``, e.g. ``"34s"``);
  streams may end with an ``{"error": {...}}`` event after a 200.
* The key travels in the ``x-goog-api-key`` header, never in the URL (URLs get logged).
* ``responseSchema`` and ``parameters`` take an OpenAPI subset of JSON Schema: schemas
  are translated by ``gemini_schemas`` (``$ref`` inlined on a budget, ``["string",
  "null"]`` to ``nullable``, unknown keywords such as ``additionalProperties`` dropped).
  A recursive schema, which no inlining says exactly, goes as is to
  ``responseJsonSchema`` / ``parametersJsonSchema``, which take JSON Schema with ``$ref``.

The dialect (``GeminiDialect``) is pure; ``GeminiProvider`` adds the endpoints beyond
chat on ``HttpProvider``'s transport, and the model list is parsed in ``gemini_models``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from ratatoskr.v1 import chat_pb2, inference_pb2, media_pb2, models_pb2, realtime_pb2
from ratd import errors
from ratd.config import ProviderConfig
from ratd.providers import gemini_interactions as gi
from ratd.providers import gemini_media
from ratd.providers import gemini_models as gm
from ratd.providers.base import ChatLike
from ratd.providers.gemini_schemas import MAX_SCHEMA_GROWTH_BYTES, SchemaBudget, wire_schema
from ratd.providers.http import error_for_status, loads_or_protocol_error, parse_body
from ratd.providers.http_provider import HttpProvider, UpstreamCall
from ratd.providers.messages import (
    InlineImage,
    UsageNames,
    arguments_object,
    counted_usage,
    image_source,
    retyped,
    tool_result_value,
    unwrap_json_schema,
)
from ratd.providers.realtime import RealtimeUpstream, open_session
from ratd.providers.realtime_gemini import GeminiLive
from ratd.providers.reasoning_blocks import GEMINI_FORMAT, verifiable_by
from ratd.secrets import Secret

API_PREFIX = gm.API_PREFIX
BATCH_EMBED_LIMIT = 100  # requests per batchEmbedContents call
_SYNTHETIC_ID = re.compile(r"^call_\d+_")

# Reasoning effort -> thinkingBudget (tokens) for Gemini 2.x; every value is valid for
# 2.5 Flash and Pro.
EFFORT_BUDGETS = {
    chat_pb2.REASONING_EFFORT_NONE: 0,
    chat_pb2.REASONING_EFFORT_MINIMAL: 512,
    chat_pb2.REASONING_EFFORT_LOW: 1024,
    chat_pb2.REASONING_EFFORT_MEDIUM: 8192,
    chat_pb2.REASONING_EFFORT_HIGH: 16384,
    chat_pb2.REASONING_EFFORT_XHIGH: 24576,
}

# Gemini 3 and later take a thinking level instead (a budget is accepted, but only for
# compatibility). None of them can turn thinking off, so "none" asks for the least.
THINKING_LEVELS = ("minimal", "low", "medium", "high")
EFFORT_LEVELS = {
    chat_pb2.REASONING_EFFORT_NONE: "minimal",
    chat_pb2.REASONING_EFFORT_MINIMAL: "minimal",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
    chat_pb2.REASONING_EFFORT_XHIGH: "high",
}
_GEMINI_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?-(\w+)")

_FINISH = {
    "STOP": chat_pb2.FINISH_REASON_STOP,
    "MAX_TOKENS": chat_pb2.FINISH_REASON_LENGTH,
    "SAFETY": chat_pb2.FINISH_REASON_CONTENT_FILTER,
    "RECITATION": chat_pb2.FINISH_REASON_CONTENT_FILTER,
    "BLOCKLIST": chat_pb2.FINISH_REASON_CONTENT_FILTER,
    "PROHIBITED_CONTENT": chat_pb2.FINISH_REASON_CONTENT_FILTER,
    "SPII": chat_pb2.FINISH_REASON_CONTENT_FILTER,
    "IMAGE_SAFETY": chat_pb2.FINISH_REASON_CONTENT_FILTER,
}
_CONTEXT_RE = re.compile(r"exceeds the maximum number of tokens allowed \((\d+)\)")
_DELAY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def synthetic_call_id(index: int, name: str) -> str:
    """The id of the ``index``-th function call of a response (Gemini sends none)."""
    return f"call_{index}_{name}"


def model_path(model: str) -> str:
    """``models/<name>`` (tuned models and full resource names pass as they are)."""
    if model.startswith(("models/", "tunedModels/")):
        return quote(model, safe="/")
    return f"models/{quote(model, safe='')}"


def method_path(model: str, method: str) -> str:
    """The path of one of ``model``'s methods (``generateContent``, ``countTokens``...)."""
    return f"{API_PREFIX}/{model_path(model)}:{method}"


def finish_reason(value: str | None, *, called_tools: bool) -> chat_pb2.FinishReason:
    if called_tools and value in (None, "STOP"):
        return chat_pb2.FINISH_REASON_TOOL_CALLS
    return _FINISH.get(value or "", chat_pb2.FINISH_REASON_UNSPECIFIED)


# generateContent's usageMetadata.
USAGE_NAMES = UsageNames(
    prompt="promptTokenCount",
    tool_prompt="toolUsePromptTokenCount",
    output="candidatesTokenCount",
    thoughts="thoughtsTokenCount",
    cached="cachedContentTokenCount",
    total="totalTokenCount",
)


def usage_from_wire(usage: Mapping[str, Any]) -> chat_pb2.Usage:
    return counted_usage(usage, USAGE_NAMES)


def parse_delay(value: Any) -> float | None:
    """A google.protobuf.Duration in JSON ("34s", "34.4s")."""
    match = _DELAY_RE.match(str(value or ""))
    return float(match.group(1)) if match else None


# -- request ------------------------------------------------------------------------------------


def _image_part(image: chat_pb2.ImagePart, field: str) -> dict[str, Any]:
    source = image_source(image, field)
    if isinstance(source, InlineImage):
        return {"inlineData": {"mimeType": source.mime_type, "data": source.base64_data}}
    return {"fileData": {"mimeType": source.mime_type or "image/jpeg", "fileUri": source.url}}


def _text_and_images(
    message: chat_pb2.Message, field: str, *, images: bool
) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"text": message.content})
    for j, part in enumerate(message.parts):
        kind = part.WhichOneof("part")
        if kind == "text":
            if part.text:
                parts.append({"text": part.text})
        elif images and kind != "image":
            parts.append(gemini_media.media_part(part))  # documents, audio, video
        elif images:
            parts.append(_image_part(part.image, f"{field}.parts[{j}].image"))
        else:
            raise errors.InvalidInput(
                f"{field}.parts[{j}]: Gemini takes no images in system instructions",
                field=f"{field}.parts[{j}]",
            )
    return parts


def _model_parts(message: chat_pb2.Message, field: str) -> list[dict[str, Any]]:
    """An assistant turn, with its thought signatures back on the parts they came on:
    the first signature on the first function call (Gemini 3 requires it there), the
    next on the next call, or on the first text part when there were no calls."""
    blocks = verifiable_by(message.reasoning_blocks, GEMINI_FORMAT)
    signatures = [b.signature for b in blocks if b.signature]
    parts = _text_and_images(message, field, images=True)
    calls: list[dict[str, Any]] = []
    for call in message.tool_calls:
        wire: dict[str, Any] = {"name": call.name, "args": arguments_object(call.arguments)}
        if not _SYNTHETIC_ID.match(call.id):
            wire["id"] = call.id
        calls.append({"functionCall": wire})
    if calls:
        for part, signature in zip(calls, signatures, strict=False):
            part["thoughtSignature"] = signature
    elif signatures and parts and "text" in parts[0]:
        parts[0]["thoughtSignature"] = signatures[0]
    return parts + calls


def _function_response(
    message: chat_pb2.Message, field: str, names: Mapping[str, str]
) -> list[dict[str, Any]]:
    text = "".join(
        [message.content, *(p.text for p in message.parts if p.WhichOneof("part") == "text")]
    )
    value = tool_result_value(text)
    response: dict[str, Any] = {
        "name": names.get(message.tool_call_id, ""),
        "response": value if isinstance(value, dict) else {"result": value},
    }
    if not _SYNTHETIC_ID.match(message.tool_call_id):
        response["id"] = message.tool_call_id
    parts: list[dict[str, Any]] = [{"functionResponse": response}]
    for j, part in enumerate(message.parts):
        if part.WhichOneof("part") == "image":
            parts.append(_image_part(part.image, f"{field}.parts[{j}].image"))
    return parts


def contents_to_wire(
    messages: Sequence[chat_pb2.Message],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, latest call wins
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if message.role == chat_pb2.ROLE_SYSTEM:
            system.extend(_text_and_images(message, field, images=False))
            continue
        if message.role == chat_pb2.ROLE_ASSISTANT:
            role, parts = "model", _model_parts(message, field)
            names.update((call.id, call.name) for call in message.tool_calls)
        elif message.role == chat_pb2.ROLE_TOOL:
            role, parts = "user", _function_response(message, field, names)
        else:
            role, parts = "user", _text_and_images(message, field, images=True)
        if not parts:
            continue  # Gemini refuses contents without parts
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _function_declaration(
    tool: chat_pb2.ToolDefinition, field: str, budget: SchemaBudget
) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": tool.name}
    if tool.description:
        wire["description"] = tool.description
    if tool.parameters_json.strip():
        schema, as_is = wire_schema(
            orjson.loads(tool.parameters_json), f"{field}.parameters_json", budget
        )
        if as_is:
            wire["parametersJsonSchema"] = schema
        # Gemini refuses an OBJECT without properties: a function without parameters
        # simply has no ``parameters``.
        elif schema.get("properties") or schema.get("type") not in (None, "object"):
            wire["parameters"] = schema
    return wire


def _tool_config(choice: chat_pb2.ToolChoice) -> dict[str, Any]:
    which = choice.WhichOneof("choice")
    config: dict[str, Any]
    if which == "none":
        config = {"mode": "NONE"}
    elif which == "required":
        config = {"mode": "ANY"}
    elif which == "function":
        config = {"mode": "ANY", "allowedFunctionNames": [choice.function]}
    else:
        config = {"mode": "AUTO"}
    return {"functionCallingConfig": config}


def thinking_levels(model: str) -> tuple[str, ...]:
    """The thinking levels ``model`` takes; none for models that take only a budget."""
    match = _GEMINI_VERSION.search(model)
    if match is None or int(match[1]) < 3:
        return ()
    if match[3] != "pro":
        return THINKING_LEVELS
    # The Pro models know fewer: 3 Pro only low and high, later ones low to high.
    return ("low", "high") if (match[1], match[2]) == ("3", None) else THINKING_LEVELS[1:]


def _nearest_level(wanted: str, levels: tuple[str, ...]) -> str:
    """The first level at or above ``wanted`` that the model takes, else its highest."""
    rank = THINKING_LEVELS.index(wanted)
    return next((lv for lv in levels if THINKING_LEVELS.index(lv) >= rank), levels[-1])


def _thinking_config(reasoning: chat_pb2.ReasoningConfig, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    levels = thinking_levels(model)
    if reasoning.HasField("max_tokens"):
        config["thinkingBudget"] = reasoning.max_tokens
    elif reasoning.HasField("effort") and levels:
        wanted = EFFORT_LEVELS.get(reasoning.effort, "high")
        config["thinkingLevel"] = _nearest_level(wanted, levels)
    elif reasoning.HasField("effort"):
        config["thinkingBudget"] = EFFORT_BUDGETS.get(reasoning.effort, -1)
    thinking_off = config.get("thinkingBudget") == 0 or (
        reasoning.HasField("effort") and reasoning.effort == chat_pb2.REASONING_EFFORT_NONE
    )
    config["includeThoughts"] = not reasoning.exclude_from_output and not thinking_off
    return config


@dataclass(slots=True)
class RequestPlan:
    body: dict[str, Any]
    show_reasoning: bool = True


def _schema_budget(request: ChatLike) -> SchemaBudget:
    """The budget of a request's schemas: what they are as sent, plus the growth allowed."""
    sent = sum(len(tool.parameters_json) for tool in request.tools)
    if request.options.response_format.WhichOneof("format") == "json_schema":
        sent += len(request.options.response_format.json_schema)
    return SchemaBudget(size=MAX_SCHEMA_GROWTH_BYTES + sent)


_GENERATION_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("max_tokens", "maxOutputTokens"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


def build_request(request: ChatLike, model: str) -> RequestPlan:
    options = request.options
    system, contents = contents_to_wire(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    budget = _schema_budget(request)
    if request.tools:
        declarations = [
            _function_declaration(t, f"tools[{i}]", budget) for i, t in enumerate(request.tools)
        ]
        body["tools"] = [{"functionDeclarations": declarations}]
        if options.HasField("tool_choice"):
            body["toolConfig"] = _tool_config(options.tool_choice)
    generation = _generation_config(options, budget)
    show_reasoning = True
    if options.HasField("reasoning"):
        generation["thinkingConfig"] = _thinking_config(options.reasoning, model)
        show_reasoning = generation["thinkingConfig"]["includeThoughts"]
    if generation:
        body["generationConfig"] = generation
    if options.HasField("raw_provider_options"):
        body.update(orjson.loads(options.raw_provider_options))
    return RequestPlan(body, show_reasoning)


def _generation_config(options: chat_pb2.ChatOptions, budget: SchemaBudget) -> dict[str, Any]:
    """Sampling, limits and structured output, as ``generationConfig`` names them."""
    generation: dict[str, Any] = {}
    for name, wire in _GENERATION_FIELDS:
        if options.HasField(name):
            value = getattr(options, name)
            generation[wire] = round(value, 6) if isinstance(value, float) else value
    if options.stop:
        generation["stopSequences"] = list(options.stop)
    if options.HasField("response_format"):
        fmt = options.response_format.WhichOneof("format")
        if fmt == "json_object":
            generation["responseMimeType"] = "application/json"
        elif fmt == "json_schema":
            _, schema = unwrap_json_schema(options.response_format.json_schema)
            generation["responseMimeType"] = "application/json"
            field = "options.response_format.json_schema"
            translated, as_is = wire_schema(schema, field, budget)
            generation["responseJsonSchema" if as_is else "responseSchema"] = translated
    return generation


# -- response -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ResponseAssembler:
    """Turns GenerateContentResponse objects (the one of ``generateContent`` or each
    event of a stream) into ChatStreamResponse events and accumulates the whole answer,
    so that Chat and ChatStream read a response the same way (same ids, same blocks).

    Gemini's stream has no end event (no ``[DONE]``): it ends at EOF, and is whole once
    a candidate said why it finished."""

    provider: str
    show_reasoning: bool = True
    # The model asked for, named in errors and answers until the upstream names its own.
    requested: str = ""
    model: str = ""
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    blocks: list[chat_pb2.ReasoningBlock] = field(default_factory=list)
    tool_calls: list[chat_pb2.ToolCall] = field(default_factory=list)
    stop_reason: str | None = None
    usage: chat_pb2.Usage | None = None
    _pending_thought: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.stop_reason is not None

    @property
    def ended(self) -> bool:
        return False  # read to EOF

    def feed(
        self, payload: Mapping[str, Any], model: str = ""
    ) -> list[chat_pb2.ChatStreamResponse]:
        """The events of one GenerateContentResponse (``model``, when given, is named
        instead of ``requested`` if the prompt was blocked)."""
        out: list[chat_pb2.ChatStreamResponse] = []
        self.model = payload.get("modelVersion") or self.model
        if isinstance(payload.get("usageMetadata"), dict):
            self.usage = usage_from_wire(payload["usageMetadata"])
        candidates = payload.get("candidates") or []
        if not candidates:
            feedback = payload.get("promptFeedback") or {}
            if feedback.get("blockReason"):
                raise errors.ContentFiltered(
                    f"{self.provider}: the prompt was blocked ({feedback['blockReason']})",
                    provider=self.provider,
                    model=model or self.requested,
                    metadata={"upstream_code": str(feedback["blockReason"])},
                )
            return out
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or ():
            out.extend(self._part(part))
        if candidate.get("finishReason"):
            self.stop_reason = str(candidate["finishReason"])
        return out

    def finish(self) -> list[chat_pb2.ChatStreamResponse]:
        """Thoughts no signature closed, the usage, and ``done``."""
        out = []
        if (unsigned := self.unsigned_block()) is not None:
            out.append(chat_pb2.ChatStreamResponse(reasoning_block=unsigned))
        if self.usage is not None:
            out.append(chat_pb2.ChatStreamResponse(usage=self.usage))
        done = chat_pb2.ChatStreamResponse(
            done=True,
            finish_reason=self.finish_reason,
            model=self.model or self.requested,
            provider=self.provider,
        )
        return [*out, done]

    def _signature(self, signature: str) -> list[chat_pb2.ChatStreamResponse]:
        block = chat_pb2.ReasoningBlock(
            text="".join(self._pending_thought), signature=signature, format=GEMINI_FORMAT
        )
        self.blocks.append(block)
        self._pending_thought.clear()
        out = []
        if self.show_reasoning:
            out.append(chat_pb2.ChatStreamResponse(reasoning_signature=signature))
        out.append(chat_pb2.ChatStreamResponse(reasoning_block=block))
        return out

    def unsigned_block(self) -> chat_pb2.ReasoningBlock | None:
        """Thoughts after the last signature (Gemini 2.x signs none), as one block."""
        if not self._pending_thought:
            return None
        return chat_pb2.ReasoningBlock(text="".join(self._pending_thought), format=GEMINI_FORMAT)

    def _part(self, part: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        out: list[chat_pb2.ChatStreamResponse] = []
        signature = part.get("thoughtSignature")
        if part.get("thought"):
            text = str(part.get("text") or "")
            if text:
                self.reasoning.append(text)
                self._pending_thought.append(text)
                if self.show_reasoning:
                    out.append(chat_pb2.ChatStreamResponse(reasoning=text))
            if signature:
                out.extend(self._signature(str(signature)))
            return out
        if signature:
            out.extend(self._signature(str(signature)))
        if part.get("text"):
            self.content.append(str(part["text"]))
            out.append(chat_pb2.ChatStreamResponse(content=str(part["text"])))
        call = part.get("functionCall")
        if isinstance(call, dict):
            index = len(self.tool_calls)
            name = str(call.get("name") or "")
            call_id = str(call.get("id") or synthetic_call_id(index, name))
            arguments = orjson.dumps(call.get("args") or {}).decode()
            self.tool_calls.append(chat_pb2.ToolCall(id=call_id, name=name, arguments=arguments))
            out.append(
                chat_pb2.ChatStreamResponse(
                    tool_call_start=chat_pb2.ToolCallStart(index=index, id=call_id, name=name)
                )
            )
            out.append(
                chat_pb2.ChatStreamResponse(
                    tool_call_delta=chat_pb2.ToolCallDelta(index=index, arguments=arguments)
                )
            )
            out.append(chat_pb2.ChatStreamResponse(tool_call_end=chat_pb2.ToolCallEnd(index=index)))
        return out

    @property
    def finish_reason(self) -> chat_pb2.FinishReason:
        return finish_reason(self.stop_reason, called_tools=bool(self.tool_calls))

    def response(self, model: str = "") -> chat_pb2.ChatResponse:
        response = chat_pb2.ChatResponse(
            content="".join(self.content),
            tool_calls=self.tool_calls,
            model=self.model or model or self.requested,
            finish_reason=self.finish_reason,
            provider=self.provider,
        )
        response.reasoning_blocks.extend(self.blocks)
        if (unsigned := self.unsigned_block()) is not None:
            response.reasoning_blocks.append(unsigned)
        if self.reasoning and self.show_reasoning:
            response.reasoning = "".join(self.reasoning)
        if self.usage is not None:
            response.usage.CopyFrom(self.usage)
        return response


# -- the dialect --------------------------------------------------------------------------------


class GeminiDialect:
    """Chat through ``generateContent`` as pure hooks (``ChatDialect``), and how a Google
    API says that something went wrong."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def chat_call(
        self, request: ChatLike, model: str, *, stream: bool
    ) -> UpstreamCall[chat_pb2.ChatStreamResponse]:
        plan = build_request(request, model)
        if stream:
            path = method_path(model, "streamGenerateContent") + "?alt=sse"
        else:
            path = method_path(model, "generateContent")
        return UpstreamCall(path, plan.body, model, plan=plan.show_reasoning)

    def chat_assembler(self, call: UpstreamCall[chat_pb2.ChatStreamResponse]) -> ResponseAssembler:
        return ResponseAssembler(self.provider, bool(call.plan), requested=call.model)

    def parse_chat(
        self, data: dict[str, Any], call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> chat_pb2.ChatResponse:
        assembler = self.chat_assembler(call)
        assembler.feed(data)  # a blocked prompt (no candidates) raises ContentFiltered
        if not data.get("candidates"):
            raise errors.UpstreamProtocolError(
                f"{self.provider}: the response has no candidates",
                provider=self.provider,
                model=call.model,
            )
        return assembler.response()

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        """An ``{"error": ...}`` object, alone or first in a list (streaming endpoints
        answer with a JSON list instead of events when they fail at once)."""
        first = data[0] if isinstance(data, list) and data else data
        if isinstance(first, dict) and first.get("error"):
            return self.error_from_body(200, first, model)
        return None

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        """The error a Google API error body means (``{"error": {code, message, status,
        details}}``; streaming endpoints may wrap it in a list)."""
        if isinstance(body, list) and body:
            body = body[0]
        obj = body.get("error") if isinstance(body, dict) else None
        message, grpc_status = "", ""
        reasons: list[str] = []
        delay: float | None = None
        if isinstance(obj, dict):
            message = str(obj.get("message") or "")
            grpc_status = str(obj.get("status") or "")
            if isinstance(obj.get("code"), int) and status == 200:
                status = obj["code"]  # an error event inside a 200 stream
            reasons, delay = _error_details(obj.get("details"))
        elif isinstance(body, str):
            message = body[:300]
        if status == 200:
            status = 502  # an error event without a code: the upstream failed
        code = reasons[0] if reasons else grpc_status
        error = error_for_status(
            status,
            message,
            provider=self.provider,
            model=model,
            headers=headers,
            upstream_code=code,
        )
        if delay is not None and error.retry_after is None:
            error.retry_after = delay
        if "API_KEY_INVALID" in reasons or (
            status == 400 and "api key not valid" in message.lower()
        ):
            return retyped(errors.AuthenticationFailed, error)
        if status == 400:
            match = _CONTEXT_RE.search(message)
            if match:
                return retyped(errors.ContextLengthExceeded, error, limit=int(match.group(1)))
        return error


def _error_details(details: Any) -> tuple[list[str], float | None]:
    """(the ErrorInfo reasons, the RetryInfo delay) of an error's ``details``."""
    reasons: list[str] = []
    delay: float | None = None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type") or "")
        if kind.endswith("google.rpc.ErrorInfo") and detail.get("reason"):
            reasons.append(str(detail["reason"]))
        elif kind.endswith("google.rpc.RetryInfo"):
            delay = parse_delay(detail.get("retryDelay"))
    return reasons, delay


# -- embeddings ---------------------------------------------------------------------------------


def embed_calls(
    texts: Sequence[str], model: str, dimensions: int | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) of the calls that embed ``texts``: ``embedContent`` for one text,
    else ``batchEmbedContents`` in batches of at most ``BATCH_EMBED_LIMIT``; each request
    with ``outputDimensionality`` when ``dimensions`` is given."""
    resource = model_path(model)

    def request(text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": resource, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            body["outputDimensionality"] = dimensions
        return body

    if len(texts) == 1:
        return [(method_path(model, "embedContent"), request(texts[0]))]
    path = method_path(model, "batchEmbedContents")
    return [
        (path, {"requests": [request(t) for t in texts[i : i + BATCH_EMBED_LIMIT]]})
        for i in range(0, len(texts), BATCH_EMBED_LIMIT)
    ]


def embeddings_from(
    replies: Sequence[Mapping[str, Any]], count: int, provider: str, model: str
) -> list[inference_pb2.Embedding]:
    """The embeddings the replies of ``embed_calls`` hold, exactly ``count`` of them."""
    if count == 1:  # embedContent
        vectors = [replies[0].get("embedding")]
    else:
        vectors = [item for reply in replies for item in reply.get("embeddings") or ()]

    def fault(problem: str) -> errors.UpstreamProtocolError:
        return errors.UpstreamProtocolError(
            f"{provider}: {problem}", provider=provider, model=model
        )

    if len(vectors) != count:
        raise fault(f"asked for {count} embeddings, got {len(vectors)}")
    result = []
    for vector in vectors:
        values = [float(v) for v in (vector or {}).get("values") or ()]
        if not values:
            raise fault("an embedding without values")
        result.append(inference_pb2.Embedding(values=values, model=model, dimensions=len(values)))
    return result


# -- the provider -------------------------------------------------------------------------------


class GeminiProvider(HttpProvider):
    """Gemini over HTTP: chat through the dialect, plus embeddings, token counting and
    the model list."""

    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        super().__init__(name, config, api_key)
        self.dialect = GeminiDialect(name)
        # The Interactions API (gemini_interactions), for the models the registry or the
        # config sends there; "interactions_background" runs them as background
        # interactions, polled until done.
        interactions = gi.InteractionsDialect(name, self.dialect)
        self.dialects = {
            gi.INTERACTIONS: interactions,
            gi.BACKGROUND: gi.InteractionsDialect(name, self.dialect, background=True),
        }
        self.interactions = gi.Interactions(self, interactions)

    async def close(self) -> None:
        await self.interactions.drain()  # cancels of abandoned background interactions
        await super().close()

    async def realtime(
        self, config: realtime_pb2.RealtimeSessionConfig, model: str
    ) -> RealtimeUpstream:
        """A session with the Live API (``BidiGenerateContent`` over a WebSocket)."""
        return await open_session(self.http, GeminiLive(self.name, model), config)

    def auth_headers(self, api_key: Secret) -> dict[str, str]:
        # A header, never the ``key=`` query parameter: URLs get logged.
        return {"x-goog-api-key": api_key.reveal()}

    def unsupported_parameters(self, model: str) -> frozenset[str]:
        if not isinstance(self.chat_dialect(model), gi.InteractionsDialect):
            # Gemini has no switch for parallel function calling.
            return frozenset({"parallel_tool_calls"})
        return gi.AGENT_UNSUPPORTED if gi.is_agent(model) else gi.UNSUPPORTED

    def _in_background(self, model: str) -> bool:
        dialect = self.chat_dialect(model)
        return isinstance(dialect, gi.InteractionsDialect) and (
            dialect.background or gi.is_agent(model)
        )

    def media_parts(self, model: str) -> frozenset[str]:
        """Both APIs read documents, audio and video (inline or by file URI)."""
        return frozenset({"document", "audio", "video"})

    async def generate_image(
        self, request: media_pb2.GenerateImageRequest, model: str
    ) -> media_pb2.GenerateImageResponse:
        body = gemini_media.image_body(request, self.name, model)
        data = await self.call_json(
            "POST", method_path(model, "generateContent"), body, model=model
        )
        return gemini_media.images_from_wire(data, self.name, model)

    async def synthesize(
        self, request: media_pb2.SynthesizeRequest, model: str
    ) -> AsyncIterator[media_pb2.SynthesizeResponse]:
        """The TTS model's streamed answer, each event's audio passed on as it comes."""
        body = gemini_media.speech_body(request, self.name, model)
        path = method_path(model, "streamGenerateContent") + "?alt=sse"
        finished = started = False
        total: chat_pb2.Usage | None = None
        async with self.http.request("POST", path, body, model=model) as response:
            if response.status != 200:
                error = parse_body(await self.http.read(response))
                raise self.dialect.error_from_body(response.status, error, model, response.headers)
            async for payload in self.http.payloads(response, "sse"):
                data = loads_or_protocol_error(payload, self.name, model)
                failure = self.dialect.error_in_body(data, model)
                if failure is not None:
                    raise failure
                if not isinstance(data, dict):
                    raise self.protocol_error("expected a JSON object in the stream", model)
                for pcm, mime in gemini_media.audio_chunks(data):
                    if request.format != "wav":
                        yield media_pb2.SynthesizeResponse(audio=pcm, mime_type=mime)
                        continue
                    header = b"" if started else gemini_media.wav_header()  # ahead of the first
                    started = True
                    yield media_pb2.SynthesizeResponse(audio=header + pcm, mime_type="audio/wav")
                total = gemini_media.usage(data) or total
                candidates = data.get("candidates") or [{}]
                finished = finished or bool(candidates[0].get("finishReason"))
        if not finished:
            raise self.protocol_error("the speech stream ended before its finishReason", model)
        yield media_pb2.SynthesizeResponse(done=True, model=model, provider=self.name, usage=total)

    async def chat(self, request: ChatLike, model: str) -> chat_pb2.ChatResponse:
        if self._in_background(model):
            return (await self.interactions.run(request, model)).response()
        return await super().chat(request, model)

    def chat_stream(
        self, request: ChatLike, model: str
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        if self._in_background(model):
            return self._background_stream(request, model)
        return super().chat_stream(request, model)

    async def _background_stream(
        self, request: ChatLike, model: str
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        """A background interaction asked for as a stream: its answer, once it is done."""
        for event in (await self.interactions.run(request, model)).events():
            yield event

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        """The dialect's classifier, for callers that hold the provider."""
        return self.dialect.error_from_body(status, body, model, headers)

    async def embed(
        self, texts: Sequence[str], model: str, dimensions: int | None = None
    ) -> list[inference_pb2.Embedding]:
        replies = await asyncio.gather(
            *(
                self.call_json("POST", path, body, model=model)
                for path, body in embed_calls(texts, model, dimensions)
            )
        )
        return embeddings_from(replies, len(texts), self.name, model)

    async def count_tokens(self, text: str, model: str) -> inference_pb2.CountTokensResponse:
        if not text:
            return inference_pb2.CountTokensResponse(count=0, tokenizer=model)
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        data = await self.call_json("POST", method_path(model, "countTokens"), body, model=model)
        if not isinstance(data.get("totalTokens"), int):
            raise self.protocol_error("countTokens answered without totalTokens", model)
        return inference_pb2.CountTokensResponse(count=data["totalTokens"], tokenizer=model)

    async def _raw_models(self) -> list[Mapping[str, Any]]:
        """Every model object of ``GET /v1beta/models``, following its pages."""
        found: list[Mapping[str, Any]] = []
        token: str | None = None
        for _ in range(gm.MAX_PAGES):
            items, token = gm.page_models(await self.call_json("GET", gm.page_path(token)))
            found.extend(items)
            if not token:
                break
        return found

    async def list_models(self) -> list[models_pb2.ModelInfo]:
        infos = [gm.model_info(item, self.name) for item in await self._raw_models()]
        return [info for info in infos if info.id]

    async def describe_models(self) -> list[models_pb2.ModelMetadata]:
        """The model list with each model's sampling defaults and limits as parameters."""
        described = [gm.model_metadata(item, self.name) for item in await self._raw_models()]
        return [m for m in described if m.info.id]
