"""Address forms accepted wherever a ratd address is given."""

from __future__ import annotations

DEFAULT_ADDRESS = "127.0.0.1:9741"


def parse_address(address: str) -> tuple[str, bool]:
    """A gRPC target and whether it asks for TLS: ``https://host:port`` (TLS),
    ``host:port``, ``unix:/path`` or an upstream-style ``http://host:port`` (plaintext)."""
    address = address.strip()
    if address.startswith("https://"):
        return address[len("https://") :].rstrip("/"), True
    for scheme in ("http://", "grpc://"):
        if address.startswith(scheme):
            return address[len(scheme) :].rstrip("/"), False
    return address, False


def normalize_address(address: str) -> str:
    """The gRPC target of ``address`` (see ``parse_address``)."""
    return parse_address(address)[0]
