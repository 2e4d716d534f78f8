"""``POST /v1/responses`` answers: a ``ChatResponse`` as a ``response`` object, and the
``ChatStreamResponse`` events as the Responses API's semantic SSE events.

Reasoning blocks travel as ``reasoning`` items. A block in OpenAI's Responses format keeps
its id and its encrypted content as they are (the item could go to OpenAI itself); a
block of another API with something to verify (Anthropic's signed thinking, Gemini's
thought signature, redacted data) is carried whole in ``encrypted_content`` as
``ratd1.`` + base64 of the block, so that it comes back to ratd, and to its own API,
intact. The block's text is the item's summary. Reasoning text without a block (a
provider that shows its thinking unsigned) is an item with a summary only.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2
from ratd.openai_http.responses_request import RESPONSES_FORMAT, WRAPPED

_INCOMPLETE = {
    chat_pb2.FINISH_REASON_LENGTH: "max_output_tokens",
    chat_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}


def usage_json(usage: chat_pb2.Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_prompt_tokens,
            "cache_write_tokens": usage.cache_creation_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def reasoning_item(
    block: chat_pb2.ReasoningBlock, item_id: str, *, announced: bool = False
) -> dict[str, Any]:
    """The item of ``block``: its own id, unless the stream ``announced`` ``item_id``
    before the block came (then a Responses block travels wrapped, to keep its id)."""
    summary = [{"type": "summary_text", "text": block.text}] if block.text else []
    own = item_id if announced else block.id or item_id
    item: dict[str, Any] = {"id": own, "type": "reasoning", "summary": summary}
    if block.format == RESPONSES_FORMAT and block.redacted_data and block.id == own:
        item["encrypted_content"] = block.redacted_data.decode("utf-8", "replace")
    elif block.signature or block.redacted_data or block.format:
        item["encrypted_content"] = WRAPPED + base64.b64encode(block.SerializeToString()).decode()
    return item


def _message_item(item_id: str, text: str, *, done: bool = True) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": item_id,
        "type": "message",
        "status": "completed" if done else "in_progress",
        "role": "assistant",
        "content": content if done else [],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str, done: bool) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": "completed" if done else "in_progress",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


@dataclass(slots=True)
class Echo:
    """What a response object repeats of its request."""

    body: Mapping[str, Any]
    created: int = field(default_factory=lambda: int(time.time()))

    def response(
        self,
        request_id: str,
        model: str,
        *,
        status: str,
        output: list[dict[str, Any]],
        usage: chat_pb2.Usage | None = None,
        finish: chat_pb2.FinishReason = chat_pb2.FINISH_REASON_UNSPECIFIED,
    ) -> dict[str, Any]:
        body = self.body
        incomplete = _INCOMPLETE.get(finish) if status != "in_progress" else None
        if incomplete:
            status = "incomplete"
        reasoning = body.get("reasoning") or {}
        return {
            "id": f"resp_{request_id}",
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "store": False,
            "temperature": body.get("temperature"),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p"),
            "truncation": "disabled",
            "usage": usage_json(usage) if usage is not None else None,
            "user": None,
            "metadata": body.get("metadata") or {},
        }


def response_json(answer: chat_pb2.ChatResponse, request_id: str, echo: Echo) -> bytes:
    output = [
        reasoning_item(block, f"rs_{request_id}_{i}")
        for i, block in enumerate(answer.reasoning_blocks)
    ]
    if not output and answer.reasoning:
        output.append(
            reasoning_item(chat_pb2.ReasoningBlock(text=answer.reasoning), f"rs_{request_id}")
        )
    if answer.content:
        output.append(_message_item(f"msg_{request_id}", answer.content))
    for i, call in enumerate(answer.tool_calls):
        item_id = f"fc_{request_id}_{i}"
        output.append(_call_item(item_id, call.id, call.name, call.arguments, True))
    model = answer.model or echo.body.get("model", "")
    usage = answer.usage if answer.HasField("usage") else None
    found = echo.response(
        request_id,
        model,
        status="completed",
        output=output,
        usage=usage,
        finish=answer.finish_reason,
    )
    if answer.provider:
        found["provider"] = answer.provider
    return orjson.dumps(found)


# -- streams ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    index: int  # output_index
    kind: str  # "message", "reasoning", "function_call"
    text: list[str] = field(default_factory=list)


class ResponsesEncoder:
    """ChatStreamResponse events as the Responses API's events: ``response.created`` and
    ``in_progress`` first; an output item per text, reasoning or tool call, announced
    (``output_item.added``), filled by deltas and closed (``output_item.done``);
    reasoning items are closed once their blocks (which come last) are known; then
    ``response.completed`` (or ``incomplete``) with the whole response. No ``[DONE]``."""

    trailer = b""

    def __init__(self, request_id: str, echo: Echo) -> None:
        self.request_id = request_id
        self.echo = echo
        self.model = str(echo.body.get("model", ""))
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: _Open | None = None
        self.calls: dict[int, _Open] = {}  # by ChatStream tool-call index
        self.reasoning: list[int] = []  # output indexes of reasoning items not yet done
        self.unsigned: list[int] = []  # ... of those whose block has not come
        self.usage: chat_pb2.Usage | None = None
        self.started = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = orjson.dumps({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        skeleton = self.echo.response(self.request_id, self.model, status="in_progress", output=[])
        return self._event("response.created", response=skeleton) + self._event(
            "response.in_progress", response=skeleton
        )

    def encode(self, event: chat_pb2.ChatStreamResponse) -> bytes:
        kind = event.WhichOneof("event")
        head = self._start()
        if kind == "content":
            return head + self._text("message", event.content)
        if kind == "reasoning":
            return head + self._text("reasoning", event.reasoning)
        if kind == "tool_call_start":
            return head + self._call_start(event.tool_call_start)
        if kind == "tool_call_delta":
            return head + self._call_delta(event.tool_call_delta)
        if kind == "tool_call_end":
            return head + self._call_end(event.tool_call_end.index)
        if kind == "reasoning_block":
            return head + self._block(event.reasoning_block)
        if kind == "usage":
            self.usage = event.usage
            return head
        if kind == "done":
            return head + self._finish(event)
        return head

    # -- items ------------------------------------------------------------------------------

    def _add(self, item: dict[str, Any]) -> tuple[int, bytes]:
        index = len(self.output)
        self.output.append(item)
        return index, self._event("response.output_item.added", output_index=index, item=item)

    def _text(self, kind: str, text: str) -> bytes:
        out = b""
        if self.open is None or self.open.kind != kind:
            out += self._close()
            out += self._open_text(kind)
        assert self.open is not None
        self.open.text.append(text)
        where = {"item_id": self.output[self.open.index]["id"], "output_index": self.open.index}
        if kind == "message":
            return out + self._event(
                "response.output_text.delta", **where, content_index=0, delta=text, logprobs=[]
            )
        return out + self._event(
            "response.reasoning_summary_text.delta", **where, summary_index=0, delta=text
        )

    def _open_text(self, kind: str) -> bytes:
        number = len(self.output)
        if kind == "message":
            index, out = self._add(_message_item(f"msg_{self.request_id}_{number}", "", done=False))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += self._event(
                "response.content_part.added",
                item_id=self.output[index]["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
        else:
            item = {"id": f"rs_{self.request_id}_{number}", "type": "reasoning", "summary": []}
            index, out = self._add(item)
            self.reasoning.append(index)
            self.unsigned.append(index)
            out += self._event(
                "response.reasoning_summary_part.added",
                item_id=item["id"],
                output_index=index,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
        self.open = _Open(index, kind)
        return out

    def _close(self) -> bytes:
        """The end of the open text or reasoning item (reasoning: its summary only)."""
        opened, self.open = self.open, None
        if opened is None:
            return b""
        text = "".join(opened.text)
        item = self.output[opened.index]
        where = {"item_id": item["id"], "output_index": opened.index}
        if opened.kind == "reasoning":
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            return self._event(
                "response.reasoning_summary_text.done", **where, summary_index=0, text=text
            ) + self._event(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=part
            )
        self.output[opened.index] = done = _message_item(item["id"], text)
        return (
            self._event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            )
            + self._event(
                "response.content_part.done", **where, content_index=0, part=done["content"][0]
            )
            + self._event("response.output_item.done", output_index=opened.index, item=done)
        )

    def _call_start(self, start: chat_pb2.ToolCallStart) -> bytes:
        out = self._close()
        item_id = f"fc_{self.request_id}_{start.index}"
        index, added = self._add(_call_item(item_id, start.id, start.name, "", False))
        self.calls[start.index] = _Open(index, "function_call")
        return out + added

    def _call_delta(self, delta: chat_pb2.ToolCallDelta) -> bytes:
        call = self.calls.get(delta.index)
        if call is None:
            return b""
        call.text.append(delta.arguments)
        item_id = self.output[call.index]["id"]
        return self._event(
            "response.function_call_arguments.delta",
            item_id=item_id,
            output_index=call.index,
            delta=delta.arguments,
        )

    def _call_end(self, index: int) -> bytes:
        call = self.calls.pop(index, None)
        if call is None:
            return b""
        item = self.output[call.index]
        arguments = "".join(call.text)
        item.update(arguments=arguments, status="completed")
        where = {"item_id": item["id"], "output_index": call.index}
        return self._event(
            "response.function_call_arguments.done", **where, arguments=arguments
        ) + self._event("response.output_item.done", output_index=call.index, item=item)

    def _block(self, block: chat_pb2.ReasoningBlock) -> bytes:
        """A whole reasoning block: it completes the streamed reasoning item it belongs to
        (in order), or is an item of its own."""
        out = self._close() if self.open is not None and self.open.kind == "reasoning" else b""
        if self.unsigned:
            index = self.unsigned.pop(0)
            streamed = self.output[index]
            self.output[index] = reasoning_item(block, streamed["id"], announced=True)
            return out
        index, added = self._add(reasoning_item(block, f"rs_{self.request_id}_{len(self.output)}"))
        self.reasoning.append(index)
        return out + added

    def _finish(self, done: chat_pb2.ChatStreamResponse) -> bytes:
        out = self._close()
        for index in sorted(self.calls):
            out += self._call_end(index)
        for index in self.reasoning:
            out += self._event(
                "response.output_item.done", output_index=index, item=self.output[index]
            )
        self.reasoning.clear()
        model = done.model or self.model
        final = self.echo.response(
            self.request_id,
            model,
            status="completed",
            output=self.output,
            usage=self.usage,
            finish=done.finish_reason,
        )
        if done.provider:
            final["provider"] = done.provider
        return out + self._event(f"response.{final['status']}", response=final)

    def error(self, body: bytes) -> bytes:
        """An error after the stream began: an ``error`` event, as the API sends it."""
        found = orjson.loads(body).get("error") or {}
        fields = {k: found.get(k) for k in ("code", "message", "param")}
        return self._start() + self._event("error", **fields)
