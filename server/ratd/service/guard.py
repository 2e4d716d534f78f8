"""What every RPC passes through: the concurrency limit, the time limit, and the turning
of errors into statuses. Bugs become INTERNAL with a request id and a logged traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import TypeVar

import grpc

from ratd import errors
from ratd.secrets import redact
from ratd.service.status import internal_status, to_grpc_status

log = logging.getLogger(__name__)

T = TypeVar("T")

_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}"


def _request_id() -> str:
    return f"{_PREFIX}-{next(_ids)}"


class CallGuard:
    """Admission and error handling shared by all handlers of one server."""

    def __init__(self, max_concurrent: int, request_timeout: float) -> None:
        self.max_concurrent = max_concurrent
        self.request_timeout = request_timeout
        self.active = 0

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

    @asynccontextmanager
    async def _admitted(
        self, context: grpc.aio.ServicerContext, method: str
    ) -> AsyncIterator[asyncio.Timeout]:
        if self.active >= self.max_concurrent:
            await self._abort(
                context,
                method,
                errors.Overloaded(
                    f"ratd is serving its limit of {self.max_concurrent} concurrent requests "
                    "(server.max_concurrent_requests); retry shortly"
                ),
            )
        self.active += 1
        budget = self._budget(context)
        try:
            async with asyncio.timeout(budget) as timeout:
                yield timeout
        except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit):
            raise
        except TimeoutError:
            await self._abort(
                context, method, errors.Timeout(f"{method} did not finish within {budget:.3g}s")
            )
        except Exception as exc:
            await self._abort(context, method, exc)
        finally:
            self.active -= 1

    async def unary(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        call: Callable[[], Awaitable[T]],
    ) -> T:
        """Run one unary call: admitted, bounded by the time limit, errors as statuses."""
        async with self._admitted(context, method):
            return await call()
        raise AssertionError("unreachable: _admitted aborts on every error")

    async def stream(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        open_stream: Callable[[], AsyncIterator[T]],
    ) -> AsyncIterator[T]:
        """Relay one stream. The time limit bounds each silence, not the whole stream, and
        the source is closed at once when the client goes away."""
        loop = asyncio.get_running_loop()
        async with (
            self._admitted(context, method) as timeout,
            aclosing(open_stream()) as events,  # type: ignore[type-var]
        ):
            async for event in events:
                yield event
                timeout.reschedule(loop.time() + self._budget(context))
