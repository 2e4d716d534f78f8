"""What every provider that speaks an HTTP API shares, written once.

A provider module is a dialect: pure functions from the ratatoskr.v1 request to the
upstream's JSON and back (``ChatDialect``), with no I/O. ``HttpProvider`` does the I/O
around them: the JSON call (status, error inside a 200, a body that must be an object),
the SSE and NDJSON loops, and the end of every stream (cut stream -> closing events ->
done). A provider may speak several dialects (one per API generation) and pick one per
model with ``chat_dialect``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ratatoskr.v1 import chat_pb2
from ratd import errors
from ratd.config import ProviderConfig
from ratd.providers.base import ChatLike, Provider
from ratd.providers.http import HttpClient, loads_or_protocol_error, parse_body
from ratd.providers.streams import chunks
from ratd.secrets import Secret

Event = TypeVar("Event", chat_pb2.ChatStreamResponse, chat_pb2.GenerateStreamResponse)

# The data of the SSE event that ends an OpenAI-style stream. No other API sends it.
SSE_DONE = "[DONE]"


@dataclass(slots=True)
class UpstreamCall(Generic[Event]):
    """One request to the upstream, as a dialect built it."""

    path: str
    body: Any
    model: str
    # "sse" or "ndjson", for streamed calls.
    stream_format: str = "sse"
    # What the dialect needs to read the answer (e.g. Anthropic's structured-output tool).
    plan: Any = None
    # Headers of this call alone (an API revision one endpoint of the upstream needs).
    headers: Mapping[str, str] | None = None


class Assembler(Protocol[Event]):
    """Turns an upstream's stream payloads into ratatoskr.v1 stream events, in order."""

    def feed(self, payload: dict[str, Any]) -> list[Event]:
        """The events one upstream payload (an SSE event's data, an NDJSON line) means."""
        ...

    @property
    def complete(self) -> bool:
        """The upstream has said the answer is whole (a stream cut before is an error)."""
        ...

    @property
    def ended(self) -> bool:
        """Nothing more will come: stop reading (some APIs keep the connection open)."""
        ...

    def finish(self) -> list[Event]:
        """The closing events once the stream is complete: what was held back until the
        end (whole reasoning blocks, tool-call ends), the usage, and ``done``."""
        ...


class ErrorDialect(Protocol):
    """How an API says that something went wrong."""

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        """The ratd error an error status and its body mean."""
        ...

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        """The error inside a 200 answer (a whole body or one stream payload), if any."""
        ...


