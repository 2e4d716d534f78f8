"""The errors every layer of ratd raises.

Each class carries what the service layer needs to build a gRPC status with
``google.rpc`` details: a stable reason (``ErrorReason`` in errors.proto), the provider
and model involved, an optional retry delay, the offending field for bad input, and
whether the fallback chain may move on to the next provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class GatewayError(Exception):
    """Base of ratd's errors. ``reason`` is an ErrorReason name without its prefix."""

    message: str
    provider: str = ""
    model: str = ""
    retry_after: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    reason: str = "UNSPECIFIED"
    # May the fallback chain try the next provider after this error?
    fallback: bool = False

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(eq=False)
class InvalidInput(GatewayError):
    """The caller's request is malformed. ``field`` is its path, e.g. ``messages[2].role``."""

    field: str = ""
    reason: str = "INVALID_INPUT"


@dataclass(eq=False)
class UnsupportedParameter(InvalidInput):
    """The target model does not take a parameter the caller set (policy ``error``)."""

    parameter: str = ""
    reason: str = "UNSUPPORTED_PARAMETER"
    fallback: bool = True


@dataclass(eq=False)
class UpstreamInvalidRequest(InvalidInput):
    """The provider rejected the request as invalid (a 4xx that is the request's fault)."""

    reason: str = "UPSTREAM_INVALID_REQUEST"


@dataclass(eq=False)
class ModelNotFound(GatewayError):
    reason: str = "MODEL_NOT_FOUND"


@dataclass(eq=False)
class ModelRetired(ModelNotFound):
    """The model is past the shutdown date its provider published. ``fallback``: another
    provider may still serve the same name (an OpenRouter copy of a retired snapshot)."""

    reason: str = "MODEL_RETIRED"
    fallback: bool = True


@dataclass(eq=False)
class PresetNotFound(ModelNotFound):
    reason: str = "PRESET_NOT_FOUND"


@dataclass(eq=False)
class ProviderUnavailable(GatewayError):
    """The provider cannot be reached, timed out, or failed on its side (5xx)."""

    reason: str = "PROVIDER_UNAVAILABLE"
    fallback: bool = True


@dataclass(eq=False)
class ProviderOverloaded(ProviderUnavailable):
    reason: str = "PROVIDER_OVERLOADED"


@dataclass(eq=False)
class UpstreamProtocolError(ProviderUnavailable):
    """The provider answered with something its API does not produce (bad JSON, cut stream)."""

    reason: str = "UPSTREAM_PROTOCOL"


@dataclass(eq=False)
class NoProvider(ProviderUnavailable):
    reason: str = "NO_PROVIDER"
    fallback: bool = False


@dataclass(eq=False)
class ModelNotAvailable(ProviderUnavailable):
    """A model exists but cannot serve now (loading, over the RAM budget)."""

    reason: str = "MODEL_NOT_AVAILABLE"


@dataclass(eq=False)
class ShuttingDown(ProviderUnavailable):
    reason: str = "SHUTTING_DOWN"
    fallback: bool = False


@dataclass(eq=False)
class RateLimited(GatewayError):
    reason: str = "RATE_LIMITED"
    fallback: bool = True


@dataclass(eq=False)
class QuotaExceeded(RateLimited):
    reason: str = "QUOTA_EXCEEDED"


@dataclass(eq=False)
class Overloaded(GatewayError):
    """ratd itself is at a limit (max_concurrent_requests, a full queue)."""

    reason: str = "OVERLOADED"


@dataclass(eq=False)
class AuthenticationFailed(GatewayError):
    reason: str = "AUTHENTICATION_FAILED"
    fallback: bool = True


@dataclass(eq=False)
class ContentFiltered(GatewayError):
    reason: str = "CONTENT_FILTERED"


@dataclass(eq=False)
class ContextLengthExceeded(GatewayError):
    limit: int | None = None
    reason: str = "CONTEXT_LENGTH_EXCEEDED"


@dataclass(eq=False)
class NotImplementedYet(GatewayError):
    reason: str = "NOT_IMPLEMENTED"
    fallback: bool = True


@dataclass(eq=False)
class Timeout(GatewayError):
    reason: str = "TIMEOUT"


@dataclass(eq=False)
class CallerUnauthenticated(GatewayError):
    """The caller of ratd gave no credentials, or unknown ones (not a provider refusing
    ratd's key: that is AuthenticationFailed)."""

    reason: str = "CALLER_UNAUTHENTICATED"


@dataclass(eq=False)
class RoleRequired(GatewayError):
    """The caller's tenant lacks the role an RPC needs (``admin`` for AdminService)."""

    role: str = ""
    reason: str = "ROLE_REQUIRED"


@dataclass(eq=False)
class ModelNotAllowed(GatewayError):
    """The model (or the provider:model that would serve it) is not on the tenant's
    allow-list. ``fallback``: the chain may try a candidate the tenant may use."""

    reason: str = "MODEL_NOT_ALLOWED"
    fallback: bool = True


@dataclass(eq=False)
class Refused(GatewayError):
    """An interceptor refused the call (``ratd.interceptors.Refuse``). ``code`` is the gRPC
    status it chose, by name; ``metadata["interceptor"]`` names the interceptor."""

    code: str = "PERMISSION_DENIED"
    reason: str = "INTERCEPTOR_REFUSED"


@dataclass(eq=False)
class InterceptorFailed(GatewayError):
    """An interceptor raised something else than a refusal: a bug in it, which is a
    misconfigured server. The call fails closed (INTERNAL), naming the interceptor."""

    reason: str = "INTERCEPTOR_FAILED"


@dataclass(eq=False)
class TenantRateLimited(GatewayError):
    """The caller's tenant (or user) is over a rate limit of its ``[tenants.NAME]``
    table; ``retry_after`` says when its window ends. Not a provider's rate limit."""

    limit: str = ""
    reason: str = "TENANT_RATE_LIMITED"


@dataclass(eq=False)
class BudgetExceeded(GatewayError):
    """The worst-case cost of the call does not fit in what is left of the tenant's daily
    or monthly budget; ``retry_after``: when that budget period ends."""

    limit: str = ""
    reason: str = "BUDGET_EXCEEDED"


@dataclass(eq=False)
class ModelUnpriced(GatewayError):
    """A tenant under a budget asked for a model whose prices are unknown (or whose
    output is unbounded), and its table does not set allow_unpriced_models."""

    reason: str = "MODEL_UNPRICED"


@dataclass(eq=False)
class StateUnavailable(GatewayError):
    """The shared state backend (Redis) did not answer within ``state.timeout_ms`` and
    ``state.on_unavailable`` is "deny"."""

    reason: str = "STATE_UNAVAILABLE"


@dataclass(eq=False)
class JobNotFound(GatewayError):
    """No job of that name, or none the caller's tenant may see (the same answer, so
    that other tenants' job names are not revealed)."""

    reason: str = "JOB_NOT_FOUND"


@dataclass(eq=False)
class JobNotFinished(GatewayError):
    """The job still runs: it cannot be deleted (cancel it first)."""

    reason: str = "JOB_NOT_FINISHED"
