"""What caller authentication costs per call, in CPU time.

Two measurements, run together:

  decision   timeit of the auth interceptor's decision (``Authenticator.decide``: the
             metadata scan, SHA-256 of the key, the digest lookup and constant-time
             compare, the role check; for mTLS the subject lookup), in this process.
  ratd       one spawned process serving two real ratd daemons (grpc.aio servers,
             gateways) on loopback: ``[auth] mode = "none"`` (no interceptor at all) and
             ``mode = "api_key"`` with 100 tenants. The same load of unary ListPresets
             calls goes to each in alternating rounds, and the process's CPU time
             (psutil) per call is compared. The difference is everything auth adds per
             call: gRPC's interceptor machinery, the wrapped handler, the metadata, the
             decision. (Two separate processes differ by more than that on a busy
             machine, even when configured alike.)

    python benchmarks/auth.py                 # ~30 s
    python benchmarks/auth.py --calls 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client"))
sys.path.insert(0, str(REPO / "server"))

from ratatoskr.v1 import models_pb2, ratatoskr_pb2_grpc  # noqa: E402
from ratd.config import parse_config  # noqa: E402
from ratd.service.auth import Authenticator, AuthInterceptor  # noqa: E402

TENANTS = 100
KEY = "rat_benchmark-key-0042"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenants_toml() -> str:
    """100 tenants with two keys each; the benchmark's key is the 43rd tenant's second."""
    tables = []
    for i in range(TENANTS):
        keys = [f"rat_benchmark-key-{i:04d}-old", f"rat_benchmark-key-{i:04d}"]
        hashes = ", ".join(f'"{sha(k)}"' for k in keys)
        tables.append(
            f'[tenants.t{i}]\napi_key_sha256 = [{hashes}]\nmtls_subjects = ["CN=client-{i}"]\n'
            'models = ["gpt-4o-mini", "openai:*"]'
        )
    return "\n".join(tables)


class Context:
    """What the decision reads from a grpc.aio ServicerContext, nothing more."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], auth: dict[str, list[bytes]]):
        self._metadata, self._auth = metadata, auth

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


def decision(number: int) -> dict[str, float]:
    """Microseconds of CPU per decision, best of 5 repeats."""
    config = parse_config('[auth]\nmode = "api_key"\n' + tenants_toml(), "<bench>", env={})
    results = {}
    metadata = (
        ("user-agent", "grpc-python/1.76"),
        ("authorization", f"Bearer {KEY}"),
    )
    peer = {
        "x509_subject": [b"CN=client-42,O=Bench"],
        "x509_common_name": [b"client-42"],
        "transport_security_type": [b"ssl"],
    }
    for mode, context in (
        ("api_key", Context(metadata, {})),
        ("mtls", Context((), peer)),
    ):
        auth = Authenticator(mode, config.tenants)
        assert auth.decide(context, "inference").name == "t42"  # type: ignore[arg-type]
        times = timeit.repeat(
            lambda a=auth, c=context: a.decide(c, "inference"),  # type: ignore[misc]
            number=number,
            repeat=5,
            timer=time.process_time,  # CPU, not wall time: others' load does not count
        )
        results[mode] = min(times) / number * 1e6
    return results


