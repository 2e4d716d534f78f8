"""What every RPC passes through: the concurrency limit, the time limit, and the turning
of errors into statuses. Bugs become INTERNAL with a request id and a logged traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from types import TracebackType
from typing import TypeVar

import grpc

from ratd import errors, tracing
from ratd.core.access import CALLER
from ratd.core.calls import CallInfo, begin
from ratd.core.gateway import Gateway
from ratd.metrics import IN_FLIGHT
from ratd.secrets import redact
from ratd.service.holder import GatewayHolder
from ratd.service.report import report
from ratd.service.status import internal_status, status_code, to_grpc_status

log = logging.getLogger(__name__)

T = TypeVar("T")

_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}"


def _request_id() -> str:
    return f"{_PREFIX}-{next(_ids)}"


new_request_id = _request_id


def status_name(exc: BaseException) -> str:
    if isinstance(exc, errors.GatewayError):
        return status_code(exc).name
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED"
    return "INTERNAL"


class CallGuard:
    """Admission, time limits, error statuses and reporting, shared by all handlers."""

    def __init__(
        self,
        holder: GatewayHolder,
        max_concurrent: int,
        request_timeout: float,
        *,
        log_requests: bool = True,
    ) -> None:
        self.holder = holder
        self.active = 0
        self.configure(max_concurrent, request_timeout, log_requests=log_requests)

    def configure(self, max_concurrent: int, request_timeout: float, *, log_requests: bool) -> None:
        """Take new limits (a config reload)."""
        self.max_concurrent = max_concurrent
        self.request_timeout = request_timeout
        self.log_requests = log_requests

    def _budget(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            return self.request_timeout
        return min(self.request_timeout, remaining)

    async def _abort(
        self, context: grpc.aio.ServicerContext, method: str, exc: BaseException
    ) -> None:
        if isinstance(exc, errors.GatewayError):
            if isinstance(exc, errors.InvalidInput | errors.NotImplementedYet):
                log.debug("%s refused: %s", method, redact(exc.message))
            else:
                log.info("%s failed: %s: %s", method, exc.reason, redact(exc.message))
            await context.abort_with_status(to_grpc_status(exc))
        request_id = _request_id()
        log.error("%s: internal error (request %s)", method, request_id, exc_info=exc)
        await context.abort_with_status(internal_status(request_id))

    def _admitted(self, context: grpc.aio.ServicerContext, method: str) -> _Admission:
        """``async with guard._admitted(...) as (timeout, info)``: one call admitted."""
        return _Admission(self, context, method)

    async def unary(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        call: Callable[[Gateway], Awaitable[T]],
    ) -> T:
        """Run one unary call on the current gateway: admitted, bounded by the time limit,
        errors as statuses."""
        with self.holder.use() as gateway:
            async with self._admitted(context, method):
                return await call(gateway)
        raise AssertionError("unreachable: _admitted aborts on every error")

    async def stream(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        open_stream: Callable[[Gateway], AsyncIterator[T]],
    ) -> AsyncIterator[T]:
        """Relay one stream. The time limit bounds each silence, not the whole stream, and
        the source is closed at once when the client goes away."""
        loop = asyncio.get_running_loop()
        with self.holder.use() as gateway:
            async with (
                self._admitted(context, method) as (timeout, info),
                aclosing(open_stream(gateway)) as events,  # type: ignore[type-var]
            ):
                async for event in events:
                    if info.first_event is None:
                        info.first_event = time.perf_counter() - info.started
                    yield event
                    timeout.reschedule(loop.time() + self._budget(context))


class _Admission:
    """One call's way through the guard: admitted under the concurrency limit, bounded in
    time, its errors turned into statuses, reported at the end. (A class rather than a
    generator-based context manager: it runs on every call.)"""

    __slots__ = ("budget", "context", "guard", "info", "method", "span", "status", "timeout")

    def __init__(self, guard: CallGuard, context: grpc.aio.ServicerContext, method: str) -> None:
        self.guard, self.context, self.method = guard, context, method

    async def __aenter__(self) -> tuple[asyncio.Timeout, CallInfo]:
        guard = self.guard
        self.budget = budget = guard._budget(self.context)
        loop = asyncio.get_running_loop()
        self.info = info = CallInfo(self.method, _request_id(), deadline=loop.time() + budget)
        info.tenant = CALLER.get()
        begin(info)
        if guard.active >= guard.max_concurrent:
            report(info, "RESOURCE_EXHAUSTED", log_requests=guard.log_requests)
            await guard._abort(
                self.context,
                self.method,
                errors.Overloaded(
                    f"ratd is serving its limit of {guard.max_concurrent} concurrent requests "
                    "(server.max_concurrent_requests); retry shortly"
                ),
            )
        guard.active += 1
        IN_FLIGHT.inc()
        self.status = "OK"
        self.span = tracing.rpc_span(self.method, self.context, info)
        self.span.__enter__()
        self.timeout = asyncio.timeout(budget)
        return await self.timeout.__aenter__(), info

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        guard = self.guard
        try:
            try:
                await self.timeout.__aexit__(kind, exc, tb)
            finally:
                self.span.__exit__(kind, exc, tb)
        except TimeoutError as timeout:
            exc = timeout
        try:
            if exc is None or isinstance(exc, grpc.aio.AbortError):
                return False
            if isinstance(exc, asyncio.CancelledError | GeneratorExit):
                self.status = "CANCELLED"
                return False
            if isinstance(exc, TimeoutError):
                self.status = "DEADLINE_EXCEEDED"
                exc = errors.Timeout(f"{self.method} did not finish within {self.budget:.3g}s")
            else:
                self.status = status_name(exc)
            if isinstance(exc, Exception):
                await guard._abort(self.context, self.method, exc)
            return False
        finally:
            guard.active -= 1
            IN_FLIGHT.dec()
            report(self.info, self.status, log_requests=guard.log_requests)
