"""The OpenAI Chat Completions API, as OpenAI, OpenRouter and other servers speak it.

One dialect, with settings from the provider's spec: ``openai`` (``max_completion_tokens``,
``reasoning_effort``, embeddings), ``openrouter`` (``max_tokens``, ``top_k``, the
``reasoning`` object and ``reasoning_details``, comment lines in streams, errors inside
200 streams, cost in usage) and ``openai_compatible`` for any other server (vLLM,
llama.cpp, LM Studio, TGI: ``max_tokens``, ``top_k``, embeddings).
"""

from __future__ import annotations

import base64
import datetime
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ratatoskr.v1 import chat_pb2, inference_pb2, media_pb2, models_pb2, realtime_pb2
from ratd import errors
from ratd.config import ProviderConfig
from ratd.mime import MIME_FOR_FORMAT
from ratd.providers import openai_media as media
from ratd.providers.base import ChatLike
from ratd.providers.http import error_for_status, loads_or_protocol_error, parse_body
from ratd.providers.http_provider import HttpProvider, UpstreamCall
from ratd.providers.messages import EFFORT_NAMES, ROLE_NAMES, function_tool, retyped
from ratd.providers.openai_responses import UNSUPPORTED as RESPONSES_UNSUPPORTED
from ratd.providers.openai_responses import Responses
from ratd.providers.openrouter_models import openrouter_metadata
from ratd.providers.realtime import RealtimeUpstream, open_session
from ratd.providers.realtime_openai import OpenAIRealtime
from ratd.providers.reasoning_blocks import ReasoningDetails, details_from_blocks
from ratd.secrets import Secret

log = logging.getLogger(__name__)

_FINISH = {
    "stop": chat_pb2.FINISH_REASON_STOP,
    "end_turn": chat_pb2.FINISH_REASON_STOP,
    "length": chat_pb2.FINISH_REASON_LENGTH,
    "max_tokens": chat_pb2.FINISH_REASON_LENGTH,
    "tool_calls": chat_pb2.FINISH_REASON_TOOL_CALLS,
    "function_call": chat_pb2.FINISH_REASON_TOOL_CALLS,
    "content_filter": chat_pb2.FINISH_REASON_CONTENT_FILTER,
}
_CONTEXT_LIMIT_RE = re.compile(r"maximum context length is (\d+)")
_SAMPLING = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "top_k")


# Request fields as OpenAI names them in errors -> ChatOptions names.
_WIRE_PARAMETERS = {
    "max_completion_tokens": "max_tokens",
    "max_tokens": "max_tokens",
    "reasoning_effort": "reasoning",
    "reasoning": "reasoning",
    "stop": "stop",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "seed": "seed",
    "tool_choice": "tool_choice",
    "parallel_tool_calls": "parallel_tool_calls",
    "response_format": "response_format",
    # The Responses API's names.
    "max_output_tokens": "max_tokens",
    "text": "response_format",
    "text.format": "response_format",
    "reasoning.effort": "reasoning",
    "reasoning.summary": "reasoning",
}
_UNRECOGNIZED_RE = re.compile(
    r"(?:Unrecognized request argument supplied|Unsupported parameter): '?(\w+)"
)


def refused_parameter(error: Any, code: str, message: str) -> str:
    """The option an upstream refused as unsupported ("" when the error is another)."""
    wire = ""
    if code in ("unsupported_parameter", "unsupported_value") and isinstance(error, dict):
        wire = str(error.get("param") or "")
    if not wire and (match := _UNRECOGNIZED_RE.search(message)):
        wire = match.group(1)
    return _WIRE_PARAMETERS.get(wire, "")


def finish_reason(value: str | None) -> chat_pb2.FinishReason:
    return _FINISH.get(value or "", chat_pb2.FINISH_REASON_UNSPECIFIED)


def _image_url(image: chat_pb2.ImagePart) -> dict[str, Any]:
    if image.WhichOneof("source") == "data":
        url = f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode()}"
    else:
        url = image.url
    body: dict[str, Any] = {"url": url}
    if image.HasField("detail"):
        body["detail"] = image.detail
    return {"type": "image_url", "image_url": body}


