"""Gateway overhead: what ratd adds to a chat call.

The same Chat request goes (a) straight to a zero-latency fake OpenAI upstream over
HTTP and (b) through ratd over gRPC to that same upstream. This process is the load
generator; the upstream and ratd run as separate processes. The two paths alternate in
rounds so that drift in the machine's load hits both alike. Printed: p50/p99 latency and
requests per second of each path, ratd's added p50/p99, and the throughput ratio.

On a 2-core machine the three processes (load generator, ratd, upstream) share the two
cores without pinning; at concurrency 1 they mostly take turns.

    python benchmarks/overhead.py [--requests 2000] [--rounds 3] [--concurrency 1,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ratatoskr.v1 import chat_pb2, ratatoskr_pb2_grpc  # noqa: E402

MODEL = "gpt-4o-mini"
PROMPT = "Say hello in one short sentence."


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--static"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 2 or line[0] != "openai":
        raise RuntimeError(f"the fake upstream did not start: {line}")
    return process, line[1]


def start_ratd(base_url: str, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    config = workdir / "config.toml"
    config.write_text(
        f'[server]\naddress = "127.0.0.1:0"\nlog_level = "warning"\n'
        f'[providers.openai]\nbase_url = "{base_url}"\n'
    )
    ready = workdir / "ready"
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench-not-a-real-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ratd", "--config", str(config), "--ready-file", str(ready)],
        env=env,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("ratd did not start")
        time.sleep(0.05)
    return process, ready.read_text().strip()


async def run_load(
    call: Callable[[], Awaitable[None]], requests: int, concurrency: int
) -> tuple[list[float], float]:
    """``requests`` calls from ``concurrency`` workers; latencies in seconds and wall time."""
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    upstream_url: str, ratd_address: str, args: argparse.Namespace
) -> list[dict[str, float]]:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    request = chat_pb2.ChatRequest(
        messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content=PROMPT)],
        options=chat_pb2.ChatOptions(model=MODEL),
    )
    connector = aiohttp.TCPConnector(limit=0)
    results = []
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        grpc.aio.insecure_channel(ratd_address) as channel,
    ):
        stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)

        async def direct() -> None:
            async with session.post(
                f"{upstream_url}/chat/completions", data=body, headers=headers
            ) as response:
                json.loads(await response.read())
                assert response.status == 200

        async def through_ratd() -> None:
            reply = await stub.Chat(request)
            assert reply.content

        for concurrency in args.concurrency:
            await run_load(direct, 200, concurrency)  # warm-up: connections, caches
            await run_load(through_ratd, 200, concurrency)
            samples: dict[str, list[float]] = {"direct": [], "ratd": []}
            elapsed = {"direct": 0.0, "ratd": 0.0}
            for _ in range(args.rounds):
                for name, call in (("direct", direct), ("ratd", through_ratd)):
                    latencies, wall = await run_load(call, args.requests, concurrency)
                    samples[name] += latencies
                    elapsed[name] += wall
            row = {"concurrency": concurrency}
            for name in ("direct", "ratd"):
                row[f"{name}_p50_ms"] = 1000 * statistics.median(samples[name])
                row[f"{name}_p99_ms"] = 1000 * percentile(samples[name], 0.99)
                row[f"{name}_rps"] = len(samples[name]) / elapsed[name]
            row["added_p50_ms"] = row["ratd_p50_ms"] - row["direct_p50_ms"]
            row["added_p99_ms"] = row["ratd_p99_ms"] - row["direct_p99_ms"]
            row["rps_ratio"] = row["ratd_rps"] / row["direct_rps"]
            results.append(row)
    return results


def report(results: list[dict[str, float]], ratd_rss: int) -> None:
    print(f"{'conc':>4}  {'path':<6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9}")
    for row in results:
        for name in ("direct", "ratd"):
            print(
                f"{row['concurrency']:>4.0f}  {name:<6} {row[f'{name}_p50_ms']:>8.3f} "
                f"{row[f'{name}_p99_ms']:>8.3f} {row[f'{name}_rps']:>9.0f}"
            )
        print(
            f"      ratd adds p50 {row['added_p50_ms']:.3f} ms, p99 {row['added_p99_ms']:.3f} ms; "
            f"throughput ratd / direct = {row['rps_ratio']:.2f}"
        )
    print(f"ratd RSS after the run: {ratd_rss / 2**20:.1f} MiB")
    print(json.dumps({"results": results, "ratd_rss_bytes": ratd_rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per path per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64]
    )
    args = parser.parse_args()
    upstream, upstream_url = start_upstream()
    with tempfile.TemporaryDirectory() as tmp:
        ratd, address = start_ratd(upstream_url, Path(tmp))
        try:
            try:
                import uvloop

                results = uvloop.run(measure(upstream_url, address, args))
            except ImportError:
                results = asyncio.run(measure(upstream_url, address, args))
            rss = psutil.Process(ratd.pid).memory_info().rss
        finally:
            ratd.terminate()
            ratd.wait(timeout=30)
            upstream.terminate()
            upstream.wait(timeout=30)
    report(results, rss)


if __name__ == "__main__":
    main()
