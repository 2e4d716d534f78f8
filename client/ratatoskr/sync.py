"""A blocking wrapper of ``ServiceClient`` for scripts and synchronous code.

It runs the async client on a private event loop in a daemon thread, so there is one
implementation of every call, and it works from inside code that already runs an event
loop of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from ratatoskr.address import DEFAULT_ADDRESS
from ratatoskr.client import ServiceClient

T = TypeVar("T")

_STREAMING = {"chat_stream", "generate_stream", "download_model"}


class SyncServiceClient:
    """``SyncServiceClient(address)`` offers every ``ServiceClient`` method, blocking.
    Keyword arguments of ``ServiceClient.connect`` (``tls_ca``, ``tls_cert``, ``tls_key``,
    ``api_key``) pass through.

    Streaming methods return ordinary iterators. ``SyncServiceClient.embedded(...)`` and
    ``SyncServiceClient.auto(...)`` take the arguments of ``ServiceClient.embedded`` and
    ``ServiceClient.auto``: ratd's gateway inside this process.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float | None = None,
        wait_ready: float | None = None,
        **connect: Any,
    ) -> None:
        self._start(
            lambda: ServiceClient.connect(
                address, timeout=timeout, wait_ready=wait_ready, **connect
            )
        )

    @classmethod
    def embedded(cls, *args: Any, **kwargs: Any) -> SyncServiceClient:
        """``ServiceClient.embedded`` on this client's private loop; ``close()`` stops it."""
        client = cls.__new__(cls)
        client._start(lambda: ServiceClient.embedded(*args, **kwargs))
        return client

    @classmethod
    def auto(cls, *args: Any, **kwargs: Any) -> SyncServiceClient:
        """``ServiceClient.auto``: a running ratd when one answers, else embedded."""
        client = cls.__new__(cls)
        client._start(lambda: ServiceClient.auto(*args, **kwargs))
        return client

    def _start(self, open_client: Callable[[], Coroutine[Any, Any, ServiceClient]]) -> None:
        """Start the private loop and open the client on it (the loop is stopped again
        when that fails, so that no thread is left behind)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ratatoskr-client", daemon=True
        )
        self._thread.start()
        try:
            self._client = self._run(open_client())
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(anext(stream))  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None and not self._loop.is_closed():
                self._run(aclose())

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method) or name.startswith("_"):
            return method
        if name in _STREAMING:
            return lambda *args, **kwargs: self._iterate(method(*args, **kwargs))
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncServiceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
