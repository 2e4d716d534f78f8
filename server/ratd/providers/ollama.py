"""Ollama's native API: ``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/tags``,
``/api/show`` and ``/api/ps``.

What is particular to Ollama, and why the code below looks the way it does:

* Streams are NDJSON, one whole JSON object per line, and streaming is Ollama's default:
  every request says ``"stream"`` explicitly. The last line has ``"done": true`` with
  ``done_reason`` and the token counts (``prompt_eval_count``, ``eval_count``, and in
  newer versions ``prompt_eval_cached_count``). A stream that ends without it was cut.
* Errors can arrive inside a 200 stream as a line ``{"error": "..."}`` (a runner that
  crashed mid-generation); before the stream starts they are HTTP statuses with the same
  ``{"error": "..."}`` body. A model that is not pulled is a 404: ratd answers NOT_FOUND
  with an ``ollama pull NAME`` hint and never pulls on its own (a pull can be gigabytes).
* Tool calls arrive whole (never split), with ``function.arguments`` as a JSON *object*;
  ratd serialises it to compact JSON text, keeping Ollama's key order. Older versions
  send no call id: ratd derives a stable one from the response (same response, same id).
  ``done_reason`` stays ``"stop"`` when the model called tools, so a turn with tool calls
  is normalised to FINISH_REASON_TOOL_CALLS as every other provider reports it.
* Reasoning is ``message.thinking`` (chat) or top-level ``thinking`` (generate), asked for
  with ``think``: a boolean, or a level ("low"/"medium"/"high") for models that take one
  (gpt-oss). There is no thinking budget.
* Sampling options live in ``options`` (``num_predict`` is max_tokens); ``format`` is
  ``"json"`` or a JSON Schema; images are base64 strings in a message's ``images``.
* ollama.com (the cloud API) wants ``Authorization: Bearer``; a local server has no auth.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2, inference_pb2, models_pb2
from ratd import errors
from ratd.config import ProviderConfig
from ratd.providers.base import ChatLike, GenerateLike
from ratd.providers.http import error_for_status
from ratd.providers.http_provider import HttpProvider, UpstreamCall
from ratd.providers.messages import ROLE_NAMES, function_tool
from ratd.providers.ollama_models import (
    loaded_model_from_ps,
    model_info_from_show,
    running_entry,
    tag_names,
)
from ratd.secrets import Secret

log = logging.getLogger(__name__)

_FINISH: dict[str, chat_pb2.FinishReason] = {
    "stop": chat_pb2.FINISH_REASON_STOP,
    "length": chat_pb2.FINISH_REASON_LENGTH,
}
# Think levels for models that take one instead of a boolean.
_LEVELS = {
    chat_pb2.REASONING_EFFORT_NONE: "low",  # gpt-oss cannot stop thinking; least is low
    chat_pb2.REASONING_EFFORT_MINIMAL: "low",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
    chat_pb2.REASONING_EFFORT_XHIGH: "high",
}
_LEVEL_MODELS = ("gpt-oss",)
# raw_provider_options keys that are request fields; every other key is a model option.
_BODY_KEYS = frozenset(
    {
        "keep_alive",
        "format",
        "think",
        "template",
        "system",
        "raw",
        "suffix",
        "context",
        "truncate",
        "dimensions",
        "shift",
        "logprobs",
        "top_logprobs",
    }
)
# Fields ratd itself owns: letting raw options replace them would break the parsing.
_OWNED_KEYS = frozenset({"model", "messages", "prompt", "stream", "input"})
# Concurrent /api/show requests while listing models.
_SHOW_CONCURRENCY = 8


def finish_reason(done_reason: str | None, has_tool_calls: bool) -> chat_pb2.FinishReason:
    """The normalised finish reason of a finished Ollama turn.

    Ollama says "stop" after tool calls too; a missing ``done_reason`` (the ollama.com
    generate endpoint omits it) is left unspecified rather than guessed.
    """
    if has_tool_calls and done_reason in (None, "", "stop"):
        return chat_pb2.FINISH_REASON_TOOL_CALLS
    return _FINISH.get(done_reason or "", chat_pb2.FINISH_REASON_UNSPECIFIED)


def usage_from_wire(data: Mapping[str, Any]) -> chat_pb2.Usage | None:
    """Usage from a final object's counts; None when it carries none."""
    if data.get("prompt_eval_count") is None and data.get("eval_count") is None:
        return None
    prompt = int(data.get("prompt_eval_count") or 0)
    completion = int(data.get("eval_count") or 0)
    usage = chat_pb2.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    cached = data.get("prompt_eval_cached_count")
    if isinstance(cached, int) and not isinstance(cached, bool):
        usage.cached_prompt_tokens = cached
    return usage


