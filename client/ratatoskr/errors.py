"""Typed exceptions built from ratd's gRPC statuses.

ratd attaches ``google.rpc.Status`` details to every error it returns: an ``ErrorInfo``
whose ``reason`` names the failure (see ``errors.proto``), a ``RetryInfo`` when a retry
delay is known and a ``BadRequest`` naming the offending field. The exception class is
chosen from the status code and that reason, never by parsing the message text (except
for the upstream ``Rate limited, retry after 5s`` form, read only as a fallback for
servers that send no details).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import grpc
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "ratatoskr"
_DETAILS_KEY = "grpc-status-details-bin"
_RETRY_RE = re.compile(r"retry after (\d+(?:\.\d+)?)(ms|s)\b")


class RatatoskrError(Exception):
    """Any error answered by ratd (or by the channel to it)."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after
        self.field_violations = list(field_violations)

    @property
    def provider(self) -> str | None:
        """The provider that failed, when one did."""
        return self.metadata.get("provider")

    @property
    def model(self) -> str | None:
        return self.metadata.get("model")

    def __str__(self) -> str:
        return self.message


class InvalidInput(RatatoskrError):
    """INVALID_ARGUMENT: the request is malformed; ``field_violations`` name the fields."""

    @property
    def field(self) -> str | None:
        return self.field_violations[0][0] if self.field_violations else None


class UnsupportedParameter(InvalidInput):
    """The target model does not support a parameter (validation policy ``error``)."""

    @property
    def parameter(self) -> str | None:
        return self.metadata.get("parameter")


class ModelNotFound(RatatoskrError):
    """NOT_FOUND: no provider knows the model."""


class PresetNotFound(ModelNotFound):
    """NOT_FOUND: the ``ratatoskr:<tier>/<capability>`` preset does not exist."""


class ModelRetired(ModelNotFound):
    """NOT_FOUND: the model is past the shutdown date its provider published. ``metadata``
    has ``shutdown_date`` and, when known, ``replacement``."""

    @property
    def replacement(self) -> str | None:
        return self.metadata.get("replacement")


class ModelNotAvailable(RatatoskrError):
    """UNAVAILABLE: the provider or model cannot serve now; retrying later may work."""


class ConnectionFailed(ModelNotAvailable):
    """ratd itself could not be reached."""


class RateLimited(RatatoskrError):
    """RESOURCE_EXHAUSTED: rate limited; ``retry_after`` seconds when known."""


class QuotaExceeded(RateLimited):
    """The provider account is out of quota or credit; retrying will not help."""


class Overloaded(RateLimited):
    """ratd is at its concurrency limit or a queue is full."""


class TenantRateLimited(RateLimited):
    """The caller's tenant or user is over a rate limit ratd enforces (``limit`` in
    metadata); ``retry_after``: when its window ends."""


class BudgetExceeded(RateLimited):
    """The call's worst-case cost does not fit in what is left of the tenant's budget."""


class ModelUnpriced(RatatoskrError):
    """FAILED_PRECONDITION: the tenant has a budget and the model's prices are unknown."""


class StateUnavailable(RatatoskrError):
    """UNAVAILABLE: ratd's shared state backend (Redis) is down and it denies calls."""


class AuthenticationFailed(RatatoskrError):
    """UNAUTHENTICATED: the provider refused ratd's key, or none is configured."""


class CallerUnauthenticated(RatatoskrError):
    """UNAUTHENTICATED (reason CALLER_UNAUTHENTICATED): ratd does not know this caller: no
    API key or client certificate, or one that names no tenant. (AuthenticationFailed is
    a provider refusing ratd's own key.)"""


class PermissionDenied(RatatoskrError):
    """PERMISSION_DENIED by ratd's access rules (not a provider's content filter)."""


class RoleRequired(PermissionDenied):
    """The caller's tenant lacks the role the RPC needs (``role`` in metadata)."""

    @property
    def role(self) -> str | None:
        return self.metadata.get("role")


class ModelNotAllowed(PermissionDenied):
    """The model is not on the caller's tenant's allow-list."""


class ContentFiltered(RatatoskrError):
    """PERMISSION_DENIED: the provider's content filter blocked the request."""


class ContextLengthExceeded(RatatoskrError):
    """OUT_OF_RANGE: the input is longer than the model's context window."""

    @property
    def limit(self) -> int | None:
        value = self.metadata.get("limit")
        return int(value) if value and value.isdigit() else None


class NotImplementedByServer(RatatoskrError):
    """UNIMPLEMENTED: the daemon or the chosen provider does not offer this operation."""


class DeadlineExceeded(RatatoskrError):
    """DEADLINE_EXCEEDED: the call ran out of time."""


class Cancelled(RatatoskrError):
    """CANCELLED: the call was cancelled."""


class InternalError(RatatoskrError):
    """INTERNAL or UNKNOWN: a bug in ratd; please report it."""


class JobNotFound(RatatoskrError):
    """NOT_FOUND: no job of that name that this caller may see."""


class JobNotFinished(RatatoskrError):
    """FAILED_PRECONDITION: the job still runs (a delete: cancel it first)."""


_BY_REASON: dict[str, type[RatatoskrError]] = {
    "JOB_NOT_FOUND": JobNotFound,
    "JOB_NOT_FINISHED": JobNotFinished,
    "UNSUPPORTED_PARAMETER": UnsupportedParameter,
    "PRESET_NOT_FOUND": PresetNotFound,
    "MODEL_RETIRED": ModelRetired,
    "QUOTA_EXCEEDED": QuotaExceeded,
    "OVERLOADED": Overloaded,
    "CALLER_UNAUTHENTICATED": CallerUnauthenticated,
    "ROLE_REQUIRED": RoleRequired,
    "MODEL_NOT_ALLOWED": ModelNotAllowed,
    "TENANT_RATE_LIMITED": TenantRateLimited,
    "BUDGET_EXCEEDED": BudgetExceeded,
    "MODEL_UNPRICED": ModelUnpriced,
    "STATE_UNAVAILABLE": StateUnavailable,
}

_BY_CODE: dict[grpc.StatusCode, type[RatatoskrError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: ModelNotFound,
    grpc.StatusCode.UNAVAILABLE: ModelNotAvailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationFailed,
    grpc.StatusCode.PERMISSION_DENIED: ContentFiltered,
    grpc.StatusCode.OUT_OF_RANGE: ContextLengthExceeded,
    grpc.StatusCode.UNIMPLEMENTED: NotImplementedByServer,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def _status_details(
    trailing: Sequence[tuple[str, str | bytes]] | None,
) -> status_pb2.Status | None:
    for key, value in trailing or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def _parse_retry_after(message: str) -> float | None:
    match = _RETRY_RE.search(message)
    if not match:
        return None
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


def from_rpc_error(err: grpc.RpcError) -> RatatoskrError:
    """Turn a failed call into the matching typed exception."""
    code: grpc.StatusCode = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message: str = (err.details() if hasattr(err, "details") else None) or str(code)
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    reason, metadata, retry_after, violations = "", {}, None, []
    status = _status_details(trailing)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
    if retry_after is None and code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_after = _parse_retry_after(message)
    if code == grpc.StatusCode.UNAVAILABLE and not reason:
        cls: type[RatatoskrError] = ConnectionFailed
    elif code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS):
        cls = InternalError
    else:
        cls = _BY_REASON.get(reason) or _BY_CODE.get(code, RatatoskrError)
    return cls(
        message,
        code=code,
        reason=reason,
        metadata=metadata,
        retry_after=retry_after,
        field_violations=violations,
    )
