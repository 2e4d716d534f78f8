"""``POST /v1/responses``: a Responses API request as a ``ChatRequest``.

``instructions`` is the first system message; ``input`` (a string, or items) the
conversation: messages (``input_text``, ``input_image``, ``output_text`` parts),
``function_call`` items (tool calls of the assistant turn they belong to),
``function_call_output`` items (tool messages) and ``reasoning`` items, which become the
reasoning blocks of the assistant turn that follows them (``responses.py`` says how a
block travels in ``encrypted_content``). ratd keeps no state: ``previous_response_id``,
``conversation`` and background mode are refused, ``store`` is accepted and changes
nothing (nothing can be fetched back later).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from google.protobuf.message import DecodeError

from ratatoskr.v1 import chat_pb2
from ratd.openai_http import fields
from ratd.openai_http.chat import EFFORTS
from ratd.openai_http.fields import Body, bad

RESPONSES_FORMAT = "openai-responses-v1"
# A block of another API, carried in encrypted_content: "ratd1." + base64(the block).
WRAPPED = "ratd1."
_KNOWN = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
        "text", "reasoning", "max_output_tokens", "temperature", "top_p", "stream",
        "stream_options", "store", "include", "metadata", "user", "safety_identifier",
        "prompt_cache_key", "prompt_cache_retention", "service_tier", "truncation",
        "background", "previous_response_id", "conversation", "max_tool_calls", "top_logprobs",
    }
)  # fmt: skip
_STATELESS = ("previous_response_id", "conversation", "background")
_INCLUDABLE = frozenset({"reasoning.encrypted_content"})
_ROLES = {
    "system": chat_pb2.ROLE_SYSTEM,
    "developer": chat_pb2.ROLE_SYSTEM,
    "user": chat_pb2.ROLE_USER,
    "assistant": chat_pb2.ROLE_ASSISTANT,
}


def responses_request(body: Body) -> tuple[chat_pb2.ChatRequest, bool]:
    """The request, and whether to stream."""
    fields.check_keys(body, _KNOWN)
    fields.falsy(body, _STATELESS)
    _check_include(body.get("include"))
    messages: list[chat_pb2.Message] = []
    if (instructions := fields.optional_string(body, "instructions")) is not None:
        messages.append(chat_pb2.Message(role=chat_pb2.ROLE_SYSTEM, content=instructions))
    messages += _conversation(body.get("input"))
    if not any(m.role != chat_pb2.ROLE_SYSTEM for m in messages):
        raise bad("input", "a string or a non-empty array of input items is required")
    request = chat_pb2.ChatRequest(
        messages=messages, tools=_tools(body.get("tools")), options=_options(body)
    )
    return request, bool(fields.boolean(body, "stream"))


def _check_include(include: Any) -> None:
    if include is None:
        return
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        raise bad("include", "must be an array of strings")
    for value in include:
        if value not in _INCLUDABLE:
            raise bad(
                "include", f"{value!r} is not served by ratd (reasoning.encrypted_content is)"
            )


def _options(body: Body) -> chat_pb2.ChatOptions:
    options = chat_pb2.ChatOptions(model=fields.required_string(body, "model"))
    for key in ("temperature", "top_p"):
        if (value := fields.number(body, key)) is not None:
            setattr(options, key, value)
    if (limit := fields.integer(body, "max_output_tokens", 1)) is not None:
        options.max_tokens = limit
    if (parallel := fields.boolean(body, "parallel_tool_calls")) is not None:
        options.parallel_tool_calls = parallel
    if body.get("tool_choice") is not None:
        options.tool_choice.CopyFrom(_tool_choice(body["tool_choice"]))
    _text_and_reasoning(body, options)
    return options


def _text_and_reasoning(body: Body, options: chat_pb2.ChatOptions) -> None:
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict):
            raise bad("text", "must be an object")
        if text.get("format") is not None:
            options.response_format.CopyFrom(_text_format(text["format"]))
    reasoning = body.get("reasoning")
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise bad("reasoning", "must be an object")
    effort = reasoning.get("effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise bad("reasoning.effort", f"must be one of {', '.join(EFFORTS)}")
        options.reasoning.effort = EFFORTS[effort]
    if reasoning.get("summary") == "none":
        options.reasoning.exclude_from_output = True


def _tool_choice(raw: Any) -> chat_pb2.ToolChoice:
    if raw == "auto":
        return chat_pb2.ToolChoice(auto=True)
    if raw == "none":
        return chat_pb2.ToolChoice(none=True)
    if raw == "required":
        return chat_pb2.ToolChoice(required=True)
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("name"), str):
        return chat_pb2.ToolChoice(function=raw["name"])
    raise bad("tool_choice", 'must be "auto", "none", "required" or {"type": "function", "name"}')


def _text_format(raw: Any) -> chat_pb2.ResponseFormat:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return chat_pb2.ResponseFormat(text=True)
    if kind == "json_object":
        return chat_pb2.ResponseFormat(json_object=True)
    if kind == "json_schema":
        if not isinstance(raw.get("schema"), dict) or not isinstance(raw.get("name"), str):
            raise bad("text.format", "a json_schema format needs a name and a schema object")
        wrapper = {k: raw[k] for k in ("name", "schema", "strict", "description") if k in raw}
        return chat_pb2.ResponseFormat(json_schema=orjson.dumps(wrapper).decode())
    raise bad("text.format.type", "must be text, json_object or json_schema")


def _tools(raw: Any) -> list[chat_pb2.ToolDefinition]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad("tools", "must be an array")
    tools = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise bad(f"tools[{i}].type", "ratd takes function tools")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise bad(f"tools[{i}].name", "a function tool needs a name")
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
        tools.append(
            chat_pb2.ToolDefinition(
                name=tool["name"],
                description=str(tool.get("description") or ""),
                parameters_json=orjson.dumps(parameters).decode(),
            )
        )
    return tools


# -- the conversation -------------------------------------------------------------------


class _Turns:
    """Folds input items into messages: calls and reasoning join the assistant turn."""

    def __init__(self) -> None:
        self.messages: list[chat_pb2.Message] = []
        self.blocks: list[chat_pb2.ReasoningBlock] = []  # for the next assistant turn

    def assistant(self) -> chat_pb2.Message:
        last = self.messages[-1] if self.messages else None
        if last is None or last.role != chat_pb2.ROLE_ASSISTANT:
            last = chat_pb2.Message(role=chat_pb2.ROLE_ASSISTANT)
            self.messages.append(last)
        last.reasoning_blocks.extend(self.blocks)
        self.blocks.clear()
        return last

    def add(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise bad(where, "must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            self._message(item, where)
        elif kind == "function_call":
            self.assistant().tool_calls.append(_call(item, where))
        elif kind == "function_call_output":
            self.messages.append(_output(item, where))
        elif kind == "reasoning":
            self._reasoning(_blocks(item, where))
        else:
            raise bad(f"{where}.type", f"unsupported input item {kind!r}")

    def _reasoning(self, blocks: list[chat_pb2.ReasoningBlock]) -> None:
        """Reasoning belongs to the assistant turn it is next to: the one it follows (a
        stream announces a block known only at the end after the turn's output), else
        the one that comes next."""
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == chat_pb2.ROLE_ASSISTANT:
            last.reasoning_blocks.extend(blocks)
        else:
            self.blocks += blocks

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise bad(f"{where}.role", f"must be one of {', '.join(_ROLES)}")
        content, parts = _content(item.get("content"), where)
        if role == chat_pb2.ROLE_ASSISTANT:
            message = self.assistant()
            message.content += content
        else:
            self.messages.append(chat_pb2.Message(role=role, content=content, parts=parts))


def _conversation(raw: Any) -> list[chat_pb2.Message]:
    if isinstance(raw, str):
        return [chat_pb2.Message(role=chat_pb2.ROLE_USER, content=raw)] if raw else []
    if not isinstance(raw, list):
        raise bad("input", "must be a string or an array of input items")
    turns = _Turns()
    for i, item in enumerate(raw):
        turns.add(item, f"input[{i}]")
    return turns.messages  # reasoning with no assistant turn next to it is left out


def _content(content: Any, where: str) -> tuple[str, list[chat_pb2.ContentPart]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise bad(f"{where}.content", "must be a string or an array of content parts")
    parts = [_part(p, f"{where}.content[{i}]") for i, p in enumerate(content)]
    if all(p.WhichOneof("part") == "text" for p in parts):
        return "".join(p.text for p in parts), []
    return "", parts


def _part(part: Any, where: str) -> chat_pb2.ContentPart:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
        return chat_pb2.ContentPart(text=part["text"])
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return chat_pb2.ContentPart(text=part["refusal"])
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise bad(f"{where}.image_url", "an image URL (http(s) or data:) is required")
        image = chat_pb2.ImagePart(url=url)
        if isinstance(detail := part.get("detail"), str):
            image.detail = detail
        return chat_pb2.ContentPart(image=image)
    raise bad(f"{where}.type", f"unsupported content part {kind!r}")


def _call(item: dict[str, Any], where: str) -> chat_pb2.ToolCall:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise bad(where, "a function_call item needs call_id, name and arguments (strings)")
    return chat_pb2.ToolCall(id=call_id, name=name, arguments=arguments)


def _output(item: dict[str, Any], where: str) -> chat_pb2.Message:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise bad(f"{where}.call_id", "a function_call_output needs the call_id of its call")
    if isinstance(output, list):
        output = "".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
    if not isinstance(output, str):
        raise bad(f"{where}.output", "must be a string or an array of text parts")
    return chat_pb2.Message(role=chat_pb2.ROLE_TOOL, content=output, tool_call_id=call_id)


def _blocks(item: dict[str, Any], where: str) -> list[chat_pb2.ReasoningBlock]:
    """A reasoning item as the block(s) it came from (see ``responses.py``)."""
    encrypted = item.get("encrypted_content")
    if isinstance(encrypted, str) and encrypted.startswith(WRAPPED):
        try:
            block = chat_pb2.ReasoningBlock.FromString(
                base64.b64decode(encrypted[len(WRAPPED) :], validate=True)
            )
        except (binascii.Error, ValueError, DecodeError):
            raise bad(f"{where}.encrypted_content", "is not reasoning ratd returned") from None
        return [block]
    texts = [
        p["text"]
        for p in item.get("summary") or ()
        if isinstance(p, dict) and isinstance(p.get("text"), str)
    ]
    block = chat_pb2.ReasoningBlock(
        id=str(item.get("id") or ""), text="\n\n".join(texts), summary=bool(texts)
    )
    if isinstance(encrypted, str) and encrypted:
        block.redacted_data = encrypted.encode()
        block.format = RESPONSES_FORMAT
    return [block]
