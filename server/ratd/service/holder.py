"""The gateway in service, swappable at run time: a config reload builds a new gateway
and swaps it in; calls already running finish on the one they started with, which is
closed once the last of them is done."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from ratd.core.gateway import Gateway

log = logging.getLogger(__name__)


class GatewayHolder:
    def __init__(self, gateway: Gateway) -> None:
        self.current = gateway
        self._users: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}

    def use(self) -> _Use:
        """The current gateway, held for the length of one call (``with holder.use()``)."""
        return _Use(self)

    def hold(self) -> Gateway:
        """The current gateway, held until ``release`` (what ``use`` does, without its
        object: the gRPC unary path holds it this way)."""
        gateway = self.current
        key = id(gateway)
        self._users[key] = self._users.get(key, 0) + 1
        return gateway

    def release(self, gateway: Gateway) -> None:
        key = id(gateway)
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key]
            if key in self._idle:
                self._idle[key].set()

    def swap(self, gateway: Gateway) -> Gateway:
        old, self.current = self.current, gateway
        return old

    async def retire(self, gateway: Gateway, grace: float, keep: Collection[object] = ()) -> None:
        """Close ``gateway`` once no call uses it (or after ``grace`` seconds), but not
        the providers in ``keep``, which its successor took over."""
        key = id(gateway)
        if self._users.get(key):
            idle = self._idle.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(idle.wait(), grace)
            except TimeoutError:
                log.warning(
                    "closing the previous gateway with %d calls still on it",
                    self._users.get(key, 0),
                )
            finally:
                self._idle.pop(key, None)
        await gateway.close(keep)


class _Use:
    """One call's hold on a gateway (a class, not a generator: this is on every call)."""

    __slots__ = ("_gateway", "_holder")

    def __init__(self, holder: GatewayHolder) -> None:
        self._holder = holder

    def __enter__(self) -> Gateway:
        self._gateway = self._holder.hold()
        return self._gateway

    def __exit__(self, *_: object) -> None:
        self._holder.release(self._gateway)
