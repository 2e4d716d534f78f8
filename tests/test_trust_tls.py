"""TLS, mutual TLS and unix socket permissions on a real in-process ratd, with
certificates made by the real ``openssl`` (tests/support/pki.py)."""

from __future__ import annotations

import grp
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from ratatoskr import CallerUnauthenticated, ConnectionFailed, RoleRequired, ServiceClient
from ratd.server import Daemon
from tests.support.daemon import make_config, running_daemon
from tests.support.pki import Pki, make_pki

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_config(pki: Pki, *, mutual: bool) -> str:
    server = f"""
[server]
address = "127.0.0.1:0"
metrics_address = ""
tls_cert_file = "{pki.server.cert}"
tls_key_file = "{pki.server.key}"
"""
    if not mutual:
        return server
    return (
        server
        + f"""tls_client_ca_file = "{pki.ca}"
[auth]
mode = "mtls"
[tenants.acme]
mtls_subjects = ["CN=acme-batch"]
[tenants.batch]
mtls_subjects = ["spiffe://example.org/batch"]
[tenants.ops]
mtls_subjects = ["CN=ops"]
roles = ["admin"]
"""
    )


def port(daemon: Daemon) -> str:
    return daemon.address.rsplit(":", 1)[1]


@pytest.fixture
async def tls_daemon(pki: Pki) -> AsyncIterator[Daemon]:
    async with running_daemon(make_config(tls_config(pki, mutual=False))) as daemon:
        yield daemon


@pytest.fixture
async def mtls_daemon(pki: Pki) -> AsyncIterator[Daemon]:
    async with running_daemon(make_config(tls_config(pki, mutual=True))) as daemon:
        yield daemon


async def test_tls_with_the_ca(tls_daemon: Daemon, pki: Pki) -> None:
    for address in (f"https://localhost:{port(tls_daemon)}", tls_daemon.address):
        async with await ServiceClient.connect(address, tls_ca=pki.ca, timeout=10) as client:
            assert (await client.health()).healthy
            assert await client.list_presets() is not None
    # PEM bytes instead of a path.
    async with await ServiceClient.connect(
        tls_daemon.address, tls_ca=pki.ca.read_bytes(), timeout=10
    ) as client:
        assert (await client.health()).healthy


async def test_plaintext_client_to_a_tls_port_fails_clearly(tls_daemon: Daemon, pki: Pki) -> None:
    async with await ServiceClient.connect(tls_daemon.address, timeout=5) as client:
        with pytest.raises(ConnectionFailed) as caught:
            await client.health()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    # A CA that did not sign ratd's certificate: the handshake fails, nothing is sent.
    async with await ServiceClient.connect(
        tls_daemon.address, tls_ca=pki.other_ca, timeout=5
    ) as client:
        with pytest.raises(ConnectionFailed):
            await client.health()
    # ratd keeps serving the clients that do it right.
    async with await ServiceClient.connect(tls_daemon.address, tls_ca=pki.ca) as client:
        assert (await client.health()).healthy


async def mtls_client(daemon: Daemon, pki: Pki, name: str | None) -> ServiceClient:
    pair = pki.clients[name] if name else None
    return await ServiceClient.connect(
        f"https://localhost:{port(daemon)}",
        tls_ca=pki.ca,
        tls_cert=pair.cert if pair else None,
        tls_key=pair.key if pair else None,
        timeout=5,
    )


async def test_mtls_maps_the_certificate_to_its_tenant(
    mtls_daemon: Daemon, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for name, tenant in (("acme", "acme"), ("spiffe", "batch")):
        async with await mtls_client(mtls_daemon, pki, name) as client:
            assert await client.list_presets() is not None
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
        assert f"tenant={tenant}" in lines[-1] and "method=ListPresets" in lines[-1]
    async with await mtls_client(mtls_daemon, pki, "acme") as client:
        with pytest.raises(RoleRequired):
            await client.list_loaded()
    async with await mtls_client(mtls_daemon, pki, "ops") as client:
        assert isinstance(await client.list_loaded(), list)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "acme-batch" not in text and "spiffe://" not in text  # no certificate detail


async def test_mtls_refuses_unknown_foreign_expired_and_missing_certificates(
    mtls_daemon: Daemon, pki: Pki
) -> None:
    # Signed by the CA but named in no tenant: the handshake succeeds, the call does not.
    async with await mtls_client(mtls_daemon, pki, "stranger") as client:
        with pytest.raises(CallerUnauthenticated) as caught:
            await client.list_presets()
        assert caught.value.reason == "CALLER_UNAUTHENTICATED"
        assert "stranger" not in caught.value.message
        assert (await client.health()).healthy  # health stays open
    # Another CA, an expired certificate, no certificate: no TLS session at all.
    for name in ("foreign", "expired", None):
        async with await mtls_client(mtls_daemon, pki, name) as client:
            with pytest.raises(ConnectionFailed):
                await client.health()
    async with await mtls_client(mtls_daemon, pki, "acme") as client:
        assert (await client.health()).healthy


def test_client_refuses_a_certificate_without_its_key(pki: Pki) -> None:
    from ratatoskr.client import open_channel

    with pytest.raises(ValueError, match="go together"):
        open_channel("https://localhost:1", tls_ca=pki.ca, tls_cert=pki.clients["acme"].cert)


async def test_unix_socket_gets_its_mode_and_group(tmp_path: Path) -> None:
    path = tmp_path / "ratd.sock"
    # A supplementary group of ours when there is one (chown to it is then a real change).
    gid = next((g for g in os.getgroups() if g != os.getgid()), os.getgid())
    group = grp.getgrgid(gid).gr_name
    config = make_config(
        f"""
[server]
address = "unix:{path}"
metrics_address = ""
socket_mode = "0640"
socket_group = "{group}"
"""
    )
    async with running_daemon(config) as daemon:
        info = path.stat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o640
        assert info.st_gid == gid
        async with await ServiceClient.connect(daemon.address, timeout=10) as client:
            assert (await client.health()).healthy
    default = make_config(f'[server]\naddress = "unix:{tmp_path / "b.sock"}"\nmetrics_address = ""')
    async with running_daemon(default):
        assert stat.S_IMODE((tmp_path / "b.sock").stat().st_mode) == 0o660
