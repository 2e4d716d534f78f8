"""Interceptors: operator code that sees every inference call before it is routed and
what comes back after it (``[interceptors] chain``, or entry points of the group
``ratatoskr.interceptors``). The public face is ``ratd.interceptors``.

An interceptor has up to three async hooks, each given the call's ``CallContext``:

- ``before(call, request)``: before validation, presets and routing. Returns ``None``
  (unchanged) or a request of the same type (rewritten); raises ``Refuse`` to refuse.
- ``after(call, response)``: the answer of a unary call; ``None`` or a replacement.
- ``on_event(call, event)``: each event of a stream; ``None`` or a replacement.

``before`` hooks run in chain order, ``after``/``on_event`` in reverse (the first
interceptor sees the request first and the answer last, like nested middleware).

A ``Refuse`` becomes the status it names (ErrorInfo reason INTERCEPTOR_REFUSED, the
interceptor in its metadata). Anything else an interceptor raises is a bug in it, so a
misconfigured server: the call fails closed with INTERNAL (reason INTERCEPTOR_FAILED,
naming the interceptor and the request id), the traceback is logged the first time, and
``ratatoskr_interceptor_failures`` counts every time. Letting the call through instead
would skip a policy (a redaction, a guard) silently.

The gateway applies the chain at its entry points (``unary``/``streaming`` decorators
below), so every RPC, from gRPC and the OpenAI HTTP door alike, goes through one path.
An empty chain costs one attribute test per call.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from ratd import errors
from ratd.config import ConfigError, InterceptorsConfig
from ratd.core.calls import current
from ratd.metrics import INTERCEPTOR_FAILURES, INTERCEPTOR_REFUSALS, child

log = logging.getLogger(__name__)

GROUP = "ratatoskr.interceptors"
HOOKS = ("before", "after", "on_event")
# The statuses a refusal may take: all but OK, UNKNOWN, INTERNAL and DATA_LOSS, which
# would read as success or as a bug in ratd.
REFUSAL_CODES = frozenset(
    {
        "CANCELLED",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "UNAVAILABLE",
        "UNAUTHENTICATED",
    }
)


@dataclass(slots=True)
class CallContext:
    """What an interceptor knows of the call besides its request."""

    # The RPC: "Chat", "ChatStream", "Embed", "InferNli", ... (the gateway's name for the
    # call, whichever door it came through: an HTTP chat completion is "Chat").
    rpc: str
    request_id: str = ""
    # The authenticated tenant ("" with auth mode "none") and its roles.
    tenant: str = ""
    roles: frozenset[str] = frozenset()
    # The end user named by ``x-ratatoskr-user`` ("" when none).
    user: str = ""
    # The door it came through: "grpc", or "http" (the OpenAI-compatible HTTP door).
    via: str = "grpc"
    # Scratch space shared by the hooks of one call (before -> after / on_event).
    state: dict[str, Any] = field(default_factory=dict)


class Refuse(Exception):
    """Raised by a hook to refuse the call with a gRPC status (by name or
    ``grpc.StatusCode``; default PERMISSION_DENIED) and a message for the caller."""

    def __init__(self, message: str, code: object = "PERMISSION_DENIED") -> None:
        name = getattr(code, "name", code)
        if name not in REFUSAL_CODES:
            raise ValueError(f"Refuse: {code!r} is not a status a refusal may take")
        super().__init__(message)
        self.message = message
        self.code = name


class Interceptor:
    """A convenient base: every hook passes through. Subclass and override the hooks you
    need (any object with one or more async hooks of these names will do as well)."""

    # How logs, metrics and errors name it ("" : the chain entry that loaded it).
    name: str = ""

    async def before(self, call: CallContext, request: Any) -> Any:
        return None

    async def after(self, call: CallContext, response: Any) -> Any:
        return None

    async def on_event(self, call: CallContext, event: Any) -> Any:
        return None


class _Hook(Protocol):
    def __call__(self, call: CallContext, message: Any, /) -> Awaitable[Any]: ...


@dataclass(slots=True)
class _Entry:
    name: str
    instance: object


class Chain:
    """The loaded interceptors, and their hooks in the order they run."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.empty = not entries
        self._before = [(e.name, h) for e in entries if (h := _hook(e.instance, "before"))]
        self._after = [(e.name, h) for e in reversed(entries) if (h := _hook(e.instance, "after"))]
        self._events = [
            (e.name, h) for e in reversed(entries) if (h := _hook(e.instance, "on_event"))
        ]
        self._logged: set[str] = set()

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def context(self, rpc: str) -> CallContext:
        info = current()
        if info is None:
            return CallContext(rpc)
        tenant = info.tenant
        return CallContext(
            rpc,
            info.request_id,
            tenant.name if tenant is not None else "",
            tenant.roles if tenant is not None else frozenset(),
            info.user,
            "http" if info.method.startswith("http.") else "grpc",
        )

    async def _run(
        self, hooks: list[tuple[str, _Hook]], call: CallContext, message: Message
    ) -> Message:
        for name, hook in hooks:
            try:
                result = await hook(call, message)
            except Refuse as refusal:
                child(INTERCEPTOR_REFUSALS, name).inc()
                raise errors.Refused(
                    refusal.message, code=refusal.code, metadata={"interceptor": name}
                ) from None
            except errors.GatewayError:
                raise  # ratd's own errors (built-in interceptors) keep their status
            except Exception as exc:
                raise self._failed(name, call, exc) from exc
            if result is not None:
                if type(result) is not type(message):
                    bad = TypeError(
                        f"returned a {type(result).__name__} for a {type(message).__name__}"
                    )
                    raise self._failed(name, call, bad)
                message = result
        return message

    def _failed(self, name: str, call: CallContext, exc: Exception) -> errors.InterceptorFailed:
        child(INTERCEPTOR_FAILURES, name).inc()
        where = f"interceptor {name} failed on {call.rpc} (request {call.request_id})"
        if name not in self._logged:
            self._logged.add(name)
            log.error("%s: %s", where, type(exc).__name__, exc_info=exc)
        else:
            log.error("%s: %s (traceback logged before)", where, type(exc).__name__)
        return errors.InterceptorFailed(
            f"{where}: {type(exc).__name__}; the call was refused, see the daemon log",
            metadata={"interceptor": name, "request_id": call.request_id},
        )

    async def unary(
        self, rpc: str, request: Message, answer: Callable[[Any], Awaitable[Message]]
    ) -> Any:
        call = self.context(rpc)
        request = await self._run(self._before, call, request)
        return await self._run(self._after, call, await answer(request))

    async def stream(
        self, rpc: str, request: Message, open_stream: Callable[[Any], AsyncIterator[Message]]
    ) -> AsyncIterator[Any]:
        call = self.context(rpc)
        request = await self._run(self._before, call, request)
        async with aclosing(open_stream(request)) as events:  # type: ignore[type-var]
            async for event in events:
                yield await self._run(self._events, call, event)

    async def close(self) -> None:
        """Let interceptors that hold resources (``async close()``) release them."""
        for entry in self.entries:
            closer = getattr(entry.instance, "close", None)
            if closer is None or not inspect.iscoroutinefunction(closer):
                continue
            try:
                await closer()
            except Exception:
                log.exception("closing interceptor %s failed", entry.name)


