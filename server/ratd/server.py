"""The daemon: builds the gateway from the config, serves it over gRPC with health and
reflection, and shuts down cleanly on SIGTERM/SIGINT (NOT_SERVING, stop accepting,
drain in-flight calls up to the grace period, close upstream sessions, exit 0)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from ratatoskr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    ratatoskr_pb2,
    ratatoskr_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)
from ratd import __version__, tracing
from ratd.config import Config, ConfigError
from ratd.core.access import Tenant
from ratd.core.calls import current
from ratd.core.gateway import Gateway
from ratd.jobs.anthropic_batch import AnthropicBatches
from ratd.jobs.batch import BatchRunner, LocalBatchRunner
from ratd.jobs.gemini_batch import GeminiBatches
from ratd.jobs.manager import JobManager
from ratd.jobs.openai_batch import OpenAIBatches
from ratd.jobs.store import open_store
from ratd.jobs.video import VideoRunner
from ratd.logs import setup_logging
from ratd.notify import Notifier
from ratd.openai_http.door import OpenAIDoor
from ratd.providers.base import Provider
from ratd.providers.factory import build_providers
from ratd.registry.seed import shipped_model_apis
from ratd.secrets import SecretsError
from ratd.service.admin_service import AdminService
from ratd.service.audit import AuditLog, now_iso
from ratd.service.auth import Authenticator, AuthInterceptor
from ratd.service.decoding import DecodingServer
from ratd.service.guard import CallGuard
from ratd.service.holder import GatewayHolder
from ratd.service.metrics_server import MetricsServer
from ratd.service.operations_service import SERVICE_NAME as OPERATIONS_SERVICE
from ratd.service.operations_service import OperationsService
from ratd.service.operations_service import add_to_server as add_operations
from ratd.service.ratatoskr_service import RatatoskrService
from ratd.service.usage_service import UsageService
from ratd.state import build_state
from ratd.trust import exposure, socket_mode

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    ratatoskr_pb2.DESCRIPTOR.services_by_name["Ratatoskr"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name,
    OPERATIONS_SERVICE,
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
    limit = config.server.max_message_bytes
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # Two daemons must not silently share a port.
        ("grpc.so_reuseport", 0),
    ]
    age = config.server.max_connection_age_secs
    if age > 0:  # clients reconnect (and resolve again), calls in flight get the grace
        options.append(("grpc.max_connection_age_ms", round(age * 1000)))
        grace = round(config.server.request_timeout_secs * 1000)
        options.append(("grpc.max_connection_age_grace_ms", grace))
    return options


class Daemon:
    """One ratd: ``start()`` serves, ``stop()`` drains; ``run()`` does both around signals;
    ``reload()`` swaps in a freshly read config."""

    def __init__(
        self,
        config: Config,
        *,
        ready_file: Path | None = None,
        reread: Callable[[], Config] | None = None,
        providers: Mapping[str, Provider] | None = None,
        own_process: bool = False,
    ) -> None:
        """``providers``: ones the caller built, used where they serve ``config`` as they are
        (as a reload keeps the running ones); the rest are built from ``config``."""
        for problem in exposure(config):  # ConfigError unless allow_insecure_remote
            log.warning("INSECURE (server.allow_insecure_remote = true): %s", problem)
        if config.auth.mode == "none" and config.tenants:
            log.warning('[tenants] are ignored with auth.mode = "none": every caller may do all')
        self.config = config
        self.ready_file = ready_file
        # Reads the config and secrets again for a reload (raises ConfigError/SecretsError).
        self.reread = reread
        # ratd's own process (its main), not a test or an embedding program: the heap
        # start-up built may be frozen (see start()).
        self.own_process = own_process
        self.stopping = asyncio.Event()
        self.address = ""
        # Limits, budgets and usage outlive reloads: one backend for the daemon's life.
        self.state = build_state(config)
        self.holder = GatewayHolder(
            Gateway(config, build_providers(config, providers, shipped_model_apis()), self.state)
        )
        # systemd (Type=notify): READY/RELOADING/STOPPING and watchdog pings; a no-op
        # without $NOTIFY_SOCKET.
        self.notifier = Notifier()
        server = config.server
        self.guard = CallGuard(
            self.holder,
            server.max_concurrent_requests,
            server.request_timeout_secs,
            log_requests=server.log_requests,
        )
        # [audit] path: one JSON line per call and admin action (a ConfigError if unsafe).
        self.audit = AuditLog(config.audit, config.tracing) if config.audit.path else None
        self.guard.audit = self.audit
        # Long-running jobs, kept in [jobs] dir and followed through Operations.
        video = VideoRunner(self.holder, config.jobs)
        batch = BatchRunner(
            LocalBatchRunner(self.guard, config.jobs),
            OpenAIBatches(self.holder),
            AnthropicBatches(self.holder),
            GeminiBatches(self.holder),
        )
        self.jobs = JobManager(
            config.jobs,
            open_store(config),
            {"batch": batch, "video": video},
            self._tenant_named,
        )
        self.service = RatatoskrService(self.guard, git_sha(), self.jobs, video, batch)
        self.health = health_aio.HealthServicer()
        self.metrics = MetricsServer(
            server.metrics_address, self.holder, lambda: self.service.serving
        )
        # No auth interceptor without auth: the default costs nothing per call.
        self.auth: AuthInterceptor | None = None
        if config.auth.mode != "none":
            self.auth = AuthInterceptor(
                Authenticator.from_config(config), log_requests=server.log_requests
            )
            self.auth.audit = self.audit
        # The OpenAI-compatible HTTP door ([http] address): same guard, gateway, tenants.
        self.http: OpenAIDoor | None = None
        self.http_address = ""
        if config.http.address:
            self.http = OpenAIDoor(
                config, self.guard, self.auth.authenticator if self.auth else None
            )
        self.server = grpc.aio.server(
            options=server_options(config), interceptors=[self.auth] if self.auth else None
        )
        # Undecodable requests answer INVALID_ARGUMENT (handlers wrapped as registered).
        decoding = DecodingServer(self.server)
        ratatoskr_pb2_grpc.add_RatatoskrServicer_to_server(self.service, decoding)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminService(self.guard, self.reload), decoding
        )
        usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageService(self.guard), decoding)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, decoding)
        add_operations(OperationsService(self.guard, self.jobs), decoding)
        # Through ``decoding`` as well: one method registered by name on the server costs
        # every call grpc.aio's wait over its pending requests (~25 us, docs/benchmarks.md).
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                (*SERVICE_NAMES, HEALTH_SERVICE, reflection.SERVICE_NAME)
            ),
            decoding,
        )
        self._reloading = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._reloads: set[asyncio.Task[tuple[bool, str]]] = set()

    def _tenant_named(self, name: str) -> Tenant | None:
        """The tenant a kept job belongs to, as the running config describes it (None:
        gone from the config; its job then runs as no tenant would, refused by auth)."""
        conf = self.config.tenants.get(name)
        return None if conf is None else Tenant.build(name, conf.roles, conf.models)

    @property
    def gateway(self) -> Gateway:
        return self.holder.current

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def start(self) -> None:
        """Bind, start serving and report SERVING. Raises OSError when it cannot bind."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        tracing.setup(self.config.tracing)
        port = self._listen()
        self.address = _bound_address(self.config.server.address, port)
        if self.config.server.metrics_address:
            await self.metrics.start()
        await self.gateway.start()
        await self.jobs.start()
        if self.http is not None:
            await self.http.start()
            self.http_address = self.http.bound
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
        if self.own_process:
            # What start-up built (modules, the registry, config) lives as long as the
            # process: out of the collector's sight, each collection scans only what
            # calls allocate (~1 us of CPU per call less, benchmarks/overhead.py).
            gc.freeze()
        if self.ready_file is not None:
            self.ready_file.write_text(self.address + "\n")
        self.notifier.ready(f"serving on {self.address}")
        self.notifier.start_watchdog()

    def _listen(self) -> int:
        """Bind the gRPC address: TLS when configured, a unix socket with its mode and
        group. Raises OSError when it cannot."""
        server = self.config.server
        address = server.address
        try:
            credentials = _tls_credentials(self.config)
            with _private_umask(address):
                if credentials is None:
                    port = self.server.add_insecure_port(address)
                else:
                    port = self.server.add_secure_port(address, credentials)
        except RuntimeError as err:
            raise OSError(f"cannot listen on {address}: {err}") from None
        if address.startswith("unix:"):
            _set_socket_permissions(_socket_path(address), self.config)
        return port

    async def stop(self) -> None:
        """NOT_SERVING, refuse new calls, drain in-flight ones (streams included) up to the
        grace period, close upstream sessions."""
        grace = self.config.server.shutdown_grace_secs
        log.info("shutting down: draining in-flight calls for up to %ss", grace)
        self.notifier.stopping(f"draining in-flight calls for up to {grace}s")
        self.service.serving = False
        await self.health.enter_graceful_shutdown()
        if self.http is not None:  # both doors drain at once, within the one grace period
            await asyncio.gather(self.server.stop(grace), self.http.stop())
        else:
            await self.server.stop(grace)
        for task in list(self._retiring):
            await task
        await self.jobs.stop()
        await self.gateway.close()
        await self.state.close()
        await self.metrics.stop()
        await self.notifier.stop_watchdog()
        await asyncio.to_thread(tracing.shutdown)  # flushing may block: not on the loop
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)
        log.info("ratd stopped")

    async def reload(self, trigger: str = "rpc") -> tuple[bool, str]:
        """Read config and secrets again, validate them, and swap in a new gateway. Calls
        in flight finish on the old one; an invalid config leaves everything as it was.
        The audit log records it (``trigger``: "rpc", or "SIGHUP")."""
        changed: list[str] = []
        reloaded, message = await self._reload(changed)
        info = current()
        if info is not None and info.method == "ReloadConfig" and info.action is not None:
            info.action["changed"] = changed  # the RPC's own audit record says what changed
        elif self.audit is not None:
            self.audit.record(
                {
                    "time": now_iso(),
                    "event": "admin",
                    "rpc": "",
                    "status": "OK" if reloaded else "FAILED_PRECONDITION",
                    "args": {"trigger": trigger, "changed": changed, "message": message},
                }
            )
        return reloaded, message

    async def _reload(self, changed: list[str]) -> tuple[bool, str]:
        if self.reread is None:
            return False, "this ratd was not started from a config it can read again"
        async with self._reloading:
            self.notifier.reloading()
            try:
                config = self.reread()
            except (ConfigError, SecretsError) as err:
                log.error("reload rejected, keeping the running config: %s", err)
                self.notifier.ready("reload rejected; serving the previous config")
                return False, f"reload rejected: {err}"
            kept = _restart_only_changes(self.config, config)
            if kept:
                log.warning(
                    "reload: %s change only with a restart; keeping the old", ", ".join(kept)
                )
                bound = self.config.server
                config = dataclasses.replace(
                    config,
                    server=dataclasses.replace(
                        config.server, **{key: getattr(bound, key) for key in _RESTART_ONLY}
                    ),
                    tracing=self.config.tracing,
                    auth=self.config.auth,
                    http=self.config.http,
                    state=self.config.state,
                )
            running = self.holder.current
            gateway: Gateway | None = None
            try:
                gateway = Gateway(
                    config,
                    build_providers(config, running.providers, shipped_model_apis()),
                    self.state,
                )
                await gateway.start()
                await self._reconfigure_audit(config)
            except Exception as err:  # the old gateway keeps serving whatever went wrong
                log.exception(
                    "reload failed while starting the new providers or opening the audit log"
                )
                if gateway is not None:  # what it built, not what it took over
                    await gateway.close(keep=running.providers.values())
                self.notifier.ready("reload failed; serving the previous config")
                return False, f"reload failed: {err}"
            old = self.holder.swap(gateway)
            changed.extend(_changed_sections(self.config, config))
            self.config = config
            server = config.server
            self.guard.configure(
                server.max_concurrent_requests,
                server.request_timeout_secs,
                log_requests=server.log_requests,
            )
            setup_logging(server.log_level, server.log_format)
            if self.auth is not None:  # new tenants, rotated keys: from the next call on
                self.auth.authenticator = Authenticator.from_config(config)
                self.auth.log_requests = server.log_requests
                if self.http is not None:
                    self.http.authenticator = self.auth.authenticator
            task = asyncio.get_running_loop().create_task(
                self.holder.retire(
                    old, config.server.shutdown_grace_secs, keep=gateway.providers.values()
                )
            )
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            log.info(
                "config reloaded from %s (providers: %s)",
                config.source,
                ", ".join(sorted(gateway.providers)) or "none",
            )
            self.notifier.ready(f"serving on {self.address}")
            return True, f"reloaded {config.source}"

    async def run(self) -> int:
        # Handlers first: start() announces readiness (ready file, READY=1), and a SIGTERM
        # sent the moment it does must drain and stop cleanly, not kill the process with
        # the default action.
        self._install_signals()
        try:
            await self.start()
        except OSError as err:
            log.error("%s", err)
            return 1
        await self.stopping.wait()
        await self.stop()
        return 0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_audit)

    def _reopen_audit(self) -> None:
        """SIGUSR1 (and SIGHUP): open the audit file again, after a log rotation."""
        if self.audit is not None:
            self.audit.reopen()

    async def _reconfigure_audit(self, config: Config) -> None:
        """A reload's [audit]: the same file goes on; another path or mode replaces the
        writer (ConfigError if unusable: the reload fails before anything is swapped)."""
        if config.audit == self.config.audit:
            return
        old = self.audit
        audit = config.audit
        self.audit = AuditLog(audit, self.config.tracing) if audit.path else None  # may raise
        self.guard.audit = self.audit
        if self.auth is not None:
            self.auth.audit = self.audit
        if old is not None:
            await asyncio.to_thread(old.close)

    def _reload_on_signal(self) -> None:
        """SIGHUP: reopen the audit log at once (a rotation's signal), then reload, once
        serving (a reload while start-up runs would race it)."""
        self._reopen_audit()
        if not self.service.serving:
            log.warning("SIGHUP before ratd serves (or while it stops): not reloading")
            return
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        self._reloads.add(task)  # a reference, so that the task is not collected mid-run
        task.add_done_callback(self._reloads.discard)


