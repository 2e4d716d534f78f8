"""Caller authentication: one gRPC server interceptor in front of every service.

It finds the caller's tenant (an API key in ``authorization: Bearer <key>`` metadata, or
the client certificate of a mutual-TLS connection), checks the role the RPC needs, and
puts the tenant on the call (``core.access.CALLER``) for the model allow-list and the
request log. grpc.health.v1 and ``Ratatoskr.Health`` stay open, so that load balancers and
``rat health`` need no credentials; reflection needs an authenticated caller.

Keys are never stored or compared in the clear: ratd keeps their SHA-256 digests in a
dict and confirms a hit with ``hmac.compare_digest``. Refusals name the reason, never the
key, its hash or the certificate.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from ratd import errors
from ratd.config import Config, TenantConfig
from ratd.core.access import CALLER, Tenant
from ratd.core.calls import caller_user
from ratd.service.handlers import rewrap
from ratd.service.report import report_refused
from ratd.service.status import to_grpc_status
from ratd.trust import normalize_subject

if TYPE_CHECKING:
    from ratd.service.audit import AuditLog

log = logging.getLogger(__name__)

# What an RPC needs. OPEN: nothing; ANY: an authenticated caller; else a role.
OPEN = "open"
ANY = "any"
_OPEN_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/ratatoskr.v1.Ratatoskr/Health",
    }
)
# Read-only catalog RPCs: any tenant may look, whatever its roles.
_CATALOG = frozenset(
    f"/ratatoskr.v1.Ratatoskr/{name}"
    for name in (
        "ListModels",
        "ModelStatus",
        "GetModelMetadata",
        "FetchModelMetadata",
        "ResolvePreset",
        "ListPresets",
        "GetCapabilities",
    )
)
# Peer subjects remembered (subject -> tenant); a bound, since certificates are many.
_PEER_CACHE_SIZE = 1024


def required(method: str) -> str:
    """OPEN, ANY or the role that the RPC ``method`` (``/package.Service/Method``) needs."""
    if method in _OPEN_METHODS:
        return OPEN
    if method.startswith("/ratatoskr.v1.AdminService/"):
        return "admin"
    if method.startswith("/ratatoskr.v1.Ratatoskr/") and method not in _CATALOG:
        return "inference"
    return ANY  # the catalog, reflection, and whatever else is served


def _tenant(name: str, conf: TenantConfig) -> Tenant:
    return Tenant.build(name, conf.roles, conf.models)


class Authenticator:
    """The tenants of one config, indexed for the per-call decision."""

    def __init__(self, mode: str, tenants: Mapping[str, TenantConfig]) -> None:
        self.mode = mode
        # digest -> (digest, tenant): the stored digest is compared in constant time.
        self._by_digest: dict[bytes, tuple[bytes, Tenant]] = {}
        self._by_subject: dict[str, Tenant] = {}
        self._peers: dict[bytes, Tenant | None] = {}
        for name, conf in tenants.items():
            tenant = _tenant(name, conf)
            for digest in conf.api_key_sha256:
                raw = bytes.fromhex(digest)
                self._by_digest[raw] = (raw, tenant)
            for subject in conf.mtls_subjects:
                self._by_subject[normalize_subject(subject)] = tenant

    @classmethod
    def from_config(cls, config: Config) -> Authenticator:
        return cls(config.auth.mode, config.tenants)

    def from_metadata(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Tenant:
        """The tenant whose key the ``authorization`` metadata carries."""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    break
                digest = hashlib.sha256(token.strip().encode()).digest()
                hit = self._by_digest.get(digest)
                if hit is not None and hmac.compare_digest(hit[0], digest):
                    return hit[1]
                raise errors.CallerUnauthenticated(
                    "caller not authenticated: the API key is not valid for this ratd"
                )
        raise errors.CallerUnauthenticated(
            "caller not authenticated: send an API key as 'authorization: Bearer <key>' "
            "metadata (rat --api-key / RATD_API_KEY)"
        )

    def from_peer(self, auth_context: Mapping[str, Sequence[bytes]]) -> Tenant:
        """The tenant that the client certificate's subject (or URI SAN) names."""
        subjects = auth_context.get("x509_subject") or ()
        if not subjects:
            raise errors.CallerUnauthenticated(
                "caller not authenticated: a client certificate is required"
            )
        subject = subjects[0]
        if subject in self._peers:
            tenant = self._peers[subject]
        else:
            tenant = self._match_peer(subject, auth_context)
            if len(self._peers) >= _PEER_CACHE_SIZE:
                self._peers.pop(next(iter(self._peers)))
            self._peers[subject] = tenant
        if tenant is None:
            raise errors.CallerUnauthenticated(
                "caller not authenticated: the client certificate names no tenant of this ratd"
            )
        return tenant

    def _match_peer(
        self, subject: bytes, auth_context: Mapping[str, Sequence[bytes]]
    ) -> Tenant | None:
        names = [normalize_subject(subject.decode(errors="replace"))]
        names += [
            normalize_subject("CN=" + cn.decode(errors="replace"))
            for cn in auth_context.get("x509_common_name") or ()
        ]
        names += [
            san.decode(errors="replace")
            for san in auth_context.get("x509_subject_alternative_name") or ()
            if b"://" in san
        ]
        for name in names:
            if (tenant := self._by_subject.get(name)) is not None:
                return tenant
        return None

    def decide(self, context: grpc.aio.ServicerContext, need: str) -> Tenant:
        """The caller's tenant, allowed to call an RPC that needs ``need``; raises
        CallerUnauthenticated or RoleRequired."""
        if self.mode == "mtls":
            tenant = self.from_peer(context.auth_context())
        else:
            tenant = self.from_metadata(context.invocation_metadata())
        return _with_role(tenant, need)

    def for_http(
        self, authorization: str | None, peercert: Mapping[str, Any] | None, need: str
    ) -> Tenant:
        """The same decision for an HTTP request (the OpenAI door): its ``Authorization``
        header, or under mode "mtls" the client certificate of its TLS connection (as
        ``ssl.SSLSocket.getpeercert()`` gives it); the same tenants, the same roles."""
        if self.mode == "mtls":
            return _with_role(self.from_peer(_auth_context(peercert or {})), need)
        metadata = () if authorization is None else (("authorization", authorization),)
        return _with_role(self.from_metadata(metadata), need)