def arguments_text(arguments: Any) -> str:
    """Tool-call arguments as the JSON text ratd passes on: compact, in Ollama's key order.

    Ollama sends an object; a string (some OpenAI-minded proxies) is passed on as is.
    """
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments if arguments is not None else {}).decode()


def stable_call_id(seed: str, index: int, name: str, arguments: str) -> str:
    """An id for a tool call Ollama sent without one.

    Derived from the response (``seed`` is its ``created_at``), so the same response gives
    the same ids, stream or not, and different turns give different ids.
    """
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{name}\x00{arguments}".encode()).hexdigest()
    return f"call_{digest[:24]}"


@dataclass(slots=True)
class WireToolCall:
    id: str
    name: str
    arguments: str


def tool_calls_from_wire(calls: Any, seed: str, first_index: int) -> list[WireToolCall]:
    """The tool calls of one message object, numbered from ``first_index``."""
    out: list[WireToolCall] = []
    for offset, call in enumerate(calls or ()):
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        arguments = arguments_text(function.get("arguments"))
        call_id = call.get("id") or stable_call_id(seed, first_index + offset, name, arguments)
        out.append(WireToolCall(id=str(call_id), name=name, arguments=arguments))
    return out


def think_value(reasoning: chat_pb2.ReasoningConfig, model: str) -> bool | str:
    """``think`` for a ReasoningConfig. Ollama has no budget, so ``max_tokens`` only turns
    thinking on; an effort is a level for models that take levels, else on or off."""
    takes_levels = any(model.startswith(prefix) for prefix in _LEVEL_MODELS)
    if reasoning.HasField("effort"):
        if takes_levels:
            return _LEVELS.get(reasoning.effort, "medium")
        return reasoning.effort != chat_pb2.REASONING_EFFORT_NONE
    return True


def format_to_wire(fmt: chat_pb2.ResponseFormat) -> Any:
    """``format``: "json" for a JSON object, the schema itself for a JSON Schema (OpenAI's
    ``{"name", "schema", "strict"}`` wrapper is unwrapped), None for plain text."""
    which = fmt.WhichOneof("format")
    if which == "json_object":
        return "json"
    if which == "json_schema":
        schema = orjson.loads(fmt.json_schema)
        if isinstance(schema.get("schema"), dict) and "type" not in schema:
            return schema["schema"]
        return schema
    return None


def sampling_options(
    options: chat_pb2.ChatOptions | chat_pb2.GenerateOptions, stop: Sequence[str]
) -> dict[str, Any]:
    """The ``options`` object for the sampling settings both request kinds share."""
    wire: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "seed", "frequency_penalty", "presence_penalty"):
        if options.HasField(name):
            value = getattr(options, name)
            # float32 on our wire: 0.2 would go out as 0.20000000298023224.
            wire[name] = round(value, 6) if isinstance(value, float) else value
    if options.HasField("max_tokens"):
        wire["num_predict"] = options.max_tokens
    if stop:
        wire["stop"] = list(stop)
    return wire


def merge_raw_options(body: dict[str, Any], raw_json: str) -> None:
    """Merge ``raw_provider_options`` into the request: request fields (keep_alive, format,
    think, ...) into the body, ``options`` and every other key into ``options``."""
    raw = orjson.loads(raw_json)
    options: dict[str, Any] = body.get("options") or {}
    for key, value in raw.items():
        if key == "options" and isinstance(value, dict):
            options.update(value)
        elif key in _OWNED_KEYS:
            log.debug("ollama: raw_provider_options may not set %r; ignored", key)
        elif key in _BODY_KEYS:
            body[key] = value
        else:
            options[key] = value
    if options:
        body["options"] = options


def _image_base64(image: chat_pb2.ImagePart, where: str) -> str:
    """An image as Ollama takes it: bare base64 (no data: prefix). Ollama cannot fetch
    URLs, so an http(s) image is refused rather than silently dropped."""
    if image.WhichOneof("source") == "data":
        return base64.b64encode(image.data).decode()
    url = image.url
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if header.endswith(";base64"):
            return payload
        return base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode()
    raise errors.UnsupportedParameter(
        f"{where}.url: Ollama takes images only inline; send the image bytes "
        "(or a data: URL) instead of a link",
        field=f"{where}.url",
        parameter="image.url",
        metadata={"parameter": "image.url"},
    )