def _hook(instance: object, name: str) -> _Hook | None:
    """The hook, unless absent or the base class's pass-through."""
    hook = getattr(instance, name, None)
    if hook is None or getattr(hook, "__func__", None) is getattr(Interceptor, name):
        return None
    return hook


# -- the gateway's entry points --------------------------------------------------------------


class _HasChain(Protocol):
    interceptors: Chain


G = TypeVar("G", bound=_HasChain)
R = TypeVar("R", bound=Message)
A = TypeVar("A")


def unary(rpc: str) -> Callable[[Callable[[G, R], Awaitable[A]]], Callable[[G, R], Awaitable[A]]]:
    """Run a gateway entry point of a unary RPC through the interceptors."""

    def wrap(method: Callable[[G, R], Awaitable[A]]) -> Callable[[G, R], Awaitable[A]]:
        @functools.wraps(method)
        def run(gateway: G, request: R) -> Awaitable[A]:
            # Not a coroutine itself: the method's own is awaited, one frame less per call.
            chain = gateway.interceptors
            if chain.empty:
                return method(gateway, request)
            return chain.unary(rpc, request, lambda r: method(gateway, r))  # type: ignore[arg-type, return-value]

        return run

    return wrap


def streaming(
    rpc: str,
) -> Callable[[Callable[[G, R], AsyncIterator[A]]], Callable[[G, R], AsyncIterator[A]]]:
    """Run a gateway entry point of a streaming RPC through the interceptors."""

    def wrap(method: Callable[[G, R], AsyncIterator[A]]) -> Callable[[G, R], AsyncIterator[A]]:
        @functools.wraps(method)
        def run(gateway: G, request: R) -> AsyncIterator[A]:
            chain = gateway.interceptors
            if chain.empty:
                return method(gateway, request)
            return chain.stream(rpc, request, lambda r: method(gateway, r))  # type: ignore[arg-type, return-value]

        return run

    return wrap


