"""The trust boundary's configuration: [auth], [tenants.NAME], the TLS and socket keys of
[server], the refusal to serve an exposed daemon, ``ratd keys new``, and the model
allow-list's matching rules."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ratd.config import ConfigError
from ratd.core.access import Tenant, permits, refusal
from ratd.errors import CallerUnauthenticated
from ratd.server import Daemon
from ratd.service.auth import Authenticator
from ratd.trust import exposure, is_local_address, normalize_subject
from tests.support.daemon import make_config

HASH = "ab" * 32


def ratd(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    return subprocess.run(
        [sys.executable, "-m", "ratd", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_spec_tenant_table_loads() -> None:
    config = make_config(
        f"""
[auth]
mode = "api_key"
[tenants.acme]
api_key_sha256 = ["{HASH}", "{"CD" * 32}"]
mtls_subjects = ["CN=acme-batch"]
roles = ["inference"]
models = ["gpt-4o-mini", "openai:*", "local:*"]
requests_per_minute = 600
tokens_per_minute = 200000
user_requests_per_minute = 60
budget_usd_daily = 5.0
budget_usd_monthly = 100.0
[tenants.ops]
api_key_sha256 = ["{"ef" * 32}"]
roles = ["inference", "admin"]
"""
    )
    acme = config.tenants["acme"]
    assert config.auth.mode == "api_key"
    assert acme.models == ["gpt-4o-mini", "openai:*", "local:*"]
    assert acme.requests_per_minute == 600 and acme.budget_usd_monthly == 100.0
    assert config.tenants["ops"].models is None  # absent: every model
    assert config.tenants["ops"].roles == ["inference", "admin"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[auth]\nmode = "password"', "auth.mode must be one of none, api_key, mtls"),
        ('[tenants.a]\nroles = ["root"]', "tenants.a.roles: unknown role 'root'"),
        ('[tenants.a]\napi_key_sha256 = ["rat_abc"]', "must be 64 hex digits"),
        (f'[tenants.a]\napi_key_sha256 = ["{HASH}"]\n[tenants.b]\napi_key_sha256 = ["{HASH}"]',
         "also configured for a"),
        ('[tenants.a]\nmtls_subjects = ["CN=x, O=y"]\n[tenants.b]\nmtls_subjects = ["O=y,CN=x"]',
         "also names tenant a"),
        ('[tenants.a]\nbudget_usd_daily = -1.0', "must not be negative"),
        ('[tenants.a]\nrequests_per_minute = "many"', "must be an integer"),
        ('[tenants."a b"]\nroles = []', "a tenant name is"),
        ('[auth]\nmode = "mtls"', "needs server.tls_client_ca_file"),
    ],
)  # fmt: skip
def test_bad_auth_config_is_a_clear_error(body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(body)


def server_table(extra: str, address: str = "127.0.0.1:0") -> str:
    return f'[server]\naddress = "{address}"\nmetrics_address = ""\n{extra}'


def test_tls_files_are_checked(tmp_path: Path) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_text("cert")
    key.write_text("key")
    key.chmod(0o644)
    both = f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'
    with pytest.raises(ConfigError, match=r"mode 0644\); run: chmod 600"):
        make_config(server_table(both))
    key.chmod(0o600)
    assert make_config(server_table(both)).server.tls_key_file == str(key)
    with pytest.raises(ConfigError, match="go together"):
        make_config(server_table(f'tls_cert_file = "{cert}"\n'))
    with pytest.raises(ConfigError, match=re.escape("needs server.tls_cert_file")):
        make_config(server_table(f'tls_client_ca_file = "{cert}"\n'))
    with pytest.raises(ConfigError, match=re.escape("server.tls_client_ca_file: cannot read")):
        make_config(server_table(both + f'tls_client_ca_file = "{tmp_path / "nope.pem"}"\n'))


def test_key_file_readable_by_others_stops_ratd(tmp_path: Path) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_text("cert")
    key.write_text("key")
    key.chmod(0o644)
    config = tmp_path / "config.toml"
    config.write_text(server_table(f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'))
    result = ratd("--config", str(config), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "server.tls_key_file: refusing a private key" in result.stderr
    assert f"chmod 600 {key}" in result.stderr


@pytest.mark.parametrize(
    "body",
    ['socket_mode = "rw-rw----"', 'socket_mode = "1777"', 'socket_group = "no-such-group-x"'],
)
def test_bad_socket_keys(body: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("server.socket_")):
        make_config(server_table(body + "\n"))


def test_local_addresses() -> None:
    for address in ("127.0.0.1:9741", "localhost:1", "[::1]:9741", "127.1.2.3:9", "unix:/x"):
        assert is_local_address(address), address
    for address in ("0.0.0.0:9741", "[::]:9741", "10.0.0.5:9741", "ratd.example.org:9741"):
        assert not is_local_address(address), address


def test_refuses_to_start_exposed(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(server_table("", address="0.0.0.0:0"))
    for args in ((), ("--check-config",)):
        result = ratd("--config", str(config), *args, tmp_path=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "refusing to serve beyond this host" in result.stderr
        assert "without TLS" in result.stderr and "without caller authentication" in result.stderr
        assert "allow_insecure_remote" in result.stderr
    # The command line's --address counts too.
    config.write_text(server_table(""))
    result = ratd("--config", str(config), "--address", "0.0.0.0:0", tmp_path=tmp_path)
    assert result.returncode == 2 and "refusing to serve" in result.stderr


def test_metrics_outside_loopback_are_refused() -> None:
    body = '[server]\naddress = "127.0.0.1:0"\nmetrics_address = "0.0.0.0:9742"\n'
    with pytest.raises(
        ConfigError, match=re.escape("unauthenticated metrics HTTP on 0.0.0.0:9742")
    ):
        exposure(make_config(body))


async def test_allow_insecure_remote_warns(caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(server_table("allow_insecure_remote = true\n", address="0.0.0.0:0"))
    caplog.set_level(logging.WARNING)
    Daemon(config)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("INSECURE" in w and "without TLS" in w for w in warnings)


def test_keys_new_prints_a_key_once_and_its_config(tmp_path: Path) -> None:
    first = ratd("keys", "new", "acme", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    (key,) = [line for line in lines if line.startswith("rat_")]
    assert len(key) > 40
    table = "\n".join(line for line in lines if not line.startswith(("#", "rat_")))
    assert f'api_key_sha256 = ["{hashlib.sha256(key.encode()).hexdigest()}"]' in table
    # The printed lines are a config ratd accepts, and the key then names the tenant.
    config = make_config('[auth]\nmode = "api_key"\n' + table)
    auth = Authenticator.from_config(config)
    assert auth.from_metadata((("authorization", f"Bearer {key}"),)).name == "acme"
    with pytest.raises(CallerUnauthenticated):
        auth.from_metadata((("authorization", f"Bearer {key}x"),))
    second = ratd("keys", "new", "acme", tmp_path=tmp_path)
    assert key not in second.stdout
    bad = ratd("keys", "new", "a]b", tmp_path=tmp_path)
    assert bad.returncode == 2


def test_subjects_are_compared_in_one_spelling() -> None:
    assert normalize_subject("CN=acme, O=Acme Inc") == normalize_subject("o=Acme Inc,CN=acme")
    assert normalize_subject("/O=Acme Inc/CN=acme") == normalize_subject("CN=acme,O=Acme Inc")
    assert normalize_subject("spiffe://example.org/a") == "spiffe://example.org/a"


def test_allow_list_rules() -> None:
    """A provider may serve a model for a tenant when the model's name is on the list
    (whoever serves it) or the provider:model that would serve it is."""
    tenant = Tenant.build("acme", ["inference"], ["gpt-4o-mini", "openai:*", "anthropic/*"])
    assert permits(tenant, "gpt-4o-mini", "openai", "gpt-4o-mini")
    assert permits(tenant, "gpt-4o-mini", "openrouter", "openai/gpt-4o-mini")
    assert permits(tenant, "text-embedding-3-small", "openai", "text-embedding-3-small")
    assert permits(tenant, "claude-sonnet-4", "openrouter", "anthropic/claude-sonnet-4")
    assert not permits(tenant, "gpt-4o", "openrouter", "openai/gpt-4o")
    assert not permits(tenant, "GPT-4O-MINI", "openrouter", "GPT-4O-MINI")  # case counts
    assert not permits(tenant, "all-MiniLM-L6-v2", "local", "all-MiniLM-L6-v2")
    assert permits(Tenant.build("ops", ["admin"], None), "anything", "any", "thing")
    assert not permits(Tenant.build("none", ["inference"], []), "gpt-4o-mini", "openai", "x")
    error = refusal(tenant, "gpt-4o", ["openrouter:openai/gpt-4o"])
    assert "acme" in error.message and "openrouter:openai/gpt-4o" in error.message
