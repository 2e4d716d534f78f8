"""OpenAI's Responses API (``POST /responses``) as a chat dialect.

OpenAI serves its reasoning models best through this API: their reasoning comes back as
``reasoning`` output items which, sent back with the next turn, let the model continue
from its own reasoning after a tool call. ratd stores nothing upstream (``store: false``)
and asks for the reasoning in encrypted form (``include: ["reasoning.encrypted_content"]``),
so a conversation needs no state at OpenAI.

A reasoning item travels as one ``ReasoningBlock``: ``id`` is the item's id, ``format``
is ``openai-responses-v1`` (OpenRouter's name for it), ``redacted_data`` holds the
encrypted content (as the UTF-8 bytes of the API's string, like an OpenRouter
``reasoning.encrypted`` item), and ``text`` the item's summary parts joined by a blank
line (``summary`` set), or its raw reasoning text where a server sends that instead.
Blocks of the same id (OpenRouter gives the summary and the encrypted content as two)
are merged back into one item. Only blocks of this format, or without one, go back, and
only those with encrypted content: with nothing stored, an item without it cannot be
resolved by the API.

Requests: every system message goes to ``instructions``; the rest become ``input``
items (user messages, the assistant's reasoning items, text and ``function_call`` items,
``function_call_output`` items for tool results). Streams are the API's semantic events
(``response.output_text.delta``, ``response.function_call_arguments.delta``,
``response.reasoning_summary_text.delta``, ..., ``response.completed``) and end with
``response.completed`` or ``response.incomplete``; ``response.failed`` and ``error``
events are errors.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2
from ratd import errors
from ratd.providers.base import ChatLike
from ratd.providers.http_provider import ErrorDialect, UpstreamCall
from ratd.providers.messages import EFFORT_NAMES, message_pieces, tool_parameters
from ratd.providers.reasoning_blocks import verifiable_by

RESPONSES_FORMAT = "openai-responses-v1"
# What ChatOptions can ask for that this API has no field for.
UNSUPPORTED = frozenset({"top_k", "frequency_penalty", "presence_penalty", "seed", "stop"})
# Models that produce no reasoning items: asking them for encrypted reasoning is a 400.
_NO_REASONING = re.compile(r"^(gpt-4|gpt-3\.5|chatgpt-)|-chat(-latest)?$")
_INCOMPLETE = {
    "max_output_tokens": chat_pb2.FINISH_REASON_LENGTH,
    "content_filter": chat_pb2.FINISH_REASON_CONTENT_FILTER,
}
# Error codes of ``error`` events and failed responses, by the HTTP status they mean.
_CODE_STATUS = {
    "server_error": 500,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "vector_store_timeout": 504,
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
}
_SEPARATOR = "\n\n"  # between two summary parts, or two reasoning items


# -- requests ---------------------------------------------------------------------------------


def _text_of(message: chat_pb2.Message, field: str) -> str:
    pieces = message_pieces(message, field, "only user messages may carry images here")
    return "".join(piece for piece in pieces if isinstance(piece, str))


def _image(image: chat_pb2.ImagePart) -> dict[str, Any]:
    if image.WhichOneof("source") == "data":
        url = f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode()}"
    else:
        url = image.url
    detail = image.detail if image.HasField("detail") else "auto"
    return {"type": "input_image", "image_url": url, "detail": detail}


def _user_content(message: chat_pb2.Message, field: str) -> str | list[dict[str, Any]]:
    if not message.parts:
        return message.content
    content: list[dict[str, Any]] = []
    for piece in message_pieces(message, field):
        if isinstance(piece, str):
            content.append({"type": "input_text", "text": piece})
        else:
            content.append(_image(piece[0]))
    content.extend(
        _file_or_audio(part) for part in message.parts if part.WhichOneof("part") in _MEDIA
    )
    return content


# Parts beyond text and images the Responses API reads: ResponseInputFileParam
# (``input_file`` with ``file_data`` as a data: URL and ``filename``, or ``file_url``) and
# ResponseInputAudioParam (``input_audio``: base64 ``data``, ``format`` wav or mp3), as
# the openai 3.60.0 types name them.
_MEDIA = ("document", "audio")
_AUDIO_FORMATS = {"audio/wav": "wav", "audio/mpeg": "mp3"}


def _file_or_audio(part: chat_pb2.ContentPart) -> dict[str, Any]:
    if part.WhichOneof("part") == "audio":
        audio = part.audio
        audio_format = _AUDIO_FORMATS.get(audio.mime_type)
        if audio.WhichOneof("source") != "data" or audio_format is None:
            raise errors.UnsupportedParameter(
                "audio: the Responses API takes wav or mp3 bytes only",
                field="audio",
                parameter="audio",
            )
        data = base64.b64encode(audio.data).decode()
        return {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}
    document = part.document
    pdf = document.mime_type == "application/pdf"
    name = document.filename or ("document.pdf" if pdf else "document.txt")
    if document.WhichOneof("source") == "url":
        return {"type": "input_file", "file_url": document.url}
    data_url = f"data:{document.mime_type};base64,{base64.b64encode(document.data).decode()}"
    return {"type": "input_file", "filename": name, "file_data": data_url}


def reasoning_items(blocks: Any) -> list[dict[str, Any]]:
    """The reasoning items an assistant turn's blocks carry back (see the module doc)."""
    items: dict[str, dict[str, Any]] = {}
    for block in verifiable_by(blocks, RESPONSES_FORMAT):
        if not block.id:
            continue
        item = items.setdefault(block.id, {"type": "reasoning", "id": block.id, "summary": []})
        if block.redacted_data:
            item["encrypted_content"] = block.redacted_data.decode("utf-8", "replace")
        if block.text and block.summary:
            item["summary"].append({"type": "summary_text", "text": block.text})
        elif block.text:
            item.setdefault("content", []).append({"type": "reasoning_text", "text": block.text})
    return [item for item in items.values() if "encrypted_content" in item]


