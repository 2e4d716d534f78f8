"""From ratd's errors to gRPC statuses with google.rpc details.

The message text keeps the forms the upstream Rust client parses (``Rate limited, retry
after 5s``, ``context length exceeded: 8192 tokens``); everything a program should switch
on travels in ErrorInfo, RetryInfo and BadRequest.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ratd import errors
from ratd.secrets import redact

DOMAIN = "ratatoskr"

_CODES: tuple[tuple[type[errors.GatewayError], grpc.StatusCode], ...] = (
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.ProviderUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.AuthenticationFailed, grpc.StatusCode.UNAUTHENTICATED),
    (errors.ContentFiltered, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ContextLengthExceeded, grpc.StatusCode.OUT_OF_RANGE),
    (errors.NotImplementedYet, grpc.StatusCode.UNIMPLEMENTED),
    (errors.Timeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.CallerUnauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.RoleRequired, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ModelNotAllowed, grpc.StatusCode.PERMISSION_DENIED),
    (errors.TenantRateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.BudgetExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ModelUnpriced, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StateUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.JobNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.JobNotFinished, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_code(err: errors.GatewayError) -> grpc.StatusCode:
    if isinstance(err, errors.Refused):  # the interceptor chose it (checked when raised)
        return grpc.StatusCode[err.code]
    for cls, code in _CODES:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.INTERNAL


def format_delay(seconds: float) -> str:
    """A delay as Rust's Duration Debug prints it ("5s", "1.5s", "500ms")."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def public_message(err: errors.GatewayError) -> str:
    """The message a caller sees (the upstream client's forms), not yet redacted."""
    if isinstance(err, errors.RateLimited) and err.retry_after is not None:
        return f"Rate limited, retry after {format_delay(err.retry_after)}"
    if isinstance(err, errors.ContextLengthExceeded):
        if err.limit is not None:
            return f"context length exceeded: {err.limit} tokens"
        return f"context length exceeded ({err.message})"
    return err.message


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_grpc_status(err: errors.GatewayError) -> grpc.Status:
    """The status, with details, that ``err`` becomes on the wire."""
    code = status_code(err)
    message = redact(public_message(err))
    metadata = {k: redact(v) for k, v in err.metadata.items()}
    if err.provider:
        metadata["provider"] = err.provider
    if err.model:
        metadata["model"] = err.model
    if message != err.message:
        metadata["detail"] = redact(err.message)
    if isinstance(err, errors.ContextLengthExceeded) and err.limit is not None:
        metadata["limit"] = str(err.limit)
    if isinstance(err, errors.RoleRequired) and err.role:
        metadata["role"] = err.role
    if isinstance(err, errors.TenantRateLimited | errors.BudgetExceeded) and err.limit:
        metadata["limit"] = err.limit
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=metadata))
    ]
    if err.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(err.retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if isinstance(err, errors.InvalidInput) and err.field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=err.field, description=message
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    proto = status_pb2.Status(code=code.value[0], message=message, details=details)
    return rpc_status.to_status(proto)


def internal_status(request_id: str) -> grpc.Status:
    """A bug in ratd: say so without leaking internals."""
    message = f"internal error in ratd (request {request_id}); see the daemon log"
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=DOMAIN, metadata={"request_id": request_id}
    )
    proto = status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[_pack(info)])
    return rpc_status.to_status(proto)
