"""The HTTP server of the OpenAI door: aiohttp on ratd's event loop, started, drained and
stopped by the Daemon beside the gRPC server, and its endpoints (each one translation, in
``chat``, ``completions``, ``embeddings``, ``models``, over ``calls.CallPath``). A client
that goes away cancels its handler (``handler_cancellation``), and with it the upstream
call."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiohttp import web

from ratd import errors
from ratd.config import Config
from ratd.core.gateway import Gateway
from ratd.openai_http import chat, completions, embeddings, media, models, responses
from ratd.openai_http.calls import JSON, CallPath
from ratd.openai_http.responses_request import responses_request
from ratd.openai_http.wire_errors import plain_error
from ratd.service.auth import ANY, Authenticator
from ratd.service.guard import CallGuard

log = logging.getLogger(__name__)


class OpenAIDoor(CallPath):
    """``[http] address``: the OpenAI-compatible API over the daemon's CallGuard."""

    def __init__(
        self, config: Config, guard: CallGuard, authenticator: Authenticator | None
    ) -> None:
        server = config.server
        super().__init__(guard, authenticator, server.max_message_bytes)
        self.address = config.http.address
        self.grace = server.shutdown_grace_secs
        self.ssl = _ssl_context(config)
        self.bound = ""
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/images/edits", self._edits)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
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
        found = await self._parsed(request, "http.Chat", chat.chat_request)
        if isinstance(found, web.Response):
            return found
        tenant, (message, stream, usage) = found
        model = message.options.model
        if stream:
            return await self._stream(
                request,
                "http.ChatStream",
                tenant,
                open_stream=lambda gw: gw.chat_stream(message),
                encoder_for=lambda rid: chat.ChunkEncoder(rid, model, usage),
            )
        return await self._unary(
            request,
            "http.Chat",
            tenant,
            call=lambda gw: gw.chat(message),
            render=lambda answer, rid: chat.completion_json(answer, rid, model),
        )

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API, as Chat / ChatStream (``responses_request``, ``responses``)."""
        found = await self._parsed(
            request, "http.Responses", lambda body: (*responses_request(body), body)
        )
        if isinstance(found, web.Response):
            return found
        tenant, (message, stream, body) = found
        echo = responses.Echo(body)
        if stream:
            return await self._stream(
                request,
                "http.ResponsesStream",
                tenant,
                open_stream=lambda gw: gw.chat_stream(message),
                encoder_for=lambda rid: responses.ResponsesEncoder(rid, echo),
            )
        return await self._unary(
            request,
            "http.Responses",
            tenant,
            call=lambda gw: gw.chat(message),
            render=lambda answer, rid: responses.response_json(answer, rid, echo),
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        found = await self._parsed(request, "http.Generate", completions.generate_request)
        if isinstance(found, web.Response):
            return found
        tenant, (message, stream, usage) = found
        model = message.options.model
        if stream:
            return await self._stream(
                request,
                "http.GenerateStream",
                tenant,
                open_stream=lambda gw: gw.generate_stream(message),
                encoder_for=lambda rid: completions.TextChunkEncoder(rid, model, usage),
            )
        return await self._unary(
            request,
            "http.Generate",
            tenant,
            call=lambda gw: gw.generate(message),
            render=lambda answer, rid: completions.completion_json(answer, rid, model),
        )

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        found = await self._parsed(request, "http.Embeddings", embeddings.embed_request)
        if isinstance(found, web.Response):
            return found
        tenant, (message, as_base64) = found
        return await self._unary(
            request,
            "http.Embeddings",
            tenant,
            call=lambda gw: gw.embed_batch(message),
            render=lambda answer, _: embeddings.embeddings_json(answer, message.model, as_base64),
        )

    async def _images(self, request: web.Request) -> web.StreamResponse:
        found = await self._parsed(request, "http.GenerateImage", media.image_request)
        if isinstance(found, web.Response):
            return found
        tenant, message = found
        return await self._unary(
            request,
            "http.GenerateImage",
            tenant,
            call=lambda gw: gw.generate_image(message),
            render=media.images_json,
        )

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        method = "http.GenerateImage"
        try:
            tenant = self._caller(request, "inference")
        except errors.GatewayError as err:
            return self._refused(request, method, err, None)
        try:
            texts, files = await self._form(request)
            images = files.get("image", []) + files.get("image[]", [])
            mask = files["mask"][0] if files.get("mask") else None
            message = media.edit_request(texts, images, mask)
        except errors.InvalidInput as err:
            return self._refused(request, method, err, tenant)
        return await self._unary(
            request,
            method,
            tenant,
            call=lambda gw: gw.generate_image(message),
            render=media.images_json,
        )

    async def _form(self, request: web.Request) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
        """A multipart body's text fields, and its files' bytes by field name (read off the
        event loop); INVALID_ARGUMENT when it is too large or not multipart."""
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise errors.InvalidInput(
                f"request body over {self.max_body} bytes (server.max_request_bytes)"
            ) from None
        except (ValueError, AssertionError) as err:
            raise errors.InvalidInput(f"the body must be multipart/form-data ({err})") from None
        texts: dict[str, Any] = {}
        files: dict[str, list[bytes]] = {}
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files.setdefault(key, []).append(await asyncio.to_thread(value.file.read))
            else:
                texts[key] = value
        return texts, files

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        found = await self._parsed(request, "http.Synthesize", media.speech_request)
        if isinstance(found, web.Response):
            return found
        tenant, message = found
        return await self._audio(
            request, "http.Synthesize", tenant, lambda gw: gw.synthesize(message)
        )

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        method = "http.Transcribe"
        try:
            tenant = self._caller(request, "inference")
        except errors.GatewayError as err:
            return self._refused(request, method, err, None)
        try:
            texts, files = await self._form(request)
            audio = files["file"][0] if files.get("file") else b""
            message, response_format = media.transcription_request(texts, audio)
        except errors.InvalidInput as err:
            return self._refused(request, method, err, tenant)
        answer = await self._unary(
            request,
            method,
            tenant,
            call=lambda gw: gw.transcribe(message),
            render=lambda found, _: media.transcription_body(found, response_format),
        )
        if response_format == "text" and answer.status == 200:
            answer.content_type = "text/plain"
        return answer

    async def _models(self, request: web.Request) -> web.StreamResponse:
        try:
            tenant = self._caller(request, ANY)
        except errors.GatewayError as err:
            return self._refused(request, "http.ListModels", err, None)

        async def listing(gateway: Gateway) -> bytes:
            return models.list_json(gateway, tenant)

        return await self._unary(request, "http.ListModels", tenant, call=listing, render=_as_is)

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
            call=lambda gw: models.one_json(gw, tenant, name),
            render=_as_is,
        )

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        message = f"Invalid URL ({request.method} {request.path})"
        body = plain_error(404, message, "invalid_request_error", "unknown_url")
        return web.Response(status=404, body=body, content_type=JSON)


def _as_is(answer: bytes, _: str) -> bytes:
    return answer


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