@dataclass(slots=True)  # not frozen: made on every call, and a frozen one costs 3x
class PartContext:
    """Who sends a message's document and audio parts (for their refusals), and whether
    the API takes a document by URL (OpenRouter's file_data does)."""

    provider: str = ""
    model: str = ""
    file_urls: bool = False


def _part(part: chat_pb2.ContentPart, context: PartContext) -> dict[str, Any]:
    kind = part.WhichOneof("part")
    if kind == "text":
        return {"type": "text", "text": part.text}
    if kind == "document":
        return media.document_part(
            part.document, context.provider, context.model, urls=context.file_urls
        )
    if kind == "audio":
        return media.audio_part(part.audio, context.provider, context.model)
    return _image_url(part.image)


def _content(
    message: chat_pb2.Message, context: PartContext | None = None
) -> str | list[dict[str, Any]]:
    if not message.parts:
        return message.content
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    for part in message.parts:
        parts.append(_part(part, context or PartContext()))
    return parts


def message_to_wire(
    message: chat_pb2.Message, context: PartContext | None = None
) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "role": ROLE_NAMES[message.role],
        "content": _content(message, context),
    }
    if message.HasField("name"):
        wire["name"] = message.name
    if message.role == chat_pb2.ROLE_TOOL:
        wire["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for call in message.tool_calls
        ]
        if not wire["content"]:
            wire["content"] = None
    return wire


def _tool_choice(choice: chat_pb2.ToolChoice) -> Any:
    which = choice.WhichOneof("choice")
    if which == "function":
        return {"type": "function", "function": {"name": choice.function}}
    return which or "auto"


def response_format_to_wire(fmt: chat_pb2.ResponseFormat) -> dict[str, Any] | None:
    which = fmt.WhichOneof("format")
    if which == "text":
        return {"type": "text"}
    if which == "json_object":
        return {"type": "json_object"}
    if which == "json_schema":
        schema = orjson.loads(fmt.json_schema)
        if "schema" in schema and isinstance(schema["schema"], dict):
            wrapper = {"name": schema.get("name", "response"), "schema": schema["schema"]}
            if "strict" in schema:
                wrapper["strict"] = schema["strict"]
        else:
            wrapper = {"name": "response", "schema": schema}
        return {"type": "json_schema", "json_schema": wrapper}
    return None


def usage_from_wire(usage: Mapping[str, Any], into: chat_pb2.Usage | None = None) -> chat_pb2.Usage:
    """``usage`` as a Usage: a new one, or filled into ``into`` (a response's own, which
    then needs no copy)."""
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    result = chat_pb2.Usage() if into is None else into
    result.prompt_tokens = prompt
    result.completion_tokens = completion
    result.total_tokens = int(usage.get("total_tokens") or prompt + completion)
    details = usage.get("completion_tokens_details") or {}
    if details.get("reasoning_tokens") is not None:
        result.reasoning_tokens = int(details["reasoning_tokens"])
    prompt_details = usage.get("prompt_tokens_details") or {}
    if prompt_details.get("cached_tokens") is not None:
        result.cached_prompt_tokens = int(prompt_details["cached_tokens"])
    if isinstance(usage.get("cost"), int | float):
        result.cost_usd = float(usage["cost"])
    return result


@dataclass(slots=True)
class _ToolCallState:
    index: int
    id: str = ""
    name: str = ""
    started: bool = False
    pending: list[str] = field(default_factory=list)


