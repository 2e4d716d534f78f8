"""Google's Gemini Interactions API (``POST /v1beta/interactions``, GA June 2026) as a
dialect of the ``google`` provider, and the calls of its background mode.

Reference: the Interactions API reference and guides on ai.google.dev (quickstart,
background execution; ``Api-Revision: 2026-05-20``, the revision with typed *steps*),
cross-checked against the types of the ``google-genai`` 3.6.1 SDK
(``google/genai/_gaos/types/interactions``). What this dialect has to get right:

* A conversation is a list of *steps* in ``input``: ``user_input`` (``content`` of
  ``text`` / ``image`` items), ``model_output``, ``thought`` (``signature``, ``summary``),
  ``function_call`` (``id``, ``name``, ``arguments`` as an object) and
  ``function_result`` (``call_id``, ``name``, ``result``). System messages go to
  ``system_instruction``, a string. Function calls carry real ids, and the thought
  signatures go back as ``thought`` steps ahead of the calls they came with.
* ``generation_config`` takes ``temperature``, ``top_p``, ``max_output_tokens``,
  ``seed``, ``stop_sequences``, ``thinking_level`` (``minimal`` .. ``xhigh``; there is no
  token budget, so a budget is mapped to the nearest level), ``thinking_summaries``
  (``auto``/``none``) and ``tool_choice``. No top_k and no penalties.
* Structured output is ``response_format: {"type": "text", "mime_type":
  "application/json", "schema": <JSON Schema>}``; tools are ``{"type": "function", name,
  description, parameters}`` with plain JSON Schema.
* ``store`` is true upstream by default: ratd sends ``store: false`` unless it runs the
  interaction in the background, which must be stored to be fetched again.
* The answer is an Interaction: ``id``, ``status`` (``completed``, ``requires_action``
  when it waits for function results, ``incomplete``, ``failed``, ``cancelled``,
  ``in_progress``...), ``steps`` and ``usage`` (``total_input_tokens``,
  ``total_output_tokens`` without thoughts, ``total_thought_tokens``,
  ``total_cached_tokens``, ``total_tool_use_tokens``, ``total_tokens``).
* The stream (SSE, ``"stream": true``) carries ``event_type``: ``interaction.created``,
  ``interaction.status_update``, ``step.start`` (the step, maybe empty), ``step.delta``
  (``text``, ``thought_summary``, ``thought_signature``, ``arguments_delta``...),
  ``step.stop``, ``interaction.completed`` (status and usage, without the steps) and
  ``error``. No ``[DONE]``.
* Agents (Deep Research, Antigravity) are named in ``agent`` instead of ``model`` and
  take no ``generation_config``; they run in the background.
* HTTP errors are Google's ``{"error": {code, message, status, details}}``, classified as
  for ``generateContent``; an ``error`` event or a failed interaction carries
  ``{code, message}`` with a string code.

``InteractionsDialect`` is pure; ``Interactions`` adds the background calls (start, poll,
cancel) on the provider's transport, for chat now and for long-running jobs later.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from google.rpc import code_pb2

from ratatoskr.v1 import chat_pb2
from ratd import errors
from ratd.providers import gemini_models as gm
from ratd.providers.base import ChatLike
from ratd.providers.http import error_for_status
from ratd.providers.http_provider import ErrorDialect, UpstreamCall
from ratd.providers.messages import (
    InlineImage,
    UsageNames,
    arguments_object,
    counted_usage,
    image_source,
    message_pieces,
    tool_result_value,
    unwrap_json_schema,
)
from ratd.providers.reasoning_blocks import GEMINI_FORMAT, verifiable_by

if TYPE_CHECKING:
    from ratd.providers.http_provider import HttpProvider

log = logging.getLogger(__name__)

PATH = f"{gm.API_PREFIX}/interactions"
API_REVISION = "2026-05-20"
HEADERS = {"Api-Revision": API_REVISION}
# The API names of the google kind (specs.py): the default, this dialect, and this
# dialect run in the background (polled until done).
INTERACTIONS, BACKGROUND = "interactions", "interactions_background"

# The agents of the reference's AgentOption: named in ``agent``, always in the background.
AGENT_PREFIXES = ("deep-research-", "antigravity-")

THINKING_LEVELS = ("minimal", "low", "medium", "high", "xhigh")
EFFORT_LEVELS = {
    chat_pb2.REASONING_EFFORT_NONE: "minimal",
    chat_pb2.REASONING_EFFORT_MINIMAL: "minimal",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
    chat_pb2.REASONING_EFFORT_XHIGH: "xhigh",
}
# A reasoning budget (tokens) as the least level that thinks at least about that much.
BUDGET_LEVELS = ((0, "minimal"), (1024, "low"), (8192, "medium"), (24576, "high"))

# Statuses after which the interaction changes no more.
DONE_STATUSES = frozenset(
    {"completed", "requires_action", "incomplete", "budget_exceeded", "failed", "cancelled"}
)
_FINISH = {
    "completed": chat_pb2.FINISH_REASON_STOP,
    "requires_action": chat_pb2.FINISH_REASON_TOOL_CALLS,
    "incomplete": chat_pb2.FINISH_REASON_LENGTH,
    "budget_exceeded": chat_pb2.FINISH_REASON_LENGTH,
}
# The status names of google.rpc.Code an error's string ``code`` may hold, as HTTP statuses.
_RPC_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def is_agent(model: str) -> bool:
    return model.startswith(AGENT_PREFIXES)


def interaction_path(interaction_id: str, action: str = "") -> str:
    path = f"{PATH}/{quote(interaction_id, safe='')}"
    return f"{path}/{action}" if action else path


# -- request ------------------------------------------------------------------------------------


def _content(piece: str | tuple[chat_pb2.ImagePart, str]) -> dict[str, Any]:
    if isinstance(piece, str):
        return {"type": "text", "text": piece}
    image, where = piece
    source = image_source(image, where)
    if isinstance(source, InlineImage):
        return {"type": "image", "data": source.base64_data, "mime_type": source.mime_type}
    wire = {"type": "image", "uri": source.url}
    if source.mime_type:
        wire["mime_type"] = source.mime_type
    return wire


def _model_steps(message: chat_pb2.Message, field: str) -> list[dict[str, Any]]:
    """An assistant turn: its thoughts (signed, of this API's format) first, then what
    it said, then its calls."""
    steps: list[dict[str, Any]] = []
    for block in verifiable_by(message.reasoning_blocks, GEMINI_FORMAT):
        if not block.signature:
            continue  # a thought step without its signature proves nothing
        thought: dict[str, Any] = {"type": "thought", "signature": block.signature}
        if block.text:
            thought["summary"] = [{"type": "text", "text": block.text}]
        steps.append(thought)
    content = [_content(p) for p in message_pieces(message, field)]
    if content:
        steps.append({"type": "model_output", "content": content})
    for call in message.tool_calls:
        steps.append(
            {
                "type": "function_call",
                "id": call.id,
                "name": call.name,
                "arguments": arguments_object(call.arguments),
            }
        )
    return steps


def _function_result(
    message: chat_pb2.Message, field: str, names: Mapping[str, str]
) -> dict[str, Any]:
    """A tool message: its JSON object or text as ``result``; with images, a list of
    contents (a bare JSON list would read as contents, so other JSON goes as text)."""
    pieces = message_pieces(message, field)
    text = "".join(p for p in pieces if isinstance(p, str))
    result: Any
    if any(not isinstance(p, str) for p in pieces):
        result = [_content(p) for p in pieces]
    else:
        value = tool_result_value(text)
        result = value if isinstance(value, dict) else text
    step: dict[str, Any] = {
        "type": "function_result",
        "call_id": message.tool_call_id,
        "result": result,
    }
    if message.tool_call_id in names:
        step["name"] = names[message.tool_call_id]
    return step


def input_steps(messages: Sequence[chat_pb2.Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system instruction, input steps) of a conversation."""
    system: list[str] = []
    steps: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if message.role == chat_pb2.ROLE_SYSTEM:
            refused = "the Interactions API takes a text-only system instruction"
            system.extend(str(p) for p in message_pieces(message, field, refused))
        elif message.role == chat_pb2.ROLE_ASSISTANT:
            steps.extend(_model_steps(message, field))
            names.update((call.id, call.name) for call in message.tool_calls)
        elif message.role == chat_pb2.ROLE_TOOL:
            steps.append(_function_result(message, field, names))
        else:
            content = [_content(p) for p in message_pieces(message, field)]
            content += [_media(part) for part in message.parts if part.WhichOneof("part") in _MEDIA]
            if content:
                steps.append({"type": "user_input", "content": content})
    return "\n\n".join(system), steps


# Documents, audio and video of a user turn: DocumentContent, AudioContent, VideoContent
# (google-genai 3.6.1's interactions types): base64 ``data`` with ``mime_type``, or ``uri``.
_MEDIA = ("document", "audio", "video")


def _media(part: chat_pb2.ContentPart) -> dict[str, Any]:
    kind = part.WhichOneof("part") or "document"
    media = getattr(part, kind)
    wire: dict[str, Any] = {"type": kind}
    if media.WhichOneof("source") == "url":
        wire["uri"] = media.url
    else:
        wire["data"] = base64.b64encode(media.data).decode()
    if media.mime_type:
        wire["mime_type"] = media.mime_type
    return wire


def _function_tool(tool: chat_pb2.ToolDefinition) -> dict[str, Any]:
    wire: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        wire["description"] = tool.description
    if tool.parameters_json.strip():
        wire["parameters"] = orjson.loads(tool.parameters_json)
    return wire


def _tool_choice(choice: chat_pb2.ToolChoice) -> Any:
    which = choice.WhichOneof("choice")
    if which == "none":
        return "none"
    if which == "required":
        return "any"
    if which == "function":
        return {"allowed_tools": {"mode": "any", "tools": [choice.function]}}
    return "auto"


def thinking_level(reasoning: chat_pb2.ReasoningConfig, model: str) -> str | None:
    """The level a ReasoningConfig asks for (a budget: the least level at or above it);
    the Pro models take no ``minimal``."""
    level: str | None = None
    if reasoning.HasField("max_tokens"):
        budget = reasoning.max_tokens
        level = next((lv for limit, lv in BUDGET_LEVELS if budget <= limit), "xhigh")
    elif reasoning.HasField("effort"):
        level = EFFORT_LEVELS.get(reasoning.effort, "high")
    if level == "minimal" and "-pro" in model:
        level = "low"
    return level


_GENERATION_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("max_tokens", "max_output_tokens"),
    ("seed", "seed"),
)
# ChatOptions fields the API has no place for (agents take no generation_config at all).
UNSUPPORTED = frozenset({"top_k", "frequency_penalty", "presence_penalty", "parallel_tool_calls"})
AGENT_UNSUPPORTED = UNSUPPORTED | {"temperature", "top_p", "max_tokens", "seed", "stop"}


