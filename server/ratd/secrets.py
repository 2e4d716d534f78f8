"""Provider API keys: loading them safely and keeping them out of every output.

Keys live in a separate TOML file that ratd refuses to read when group or others have
any permission bit, with environment variables as the fallback. Every key loaded is
registered with ``redact`` so that no log line or error message can carry it.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path

from ratd.providers.specs import SPECS

# Environment variables that may hold each provider kind's key, first found wins.
ENV_KEYS: Mapping[str, tuple[str, ...]] = {spec.kind: spec.env_keys for spec in SPECS}

_KNOWN: set[str] = set()


class SecretsError(Exception):
    """The secrets file is unsafe or malformed."""


class Secret:
    """An API key that prints as ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 6:
            _KNOWN.add(value)

    def reveal(self) -> str:
        """The key itself, for the one place that needs it: the upstream request header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def redact(text: str) -> str:
    """``text`` with every known key replaced by ``***``."""
    for value in _KNOWN:
        if value in text:
            text = text.replace(value, "***")
    return text


def default_secrets_path() -> Path | None:
    """``$XDG_CONFIG_HOME/ratatoskr/secrets.toml``, else ``/etc/ratatoskr/secrets.toml``."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (
        Path(xdg) / "ratatoskr" / "secrets.toml",
        Path("/etc/ratatoskr/secrets.toml"),
    ):
        if candidate.exists():
            return candidate
    return None


# The secrets file's table for the Redis password of [state] backend = "redis".
REDIS = "redis"


def load_secrets(path: Path | None, env: Mapping[str, str] | None = None) -> dict[str, Secret]:
    """Keys by provider name: the secrets file first, then the environment."""
    env = os.environ if env is None else env
    keys: dict[str, Secret] = {}
    if path is not None:
        keys.update(_read_file(path))
    for provider, names in ENV_KEYS.items():
        value = next((env[name] for name in names if env.get(name)), None)
        if provider not in keys and value:
            keys[provider] = Secret(value)
    return keys


def _read_file(path: Path) -> dict[str, Secret]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretsError(f"{path}: secrets file not found") from None
    except OSError as err:
        raise SecretsError(f"{path}: cannot read the secrets file: {err.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsError(
            f"{path}: refusing to read a secrets file that group or others may access "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise SecretsError(f"{path}: cannot read the secrets file: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise SecretsError(f"{path}: not valid TOML: {err}") from None
    keys: dict[str, Secret] = {}
    for provider, table in data.items():
        if not isinstance(table, dict):
            raise SecretsError(f'{path}: [{provider}] must be a table with api_key = "..."')
        # [redis] holds the password of the [state] backend, not a provider's key.
        field = "password" if provider == REDIS else "api_key"
        unknown = set(table) - {field}
        if unknown:
            raise SecretsError(
                f"{path}: [{provider}] unknown key {sorted(unknown)[0]!r}; expected {field}"
            )
        value = table.get(field)
        if not isinstance(value, str):
            raise SecretsError(f"{path}: [{provider}] {field} must be a string")
        keys[provider] = Secret(value)
    return keys
