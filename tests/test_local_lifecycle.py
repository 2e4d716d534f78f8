"""The model manager through an in-process ratd: load on first use (once, however many
callers), idle unload that gives memory back (process RSS measured), LRU eviction within
the RAM budget, never evicting a model in use or pinned, refusing what cannot fit, and a
corrupt model file failing clearly without affecting anything else.

The models are generated embedding graphs with a known weight in memory (``ballast_rows``
rows of float32 that no token reaches), loaded into real ONNX Runtime sessions. Two tests
measure real RSS (a load in a fresh ratd process, and an idle unload giving memory back).
The budget tests inject a memory meter that reports a known cost per model, because RSS
deltas differ between machines and over a long test run; which model is evicted is then
exact. Waits poll for a state with a generous deadline; nothing asserts on how long
anything took."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest

from ratatoskr import ModelNotAvailable, ServiceClient, models_pb2
from ratatoskr.v1 import inference_pb2
from ratd.local.catalog import ModelSpec
from ratd.local.manager import Loaders, MemoryMeter, ModelManager, RssMeter
from ratd.local.provider import LocalProvider
from ratd.local.sources import ModelFiles
from ratd.server import Daemon
from tests.fakes.hub_models import write_model
from tests.support.daemon import make_config, running_daemon, spawn_ratd

MB = 1024 * 1024
# 40 MB of float32 weights per model (dim 16).
BALLAST_ROWS = 40 * MB // (16 * 4)
NAMES = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle-models")
    for seed, name in enumerate(NAMES):
        write_model(root / name, "embedding", ballast_rows=BALLAST_ROWS, seed=seed)
    return root


def config_text(root: Path, tmp_path: Path, **local: object) -> str:
    settings = "".join(
        f"{key} = {value!r}\n".replace("'", '"').replace("True", "true").replace("False", "false")
        for key, value in local.items()
    )
    tables = "".join(
        f'[providers.local.models.{name}]\nkind = "embedding"\npath = "{root / name}"\n'
        for name in NAMES
    )
    return f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
{settings}
{tables}
"""


class KnownCosts(RssMeter):
    """Real RSS readings (the manager logs them at unload), but each model's load costs
    exactly ``costs[name]``; its estimate before the first load is ``estimates[name]``
    (default: the cost)."""

    def __init__(self, costs: Mapping[str, int], estimates: Mapping[str, int] | None = None):
        self.costs = dict(costs)
        self.estimates = dict(estimates or {})

    def estimate(self, spec: ModelSpec, files: ModelFiles) -> int:
        return self.estimates.get(spec.name, self.costs[spec.name])

    def cost(self, spec: ModelSpec, files: ModelFiles, before: int, after: int) -> int:
        return self.costs[spec.name]


COST = 100 * MB
EACH_100_MB = {name: COST for name in NAMES}


@asynccontextmanager
async def daemon_and_client(
    text: str, meter: MemoryMeter | None = None
) -> AsyncIterator[tuple[Daemon, ServiceClient]]:
    """An in-process ratd (with ``meter`` measuring its local loads, when given)."""
    config = make_config(text)
    providers = None
    if meter is not None:
        providers = {"local": LocalProvider(config, loaders=Loaders(meter=meter))}
    async with running_daemon(config, providers) as daemon:
        client = await ServiceClient.connect(daemon.address, timeout=60)
        try:
            yield daemon, client
        finally:
            await client.close()


def manager_of(daemon: Daemon) -> ModelManager:
    local = daemon.gateway.providers["local"]
    assert isinstance(local, LocalProvider)
    return local.manager


async def loaded_names(client: ServiceClient) -> set[str]:
    return {m.name for m in await client.list_loaded() if m.status == models_pb2.MODEL_STATUS_READY}


