"""The model manager: which local models are in memory, and the memory they take.

Lifecycle of a model: available -> loading -> ready -> unloading -> available.

- Load on first use, one load in flight per model: concurrent callers wait for the same
  load (and get its error if it fails). Pinned models load at start and stay.
- Loads run one at a time, so that the process RSS measured before and after a load and
  its warm-up at the largest batch shape is that model's cost alone. That measurement,
  not the file size, is what counts against ``ram_budget_mb``.
- Before a load that would exceed the budget, least-recently-used idle models are
  evicted. A model serving a request (``in_use`` > 0) or pinned is never evicted. If the
  load still cannot fit, it fails with UNAVAILABLE so that the fallback chain moves on.
- A model unused for ``idle_timeout_secs`` is unloaded (0 turns idle unloading off): each
  ready model has a timer, armed when its last use ends (or its load completes) and
  disarmed while it serves, is pinned or is unloaded; no polling.
- After an unload the heap is trimmed (``malloc_trim``) and the RSS drop is measured and
  logged, so that "unloaded" means the memory went back to the OS.

Finding the files, building the session and measuring memory are ``Loaders`` given to the
manager (the real ones by default), so that tests can give a meter with known costs and
assert exactly which model the budget evicts, on any machine.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ratd import errors
from ratd.config import LocalConfig
from ratd.local import memory, sources
from ratd.local.batcher import Batcher, BatchLimits
from ratd.local.catalog import EMBEDDING, SPEECH_TO_TEXT, Catalog, ModelSpec
from ratd.local.embeddings import EmbeddingModel
from ratd.local.nli import NliModel
from ratd.local.onnx_model import LocalModel
from ratd.local.sessions import SessionSettings
from ratd.local.speech import SpeechModel

log = logging.getLogger(__name__)

MB = 1024 * 1024


class State(enum.Enum):
    AVAILABLE = "available"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"


@dataclass(eq=False)
class Entry:
    """What the manager knows of one model."""

    spec: ModelSpec
    state: State = State.AVAILABLE
    model: LocalModel | None = None
    batcher: Batcher | None = None
    bytes: int = 0
    device: str = ""
    source: str = ""
    last_used: float = 0.0  # wall clock, for display
    last_used_mono: float = 0.0  # monotonic, for the LRU order
    # Unloads the model once idle for idle_timeout_secs; None while in use or pinned.
    idle_timer: asyncio.TimerHandle | None = None
    in_use: int = 0
    pinned: bool = False
    loads: int = 0
    last_error: str = ""
    # Resolves when the current load or unload ends (with the load's error, if any).
    transition: asyncio.Future[None] | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.spec.name


def weights_size(files: sources.ModelFiles) -> int:
    """Bytes of the graph (and a speech model's decoder) and external weights on disk."""
    size = 0
    graphs = (
        files.onnx_file,
        sources.decoder_file(files.onnx_file),
        sources.decoder_with_past_file(files.onnx_file),
    )
    for graph in dict.fromkeys(graphs):
        for name in (graph, f"{graph}_data", f"{graph}.data"):
            found = files.find(name)
            size += found.stat().st_size if found is not None else 0
    return size


def build_model(
    spec: ModelSpec, files: sources.ModelFiles, settings: SessionSettings
) -> LocalModel:
    if spec.kind == EMBEDDING:
        return EmbeddingModel(spec, files, settings)
    if spec.kind == SPEECH_TO_TEXT:
        return SpeechModel(spec, files, settings)
    return NliModel(spec, files, settings)


def resolve_verified(
    spec: ModelSpec, models_dir: Path, hub: sources.HubSettings
) -> sources.ModelFiles:
    """The model's files (perhaps downloaded), checked against their configured sha256."""
    files = sources.resolve(spec, models_dir, hub)
    files.verify()
    return files


# -- what the manager is given to load and measure models (injectable, like the loaders
# of Ollama's scheduler: tests give a known memory cost while everything else stays real)


class MemoryMeter(Protocol):
    """How the manager learns what a model costs in memory. Called in worker threads."""

    def reading(self) -> int:
        """This process's memory now, settled: the figure compared across a load/unload."""
        ...

    def estimate(self, spec: ModelSpec, files: sources.ModelFiles) -> int:
        """The cost expected of a model's first load (later loads reuse the measurement)."""
        ...

    def cost(self, spec: ModelSpec, files: sources.ModelFiles, before: int, after: int) -> int:
        """What a load cost, from the readings taken before and after it (and warm-up)."""
        ...


class RssMeter:
    """The real meter: resident set size after a garbage collection and ``malloc_trim``."""

    def reading(self) -> int:
        return memory.settled_rss()

    def estimate(self, spec: ModelSpec, files: sources.ModelFiles) -> int:
        # The weights plus a margin for activations, corrected by the measurement.
        return int(weights_size(files) * 1.5)

    def cost(self, spec: ModelSpec, files: sources.ModelFiles, before: int, after: int) -> int:
        # The weights are in memory whatever RSS says: a heap that reuses memory freed by an
        # earlier unload can make the difference small, or nothing.
        return max(after - before, weights_size(files))


ModelBuilder = Callable[[ModelSpec, sources.ModelFiles, SessionSettings], LocalModel]
SourceResolver = Callable[[ModelSpec, Path, sources.HubSettings], sources.ModelFiles]


@dataclass(frozen=True)
class Loaders:
    """Finding, building and measuring a model: the real ones unless a caller says."""

    meter: MemoryMeter = field(default_factory=RssMeter)
    build: ModelBuilder = build_model
    resolve: SourceResolver = resolve_verified


class ModelManager:
    def __init__(
        self,
        config: LocalConfig,
        catalog: Catalog,
        executor: Executor,
        *,
        models_dir: Path,
        hub: sources.HubSettings,
        loaders: Loaders | None = None,
    ) -> None:
        self.config = config
        self.loaders = loaders or Loaders()
        self.catalog = catalog
        self.executor = executor
        self.models_dir = models_dir
        self.hub = hub
        self.budget = config.ram_budget_mb * MB
        self.settings = SessionSettings(device=config.device, threads=config.intra_op_threads)
        self.limits = BatchLimits(
            max_batch_tokens=config.max_batch_tokens,
            max_batch_size=config.max_batch_size,
            max_wait=config.max_wait_ms / 1000,
            max_queue=config.max_queue,
        )
        self.entries: dict[str, Entry] = {}
        self._load_lock = asyncio.Lock()
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()  # loads
        self._expiring: set[asyncio.Task[None]] = set()  # idle unloads

    # -- names ---------------------------------------------------------------------------------

    def spec(self, model: str) -> ModelSpec:
        spec = self.catalog.get(model)
        if spec is None:
            raise errors.ModelNotFound(
                f"no local model named {model!r} (local models: "
                f"{', '.join(sorted(s.name for s in self.catalog))}; "
                "add one under [providers.local.models])",
                provider="local",
                model=model,
                fallback=True,
            )
        return spec

    def entry(self, model: str) -> Entry:
        spec = self.spec(model)
        found = self.entries.get(spec.name)
        if found is None:
            found = self.entries[spec.name] = Entry(spec)
            found.idle.set()
        return found

    # -- start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the pinned models (once: a gateway built by a reload starts the manager it
        kept from the previous one again)."""
        if self._started:
            return
        self._started = True
        for name in self.config.pinned:
            try:
                await self.load(name, pin=True)
            except errors.GatewayError as err:
                log.error("pinned model %s could not be loaded at start: %s", name, err.message)

    async def close(self) -> None:
        for entry in self.entries.values():
            self._disarm(entry)
        if self._expiring:
            await asyncio.gather(*self._expiring, return_exceptions=True)
        for entry in list(self.entries.values()):
            if entry.state is State.LOADING and entry.transition is not None:
                await asyncio.gather(asyncio.shield(entry.transition), return_exceptions=True)
            if entry.state is State.READY:
                await self._unload(entry, reason="shutdown")

    # -- memory --------------------------------------------------------------------------------

    def used_bytes(self, exclude: Entry | None = None) -> int:
        return sum(
            e.bytes
            for e in self.entries.values()
            if e is not exclude and e.state in (State.READY, State.LOADING)
        )

    def _estimate(self, entry: Entry, files: sources.ModelFiles) -> int:
        """Expected cost of a load: the last measurement, else the meter's estimate."""
        if entry.bytes:
            return entry.bytes
        return self.loaders.meter.estimate(entry.spec, files)

    async def _make_room(self, entry: Entry, needed: int) -> None:
        """Evict least-recently-used idle models until ``needed`` more bytes fit."""
        if needed > self.budget:
            raise errors.ModelNotAvailable(
                f"{entry.name} needs about {needed / MB:.0f} MB, "
                "more than the whole local RAM budget "
                f"of {self.budget / MB:.0f} MB (providers.local.ram_budget_mb)",
                provider="local",
                model=entry.name,
            )
        while self.used_bytes(exclude=entry) + needed > self.budget:
            idle = [
                e
                for e in self.entries.values()
                if e is not entry and e.state is State.READY and e.in_use == 0 and not e.pinned
            ]
            if not idle:
                busy = ", ".join(
                    f"{e.name} ({e.bytes / MB:.0f} MB"
                    f"{', pinned' if e.pinned else ''}{', in use' if e.in_use else ''})"
                    for e in self.entries.values()
                    if e is not entry and e.state in (State.READY, State.LOADING)
                )
                raise errors.ModelNotAvailable(
                    f"{entry.name} needs about {needed / MB:.0f} MB but the local RAM budget of "
                    f"{self.budget / MB:.0f} MB is held by models that are pinned or "
                    f"serving requests: {busy}",
                    provider="local",
                    model=entry.name,
                )
            victim = min(idle, key=lambda e: e.last_used_mono)
            log.info(
                "evicting %s (%.0f MB, least recently used) to make room for %s",
                victim.name,
                victim.bytes / MB,
                entry.name,
            )
            await self._unload(victim, reason="evicted")

    # -- using a model -------------------------------------------------------------------------

    @asynccontextmanager
    async def use(self, model: str) -> AsyncIterator[Entry]:
        """The model, loaded, and counted in use (so never evicted) until the block ends."""
        entry = self.entry(model)
        await self._ready(entry)
        entry.in_use += 1
        entry.idle.clear()
        self._disarm(entry)
        try:
            yield entry
        finally:
            entry.in_use -= 1
            entry.last_used = time.time()
            entry.last_used_mono = time.monotonic()
            if entry.in_use == 0:
                entry.idle.set()
                self._arm(entry)

    async def _ready(self, entry: Entry) -> None:
        while entry.state is not State.READY:
            if entry.state is State.AVAILABLE:
                self._begin_load(entry)
            assert entry.transition is not None
            await asyncio.shield(entry.transition)

    def _begin_load(self, entry: Entry) -> None:
        loop = asyncio.get_running_loop()
        entry.state = State.LOADING
        entry.transition = loop.create_future()
        entry.transition.add_done_callback(lambda f: f.cancelled() or f.exception())
        task = loop.create_task(self._load(entry), name=f"load:{entry.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, entry: Entry) -> None:
        transition = entry.transition
        assert transition is not None
        try:
            await self._load_now(entry)
        except BaseException as err:
            entry.state = State.AVAILABLE
            entry.model = None
            message = (
                err.message
                if isinstance(err, errors.GatewayError)
                else f"{type(err).__name__}: {err}"
            )
            entry.last_error = message
            if not isinstance(err, errors.GatewayError):
                log.exception("loading %s failed", entry.name)
                err = errors.ModelNotAvailable(
                    f"loading {entry.name} failed: {message}", provider="local", model=entry.name
                )
            else:
                log.error("loading %s failed: %s", entry.name, message)
                err.provider = err.provider or "local"
                err.model = err.model or entry.name
            if not transition.done():
                transition.set_exception(err)
            return
        entry.state = State.READY
        entry.last_error = ""
        self._arm(entry)  # in case nobody waits for the load any more (callers cancelled)
        if not transition.done():
            transition.set_result(None)

    async def _load_now(self, entry: Entry) -> None:
        spec = entry.spec
        meter = self.loaders.meter
        # Finding (perhaps downloading) and checking files needs no memory lock.
        files = await asyncio.to_thread(self.loaders.resolve, spec, self.models_dir, self.hub)
        async with self._load_lock:
            await self._make_room(entry, self._estimate(entry, files))
            before = await asyncio.to_thread(meter.reading)
            started = time.monotonic()
            model = await asyncio.to_thread(self.loaders.build, spec, files, self.settings)
            await asyncio.to_thread(
                model.warm_up, self.limits.max_batch_tokens, self.limits.max_batch_size
            )
            after = await asyncio.to_thread(meter.reading)
            measured = meter.cost(spec, files, before, after)
            entry.loads += 1
            entry.model, entry.bytes, entry.device, entry.source = (
                model,
                measured,
                model.device,
                files.source,
            )
            entry.last_used, entry.last_used_mono = time.time(), time.monotonic()
            log.info(
                "loaded %s (%s) from %s on %s in %.2fs: %.1f MB measured (RSS %.0f -> %.0f MB)",
                spec.name,
                spec.kind,
                files.source,
                model.device,
                time.monotonic() - started,
                measured / MB,
                before / MB,
                after / MB,
            )
            if self.used_bytes(exclude=entry) + measured > self.budget:
                try:
                    await self._make_room(entry, measured)
                except errors.GatewayError:
                    entry.state = State.UNLOADING
                    await self._release(entry)
                    raise
            entry.batcher = Batcher(spec.name, model.run, self.executor, self.limits)
            entry.batcher.start()

    # -- unloading -----------------------------------------------------------------------------

    async def _release(self, entry: Entry) -> int:
        """Drop the model's session and batcher and trim the heap; returns the RSS drop."""
        before = await asyncio.to_thread(self.loaders.meter.reading)
        batcher, model = entry.batcher, entry.model
        entry.batcher, entry.model = None, None
        if batcher is not None:
            await batcher.close()
        if model is not None:
            model.close()
        del batcher, model
        after = await asyncio.to_thread(self.loaders.meter.reading)
        return before - after

    async def _unload(self, entry: Entry, reason: str) -> None:
        self._disarm(entry)
        entry.state = State.UNLOADING
        loop = asyncio.get_running_loop()
        entry.transition = loop.create_future()
        try:
            await entry.idle.wait()
            freed = await self._release(entry)
            measured = entry.bytes
            log.info(
                "unloaded %s (%s): RSS fell by %.1f MB (%.1f MB measured at load)",
                entry.name,
                reason,
                freed / MB,
                measured / MB,
            )
            if measured > 16 * MB and freed < measured // 2:
                log.warning(
                    "unloading %s gave back only %.1f MB of the %.1f MB it took; "
                    "the allocator kept the rest",
                    entry.name,
                    freed / MB,
                    measured / MB,
                )
        finally:
            entry.state = State.AVAILABLE
            entry.transition.set_result(None)

    async def unload(self, model: str) -> bool:
        """Unload now (after the requests it serves finish). False when it was not loaded."""
        entry = self.entry(model)
        if entry.state is State.LOADING and entry.transition is not None:
            await asyncio.gather(asyncio.shield(entry.transition), return_exceptions=True)
        if entry.state is State.UNLOADING and entry.transition is not None:
            await asyncio.shield(entry.transition)
            return True
        if entry.state is not State.READY:
            return False
        entry.pinned = False
        await self._unload(entry, reason="requested")
        return True

    async def load(self, model: str, pin: bool = False) -> Entry:
        entry = self.entry(model)
        if pin:
            entry.pinned = True
        async with self.use(model):
            pass
        return entry

    # -- idle timers -----------------------------------------------------------------------

    def _arm(self, entry: Entry) -> None:
        """(Re)start the idle timer of a ready, unused, unpinned model. It fires at
        ``last_used + idle_timeout_secs``, the ``expires_at`` that list_loaded shows."""
        self._disarm(entry)
        timeout = self.config.idle_timeout_secs
        if timeout > 0 and entry.state is State.READY and entry.in_use == 0 and not entry.pinned:
            loop = asyncio.get_running_loop()
            entry.idle_timer = loop.call_later(timeout, self._idle_expired, entry)

    @staticmethod
    def _disarm(entry: Entry) -> None:
        if entry.idle_timer is not None:
            entry.idle_timer.cancel()
            entry.idle_timer = None

    def _idle_expired(self, entry: Entry) -> None:
        entry.idle_timer = None
        task = asyncio.get_running_loop().create_task(
            self._unload_idle(entry), name=f"idle-unload:{entry.name}"
        )
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _unload_idle(self, entry: Entry) -> None:
        # A use may have begun (and even ended, re-arming the timer) since the timer fired.
        if (
            entry.state is not State.READY
            or entry.in_use
            or entry.pinned
            or entry.idle_timer is not None
        ):
            return
        try:
            await self._unload(entry, reason=f"idle for {self.config.idle_timeout_secs:g}s")
        except Exception:
            log.exception("idle unload of %s failed", entry.name)

    # -- downloads -----------------------------------------------------------------------------

    async def download(
        self, model: str, revision: str, report: Callable[[str, int, int, bool], None]
    ) -> sources.ModelFiles:
        spec = self.spec(model)
        if not spec.hub_repo:
            return await asyncio.to_thread(sources.resolve, spec, self.models_dir, self.hub)
        loop = asyncio.get_running_loop()

        def threadsafe(file: str, done: int, total: int, finished: bool) -> None:
            loop.call_soon_threadsafe(report, file, done, total, finished)

        return await asyncio.to_thread(sources.download, spec, self.hub, revision, threadsafe)
