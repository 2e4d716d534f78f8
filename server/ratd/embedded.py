"""ratd inside another process: the real daemon (gateway, service layer, health) served
on a private unix socket, for ``ratatoskr.ServiceClient.embedded()``.

Serving the real grpc.aio server rather than calling the gateway directly keeps one
service layer: the embedded client sees the same validation, errors and streams as a
client of a ratd process."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ratd.config import Config, load_config
from ratd.notify import Notifier
from ratd.server import Daemon


def embedded_config(config: Config, socket_path: Path) -> Config:
    """``config`` with its listeners replaced: gRPC on ``socket_path`` (owner-only, in
    plaintext: nobody else can reach it), no metrics listener. Everything else (providers,
    local models, routing, cache, auth) is served as configured."""
    server = dataclasses.replace(
        config.server,
        address=f"unix:{socket_path}",
        metrics_address="",
        tls_cert_file="",
        tls_key_file="",
        tls_client_ca_file="",
        socket_mode="0600",
        socket_group="",
    )
    return dataclasses.replace(config, server=server)


class EmbeddedDaemon:
    """A ratd served in this process on a socket in a private temporary directory."""

    def __init__(self, read: Callable[[], Config]) -> None:
        # 0700, so the socket is reachable only by this user, whatever its own mode.
        self.directory = Path(tempfile.mkdtemp(prefix="ratatoskr-"))
        socket_path = self.directory / "ratd.sock"
        try:
            self.daemon = Daemon(
                embedded_config(read(), socket_path),
                reread=lambda: embedded_config(read(), socket_path),
            )
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        # The host process's systemd unit (if any) is not ratd's to notify.
        self.daemon.notifier = Notifier(env={})

    @property
    def address(self) -> str:
        return self.daemon.address

    async def start(self) -> None:
        try:
            await self.daemon.start()
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    async def stop(self) -> None:
        """Drain as ratd does on SIGTERM, then remove the socket's directory."""
        try:
            await self.daemon.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


async def start_embedded(
    config_path: str | Path | None = None,
    secrets_path: str | Path | None = None,
    *,
    default_config: bool = False,
) -> EmbeddedDaemon:
    """Load the config as ratd does (``config_path``, else the usual places
    (``~/.config/ratatoskr/config.toml``, ``/etc/ratatoskr/config.toml``), else the
    embedded default; ``default_config`` forces the embedded default)
    and serve it in this process. Raises ConfigError/SecretsError, OSError."""
    path = Path(config_path) if config_path is not None else None
    secrets = Path(secrets_path) if secrets_path is not None else None

    def read() -> Config:
        return load_config(path, secrets, use_embedded=default_config)

    embedded = EmbeddedDaemon(read)
    await embedded.start()
    return embedded