async def wait_until_unloaded(client: ServiceClient, name: str, deadline: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while name in {m.name for m in await client.list_loaded()}:  # ready, loading or unloading
        assert loop.time() < end, f"{name} was never unloaded"
        await asyncio.sleep(0.05)


async def test_a_load_is_measured_plausibly(model_root: Path, tmp_path: Path) -> None:
    """A model with 40 MB of weights, measured by RSS in a fresh ratd process (in this
    long-lived test process, reused heap would make the number meaningless)."""
    with spawn_ratd(config_text(model_root, tmp_path, ram_budget_mb=4096), tmp_path) as ratd:
        async with await ServiceClient.connect(ratd.address, timeout=60) as client:
            measured = (await client.load_model("alpha")).bytes
    assert 30 * MB < measured < 200 * MB, f"a 40 MB model measured {measured / MB:.1f} MB"


async def test_concurrent_first_requests_load_once(model_root: Path, tmp_path: Path) -> None:
    async with daemon_and_client(config_text(model_root, tmp_path)) as (daemon, client):
        status = await client.model_status("alpha")
        assert status.status == models_pb2.MODEL_STATUS_AVAILABLE
        replies = await asyncio.gather(
            *(client.embed(f"hello world {i}", "alpha") for i in range(8))
        )
        assert all(r.dimensions == 16 for r in replies)
        assert manager_of(daemon).entries["alpha"].loads == 1
        status = await client.model_status("alpha")
        assert status.status == models_pb2.MODEL_STATUS_READY
        assert status.local.bytes > 0 and status.local.device == "cpu"


async def test_idle_unload_gives_memory_back(model_root: Path, tmp_path: Path) -> None:
    """Measured in a fresh ratd process, by its own RSS: in this long-lived test process a
    load can reuse heap that earlier tests freed, so neither it nor its unload moves RSS."""
    text = config_text(model_root, tmp_path, idle_timeout_secs=0.3)
    with spawn_ratd(text, tmp_path) as ratd:
        process = psutil.Process(ratd.process.pid)
        async with await ServiceClient.connect(ratd.address, timeout=60) as client:
            loaded = await client.load_model("beta")
            assert loaded.expires_at.seconds > 0  # ps shows when the idle timeout unloads it
            rss_loaded = process.memory_info().rss
            await wait_until_unloaded(client, "beta")
            rss_after = process.memory_info().rss
            assert rss_loaded - rss_after >= loaded.bytes // 2, (
                f"RSS fell by {(rss_loaded - rss_after) / MB:.1f} MB after unloading a model "
                f"measured at {loaded.bytes / MB:.1f} MB"
            )
            status = await client.model_status("beta")
            assert status.status == models_pb2.MODEL_STATUS_AVAILABLE
            # It comes back on the next request.
            assert (await client.embed("hello", "beta")).dimensions == 16


async def loaded_bytes(client: ServiceClient) -> dict[str, int]:
    return {m.name: m.bytes for m in await client.list_loaded()}


_TEXTS = itertools.count()


async def use(client: ServiceClient, model: str) -> inference_pb2.EmbedResponse:
    """One embedding on ``model`` of a text never sent before (the response cache would
    answer a repeated one without touching the model)."""
    return await client.embed(f"text number {next(_TEXTS)}", model)


async def test_lru_eviction_keeps_the_sum_within_budget(model_root: Path, tmp_path: Path) -> None:
    text = config_text(model_root, tmp_path, ram_budget_mb=250, idle_timeout_secs=0)
    async with daemon_and_client(text, KnownCosts(EACH_100_MB)) as (daemon, client):
        await use(client, "alpha")
        await use(client, "beta")
        await use(client, "alpha")  # beta is now the least recently used
        await use(client, "gamma")  # room for two: beta goes
        assert await loaded_bytes(client) == {"alpha": COST, "gamma": COST}
        assert manager_of(daemon).used_bytes() == 2 * COST
        await use(client, "beta")  # now alpha is the least recently used
        assert await loaded_bytes(client) == {"gamma": COST, "beta": COST}
        assert [manager_of(daemon).entries[n].loads for n in NAMES] == [1, 2, 1]


async def test_a_model_in_use_is_never_evicted(model_root: Path, tmp_path: Path) -> None:
    text = config_text(model_root, tmp_path, ram_budget_mb=150, idle_timeout_secs=0)
    async with daemon_and_client(text, KnownCosts(EACH_100_MB)) as (daemon, client):
        manager = manager_of(daemon)
        async with manager.use("alpha"):  # a request in flight on alpha
            with pytest.raises(ModelNotAvailable) as caught:
                await use(client, "beta")
            assert "serving requests" in caught.value.message
            assert "alpha (100 MB, in use)" in caught.value.message
            assert await loaded_bytes(client) == {"alpha": COST}
            assert manager.entries["beta"].loads == 0, "refused before building a session"
        # Once alpha is idle, beta may evict it.
        assert (await use(client, "beta")).dimensions == 16
        assert await loaded_bytes(client) == {"beta": COST}


