"""The metrics endpoint: Prometheus text on /metrics and a liveness answer on /healthz,
served by aiohttp in ratd's own event loop on ``server.metrics_address``."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ratd.metrics import LOADED_MODELS, MODEL_BYTES, REGISTRY_MODELS
from ratd.service.holder import GatewayHolder

log = logging.getLogger(__name__)


class MetricsServer:
    def __init__(self, address: str, holder: GatewayHolder, serving: Callable[[], bool]) -> None:
        self.address = address
        self.holder = holder
        self.serving = serving
        self.bound = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on ``address`` (host:port or unix:/path); OSError when it cannot."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site: web.BaseSite
        if self.address.startswith("unix:"):
            site = web.UnixSite(self._runner, self.address.removeprefix("unix:"))
        else:
            host, _, port = self.address.rpartition(":")
            site = web.TCPSite(self._runner, host.strip("[]"), int(port))
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            raise OSError(f"cannot serve metrics on {self.address}: {err.strerror}") from None
        sockets = getattr(site._server, "sockets", None) or ()
        if self.address.startswith("unix:") or not sockets:
            self.bound = self.address
        else:
            host, port = sockets[0].getsockname()[:2]
            self.bound = f"{host}:{port}"
        log.info("metrics on http://%s/metrics", self.bound)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        """Gauges that describe state are set from the current gateway at each scrape, so
        that a reload (new providers, new registry) never leaves stale series behind."""
        gateway = self.holder.current
        loaded = await gateway.list_loaded()
        LOADED_MODELS.set(len(loaded))
        MODEL_BYTES.clear()
        for model in loaded:
            MODEL_BYTES.labels(model.name).set(model.bytes)
        REGISTRY_MODELS.clear()
        counts = Counter(md.info.provider for md in gateway.registry.models())
        for provider, count in counts.items():
            REGISTRY_MODELS.labels(provider).set(count)
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.serving():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not serving\n")
