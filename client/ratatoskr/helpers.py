"""Thin factories over the generated messages, for code that builds requests by hand.

Everything here returns the generated ``ratatoskr.v1`` messages themselves; there is no
second type system. ``Message.user("hi")`` is ``chat_pb2.Message(role=ROLE_USER,
content="hi")``, and so on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

from ratatoskr.v1 import chat_pb2, media_parts_pb2

_EFFORTS = {
    "none": chat_pb2.REASONING_EFFORT_NONE,
    "minimal": chat_pb2.REASONING_EFFORT_MINIMAL,
    "low": chat_pb2.REASONING_EFFORT_LOW,
    "medium": chat_pb2.REASONING_EFFORT_MEDIUM,
    "high": chat_pb2.REASONING_EFFORT_HIGH,
    "xhigh": chat_pb2.REASONING_EFFORT_XHIGH,
}


def _image(
    source: str | bytes, mime_type: str = "", detail: str | None = None
) -> chat_pb2.ContentPart:
    image = chat_pb2.ImagePart(mime_type=mime_type, detail=detail)
    if isinstance(source, bytes):
        image.data = source
    else:
        image.url = source
    return chat_pb2.ContentPart(image=image)


class Part:
    """Factories for ``chat_pb2.ContentPart``: documents, audio and video beside text and
    images. Bytes go inline (ratd sniffs their type); a string is a URL, passed to a
    provider that takes URLs (ratd never fetches it)."""

    @staticmethod
    def text(text: str) -> chat_pb2.ContentPart:
        return chat_pb2.ContentPart(text=text)

    @staticmethod
    def image(source: str | bytes, mime_type: str = "") -> chat_pb2.ContentPart:
        return _image(source, mime_type)

    @staticmethod
    def document(
        source: str | bytes,
        *,
        mime_type: str = "",
        filename: str = "",
        citations: bool = False,
        title: str = "",
    ) -> chat_pb2.ContentPart:
        """A PDF (or plain text) document."""
        part = media_parts_pb2.DocumentPart(
            mime_type=mime_type, filename=filename, citations=citations, title=title
        )
        if isinstance(source, bytes):
            part.data = source
        else:
            part.url = source
        return chat_pb2.ContentPart(document=part)

    @staticmethod
    def audio(source: str | bytes, mime_type: str = "") -> chat_pb2.ContentPart:
        part = media_parts_pb2.AudioPart(mime_type=mime_type)
        if isinstance(source, bytes):
            part.data = source
        else:
            part.url = source
        return chat_pb2.ContentPart(audio=part)

    @staticmethod
    def video(source: str | bytes, mime_type: str = "") -> chat_pb2.ContentPart:
        part = media_parts_pb2.VideoPart(mime_type=mime_type)
        if isinstance(source, bytes):
            part.data = source
        else:
            part.url = source
        return chat_pb2.ContentPart(video=part)


class Message:
    """Factories for ``chat_pb2.Message``."""

    @staticmethod
    def system(content: str) -> chat_pb2.Message:
        return chat_pb2.Message(role=chat_pb2.ROLE_SYSTEM, content=content)

    @staticmethod
    def user(
        content: str = "",
        *,
        images: Iterable[str | bytes] = (),
        image_mime_type: str = "",
        parts: Iterable[chat_pb2.ContentPart] = (),
    ) -> chat_pb2.Message:
        """A user message; ``images`` are URLs or raw bytes (then give ``image_mime_type``);
        ``parts`` are more content parts (``Part.document(...)``, ``Part.audio(...)``)."""
        parts = [*(_image(img, image_mime_type) for img in images), *parts]
        return chat_pb2.Message(role=chat_pb2.ROLE_USER, content=content, parts=parts)

    @staticmethod
    def assistant(
        content: str = "",
        *,
        tool_calls: Iterable[chat_pb2.ToolCall] = (),
        reasoning_blocks: Iterable[chat_pb2.ReasoningBlock] = (),
    ) -> chat_pb2.Message:
        return chat_pb2.Message(
            role=chat_pb2.ROLE_ASSISTANT,
            content=content,
            tool_calls=list(tool_calls),
            reasoning_blocks=list(reasoning_blocks),
        )

    @staticmethod
    def from_response(response: chat_pb2.ChatResponse) -> chat_pb2.Message:
        """The assistant's turn to send back in the next request: its text, tool calls and
        signed reasoning (which Anthropic and Gemini 3 require to continue after a tool
        call with thinking on)."""
        return Message.assistant(
            response.content,
            tool_calls=response.tool_calls,
            reasoning_blocks=response.reasoning_blocks,
        )

    @staticmethod
    def tool(tool_call_id: str, content: str | Mapping[str, Any]) -> chat_pb2.Message:
        """The result of a tool call; a mapping is sent as JSON."""
        text = content if isinstance(content, str) else json.dumps(content)
        return chat_pb2.Message(role=chat_pb2.ROLE_TOOL, content=text, tool_call_id=tool_call_id)


class ToolDefinition:
    """Factory for ``chat_pb2.ToolDefinition`` from a JSON Schema mapping."""

    def __new__(  # type: ignore[misc]
        cls,
        name: str,
        description: str = "",
        parameters: Mapping[str, Any] | None = None,
        *,
        cache_control: Mapping[str, Any] | None = None,
    ) -> chat_pb2.ToolDefinition:
        schema = parameters if parameters is not None else {"type": "object", "properties": {}}
        return chat_pb2.ToolDefinition(
            name=name,
            description=description,
            parameters_json=json.dumps(schema),
            cache_control_json=json.dumps(cache_control) if cache_control else "",
        )


class ToolCall:
    """Helpers for ``chat_pb2.ToolCall``."""

    @staticmethod
    def parse_arguments(call: chat_pb2.ToolCall) -> dict[str, Any]:
        """The call's arguments as a dict (an empty string means no arguments)."""
        if not call.arguments.strip():
            return {}
        value = json.loads(call.arguments)
        if not isinstance(value, dict):
            raise ValueError(f"tool call {call.id} arguments are not a JSON object")
        return value


