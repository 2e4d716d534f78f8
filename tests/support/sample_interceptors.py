"""Interceptors for the tests, named in configs as ``tests.support.sample_interceptors:X``
(as an operator names theirs)."""

from __future__ import annotations

from typing import Any, ClassVar

from ratatoskr.v1 import chat_pb2, inference_pb2
from ratd.interceptors import CallContext, Interceptor, Refuse


class Tagger(Interceptor):
    """Appends ``[tag]`` to the text a call sends and ``<tag>`` to the text it gets back,
    and notes each hook it ran in ``Tagger.seen`` (tag, hook, rpc, user)."""

    seen: ClassVar[list[tuple[str, str, str, str]]] = []

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.name = f"tagger-{tag}"

    async def before(self, call: CallContext, request: Any) -> Any:
        Tagger.seen.append((self.tag, "before", call.rpc, call.user))
        request = _copy(request)
        if isinstance(request, chat_pb2.ChatRequest | chat_pb2.ChatStreamRequest):
            request.messages[-1].content += f"[{self.tag}]"
        elif isinstance(request, chat_pb2.GenerateRequest):
            request.prompt += f"[{self.tag}]"
        elif isinstance(request, inference_pb2.EmbedRequest):
            request.text += f"[{self.tag}]"
        return request

    async def after(self, call: CallContext, response: Any) -> Any:
        Tagger.seen.append((self.tag, "after", call.rpc, call.user))
        if isinstance(response, chat_pb2.ChatResponse):
            response = _copy(response)
            response.content += f"<{self.tag}>"
            return response
        if isinstance(response, chat_pb2.GenerateResponse):
            response = _copy(response)
            response.text += f"<{self.tag}>"
            return response
        return None

    async def on_event(self, call: CallContext, event: Any) -> Any:
        Tagger.seen.append((self.tag, "on_event", call.rpc, call.user))
        if event.WhichOneof("event") == "content":
            event = _copy(event)
            event.content += f"<{self.tag}>"
            return event
        return None


class Refuser(Interceptor):
    """Refuses chats that mention "forbidden"; notes the calls it saw (rpc, via)."""

    name = "refuser"
    seen: ClassVar[list[tuple[str, str]]] = []

    async def before(self, call: CallContext, request: Any) -> Any:
        Refuser.seen.append((call.rpc, call.via))
        chats = chat_pb2.ChatRequest | chat_pb2.ChatStreamRequest
        if isinstance(request, chats) and any("forbidden" in m.content for m in request.messages):
            raise Refuse("forbidden words are refused here", "FAILED_PRECONDITION")
        return None


class Broken:
    """A buggy interceptor (a plain object with one hook)."""

    async def before(self, call: CallContext, request: Any) -> Any:
        raise RuntimeError("the interceptor has a bug; the prompt is " + str(request))


class WrongType(Interceptor):
    async def before(self, call: CallContext, request: Any) -> Any:
        return "not a request"


class SyncHook:
    def before(self, call: CallContext, request: Any) -> Any:
        return None


broken = Broken()


def _copy(message: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


# The same class under a second name, so that one chain can hold two configured copies.
TaggerB = Tagger


class CutAfterFirst(Interceptor):
    """Lets the first content event of a stream through, refuses at the second."""

    name = "cut-after-first"

    async def on_event(self, call: CallContext, event: Any) -> Any:
        if event.WhichOneof("event") == "content":
            if call.state.get("content"):
                raise Refuse("that is enough", "RESOURCE_EXHAUSTED")
            call.state["content"] = True
        return None