async def test_pinned_models_load_at_start_and_are_never_evicted(
    model_root: Path, tmp_path: Path
) -> None:
    text = config_text(
        model_root, tmp_path, pinned=["alpha"], ram_budget_mb=250, idle_timeout_secs=0
    )
    async with daemon_and_client(text, KnownCosts(EACH_100_MB)) as (_, client):
        (pinned,) = await client.list_loaded()
        assert pinned.name == "alpha" and pinned.pinned and not pinned.HasField("expires_at")
        await use(client, "beta")
        await use(client, "gamma")  # over budget for three: beta goes, not alpha
        assert await loaded_bytes(client) == {"alpha": COST, "gamma": COST}
        await use(client, "beta")  # alpha is the least recently used, but pinned
        assert await loaded_bytes(client) == {"alpha": COST, "beta": COST}


async def test_a_pinned_model_outlives_the_idle_timeout(model_root: Path, tmp_path: Path) -> None:
    text = config_text(model_root, tmp_path, pinned=["alpha"], idle_timeout_secs=0.2)
    async with daemon_and_client(text, KnownCosts(EACH_100_MB)) as (_, client):
        loaded = await client.load_model("beta")
        assert loaded.HasField("expires_at")
        await wait_until_unloaded(client, "beta")  # idle for 0.2 s: gone
        assert await loaded_names(client) == {"alpha"}


async def test_a_model_in_use_outlives_its_idle_timeout(model_root: Path, tmp_path: Path) -> None:
    """beta is loaded, and held by a request, before alpha loads: alpha's idle unload
    proves that beta's timeout passed too, and beta is still there; once released, it goes."""
    text = config_text(model_root, tmp_path, idle_timeout_secs=0.3)
    async with daemon_and_client(text, KnownCosts(EACH_100_MB)) as (daemon, client):
        async with manager_of(daemon).use("beta"):
            alpha = await client.load_model("alpha")
            shown = alpha.expires_at.ToNanoseconds() - alpha.last_used.ToNanoseconds()
            assert shown == pytest.approx(300_000_000, abs=1_000)  # last use + idle timeout
            (beta,) = [m for m in await client.list_loaded() if m.name == "beta"]
            assert beta.in_use == 1 and not beta.HasField("expires_at")
            await wait_until_unloaded(client, "alpha")
            assert await loaded_names(client) == {"beta"}
        await wait_until_unloaded(client, "beta")
        assert await client.list_loaded() == []


async def test_a_model_larger_than_the_budget_is_refused(model_root: Path, tmp_path: Path) -> None:
    """Nothing is evicted for a load that cannot fit even alone."""
    text = config_text(model_root, tmp_path, ram_budget_mb=250, idle_timeout_secs=0)
    costs = {**EACH_100_MB, "gamma": 300 * MB}
    async with daemon_and_client(text, KnownCosts(costs)) as (daemon, client):
        await use(client, "alpha")
        with pytest.raises(ModelNotAvailable) as caught:
            await use(client, "gamma")
        assert "gamma needs about 300 MB" in caught.value.message
        assert "more than the whole local RAM budget of 250 MB" in caught.value.message
        assert manager_of(daemon).entries["gamma"].loads == 0
        assert await loaded_bytes(client) == {"alpha": COST}
        status = await client.model_status("gamma")
        assert status.status == models_pb2.MODEL_STATUS_UNAVAILABLE


async def test_a_load_measured_above_its_estimate_evicts_after_loading(
    model_root: Path, tmp_path: Path
) -> None:
    """The estimate let gamma in beside alpha and beta; its measurement does not fit, so the
    least recently used idle model goes right after the load — or, when every other model
    is in use, gamma is unloaded again and refused."""
    text = config_text(model_root, tmp_path, ram_budget_mb=250, idle_timeout_secs=0)
    meter = KnownCosts(EACH_100_MB, estimates={"gamma": 10 * MB})
    async with daemon_and_client(text, meter) as (daemon, client):
        manager = manager_of(daemon)
        await use(client, "alpha")
        await use(client, "beta")
        async with manager.use("alpha"), manager.use("beta"):
            with pytest.raises(ModelNotAvailable) as caught:
                await use(client, "gamma")
            assert "serving requests" in caught.value.message
            assert manager.entries["gamma"].loads == 1, "built, measured, then let go"
            assert await loaded_bytes(client) == {"alpha": COST, "beta": COST}
        # Idle now (beta's use ended first, so it is the least recently used): gamma's
        # known measurement (100 MB) makes room before it loads again.
        await use(client, "gamma")
        assert await loaded_bytes(client) == {"alpha": COST, "gamma": COST}
        assert manager.entries["gamma"].loads == 2


