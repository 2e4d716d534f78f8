"""Request validation: every malformed request is refused before any provider sees it,
with INVALID_ARGUMENT naming the field (``messages[2].role``) and saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2, inference_pb2
from ratd.errors import InvalidInput
from ratd.mime import sniff_image
from ratd.providers.base import ChatLike, GenerateLike

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ROLES = frozenset(chat_pb2.Role.values()) - {chat_pb2.ROLE_UNSPECIFIED}
_EFFORTS = frozenset(chat_pb2.ReasoningEffort.values()) - {chat_pb2.REASONING_EFFORT_UNSPECIFIED}

# Closed ranges of the sampling options every provider shares.
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
}


def _fail(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", field=field)


class Limits:
    """Size limits of one request."""

    def __init__(self, max_request_bytes: int) -> None:
        self.max_bytes = max_request_bytes
        self._total = 0

    def text(self, field: str, value: str | bytes) -> None:
        # An ASCII string's length is its UTF-8 size (isascii is a flag lookup: no copy).
        size = len(value) if isinstance(value, bytes) or value.isascii() else len(value.encode())
        if size > self.max_bytes:
            raise _fail(
                field,
                f"{size} bytes exceeds the limit of {self.max_bytes} bytes "
                "(server.max_request_bytes)",
            )
        self._total += size
        if self._total > self.max_bytes:
            raise _fail(
                field,
                f"the request's text reaches {self._total} bytes here, over the limit of "
                f"{self.max_bytes} bytes (server.max_request_bytes)",
            )


def json_object(field: str, text: str, *, allow_empty: bool = False) -> dict[str, Any] | None:
    """Parse ``text`` as a JSON object or fail naming ``field``."""
    if not text.strip():
        if allow_empty:
            return None
        raise _fail(field, "must be a JSON object, got an empty string")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise _fail(field, f"is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise _fail(field, f"must be a JSON object, got {type(value).__name__}")
    try:
        # Every JSON ratd takes is sent on re-encoded, which refuses nesting past 255
        # levels (parsing takes 1024): refuse it here, where it names the field.
        orjson.dumps(value)
    except orjson.JSONEncodeError as err:
        raise _fail(field, f"cannot be sent on ({err}); nest it less deeply") from None
    return value


# What a model name may contain: every provider's names fit ("openai/gpt-4o",
# "ft:gpt-4o-mini:acme::abc123", "hf.co/org/Model-GGUF:Q4_K_M", "BAAI/bge-small-en-v1.5").
# Nothing that could rewrite an upstream URL path ("..", "?", "#", "%", "\\") or a log line.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-/:@+]*")
_DOT_SEGMENT = re.compile(r"(?:^|[/:])\.{1,2}(?:$|[/:])")


# Names that passed _model lately: a call names one of a few models, so checking it again
# is a set lookup rather than a regex (bounded: cleared when full).
_VALID_NAMES: set[str] = set()
_MAX_VALID_NAMES = 4096


def _model(field: str, model: str) -> None:
    if model in _VALID_NAMES:
        return
    if not model.strip():
        raise _fail(field, "must name a model")
    if len(model) > 512:
        raise _fail(field, "is longer than 512 characters")
    if not _MODEL_NAME.fullmatch(model) or _DOT_SEGMENT.search(model) or "//" in model:
        raise _fail(
            field,
            f"{model[:100]!r} is not a model name (letters, digits and . _ - / : @ + only, "
            "starting with a letter or digit, no . or .. segments)",
        )
    if len(_VALID_NAMES) >= _MAX_VALID_NAMES:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(model)


def _number(field: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value):
        raise _fail(field, f"must be a finite number, got {value}")
    if not low <= value <= high:
        raise _fail(field, f"must be between {low:g} and {high:g}, got {value:g}")


def _set_fields(options: Any) -> set[str]:
    """The names of the fields ``options`` sets (one call, where a HasField per option
    would be one each)."""
    return {field.name for field, _ in options.ListFields()}


def _sampling(prefix: str, options: Any, limits: Limits, present: set[str]) -> None:
    for name in present.intersection(RANGES):
        low, high = RANGES[name]
        _number(f"{prefix}.{name}", getattr(options, name), low, high)
    if "max_tokens" in present and options.max_tokens < 1:
        raise _fail(f"{prefix}.max_tokens", "must be at least 1")
    if "top_k" in present and options.top_k < 1:
        raise _fail(f"{prefix}.top_k", "must be at least 1")
    if "reasoning" in present:
        reasoning = options.reasoning
        if reasoning.HasField("effort") and reasoning.effort not in _EFFORTS:
            raise _fail(f"{prefix}.reasoning.effort", f"unknown effort {reasoning.effort}")
    if "raw_provider_options" in present:
        limits.text(f"{prefix}.raw_provider_options", options.raw_provider_options)
        json_object(f"{prefix}.raw_provider_options", options.raw_provider_options)


def _stops(field: str, stops: Iterable[str], limits: Limits) -> None:
    for i, stop in enumerate(stops):
        if not stop:
            raise _fail(f"{field}[{i}]", "must not be empty")
        limits.text(f"{field}[{i}]", stop)


def _image_bytes(field: str, data: bytes, mime_type: str) -> None:
    if mime_type not in IMAGE_TYPES:
        raise _fail(
            f"{field}.mime_type" if not field.endswith(".url") else field,
            f"must be one of {', '.join(sorted(IMAGE_TYPES))}, got {mime_type!r}",
        )
    found = sniff_image(data)
    if found != mime_type:
        what = f"they look like {found}" if found else "they are not an image"
        raise _fail(field, f"the bytes are not {mime_type}: {what}")


def _data_url(field: str, url: str) -> None:
    """``data:<type>;base64,<payload>`` with a payload that decodes to that image."""
    header, sep, payload = url[len("data:") :].partition(",")
    mime_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64":
        raise _fail(field, "a data: URL must be data:<image type>;base64,<bytes>")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(field, "the base64 payload of the data: URL does not decode") from None
    _image_bytes(field, data, mime_type)


def _image(field: str, image: chat_pb2.ImagePart, limits: Limits) -> None:
    source = image.WhichOneof("source")
    if source is None:
        raise _fail(field, "needs a url or data")
    if source == "data":
        if not image.data:
            raise _fail(f"{field}.data", "is empty")
        limits.text(f"{field}.data", image.data)
        if image.mime_type not in IMAGE_TYPES:
            raise _fail(
                f"{field}.mime_type",
                f"must be one of {', '.join(sorted(IMAGE_TYPES))}, got {image.mime_type!r}",
            )
        _image_bytes(f"{field}.data", image.data, image.mime_type)
    else:
        if not image.url.startswith(("http://", "https://", "data:")):
            raise _fail(f"{field}.url", "must be an http(s) or data: URL")
        limits.text(f"{field}.url", image.url)
        if image.url.startswith("data:"):
            _data_url(f"{field}.url", image.url)
    if image.mime_type and image.mime_type not in IMAGE_TYPES:
        raise _fail(f"{field}.mime_type", f"unsupported image type {image.mime_type!r}")


def _parts(
    field: str, parts: Sequence[chat_pb2.ContentPart], limits: Limits, media: set[str]
) -> None:
    for j, part in enumerate(parts):
        kind = part.WhichOneof("part")
        if kind is None:
            raise _fail(f"{field}.parts[{j}]", "is empty")
        if kind == "text":
            limits.text(f"{field}.parts[{j}].text", part.text)
        elif kind == "image":
            _image(f"{field}.parts[{j}].image", part.image, limits)
        else:  # documents, audio and video: ratd.core.media, against the [media] limits
            media.add(kind)


def _message(
    i: int, message: chat_pb2.Message, limits: Limits, call_ids: set[str], media: set[str]
) -> None:
    role = message.role
    if role not in _ROLES:
        problem = "must be set" if role == 0 else f"unknown role {role}"
        raise _fail(f"messages[{i}].role", problem)
    content = message.content
    if content:
        limits.text(f"messages[{i}].content", content)
    parts = message.parts
    if parts:
        _parts(f"messages[{i}]", parts, limits, media)
    tool_calls = message.tool_calls
    if tool_calls:
        _tool_calls(f"messages[{i}]", role, tool_calls, limits, call_ids)
    if role == chat_pb2.ROLE_TOOL:
        field = f"messages[{i}].tool_call_id"
        if not message.tool_call_id:
            raise _fail(field, "a tool message must name the call it answers")
        if message.tool_call_id not in call_ids:
            raise _fail(
                field,
                f"{message.tool_call_id!r} matches no tool call of an earlier assistant message",
            )


def _tool_calls(
    field: str,
    role: int,
    calls: Sequence[chat_pb2.ToolCall],
    limits: Limits,
    call_ids: set[str],
) -> None:
    if role != chat_pb2.ROLE_ASSISTANT:
        raise _fail(f"{field}.tool_calls", "only assistant messages carry tool calls")
    for j, call in enumerate(calls):
        if not call.id:
            raise _fail(f"{field}.tool_calls[{j}].id", "must not be empty")
        if not call.name:
            raise _fail(f"{field}.tool_calls[{j}].name", "must not be empty")
        limits.text(f"{field}.tool_calls[{j}].arguments", call.arguments)
        json_object(f"{field}.tool_calls[{j}].arguments", call.arguments, allow_empty=True)
        call_ids.add(call.id)


def _tools(tools: Sequence[chat_pb2.ToolDefinition], limits: Limits) -> set[str]:
    names: set[str] = set()
    for i, tool in enumerate(tools):
        field = f"tools[{i}]"
        if not _TOOL_NAME.match(tool.name):
            raise _fail(f"{field}.name", "must be 1-64 letters, digits, '_', '.' or '-'")
        if tool.name in names:
            raise _fail(f"{field}.name", f"duplicate tool name {tool.name!r}")
        names.add(tool.name)
        limits.text(f"{field}.description", tool.description)
        limits.text(f"{field}.parameters_json", tool.parameters_json)
        json_object(f"{field}.parameters_json", tool.parameters_json, allow_empty=True)
        json_object(f"{field}.cache_control_json", tool.cache_control_json, allow_empty=True)
    return names


def _chat_options(options: chat_pb2.ChatOptions, tool_names: set[str], limits: Limits) -> None:
    _model("options.model", options.model)
    if len(options.ListFields()) == 1:  # the model alone, as most requests
        return
    present = _set_fields(options)
    _sampling("options", options, limits, present)
    if "stop" in present:
        _stops("options.stop", options.stop, limits)
    if "tool_choice" in present:
        choice = options.tool_choice
        which = choice.WhichOneof("choice")
        if which in ("required", "function") and not tool_names:
            raise _fail("options.tool_choice", f"{which} needs at least one tool in tools")
        if which == "function" and choice.function not in tool_names:
            raise _fail("options.tool_choice.function", f"no tool named {choice.function!r}")
    if "response_format" in present:
        fmt = options.response_format
        if fmt.WhichOneof("format") == "json_schema":
            limits.text("options.response_format.json_schema", fmt.json_schema)
            json_object("options.response_format.json_schema", fmt.json_schema)


def validate_chat(request: ChatLike, max_bytes: int) -> frozenset[str]:
    """Refuse a malformed request; return the kinds of its parts beyond text and images
    ("document", "audio", "video": most requests have none, and then nothing more needs
    to look at the parts)."""
    messages = request.messages
    if not messages:
        raise _fail("messages", "must contain at least one message")
    limits = Limits(max_bytes)
    tools = request.tools
    tool_names = _tools(tools, limits) if tools else set()
    _chat_options(request.options, tool_names, limits)
    call_ids: set[str] = set()
    media: set[str] = set()
    for i, message in enumerate(messages):
        _message(i, message, limits, call_ids, media)
    return frozenset(media) if media else _NO_MEDIA


_NO_MEDIA: frozenset[str] = frozenset()


def validate_generate(request: GenerateLike, max_bytes: int) -> None:
    limits = Limits(max_bytes)
    if not request.prompt:
        raise _fail("prompt", "must not be empty")
    limits.text("prompt", request.prompt)
    options = request.options
    _model("options.model", options.model)
    _sampling("options", options, limits, _set_fields(options))
    _stops("options.stop_sequences", options.stop_sequences, limits)


def validate_texts(field: str, texts: Sequence[str], max_bytes: int, max_items: int) -> None:
    limits = Limits(max_bytes)
    if not texts:
        raise _fail(field, "must contain at least one text")
    if len(texts) > max_items:
        raise _fail(field, f"holds {len(texts)} items, more than the limit of {max_items}")
    for i, text in enumerate(texts):
        name = f"{field}[{i}]" if field.endswith("s") else field
        if not text.strip():
            raise _fail(name, "must not be empty")
        limits.text(name, text)


# No embedding model has more; a larger number is a mistake, not a request.
MAX_EMBED_DIMENSIONS = 65536


def embed_dimensions(
    request: inference_pb2.EmbedRequest | inference_pb2.EmbedBatchRequest,
) -> int | None:
    """The ``dimensions`` asked for (None: the model's own length), checked."""
    if not request.HasField("dimensions"):
        return None
    value = request.dimensions
    if not 1 <= value <= MAX_EMBED_DIMENSIONS:
        raise _fail("dimensions", f"must be between 1 and {MAX_EMBED_DIMENSIONS}, got {value}")
    return value


def validate_pairs(pairs: Sequence[inference_pb2.NliPair], max_bytes: int, max_items: int) -> None:
    limits = Limits(max_bytes)
    if not pairs:
        raise _fail("pairs", "must contain at least one pair")
    if len(pairs) > max_items:
        raise _fail("pairs", f"holds {len(pairs)} items, more than the limit of {max_items}")
    for i, pair in enumerate(pairs):
        for name in ("premise", "hypothesis"):
            value = getattr(pair, name)
            if not value.strip():
                raise _fail(f"pairs[{i}].{name}", "must not be empty")
            limits.text(f"pairs[{i}].{name}", value)


def validate_model(field: str, model: str) -> None:
    _model(field, model)


def validate_size(field: str, text: str, max_bytes: int) -> None:
    Limits(max_bytes).text(field, text)