class Details:
    """grpc.HandlerCallDetails as grpc.aio builds it for an interceptor."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def _interceptor_path(number: int, interceptor: AuthInterceptor | None) -> float:
    """Microseconds of CPU per call of what the server does around the servicer: the
    interceptor's intercept_service and the wrapped handler's admission (or, without an
    interceptor, the bare handler), the servicer being an empty coroutine."""

    async def servicer(request: object, context: object) -> object:
        return request

    handler = grpc.unary_unary_rpc_method_handler(servicer)

    async def continuation(details: object) -> grpc.RpcMethodHandler:
        return handler

    context = Context((("authorization", f"Bearer {KEY}"),), {})
    details = Details("/ratatoskr.v1.Ratatoskr/Chat")
    start = time.process_time()
    for _ in range(number):
        if interceptor is None:
            found = await continuation(details)
        else:
            found = await interceptor.intercept_service(continuation, details)  # type: ignore[arg-type]
        await found.unary_unary(None, context)
    return (time.process_time() - start) / number * 1e6


def interceptor_path(number: int) -> dict[str, float]:
    config = parse_config('[auth]\nmode = "api_key"\n' + tenants_toml(), "<bench>", env={})
    interceptor = AuthInterceptor(Authenticator.from_config(config))
    best: dict[str, float] = {}
    for _ in range(5):
        for name, which in (("none", None), ("api_key", interceptor)):
            took = asyncio.run(_interceptor_path(number, which))
            best[name] = min(best.get(name, took), took)
    return best


async def _serve_both(ready: Path) -> None:
    """Two daemons in one process and one event loop: without auth and with api_key auth
    (100 tenants). Alternating the load between them in one process cancels the bias of
    process placement, which on a busy 2-core machine exceeds the effect measured."""
    from ratd.server import Daemon

    plain = Daemon(parse_config(BASE, "<none>", env={}))
    keyed = Daemon(parse_config(BASE + KEYED, "<api_key>", env={}))
    await plain.start()
    await keyed.start()
    await asyncio.to_thread(ready.write_text, f"{plain.address} {keyed.address}\n")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await keyed.stop()
    await plain.stop()


@contextmanager
def spawned(directory: Path) -> Iterator[tuple[dict[str, str], psutil.Process]]:
    ready = directory / "ready"
    log = (directory / "serve.log").open("w")
    env = {**os.environ, "XDG_CONFIG_HOME": str(directory), "HOME": str(directory)}
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(ready)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((directory / "serve.log").read_text())
            time.sleep(0.05)
        plain, keyed = ready.read_text().split()
        yield {"none": plain, "api_key": keyed}, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(30)
        log.close()


BASE = """
[server]
address = "127.0.0.1:0"
metrics_address = ""
log_requests = false
[providers.openai]
base_url = "http://127.0.0.1:9"
[registry]
live = false
cache_path = ""
"""
KEYED = '[auth]\nmode = "api_key"\n' + tenants_toml()
METADATA = {"none": None, "api_key": (("authorization", f"Bearer {KEY}"),)}


async def load(address: str, calls: int, concurrency: int, metadata: Any) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
        request = models_pb2.ListPresetsRequest()
        per_worker = calls // concurrency

        async def worker() -> None:
            for _ in range(per_worker):
                await stub.ListPresets(request, metadata=metadata)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def end_to_end(calls: int, rounds: int, concurrency: int) -> dict[str, float]:
    """Server CPU microseconds per ListPresets call, median over rounds, per setup."""
    samples: dict[str, list[float]] = {name: [] for name in METADATA}
    with tempfile.TemporaryDirectory() as tmp, spawned(Path(tmp)) as (addresses, process):
        for name, address in addresses.items():  # warm-up
            asyncio.run(load(address, 200, concurrency, METADATA[name]))
        for i in range(rounds):
            order = list(addresses) if i % 2 == 0 else list(reversed(addresses))
            for name in order:
                before = cpu(process)
                asyncio.run(load(addresses[name], calls, concurrency, METADATA[name]))
                samples[name].append((cpu(process) - before) / calls * 1e6)
    for name, values in samples.items():
        print(f"  {name}: " + " ".join(f"{v:.0f}" for v in values))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    # Each round's pair ran back to back in one process: its difference is the least
    # disturbed estimate; the median over rounds, with its quartiles, is the figure.
    diffs = sorted(a - b for a, b in zip(samples["api_key"], samples["none"], strict=True))
    quartiles = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
    medians["paired"], medians["q1"], medians["q3"] = quartiles[1], quartiles[0], quartiles[2]
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000, help="decisions per repeat")
    parser.add_argument("--calls", type=int, default=4000, help="calls per round and setup")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve_both(args.serve))
        return
    micro = decision(args.number)
    for mode, micros in micro.items():
        print(f"decision {mode:8s} {micros:6.2f} us CPU per call ({TENANTS} tenants)")
    path = interceptor_path(args.number // 2)
    print(
        f"interceptor path: {path['api_key']:.2f} us with api_key auth, {path['none']:.2f} us "
        f"without: auth adds {path['api_key'] - path['none']:.2f} us CPU per call"
    )
    macro = end_to_end(args.calls, args.rounds, args.concurrency)
    for name in ("none", "api_key"):
        print(f"ratd auth={name:8s} {macro[name]:7.1f} us CPU per ListPresets call (median)")
    ratio = macro["api_key"] / macro["none"]
    print(
        f"auth adds {macro['paired']:.1f} us CPU per call in ratd (median of paired rounds; "
        f"quartiles {macro['q1']:.1f} .. {macro['q3']:.1f}); with/without: {ratio:.3f}x"
    )


if __name__ == "__main__":
    main()