# [server] keys bound to the listening sockets: a reload keeps the running values.
_RESTART_ONLY = (
    "address",
    "metrics_address",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "socket_mode",
    "socket_group",
    "allow_insecure_remote",
    "max_connection_age_secs",
)


def _restart_only_changes(old: Config, new: Config) -> list[str]:
    """Keys a reload cannot change (listening sockets and their security, the auth mode,
    the tracing exporter)."""
    changed = []
    for key in _RESTART_ONLY:
        if getattr(old.server, key) != getattr(new.server, key):
            changed.append(f"server.{key}")
    if old.auth != new.auth:
        changed.append("auth.mode")
    if old.tracing != new.tracing:
        changed.append("[tracing]")
    if old.state != new.state:
        changed.append("[state]")
    if old.http != new.http:
        changed.append("http.address")
    return changed


def _changed_sections(old: Config, new: Config) -> list[str]:
    """The config tables a reload changed, by name only (never a value: secrets)."""
    changed = [
        f.name
        for f in dataclasses.fields(Config)
        if f.name not in ("keys", "source") and getattr(old, f.name) != getattr(new, f.name)
    ]
    old_keys = {name: key.reveal() for name, key in old.keys.items()}
    if old_keys != {name: key.reveal() for name, key in new.keys.items()}:
        changed.append("secrets")
    return changed