class ChatStreamCollector:
    """Folds ChatStream events into the ChatResponse that Chat would have answered, so
    that a streamed turn can be shown as it arrives and still be sent back whole::

        collector = ChatStreamCollector()
        async for event in client.chat_stream(messages, model=model):
            collector.add(event)  # and show the event
        messages.append(Message.from_response(collector.response()))
    """

    def __init__(self) -> None:
        self._reply = chat_pb2.ChatResponse()
        self._reasoning: list[str] = []
        self._content: list[str] = []
        self._calls: dict[int, chat_pb2.ToolCall] = {}

    @classmethod
    async def collect(
        cls, events: AsyncIterable[chat_pb2.ChatStreamResponse]
    ) -> chat_pb2.ChatResponse:
        """Read a whole stream and return its response."""
        collector = cls()
        async for event in events:
            collector.add(event)
        return collector.response()

    def add(self, event: chat_pb2.ChatStreamResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "content":
            self._content.append(event.content)
        elif kind == "reasoning":
            self._reasoning.append(event.reasoning)
        elif kind == "reasoning_block":
            self._reply.reasoning_blocks.append(event.reasoning_block)
        elif kind == "citation":
            self._reply.citations.append(event.citation)
        elif kind == "tool_call_start":
            start = event.tool_call_start
            self._calls[start.index] = chat_pb2.ToolCall(id=start.id, name=start.name)
        elif kind == "tool_call_delta":
            call = self._calls.setdefault(event.tool_call_delta.index, chat_pb2.ToolCall())
            call.arguments += event.tool_call_delta.arguments
        elif kind == "usage":
            self._reply.usage.CopyFrom(event.usage)
        elif kind == "done":
            self._reply.finish_reason = event.finish_reason
            self._reply.model = event.model
            self._reply.provider = event.provider

    def response(self) -> chat_pb2.ChatResponse:
        """What the events so far add up to."""
        reply = chat_pb2.ChatResponse()
        reply.CopyFrom(self._reply)
        reply.content = "".join(self._content)
        if self._reasoning:
            reply.reasoning = "".join(self._reasoning)
        reply.tool_calls.extend(self._calls[index] for index in sorted(self._calls))
        return reply


def _tool_choice(choice: str) -> chat_pb2.ToolChoice:
    if choice == "auto":
        return chat_pb2.ToolChoice(auto=True)
    if choice == "none":
        return chat_pb2.ToolChoice(none=True)
    if choice == "required":
        return chat_pb2.ToolChoice(required=True)
    return chat_pb2.ToolChoice(function=choice)


def _response_format(fmt: str | Mapping[str, Any]) -> chat_pb2.ResponseFormat:
    if fmt == "text":
        return chat_pb2.ResponseFormat(text=True)
    if fmt == "json_object":
        return chat_pb2.ResponseFormat(json_object=True)
    if isinstance(fmt, Mapping):
        return chat_pb2.ResponseFormat(json_schema=json.dumps(fmt))
    raise ValueError(f"response_format must be 'text', 'json_object' or a schema, not {fmt!r}")


def _reasoning(
    effort: str | None, budget: int | None, exclude: bool | None
) -> chat_pb2.ReasoningConfig | None:
    if effort is None and budget is None and exclude is None:
        return None
    config = chat_pb2.ReasoningConfig(max_tokens=budget, exclude_from_output=exclude)
    if effort is not None:
        if effort not in _EFFORTS:
            raise ValueError(f"reasoning_effort must be one of {sorted(_EFFORTS)}, not {effort!r}")
        config.effort = _EFFORTS[effort]
    return config


def ChatOptions(  # reads like the message it builds
    model: str = "",
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    stop: Iterable[str] = (),
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    seed: int | None = None,
    tool_choice: str | None = None,
    parallel_tool_calls: bool | None = None,
    response_format: str | Mapping[str, Any] | None = None,
    reasoning_effort: str | None = None,
    reasoning_budget: int | None = None,
    exclude_reasoning: bool | None = None,
    cache_prompt: bool | None = None,
    raw_provider_options: Mapping[str, Any] | None = None,
) -> chat_pb2.ChatOptions:
    """``chat_pb2.ChatOptions`` from keyword arguments, with plain-Python values.

    ``tool_choice`` is "auto", "none", "required" or a function name; ``response_format``
    is "text", "json_object" or a JSON Schema mapping; ``reasoning_effort`` is one of
    none/minimal/low/medium/high/xhigh.
    """
    return chat_pb2.ChatOptions(
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        top_p=top_p,
        top_k=top_k,
        stop=list(stop),
        frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty,
        seed=seed,
        tool_choice=_tool_choice(tool_choice) if tool_choice is not None else None,
        parallel_tool_calls=parallel_tool_calls,
        response_format=_response_format(response_format) if response_format is not None else None,
        reasoning=_reasoning(reasoning_effort, reasoning_budget, exclude_reasoning),
        cache_prompt=cache_prompt,
        raw_provider_options=json.dumps(raw_provider_options) if raw_provider_options else None,
    )


def GenerateOptions(  # reads like the message it builds
    model: str = "",
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    stop: Iterable[str] = (),
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    seed: int | None = None,
    reasoning_effort: str | None = None,
    reasoning_budget: int | None = None,
    exclude_reasoning: bool | None = None,
    raw_provider_options: Mapping[str, Any] | None = None,
) -> chat_pb2.GenerateOptions:
    """``chat_pb2.GenerateOptions`` from keyword arguments (see ``ChatOptions``)."""
    return chat_pb2.GenerateOptions(
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop_sequences=list(stop),
        frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty,
        seed=seed,
        reasoning=_reasoning(reasoning_effort, reasoning_budget, exclude_reasoning),
        raw_provider_options=json.dumps(raw_provider_options) if raw_provider_options else None,
    )
