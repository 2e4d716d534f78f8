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
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
import orjson
from google.protobuf import timestamp_pb2

from ratatoskr.v1 import chat_pb2, inference_pb2, models_pb2
from ratd import errors
from ratd.config import ProviderConfig
from ratd.providers.base import ChatLike, GenerateLike, Provider
from ratd.providers.http import HttpClient, error_for_status, loads_or_protocol_error, parse_body
from ratd.providers.streams import iter_lines
from ratd.secrets import Secret

log = logging.getLogger(__name__)

_ROLES = {
    chat_pb2.ROLE_SYSTEM: "system",
    chat_pb2.ROLE_USER: "user",
    chat_pb2.ROLE_ASSISTANT: "assistant",
    chat_pb2.ROLE_TOOL: "tool",
}
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
# /api/show capabilities -> ModelCapability.
_CAPABILITIES: dict[str, tuple[models_pb2.ModelCapability, ...]] = {
    "completion": (
        models_pb2.MODEL_CAPABILITY_CHAT,
        models_pb2.MODEL_CAPABILITY_CHAT_STREAMING,
        models_pb2.MODEL_CAPABILITY_GENERATE,
        models_pb2.MODEL_CAPABILITY_STRUCTURED_OUTPUT,
    ),
    "tools": (models_pb2.MODEL_CAPABILITY_TOOL_USE,),
    "thinking": (models_pb2.MODEL_CAPABILITY_REASONING,),
    "vision": (models_pb2.MODEL_CAPABILITY_VISION,),
    "embedding": (models_pb2.MODEL_CAPABILITY_EMBED,),
}
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
        wire: dict[str, Any] = {"role": _ROLES[message.role], "content": "\n".join(texts)}
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


def _tool_to_wire(tool: chat_pb2.ToolDefinition) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = (
        orjson.loads(tool.parameters_json)
        if tool.parameters_json
        else {"type": "object", "properties": {}}
    )
    return {"type": "function", "function": function}


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
    return [_tool_to_wire(t) for t in tools]


def parse_chat_response(
    data: Mapping[str, Any], *, provider: str, model: str, include_reasoning: bool = True
) -> chat_pb2.ChatResponse:
    """A whole (``stream: false``) /api/chat response."""
    message = data.get("message") or {}
    seed = str(data.get("created_at") or "")
    calls = tool_calls_from_wire(message.get("tool_calls"), seed, 0)
    response = chat_pb2.ChatResponse(
        content=message.get("content") or "",
        model=data.get("model") or model,
        finish_reason=finish_reason(data.get("done_reason"), bool(calls)),
        provider=provider,
    )
    if include_reasoning and message.get("thinking"):
        response.reasoning = message["thinking"]
    for call in calls:
        response.tool_calls.add(id=call.id, name=call.name, arguments=call.arguments)
    usage = usage_from_wire(data)
    if usage is not None:
        response.usage.CopyFrom(usage)
    return response


def parse_generate_response(
    data: Mapping[str, Any], *, provider: str, model: str, include_reasoning: bool = True
) -> chat_pb2.GenerateResponse:
    """A whole (``stream: false``) /api/generate response: text in ``response``."""
    response = chat_pb2.GenerateResponse(
        text=data.get("response") or "",
        model=data.get("model") or model,
        finish_reason=finish_reason(data.get("done_reason"), False),
        provider=provider,
    )
    if include_reasoning and data.get("thinking"):
        response.reasoning = data["thinking"]
    usage = usage_from_wire(data)
    if usage is not None:
        response.usage.CopyFrom(usage)
    return response


@dataclass
class ChatStreamState:
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
        if obj.get("done"):
            self.done = True
            self.final = obj
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
class GenerateStreamState:
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
        if obj.get("done"):
            self.done = True
            self.final = obj
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


