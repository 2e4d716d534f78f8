"""The HTTP server of the OpenAI door: aiohttp on ratd's event loop, started, drained and
stopped by the Daemon beside the gRPC server.

Every request: the caller's tenant from ``Authorization: Bearer <key>`` (the Authenticator
the gRPC interceptor uses; the same roles), the body read within the size limit and
translated to a ``ratatoskr.v1`` message, then the call through the shared ``CallGuard``
admission (concurrency limit, time limit, metrics, request log, span) to the current
gateway, and the answer (or the error) translated back. A client that goes away cancels
its handler (``handler_cancellation``), and with it the upstream call."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from typing import Any, Protocol, TypeVar

import orjson
from aiohttp import web

from ratd import errors
from ratd.config import Config
from ratd.core.access import CALLER, Tenant
from ratd.core.calls import CallInfo
from ratd.core.gateway import Gateway
from ratd.openai_http import chat, completions, embeddings, models
from ratd.openai_http.wire_errors import error_body, internal_body, plain_error
from ratd.service.auth import ANY, Authenticator
from ratd.service.guard import (
    CallGuard,
    ClientGone,
    check_caller_model,
    new_request_id,
    status_name,
)
from ratd.service.report import report

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)

_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


class Encoder(Protocol[E_contra]):
    """Stream events to SSE bytes (chat.ChunkEncoder, completions.TextChunkEncoder)."""

    def encode(self, event: E_contra) -> bytes: ...


class OpenAIDoor:
    """``[http] address``: the OpenAI-compatible API over the daemon's CallGuard."""

    def __init__(
        self, config: Config, guard: CallGuard, authenticator: Authenticator | None
    ) -> None:
        self.address = config.http.address
        self.guard = guard
        # Swapped by a config reload (new tenants, rotated keys), as the interceptor's is.
        self.authenticator = authenticator
        server = config.server
        # As gRPC messages: room for images and JSON overhead beyond the text limit.
        self.max_body = max(4 * server.max_request_bytes, 16 * 1024 * 1024)
        self.grace = server.shutdown_grace_secs
        self.ssl = _ssl_context(config)
        self.bound = ""
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model:.+}", self._model)  # ids may contain '/'
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self) -> None:
        """Listen on ``address``; OSError when it cannot."""
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=self.grace,
        )
        await self._runner.setup()
        host, _, port = self.address.rpartition(":")
        site = web.TCPSite(
            self._runner, host.strip("[]"), int(port), ssl_context=self.ssl, reuse_port=False
        )
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(f"cannot serve HTTP on {self.address}: {err.strerror}") from None
        sockets: list[Any] = list(getattr(site._server, "sockets", None) or ())
        bound_host, bound_port = sockets[0].getsockname()[:2]
        self.bound = f"{host}:{bound_port}" if host else f"{bound_host}:{bound_port}"
        scheme = "https" if self.ssl else "http"
        log.info("OpenAI-compatible HTTP on %s://%s/v1", scheme, self.bound)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight (streams included) finish for up to the
        grace period, then cancel what is left."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- endpoints ------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        tenant, body = await self._begin(request, "http.Chat", "inference")
        if isinstance(body, web.Response):
            return body
        try:
            message, stream, usage = chat.chat_request(body)
        except errors.InvalidInput as err:
            return self._refused(request, "http.Chat", err, tenant)
        model = message.options.model
        if stream:
            return await self._stream(
                request,
                "http.ChatStream",
                tenant,
                model=model,
                open_stream=lambda gw: gw.chat_stream(message),
                encoder_for=lambda rid: chat.ChunkEncoder(rid, model, usage),
            )
        return await self._unary(
            request,
            "http.Chat",
            tenant,
            model=model,
            call=lambda gw: gw.chat(message),
            render=lambda answer, rid: chat.completion_json(answer, rid, model),
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        tenant, body = await self._begin(request, "http.Generate", "inference")
        if isinstance(body, web.Response):
            return body
        try:
            message, stream, usage = completions.generate_request(body)
        except errors.InvalidInput as err:
            return self._refused(request, "http.Generate", err, tenant)
        model = message.options.model
        if stream:
            return await self._stream(
                request,
                "http.GenerateStream",
                tenant,
                model=model,
                open_stream=lambda gw: gw.generate_stream(message),
                encoder_for=lambda rid: completions.TextChunkEncoder(rid, model, usage),
            )
        return await self._unary(
            request,
            "http.Generate",
            tenant,
            model=model,
            call=lambda gw: gw.generate(message),
            render=lambda answer, rid: completions.completion_json(answer, rid, model),
        )

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        tenant, body = await self._begin(request, "http.Embeddings", "inference")
        if isinstance(body, web.Response):
            return body
        try:
            message, as_base64 = embeddings.embed_request(body)
        except errors.InvalidInput as err:
            return self._refused(request, "http.Embeddings", err, tenant)
        return await self._unary(
            request,
            "http.Embeddings",
            tenant,
            model=message.model,
            call=lambda gw: gw.embed_batch(message),
            render=lambda answer, _: embeddings.embeddings_json(answer, message.model, as_base64),
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        try:
            tenant = self._caller(request, ANY)
        except errors.GatewayError as err:
            return self._refused(request, "http.ListModels", err, None)

        async def listing(gateway: Gateway) -> bytes:
            return models.list_json(gateway, tenant)

        return await self._unary(
            request, "http.ListModels", tenant, model="", call=listing, render=_as_is
        )

    async def _model(self, request: web.Request) -> web.StreamResponse:
        try:
            tenant = self._caller(request, ANY)
        except errors.GatewayError as err:
            return self._refused(request, "http.GetModel", err, None)
        name = request.match_info["model"]
        return await self._unary(
            request,
            "http.GetModel",
            tenant,
            model="",
            call=lambda gw: models.one_json(gw, tenant, name),
            render=_as_is,
        )

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        message = f"Invalid URL ({request.method} {request.path})"
        body = plain_error(404, message, "invalid_request_error", "unknown_url")
        return web.Response(status=404, body=body, content_type=_JSON)

    # -- the way of every call ------------------------------------------------------------

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
            _report(method, "INVALID_ARGUMENT", tenant, self.guard.log_requests)
            message = f"request body over {self.max_body} bytes (server.max_request_bytes)"
            body = plain_error(413, message, "invalid_request_error", "request_too_large")
            return tenant, web.Response(status=413, body=body, content_type=_JSON)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            invalid = errors.InvalidInput(f"the request body is not valid JSON: {err}")
            return tenant, self._refused(request, method, invalid, tenant)
        if not isinstance(parsed, dict):
            invalid = errors.InvalidInput("the request body must be a JSON object")
            return tenant, self._refused(request, method, invalid, tenant)
        return tenant, parsed

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
        _report(method, status_name(err), tenant, self.guard.log_requests)
        return _error_response(err)

    async def _unary(
        self,
        request: web.Request,
        method: str,
        tenant: Tenant | None,
        *,
        model: str,
        call: Callable[[Gateway], Awaitable[T]],
        render: Callable[[T, str], bytes],
    ) -> web.StreamResponse:
        guard = self.guard
        with guard.holder.use() as gateway:
            try:
                async with guard.admission(
                    method, guard.request_timeout, tenant, request.headers.items, system="http"
                ) as (_, info):
                    if model and tenant is not None:
                        check_caller_model(info, model)
                    answer = await call(gateway)
            except Exception as exc:
                return self._failed(method, exc)
        return web.Response(
            body=render(answer, info.request_id),
            content_type=_JSON,
            headers={"x-request-id": info.request_id},
        )

    async def _stream(
        self,
        request: web.Request,
        method: str,
        tenant: Tenant | None,
        *,
        model: str,
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
                    if model and tenant is not None:
                        check_caller_model(info, model)
                    encoder = encoder_for(info.request_id)
                    async for event in events:
                        if response is None:
                            info.first_event = time.perf_counter() - info.started
                            response = await _open_sse(request, info)
                        data = encoder.encode(event)
                        if data:
                            await _write(response, data)
                        timeout.reschedule(loop.time() + guard.request_timeout)
                    if response is None:
                        response = await _open_sse(request, info)
                    await _write(response, chat.DONE)
            except ClientGone:  # nobody to answer; aiohttp drops the connection
                return response if response is not None else web.Response(status=499)
            except Exception as exc:
                if response is None:
                    return self._failed(method, exc)
                await self._stream_failed(response, method, exc)
        assert response is not None
        return response

    def _failed(self, method: str, exc: Exception) -> web.Response:
        found = self.guard.failure(method, exc)
        if isinstance(found, errors.GatewayError):
            return _error_response(found)
        return web.Response(status=500, body=internal_body(found), content_type=_JSON)

    async def _stream_failed(
        self, response: web.StreamResponse, method: str, exc: Exception
    ) -> None:
        found = self.guard.failure(method, exc)
        if isinstance(found, errors.GatewayError):
            body = error_body(found)[1]
        else:
            body = internal_body(found)
        with suppress(ConnectionResetError):
            await response.write(chat.sse_error(body))


def _as_is(answer: bytes, _: str) -> bytes:
    return answer


def _error_response(err: errors.GatewayError) -> web.Response:
    status, body, headers = error_body(err)
    return web.Response(status=status, body=body, content_type=_JSON, headers=headers)


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


def _report(method: str, status: str, tenant: Tenant | None, log_requests: bool) -> None:
    info = CallInfo(method, new_request_id(), deadline=0.0)
    info.tenant = tenant
    report(info, status, log_requests=log_requests)


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    """HTTPS with the gRPC port's certificate when [server] has one (a client CA makes
    client certificates required here too); None: plain HTTP."""
    server = config.server
    if not server.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.tls_cert_file, server.tls_key_file)
    if server.tls_client_ca_file:
        context.load_verify_locations(server.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