def _generation_config(options: chat_pb2.ChatOptions, model: str) -> tuple[dict[str, Any], bool]:
    """(generation_config, whether thought summaries are shown)."""
    config: dict[str, Any] = {}
    for name, wire in _GENERATION_FIELDS:
        if options.HasField(name):
            value = getattr(options, name)
            config[wire] = round(value, 6) if isinstance(value, float) else value
    if options.stop:
        config["stop_sequences"] = list(options.stop)
    show = True
    if options.HasField("reasoning"):
        level = thinking_level(options.reasoning, model)
        if level:
            config["thinking_level"] = level
        show = not options.reasoning.exclude_from_output
        config["thinking_summaries"] = "auto" if show else "none"
    return config, show


def _response_format(fmt: chat_pb2.ResponseFormat) -> dict[str, Any] | None:
    which = fmt.WhichOneof("format")
    if which == "json_schema":
        _, schema = unwrap_json_schema(fmt.json_schema)
        return {"type": "text", "mime_type": "application/json", "schema": schema}
    if which == "json_object":
        return {"type": "text", "mime_type": "application/json"}
    return None


@dataclass(slots=True)
class Plan:
    """What reading the answer needs."""

    show_reasoning: bool = True


def build_request(
    request: ChatLike, model: str, *, stream: bool, background: bool
) -> tuple[dict[str, Any], Plan]:
    options = request.options
    system, steps = input_steps(request.messages)
    agent = is_agent(model)
    body: dict[str, Any] = {"agent" if agent else "model": model, "input": steps}
    if system:
        body["system_instruction"] = system
    if request.tools:
        body["tools"] = [_function_tool(tool) for tool in request.tools]
    config, show = _generation_config(options, model)
    if options.HasField("tool_choice") and request.tools:
        config["tool_choice"] = _tool_choice(options.tool_choice)
    if agent:
        config = {}  # agents take an agent_config instead
        if options.HasField("reasoning") and model.startswith("deep-research-"):
            summaries = "auto" if show else "none"
            body["agent_config"] = {"type": "deep-research", "thinking_summaries": summaries}
    if config:
        body["generation_config"] = config
    if options.HasField("response_format"):
        fmt = _response_format(options.response_format)
        if fmt is not None:
            body["response_format"] = fmt
    if stream:
        body["stream"] = True
    if background:
        body["background"] = True
    # Stored upstream by default; only a background interaction must be (to be fetched).
    body["store"] = background
    if options.HasField("raw_provider_options"):
        body.update(orjson.loads(options.raw_provider_options))
    return body, Plan(show)