def _context_window(model_info: Mapping[str, Any], suffix: str) -> int | None:
    """``<architecture>.<suffix>`` from /api/show's model_info (llama.context_length, ...)."""
    arch = model_info.get("general.architecture")
    value = model_info.get(f"{arch}.{suffix}") if arch else None
    if value is None:
        value = next((v for k, v in model_info.items() if k.endswith(f".{suffix}")), None)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def model_info_from_show(name: str, provider: str, show: Mapping[str, Any]) -> models_pb2.ModelInfo:
    """A ModelInfo from /api/show: capabilities, context window, embedding dimensions."""
    info = models_pb2.ModelInfo(id=name, provider=provider)
    wanted: list[models_pb2.ModelCapability] = []
    capabilities = [str(c) for c in show.get("capabilities") or ()]
    for capability in capabilities:
        wanted.extend(c for c in _CAPABILITIES.get(capability, ()) if c not in wanted)
    info.capabilities.extend(wanted)
    model_info = show.get("model_info") or {}
    if isinstance(model_info, dict):
        context = _context_window(model_info, "context_length")
        if context is not None:
            info.context_window = context
        if "embedding" in capabilities:
            dims = _context_window(model_info, "embedding_length")
            if dims is not None:
                info.dimensions = dims
    return info


def _timestamp(text: str) -> timestamp_pb2.Timestamp | None:
    """An RFC 3339 time as Go writes it (nanoseconds, offsets) as a Timestamp."""
    if not text:
        return None
    head, dot, rest = text.partition(".")
    if dot:  # Python parses at most microseconds
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(parsed)
    return stamp


def loaded_model_from_ps(entry: Mapping[str, Any]) -> models_pb2.LoadedModel:
    """A running model of /api/ps as a LoadedModel (like `ollama ps`)."""
    size = int(entry.get("size") or 0)
    vram = int(entry.get("size_vram") or 0)
    if size and vram >= size:
        device = "gpu"
    elif vram:
        device = f"cpu/gpu ({round(100 * vram / size)}% gpu)"
    else:
        device = "cpu"
    loaded = models_pb2.LoadedModel(
        name=str(entry.get("name") or entry.get("model") or ""),
        kind="ollama",
        status=models_pb2.MODEL_STATUS_READY,
        bytes=size,
        device=device,
        source="ollama",
    )
    expires = _timestamp(str(entry.get("expires_at") or ""))
    if expires is not None:
        loaded.expires_at.CopyFrom(expires)
    return loaded


def _same_model(listed: str, wanted: str) -> bool:
    """Ollama names without a tag mean ``:latest``."""

    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(listed) == full(wanted)