# -- loading ----------------------------------------------------------------------------------


def load_chain(config: InterceptorsConfig) -> Chain:
    """The interceptors ``config`` names, built (ConfigError naming the entry if one
    cannot be imported, built, or has no async hooks)."""
    unknown = sorted(set(config.settings) - set(config.chain))
    if unknown:
        raise ConfigError(
            f"interceptors.settings names {', '.join(map(repr, unknown))}, "
            "which is not in interceptors.chain"
        )
    entries = []
    for i, spec in enumerate(config.chain):
        where = f"interceptors.chain[{i}] ({spec!r})"
        found = _resolve(spec, where)
        instance = _build(found, config.settings.get(spec, {}), where)
        entries.append(_Entry(getattr(instance, "name", "") or spec, instance))
    if config.load_entry_points:
        for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
            if point.name in config.chain:
                continue
            where = f"entry point {point.name!r} ({point.value})"
            instance = _build(_load_entry_point(point, where), {}, where)
            entries.append(_Entry(getattr(instance, "name", "") or point.name, instance))
    if entries:
        log.info("interceptors: %s", ", ".join(e.name for e in entries))
    return Chain(entries)


def _resolve(spec: str, where: str) -> object:
    """``module:attr`` imported, or a bare name looked up in the entry-point group."""
    if ":" not in spec:
        points = [p for p in entry_points(group=GROUP) if p.name == spec]
        if not points:
            raise ConfigError(
                f"{where}: no entry point {spec!r} in the group {GROUP!r} "
                "(is its package installed? or write module:attr)"
            )
        return _load_entry_point(points[0], where)
    module_name, _, attr = spec.partition(":")
    try:
        found: object = importlib.import_module(module_name)
    except Exception as err:
        raise ConfigError(f"{where}: cannot import {module_name!r}: {err}") from None
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"{where}: {module_name!r} has no attribute {attr!r}") from None
    return found


def _load_entry_point(point: Any, where: str) -> object:
    try:
        return point.load()
    except Exception as err:
        raise ConfigError(f"{where}: cannot load: {err}") from None


def _build(found: object, settings: dict[str, Any], where: str) -> object:
    """An interceptor from what the entry names: an object with hooks as it is; a class
    or factory called with its settings."""
    if isinstance(found, type) or not any(hasattr(found, h) for h in HOOKS):
        if not callable(found):
            raise ConfigError(f"{where}: not an interceptor (no {'/'.join(HOOKS)} hooks)")
        try:
            found = found(**settings)
        except Exception as err:
            raise ConfigError(f"{where}: cannot build it: {err}") from None
    elif settings:
        raise ConfigError(f"{where}: names an instance, which takes no settings")
    hooks = [h for h in HOOKS if getattr(found, h, None) is not None]
    if not hooks:
        raise ConfigError(f"{where}: not an interceptor (no {'/'.join(HOOKS)} hooks)")
    for name in hooks:
        if not inspect.iscoroutinefunction(getattr(found, name)):
            raise ConfigError(f"{where}: {name} must be an async function (async def)")
    return found