# -- response -----------------------------------------------------------------------------------


# The Interactions API's usage object.
USAGE_NAMES = UsageNames(
    prompt="total_input_tokens",
    tool_prompt="total_tool_use_tokens",
    output="total_output_tokens",
    thoughts="total_thought_tokens",
    cached="total_cached_tokens",
    total="total_tokens",
)


def usage_from_wire(usage: Mapping[str, Any]) -> chat_pb2.Usage:
    return counted_usage(usage, USAGE_NAMES)


def _texts(contents: Any) -> list[str]:
    """The texts of a list of contents (other kinds have no place in a chat reply)."""
    found = []
    for item in contents if isinstance(contents, list) else ():
        if isinstance(item, dict) and item.get("type") == "text" and item.get("text"):
            found.append(str(item["text"]))
    return found


@dataclass(slots=True)
class _Call:
    index: int
    id: str
    name: str
    start_arguments: Any = None
    pieces: list[str] = field(default_factory=list)


@dataclass(slots=True)
class InteractionAssembler:
    """Turns an interaction's stream events (or its whole steps, replayed as events) into
    ChatStreamResponse events and the whole answer, so that Chat and ChatStream read an
    interaction the same way (same ids, same blocks)."""

    provider: str
    show_reasoning: bool = True
    requested: str = ""
    model: str = ""
    interaction_id: str = ""
    status: str = ""
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    blocks: list[chat_pb2.ReasoningBlock] = field(default_factory=list)
    tool_calls: list[chat_pb2.ToolCall] = field(default_factory=list)
    usage: chat_pb2.Usage | None = None
    _kinds: dict[int, str] = field(default_factory=dict)
    _thought: list[str] = field(default_factory=list)
    _signature: str = ""
    _calls: dict[int, _Call] = field(default_factory=dict)
    _completed: bool = False
    _error: Any = None

    @property
    def complete(self) -> bool:
        return self._completed

    @property
    def ended(self) -> bool:
        return self._completed

    # -- events ---------------------------------------------------------------------------

    def feed(self, payload: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        kind = payload.get("event_type")
        if kind == "step.start":
            return self._start(_index(payload), payload.get("step") or {})
        if kind == "step.delta":
            return self._delta(_index(payload), payload.get("delta") or {})
        if kind == "step.stop":
            return self._stop(_index(payload))
        if kind in ("interaction.created", "interaction.completed"):
            self._interaction(payload.get("interaction") or {})
            if kind == "interaction.completed":
                self._settle()
        elif kind == "interaction.status_update":
            self.status = str(payload.get("status") or self.status)
            if isinstance(payload.get("usage"), dict):
                self.usage = usage_from_wire(payload["usage"])
        return []

    def whole(self, interaction: Mapping[str, Any]) -> None:
        """Read a whole interaction (the JSON answer, or one polled until done)."""
        for index, step in enumerate(interaction.get("steps") or ()):
            if isinstance(step, dict):
                self._start(index, step)
                self._stop(index)
        self._interaction(interaction)
        self._settle()

    def _interaction(self, interaction: Mapping[str, Any]) -> None:
        self.interaction_id = str(interaction.get("id") or self.interaction_id)
        self.model = str(interaction.get("model") or interaction.get("agent") or self.model)
        self.status = str(interaction.get("status") or self.status)
        if isinstance(interaction.get("usage"), dict):
            self.usage = usage_from_wire(interaction["usage"])
        found = interaction.get("errors")
        if isinstance(found, list) and found:
            self._error = found[0]

    def _settle(self) -> None:
        """The interaction is over: a failed or cancelled one is an error."""
        self._completed = True
        if self.status == "failed":
            error = self._error or {"message": f"the interaction {self.interaction_id} failed"}
            raise interaction_error(error, self.provider, self.requested)
        if self.status == "cancelled":
            raise errors.ProviderUnavailable(
                f"{self.provider}: the interaction {self.interaction_id} was cancelled",
                provider=self.provider,
                model=self.requested,
                metadata={"upstream_code": self.status},
            )

    def _start(self, index: int, step: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        kind = str(step.get("type") or "")
        self._kinds[index] = kind
        if kind == "model_output":
            return [self._text(text) for text in _texts(step.get("content"))]
        if kind == "thought":
            out = [self._thought_text(t) for t in _texts(step.get("summary"))]
            self._signature = str(step.get("signature") or self._signature)
            return [event for event in out if event is not None]
        if kind == "function_call":
            index_of_call = len(self.tool_calls) + len(self._calls)  # ended + open ones
            call = _Call(index_of_call, str(step.get("id") or ""), str(step.get("name") or ""))
            call.start_arguments = step.get("arguments")
            self._calls[index] = call
            start = chat_pb2.ToolCallStart(index=call.index, id=call.id, name=call.name)
            return [chat_pb2.ChatStreamResponse(tool_call_start=start)]
        return []  # server-side tools and results: nothing a chat reply holds

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        kind = delta.get("type")
        if kind == "text" and delta.get("text"):
            return [self._text(str(delta["text"]))]
        if kind == "thought_summary":
            event = self._thought_text(" ".join(_texts([delta.get("content")])))
            return [event] if event is not None else []
        if kind == "thought_signature" and delta.get("signature"):
            self._signature = str(delta["signature"])
        elif kind == "arguments_delta" and index in self._calls and delta.get("arguments"):
            call = self._calls[index]
            call.pieces.append(str(delta["arguments"]))
            piece = chat_pb2.ToolCallDelta(index=call.index, arguments=str(delta["arguments"]))
            return [chat_pb2.ChatStreamResponse(tool_call_delta=piece)]
        return []

    def _stop(self, index: int) -> list[chat_pb2.ChatStreamResponse]:
        kind = self._kinds.pop(index, "")
        if kind == "thought":
            return self._close_thought()
        call = self._calls.pop(index, None)
        if call is None:
            return []
        out = []
        if not call.pieces:  # the arguments came whole with the step
            whole = call.start_arguments if isinstance(call.start_arguments, dict) else {}
            call.pieces.append(orjson.dumps(whole).decode())
            piece = chat_pb2.ToolCallDelta(index=call.index, arguments=call.pieces[0])
            out.append(chat_pb2.ChatStreamResponse(tool_call_delta=piece))
        self.tool_calls.append(
            chat_pb2.ToolCall(id=call.id, name=call.name, arguments="".join(call.pieces))
        )
        out.append(
            chat_pb2.ChatStreamResponse(tool_call_end=chat_pb2.ToolCallEnd(index=call.index))
        )
        return out

    def _text(self, text: str) -> chat_pb2.ChatStreamResponse:
        self.content.append(text)
        return chat_pb2.ChatStreamResponse(content=text)

    def _thought_text(self, text: str) -> chat_pb2.ChatStreamResponse | None:
        if not text:
            return None
        self._thought.append(text)
        self.reasoning.append(text)
        return chat_pb2.ChatStreamResponse(reasoning=text) if self.show_reasoning else None

    def _close_thought(self) -> list[chat_pb2.ChatStreamResponse]:
        """A thought step is over: one reasoning block (its summary and signature)."""
        text, signature = "".join(self._thought), self._signature
        self._thought.clear()
        self._signature = ""
        if not (text or signature):
            return []
        block = chat_pb2.ReasoningBlock(
            text=text, signature=signature, format=GEMINI_FORMAT, summary=bool(text)
        )
        self.blocks.append(block)
        out = []
        if signature and self.show_reasoning:
            out.append(chat_pb2.ChatStreamResponse(reasoning_signature=signature))
        out.append(chat_pb2.ChatStreamResponse(reasoning_block=block))
        return out

    # -- the end --------------------------------------------------------------------------

    @property
    def finish_reason(self) -> chat_pb2.FinishReason:
        if self.tool_calls and self.status in ("completed", "requires_action", ""):
            return chat_pb2.FINISH_REASON_TOOL_CALLS
        return _FINISH.get(self.status, chat_pb2.FINISH_REASON_UNSPECIFIED)

    def finish(self) -> list[chat_pb2.ChatStreamResponse]:
        out = []
        if self.usage is not None:
            out.append(chat_pb2.ChatStreamResponse(usage=self.usage))
        done = chat_pb2.ChatStreamResponse(
            done=True,
            finish_reason=self.finish_reason,
            model=self.model or self.requested,
            provider=self.provider,
        )
        return [*out, done]

    def response(self) -> chat_pb2.ChatResponse:
        response = chat_pb2.ChatResponse(
            content="".join(self.content),
            tool_calls=self.tool_calls,
            model=self.model or self.requested,
            finish_reason=self.finish_reason,
            provider=self.provider,
        )
        response.reasoning_blocks.extend(self.blocks)
        if self.reasoning and self.show_reasoning:
            response.reasoning = "".join(self.reasoning)
        if self.usage is not None:
            response.usage.CopyFrom(self.usage)
        return response

    def events(self) -> list[chat_pb2.ChatStreamResponse]:
        """A whole answer as the stream of it would have been (a background interaction
        asked for as a stream)."""
        out: list[chat_pb2.ChatStreamResponse] = []
        if self.reasoning and self.show_reasoning:
            out.append(chat_pb2.ChatStreamResponse(reasoning="".join(self.reasoning)))
        for block in self.blocks:
            if block.signature and self.show_reasoning:
                out.append(chat_pb2.ChatStreamResponse(reasoning_signature=block.signature))
            out.append(chat_pb2.ChatStreamResponse(reasoning_block=block))
        if self.content:
            out.append(chat_pb2.ChatStreamResponse(content="".join(self.content)))
        for i, call in enumerate(self.tool_calls):
            start = chat_pb2.ToolCallStart(index=i, id=call.id, name=call.name)
            out.append(chat_pb2.ChatStreamResponse(tool_call_start=start))
            delta = chat_pb2.ToolCallDelta(index=i, arguments=call.arguments)
            out.append(chat_pb2.ChatStreamResponse(tool_call_delta=delta))
            out.append(chat_pb2.ChatStreamResponse(tool_call_end=chat_pb2.ToolCallEnd(index=i)))
        return [*out, *self.finish()]


def _index(payload: Mapping[str, Any]) -> int:
    index = payload.get("index")
    return index if isinstance(index, int) else -1


# -- the dialect --------------------------------------------------------------------------------


class InteractionsDialect:
    """Chat through the Interactions API as pure hooks (``ChatDialect``). ``google``
    classifies Google's HTTP errors (the generateContent dialect's). ``background``: the
    models served so run as background interactions, polled until done."""

    def __init__(self, provider: str, google: ErrorDialect, *, background: bool = False) -> None:
        self.provider = provider
        self.background = background
        self.google = google

    def chat_call(
        self, request: ChatLike, model: str, *, stream: bool
    ) -> UpstreamCall[chat_pb2.ChatStreamResponse]:
        background = self.background or is_agent(model)
        body, plan = build_request(
            request, model, stream=stream and not background, background=background
        )
        return UpstreamCall(PATH, body, model, plan=plan, headers=HEADERS)

    def chat_assembler(
        self, call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> InteractionAssembler:
        show = call.plan.show_reasoning if isinstance(call.plan, Plan) else True
        return InteractionAssembler(self.provider, show, requested=call.model)

    def parse_chat(
        self, data: dict[str, Any], call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> chat_pb2.ChatResponse:
        assembler = self.chat_assembler(call)
        assembler.whole(data)
        return assembler.response()

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        """An ``error`` event, or Google's ``{"error": ...}`` object inside a 200."""
        if isinstance(data, dict) and data.get("event_type") == "error":
            return self.interaction_error(data.get("error"), model)
        return self.google.error_in_body(data, model)

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        return self.google.error_from_body(status, body, model, headers)

    def interaction_error(self, error: Any, model: str) -> errors.GatewayError:
        return interaction_error(error, self.provider, model)


def interaction_error(error: Any, provider: str, model: str) -> errors.GatewayError:
    """The ratd error of an interaction's ``{code, message}`` (an error event, or one of
    a failed interaction's ``errors``): a string code, a google.rpc status name or a
    number; anything else is the upstream failing (502)."""
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "")
    status = int(code) if code.isdigit() else _RPC_STATUS.get(code.upper(), 502)
    if status < 400:
        status = 502
    return error_for_status(
        status,
        str(error.get("message") or "the interaction failed"),
        provider=provider,
        model=model,
        upstream_code=code,
    )


def rpc_status_error(status: Any, provider: str, model: str) -> errors.GatewayError:
    """The ratd error of a ``google.rpc.Status`` (a numeric gRPC ``code`` and a
    ``message``: a long-running operation's error, a batch item's), read as a status
    name would be; an unknown code is the upstream failing (502)."""
    status = status if isinstance(status, dict) else {}
    code = status.get("code")
    try:
        name = code_pb2.Code.Name(code) if isinstance(code, int) else str(code or "")
    except ValueError:
        name = ""
    message = status.get("message") or "the upstream reported a failure"
    return interaction_error({"code": name, "message": message}, provider, model)


# -- background ---------------------------------------------------------------------------------

# Polling a background interaction: the first wait, its growth, and its cap (seconds).
POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.25, 2.0, 10.0
# Polls in a row that may fail for a passing reason before the interaction is given up.
POLL_FAILURES = 3
# How long a cancel sent on the caller's way out may take.
CANCEL_TIMEOUT = 10.0


class Interactions:
    """The Interactions API's own calls on a provider's transport: start a background
    interaction, fetch it, cancel it, and run one to the end for a chat call. Written
    apart from chat so that long-running jobs can start, poll and cancel them too."""

    def __init__(self, provider: HttpProvider, dialect: InteractionsDialect) -> None:
        self.provider = provider
        self.dialect = dialect
        # Cancels sent after their caller left (kept referenced until they finish).
        self._cancels: set[asyncio.Task[None]] = set()

    async def start(self, request: ChatLike, model: str) -> tuple[dict[str, Any], Plan]:
        """Create a background interaction; returns at once with its id and status."""
        body, plan = build_request(request, model, stream=False, background=True)
        return await self.create(body, model), plan

    async def create(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """``POST /v1beta/interactions`` of a body built elsewhere (a chat's, or a video
        job's with ``response_modalities``); a background one answers at once."""
        data = await self._call("POST", PATH, model, body)
        if not data.get("id"):
            raise self.provider.protocol_error("a background interaction without an id", model)
        return data

    async def get(self, interaction_id: str, model: str = "") -> dict[str, Any]:
        """``GET /v1beta/interactions/{id}``: the interaction as it is now."""
        return await self._call("GET", interaction_path(interaction_id), model)

    async def cancel(self, interaction_id: str, model: str = "") -> dict[str, Any]:
        """``POST /v1beta/interactions/{id}/cancel``: stop a background interaction."""
        return await self._call("POST", interaction_path(interaction_id, "cancel"), model)

    async def _call(self, method: str, path: str, model: str, body: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = await self.provider.call_json(
            method, path, body, model=model, errors_from=self.dialect, headers=HEADERS
        )
        return data

    async def run(self, request: ChatLike, model: str) -> InteractionAssembler:
        """Start a background interaction and poll it until it is done. The caller's
        deadline bounds it (the service cancels the call then); an interaction left
        unfinished, by a cancelled caller or a failed poll, is cancelled upstream."""
        data, plan = await self.start(request, model)
        interaction_id = str(data["id"])
        try:
            data = await self.until_done(interaction_id, data, model)
        except BaseException:
            self._cancel_later(interaction_id, model)
            raise
        return self.result(data, plan, model)

    async def until_done(
        self, interaction_id: str, data: dict[str, Any], model: str = ""
    ) -> dict[str, Any]:
        """``data`` polled again, with growing waits, until its status is final. A poll
        that fails for a passing reason (5xx, 429 but quota, the transport) is tried
        again at the next wait, up to ``POLL_FAILURES`` in a row."""
        wait, failures = POLL_FIRST, 0
        while str(data.get("status") or "") not in DONE_STATUSES:
            await asyncio.sleep(wait)
            wait = min(wait * POLL_GROWTH, POLL_MAX)
            try:
                data = await self.get(interaction_id, model)
                failures = 0
            except (errors.ProviderUnavailable, errors.RateLimited) as err:
                failures += 1
                if isinstance(err, errors.QuotaExceeded) or failures >= POLL_FAILURES:
                    raise
                wait = max(wait, min(err.retry_after or 0.0, POLL_MAX))
        return data

    def result(self, data: Mapping[str, Any], plan: Plan, model: str) -> InteractionAssembler:
        """A finished interaction read as a chat answer (``response()``, ``events()``);
        a failed or cancelled one raises its error."""
        assembler = InteractionAssembler(self.provider.name, plan.show_reasoning, requested=model)
        assembler.whole(data)
        return assembler

    def _cancel_later(self, interaction_id: str, model: str) -> None:
        """Cancel upstream without holding up the caller's exit (its task may be being
        cancelled): a task of its own, bounded, its failure only logged."""

        async def cancel() -> None:
            try:
                async with asyncio.timeout(CANCEL_TIMEOUT):
                    await self.cancel(interaction_id, model)
            except (errors.GatewayError, TimeoutError) as err:
                log.warning(
                    "%s: could not cancel interaction %s: %s",
                    self.provider.name,
                    interaction_id,
                    err,
                )

        task = asyncio.get_running_loop().create_task(cancel())
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def drain(self) -> None:
        """Let the cancels under way finish (bounded) before the transport closes."""
        if self._cancels:
            await asyncio.wait(set(self._cancels), timeout=CANCEL_TIMEOUT)