class OllamaProvider(Provider):
    """Ollama's native API (a local server, or ollama.com with an API key)."""

    kind: ClassVar[str] = "ollama"
    capabilities: ClassVar[frozenset[str]] = frozenset({"chat", "generate", "embed"})

    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        super().__init__(name, config, api_key)
        auth = {"Authorization": f"Bearer {api_key.reveal()}"} if api_key else {}
        self.http = HttpClient(name, config, {**config.headers, **auth})

    async def close(self) -> None:
        await self.http.close()

    def unsupported_parameters(self, model: str) -> frozenset[str]:
        return frozenset({"parallel_tool_calls"})

    # -- requests -----------------------------------------------------------------------

    def chat_body(self, request: ChatLike, model: str, stream: bool) -> dict[str, Any]:
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
        if options.HasField("reasoning"):
            body["think"] = think_value(options.reasoning, model)
        if options.HasField("raw_provider_options"):
            merge_raw_options(body, options.raw_provider_options)
        return body

    def generate_body(self, request: GenerateLike, model: str, stream: bool) -> dict[str, Any]:
        options = request.options
        body: dict[str, Any] = {"model": model, "prompt": request.prompt, "stream": stream}
        wire_options = sampling_options(options, options.stop_sequences)
        if wire_options:
            body["options"] = wire_options
        if options.HasField("reasoning"):
            body["think"] = think_value(options.reasoning, model)
        if options.HasField("raw_provider_options"):
            merge_raw_options(body, options.raw_provider_options)
        return body

    @staticmethod
    def _include_reasoning(options: chat_pb2.ChatOptions | chat_pb2.GenerateOptions) -> bool:
        return not (options.HasField("reasoning") and options.reasoning.exclude_from_output)

    # -- errors ---------------------------------------------------------------------------

    def error_for(
        self,
        status: int,
        body: Any,
        model: str,
        headers: Mapping[str, str] | None = None,
    ) -> errors.GatewayError:
        """The ratd error an Ollama error status and body mean."""
        message = error_message(body)
        lowered = message.lower()
        common: dict[str, Any] = {
            "provider": self.name,
            "model": model,
            "metadata": {"upstream_status": str(status)},
        }
        if status == 404 and not isinstance(body, dict):
            # Go's mux answering: this URL is not an Ollama API at all.
            return errors.ProviderUnavailable(
                f"{self.name}: {self.http.base_url} does not serve the Ollama API "
                f"(HTTP 404: {message or 'not found'}); check base_url",
                **common,
            )
        if status == 404 or ("not found" in lowered and "model" in lowered):
            return errors.ModelNotFound(
                f"{self.name}: model {model!r} is not available on the Ollama server at "
                f"{self.http.base_url} ({message or 'not found'}); pull it with "
                f"`ollama pull {model}`",
                **common,
            )
        if "does not support tools" in lowered:
            return errors.UnsupportedParameter(
                f"{self.name}: model {model} does not support tools ({message})",
                field="tools",
                parameter="tools",
                **{**common, "metadata": {**common["metadata"], "parameter": "tools"}},
            )
        if "does not support thinking" in lowered:
            return errors.UnsupportedParameter(
                f"{self.name}: model {model} does not support thinking ({message})",
                field="options.reasoning",
                parameter="reasoning",
                **{**common, "metadata": {**common["metadata"], "parameter": "reasoning"}},
            )
        if "exceeds the context length" in lowered or "context length exceeded" in lowered:
            return errors.ContextLengthExceeded(f"{self.name}: {message}", **common)
        if "requires more system memory" in lowered or "out of memory" in lowered:
            return errors.ModelNotAvailable(f"{self.name}: {message}", **common)
        if status in (401, 403):
            hint = (
                ""
                if self.api_key
                else " (no API key is configured: set OLLAMA_API_KEY or the secrets file)"
            )
            return errors.AuthenticationFailed(
                f"{self.name}: {message or 'unauthorized'}{hint}", **common
            )
        return error_for_status(status, message, provider=self.name, model=model, headers=headers)

    def stream_error(self, value: Any, model: str) -> errors.GatewayError:
        """An ``{"error": ...}`` object inside a 200 response: the runner failed mid-way,
        which is the server's failure (as a 500 would be), not the request's."""
        error = self.error_for(500, {"error": value}, model)
        error.metadata.update(upstream_status="200", in_stream="true")
        return error

    # -- transport -------------------------------------------------------------------------

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, payload: Any, model: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """HttpClient.request, with a hint when no Ollama answers at base_url."""
        try:
            async with self.http.request(method, path, payload, model=model) as response:
                yield response
        except errors.ProviderUnavailable as err:
            if type(err) is errors.ProviderUnavailable and err.message.startswith(
                f"{self.name}: cannot connect"
            ):
                err.message = f"{err.message} (is Ollama running? start it with `ollama serve`)"
                err.args = (err.message,)
            raise

    async def _json(self, method: str, path: str, payload: Any, model: str) -> Any:
        """A whole JSON response; errors (statuses, error bodies in a 200) raised."""
        async with self._request(method, path, payload, model) as response:
            raw = await response.read()
            if response.status != 200:
                raise self.error_for(response.status, parse_body(raw), model, response.headers)
        data = loads_or_protocol_error(raw, self.name, model)
        if isinstance(data, dict) and data.get("error") is not None:
            raise self.stream_error(data["error"], model)
        if not isinstance(data, dict):
            raise errors.UpstreamProtocolError(
                f"{self.name}: expected a JSON object from {path}", provider=self.name, model=model
            )
        return data

    async def _ndjson(
        self, path: str, payload: Any, model: str
    ) -> AsyncGenerator[Mapping[str, Any], None]:
        """The objects of an NDJSON stream; an error line raises."""
        async with self._request("POST", path, payload, model) as response:
            if response.status != 200:
                raw = await response.read()
                raise self.error_for(response.status, parse_body(raw), model, response.headers)
            async for line in iter_lines(response):
                obj = loads_or_protocol_error(line, self.name, model)
                if not isinstance(obj, dict):
                    raise errors.UpstreamProtocolError(
                        f"{self.name}: expected one JSON object per line, got {line[:100]!r}",
                        provider=self.name,
                        model=model,
                    )
                if obj.get("error") is not None:
                    raise self.stream_error(obj["error"], model)
                yield obj

    def _cut_short(self, model: str) -> errors.UpstreamProtocolError:
        return errors.UpstreamProtocolError(
            f"{self.name}: the stream ended before the response was complete (no done line)",
            provider=self.name,
            model=model,
        )

    # -- chat and generation ----------------------------------------------------------------

    async def chat(self, request: ChatLike, model: str) -> chat_pb2.ChatResponse:
        data = await self._json("POST", "/api/chat", self.chat_body(request, model, False), model)
        return parse_chat_response(
            data,
            provider=self.name,
            model=model,
            include_reasoning=self._include_reasoning(request.options),
        )

    async def chat_stream(
        self, request: ChatLike, model: str
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        body = self.chat_body(request, model, True)
        state = ChatStreamState(self.name, model, self._include_reasoning(request.options))
        async with aclosing(self._ndjson("/api/chat", body, model)) as lines:
            async for obj in lines:
                for event in state.feed(obj):
                    yield event
                if state.done:
                    break
        if not state.done:
            raise self._cut_short(model)
        for event in state.finish():
            yield event

    async def generate(self, request: GenerateLike, model: str) -> chat_pb2.GenerateResponse:
        body = self.generate_body(request, model, False)
        data = await self._json("POST", "/api/generate", body, model)
        return parse_generate_response(
            data,
            provider=self.name,
            model=model,
            include_reasoning=self._include_reasoning(request.options),
        )

    async def generate_stream(
        self, request: GenerateLike, model: str
    ) -> AsyncIterator[chat_pb2.GenerateStreamResponse]:
        body = self.generate_body(request, model, True)
        state = GenerateStreamState(self.name, model, self._include_reasoning(request.options))
        async with aclosing(self._ndjson("/api/generate", body, model)) as lines:
            async for obj in lines:
                for event in state.feed(obj):
                    yield event
                if state.done:
                    break
        if not state.done:
            raise self._cut_short(model)
        for event in state.finish():
            yield event

    # -- embeddings ---------------------------------------------------------------------------

    async def embed(self, texts: Sequence[str], model: str) -> list[inference_pb2.Embedding]:
        """/api/embed, all texts in one request. Ollama returns L2-normalised vectors;
        ratd passes them on unchanged."""
        data = await self._json("POST", "/api/embed", {"model": model, "input": list(texts)}, model)
        vectors = data.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            got = len(vectors) if isinstance(vectors, list) else 0
            raise errors.UpstreamProtocolError(
                f"{self.name}: asked for {len(texts)} embeddings, got {got}",
                provider=self.name,
                model=model,
            )
        name = data.get("model") or model
        return [
            inference_pb2.Embedding(values=vector, model=name, dimensions=len(vector))
            for vector in vectors
        ]

    # -- models -------------------------------------------------------------------------------

    async def show(self, model: str) -> Mapping[str, Any]:
        """/api/show for one model (NOT_FOUND with the pull hint when it is not pulled)."""
        data: Mapping[str, Any] = await self._json("POST", "/api/show", {"model": model}, model)
        return data

    async def list_models(self) -> list[models_pb2.ModelInfo]:
        """The pulled models (/api/tags), each with what /api/show says of it. A model
        whose details cannot be read is still listed, without them."""
        data = await self._json("GET", "/api/tags", None, "")
        names = [
            str(entry.get("name") or entry.get("model"))
            for entry in data.get("models") or ()
            if isinstance(entry, dict) and (entry.get("name") or entry.get("model"))
        ]
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
            running = await self._json("GET", "/api/ps", None, model)
            for entry in running.get("models") or ():
                if not isinstance(entry, dict):
                    continue
                name = str(entry.get("name") or entry.get("model") or "")
                if name and _same_model(name, model):
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


__all__ = ["OllamaProvider"]