async def test_admin_load_and_unload(model_root: Path, tmp_path: Path) -> None:
    async with daemon_and_client(config_text(model_root, tmp_path)) as (_, client):
        loaded = await client.load_model("gamma", pin=True)
        assert loaded.status == models_pb2.MODEL_STATUS_READY and loaded.pinned
        assert "directory" in loaded.source
        assert await client.unload_model("gamma") is True
        assert await client.unload_model("gamma") is False
        assert await client.list_loaded() == []


async def test_corrupt_model_file_fails_clearly_and_affects_nothing_else(
    model_root: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    write_model(broken, "embedding")
    (broken / "model.onnx").write_bytes(b"this is not an ONNX protobuf" * 100)
    text = (
        config_text(model_root, tmp_path) + f'[providers.local.models.broken]\npath = "{broken}"\n'
    )
    async with daemon_and_client(text) as (_, client):
        await client.embed("hello", "alpha")
        results = await asyncio.gather(
            client.embed("hello", "broken"), client.embed("hello", "broken"), return_exceptions=True
        )
        for result in results:
            assert isinstance(result, ModelNotAvailable)
            assert "model.onnx" in result.message and "broken" in result.message
        status = await client.model_status("broken")
        assert status.status == models_pb2.MODEL_STATUS_UNAVAILABLE
        assert "model.onnx" in status.reason
        assert await loaded_names(client) == {"alpha"}
        assert (await client.embed("still fine", "alpha")).dimensions == 16
        assert (await client.health()).healthy


async def test_checksum_mismatch_is_refused(model_root: Path, tmp_path: Path) -> None:
    text = config_text(model_root, tmp_path) + (
        f'[providers.local.models.checked]\npath = "{model_root / "alpha"}"\n'
        f'sha256 = {{ "model.onnx" = "{"ab" * 32}" }}\n'
    )
    async with daemon_and_client(text) as (_, client):
        with pytest.raises(ModelNotAvailable, match="sha256 mismatch"):
            await client.embed("hello", "checked")


async def test_a_cancelled_call_releases_its_model(model_root: Path, tmp_path: Path) -> None:
    """The client goes away mid-inference: nothing keeps holding the model."""
    async with daemon_and_client(config_text(model_root, tmp_path, ram_budget_mb=4096)) as (
        daemon,
        client,
    ):
        await client.embed("warm", "alpha")
        entry = manager_of(daemon).entries["alpha"]
        texts = [f"sentence number {i} about the world tree and its squirrel" for i in range(2000)]
        call = asyncio.create_task(client.embed_batch(texts, "alpha"))
        for _ in range(500):
            if entry.in_use:
                break
            await asyncio.sleep(0.005)
        assert entry.in_use == 1, "the batch is being served"
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(500):
            if entry.in_use == 0:
                break
            await asyncio.sleep(0.01)
        assert entry.in_use == 0, "the cancelled call released the model"
        assert daemon.guard.active == 0


async def test_a_reload_keeps_loaded_models_unless_the_local_config_changed(
    model_root: Path, tmp_path: Path
) -> None:
    """A reload that leaves ``[providers.local]`` alone keeps the model manager and what it
    has loaded (no second copy under the budget, no cold start); one that changes it
    builds a new manager, and the old one unloads once its calls are done."""
    local = config_text(model_root, tmp_path, ram_budget_mb=4096)
    configs = iter(
        [
            make_config(local + '[server]\naddress = "127.0.0.1:0"\nlog_level = "debug"\n'),
            make_config(local.replace("ram_budget_mb = 4096", "ram_budget_mb = 2048")),
        ]
    )
    daemon = Daemon(make_config(local), reread=lambda: next(configs))
    await daemon.start()
    try:
        async with await ServiceClient.connect(daemon.address, timeout=60) as client:
            await client.embed("warm", "alpha")
            first = manager_of(daemon)

            reloaded, message = await daemon.reload()
            assert reloaded, message
            assert manager_of(daemon) is first, "an unchanged local config keeps its manager"
            assert await loaded_names(client) == {"alpha"}
            await client.embed("still warm", "alpha")
            assert first.entries["alpha"].loads == 1, "the model was not loaded again"
            assert first.entries["alpha"].idle_timer is not None, "still unloads when idle"

            reloaded, message = await daemon.reload()
            assert reloaded, message
            second = manager_of(daemon)
            assert second is not first and second.config.ram_budget_mb == 2048
            assert await loaded_names(client) == set(), "the new manager starts empty"
            for _ in range(500):  # the old gateway retires once idle
                if first.used_bytes() == 0:
                    break
                await asyncio.sleep(0.01)
            assert first.used_bytes() == 0, "the replaced manager unloaded its model"
            assert (await client.embed("cold again", "alpha")).dimensions == 16
    finally:
        await daemon.stop()