class ChatDialect(ErrorDialect, Protocol):
    """Chat in one upstream API, as pure functions."""

    def chat_call(
        self, request: ChatLike, model: str, *, stream: bool
    ) -> UpstreamCall[chat_pb2.ChatStreamResponse]: ...

    def parse_chat(
        self, data: dict[str, Any], call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> chat_pb2.ChatResponse: ...

    def chat_assembler(
        self, call: UpstreamCall[chat_pb2.ChatStreamResponse]
    ) -> Assembler[chat_pb2.ChatStreamResponse]: ...


class HttpProvider(Provider):
    """A provider over HTTP. Subclasses set ``dialect`` (or override ``chat_dialect``),
    say how the key travels (``auth_headers``) and add what their API offers beyond chat."""

    dialect: ChatDialect
    # The dialects of the other APIs the provider speaks, by API name (``spec.apis``).
    dialects: Mapping[str, ChatDialect] = {}

    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        super().__init__(name, config, api_key)
        headers = {**self.default_headers(), **config.headers}
        if api_key:
            headers.update(self.auth_headers(api_key))
        self.http = HttpClient(name, config, headers)

    def default_headers(self) -> dict[str, str]:
        """Headers of the API itself (versions, attribution); the config's override them."""
        return {}

    def auth_headers(self, api_key: Secret) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key.reveal()}"}

    async def close(self) -> None:
        await self.http.close()

    def chat_dialect(self, model: str) -> ChatDialect:
        """The dialect that serves ``model``: the API the config or the registry names
        for it (``model_apis``), else the default. A name this class has no dialect for
        (a seed mark ahead of the code) is served by the default."""
        api = self.model_apis.api_for(model)
        return self.dialects.get(api, self.dialect) if api else self.dialect

    # -- transport ---------------------------------------------------------------------------

    async def call_json(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        model: str = "",
        errors_from: ErrorDialect | None = None,
        object_only: bool = True,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Any:
        """A whole JSON answer. A status other than 200, or an error inside a 200, is
        raised as the dialect classifies it; anything but a JSON object (unless
        ``object_only`` is off) is the upstream's protocol fault."""
        dialect = errors_from or self.dialect
        request = self.http.request(
            method, path, payload, model=model, headers=headers, body=body, whole=True
        )
        async with request as response:
            raw = await self.http.read(response)
            if response.status != 200:
                body = parse_body(raw)
                raise dialect.error_from_body(response.status, body, model, response.headers)
        data = loads_or_protocol_error(raw, self.name, model)
        error = dialect.error_in_body(data, model)
        if error is not None:
            raise error
        if object_only and not isinstance(data, dict):
            raise self.protocol_error(f"expected a JSON object, got {type(data).__name__}", model)
        return data

    async def stream(
        self,
        call: UpstreamCall[Event],
        assembler: Assembler[Event],
        errors_from: ErrorDialect | None = None,
    ) -> AsyncIterator[Event]:
        """POST ``call`` and yield the events its streamed answer means, then the
        assembler's closing events. A stream cut before the upstream said the answer is
        whole raises; so does an error the upstream sends instead of (or inside) it."""
        dialect = errors_from or self.dialect
        model = call.model
        saw_done = False
        request = self.http.request("POST", call.path, call.body, model=model, headers=call.headers)
        async with request as response:
            if response.status != 200:
                body = parse_body(await self.http.read(response))
                raise dialect.error_from_body(response.status, body, model, response.headers)
            if call.stream_format == "sse" and response.content_type == "application/json":
                data = parse_body(await self.http.read(response))
                raise dialect.error_in_body(data, model) or self.protocol_error(
                    "expected an event stream, got JSON", model
                )
            async for data in self.http.payloads(response, call.stream_format):
                if data == SSE_DONE:
                    saw_done = True
                    break
                payload = loads_or_protocol_error(data, self.name, model)
                error = dialect.error_in_body(payload, model)
                if error is not None:
                    raise error
                if not isinstance(payload, dict):
                    raise self.protocol_error(f"expected a JSON object, got {data[:100]!r}", model)
                for event in assembler.feed(payload):
                    yield event
                if assembler.ended:
                    break
        if not (saw_done or assembler.complete):
            raise self.protocol_error("the stream ended before the response was complete", model)
        for event in assembler.finish():
            yield event

    async def call_bytes(
        self,
        path: str,
        payload: Any = None,
        *,
        model: str,
        errors_from: ErrorDialect | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, str]:
        """A whole binary answer (an image, audio) and its Content-Type; an error status
        is raised as the dialect classifies it."""
        dialect = errors_from or self.dialect
        async with self.http.request(
            "POST", path, payload, model=model, headers=headers
        ) as response:
            raw = await self.http.read(response)
            if response.status != 200:
                raise dialect.error_from_body(
                    response.status, parse_body(raw), model, response.headers
                )
            if response.content_type == "application/json":  # an error in a 200, or no media
                data = parse_body(raw)
                raise dialect.error_in_body(data, model) or self.protocol_error(
                    "expected media bytes, got JSON", model
                )
            return raw, response.content_type

    async def stream_bytes(
        self,
        path: str,
        payload: Any,
        *,
        model: str,
        errors_from: ErrorDialect | None = None,
    ) -> AsyncIterator[tuple[bytes, str]]:
        """A binary answer chunk by chunk as it arrives (streamed audio), with its
        Content-Type; capped at ``max_response_mb`` in all."""
        dialect = errors_from or self.dialect
        async with self.http.request("POST", path, payload, model=model) as response:
            if response.status != 200:
                body = parse_body(await self.http.read(response))
                raise dialect.error_from_body(response.status, body, model, response.headers)
            kind = response.content_type
            if kind == "application/json":
                data = parse_body(await self.http.read(response))
                raise dialect.error_in_body(data, model) or self.protocol_error(
                    "expected audio, got JSON", model
                )
            async for chunk in chunks(response, self.http.max_bytes):
                yield chunk, kind

    def protocol_error(self, problem: str, model: str = "") -> errors.UpstreamProtocolError:
        return errors.UpstreamProtocolError(
            f"{self.name}: {problem}", provider=self.name, model=model
        )

    # -- chat ----------------------------------------------------------------------------------

    async def chat(self, request: ChatLike, model: str) -> chat_pb2.ChatResponse:
        dialect = self.chat_dialect(model)
        call = dialect.chat_call(request, model, stream=False)
        data = await self.call_json(
            "POST", call.path, call.body, model=model, errors_from=dialect, headers=call.headers
        )
        return dialect.parse_chat(data, call)

    def chat_stream(
        self, request: ChatLike, model: str
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        # The base's stream itself, not a generator around it: one layer less per event.
        dialect = self.chat_dialect(model)
        call = dialect.chat_call(request, model, stream=True)
        return self.stream(call, dialect.chat_assembler(call), dialect)