class StreamAssembler:
    """Turns chat.completion.chunk objects into ChatStreamResponse events, in order
    (an ``Assembler`` of the HTTP provider base).

    Tool calls are announced once their name is known (ToolCallStart), their argument
    text follows piece by piece exactly as it arrived (ToolCallDelta), and all open calls
    are closed (ToolCallEnd) when the choice finishes.
    """

    def __init__(self, provider: str, model: str) -> None:
        self.provider, self.requested = provider, model
        self.finish_reason: str | None = None
        self.usage: chat_pb2.Usage | None = None
        self.model = ""
        self.refused = False  # the model refused (OpenAI ``delta.refusal``)
        self.reasoning_details = ReasoningDetails()
        self._calls: dict[int, _ToolCallState] = {}  # by upstream index
        self._closed = False

    def feed(self, chunk: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        out: list[chat_pb2.ChatStreamResponse] = []
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = usage_from_wire(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            if reasoning:
                out.append(chat_pb2.ChatStreamResponse(reasoning=reasoning))
            self.reasoning_details.add(delta.get("reasoning_details"))
            if delta.get("content"):
                out.append(chat_pb2.ChatStreamResponse(content=delta["content"]))
            if delta.get("refusal"):  # the refusal is the answer, as in a whole response
                self.refused = True
                out.append(chat_pb2.ChatStreamResponse(content=delta["refusal"]))
            for call in delta.get("tool_calls") or ():
                out.extend(self._tool_call(call))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                out.extend(self._close_calls())
        return out

    def _tool_call(self, call: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        upstream_index = int(call.get("index", len(self._calls)))
        state = self._calls.get(upstream_index)
        if state is None:
            state = self._calls[upstream_index] = _ToolCallState(index=len(self._calls))
        function = call.get("function") or {}
        state.id = call.get("id") or state.id
        state.name = function.get("name") or state.name
        arguments = function.get("arguments") or ""
        if state.started:
            return [self._delta(state.index, arguments)] if arguments else []
        if arguments:
            state.pending.append(arguments)
        return self._start(state) if state.name else []

    def _start(self, state: _ToolCallState) -> list[chat_pb2.ChatStreamResponse]:
        state.started = True
        start = chat_pb2.ToolCallStart(index=state.index, id=state.id, name=state.name)
        out = [chat_pb2.ChatStreamResponse(tool_call_start=start)]
        out.extend(self._delta(state.index, piece) for piece in state.pending)
        state.pending.clear()
        return out

    @staticmethod
    def _delta(index: int, arguments: str) -> chat_pb2.ChatStreamResponse:
        return chat_pb2.ChatStreamResponse(
            tool_call_delta=chat_pb2.ToolCallDelta(index=index, arguments=arguments)
        )

    def _close_calls(self) -> list[chat_pb2.ChatStreamResponse]:
        if self._closed:
            return []
        self._closed = True
        out: list[chat_pb2.ChatStreamResponse] = []
        for state in sorted(self._calls.values(), key=lambda s: s.index):
            if not state.started:
                out.extend(self._start(state))
            end = chat_pb2.ToolCallEnd(index=state.index)
            out.append(chat_pb2.ChatStreamResponse(tool_call_end=end))
        return out

    @property
    def complete(self) -> bool:
        return self.finish_reason is not None

    # The stream goes on after the finish reason (the usage chunk) until ``[DONE]``.
    ended = False

    def finish(self) -> list[chat_pb2.ChatStreamResponse]:
        out = self._close_calls()
        # Blocks go out whole once the stream has told all of them (a signature comes last).
        for block in self.reasoning_details.blocks():
            out.append(chat_pb2.ChatStreamResponse(reasoning_block=block))
        if self.usage is not None:
            out.append(chat_pb2.ChatStreamResponse(usage=self.usage))
        refused = chat_pb2.FINISH_REASON_CONTENT_FILTER
        done = chat_pb2.ChatStreamResponse(
            done=True,
            finish_reason=refused if self.refused else finish_reason(self.finish_reason),
            model=self.model or self.requested,
            provider=self.provider,
        )
        out.append(done)
        return out


def _add_tools(request: ChatLike, body: dict[str, Any]) -> None:
    options = request.options
    body["tools"] = [function_tool(t) for t in request.tools]
    if options.HasField("parallel_tool_calls"):
        body["parallel_tool_calls"] = options.parallel_tool_calls
    # Only with tools: OpenAI refuses tool_choice without them (400).
    if options.HasField("tool_choice"):
        body["tool_choice"] = _tool_choice(options.tool_choice)


class ChatCompletions:
    """The Chat Completions dialect: pure functions from ratatoskr.v1 to OpenAI's JSON and
    back. ``max_tokens_field`` is what the server reads (OpenAI: max_completion_tokens;
    vLLM, llama.cpp and most others: max_tokens)."""

    path = "/chat/completions"
    # Whether a document part may go by URL in file_data (OpenRouter: yes; OpenAI: bytes).
    file_urls = False

    def __init__(self, provider: str, max_tokens_field: str = "max_tokens") -> None:
        self.provider = provider
        self.max_tokens_field = max_tokens_field

    # -- request ------------------------------------------------------------------------

    def reasoning_to_wire(self, reasoning: chat_pb2.ReasoningConfig, body: dict[str, Any]) -> None:
        if reasoning.HasField("effort"):
            body["reasoning_effort"] = EFFORT_NAMES.get(reasoning.effort, "medium")

    def build_body(self, request: ChatLike, model: str, stream: bool) -> dict[str, Any]:
        options = request.options
        context = PartContext(self.provider, model, self.file_urls)
        body: dict[str, Any] = {
            "model": model,
            "messages": [message_to_wire(m, context) for m in request.messages],
        }
        if request.tools:
            _add_tools(request, body)
        # Most requests set the model alone: then no option needs looking at.
        tuned = len(options.ListFields()) > 1
        if tuned:
            self._options_to_wire(options, body)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if tuned and options.HasField("raw_provider_options"):
            body.update(orjson.loads(options.raw_provider_options))
        return body

    def _options_to_wire(self, options: chat_pb2.ChatOptions, body: dict[str, Any]) -> None:
        for name in _SAMPLING:
            if options.HasField(name):
                value = getattr(options, name)
                body[name] = round(value, 6) if isinstance(value, float) else value
        if options.HasField("max_tokens"):
            body[self.max_tokens_field] = options.max_tokens
        if options.stop:
            body["stop"] = list(options.stop)
        if options.HasField("response_format"):
            fmt = response_format_to_wire(options.response_format)
            if fmt is not None:
                body["response_format"] = fmt
        if options.HasField("reasoning"):
            self.reasoning_to_wire(options.reasoning, body)

    def chat_call(
        self, request: ChatLike, model: str, *, stream: bool
    ) -> UpstreamCall[chat_pb2.ChatStreamResponse]:
        return UpstreamCall(self.path, self.build_body(request, model, stream), model)

    # -- errors ---------------------------------------------------------------------------

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        """The error an OpenAI-style error body means (``{"error": {...}}``)."""
        obj = body.get("error") if isinstance(body, dict) else None
        code, message = "", ""
        if isinstance(obj, dict):
            message = str(obj.get("message") or "")
            code = str(obj.get("code") or obj.get("type") or "")
            meta = obj.get("metadata") or {}
            if isinstance(meta, dict) and meta.get("raw"):
                message = f"{message}: {str(meta['raw'])[:300]}"
        elif isinstance(obj, str):
            message = obj
        elif isinstance(body, str):
            message = body[:300]
        error = error_for_status(
            status,
            message,
            provider=self.provider,
            model=model,
            headers=headers,
            upstream_code=code,
        )
        parameter = refused_parameter(obj, code, message)
        if parameter:
            error.metadata["parameter"] = parameter
        return refine_error(error, status, code, message)

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        """An error object in a 200 answer or stream (OpenRouter sends them mid-stream)."""
        if not isinstance(data, dict) or not data.get("error"):
            return None
        obj = data["error"]
        code = obj.get("code") if isinstance(obj, dict) else None
        kind = str(obj.get("type") or "") if isinstance(obj, dict) else ""
        if isinstance(code, int) and 400 <= code < 600:
            status = code
        elif kind == "server_error" or code == "server_error":
            status = 500
        elif "rate_limit" in kind or code == "rate_limit_exceeded":
            status = 429
        elif kind == "invalid_request_error":
            status = 400
        else:
            status = 502
        return self.error_from_body(status, {"error": obj}, model)

    # -- answers ----------------------------------------------------------------------------

    def parse_chat(
        self, data: dict[str, Any], call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> chat_pb2.ChatResponse:
        model = call.model
        choices = data.get("choices") or []
        if not choices:
            raise errors.UpstreamProtocolError(
                f"{self.provider}: response has no choices", provider=self.provider, model=model
            )
        choice = choices[0]
        message = choice.get("message") or {}
        content = message.get("content") or ""
        finish = finish_reason(choice.get("finish_reason"))
        if not content and message.get("refusal"):
            content, finish = message["refusal"], chat_pb2.FINISH_REASON_CONTENT_FILTER
        response = chat_pb2.ChatResponse(
            content=content,
            model=data.get("model") or model,
            finish_reason=finish,
            provider=self.provider,
        )
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        if reasoning:
            response.reasoning = reasoning
        if message.get("reasoning_details"):
            details = ReasoningDetails()
            details.add(message["reasoning_details"])
            response.reasoning_blocks.extend(details.blocks())
        for call_item in message.get("tool_calls") or ():
            function = call_item.get("function") or {}
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = orjson.dumps(arguments or {}).decode()
            response.tool_calls.add(
                id=call_item.get("id") or "", name=function.get("name") or "", arguments=arguments
            )
        if usage := data.get("usage"):
            usage_from_wire(usage, response.usage)
        return response

    def chat_assembler(self, call: UpstreamCall[chat_pb2.ChatStreamResponse]) -> StreamAssembler:
        return StreamAssembler(self.provider, call.model)


class OpenRouterChat(ChatCompletions):
    """OpenRouter's Chat Completions: the ``reasoning`` object, and assistant turns that
    carry their reasoning back as ``reasoning_details`` (models that sign their
    reasoning require it after a tool call)."""

    file_urls = True

    def reasoning_to_wire(self, reasoning: chat_pb2.ReasoningConfig, body: dict[str, Any]) -> None:
        wire: dict[str, Any] = {}
        if reasoning.HasField("max_tokens"):
            wire["max_tokens"] = reasoning.max_tokens
        elif reasoning.HasField("effort"):
            wire["effort"] = EFFORT_NAMES.get(reasoning.effort, "medium")
        if reasoning.HasField("exclude_from_output"):
            wire["exclude"] = reasoning.exclude_from_output
        body["reasoning"] = wire or {"enabled": True}

    def build_body(self, request: ChatLike, model: str, stream: bool) -> dict[str, Any]:
        body = super().build_body(request, model, stream)
        for message, wire in zip(request.messages, body["messages"], strict=True):
            if message.reasoning_blocks:
                details = details_from_blocks(message.reasoning_blocks)
                if details:
                    wire["reasoning_details"] = details
        return body


def refine_error(
    error: errors.GatewayError, status: int, code: str, message: str
) -> errors.GatewayError:
    """The more exact error an OpenAI error code or message names."""
    lowered = message.lower()
    if code == "context_length_exceeded" or "maximum context length" in lowered:
        match = _CONTEXT_LIMIT_RE.search(message)
        return retyped(
            errors.ContextLengthExceeded, error, limit=int(match.group(1)) if match else None
        )
    if code == "insufficient_quota":
        return retyped(errors.QuotaExceeded, error)
    if code == "model_not_found" or (status == 400 and "not a valid model" in lowered):
        return retyped(errors.ModelNotFound, error)
    if code in ("content_policy_violation", "content_filter") or (
        status == 403 and "flagged" in lowered
    ):
        return retyped(errors.ContentFiltered, error)
    if code == "invalid_api_key":
        return retyped(errors.AuthenticationFailed, error)
    return error


def embeddings_from_wire(
    data: Mapping[str, Any], count: int, provider: str, model: str
) -> list[inference_pb2.Embedding]:
    """``/embeddings`` items (base64 little-endian float32, or lists), in input order."""
    items = sorted(data.get("data") or (), key=lambda item: item.get("index", 0))
    if len(items) != count:
        raise errors.UpstreamProtocolError(
            f"{provider}: asked for {count} embeddings, got {len(items)}",
            provider=provider,
            model=model,
        )
    result = []
    for item in items:
        vector = item.get("embedding")
        if isinstance(vector, str):
            values = np.frombuffer(base64.b64decode(vector), dtype="<f4").tolist()
        else:
            values = [float(v) for v in vector or ()]
        result.append(
            inference_pb2.Embedding(
                values=values, model=data.get("model") or model, dimensions=len(values)
            )
        )
    return result


# Fields of a /models entry that may announce its retirement, by ModelInfo field. OpenAI
# documents retirements on its deprecations page; entries that carry a date are read.
_RETIREMENT_KEYS = {
    "deprecation_date": ("deprecation_date", "deprecated_at", "deprecated_on"),
    "shutdown_date": ("shutdown_date", "shutdown_at", "retirement_date"),
    "replacement": ("replacement", "recommended_replacement"),
}


def _as_date(value: Any) -> str | None:
    """A date as YYYY-MM-DD from an ISO string or a Unix timestamp; None otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.datetime.fromtimestamp(value, datetime.UTC).date().isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip()[:10]).isoformat()
        except ValueError:
            return None
    return None


def model_info(item: Mapping[str, Any], provider: str) -> models_pb2.ModelInfo:
    """A ModelInfo from one ``/models`` entry, with its retirement when it states one."""
    info = models_pb2.ModelInfo(id=str(item["id"]), provider=provider)
    for name, keys in _RETIREMENT_KEYS.items():
        for key in keys:
            value = item.get(key)
            if name == "replacement":
                text = value.strip() if isinstance(value, str) else None
            else:
                text = _as_date(value)
            if text:
                setattr(info, name, text)
                break
    return info


class OpenAIProvider(HttpProvider):
    """OpenAI, and any other server that speaks its API (kind ``openai_compatible``):
    Chat Completions, or the Responses API for the models the registry marks or the
    config names (``apis``); embeddings, the model list."""

    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        super().__init__(name, config, api_key)
        settings = self.spec.dialect
        self.dialect = ChatCompletions(name, settings.get("max_tokens_field", "max_tokens"))
        self.dialects = {"responses": Responses(name, self.dialect)}
        self._unsupported_parameters = frozenset(settings.get("unsupported", ()))

    def media_parts(self, model: str) -> frozenset[str]:
        """Chat Completions reads ``file`` (documents) and ``input_audio`` parts; the
        Responses API ``input_file`` and ``input_audio``."""
        return frozenset({"document", "audio"})

    # -- media (openai_media) -------------------------------------------------------------

    async def generate_image(
        self, request: media_pb2.GenerateImageRequest, model: str
    ) -> media_pb2.GenerateImageResponse:
        if request.input_images:
            body, content_type = media.image_edit_form(request, model)
            data = await self.call_json(
                "POST",
                "/images/edits",
                model=model,
                body=body,
                headers={"Content-Type": content_type},
            )
        else:
            data = await self.call_json(
                "POST",
                "/images/generations",
                media.image_generation_body(request, model),
                model=model,
            )
        return media.images_from_wire(data, request, self.name, model)

    async def transcribe(
        self, request: media_pb2.TranscribeRequest, model: str
    ) -> media_pb2.TranscribeResponse:
        body, content_type = media.transcription_form(request, model, self.name)
        headers = {"Content-Type": content_type}
        if not media.streams_transcription(model):
            data = await self.call_json(
                "POST", "/audio/transcriptions", model=model, body=body, headers=headers
            )
            return media.transcription_from_wire(data, self.name, model)
        assembler = media.TranscriptAssembler(self.name, model)
        request_ = self.http.request(
            "POST", "/audio/transcriptions", model=model, body=body, headers=headers
        )
        async with request_ as response:
            if response.status != 200:
                error = parse_body(await self.http.read(response))
                raise self.dialect.error_from_body(response.status, error, model, response.headers)
            async for payload in self.http.payloads(response, "sse"):
                event = loads_or_protocol_error(payload, self.name, model)
                if not isinstance(event, dict):
                    raise self.protocol_error(
                        f"expected a JSON object, got {payload[:100]!r}", model
                    )
                failure = self.dialect.error_in_body(event, model)
                if failure is not None:
                    raise failure
                assembler.feed(event)
        return assembler.finish()

    async def synthesize(
        self, request: media_pb2.SynthesizeRequest, model: str
    ) -> AsyncIterator[media_pb2.SynthesizeResponse]:
        mime = MIME_FOR_FORMAT[request.format or "mp3"]
        chunks = self.stream_bytes("/audio/speech", media.speech_body(request, model), model=model)
        async for chunk, _ in chunks:
            if chunk:
                yield media_pb2.SynthesizeResponse(audio=chunk, mime_type=mime)
        yield media_pb2.SynthesizeResponse(done=True, model=model, provider=self.name)

    def unsupported_parameters(self, model: str) -> frozenset[str]:
        if isinstance(self.chat_dialect(model), Responses):
            return self._unsupported_parameters | RESPONSES_UNSUPPORTED
        return self._unsupported_parameters

    async def embed(
        self, texts: Sequence[str], model: str, dimensions: int | None = None
    ) -> list[inference_pb2.Embedding]:
        body: dict[str, Any] = {"model": model, "input": list(texts), "encoding_format": "base64"}
        if dimensions is not None:
            if "ada-002" in model:  # OpenAI documents dimensions for text-embedding-3 only
                self.no_dimensions(model, dimensions, "only text-embedding-3 models take it")
            body["dimensions"] = dimensions
        data = await self.call_json("POST", "/embeddings", body, model=model)
        return embeddings_from_wire(data, len(texts), self.name, model)

    async def list_models(self) -> list[models_pb2.ModelInfo]:
        return [model_info(item, self.name) for item in await self._model_list() if item.get("id")]

    async def realtime(
        self, config: realtime_pb2.RealtimeSessionConfig, model: str
    ) -> RealtimeUpstream:
        """A session with OpenAI's Realtime API (``{base_url}/realtime?model=``, wss)."""
        return await open_session(self.http, OpenAIRealtime(self.name, model), config)

    async def _model_list(self) -> list[dict[str, Any]]:
        """The objects of ``GET /models``' data array."""
        body = await self.call_json("GET", "/models")
        items = body.get("data")
        if not isinstance(items, list):
            raise self.protocol_error("the model list has no data array")
        return [item for item in items if isinstance(item, dict)]


class OpenRouterProvider(OpenAIProvider):
    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        super().__init__(name, config, api_key)
        self.dialect = OpenRouterChat(name, "max_tokens")
        self.dialects = {"responses": Responses(name, self.dialect)}

    async def generate_image(
        self, request: media_pb2.GenerateImageRequest, model: str
    ) -> media_pb2.GenerateImageResponse:
        """Image output through Chat Completions (``modalities``), as OpenRouter has it."""
        body = media.openrouter_image_body(request, model, self.name)
        data = await self.call_json("POST", "/chat/completions", body, model=model)
        return media.openrouter_images_from_wire(data, self.name, model)

    def default_headers(self) -> dict[str, str]:
        # OpenRouter attributes traffic to apps by these; config headers override them.
        return {"X-Title": "Ratatoskr", "HTTP-Referer": "https://github.com/ratatoskr"}

    async def describe_models(self) -> list[models_pb2.ModelMetadata]:
        """``/models`` with prices (per token → per million), context length, output
        limit and supported parameters. Unusable entries are skipped, never fatal."""
        described = (openrouter_metadata(item, self.name) for item in await self._model_list())
        return [m for m in described if m is not None]
