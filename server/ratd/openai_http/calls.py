"""How every request of the OpenAI door goes: the caller's tenant (the Authenticator the
gRPC interceptor uses; the same roles), the JSON body read within the size limit, the call
through the shared ``CallGuard`` admission (concurrency limit, time limit, metrics, request
log, span) to the current gateway, and the answer or the error as OpenAI's JSON or SSE.
``door.OpenAIDoor`` builds on it with the endpoints and the server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from typing import Any, Protocol, TypeVar

import orjson
from aiohttp import web

from ratatoskr.v1 import media_pb2
from ratd import errors
from ratd.core.access import CALLER, Tenant
from ratd.core.calls import CallInfo, caller_user
from ratd.core.gateway import Gateway
from ratd.openai_http.wire_errors import error_body, internal_body, plain_error
from ratd.service.auth import Authenticator
from ratd.service.guard import (
    CallGuard,
    ClientGone,
    status_name,
)
from ratd.service.report import report_refused

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)

JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


class Encoder(Protocol[E_contra]):
    """Stream events to SSE bytes (chat.ChunkEncoder, completions.TextChunkEncoder,
    responses.ResponsesEncoder)."""

    # What ends the stream after the last event (Chat Completions: ``data: [DONE]``).
    trailer: bytes

    def encode(self, event: E_contra) -> bytes: ...

    def error(self, body: bytes) -> bytes:
        """An error (OpenAI's ``{"error": {...}}`` body) after the stream began."""
        ...


class CallPath:
    """The part of every endpoint that is not translation."""

    def __init__(
        self, guard: CallGuard, authenticator: Authenticator | None, max_body: int
    ) -> None:
        self.guard = guard
        # Swapped by a config reload (new tenants, rotated keys), as the interceptor's is.
        self.authenticator = authenticator
        self.max_body = max_body

    def _caller(self, request: web.Request, need: str) -> Tenant | None:
        """The caller's tenant (None without [auth]); CallerUnauthenticated/RoleRequired."""
        tenant = None
        if self.authenticator is not None:
            peercert = None
            if self.authenticator.mode == "mtls" and request.transport is not None:
                peercert = request.transport.get_extra_info("peercert")
            tenant = self.authenticator.for_http(
                request.headers.get("Authorization"), peercert, need
            )
        CALLER.set(tenant)
        return tenant

    async def _begin(
        self, request: web.Request, method: str, need: str
    ) -> tuple[Tenant | None, dict[str, Any] | web.Response]:
        """The caller, then the JSON body (bounded); or the response that refuses them."""
        try:
            tenant = self._caller(request, need)
        except errors.GatewayError as err:
            return None, self._refused(request, method, err, None)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            report_refused(
                method,
                "INVALID_ARGUMENT",
                tenant,
                log_requests=self.guard.log_requests,
                audit=self.guard.audit,
                user=caller_user(request.headers.items()),
            )
            message = f"request body over {self.max_body} bytes (server.max_request_bytes)"
            body = plain_error(413, message, "invalid_request_error", "request_too_large")
            return tenant, web.Response(status=413, body=body, content_type=JSON)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            invalid = errors.InvalidInput(f"the request body is not valid JSON: {err}")
            return tenant, self._refused(request, method, invalid, tenant)
        if not isinstance(parsed, dict):
            invalid = errors.InvalidInput("the request body must be a JSON object")
            return tenant, self._refused(request, method, invalid, tenant)
        return tenant, parsed

    async def _parsed(
        self, request: web.Request, method: str, parse: Callable[[dict[str, Any]], T]
    ) -> tuple[Tenant | None, T] | web.Response:
        """The caller and what ``parse`` makes of the JSON body (it raises InvalidInput
        for a body it refuses); or the response that refuses them."""
        tenant, body = await self._begin(request, method, "inference")
        if isinstance(body, web.Response):
            return body
        try:
            return tenant, parse(body)
        except errors.InvalidInput as err:
            return self._refused(request, method, err, tenant)

    def _refused(
        self,
        request: web.Request,
        method: str,
        err: errors.GatewayError,
        tenant: Tenant | None,
    ) -> web.Response:
        """A call refused before it reached the guard (auth, unreadable body): reported
        like the gRPC interceptor's refusals."""
        if isinstance(err, errors.CallerUnauthenticated | errors.RoleRequired):
            log.info("%s refused: %s (peer %s)", method, err.reason, request.remote)
        report_refused(
            method,
            status_name(err),
            tenant,
            log_requests=self.guard.log_requests,
            audit=self.guard.audit,
            user=caller_user(request.headers.items()),
        )
        return _error_response(err)

    async def _unary(
        self,
        request: web.Request,
        method: str,
        tenant: Tenant | None,
        *,
        call: Callable[[Gateway], Awaitable[T]],
        render: Callable[[T, str], bytes],
    ) -> web.StreamResponse:
        guard = self.guard
        with guard.holder.use() as gateway:
            try:
                async with guard.admission(
                    method, guard.request_timeout, tenant, request.headers.items, system="http"
                ) as (_, info):
                    answer = await call(gateway)
            except Exception as exc:
                return self._failed(method, exc)
        return web.Response(
            body=render(answer, info.request_id),
            content_type=JSON,
            headers={"x-request-id": info.request_id},
        )

    async def _stream(
        self,
        request: web.Request,
        method: str,
        tenant: Tenant | None,
        *,
        open_stream: Callable[[Gateway], AsyncIterator[E]],
        encoder_for: Callable[[str], Encoder[E]],
    ) -> web.StreamResponse:
        """Relay a stream as SSE. Errors before the first event are HTTP errors; after it,
        an ``error`` event ends the stream (as OpenAI's API does). The time limit bounds
        each silence, as on gRPC."""
        guard = self.guard
        loop = asyncio.get_running_loop()
        response: web.StreamResponse | None = None
        with guard.holder.use() as gateway:
            try:
                async with (
                    guard.admission(
                        method, guard.request_timeout, tenant, request.headers.items, system="http"
                    ) as (timeout, info),
                    aclosing(open_stream(gateway)) as events,  # type: ignore[type-var]
                ):
                    encoder = encoder_for(info.request_id)
                    ending = b""
                    async for event in events:
                        if response is None:
                            info.first_event = time.perf_counter() - info.started
                            response = await _open_sse(request, info)
                        data = encoder.encode(event)
                        if event.WhichOneof("event") == "done":  # type: ignore[attr-defined]
                            ending = data  # the last event: one write with [DONE]
                        elif data:
                            await _write(response, data)
                        timeout.reschedule(loop.time() + guard.request_timeout)
                    if response is None:
                        response = await _open_sse(request, info)
                    await _write(response, ending + encoder.trailer)
            except ClientGone:  # nobody to answer; aiohttp drops the connection
                return response if response is not None else web.Response(status=499)
            except Exception as exc:
                if response is None:
                    return self._failed(method, exc)
                await self._stream_failed(response, method, exc, encoder.error)
        assert response is not None
        return response

    async def _audio(
        self,
        request: web.Request,
        method: str,
        tenant: Tenant | None,
        open_stream: Callable[[Gateway], AsyncIterator[media_pb2.SynthesizeResponse]],
    ) -> web.StreamResponse:
        """Relay streamed audio as the body itself, each chunk written as it arrives (its
        Content-Type from the first chunk). Errors before the first chunk are HTTP errors;
        after it the connection is closed without the body's end, which the client sees
        as a cut response (audio has no in-band error)."""
        guard = self.guard
        loop = asyncio.get_running_loop()
        response: web.StreamResponse | None = None
        with guard.holder.use() as gateway:
            try:
                async with (
                    guard.admission(
                        method, guard.request_timeout, tenant, request.headers.items, system="http"
                    ) as (timeout, info),
                    aclosing(open_stream(gateway)) as chunks,  # type: ignore[type-var]
                ):
                    async for chunk in chunks:
                        if not chunk.audio:
                            continue
                        if response is None:
                            info.first_event = time.perf_counter() - info.started
                            response = web.StreamResponse(
                                headers={
                                    "Content-Type": chunk.mime_type or "application/octet-stream",
                                    "x-request-id": info.request_id,
                                }
                            )
                            try:
                                await response.prepare(request)
                            except ConnectionResetError:
                                raise ClientGone() from None
                        await _write(response, chunk.audio)
                        timeout.reschedule(loop.time() + guard.request_timeout)
                    if response is None:
                        raise errors.UpstreamProtocolError("the provider sent no audio")
                    await response.write_eof()
            except ClientGone:
                return response if response is not None else web.Response(status=499)
            except Exception as exc:
                if response is None:
                    return self._failed(method, exc)
                guard.failure(method, exc)
                if request.transport is not None:
                    request.transport.close()
        assert response is not None
        return response

    def _failed(self, method: str, exc: Exception) -> web.Response:
        found = self.guard.failure(method, exc)
        if isinstance(found, errors.GatewayError):
            return _error_response(found)
        return web.Response(status=500, body=internal_body(found), content_type=JSON)

    async def _stream_failed(
        self,
        response: web.StreamResponse,
        method: str,
        exc: Exception,
        frame: Callable[[bytes], bytes],
    ) -> None:
        found = self.guard.failure(method, exc)
        if isinstance(found, errors.GatewayError):
            body = error_body(found)[1]
        else:
            body = internal_body(found)
        with suppress(ConnectionResetError):
            await response.write(frame(body))


def _error_response(err: errors.GatewayError) -> web.Response:
    status, body, headers = error_body(err)
    return web.Response(status=status, body=body, content_type=JSON, headers=headers)


async def _open_sse(request: web.Request, info: CallInfo) -> web.StreamResponse:
    response = web.StreamResponse(headers={**_SSE_HEADERS, "x-request-id": info.request_id})
    try:
        await response.prepare(request)
    except ConnectionResetError:
        raise ClientGone() from None
    return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionResetError:
        raise ClientGone() from None