def _arguments_object(text: str) -> Any:
    return orjson.loads(text) if text.strip() else {}


def messages_to_wire(messages: Sequence[chat_pb2.Message]) -> list[dict[str, Any]]:
    """Messages in Ollama's shape. Text parts join the content; a tool result carries the
    name of the call it answers (``tool_name``), found from the earlier assistant message."""
    names_by_id: dict[str, str] = {}
    wire_messages: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        texts = [message.content] if message.content else []
        images: list[str] = []
        for j, part in enumerate(message.parts):
            if part.WhichOneof("part") == "text":
                texts.append(part.text)
            else:
                images.append(_image_base64(part.image, f"messages[{i}].parts[{j}].image"))
        wire: dict[str, Any] = {"role": ROLE_NAMES[message.role], "content": "\n".join(texts)}
        if images:
            wire["images"] = images
        thinking = "".join(block.text for block in message.reasoning_blocks)
        if thinking:
            wire["thinking"] = thinking
        if message.tool_calls:
            wire["tool_calls"] = [
                {
                    "id": call.id,
                    "function": {"name": call.name, "arguments": _arguments_object(call.arguments)},
                }
                for call in message.tool_calls
            ]
            names_by_id.update((call.id, call.name) for call in message.tool_calls)
        if message.role == chat_pb2.ROLE_TOOL:
            wire["tool_call_id"] = message.tool_call_id
            if message.tool_call_id in names_by_id:
                wire["tool_name"] = names_by_id[message.tool_call_id]
        wire_messages.append(wire)
    return wire_messages


def _tools_to_wire(request: ChatLike) -> list[dict[str, Any]]:
    """The tools to offer. Ollama has no tool_choice: "none" offers none, a named function
    offers only that one; "required" cannot be enforced and offers them all."""
    tools = list(request.tools)
    options = request.options
    if options.HasField("tool_choice"):
        which = options.tool_choice.WhichOneof("choice")
        if which == "none":
            return []
        if which == "function":
            tools = [t for t in tools if t.name == options.tool_choice.function]
        elif which == "required":
            log.debug("ollama cannot force a tool call; tool_choice=required offers the tools")
    return [function_tool(t) for t in tools]


class _EndsWithDoneLine:
    """The end of an Ollama stream: the line with ``"done": true``, which carries the
    finish reason and the counts. A stream that ends without it was cut."""

    done: bool
    final: Mapping[str, Any]

    @property
    def complete(self) -> bool:
        return self.done

    @property
    def ended(self) -> bool:
        return self.done

    def note_end(self, obj: Mapping[str, Any]) -> None:
        if obj.get("done"):
            self.done = True
            self.final = obj


