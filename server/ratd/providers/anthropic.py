"""The Anthropic Messages API (``POST /v1/messages``), plain and streamed.

What this adapter has to get right, beyond renaming fields:

* ``system`` is not a message role there: every system message becomes one block of
  the top-level ``system``, in order (several are kept, never "last wins").
* Tool results are ``tool_result`` blocks of a *user* turn, and all results answering
  one assistant turn must arrive in a single user turn, results first; consecutive
  messages of one role are merged into one turn.
* Extended thinking: ``thinking`` blocks carry a signature that must come back
  unchanged in the next turn, so responses keep them as ``reasoning_blocks`` and the
  stream sends them as ``reasoning_signature`` events; assistant messages' blocks are
  sent back as ``thinking`` / ``redacted_thinking`` blocks.
* Two ways to ask for thinking: older models take ``{"type": "enabled",
  "budget_tokens"}``; Claude Opus 4.6 / Sonnet 4.6 and later take ``{"type":
  "adaptive"}`` with ``output_config.effort`` (manual thinking is deprecated there and
  refused with a 400 from Opus 4.7, Sonnet 5, Fable and Mythos on, which also refuse
  ``disabled`` thinking, forced tool use while thinking, and non-default
  temperature / top_p / top_k).
* ``max_tokens`` is required, and must exceed the thinking budget.
* Streams are typed SSE events (``message_start``, ``content_block_*``,
  ``message_delta``, ``message_stop``, ``ping``) and may end with ``event: error``
  after a 200; the JSON payloads may be right-padded with spaces.
* Usage: ``input_tokens`` excludes cached prompt tokens, so the normalised prompt
  count adds ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` back
  (as OpenAI's ``prompt_tokens`` includes its cached tokens);
  ``output_tokens_details.thinking_tokens`` is the reasoning share of the output.
* Responses may hold blocks a chat gateway has no place for (server tools' calls and
  results: ``server_tool_use``, ``web_search_tool_result``, ``web_fetch_tool_result``,
  code execution results, ``container_upload``; ``citations`` on text blocks and
  ``citations_delta`` in streams): they are skipped, their text kept.
* Token counting is ``POST /v1/messages/count_tokens`` (generally available, no beta
  header; none of the features used here needs one).

Checked against the Messages API reference (platform.claude.com/docs/en/api) and the
``anthropic`` Python SDK 2.17.0's types on 2026-12-04.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2, inference_pb2, media_parts_pb2, models_pb2
from ratd import errors
from ratd.config import ProviderConfig
from ratd.providers import anthropic_models
from ratd.providers.base import ChatLike
from ratd.providers.http import error_for_status
from ratd.providers.http_provider import HttpProvider, UpstreamCall
from ratd.providers.messages import (
    InlineImage,
    arguments_object,
    image_source,
    message_pieces,
    retyped,
    role_turns,
    tool_parameters,
    unwrap_json_schema,
)
from ratd.providers.reasoning_blocks import ANTHROPIC_FORMAT, verifiable_by
from ratd.secrets import Secret

log = logging.getLogger(__name__)

API_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# The tool forced on the model for structured output when the native format cannot
# be used; its input is the answer.
STRUCTURED_TOOL = "json_response"
MIN_THINKING_BUDGET = 1024  # the API refuses smaller budgets

# Reasoning effort -> thinking budget (tokens). NONE turns thinking off.
EFFORT_BUDGETS = {
    chat_pb2.REASONING_EFFORT_MINIMAL: 1024,
    chat_pb2.REASONING_EFFORT_LOW: 2048,
    chat_pb2.REASONING_EFFORT_MEDIUM: 8192,
    chat_pb2.REASONING_EFFORT_HIGH: 16384,
    chat_pb2.REASONING_EFFORT_XHIGH: 32768,
}

# Reasoning effort -> output_config.effort for models with adaptive thinking.
EFFORT_LEVELS = {
    chat_pb2.REASONING_EFFORT_MINIMAL: "low",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
    chat_pb2.REASONING_EFFORT_XHIGH: "xhigh",
}
# Models that take adaptive thinking (Opus / Sonnet 4.6 on, every 5.x, Fable, Mythos),
# and among them those that take nothing else (and no non-default sampling).
_ADAPTIVE = re.compile(
    r"^claude-(?:(?:opus|sonnet)-4-[6-9]|(?:opus|sonnet|haiku)-[5-9]|fable|mythos)"
)
_ADAPTIVE_ONLY = re.compile(r"^claude-(?:opus-4-[7-9]|(?:opus|sonnet|haiku)-[5-9]|fable|mythos)")
_SAMPLING = frozenset({"temperature", "top_p", "top_k"})


def adaptive_thinking(model: str) -> bool:
    """Whether ``model`` takes ``{"type": "adaptive"}`` thinking (and is asked that way)."""
    return _ADAPTIVE.match(model) is not None


def adaptive_only(model: str) -> bool:
    """Whether ``model`` refuses manual and disabled thinking and non-default sampling."""
    return _ADAPTIVE_ONLY.match(model) is not None


_FINISH = {
    "end_turn": chat_pb2.FINISH_REASON_STOP,
    "stop_sequence": chat_pb2.FINISH_REASON_STOP,
    "pause_turn": chat_pb2.FINISH_REASON_STOP,
    "max_tokens": chat_pb2.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": chat_pb2.FINISH_REASON_LENGTH,
    "tool_use": chat_pb2.FINISH_REASON_TOOL_CALLS,
    "refusal": chat_pb2.FINISH_REASON_CONTENT_FILTER,
}

# Error ``type`` -> the HTTP status it comes with, so that errors inside a 200 stream
# (which have no status of their own) classify like the same error as a response.
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_CONTEXT_RE = re.compile(
    r"(?:prompt is too long|exceed context limit)[^>]*>\s*(\d+)", re.IGNORECASE
)

_EPHEMERAL = {"type": "ephemeral"}
# ToolChoice -> tool_choice type (a named function is {"type": "tool", "name": ...}).
_CHOICE_TYPES = {"none": "none", "required": "any"}


def finish_reason(stop_reason: str | None, *, structured: bool = False) -> chat_pb2.FinishReason:
    """The normalised finish reason; the forced structured-output tool is a normal stop."""
    if structured and stop_reason == "tool_use":
        return chat_pb2.FINISH_REASON_STOP
    return _FINISH.get(stop_reason or "", chat_pb2.FINISH_REASON_UNSPECIFIED)


def usage_from_wire(usage: Mapping[str, Any]) -> chat_pb2.Usage:
    """Normalised usage; the TTL breakdown of ``cache_creation`` and ``server_tool_use``
    request counts have no field in ``Usage`` and are left out."""
    fresh = int(usage.get("input_tokens") or 0)
    read = usage.get("cache_read_input_tokens")
    created = usage.get("cache_creation_input_tokens")
    prompt = fresh + int(read or 0) + int(created or 0)
    completion = int(usage.get("output_tokens") or 0)
    result = chat_pb2.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    if read is not None:
        result.cached_prompt_tokens = int(read)
    if created is not None:
        result.cache_creation_tokens = int(created)
    details = usage.get("output_tokens_details")
    if isinstance(details, Mapping) and isinstance(details.get("thinking_tokens"), int):
        result.reasoning_tokens = details["thinking_tokens"]
    return result


# -- request ------------------------------------------------------------------------------------


def _image_block(image: chat_pb2.ImagePart, field: str) -> dict[str, Any]:
    source = image_source(image, field)
    if isinstance(source, InlineImage):
        wire = {"type": "base64", "media_type": source.mime_type, "data": source.base64_data}
    else:
        wire = {"type": "url", "url": source.url}
    return {"type": "image", "source": wire}


def _content_blocks(message: chat_pb2.Message, field: str, *, images: bool) -> list[dict[str, Any]]:
    """Text (and, where the API takes them, image) blocks of a message, in order."""
    refused = None if images else "Anthropic takes images only in user and tool messages"
    return [
        {"type": "text", "text": piece} if isinstance(piece, str) else _image_block(*piece)
        for piece in message_pieces(message, field, refused)
    ]


def _document_block(part: media_parts_pb2.DocumentPart) -> dict[str, Any]:
    """A ``document`` block (PDF bytes as base64, a PDF URL, or plain text), with its
    title and citations as asked; the API reference's DocumentBlockParam."""
    source: dict[str, Any]
    if part.WhichOneof("source") == "url":
        source = {"type": "url", "url": part.url}
    elif part.mime_type == "text/plain":
        text = part.data.decode("utf-8", errors="replace")
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        data = base64.b64encode(part.data).decode()
        source = {"type": "base64", "media_type": "application/pdf", "data": data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.title:
        block["title"] = part.title
    if part.citations:
        block["citations"] = {"enabled": True}
    return block


def _document_blocks(message: chat_pb2.Message) -> list[dict[str, Any]]:
    """A user message's documents, ahead of its text (where Anthropic advises them)."""
    return [
        _document_block(part.document)
        for part in message.parts
        if part.WhichOneof("part") == "document"
    ]


def citation_from_wire(item: Mapping[str, Any]) -> media_parts_pb2.Citation | None:
    """A ``page_location`` or ``char_location`` citation (others are not kept)."""
    kind = item.get("type")
    citation = media_parts_pb2.Citation(
        cited_text=str(item.get("cited_text") or ""),
        document_index=int(item.get("document_index") or 0),
        document_title=str(item.get("document_title") or ""),
    )
    if kind == "page_location":
        citation.start_page = int(item.get("start_page_number") or 0)
        citation.end_page = int(item.get("end_page_number") or 0)
    elif kind == "char_location":
        citation.start_char = int(item.get("start_char_index") or 0)
        citation.end_char = int(item.get("end_char_index") or 0)
    else:
        return None
    return citation


def _reasoning_blocks(message: chat_pb2.Message) -> list[dict[str, Any]]:
    """Earlier thinking, sent back as the API requires; unsigned blocks and other APIs'
    blocks cannot be verified by Anthropic and are left out."""
    blocks: list[dict[str, Any]] = []
    for block in verifiable_by(message.reasoning_blocks, ANTHROPIC_FORMAT):
        if block.redacted_data:
            data = block.redacted_data.decode("utf-8", errors="replace")
            blocks.append({"type": "redacted_thinking", "data": data})
        elif block.signature:
            blocks.append(
                {"type": "thinking", "thinking": block.text, "signature": block.signature}
            )
    return blocks


def _tool_result(message: chat_pb2.Message, field: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.parts:
        block["content"] = _content_blocks(message, field, images=True)
    elif message.content:
        block["content"] = message.content
    return block


def _system_blocks(message: chat_pb2.Message, field: str) -> list[dict[str, Any]]:
    return _content_blocks(message, field, images=False)


def _turn(message: chat_pb2.Message, field: str) -> tuple[str, list[dict[str, Any]]]:
    """A message's role on the wire and its blocks (empty ones are refused there)."""
    if message.role == chat_pb2.ROLE_TOOL:
        return "user", [_tool_result(message, field)]
    if message.role != chat_pb2.ROLE_ASSISTANT:
        return "user", _document_blocks(message) + _content_blocks(message, field, images=True)
    blocks = _reasoning_blocks(message)
    blocks.extend(_content_blocks(message, field, images=False))
    blocks.extend(
        {
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": arguments_object(call.arguments),
        }
        for call in message.tool_calls
    )
    return "assistant", blocks


def messages_to_wire(
    messages: Sequence[chat_pb2.Message],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, conversation turns) for the Messages API."""
    system, turns = role_turns(messages, _system_blocks, _turn, "content")
    for turn in turns:
        if turn["role"] == "user":
            # Tool results must open the user turn that follows the tool calls.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return system, turns


def _tool_to_wire(tool: chat_pb2.ToolDefinition) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": tool.name}
    if tool.description:
        wire["description"] = tool.description
    wire["input_schema"] = tool_parameters(tool)
    if tool.cache_control_json.strip():
        wire["cache_control"] = orjson.loads(tool.cache_control_json)
    return wire


def _tool_choice(choice: chat_pb2.ToolChoice) -> dict[str, Any]:
    which = choice.WhichOneof("choice")
    if which == "function":
        return {"type": "tool", "name": choice.function}
    return {"type": _CHOICE_TYPES.get(which or "", "auto")}


def thinking_budget(reasoning: chat_pb2.ReasoningConfig) -> int | None:
    """The thinking budget a ReasoningConfig asks for; None means thinking off."""
    if reasoning.HasField("max_tokens"):
        return max(MIN_THINKING_BUDGET, reasoning.max_tokens)
    if reasoning.HasField("effort"):
        if reasoning.effort == chat_pb2.REASONING_EFFORT_NONE:
            return None
        return EFFORT_BUDGETS.get(
            reasoning.effort, EFFORT_BUDGETS[chat_pb2.REASONING_EFFORT_MEDIUM]
        )
    # A config with neither (e.g. only exclude_from_output) still asks for reasoning.
    return EFFORT_BUDGETS[chat_pb2.REASONING_EFFORT_MEDIUM]


def _add_cache_breakpoint(body: dict[str, Any]) -> None:
    """options.cache_prompt: cache the prompt prefix up to the last system block, else
    up to the tools, else up to the last message (Anthropic caches everything before a
    ``cache_control`` marker)."""
    if body.get("system"):
        body["system"][-1]["cache_control"] = dict(_EPHEMERAL)
    elif body.get("tools"):
        body["tools"][-1].setdefault("cache_control", dict(_EPHEMERAL))
    elif body["messages"] and body["messages"][-1]["content"]:
        body["messages"][-1]["content"][-1]["cache_control"] = dict(_EPHEMERAL)


@dataclass(slots=True)
class RequestPlan:
    """What the response parser must know about how the request was built."""

    body: dict[str, Any]
    structured_tool: bool  # the answer arrives as the input of STRUCTURED_TOOL
    show_reasoning: bool


def build_request(
    request: ChatLike, model: str, *, stream: bool, default_max_tokens: int
) -> RequestPlan:
    """The Messages API body for a chat request, and how to read its answer.

    ``exclude_from_output`` hides reasoning text and signatures from the answer, but the
    signed blocks stay in ``ChatResponse.reasoning_blocks`` so the turn can be sent back.
    """
    options = request.options
    system, turns = messages_to_wire(request.messages)
    body: dict[str, Any] = {"model": model, "messages": turns}
    if adaptive_thinking(model):
        thinking = _add_adaptive_thinking(body, options, default_max_tokens, model)
    else:
        thinking = _add_thinking(body, options, default_max_tokens)
    tools = [_tool_to_wire(t) for t in request.tools]
    # Adaptive-only models may think unasked, and refuse a forced tool while they do.
    forced_ok = not thinking and not adaptive_only(model)
    structured_tool = _add_structured_output(body, options, system, tools, thinking=not forced_ok)
    if system:
        body["system"] = system
    if tools:
        body["tools"] = tools
    if not structured_tool and request.tools:
        _add_tool_choice(body, options)
    _add_sampling(body, options, thinking=thinking)
    if options.stop:
        body["stop_sequences"] = list(options.stop)
    if options.HasField("cache_prompt") and options.cache_prompt:
        _add_cache_breakpoint(body)
    if stream:
        body["stream"] = True
    if options.HasField("raw_provider_options"):
        body.update(orjson.loads(options.raw_provider_options))
    hidden = options.HasField("reasoning") and options.reasoning.exclude_from_output
    return RequestPlan(body, structured_tool, show_reasoning=not hidden)


def _add_thinking(body: dict[str, Any], options: chat_pb2.ChatOptions, default: int) -> bool:
    """``thinking`` and ``max_tokens``, which must exceed the thinking budget; whether
    thinking is on. Without max_tokens, the budget comes on top of the default."""
    budget = thinking_budget(options.reasoning) if options.HasField("reasoning") else None
    max_tokens = options.max_tokens if options.HasField("max_tokens") else None
    if budget is None:
        if options.HasField("reasoning"):
            body["thinking"] = {"type": "disabled"}
        body["max_tokens"] = max_tokens or default
        return False
    if max_tokens is None:
        max_tokens = default + budget
    elif budget >= max_tokens:
        budget = max_tokens - 1
        if budget < MIN_THINKING_BUDGET:
            raise errors.InvalidInput(
                f"options.max_tokens: Anthropic extended thinking needs max_tokens above "
                f"{MIN_THINKING_BUDGET} (the thinking budget counts towards it), "
                f"got {max_tokens}",
                field="options.max_tokens",
            )
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] = max_tokens
    return True


def _add_adaptive_thinking(
    body: dict[str, Any], options: chat_pb2.ChatOptions, default: int, model: str
) -> bool:
    """``thinking: {"type": "adaptive"}`` with ``output_config.effort`` for the models
    that think that way; whether thinking was asked for. A token budget has no place
    there (the effort is the model's default then); effort NONE disables thinking where
    the model allows it and is left to the model's default where it does not."""
    body["max_tokens"] = options.max_tokens if options.HasField("max_tokens") else default
    if not options.HasField("reasoning"):
        return False
    reasoning = options.reasoning
    if reasoning.HasField("effort") and reasoning.effort == chat_pb2.REASONING_EFFORT_NONE:
        if not adaptive_only(model):
            body["thinking"] = {"type": "disabled"}
        else:
            log.debug("%s cannot turn thinking off: left to the model", model)
        return False
    body["thinking"] = {"type": "adaptive"}
    if reasoning.HasField("effort") and reasoning.effort in EFFORT_LEVELS:
        body.setdefault("output_config", {})["effort"] = EFFORT_LEVELS[reasoning.effort]
    elif reasoning.HasField("max_tokens"):
        log.debug("%s thinks adaptively: the thinking budget is left out", model)
    return True


def _add_structured_output(
    body: dict[str, Any],
    options: chat_pb2.ChatOptions,
    system: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    thinking: bool,
) -> bool:
    """A JSON response format; whether the answer arrives as ``STRUCTURED_TOOL``'s input.

    A forced tool is used where it can be, since every Claude model supports that; with
    thinking on (the API refuses forced tools then) or with the caller's own tools, a
    schema goes to the native ``output_config.format`` and a schemaless JSON request
    becomes an instruction in ``system``.
    """
    fmt = (
        options.response_format.WhichOneof("format")
        if options.HasField("response_format")
        else None
    )
    if fmt not in ("json_object", "json_schema"):
        return False
    schema: dict[str, Any] | None = None
    if fmt == "json_schema":
        _, schema = unwrap_json_schema(options.response_format.json_schema)
    if not thinking and not tools:
        tools.append(
            {
                "name": STRUCTURED_TOOL,
                "description": "Answer with the requested JSON object as this tool's input.",
                "input_schema": schema or {"type": "object"},
            }
        )
        body["tool_choice"] = {"type": "tool", "name": STRUCTURED_TOOL}
        return True
    if schema is not None:
        body.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": schema}
    else:
        system.append(
            {"type": "text", "text": "Respond with a single JSON object and nothing else."}
        )
    return False


def _add_tool_choice(body: dict[str, Any], options: chat_pb2.ChatOptions) -> None:
    """The caller's tool choice; no parallel calls is a flag on it (unless it is none)."""
    choice = _tool_choice(options.tool_choice) if options.HasField("tool_choice") else None
    if options.HasField("parallel_tool_calls") and not options.parallel_tool_calls:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        body["tool_choice"] = choice


def _add_sampling(body: dict[str, Any], options: chat_pb2.ChatOptions, *, thinking: bool) -> None:
    """Temperature, top_p and top_k. Extended thinking refuses temperature and top_k, and
    top_p below 0.95: the thinking request wins and those are left out."""
    dropped: list[str] = []
    for name in ("temperature", "top_p", "top_k"):
        if not options.HasField(name):
            continue
        value = getattr(options, name)
        if thinking and (name != "top_p" or value < 0.95):
            dropped.append(name)
        else:
            body[name] = value if name == "top_k" else round(value, 6)
    if dropped:
        log.debug("extended thinking is on: %s left out of the request", ", ".join(dropped))


# -- response -----------------------------------------------------------------------------------


def parse_message(
    data: Mapping[str, Any], model: str, provider: str, plan: RequestPlan
) -> chat_pb2.ChatResponse:
    if data.get("type") != "message" and "content" not in data:
        raise errors.UpstreamProtocolError(
            f"{provider}: the response is not a message", provider=provider, model=model
        )
    text: list[str] = []
    reasoning: list[str] = []
    response = chat_pb2.ChatResponse(model=data.get("model") or model, provider=provider)
    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
            for item in block.get("citations") or ():
                found = citation_from_wire(item) if isinstance(item, dict) else None
                if found is not None:
                    response.citations.append(found)
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            response.reasoning_blocks.add(
                text=block.get("thinking") or "",
                signature=block.get("signature") or "",
                format=ANTHROPIC_FORMAT,
            )
        elif kind == "redacted_thinking":
            response.reasoning_blocks.add(
                redacted_data=str(block.get("data") or "").encode(), format=ANTHROPIC_FORMAT
            )
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if plan.structured_tool and block.get("name") == STRUCTURED_TOOL:
                text.append(arguments)
            else:
                response.tool_calls.add(
                    id=block.get("id") or "", name=block.get("name") or "", arguments=arguments
                )
    response.content = "".join(text)
    if reasoning and plan.show_reasoning:
        response.reasoning = "\n\n".join(reasoning)
    response.finish_reason = finish_reason(
        data.get("stop_reason"), structured=plan.structured_tool and not response.tool_calls
    )
    if isinstance(data.get("usage"), dict):
        response.usage.CopyFrom(usage_from_wire(data["usage"]))
    return response


@dataclass(slots=True)
class _Block:
    kind: str
    tool_index: int = -1
    structured: bool = False
    arguments_sent: bool = False
    # A thinking block's text and signature, or a redacted block's data, kept to send the
    # whole block when it ends.
    thinking: list[str] = field(default_factory=list)
    signature: str = ""
    redacted: str = ""


class StreamAssembler:
    """Turns Messages API stream events into ChatStreamResponse events, in order.

    Text and thinking deltas pass through as they arrive; a ``signature_delta`` becomes a
    ``reasoning_signature`` event, and the end of a thinking or redacted thinking block a
    ``reasoning_block`` event with the whole block (to send back); a ``tool_use`` block
    becomes ToolCallStart, its ``input_json_delta`` pieces ToolCallDelta exactly as sent,
    and its ``content_block_stop`` ToolCallEnd. Usage merges ``message_start`` with every
    ``message_delta`` (output tokens are cumulative there).
    """

    def __init__(self, plan: RequestPlan, model: str, provider: str) -> None:
        self.plan = plan
        self.model = model
        self.provider = provider
        self.stop_reason: str | None = None
        self.stopped = False
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        self._tool_calls = 0
        self._thinking_blocks = 0

    @property
    def usage(self) -> chat_pb2.Usage | None:
        return usage_from_wire(self._usage) if self._usage else None

    @property
    def finish_reason(self) -> chat_pb2.FinishReason:
        structured = self.plan.structured_tool and self._tool_calls == 0
        return finish_reason(self.stop_reason, structured=structured)

    @property
    def complete(self) -> bool:
        """A stop reason came (``message_delta``): a stream cut before it is an error."""
        return self.stop_reason is not None

    @property
    def ended(self) -> bool:
        return self.stopped

    def finish(self) -> list[chat_pb2.ChatStreamResponse]:
        """The usage (when the upstream reported any) and ``done``."""
        done = chat_pb2.ChatStreamResponse(
            done=True, finish_reason=self.finish_reason, model=self.model, provider=self.provider
        )
        usage = self.usage
        return [done] if usage is None else [chat_pb2.ChatStreamResponse(usage=usage), done]

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def feed(self, event: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.model = message.get("model") or self.model
            self._merge_usage(message.get("usage"))
        elif kind == "content_block_start":
            return self._start(int(event.get("index", 0)), event.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._delta(int(event.get("index", 0)), event.get("delta") or {})
        elif kind == "content_block_stop":
            return self._stop(int(event.get("index", 0)))
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self._merge_usage(event.get("usage"))
        elif kind == "message_stop":
            self.stopped = True
        # ping and event types this version does not know carry nothing for the caller.
        return []

    def _start(self, index: int, block: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        kind = str(block.get("type") or "")
        state = self._blocks[index] = _Block(kind)
        if kind == "text" and block.get("text"):
            return [chat_pb2.ChatStreamResponse(content=block["text"])]
        if kind == "redacted_thinking":
            state.redacted = str(block.get("data") or "")
            return []
        if kind == "thinking":
            self._thinking_blocks += 1
            state.thinking.append(str(block.get("thinking") or ""))
            state.signature = str(block.get("signature") or "")
            out: list[chat_pb2.ChatStreamResponse] = []
            if self._thinking_blocks > 1 and self.plan.show_reasoning:
                # Chat joins the blocks' texts with a blank line; so does the stream.
                out.append(chat_pb2.ChatStreamResponse(reasoning="\n\n"))
            if block.get("thinking") and self.plan.show_reasoning:
                out.append(chat_pb2.ChatStreamResponse(reasoning=block["thinking"]))
            return out
        if kind == "tool_use":
            if self.plan.structured_tool and block.get("name") == STRUCTURED_TOOL:
                state.structured = True
                return []
            state.tool_index = self._tool_calls
            self._tool_calls += 1
            start = chat_pb2.ToolCallStart(
                index=state.tool_index, id=block.get("id") or "", name=block.get("name") or ""
            )
            return [chat_pb2.ChatStreamResponse(tool_call_start=start)]
        return []

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        kind = delta.get("type")
        state = self._blocks.get(index)
        if kind == "text_delta" and delta.get("text"):
            return [chat_pb2.ChatStreamResponse(content=delta["text"])]
        if kind == "citations_delta" and isinstance(delta.get("citation"), dict):
            found = citation_from_wire(delta["citation"])
            return [] if found is None else [chat_pb2.ChatStreamResponse(citation=found)]
        if kind == "thinking_delta" and delta.get("thinking"):
            if state is not None:
                state.thinking.append(str(delta["thinking"]))
            if self.plan.show_reasoning:
                return [chat_pb2.ChatStreamResponse(reasoning=delta["thinking"])]
        if kind == "signature_delta" and delta.get("signature"):
            if state is not None:
                state.signature = str(delta["signature"])
            if self.plan.show_reasoning:
                return [chat_pb2.ChatStreamResponse(reasoning_signature=delta["signature"])]
        if kind == "input_json_delta" and state is not None and delta.get("partial_json"):
            return self._arguments(state, str(delta["partial_json"]))
        return []

    @staticmethod
    def _arguments(state: _Block, piece: str) -> list[chat_pb2.ChatStreamResponse]:
        """A piece of a tool call's arguments, exactly as sent; the structured-output
        tool's arguments are the answer's content."""
        state.arguments_sent = True
        if state.structured:
            return [chat_pb2.ChatStreamResponse(content=piece)]
        if state.tool_index >= 0:
            call = chat_pb2.ToolCallDelta(index=state.tool_index, arguments=piece)
            return [chat_pb2.ChatStreamResponse(tool_call_delta=call)]
        return []

    def _stop(self, index: int) -> list[chat_pb2.ChatStreamResponse]:
        state = self._blocks.get(index)
        if state is None:
            return []
        if state.kind == "thinking":
            block = chat_pb2.ReasoningBlock(
                text="".join(state.thinking), signature=state.signature, format=ANTHROPIC_FORMAT
            )
            return [chat_pb2.ChatStreamResponse(reasoning_block=block)]
        if state.kind == "redacted_thinking":
            block = chat_pb2.ReasoningBlock(
                redacted_data=state.redacted.encode(), format=ANTHROPIC_FORMAT
            )
            return [chat_pb2.ChatStreamResponse(reasoning_block=block)]
        if state.kind != "tool_use":
            return []
        out: list[chat_pb2.ChatStreamResponse] = []
        if not state.arguments_sent:
            # A call without arguments streams no JSON at all; say "{}" as Chat does.
            if state.structured:
                out.append(chat_pb2.ChatStreamResponse(content="{}"))
            else:
                call = chat_pb2.ToolCallDelta(index=state.tool_index, arguments="{}")
                out.append(chat_pb2.ChatStreamResponse(tool_call_delta=call))
        if not state.structured:
            end = chat_pb2.ToolCallEnd(index=state.tool_index)
            out.append(chat_pb2.ChatStreamResponse(tool_call_end=end))
        return out


# -- the dialect --------------------------------------------------------------------------------


class MessagesDialect:
    """The Messages API as pure hooks (``ChatDialect``): the request body, its answer,
    its stream and its errors. The request plan (the structured-output tool, whether
    reasoning is shown) travels in ``UpstreamCall.plan`` to the parser and assembler."""

    def __init__(self, provider: str, default_max_tokens: int) -> None:
        self.provider = provider
        self.default_max_tokens = default_max_tokens

    def chat_call(
        self, request: ChatLike, model: str, *, stream: bool
    ) -> UpstreamCall[chat_pb2.ChatStreamResponse]:
        plan = build_request(
            request, model, stream=stream, default_max_tokens=self.default_max_tokens
        )
        return UpstreamCall(MESSAGES_PATH, plan.body, model, plan=plan)

    def parse_chat(
        self, data: dict[str, Any], call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> chat_pb2.ChatResponse:
        return parse_message(data, call.model, self.provider, call.plan)

    def chat_assembler(self, call: UpstreamCall[chat_pb2.ChatStreamResponse]) -> StreamAssembler:
        return StreamAssembler(call.plan, call.model, self.provider)

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        """The error an Anthropic error body means (``{"type":"error","error":{...}}``),
        classified by the error's type first (errors inside a stream have no status)."""
        obj = body.get("error") if isinstance(body, dict) else None
        kind, message = "", ""
        if isinstance(obj, dict):
            kind = str(obj.get("type") or "")
            message = str(obj.get("message") or "")
        elif isinstance(body, str):
            message = body[:300]
        # A type this version does not know, inside a 200 stream: the upstream failed.
        mapped = _TYPE_STATUS.get(kind, 502 if status == 200 else status)
        error = error_for_status(
            mapped,
            message,
            provider=self.provider,
            model=model,
            headers=headers,
            upstream_code=kind,
        )
        if kind == "invalid_request_error" or mapped == 400:
            match = _CONTEXT_RE.search(message)
            if match or "prompt is too long" in message.lower():
                limit = int(match.group(1)) if match else None
                return retyped(errors.ContextLengthExceeded, error, limit=limit)
            if "credit balance is too low" in message.lower():
                return retyped(errors.QuotaExceeded, error)
        return error

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        """An error object in a 200 answer, or a stream's ``event: error`` (whose data
        says ``"type": "error"`` too)."""
        if isinstance(data, dict) and data.get("type") == "error":
            return self.error_from_body(200, data, model)
        return None


# -- the provider -------------------------------------------------------------------------------


class AnthropicProvider(HttpProvider):
    """Chat over the Messages API, and the model list; the key goes in ``x-api-key``."""

    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        super().__init__(name, config, api_key)
        self.dialect = MessagesDialect(name, config.default_max_tokens)

    def default_headers(self) -> dict[str, str]:
        return {"anthropic-version": API_VERSION}

    def auth_headers(self, api_key: Secret) -> dict[str, str]:
        return {"x-api-key": api_key.reveal()}

    def unsupported_parameters(self, model: str) -> frozenset[str]:
        base = frozenset({"frequency_penalty", "presence_penalty", "seed"})
        return base | _SAMPLING if adaptive_only(model) else base

    async def count_tokens(self, text: str, model: str) -> inference_pb2.CountTokensResponse:
        """``POST /v1/messages/count_tokens`` for ``text`` as one user message (the
        count includes the few tokens the API adds around a message)."""
        if not text:
            return inference_pb2.CountTokensResponse(count=0, tokenizer=model)
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        data = await self.call_json(
            "POST", COUNT_TOKENS_PATH, body, model=model, errors_from=self.dialect
        )
        if not isinstance(data.get("input_tokens"), int):
            raise self.protocol_error("count_tokens answered without input_tokens", model)
        return inference_pb2.CountTokensResponse(count=data["input_tokens"], tokenizer=model)

    def media_parts(self, model: str) -> frozenset[str]:
        """PDF and plain-text ``document`` blocks (no audio or video in the API)."""
        return frozenset({"document"})

    async def list_models(self) -> list[models_pb2.ModelInfo]:
        """Every model of ``GET /v1/models``, following its pages."""
        found: list[models_pb2.ModelInfo] = []
        after: str | None = None
        for _ in range(anthropic_models.MAX_PAGES):
            page = await self.call_json("GET", anthropic_models.page_path(after))
            found.extend(anthropic_models.model_infos(page, self.name))
            after = anthropic_models.next_page(page)
            if after is None:
                break
        return found
