"""A throwaway PKI made with the real ``openssl`` command line, as an operator would:
a CA, a server certificate for 127.0.0.1/localhost, client certificates (known, unknown,
from another CA, expired, with a URI SAN)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr}"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pair
    clients: dict[str, Pair]
    other_ca: Path


def _ca(directory: Path, name: str) -> Pair:
    openssl(
        "req", "-x509", *EC, "-keyout", f"{name}.key", "-out", f"{name}.pem",
        "-days", "2", "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip
    return Pair(directory / f"{name}.pem", directory / f"{name}.key")


def _issue(
    directory: Path, ca: Pair, name: str, subject: str, extensions: str, *, days: str = "2"
) -> Pair:
    """A certificate for ``subject`` signed by ``ca``; ``days`` "-1" makes it expired."""
    (directory / f"{name}.ext").write_text(extensions + "\n")
    openssl(
        "req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", days, "-extfile", f"{name}.ext", "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip
    key = directory / f"{name}.key"
    key.chmod(0o600)
    return Pair(directory / f"{name}.pem", key)


CLIENT = "extendedKeyUsage = clientAuth"


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed")
    ca = _ca(directory, "ca")
    other = _ca(directory, "other-ca")
    server = _issue(
        directory,
        ca,
        "server",
        "/CN=ratd.test",
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth",
    )
    clients = {
        "acme": _issue(directory, ca, "acme", "/O=Acme/CN=acme-batch", CLIENT),
        "ops": _issue(directory, ca, "ops", "/CN=ops", CLIENT),
        "spiffe": _issue(
            directory,
            ca,
            "spiffe",
            "/CN=workload",
            CLIENT + "\nsubjectAltName = URI:spiffe://example.org/batch",
        ),
        "stranger": _issue(directory, ca, "stranger", "/CN=stranger", CLIENT),
        "foreign": _issue(directory, other, "foreign", "/CN=acme-batch", CLIENT),
        "expired": _issue(directory, ca, "expired", "/CN=acme-batch", CLIENT, days="-1"),
    }
    return Pki(ca.cert, server, clients, other.cert)
