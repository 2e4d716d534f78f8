"""Configuration and secrets: strict TOML, clear errors, safe keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ratd.config import ConfigError, load_config, parse_config
from ratd.secrets import Secret, SecretsError, load_secrets, redact

REPO = Path(__file__).resolve().parents[1]


def test_defaults_and_explicit_providers() -> None:
    config = parse_config(
        """
        [server]
        address = "127.0.0.1:7000"
        request_timeout_secs = 5
        [providers.openai]
        [providers.vllm]
        kind = "openai"
        base_url = "http://10.0.0.7:8000/v1/"
        api_key_env = "VLLM_KEY"
        """,
        "test.toml",
        env={"OPENAI_API_KEY": "sk-openai-123456", "VLLM_KEY": "vllm-secret-1"},
    )
    assert config.server.address == "127.0.0.1:7000"
    assert config.server.request_timeout_secs == 5.0
    assert config.server.max_concurrent_requests == 256
    assert config.providers["openai"].base_url == "https://api.openai.com/v1"
    assert config.providers["vllm"].kind == "openai"
    assert config.providers["vllm"].base_url == "http://10.0.0.7:8000/v1"
    assert config.api_key("openai").reveal() == "sk-openai-123456"  # type: ignore[union-attr]
    assert config.api_key("vllm").reveal() == "vllm-secret-1"  # type: ignore[union-attr]
    assert config.local is None


def test_no_provider_tables_enables_providers_from_the_environment() -> None:
    config = parse_config("", "x.toml", env={"OPENROUTER_API_KEY": "sk-or-123456"})
    assert set(config.providers) == {"openrouter", "ollama"}
    assert config.local is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nadress = 'x'", "unknown key server.adress"),
        (
            "[server]\nmax_concurrent_requests = 'many'",
            "server.max_concurrent_requests must be an integer, got 'many'",
        ),
        (
            "[server]\nmax_concurrent_requests = true",
            "server.max_concurrent_requests must be an integer",
        ),
        ("[server]\nrequest_timeout_secs = 'soon'", "server.request_timeout_secs must be a number"),
        (
            "[server]\nlog_level = 'loud'",
            "server.log_level must be one of debug, info, warning, error",
        ),
        ("[providers.openai]\nbase_ur = 'x'", "unknown key providers.openai.base_ur"),
        ("[providers.mystery]\n", "unknown provider kind 'mystery'"),
        ("[providers.openai]\nheaders = 3", "providers.openai.headers must be a table"),
        (
            "[providers.openai]\n[routing]\nchat = ['anthropic']",
            "routing.chat names provider 'anthropic'",
        ),
        ("[routing]\nchat = 'openai'", "routing.chat must be a list of strings"),
        (
            "[validation]\nparameter_policy = 'strict'",
            "validation.parameter_policy must be one of warn, error, ignore",
        ),
        ("[[routing.rules]]\nmatch = 'x*'", "routing.rules[0] is missing required key 'provider'"),
        ("local = 3", "unknown key local"),
        (
            "[providers.openai]\napis = { 'gpt-5*' = 'responsez' }",
            "providers.openai.apis.'gpt-5*': unknown API 'responsez' (expected one of: "
            "chat_completions, responses)",
        ),
        ("[providers.anthropic]\napis = { '*' = 'x' }", "speaks one API only"),
        ("[providers.openai]\napis = { '' = 'responses' }", "a pattern may not be empty"),
        ("[providers.openai]\napis = { 'o3' = 1 }", "providers.openai.apis"),
        ("[server\n", "not valid TOML"),
        ("[jobs]\nstore = 'etcd'", 'jobs.store must be "auto", "local" or "redis"'),
        ("[jobs]\nlease_secs = 0.1", "jobs.lease_secs must be at least 0.3"),
    ],
)
def test_errors_name_the_file_the_key_and_the_expectation(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "/etc/ratatoskr/config.toml", env={})
    assert str(caught.value).startswith("/etc/ratatoskr/config.toml: ")
    assert expected in str(caught.value)


def _secrets(
    tmp_path: Path, mode: int, body: str = '[openai]\napi_key = "sk-file-123456"\n'
) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text(body)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o610, 0o601, 0o644])
def test_secrets_file_refused_when_group_or_others_have_any_bit(tmp_path: Path, mode: int) -> None:
    with pytest.raises(SecretsError, match="chmod 600"):
        load_secrets(_secrets(tmp_path, mode), env={})


def test_secrets_file_first_then_environment(tmp_path: Path) -> None:
    keys = load_secrets(
        _secrets(tmp_path, 0o600),
        env={"OPENAI_API_KEY": "sk-env-654321", "ANTHROPIC_API_KEY": "sk-ant-654321"},
    )
    assert keys["openai"].reveal() == "sk-file-123456"
    assert keys["anthropic"].reveal() == "sk-ant-654321"


def test_secrets_file_layout_is_checked(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match=r"\[openai\] unknown key 'key'"):
        load_secrets(_secrets(tmp_path, 0o600, '[openai]\nkey = "x"\n'), env={})


def test_keys_never_print_and_are_redacted_everywhere() -> None:
    secret = Secret("sk-very-secret-value")
    assert "sk-very" not in repr(secret) and "sk-very" not in str(secret)
    assert redact("upstream said: bad key sk-very-secret-value!") == "upstream said: bad key ***!"


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\naddress = 'unix:/tmp/ratd.sock'\n[providers.openrouter]\n")
    config = load_config(path, _secrets(tmp_path, 0o600))
    assert config.server.address == "unix:/tmp/ratd.sock"
    assert config.source == str(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")


def _ratd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ratd", *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", **(env or {})},
        check=False,
    )


def test_check_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[providers.openai]\n")
    result = _ratd(
        "--check-config", "--config", str(good), env={"OPENAI_API_KEY": "sk-abcdef123456"}
    )
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout and "openai" in result.stdout and "key set" in result.stdout
    assert "sk-abcdef123456" not in result.stdout + result.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nmax_concurrent_requests = -x\n")
    result = _ratd("--check-config", "--config", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "not valid TOML" in result.stderr

    result = _ratd(
        "--check-config", "--config", str(good), "--secrets", str(_secrets(tmp_path, 0o644))
    )
    assert result.returncode == 2
    assert "refusing to read a secrets file" in result.stderr


def test_embedded_default_config_is_valid() -> None:
    result = _ratd("--check-config", "--default-config")
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1:9741" in result.stdout


def test_a_kinds_key_goes_only_to_that_kinds_own_api() -> None:
    """OPENAI_API_KEY serves [providers.openai], never a self-hosted server that speaks
    the same API under another name and address."""
    config = parse_config(
        """
[providers.openai]
[providers.vllm]
kind = "openai"
base_url = "http://10.0.0.7:8000/v1"
""",
        "<test>",
        env={"OPENAI_API_KEY": "sk-test-only-for-openai"},
    )
    assert config.api_key("openai") is not None
    assert config.api_key("vllm") is None


@pytest.mark.parametrize(
    "url",
    ["https://user:sk-secret-in-url@api.example.com/v1", "ftp://api.example.com", "http://"],
)
def test_base_url_with_credentials_or_without_host_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[providers.openai]\nbase_url = "{url}"\n', "<test>", env={})
    assert "providers.openai.base_url" in str(caught.value)
    assert "sk-secret-in-url" not in str(caught.value)


def test_credential_headers_are_redacted() -> None:
    parse_config(
        '[providers.openai]\nheaders = { "X-Api-Key" = "hdr-secret-4242", "X-Title" = "Ratatoskr" }\n',
        "<test>",
        env={},
    )
    assert redact("sent hdr-secret-4242 as Ratatoskr") == "sent *** as Ratatoskr"
