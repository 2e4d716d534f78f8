"""``POST /v1/chat/completions``: OpenAI's request as a ``ChatRequest``, and the
``ChatResponse`` / ``ChatStreamResponse`` events as OpenAI's ``chat.completion`` object and
``chat.completion.chunk`` SSE events."""

from __future__ import annotations

import time
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2
from ratd.openai_http import fields
from ratd.openai_http.fields import Body, bad

EFFORTS = {
    "none": chat_pb2.REASONING_EFFORT_NONE,
    "minimal": chat_pb2.REASONING_EFFORT_MINIMAL,
    "low": chat_pb2.REASONING_EFFORT_LOW,
    "medium": chat_pb2.REASONING_EFFORT_MEDIUM,
    "high": chat_pb2.REASONING_EFFORT_HIGH,
    "xhigh": chat_pb2.REASONING_EFFORT_XHIGH,
}
_ROLES = {
    "system": chat_pb2.ROLE_SYSTEM,
    "developer": chat_pb2.ROLE_SYSTEM,
    "user": chat_pb2.ROLE_USER,
    "assistant": chat_pb2.ROLE_ASSISTANT,
    "tool": chat_pb2.ROLE_TOOL,
}
FINISH = {
    chat_pb2.FINISH_REASON_UNSPECIFIED: "stop",
    chat_pb2.FINISH_REASON_STOP: "stop",
    chat_pb2.FINISH_REASON_LENGTH: "length",
    chat_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    chat_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}
_KNOWN = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "response_format", "reasoning_effort",
        "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop",
        "frequency_penalty", "presence_penalty", "seed", "parallel_tool_calls", "stream",
        "stream_options", "n", "user", "metadata", "store", "service_tier", "logprobs",
        "top_logprobs", "logit_bias", "modalities", "audio", "prediction", "web_search_options",
        "safety_identifier", "prompt_cache_key",
    }
)  # fmt: skip
# Accepted only when they ask for nothing ratd would have to do.
_UNSERVED = ("logprobs", "top_logprobs", "logit_bias", "audio", "prediction", "web_search_options")


# -- request ---------------------------------------------------------------------------


def chat_request(body: Body) -> tuple[chat_pb2.ChatRequest, bool, bool]:
    """The request, whether to stream, and whether a stream ends with a usage chunk."""
    fields.check_keys(body, _KNOWN)
    fields.only_one(body)
    fields.falsy(body, _UNSERVED)
    modalities = body.get("modalities")
    if modalities not in (None, ["text"]):
        raise bad("modalities", 'ratd answers with text only: use ["text"]')
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "a non-empty array of messages is required")
    request = chat_pb2.ChatRequest(
        messages=[_message(m, f"messages[{i}]") for i, m in enumerate(messages)],
        tools=_tools(body.get("tools")),
        options=_options(body),
    )
    stream = bool(fields.boolean(body, "stream"))
    return request, stream, fields.include_usage(body, stream)


def _options(body: Body) -> chat_pb2.ChatOptions:
    options = chat_pb2.ChatOptions(model=fields.required_string(body, "model"))
    for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
        if (value := fields.number(body, key)) is not None:
            setattr(options, key, value)
    max_tokens = fields.integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = fields.integer(body, "max_tokens", 1)
    if max_tokens is not None:
        options.max_tokens = max_tokens
    if (top_k := fields.integer(body, "top_k", 1)) is not None:
        options.top_k = top_k
    if (seed := fields.integer(body, "seed")) is not None:
        options.seed = seed
    if (parallel := fields.boolean(body, "parallel_tool_calls")) is not None:
        options.parallel_tool_calls = parallel
    options.stop.extend(fields.stop_sequences(body))
    if "tool_choice" in body and body["tool_choice"] is not None:
        options.tool_choice.CopyFrom(_tool_choice(body["tool_choice"]))
    if body.get("response_format") is not None:
        options.response_format.CopyFrom(_response_format(body["response_format"]))
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise bad("reasoning_effort", f"must be one of {', '.join(EFFORTS)}")
        options.reasoning.effort = EFFORTS[effort]
    return options