def _read(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()


def _tls_credentials(config: Config) -> grpc.ServerCredentials | None:
    """TLS (and with a client CA, mutual TLS) from [server] tls_*; None: plaintext."""
    server = config.server
    if not server.tls_cert_file:
        return None
    try:
        pair = (_read(server.tls_key_file), _read(server.tls_cert_file))
        client_ca = _read(server.tls_client_ca_file) if server.tls_client_ca_file else None
    except OSError as err:
        raise OSError(f"cannot read the TLS files: {err.filename}: {err.strerror}") from None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _socket_path(address: str) -> Path:
    path = address.removeprefix("unix:")
    return Path(path[2:] if path.startswith("//") else path)


@contextmanager
def _private_umask(address: str) -> Iterator[None]:
    """A unix socket is created owner-only, then opened up to socket_mode: nobody else
    can connect in between."""
    if not address.startswith("unix:"):
        yield
        return
    previous = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(previous)


def _set_socket_permissions(path: Path, config: Config) -> None:
    group = config.server.socket_group
    try:
        if group:
            shutil.chown(path, group=int(group) if group.isdigit() else group)
        path.chmod(socket_mode(config))
    except (OSError, LookupError) as err:
        raise OSError(f"cannot set the permissions of the socket {path}: {err}") from None


def _bound_address(address: str, port: int) -> str:
    if address.startswith("unix:"):
        return address
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"
