"""The trust boundary's configuration checks: TLS files, unix socket permissions, caller
authentication and tenants (``[server]`` TLS/socket keys, ``[auth]``, ``[tenants.NAME]``).

Every check runs when the config is read (``ratd --check-config`` included), so a daemon
that would be exposed, or a key file that others may read, never starts. The checks name
the file and the key; they never print a key, a hash or a certificate's content.
"""

from __future__ import annotations

import grp
import ipaddress
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratd.config import Config, TenantConfig

ROLES = ("inference", "admin")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_TENANT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _error(message: str) -> Exception:
    from ratd.config import ConfigError  # config imports this module lazily: no cycle

    return ConfigError(message)


def is_local_address(address: str) -> bool:
    """A unix socket, ``localhost`` or a loopback IP: reachable only from this host."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name (or 0.0.0.0-like wildcard) may be anything


def socket_mode(config: Config) -> int:
    """``[server] socket_mode`` as a number (validated by ``check_trust``)."""
    return int(config.server.socket_mode, 8)


def _check_private_file(path: str, where: str, source: str, *, private: bool) -> None:
    try:
        mode = Path(path).expanduser().stat().st_mode
    except OSError as err:
        raise _error(f"{source}: {where}: cannot read {path}: {err.strerror}") from None
    if private and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _error(
            f"{source}: {where}: refusing a private key that group or others may access "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )


def _check_transport(config: Config) -> None:
    server, source = config.server, config.source
    if bool(server.tls_cert_file) != bool(server.tls_key_file):
        raise _error(f"{source}: server.tls_cert_file and server.tls_key_file go together")
    if server.tls_client_ca_file and not server.tls_cert_file:
        raise _error(
            f"{source}: server.tls_client_ca_file (mutual TLS) needs server.tls_cert_file "
            "and server.tls_key_file"
        )
    for key in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        if path := getattr(server, key):
            _check_private_file(path, f"server.{key}", source, private=key == "tls_key_file")
    try:
        mode = int(server.socket_mode, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise _error(
            f'{source}: server.socket_mode must be an octal mode such as "0660", '
            f"got {server.socket_mode!r}"
        )
    if server.socket_group and not server.socket_group.isdigit():
        try:
            grp.getgrnam(server.socket_group)
        except KeyError:
            raise _error(
                f"{source}: server.socket_group: no group named {server.socket_group!r}"
            ) from None


_LIMIT_KEYS = (
    "requests_per_minute",
    "tokens_per_minute",
    "user_requests_per_minute",
    "budget_usd_daily",
    "budget_usd_monthly",
)


def _check_tenants(config: Config) -> None:
    source = config.source
    if config.auth.mode == "mtls" and not config.server.tls_client_ca_file:
        raise _error(
            f'{source}: auth.mode = "mtls" needs server.tls_client_ca_file (and the TLS '
            "certificate and key)"
        )
    hashes: dict[str, str] = {}
    subjects: dict[str, str] = {}
    for name, tenant in config.tenants.items():
        where = f"{source}: tenants.{name}"
        _check_tenant(tenant, where)
        if not _TENANT_NAME.match(name):
            raise _error(f"{where}: a tenant name is letters, digits, '_', '.', '-'")
        for digest in tenant.api_key_sha256:
            if (other := hashes.setdefault(digest.lower(), name)) != name:
                raise _error(f"{where}: a key hash is also configured for {other}")
        for subject in tenant.mtls_subjects:
            if (other := subjects.setdefault(normalize_subject(subject), name)) != name:
                raise _error(f"{where}.mtls_subjects: {subject!r} also names tenant {other}")


def _check_tenant(tenant: TenantConfig, where: str) -> None:
    """One tenant's own values: roles, key hashes, limits."""
    for role in tenant.roles:
        if role not in ROLES:
            raise _error(f"{where}.roles: unknown role {role!r} (expected: {', '.join(ROLES)})")
    for i, digest in enumerate(tenant.api_key_sha256):
        if not _HEX64.match(digest):
            raise _error(
                f"{where}.api_key_sha256[{i}] must be 64 hex digits "
                "(the SHA-256 that `ratd keys new` prints), not a key"
            )
    for key in _LIMIT_KEYS:
        if getattr(tenant, key) < 0:
            raise _error(f"{where}.{key} must not be negative")


def normalize_subject(subject: str) -> str:
    """A certificate subject in one spelling: ``CN=a, O=B`` and ``O=B,CN=a`` are the same
    (attribute names upper-cased, spaces around separators dropped, order ignored). A URI
    SAN (``spiffe://...``) stays as it is."""
    if "://" in subject:
        return subject.strip()
    parts = []
    pieces = subject.split("/") if subject.startswith("/") else re.split(r"(?<!\\),", subject)
    for part in pieces:
        name, sep, value = part.partition("=")
        if sep:
            parts.append(f"{name.strip().upper()}={value.strip()}")
    return ",".join(sorted(parts))


def _check_http(config: Config) -> None:
    """``[http] address`` is host:port."""
    address = config.http.address
    if not address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise _error(
            f'{config.source}: http.address must be host:port (e.g. "127.0.0.1:9743"), '
            f"got {address!r}"
        )


def check_trust(config: Config) -> None:
    """The TLS files, socket permissions, auth mode and tenants make sense together."""
    _check_transport(config)
    _check_http(config)
    _check_tenants(config)


def exposure(config: Config) -> list[str]:
    """What is exposed beyond this host without protection. Raises ConfigError for it
    unless ``allow_insecure_remote = true``; returns the warnings to log then."""
    server = config.server
    problems = []
    if not is_local_address(server.address):
        if not server.tls_cert_file:
            problems.append(f"gRPC on {server.address} without TLS (server.tls_cert_file)")
        if config.auth.mode == "none":
            problems.append(
                f'gRPC on {server.address} without caller authentication (auth.mode = "none")'
            )
    http = config.http.address
    if http and not is_local_address(http):
        if not server.tls_cert_file:
            problems.append(f"OpenAI HTTP on {http} without TLS (server.tls_cert_file)")
        if config.auth.mode == "none":
            problems.append(
                f'OpenAI HTTP on {http} without caller authentication (auth.mode = "none")'
            )
    if server.metrics_address and not is_local_address(server.metrics_address):
        problems.append(f"unauthenticated metrics HTTP on {server.metrics_address}")
    if problems and not server.allow_insecure_remote:
        raise _error(
            f"{config.source}: refusing to serve beyond this host: {'; '.join(problems)}. "
            "Configure TLS and [auth], listen on loopback or a unix socket, or set "
            "server.allow_insecure_remote = true"
        )
    return problems
