"""Requests that do not decode (a corrupt message, invalid UTF-8 in a string field) answer
INVALID_ARGUMENT with one log line.

grpc runs a handler's ``request_deserializer`` before the handler; when it raises, grpc
answers UNKNOWN and logs a traceback, per call. This interceptor gives every handler a
deserializer that catches ``DecodeError`` and hands the handler an ``Undecodable`` in
place of the request; the wrapped handler aborts with INVALID_ARGUMENT when it sees one
(for streamed requests, when the bad message arrives).

The handlers are wrapped once, as the generated ``add_*Servicer_to_server`` functions
register them (``DecodingServer``), rather than by an interceptor: an interceptor runs on
every call, this costs nothing until a request fails to decode. Interceptors (auth) still
run first, so an unauthenticated caller is refused before anything is decoded for it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ratd.service.handlers import rewrap

log = logging.getLogger(__name__)

Deserializer = Callable[[bytes], Any]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands in for a request message that failed to decode; ``reason`` is protobuf's."""

    reason: str


def safe_deserializer(deserialize: Deserializer) -> Deserializer:
    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as err:
            return Undecodable(str(err).rsplit(": ", 1)[-1][:200])

    return decode


async def _refuse(context: grpc.aio.ServicerContext, method: str, bad: Undecodable) -> None:
    log.warning("%s: the request could not be decoded (%s): INVALID_ARGUMENT", method, bad.reason)
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request message could not be decoded ({bad.reason})",
    )


async def _checked(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, method: str
) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            await _refuse(context, method, request)
        yield request


def wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """``handler`` with the safe deserializer and a behavior that refuses what failed."""
    if handler.request_deserializer is None:
        return handler

    async def request(arg: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse(context, method, arg)
        return arg

    async def requests(arg: Any, context: grpc.aio.ServicerContext) -> Any:
        return _checked(arg, context, method)

    return rewrap(
        handler,
        request=request,
        requests=requests,
        deserializer=safe_deserializer(handler.request_deserializer),
        needs=_undecodable,
    )


def _undecodable(request: Any) -> bool:
    return type(request) is Undecodable


class DecodingServer:
    """Stands in for the server while a generated ``add_*Servicer_to_server`` registers a
    service: its method handlers are registered wrapped (``wrap``), as generic handlers only.

    The generated code (grpcio-tools >= 1.62) also registers every method by name. grpc.aio
    then keeps one pending "request call" per registered method and waits on all of them
    (``asyncio.wait``) for every call it accepts: with ratd's ~40 methods that cost ~30 us
    of CPU per call (benchmarks/overhead.py), more than the generic lookup it saves."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Ignored: ``add_registered_method_handlers`` registers the wrapped handlers
        (the generated code calls it right after this)."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        wrapped = {name: wrap(handler, name) for name, handler in handlers.items()}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, wrapped),)
        )