def _assistant_items(message: chat_pb2.Message, field: str) -> list[dict[str, Any]]:
    items = reasoning_items(message.reasoning_blocks)
    text = _text_of(message, field)
    if text:
        items.append({"type": "message", "role": "assistant", "content": text})
    for call in message.tool_calls:
        items.append(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments or "{}",
            }
        )
    return items


def input_items(messages: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """(instructions, input items) of a conversation."""
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if message.role == chat_pb2.ROLE_SYSTEM:
            instructions.append(_text_of(message, field))
        elif message.role == chat_pb2.ROLE_TOOL:
            output = _text_of(message, field)
            items.append(
                {"type": "function_call_output", "call_id": message.tool_call_id, "output": output}
            )
        elif message.role == chat_pb2.ROLE_ASSISTANT:
            items.extend(_assistant_items(message, field))
        else:
            content = _user_content(message, field)
            items.append({"type": "message", "role": "user", "content": content})
    return instructions, items


def _tool(tool: chat_pb2.ToolDefinition) -> dict[str, Any]:
    # strict: false, as Chat Completions has it (this API makes function tools strict by
    # default, which refuses schemas that do not list every property as required).
    wire: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        wire["description"] = tool.description
    wire["parameters"] = tool_parameters(tool)
    wire["strict"] = False
    return wire


def _tool_choice(choice: chat_pb2.ToolChoice) -> Any:
    which = choice.WhichOneof("choice")
    if which == "function":
        return {"type": "function", "name": choice.function}
    return which or "auto"


def text_format(fmt: chat_pb2.ResponseFormat) -> dict[str, Any] | None:
    """``text.format`` for a ResponseFormat (json_schema: name, schema, strict at the top)."""
    which = fmt.WhichOneof("format")
    if which in ("text", "json_object"):
        return {"type": which}
    if which != "json_schema":
        return None
    value = orjson.loads(fmt.json_schema)
    wire: dict[str, Any] = {"type": "json_schema", "name": "response", "schema": value}
    if isinstance(value.get("schema"), dict):
        wire["name"] = str(value.get("name") or "response")
        wire["schema"] = value["schema"]
        for key in ("strict", "description"):
            if key in value:
                wire[key] = value[key]
    return wire


def _reasoning(reasoning: chat_pb2.ReasoningConfig) -> dict[str, Any]:
    """``reasoning``: the effort, and a summary of the reasoning unless it is excluded
    (the API has no token budget: ``max_tokens`` has no field here)."""
    wire: dict[str, Any] = {}
    if reasoning.HasField("effort"):
        wire["effort"] = EFFORT_NAMES.get(reasoning.effort, "medium")
    if not reasoning.exclude_from_output:
        wire["summary"] = "auto"
    return wire


def _add_tools(request: ChatLike, body: dict[str, Any]) -> None:
    options = request.options
    body["tools"] = [_tool(t) for t in request.tools]
    if options.HasField("tool_choice"):
        body["tool_choice"] = _tool_choice(options.tool_choice)
    if options.HasField("parallel_tool_calls"):
        body["parallel_tool_calls"] = options.parallel_tool_calls


def _add_options(options: chat_pb2.ChatOptions, body: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        if options.HasField(name):
            body[name] = round(getattr(options, name), 6)
    if options.HasField("max_tokens"):
        body["max_output_tokens"] = options.max_tokens
    if options.HasField("response_format"):
        fmt = text_format(options.response_format)
        if fmt is not None:
            body["text"] = {"format": fmt}
    if options.HasField("reasoning"):
        body["reasoning"] = _reasoning(options.reasoning)


def build_body(request: ChatLike, model: str, stream: bool) -> dict[str, Any]:
    """The request body: nothing stored upstream, encrypted reasoning asked for (from
    the models that reason), raw_provider_options merged last."""
    instructions, items = input_items(request.messages)
    body: dict[str, Any] = {"model": model, "input": items, "store": False}
    if instructions:
        body["instructions"] = _SEPARATOR.join(instructions)
    if not _NO_REASONING.search(model.rsplit("/", 1)[-1]):  # "openai/gpt-4o" too
        body["include"] = ["reasoning.encrypted_content"]
    if request.tools:
        _add_tools(request, body)
    _add_options(request.options, body)
    if stream:
        body["stream"] = True
    if request.options.HasField("raw_provider_options"):
        body.update(orjson.loads(request.options.raw_provider_options))
    return body


# -- answers ----------------------------------------------------------------------------------


def usage_from_wire(usage: Mapping[str, Any]) -> chat_pb2.Usage:
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    result = chat_pb2.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(usage.get("total_tokens") or prompt + completion),
    )
    output = usage.get("output_tokens_details") or {}
    if output.get("reasoning_tokens") is not None:
        result.reasoning_tokens = int(output["reasoning_tokens"])
    inputs = usage.get("input_tokens_details") or {}
    if inputs.get("cached_tokens") is not None:
        result.cached_prompt_tokens = int(inputs["cached_tokens"])
    if inputs.get("cache_write_tokens"):
        result.cache_creation_tokens = int(inputs["cache_write_tokens"])
    return result


def _summary_texts(item: Mapping[str, Any]) -> list[str]:
    """A reasoning item's text: its summary parts, else its raw reasoning parts."""
    parts = item.get("summary") or item.get("content") or ()
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


def reasoning_block(item: Mapping[str, Any]) -> chat_pb2.ReasoningBlock | None:
    """A reasoning output item as a block (None when it carries nothing to keep)."""
    texts = [t for t in _summary_texts(item) if t]
    encrypted = item.get("encrypted_content")
    if not texts and not isinstance(encrypted, str):
        return None
    block = chat_pb2.ReasoningBlock(
        text=_SEPARATOR.join(texts),
        format=RESPONSES_FORMAT,
        id=str(item.get("id") or ""),
        summary=bool(item.get("summary")),
    )
    if isinstance(encrypted, str):
        block.redacted_data = encrypted.encode()
    return block


def finish_reason(
    status: str | None, incomplete: Any, called: bool, refused: bool
) -> chat_pb2.FinishReason:
    if refused:
        return chat_pb2.FINISH_REASON_CONTENT_FILTER
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return _INCOMPLETE.get(str(reason), chat_pb2.FINISH_REASON_UNSPECIFIED)
    if status == "completed":
        return chat_pb2.FINISH_REASON_TOOL_CALLS if called else chat_pb2.FINISH_REASON_STOP
    return chat_pb2.FINISH_REASON_UNSPECIFIED


@dataclass(slots=True)
class _Output:
    """What the output items of a whole response say, folded."""

    content: str = ""
    refused: bool = False


def _message_text(item: Mapping[str, Any], out: _Output) -> None:
    for part in item.get("content") or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "output_text":
            out.content += str(part.get("text") or "")
        elif part.get("type") == "refusal":
            out.content += str(part.get("refusal") or "")
            out.refused = True


# -- streams ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    index: int
    streamed: bool = False  # argument deltas came
    ended: bool = False


class ResponsesAssembler:
    """Turns the Responses API's semantic stream events into ChatStreamResponse events,
    as the other assemblers do: text and reasoning deltas as they come, a tool call
    started when its item is added, its argument text piece by piece, ended when its
    item is done; reasoning blocks, usage and ``done`` at the end."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider, self.requested = provider, model
        self.model = ""
        self.status: str | None = None
        self.incomplete: Any = None
        self.usage: chat_pb2.Usage | None = None
        self.refused = False
        self._calls: dict[int, _Call] = {}  # by output_index
        self._blocks: list[chat_pb2.ReasoningBlock] = []
        self._reasoning_part: tuple[int, int] | None = None  # (output_index, part) last shown
        self._shown: set[int] = set()  # output indexes whose text or reasoning was streamed

    @property
    def complete(self) -> bool:
        return self.status is not None

    @property
    def ended(self) -> bool:  # the API sends no [DONE]: the terminal event ends the stream
        return self.status is not None

    def feed(self, event: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        kind = str(event.get("type") or "")
        index = event.get("output_index")
        index = index if isinstance(index, int) else -1
        if kind in ("response.created", "response.in_progress"):
            self._response(event.get("response"), final=False)
        elif kind in ("response.completed", "response.incomplete"):
            self._response(event.get("response"), final=True)
        elif kind == "response.output_text.delta":
            self._shown.add(index)
            return _content(event.get("delta"))
        elif kind == "response.refusal.delta":
            self._shown.add(index)
            self.refused = True
            return _content(event.get("delta"))
        elif kind == "response.reasoning_summary_text.delta":
            return self._reasoning(index, event.get("summary_index"), event.get("delta"))
        elif kind == "response.reasoning_text.delta":
            return self._reasoning(index, event.get("content_index"), event.get("delta"))
        elif kind == "response.output_item.added":
            return self._item_added(index, event.get("item"))
        elif kind == "response.function_call_arguments.delta":
            return self._arguments(index, event.get("delta"))
        elif kind == "response.function_call_arguments.done":
            return self._arguments_done(index, event.get("arguments"))
        elif kind == "response.output_item.done":
            return self._item_done(index, event.get("item"))
        return []

    def _response(self, response: Any, *, final: bool) -> None:
        if not isinstance(response, dict):
            response = {}
        self.model = str(response.get("model") or self.model)
        if not final:
            return
        self.status = str(response.get("status") or "completed")
        self.incomplete = response.get("incomplete_details")
        if isinstance(response.get("usage"), dict):
            self.usage = usage_from_wire(response["usage"])

    def _reasoning(self, index: int, part: Any, delta: Any) -> list[chat_pb2.ChatStreamResponse]:
        if not isinstance(delta, str) or not delta:
            return []
        key = (index, part if isinstance(part, int) else 0)
        text = delta
        if self._reasoning_part is not None and self._reasoning_part != key:
            text = _SEPARATOR + delta  # as the whole response joins the parts
        self._reasoning_part = key
        self._shown.add(index)
        return [chat_pb2.ChatStreamResponse(reasoning=text)]

    def _start(self, index: int, item: Mapping[str, Any]) -> list[chat_pb2.ChatStreamResponse]:
        call = self._calls[index] = _Call(index=len(self._calls))
        start = chat_pb2.ToolCallStart(
            index=call.index, id=str(item.get("call_id") or ""), name=str(item.get("name") or "")
        )
        out = [chat_pb2.ChatStreamResponse(tool_call_start=start)]
        return out + self._arguments(index, item.get("arguments"))

    def _item_added(self, index: int, item: Any) -> list[chat_pb2.ChatStreamResponse]:
        if isinstance(item, dict) and item.get("type") == "function_call":
            return self._start(index, item)
        return []

    def _arguments(self, index: int, delta: Any) -> list[chat_pb2.ChatStreamResponse]:
        call = self._calls.get(index)
        if call is None or not isinstance(delta, str) or not delta:
            return []
        call.streamed = True
        piece = chat_pb2.ToolCallDelta(index=call.index, arguments=delta)
        return [chat_pb2.ChatStreamResponse(tool_call_delta=piece)]

    def _arguments_done(self, index: int, arguments: Any) -> list[chat_pb2.ChatStreamResponse]:
        """The whole argument text, when no piece of it came before (some servers)."""
        call = self._calls.get(index)
        if call is None or call.streamed:
            return []
        return self._arguments(index, arguments)

    def _item_done(self, index: int, item: Any) -> list[chat_pb2.ChatStreamResponse]:
        if not isinstance(item, dict):
            return []
        kind = item.get("type")
        out: list[chat_pb2.ChatStreamResponse] = []
        if kind == "function_call":
            if index not in self._calls:
                out += self._start(index, item)
            out += self._arguments_done(index, item.get("arguments"))
            out += self._end(self._calls[index])
        elif kind == "reasoning":
            block = reasoning_block(item)
            if block is not None:
                self._blocks.append(block)
            if index not in self._shown:  # a server that sent the summary only here
                for i, text in enumerate(_summary_texts(item)):
                    out += self._reasoning(index, i, text)
        elif kind == "message" and index not in self._shown:
            whole = _Output()
            _message_text(item, whole)
            self.refused = self.refused or whole.refused
            out += _content(whole.content)
        return out

    @staticmethod
    def _end(call: _Call) -> list[chat_pb2.ChatStreamResponse]:
        if call.ended:
            return []
        call.ended = True
        end = chat_pb2.ToolCallEnd(index=call.index)
        return [chat_pb2.ChatStreamResponse(tool_call_end=end)]

    def finish(self) -> list[chat_pb2.ChatStreamResponse]:
        out: list[chat_pb2.ChatStreamResponse] = []
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            out += self._end(call)
        out += [chat_pb2.ChatStreamResponse(reasoning_block=b) for b in self._blocks]
        if self.usage is not None:
            out.append(chat_pb2.ChatStreamResponse(usage=self.usage))
        reason = finish_reason(self.status, self.incomplete, bool(self._calls), self.refused)
        done = chat_pb2.ChatStreamResponse(
            done=True,
            finish_reason=reason,
            model=self.model or self.requested,
            provider=self.provider,
        )
        out.append(done)
        return out


def _content(delta: Any) -> list[chat_pb2.ChatStreamResponse]:
    if not isinstance(delta, str) or not delta:
        return []
    return [chat_pb2.ChatStreamResponse(content=delta)]


# -- the dialect ------------------------------------------------------------------------------


class Responses:
    """The Responses dialect: pure functions from ratatoskr.v1 to the API's JSON and back.
    Its error answers have Chat Completions' shape (``{"error": {...}}``): ``errors``,
    the provider's Chat Completions dialect, reads them."""

    path = "/responses"

    def __init__(self, provider: str, error_reader: ErrorDialect) -> None:
        self.provider = provider
        self._errors = error_reader

    def chat_call(
        self, request: ChatLike, model: str, *, stream: bool
    ) -> UpstreamCall[chat_pb2.ChatStreamResponse]:
        return UpstreamCall(self.path, build_body(request, model, stream), model)

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        return self._errors.error_from_body(status, body, model, headers)

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        """An ``error`` event, a ``response.failed`` event, a failed response, or an
        error object in a 200."""
        if not isinstance(data, dict):
            return None
        kind = data.get("type")
        if kind == "error":
            obj: Any = {k: data.get(k) for k in ("code", "message", "param")}
            obj["message"] = obj["message"] or "the stream reported an error"
        elif kind == "response.failed" or (
            data.get("object") == "response" and data.get("status") == "failed"
        ):
            response = data.get("response") if kind else data
            found = response.get("error") if isinstance(response, dict) else None
            obj = found if isinstance(found, dict) else {"message": "the response failed"}
        elif "object" not in data and "type" not in data and data.get("error"):
            return self._errors.error_in_body(data, model)
        else:
            return None
        return self.error_from_body(_status_of(obj), {"error": obj}, model)

    def parse_chat(
        self, data: dict[str, Any], call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> chat_pb2.ChatResponse:
        status = data.get("status")
        if status not in ("completed", "incomplete"):
            raise errors.UpstreamProtocolError(
                f"{self.provider}: the response is not finished (status {status!r})",
                provider=self.provider,
                model=call.model,
            )
        out = _Output()
        response = chat_pb2.ChatResponse(
            model=data.get("model") or call.model, provider=self.provider
        )
        reasoning: list[str] = []
        for item in data.get("output") or ():
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "message":
                _message_text(item, out)
            elif kind == "function_call":
                response.tool_calls.add(
                    id=str(item.get("call_id") or ""),
                    name=str(item.get("name") or ""),
                    arguments=str(item.get("arguments") or ""),
                )
            elif kind == "reasoning":
                reasoning += [t for t in _summary_texts(item) if t]
                block = reasoning_block(item)
                if block is not None:
                    response.reasoning_blocks.append(block)
        response.content = out.content
        if reasoning:
            response.reasoning = _SEPARATOR.join(reasoning)
        response.finish_reason = finish_reason(
            status, data.get("incomplete_details"), bool(response.tool_calls), out.refused
        )
        if isinstance(data.get("usage"), dict):
            response.usage.CopyFrom(usage_from_wire(data["usage"]))
        return response

    def chat_assembler(self, call: UpstreamCall[chat_pb2.ChatStreamResponse]) -> ResponsesAssembler:
        return ResponsesAssembler(self.provider, call.model)


def _status_of(error: Mapping[str, Any]) -> int:
    """The HTTP status an error object inside a 200 stands for."""
    code = str(error.get("code") or "")
    kind = str(error.get("type") or "")
    if code in _CODE_STATUS:
        return _CODE_STATUS[code]
    if kind == "invalid_request_error" or code.startswith(("invalid_", "image_")):
        return 400
    return 502


__all__ = ["RESPONSES_FORMAT", "UNSUPPORTED", "Responses", "ResponsesAssembler"]
