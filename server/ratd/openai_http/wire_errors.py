"""ratd's errors as OpenAI's: ``{"error": {"message", "type", "param", "code"}}`` with the
HTTP status that the official SDKs turn into their exception classes (BadRequestError 400,
AuthenticationError 401, PermissionDeniedError 403, NotFoundError 404, RateLimitError 429
with ``retry-after``, InternalServerError 5xx).

Derived from the same error classes (and ErrorInfo reasons, in ``code`` and ``reason``)
as the gRPC statuses of ``service/status.py``. Two deliberate differences from gRPC: a
provider refusing *ratd's* key is 502, not 401 (the SDK would tell the caller its own key
is wrong), and a model no configured provider serves is 404, not 503 (the SDKs retry
5xx, which cannot help).
"""

from __future__ import annotations

import math

import orjson

from ratd import errors
from ratd.secrets import redact
from ratd.service.status import public_message

# (class, HTTP status, OpenAI error type), most specific first.
_STATUSES: tuple[tuple[type[errors.GatewayError], int, str], ...] = (
    (errors.InvalidInput, 400, "invalid_request_error"),
    (errors.ContextLengthExceeded, 400, "invalid_request_error"),
    (errors.ContentFiltered, 400, "invalid_request_error"),
    (errors.NotImplementedYet, 400, "invalid_request_error"),
    (errors.CallerUnauthenticated, 401, "authentication_error"),
    (errors.RoleRequired, 403, "permission_error"),
    (errors.ModelNotAllowed, 403, "permission_error"),
    (errors.ModelNotFound, 404, "invalid_request_error"),
    (errors.NoProvider, 404, "invalid_request_error"),
    (errors.RateLimited, 429, "rate_limit_error"),
    (errors.Overloaded, 429, "rate_limit_error"),
    (errors.TenantRateLimited, 429, "rate_limit_error"),
    (errors.BudgetExceeded, 429, "insufficient_quota"),
    (errors.ModelUnpriced, 400, "invalid_request_error"),
    (errors.StateUnavailable, 503, "server_error"),
    (errors.AuthenticationFailed, 502, "upstream_error"),
    (errors.ProviderOverloaded, 503, "server_error"),
    (errors.ModelNotAvailable, 503, "server_error"),
    (errors.ShuttingDown, 503, "server_error"),
    (errors.ProviderUnavailable, 502, "server_error"),
    (errors.Timeout, 504, "timeout"),
)
# OpenAI's own codes where it has one for the same thing; else the reason, lower-cased.
_CODES = {
    "CALLER_UNAUTHENTICATED": "invalid_api_key",
    "RATE_LIMITED": "rate_limit_exceeded",
    "QUOTA_EXCEEDED": "insufficient_quota",
    "CONTENT_FILTERED": "content_policy_violation",
}
# ratd at its own concurrency limit: try again in a moment.
_OVERLOADED_RETRY_SECS = 1.0


# An interceptor's refusal: its gRPC status as HTTP (anything else it may choose: 400).
_REFUSALS = {
    "UNAUTHENTICATED": (401, "authentication_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "NOT_FOUND": (404, "invalid_request_error"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "UNAVAILABLE": (503, "server_error"),
}


def http_status(err: errors.GatewayError) -> tuple[int, str]:
    if isinstance(err, errors.Refused):
        return _REFUSALS.get(err.code, (400, "invalid_request_error"))
    for cls, status, kind in _STATUSES:
        if isinstance(err, cls):
            return status, kind
    return 500, "server_error"


def error_body(err: errors.GatewayError) -> tuple[int, bytes, dict[str, str]]:
    """HTTP status, JSON body and headers (``retry-after``) of ``err``."""
    status, kind = http_status(err)
    body: dict[str, object] = {
        "message": redact(public_message(err)),
        "type": kind,
        "param": getattr(err, "field", "") or None,
        "code": _CODES.get(err.reason, err.reason.lower()),
        "reason": err.reason,
    }
    if err.provider:
        body["provider"] = err.provider
    headers = {}
    retry_after = err.retry_after
    if retry_after is None and isinstance(err, errors.Overloaded):
        retry_after = _OVERLOADED_RETRY_SECS
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
        headers["retry-after-ms"] = str(max(0, round(retry_after * 1000)))
    return status, orjson.dumps({"error": body}), headers


def internal_body(request_id: str) -> bytes:
    """A bug in ratd, said without leaking internals (as gRPC's INTERNAL)."""
    message = f"internal error in ratd (request {request_id}); see the daemon log"
    return orjson.dumps(
        {"error": {"message": message, "type": "server_error", "param": None, "code": "internal"}}
    )


def plain_error(status: int, message: str, kind: str, code: str) -> bytes:
    """An error of the HTTP layer itself (no route, wrong method, body too large)."""
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})