def _text_of(content: Any, where: str) -> tuple[str, list[chat_pb2.ContentPart]]:
    """A message's content: a string, or parts (text and image_url). Text-only parts are
    joined into the text; with an image they stay parts, in order."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise bad(f"{where}.content", "must be a string or an array of content parts")
    parts = [_part(p, f"{where}.content[{i}]") for i, p in enumerate(content)]
    if all(p.WhichOneof("part") == "text" for p in parts):
        return "\n".join(p.text for p in parts), []
    return "", parts


def _part(part: Any, where: str) -> chat_pb2.ContentPart:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return chat_pb2.ContentPart(text=part["text"])
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url:
            raise bad(f"{where}.image_url.url", "an image URL (http(s) or data:) is required")
        found = chat_pb2.ImagePart(url=url)
        if isinstance(detail := image.get("detail"), str):
            found.detail = detail
        return chat_pb2.ContentPart(image=found)
    raise bad(f"{where}.type", f"unsupported content part {kind!r} (ratd takes text, image_url)")


def _message(raw: Any, where: str) -> chat_pb2.Message:
    if not isinstance(raw, dict):
        raise bad(where, "must be an object")
    role = _ROLES.get(raw.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise bad(f"{where}.role", f"must be one of {', '.join(_ROLES)}")
    content, parts = _text_of(raw.get("content"), where)
    message = chat_pb2.Message(role=role, content=content, parts=parts)
    if isinstance(name := raw.get("name"), str):
        message.name = name
    if role == chat_pb2.ROLE_TOOL:
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise bad(f"{where}.tool_call_id", "a tool message needs the id of its call")
        message.tool_call_id = call_id
    for i, call in enumerate(raw.get("tool_calls") or ()):
        message.tool_calls.append(_tool_call(call, f"{where}.tool_calls[{i}]"))
    return message


def _tool_call(call: Any, where: str) -> chat_pb2.ToolCall:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise bad(where, "a tool call needs function.name")
    arguments = function.get("arguments", "{}")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode()
    return chat_pb2.ToolCall(id=str(call.get("id", "")), name=function["name"], arguments=arguments)


def _tools(raw: Any) -> list[chat_pb2.ToolDefinition]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad("tools", "must be an array")
    tools = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad(f"tools[{i}].type", "ratd takes function tools")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad(f"tools[{i}].function.name", "a function tool needs a name")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        tools.append(
            chat_pb2.ToolDefinition(
                name=function["name"],
                description=str(function.get("description") or ""),
                parameters_json=orjson.dumps(parameters).decode(),
            )
        )
    return tools


def _tool_choice(raw: Any) -> chat_pb2.ToolChoice:
    if raw == "auto":
        return chat_pb2.ToolChoice(auto=True)
    if raw == "none":
        return chat_pb2.ToolChoice(none=True)
    if raw == "required":
        return chat_pb2.ToolChoice(required=True)
    function = raw.get("function") if isinstance(raw, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return chat_pb2.ToolChoice(function=function["name"])
    raise bad("tool_choice", 'must be "auto", "none", "required" or a function')


def _response_format(raw: Any) -> chat_pb2.ResponseFormat:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return chat_pb2.ResponseFormat(text=True)
    if kind == "json_object":
        return chat_pb2.ResponseFormat(json_object=True)
    if kind == "json_schema":
        schema = raw.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("schema", {}), dict):
            raise bad("response_format.json_schema", "must be an object with a schema")
        return chat_pb2.ResponseFormat(json_schema=orjson.dumps(schema).decode())
    raise bad("response_format.type", "must be text, json_object or json_schema")


# -- response ----------------------------------------------------------------------------


def usage_json(usage: chat_pb2.Usage) -> dict[str, Any]:
    found: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
    if usage.HasField("cost_usd"):
        found["cost"] = usage.cost_usd
    return found


def _tool_calls_json(calls: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def completion_json(answer: chat_pb2.ChatResponse, request_id: str, model: str) -> bytes:
    """The ``chat.completion`` object. Reasoning, where the provider gives it, is both
    ``reasoning`` (OpenRouter's name) and ``reasoning_content`` (DeepSeek's, vLLM's)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content if answer.content or not answer.tool_calls else None,
        "refusal": None,
    }
    if answer.tool_calls:
        message["tool_calls"] = _tool_calls_json(answer.tool_calls)
    if answer.HasField("reasoning"):
        message["reasoning"] = message["reasoning_content"] = answer.reasoning
    body: dict[str, Any] = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model if answer.HasField("model") else model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH.get(answer.finish_reason, "stop"),
            }
        ],
        "system_fingerprint": None,
    }
    if answer.HasField("usage"):
        body["usage"] = usage_json(answer.usage)
    if answer.provider:
        body["provider"] = answer.provider
    return orjson.dumps(body)


class ChunkEncoder:
    """ChatStreamResponse events as ``data: {chat.completion.chunk}\\n\\n`` SSE events, in
    OpenAI's exact shape: a first chunk with the role, content and tool-call deltas, a
    chunk with the finish reason, with ``stream_options.include_usage`` a last chunk with
    empty ``choices`` and the usage (and ``"usage": null`` on every other chunk), then
    ``data: [DONE]``."""

    __slots__ = ("_head", "_include_usage", "_started", "_tail", "_usage")

    trailer = b"data: [DONE]\n\n"

    def __init__(self, request_id: str, model: str, include_usage: bool) -> None:
        head = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        # Every chunk is head + choices (+ usage): the fixed part serialised once.
        self._head = b"data: " + orjson.dumps(head)[:-1] + b',"choices":'
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._include_usage = include_usage
        self._started = False
        self._usage: chat_pb2.Usage | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._started:
            self._started = True
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._head + orjson.dumps([choice]) + self._tail

    def encode(self, event: chat_pb2.ChatStreamResponse) -> bytes:
        """The SSE bytes of one event (empty for events OpenAI's stream has no place for)."""
        kind = event.WhichOneof("event")
        if kind == "content":
            return self._chunk({"content": event.content})
        if kind == "reasoning":
            return self._chunk({"reasoning": event.reasoning, "reasoning_content": event.reasoning})
        if kind == "tool_call_start":
            start = event.tool_call_start
            call = {
                "index": start.index,
                "id": start.id,
                "type": "function",
                "function": {"name": start.name, "arguments": ""},
            }
            return self._chunk({"tool_calls": [call]})
        if kind == "tool_call_delta":
            delta = event.tool_call_delta
            return self._chunk(
                {"tool_calls": [{"index": delta.index, "function": {"arguments": delta.arguments}}]}
            )
        if kind == "usage":
            self._usage = event.usage
            return b""
        if kind == "done":
            return self._finish(FINISH.get(event.finish_reason, "stop"))
        return b""

    @staticmethod
    def error(body: bytes) -> bytes:
        return sse_error(body)

    def _finish(self, reason: str) -> bytes:
        frames = self._chunk({}, reason)
        if self._include_usage:
            usage = usage_json(self._usage) if self._usage is not None else None
            frames += self._head + b"[]," + b'"usage":' + orjson.dumps(usage) + b"}\n\n"
        return frames


DONE = ChunkEncoder.trailer


def sse_error(body: bytes) -> bytes:
    """An error after the stream began, as OpenAI sends it (the SDKs raise APIError)."""
    return b"data: " + body + b"\n\n"
