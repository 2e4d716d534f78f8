"""Address forms accepted wherever a ratd address is given."""

from __future__ import annotations

DEFAULT_ADDRESS = "127.0.0.1:9741"


def normalize_address(address: str) -> str:
    """A gRPC target from ``host:port``, ``unix:/path`` or an upstream-style ``http://host:port``."""
    address = address.strip()
    for scheme in ("http://", "grpc://"):
        if address.startswith(scheme):
            return address[len(scheme) :].rstrip("/")
    if address.startswith("https://"):
        raise ValueError("ratd speaks plaintext gRPC; use host:port, not https://")
    return address
