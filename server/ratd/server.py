"""The daemon: builds the gateway from the config, serves it over gRPC with health and
reflection, and shuts down cleanly on SIGTERM/SIGINT (NOT_SERVING, stop accepting,
drain in-flight calls up to the grace period, close upstream sessions, exit 0)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from ratatoskr.v1 import admin_pb2, admin_pb2_grpc, ratatoskr_pb2, ratatoskr_pb2_grpc
from ratd import __version__
from ratd.config import Config
from ratd.core.gateway import Gateway
from ratd.providers import build_providers
from ratd.service.admin_service import AdminService
from ratd.service.guard import CallGuard
from ratd.service.ratatoskr_service import RatatoskrService

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    ratatoskr_pb2.DESCRIPTOR.services_by_name["Ratatoskr"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def git_sha() -> str | None:
    """The commit this ratd runs from: $RATD_GIT_SHA, else the source checkout's HEAD."""
    if sha := os.environ.get("RATD_GIT_SHA"):
        return sha
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def server_options(config: Config) -> list[tuple[str, int]]:
    # Messages may be larger than the text limit (protobuf overhead, images); the
    # validator gives the clear error for text over server.max_request_bytes.
    limit = max(4 * config.server.max_request_bytes, 16 * 1024 * 1024)
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # Two daemons must not silently share a port.
        ("grpc.so_reuseport", 0),
    ]


class Daemon:
    """One ratd: ``start()`` serves, ``stop()`` drains; ``run()`` does both around signals."""

    def __init__(self, config: Config, *, ready_file: Path | None = None) -> None:
        self.config = config
        self.ready_file = ready_file
        self.stopping = asyncio.Event()
        self.address = ""
        self.gateway = Gateway(config, build_providers(config))
        self.guard = CallGuard(
            config.server.max_concurrent_requests, config.server.request_timeout_secs
        )
        self.service = RatatoskrService(self.gateway, self.guard, git_sha())
        self.health = health_aio.HealthServicer()
        self.server = grpc.aio.server(options=server_options(config))
        ratatoskr_pb2_grpc.add_RatatoskrServicer_to_server(self.service, self.server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminService(self.gateway, self.guard), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, HEALTH_SERVICE, reflection.SERVICE_NAME), self.server
        )

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def start(self) -> None:
        """Bind, start serving and report SERVING. Raises OSError when it cannot bind."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            port = self.server.add_insecure_port(self.config.server.address)
        except RuntimeError as err:
            raise OSError(f"cannot listen on {self.config.server.address}: {err}") from None
        self.address = _bound_address(self.config.server.address, port)
        await self.gateway.start()
        await self.server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.service.serving = True
        log.info(
            "ratd %s listening on %s (providers: %s; config: %s)",
            __version__,
            self.address,
            ", ".join(sorted(self.gateway.providers)) or "none",
            self.config.source,
        )
        if self.ready_file is not None:
            self.ready_file.write_text(self.address + "\n")

    async def stop(self) -> None:
        """NOT_SERVING, refuse new calls, drain in-flight ones up to the grace period."""
        grace = self.config.server.shutdown_grace_secs
        log.info("shutting down: draining in-flight calls for up to %ss", grace)
        self.service.serving = False
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.gateway.close()
        log.info("ratd stopped")

    async def run(self) -> int:
        try:
            await self.start()
        except OSError as err:
            log.error("%s", err)
            return 1
        self._install_signals()
        await self.stopping.wait()
        await self.stop()
        return 0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: log.warning("SIGHUP: config reload is not available yet")
        )


def _bound_address(address: str, port: int) -> str:
    if address.startswith("unix:"):
        return address
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"