@dataclass
class ChatAssembler(_EndsWithDoneLine):
    """Turns /api/chat NDJSON objects into ChatStreamResponse events, in order.

    Tool calls arrive whole: each is announced (ToolCallStart) with its arguments in one
    ToolCallDelta as soon as it arrives; all are closed (ToolCallEnd) when the turn ends,
    the order every provider's stream follows.
    """

    provider: str
    model: str
    include_reasoning: bool = True
    done: bool = False
    calls: int = 0
    final: Mapping[str, Any] = field(default_factory=dict)

    def feed(self, obj: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        out: list[chat_pb2.ChatStreamResponse] = []
        self.model = obj.get("model") or self.model
        message = obj.get("message") or {}
        if self.include_reasoning and message.get("thinking"):
            out.append(chat_pb2.ChatStreamResponse(reasoning=message["thinking"]))
        if message.get("content"):
            out.append(chat_pb2.ChatStreamResponse(content=message["content"]))
        seed = str(obj.get("created_at") or "")
        for call in tool_calls_from_wire(message.get("tool_calls"), seed, self.calls):
            start = chat_pb2.ToolCallStart(index=self.calls, id=call.id, name=call.name)
            delta = chat_pb2.ToolCallDelta(index=self.calls, arguments=call.arguments)
            out.append(chat_pb2.ChatStreamResponse(tool_call_start=start))
            out.append(chat_pb2.ChatStreamResponse(tool_call_delta=delta))
            self.calls += 1
        self.note_end(obj)
        return out

    def finish(self) -> list[chat_pb2.ChatStreamResponse]:
        out = [
            chat_pb2.ChatStreamResponse(tool_call_end=chat_pb2.ToolCallEnd(index=index))
            for index in range(self.calls)
        ]
        usage = usage_from_wire(self.final)
        if usage is not None:
            out.append(chat_pb2.ChatStreamResponse(usage=usage))
        out.append(
            chat_pb2.ChatStreamResponse(
                done=True,
                finish_reason=finish_reason(self.final.get("done_reason"), self.calls > 0),
                model=self.model,
                provider=self.provider,
            )
        )
        return out


@dataclass
class GenerateAssembler(_EndsWithDoneLine):
    """Turns /api/generate NDJSON objects into GenerateStreamResponse events, in order."""

    provider: str
    model: str
    include_reasoning: bool = True
    done: bool = False
    final: Mapping[str, Any] = field(default_factory=dict)

    def feed(self, obj: Mapping[str, Any]) -> list[chat_pb2.GenerateStreamResponse]:
        out: list[chat_pb2.GenerateStreamResponse] = []
        self.model = obj.get("model") or self.model
        if self.include_reasoning and obj.get("thinking"):
            out.append(chat_pb2.GenerateStreamResponse(reasoning=obj["thinking"]))
        if obj.get("response"):
            out.append(chat_pb2.GenerateStreamResponse(text=obj["response"]))
        self.note_end(obj)
        return out

    def finish(self) -> list[chat_pb2.GenerateStreamResponse]:
        out: list[chat_pb2.GenerateStreamResponse] = []
        usage = usage_from_wire(self.final)
        if usage is not None:
            out.append(chat_pb2.GenerateStreamResponse(usage=usage))
        out.append(
            chat_pb2.GenerateStreamResponse(
                done=True,
                finish_reason=finish_reason(self.final.get("done_reason"), False),
                model=self.model,
                provider=self.provider,
            )
        )
        return out


def error_message(body: Any) -> str:
    """The text of an Ollama error body (``{"error": "..."}``), or of a non-JSON body."""
    if isinstance(body, dict):
        value = body.get("error")
        if isinstance(value, dict):
            value = value.get("message")
        return str(value or "")
    if isinstance(body, str):
        return body[:300]
    return ""


def _include_reasoning(options: chat_pb2.ChatOptions | chat_pb2.GenerateOptions) -> bool:
    return not (options.HasField("reasoning") and options.reasoning.exclude_from_output)


def _unsupported(
    what: str, field_name: str, parameter: str, message: str, common: dict[str, Any]
) -> errors.UnsupportedParameter:
    """A model that cannot take tools or thinking: the request's fault, naming the field."""
    metadata = {**common["metadata"], "parameter": parameter}
    return errors.UnsupportedParameter(
        f"{common['provider']}: model {common['model']} does not support {what} ({message})",
        field=field_name,
        parameter=parameter,
        **{**common, "metadata": metadata},
    )


@dataclass(frozen=True, slots=True)
class OllamaDialect:
    """Ollama's /api/chat and /api/generate as pure functions. ``base_url`` goes into
    messages that must say which server answered; ``has_key`` into the 401 hint."""

    provider: str
    base_url: str
    has_key: bool = False

    # -- requests --------------------------------------------------------------------------

    def chat_call(
        self, request: ChatLike, model: str, *, stream: bool
    ) -> UpstreamCall[chat_pb2.ChatStreamResponse]:
        options = request.options
        body: dict[str, Any] = {
            "model": model,
            "messages": messages_to_wire(request.messages),
            "stream": stream,
        }
        tools = _tools_to_wire(request)
        if tools:
            body["tools"] = tools
        wire_options = sampling_options(options, options.stop)
        if wire_options:
            body["options"] = wire_options
        if options.HasField("response_format"):
            fmt = format_to_wire(options.response_format)
            if fmt is not None:
                body["format"] = fmt
        self._finish_body(body, options, model)
        return UpstreamCall("/api/chat", body, model, "ndjson", _include_reasoning(options))

    def generate_call(
        self, request: GenerateLike, model: str, *, stream: bool
    ) -> UpstreamCall[chat_pb2.GenerateStreamResponse]:
        options = request.options
        body: dict[str, Any] = {"model": model, "prompt": request.prompt, "stream": stream}
        wire_options = sampling_options(options, options.stop_sequences)
        if wire_options:
            body["options"] = wire_options
        self._finish_body(body, options, model)
        return UpstreamCall("/api/generate", body, model, "ndjson", _include_reasoning(options))

    @staticmethod
    def _finish_body(
        body: dict[str, Any], options: chat_pb2.ChatOptions | chat_pb2.GenerateOptions, model: str
    ) -> None:
        """What both request kinds end with: ``think``, then the raw options over it all."""
        if options.HasField("reasoning"):
            body["think"] = think_value(options.reasoning, model)
        if options.HasField("raw_provider_options"):
            merge_raw_options(body, options.raw_provider_options)

    # -- answers ---------------------------------------------------------------------------

    def parse_chat(
        self, data: dict[str, Any], call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> chat_pb2.ChatResponse:
        """A whole (``stream: false``) /api/chat answer."""
        message = data.get("message") or {}
        seed = str(data.get("created_at") or "")
        calls = tool_calls_from_wire(message.get("tool_calls"), seed, 0)
        response = chat_pb2.ChatResponse(
            content=message.get("content") or "",
            model=data.get("model") or call.model,
            finish_reason=finish_reason(data.get("done_reason"), bool(calls)),
            provider=self.provider,
            usage=usage_from_wire(data),
        )
        if call.plan and message.get("thinking"):  # plan: whether reasoning is wanted
            response.reasoning = message["thinking"]
        for tool_call in calls:
            response.tool_calls.add(
                id=tool_call.id, name=tool_call.name, arguments=tool_call.arguments
            )
        return response

    def parse_generate(
        self, data: dict[str, Any], call: UpstreamCall[chat_pb2.GenerateStreamResponse]
    ) -> chat_pb2.GenerateResponse:
        """A whole (``stream: false``) /api/generate answer: the text in ``response``."""
        response = chat_pb2.GenerateResponse(
            text=data.get("response") or "",
            model=data.get("model") or call.model,
            finish_reason=finish_reason(data.get("done_reason"), False),
            provider=self.provider,
            usage=usage_from_wire(data),
        )
        if call.plan and data.get("thinking"):
            response.reasoning = data["thinking"]
        return response

    def chat_assembler(self, call: UpstreamCall[chat_pb2.ChatStreamResponse]) -> ChatAssembler:
        return ChatAssembler(self.provider, call.model, call.plan)

    def generate_assembler(
        self, call: UpstreamCall[chat_pb2.GenerateStreamResponse]
    ) -> GenerateAssembler:
        return GenerateAssembler(self.provider, call.model, call.plan)

    # -- errors ----------------------------------------------------------------------------

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        """The ratd error an Ollama error status and body mean."""
        message = error_message(body)
        lowered = message.lower()
        name = self.provider
        common: dict[str, Any] = {
            "provider": name,
            "model": model,
            "metadata": {"upstream_status": str(status)},
        }
        if status == 404 and not isinstance(body, dict):
            # Go's mux answering: this URL is not an Ollama API at all.
            return errors.ProviderUnavailable(
                f"{name}: {self.base_url} does not serve the Ollama API "
                f"(HTTP 404: {message or 'not found'}); check base_url",
                **common,
            )
        if status == 404 or ("not found" in lowered and "model" in lowered):
            return errors.ModelNotFound(
                f"{name}: model {model!r} is not available on the Ollama server at "
                f"{self.base_url} ({message or 'not found'}); pull it with "
                f"`ollama pull {model}`",
                **common,
            )
        if "does not support tools" in lowered:
            return _unsupported("tools", "tools", "tools", message, common)
        if "does not support thinking" in lowered:
            return _unsupported("thinking", "options.reasoning", "reasoning", message, common)
        if "exceeds the context length" in lowered or "context length exceeded" in lowered:
            return errors.ContextLengthExceeded(f"{name}: {message}", **common)
        if "requires more system memory" in lowered or "out of memory" in lowered:
            return errors.ModelNotAvailable(f"{name}: {message}", **common)
        if status in (401, 403):
            hint = (
                ""
                if self.has_key
                else " (no API key is configured: set OLLAMA_API_KEY or the secrets file)"
            )
            return errors.AuthenticationFailed(
                f"{name}: {message or 'unauthorized'}{hint}", **common
            )
        return error_for_status(status, message, provider=name, model=model, headers=headers)

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        """An ``{"error": ...}`` object inside a 200 response: the runner failed mid-way,
        which is the server's failure (as a 500 would be), not the request's."""
        if not isinstance(data, dict) or data.get("error") is None:
            return None
        error = self.error_from_body(500, {"error": data["error"]}, model)
        error.metadata.update(upstream_status="200", in_stream="true")
        return error


class OllamaProvider(HttpProvider):
    """Ollama's native API (a local server, or ollama.com with an API key)."""

    dialect: OllamaDialect

    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        super().__init__(name, config, api_key)
        self.http.unreachable_hint = "is Ollama running? start it with `ollama serve`"
        self.dialect = OllamaDialect(name, self.http.base_url, has_key=bool(api_key))

    def unsupported_parameters(self, model: str) -> frozenset[str]:
        return frozenset({"parallel_tool_calls"})

    # -- generation ------------------------------------------------------------------------

    async def generate(self, request: GenerateLike, model: str) -> chat_pb2.GenerateResponse:
        call = self.dialect.generate_call(request, model, stream=False)
        data = await self.call_json("POST", call.path, call.body, model=model)
        return self.dialect.parse_generate(data, call)

    def generate_stream(
        self, request: GenerateLike, model: str
    ) -> AsyncIterator[chat_pb2.GenerateStreamResponse]:
        call = self.dialect.generate_call(request, model, stream=True)
        return self.stream(call, self.dialect.generate_assembler(call))

    # -- embeddings ---------------------------------------------------------------------------

    async def embed(
        self, texts: Sequence[str], model: str, dimensions: int | None = None
    ) -> list[inference_pb2.Embedding]:
        """/api/embed, all texts in one request. Ollama returns L2-normalised vectors;
        ratd passes them on unchanged."""
        self.no_dimensions(model, dimensions, "not supported through Ollama here")
        body = {"model": model, "input": list(texts)}
        data = await self.call_json("POST", "/api/embed", body, model=model)
        vectors = data.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            got = len(vectors) if isinstance(vectors, list) else 0
            raise self.protocol_error(f"asked for {len(texts)} embeddings, got {got}", model)
        name = data.get("model") or model
        return [
            inference_pb2.Embedding(values=vector, model=name, dimensions=len(vector))
            for vector in vectors
        ]

    # -- models -------------------------------------------------------------------------------

    async def show(self, model: str) -> Mapping[str, Any]:
        """/api/show for one model (NOT_FOUND with the pull hint when it is not pulled)."""
        data: Mapping[str, Any] = await self.call_json(
            "POST", "/api/show", {"model": model}, model=model
        )
        return data

    async def list_models(self) -> list[models_pb2.ModelInfo]:
        """The pulled models (/api/tags), each with what /api/show says of it. A model
        whose details cannot be read is still listed, without them."""
        names = tag_names(await self.call_json("GET", "/api/tags"))
        limit = asyncio.Semaphore(_SHOW_CONCURRENCY)

        async def describe(name: str) -> models_pb2.ModelInfo:
            async with limit:
                try:
                    return model_info_from_show(name, self.name, await self.show(name))
                except errors.GatewayError as err:
                    log.debug("%s: /api/show %s failed: %s", self.name, name, err)
                    return models_pb2.ModelInfo(id=name, provider=self.name)

        return list(await asyncio.gather(*(describe(name) for name in names)))

    async def model_status(self, model: str) -> models_pb2.ModelStatusResponse | None:
        """READY when loaded (/api/ps), AVAILABLE when pulled (/api/show), NOT_FOUND with
        the pull hint otherwise; UNAVAILABLE when the server does not answer."""
        try:
            entry = running_entry(await self.call_json("GET", "/api/ps", model=model), model)
            if entry is not None:
                return models_pb2.ModelStatusResponse(
                    status=models_pb2.MODEL_STATUS_READY,
                    reason="loaded in Ollama",
                    local=loaded_model_from_ps(entry),
                )
            await self.show(model)
        except errors.ModelNotFound:
            raise
        except (errors.ProviderUnavailable, errors.RateLimited) as err:
            return models_pb2.ModelStatusResponse(
                status=models_pb2.MODEL_STATUS_UNAVAILABLE, reason=err.message
            )
        return models_pb2.ModelStatusResponse(
            status=models_pb2.MODEL_STATUS_AVAILABLE, reason="pulled, not loaded"
        )


__all__ = ["OllamaDialect", "OllamaProvider"]
