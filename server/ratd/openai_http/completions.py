"""``POST /v1/completions`` (OpenAI's legacy text completions) as Generate and
GenerateStream: one prompt in, ``text_completion`` objects and chunks out."""

from __future__ import annotations

import time
from typing import Any

import orjson

from ratatoskr.v1 import chat_pb2
from ratd.openai_http import fields
from ratd.openai_http.chat import DONE, FINISH, sse_error, usage_json
from ratd.openai_http.fields import Body, bad

_KNOWN = frozenset(
    {
        "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "stop",
        "frequency_penalty", "presence_penalty", "seed", "stream", "stream_options", "n",
        "user", "echo", "suffix", "logprobs", "best_of", "logit_bias",
    }
)  # fmt: skip
_UNSERVED = ("echo", "suffix", "logprobs", "logit_bias")


def generate_request(body: Body) -> tuple[chat_pb2.GenerateRequest, bool, bool]:
    """The request, whether to stream, and whether a stream ends with a usage chunk."""
    fields.check_keys(body, _KNOWN)
    fields.only_one(body)
    fields.only_one(body, "best_of")
    fields.falsy(body, _UNSERVED)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad("prompt", "ratd takes one prompt, as a string (not token ids or a batch)")
    options = chat_pb2.GenerateOptions(model=fields.required_string(body, "model"))
    for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
        if (value := fields.number(body, key)) is not None:
            setattr(options, key, value)
    if (max_tokens := fields.integer(body, "max_tokens", 1)) is not None:
        options.max_tokens = max_tokens
    if (top_k := fields.integer(body, "top_k", 1)) is not None:
        options.top_k = top_k
    if (seed := fields.integer(body, "seed")) is not None:
        options.seed = seed
    options.stop_sequences.extend(fields.stop_sequences(body))
    stream = bool(fields.boolean(body, "stream"))
    request = chat_pb2.GenerateRequest(prompt=prompt, options=options)
    return request, stream, fields.include_usage(body, stream)


def _head(request_id: str, model: str) -> dict[str, Any]:
    return {
        "id": f"cmpl-{request_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
    }


def completion_json(answer: chat_pb2.GenerateResponse, request_id: str, model: str) -> bytes:
    body = _head(request_id, answer.model if answer.HasField("model") else model)
    body["choices"] = [
        {
            "text": answer.text,
            "index": 0,
            "logprobs": None,
            "finish_reason": FINISH.get(answer.finish_reason, "stop"),
        }
    ]
    if answer.HasField("usage"):
        body["usage"] = usage_json(answer.usage)
    return orjson.dumps(body)


class TextChunkEncoder:
    """GenerateStreamResponse events as ``text_completion`` SSE chunks (usage last, with
    empty choices, when asked for)."""

    __slots__ = ("_head", "_include_usage", "_tail", "_usage")

    trailer = DONE
    error = staticmethod(sse_error)

    def __init__(self, request_id: str, model: str, include_usage: bool) -> None:
        self._head = b"data: " + orjson.dumps(_head(request_id, model))[:-1] + b',"choices":'
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._include_usage = include_usage
        self._usage: chat_pb2.Usage | None = None

    def _chunk(self, text: str, finish: str | None = None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return self._head + orjson.dumps([choice]) + self._tail

    def encode(self, event: chat_pb2.GenerateStreamResponse) -> bytes:
        kind = event.WhichOneof("event")
        if kind == "text":
            return self._chunk(event.text)
        if kind == "usage":
            self._usage = event.usage
            return b""
        if kind == "done":
            frames = self._chunk("", FINISH.get(event.finish_reason, "stop"))
            if self._include_usage:
                usage = usage_json(self._usage) if self._usage is not None else None
                frames += self._head + b'[],"usage":' + orjson.dumps(usage) + b"}\n\n"
            return frames
        return b""
