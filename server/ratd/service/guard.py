"""What every call passes through: the concurrency limit, the time limit, metrics and the
request log, and the turning of errors into statuses. Bugs become INTERNAL with a request
id and a logged traceback.

``CallGuard.admission`` is the transport-neutral core (a ``CallInfo`` per call, admission
under ``server.max_concurrent_requests``, the time limit, the span, the report); the gRPC
service uses it through ``unary``/``stream``, which turn errors into gRPC statuses, and
the OpenAI HTTP door (``ratd.openai_http``) uses it directly and turns them into JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from types import TracebackType
from typing import TypeVar

import grpc

from ratd import errors, tracing
from ratd.core.access import CALLER, Tenant
from ratd.core.calls import CURRENT, CallInfo
from ratd.core.gateway import Gateway
from ratd.deadline import Deadline
from ratd.metrics import IN_FLIGHT
from ratd.secrets import redact
from ratd.service.audit import AuditLog
from ratd.service.holder import GatewayHolder
from ratd.service.report import new_request_id, report
from ratd.service.status import internal_status, status_code, to_grpc_status

log = logging.getLogger(__name__)

T = TypeVar("T")
# Trailing metadata naming the "provider:model" that answered when it is not the model
# asked for (the NLI LLM fallback: the response messages have no field for it).
SERVED_BY = "ratatoskr-served-by"


class ClientGone(Exception):
    """The caller went away (an HTTP client closed its connection mid-stream): the call
    ends as CANCELLED, like a cancelled RPC."""


# Zero-argument callables giving a call's metadata/headers, read only when tracing is on.
Metadata = Callable[[], Iterable[tuple[str, object]] | None]


def status_name(exc: BaseException) -> str:
    if isinstance(exc, errors.GatewayError):
        return status_code(exc).name
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED"
    return "INTERNAL"


# The live guards (one per daemon; tests run several), whose admitted calls the in-flight
# gauge counts when it is scraped rather than at every call.
_GUARDS: weakref.WeakSet[CallGuard] = weakref.WeakSet()
IN_FLIGHT.set_function(lambda: sum(guard.active for guard in list(_GUARDS)))


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
        # Calls admitted and not yet ended (ratatoskr_in_flight_requests reads it).
        self.active: int = 0
        # The loop the guard serves on, when it is built on one (the daemon's): every
        # lookup of the running loop costs a getpid system call on CPython 3.11.
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        _GUARDS.add(self)
        # The audit log ([audit] path), set by the daemon; None: no audit.
        self.audit: AuditLog | None = None
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

    def admission(
        self,
        method: str,
        budget: float,
        tenant: Tenant | None,
        metadata: Metadata,
        *,
        system: str = "grpc",
        action: dict[str, object] | None = None,
    ) -> Admission:
        """``with guard.admission(...) as (timeout, info)`` (``async with`` too): one call
        admitted (or errors.Overloaded raised), bounded by ``budget`` seconds
        (``timeout.reschedule`` moves the bound), reported when it ends. A timeout leaves
        as errors.Timeout; other errors leave as they are, for the transport to turn into
        its own answer.
        ``action``: an admin action's arguments, for the audit log."""
        return Admission(self, method, budget, tenant, metadata, system, action)

    def failure(self, method: str, exc: Exception) -> errors.GatewayError | str:
        """Log a failed call. Returns the error to answer with, or for a bug (anything
        but a GatewayError) the request id that the logged traceback carries."""
        if isinstance(exc, errors.GatewayError):
            if isinstance(exc, errors.InvalidInput | errors.NotImplementedYet):
                log.debug("%s refused: %s", method, redact(exc.message))
            else:
                log.info("%s failed: %s: %s", method, exc.reason, redact(exc.message))
            return exc
        request_id = new_request_id()
        log.error("%s: internal error (request %s)", method, request_id, exc_info=exc)
        return request_id

    async def _abort(self, context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        found = self.failure(method, exc)
        if isinstance(found, errors.GatewayError):
            await context.abort_with_status(to_grpc_status(found))
        else:
            await context.abort_with_status(internal_status(found))

    def _admitted(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        action: dict[str, object] | None = None,
    ) -> Admission:
        return Admission(
            self,
            method,
            self._budget(context),
            CALLER.get(),
            context.invocation_metadata,
            "grpc",
            action,
        )

    async def unary(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        call: Callable[[Gateway], Awaitable[T]],
        *,
        action: dict[str, object] | None = None,
    ) -> T:
        """Run one unary call on the current gateway: admitted, bounded by the time limit,
        errors as statuses. ``action``: an admin action's arguments (audit log)."""
        holder = self.holder
        gateway = holder.hold()
        try:
            with self._admitted(context, method, action) as (_, info):
                answer = await call(gateway)
                if info.served_by:
                    context.set_trailing_metadata(((SERVED_BY, info.served_by),))
                return answer
        except Exception as exc:
            await self._abort(context, method, exc)
        finally:
            holder.release(gateway)
        raise AssertionError("unreachable: _abort aborts on every error")

    async def stream(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        open_stream: Callable[[Gateway], AsyncIterator[T]],
        *,
        action: dict[str, object] | None = None,
    ) -> AsyncIterator[T]:
        """Relay one stream. The time limit bounds each silence, not the whole stream, and
        the source is closed at once when the client goes away."""
        loop = asyncio.get_running_loop()
        with self.holder.use() as gateway:
            try:
                async with (
                    self._admitted(context, method, action) as (timeout, info),
                    aclosing(open_stream(gateway)) as events,  # type: ignore[type-var]
                ):
                    async for event in events:
                        if info.first_event is None:
                            info.first_event = time.perf_counter() - info.started
                        yield event
                        timeout.reschedule(loop.time() + self._budget(context))
            except Exception as exc:
                await self._abort(context, method, exc)


class Admission(Deadline):
    """One call's way through the guard: admitted under the concurrency limit, bounded in
    time (it is the call's ``Deadline`` itself: one object less per call), reported at
    the end. (A class rather than a generator-based context manager: it runs on every
    call.)"""

    __slots__ = (
        "action",
        "budget",
        "guard",
        "info",
        "metadata",
        "method",
        "span",
        "status",
        "system",
        "tenant",
    )

    def __init__(  # noqa: PLR0917 (built in two places, both in CallGuard)
        self,
        guard: CallGuard,
        method: str,
        budget: float,
        tenant: Tenant | None,
        metadata: Metadata,
        system: str,
        action: dict[str, object] | None,
    ) -> None:
        self.guard, self.method, self.budget = guard, method, budget
        self.tenant, self.metadata, self.system = tenant, metadata, system
        self.action = action
        self._slot = -1  # no alarm until entered

    # Entered as a guard (the deadline and the call's info), not as a bare Deadline.
    def __enter__(self) -> tuple[Deadline, CallInfo]:  # type: ignore[override]
        guard = self.guard
        loop = guard.loop or asyncio.get_running_loop()
        deadline = loop.time() + self.budget
        self.info = info = CallInfo(self.method, new_request_id(), deadline=deadline)
        info.tenant = self.tenant
        info.action = self.action
        info.metadata = self.metadata
        CURRENT.set(info)
        if guard.active >= guard.max_concurrent:
            report(info, "RESOURCE_EXHAUSTED", log_requests=guard.log_requests, audit=guard.audit)
            raise errors.Overloaded(
                f"ratd is serving its limit of {guard.max_concurrent} concurrent requests "
                "(server.max_concurrent_requests); retry shortly"
            )
        guard.active += 1
        self.status = "OK"
        self.span = None
        if tracing.state.tracer is not None:
            self.span = tracing.rpc_span(self.method, self.metadata, info, self.system)
            self.span.__enter__()
        self.arm(deadline, loop)
        return self, info

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        guard = self.guard
        try:
            try:
                self.disarm(kind, exc)
            finally:
                if self.span is not None:
                    self.span.__exit__(kind, exc, tb)
        except TimeoutError as timeout:
            exc = timeout
        try:
            if exc is None or isinstance(exc, grpc.aio.AbortError):
                return
            if isinstance(exc, asyncio.CancelledError | GeneratorExit | ClientGone):
                self.status = "CANCELLED"
                return
            if isinstance(exc, TimeoutError):
                self.status = "DEADLINE_EXCEEDED"
                raise errors.Timeout(
                    f"{self.method} did not finish within {self.budget:.3g}s"
                ) from None
            self.status = status_name(exc)
            return
        finally:
            guard.active -= 1
            report(self.info, self.status, log_requests=guard.log_requests, audit=guard.audit)

    # Entering and leaving never wait: ``with`` on the unary path (no coroutine objects),
    # ``async with`` where it sits beside an asynchronous context manager.
    async def __aenter__(self) -> tuple[Deadline, CallInfo]:  # type: ignore[override]
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)
