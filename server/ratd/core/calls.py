"""What one RPC did, gathered as it happens: the model, the providers tried, retries,
time spent waiting on upstreams, the usage; and its deadline, which retries must not
pass. The service layer starts it (sets ``CURRENT``) and reports it (metrics, the request
log line, the trace); the core fills it in.

It reaches the core in a context variable, read once at the gateway's entry points
(``current``); below them it is passed as an argument, so that what decides (the retry
deadline) and what is recorded is visible in the signatures."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from ratatoskr.v1 import chat_pb2
from ratd.core.access import Tenant


@dataclass(slots=True)
class CallInfo:
    method: str
    request_id: str
    # When the call must be over, on the event loop's clock (retries never wait past it).
    deadline: float
    started: float = field(default_factory=time.perf_counter)
    model: str = ""
    provider: str = ""
    tried: list[str] = field(default_factory=list)
    retries: int = 0
    # Seconds spent waiting on providers (until the first event, for streams).
    upstream: float = 0.0
    first_event: float | None = None
    usage: chat_pb2.Usage | None = None
    cache: str = ""
    # "provider:model" that answered, when it is not what the caller asked for (a chat
    # model standing in for an NLI model); the service sends it as trailing metadata.
    served_by: str = ""
    # The authenticated caller (None: auth mode "none"); the gateway keeps, of the
    # providers that could serve a model, those this caller may use (core.access).
    tenant: Tenant | None = None
    # The call's metadata (gRPC) or headers (HTTP), where its ``user`` is read from.
    metadata: Callable[[], Iterable[tuple[str, object]] | None] | None = None
    # An admin action's arguments (never a secret), for the audit log.
    action: dict[str, object] | None = None
    _user: str | None = None

    @property
    def user(self) -> str:
        """The caller's ``x-ratatoskr-user`` (the per-user rate limit, the usage by user,
        the log line): read from the metadata when first asked, as most calls never ask
        (a gRPC call's metadata is built for Python on each read)."""
        if self._user is None:
            self._user = caller_user(self.metadata() if self.metadata is not None else None)
        return self._user

    @user.setter
    def user(self, value: str) -> None:
        self._user = value

    def attempt(self, provider: str) -> None:
        if not self.tried or self.tried[-1] != provider:
            self.tried.append(provider)


# The call being served by this task (the service layer's admission sets it).
CURRENT: ContextVar[CallInfo | None] = ContextVar("ratd_call", default=None)


# Longest ``x-ratatoskr-user`` value kept; the rest is cut (it is a label, not data).
MAX_USER_CHARS = 128


def caller_user(metadata: Iterable[tuple[str, object]] | None) -> str:
    """The ``x-ratatoskr-user`` value of a call's metadata (gRPC) or headers (HTTP),
    printable and at most MAX_USER_CHARS long; "" when there is none."""
    for key, value in metadata or ():
        if key.lower() == "x-ratatoskr-user" and isinstance(value, str):
            return "".join(c for c in value[:MAX_USER_CHARS] if c.isprintable())
    return ""


def current() -> CallInfo | None:
    """The call being served by this task, if any (None in tests that call the core)."""
    return CURRENT.get()
