"""Wrapping a gRPC method handler so that a check runs before its behaviour, for each of
the four call shapes, written once (auth admits the caller; decoding refuses requests
that did not decode)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

# A check takes the request (or the request iterator) and the context, and returns what
# the behaviour gets instead; it refuses the call by aborting the context.
Check = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def guarded(behavior: Any, check: Check, needs: Callable[[Any], bool] | None = None) -> Any:
    """``behavior`` (a coroutine or an async generator function) after ``check``;
    ``needs``: a cheap test of the request, the check running only when it is true (a
    unary call then makes no coroutine for the check: this is on every call)."""
    if inspect.isasyncgenfunction(behavior):

        async def stream(arg: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if needs is None or needs(arg):
                arg = await check(arg, context)
            async for item in behavior(arg, context):
                yield item

        return stream

    async def call(arg: Any, context: grpc.aio.ServicerContext) -> Any:
        if needs is None or needs(arg):
            arg = await check(arg, context)
        return await behavior(arg, context)

    return call


def rewrap(
    handler: grpc.RpcMethodHandler,
    *,
    request: Check,
    requests: Check,
    deserializer: Callable[[bytes], Any] | None = None,
    needs: Callable[[Any], bool] | None = None,
) -> grpc.RpcMethodHandler:
    """``handler`` with ``request`` checked before unary-request behaviours (only the
    requests ``needs`` picks, if given) and ``requests`` before streaming-request ones
    (and another deserializer, if given)."""
    kwargs = {
        "request_deserializer": deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            guarded(handler.unary_unary, request, needs), **kwargs
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            guarded(handler.unary_stream, request, needs), **kwargs
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            guarded(handler.stream_unary, requests), **kwargs
        )
    return grpc.stream_stream_rpc_method_handler(guarded(handler.stream_stream, requests), **kwargs)