# ssl's attribute names, as the short forms that certificate subjects are written in.
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
}


def _auth_context(cert: Mapping[str, Any]) -> dict[str, list[bytes]]:
    """A verified peer certificate from ``ssl`` in the shape of gRPC's auth context, so
    that ``from_peer`` matches it exactly as it matches a gRPC client's certificate."""
    pairs = [(name, value) for rdn in cert.get("subject", ()) for name, value in rdn]
    if not pairs:
        return {}
    subject = ",".join(f"{_SHORT_NAMES.get(name, name)}={value}" for name, value in pairs)
    return {
        "x509_subject": [subject.encode()],
        "x509_common_name": [v.encode() for name, v in pairs if name == "commonName"],
        "x509_subject_alternative_name": [
            v.encode() for kind, v in cert.get("subjectAltName", ()) if kind == "URI"
        ],
    }


def _with_role(tenant: Tenant, need: str) -> Tenant:
    """``tenant``, unless the call needs a role it lacks (RoleRequired)."""
    if need != ANY and need not in tenant.roles:
        raise errors.RoleRequired(
            f"tenant {tenant.name} may not call this: it needs role {need!r}", role=need
        )
    return tenant


Behavior = Callable[..., Any]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler (once per method: cached) with the decision."""

    def __init__(self, authenticator: Authenticator, *, log_requests: bool = True) -> None:
        # Swapped by a config reload (new tenants, rotated keys).
        self.authenticator = authenticator
        self.log_requests = log_requests
        # The audit log (the daemon sets it): refused callers are audited too.
        self.audit: AuditLog | None = None
        self._handlers: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: UNIMPLEMENTED, as without auth
        method: str = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        need = required(method)
        wrapped = handler if need == OPEN else self._wrap(handler, method, need)
        self._handlers[method] = (handler, wrapped)  # bounded: one per served method
        return wrapped

    async def _admit(self, context: grpc.aio.ServicerContext, method: str, need: str) -> None:
        try:
            CALLER.set(self.authenticator.decide(context, need))
        except errors.GatewayError as err:
            await self._refuse(context, method, err)

    async def _refuse(
        self, context: grpc.aio.ServicerContext, method: str, err: errors.GatewayError
    ) -> None:
        short = method.rsplit("/", 1)[-1]
        log.info("%s refused: %s (peer %s)", short, err.reason, context.peer())
        status = to_grpc_status(err)
        report_refused(
            short,
            status.code.name,
            None,
            log_requests=self.log_requests,
            audit=self.audit,
            user=caller_user(context.invocation_metadata()),
        )
        await context.abort_with_status(status)

    def _wrap(
        self, handler: grpc.RpcMethodHandler, method: str, need: str
    ) -> grpc.RpcMethodHandler:
        async def admit(arg: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(context, method, need)
            return arg

        return rewrap(handler, request=admit, requests=admit)
