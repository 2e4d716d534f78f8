"""Small pieces of request mapping that several native (non-OpenAI) adapters share:
images as inline data or URLs, tool-call arguments as objects, the tool calls an
assistant made earlier in the history, and conversations as alternating role turns.

They exist because Anthropic and Gemini both take images as base64 plus a MIME type
(never as ``data:`` URLs) and tool arguments as JSON objects (never as strings).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2
from ratd import errors

# Message roles as OpenAI's Chat Completions (and Ollama) name them.
ROLE_NAMES = {
    chat_pb2.ROLE_SYSTEM: "system",
    chat_pb2.ROLE_USER: "user",
    chat_pb2.ROLE_ASSISTANT: "assistant",
    chat_pb2.ROLE_TOOL: "tool",
}

# Reasoning efforts as OpenAI's APIs (Chat Completions, Responses) and Ollama name them.
EFFORT_NAMES = {
    chat_pb2.REASONING_EFFORT_NONE: "none",
    chat_pb2.REASONING_EFFORT_MINIMAL: "minimal",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
    chat_pb2.REASONING_EFFORT_XHIGH: "xhigh",
}


@dataclass(frozen=True, slots=True)
class InlineImage:
    mime_type: str
    base64_data: str


@dataclass(frozen=True, slots=True)
class RemoteImage:
    url: str
    mime_type: str  # from the part, else guessed from the URL; may be empty


def image_source(image: chat_pb2.ImagePart, field: str) -> InlineImage | RemoteImage:
    """Where an image comes from, in the form the native APIs want.

    ``data:`` URLs are split into MIME type and base64 here, since neither API accepts
    them as URLs. ``field`` names the part for the error when a data URL is malformed.
    """
    if image.WhichOneof("source") == "data":
        return InlineImage(image.mime_type, base64.b64encode(image.data).decode())
    url = image.url
    if url.startswith("data:"):
        header, sep, payload = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not mime:
            raise errors.InvalidInput(
                f"{field}.url: data URLs must look like data:<mime>;base64,<data>",
                field=f"{field}.url",
            )
        try:
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise errors.InvalidInput(
                f"{field}.url: the data URL's payload is not valid base64", field=f"{field}.url"
            ) from None
        return InlineImage(image.mime_type or mime, payload)
    guessed = mimetypes.guess_type(url.split("?", 1)[0])[0] or ""
    return RemoteImage(url, image.mime_type or guessed)


# A piece of a message's content: a text, or an image with the field that names it.
Piece = str | tuple[chat_pb2.ImagePart, str]


def message_pieces(
    message: chat_pb2.Message, field: str, images_refused: str | None = None
) -> list[Piece]:
    """A message's content in order: its non-empty texts, and its images. Where the API
    takes no image, ``images_refused`` says why and an image is the caller's input error."""
    pieces: list[Piece] = [message.content] if message.content else []
    for j, part in enumerate(message.parts):
        if part.WhichOneof("part") == "text":
            if part.text:
                pieces.append(part.text)
        elif part.WhichOneof("part") != "image":
            continue  # documents, audio, video: the dialect's own (HttpProvider.media_parts)
        elif images_refused is None:
            pieces.append((part.image, f"{field}.parts[{j}].image"))
        else:
            where = f"{field}.parts[{j}]"
            raise errors.InvalidInput(f"{where}: {images_refused}", field=where)
    return pieces


def arguments_object(arguments: str) -> dict[str, Any]:
    """A tool call's serialised arguments as the object native APIs want ("" is {})."""
    if not arguments.strip():
        return {}
    value = orjson.loads(arguments)  # validated as a JSON object before providers run
    return value if isinstance(value, dict) else {"value": value}


def tool_parameters(tool: chat_pb2.ToolDefinition) -> dict[str, Any]:
    """A tool's parameters schema; a tool without one takes an empty object, which APIs
    that require a schema accept."""
    if tool.parameters_json.strip():
        value: dict[str, Any] = orjson.loads(tool.parameters_json)
        return value
    return {"type": "object", "properties": {}}


def function_tool(tool: chat_pb2.ToolDefinition) -> dict[str, Any]:
    """A tool as OpenAI's Chat Completions (and Ollama, which copied it) declare one."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = tool_parameters(tool)
    return {"type": "function", "function": function}


def tool_result_value(content: str) -> Any:
    """A tool message's content: its JSON value when it is JSON, else the text."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content


def unwrap_json_schema(text: str) -> tuple[str, dict[str, Any]]:
    """(name, schema) from ResponseFormat.json_schema: a bare JSON Schema or OpenAI's
    ``{"name", "schema", "strict"}`` wrapper."""
    value = orjson.loads(text)
    if isinstance(value.get("schema"), dict):
        return str(value.get("name") or "response"), value["schema"]
    return "response", value


def retyped(
    cls: type[errors.GatewayError], error: errors.GatewayError, **extra: Any
) -> errors.GatewayError:
    """``error`` as a more precise class, once the API's own error code says what it is."""
    return cls(
        error.message,
        provider=error.provider,
        model=error.model,
        metadata=error.metadata,
        retry_after=error.retry_after,
        **extra,
    )


# One message as (role, wire parts); ``field`` names the message for input errors.
Turn = Callable[[chat_pb2.Message, str], tuple[str, list[dict[str, Any]]]]
Parts = Callable[[chat_pb2.Message, str], list[dict[str, Any]]]


def role_turns(
    messages: Sequence[chat_pb2.Message], system_parts: Parts, turn: Turn, key: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system parts, turns ``{"role", key: parts}``) of a conversation.

    Native APIs keep the system prompt apart from the turns, refuse empty turns and want
    roles to alternate: every system message's parts go to the system prompt in order
    (several are kept, never "last wins"), a message without parts is left out, and
    consecutive messages of one role are merged into one turn.
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if message.role == chat_pb2.ROLE_SYSTEM:
            system.extend(system_parts(message, field))
            continue
        role, parts = turn(message, field)
        if not parts:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1][key].extend(parts)
        else:
            turns.append({"role": role, key: parts})
    return system, turns


@dataclass(frozen=True, slots=True)
class UsageNames:
    """Where an API's usage object keeps each count (Gemini's two APIs name them apart)."""

    prompt: str
    tool_prompt: str
    output: str
    thoughts: str
    cached: str
    total: str


def counted_usage(usage: Mapping[str, Any], names: UsageNames) -> chat_pb2.Usage:
    """Usage with completion = output + thoughts and prompt = input + tool-use input, so
    that prompt + completion = total (the upstream's total when it gives one)."""
    prompt = int(usage.get(names.prompt) or 0) + int(usage.get(names.tool_prompt) or 0)
    thoughts = usage.get(names.thoughts)
    completion = int(usage.get(names.output) or 0) + int(thoughts or 0)
    result = chat_pb2.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(usage.get(names.total) or prompt + completion),
    )
    if thoughts is not None:
        result.reasoning_tokens = int(thoughts)
    if usage.get(names.cached) is not None:
        result.cached_prompt_tokens = int(usage[names.cached])
    return result


def unsupported(provider: str, model: str, field: str, why: str) -> errors.UnsupportedParameter:
    """A part or option this API cannot take (the fallback chain may find one that can)."""
    return errors.UnsupportedParameter(
        f"{provider} cannot take {field} for {model}: {why}",
        provider=provider,
        model=model,
        field=field,
        parameter=field,
    )
