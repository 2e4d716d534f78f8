"""Time to first audio of streamed speech: what ratd adds to it.

One fake OpenAI upstream (tests/fakes/openai_media.py: ``POST /v1/audio/speech`` writes
its first chunk at once, then the rest) serves two paths, measured in the same run,
alternating call by call so that drift in the machine's load hits both alike:

  direct  this process -> HTTP POST /v1/audio/speech -> the first body chunk
  ratd    this process -> gRPC Synthesize -> ratd -> HTTP -> upstream -> the first chunk

The figure is the time from sending the request to holding the first audio bytes; the
added time is ratd's p50 (and p90) minus direct's. The upstream and ratd are processes of
their own, pinned as the other benchmarks pin them (benchlib.core_plan). Printed and
written to benchmarks/results/<date>.json (section "tts_first_audio").

    python benchmarks/tts_latency.py                 # 400 calls per path
    python benchmarks/tts_latency.py --calls 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

import aiohttp

import benchlib

sys.path.insert(0, str(benchlib.REPO / "client"))

from ratatoskr import ServiceClient

TEXT = "The squirrel runs up and down the world tree, carrying words."
BODY = {"model": "gpt-4o-mini-tts", "input": TEXT, "voice": "alloy", "response_format": "mp3"}


async def direct_once(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.post(f"{url}/audio/speech", json=BODY) as response:
        first = await response.content.readany()
        elapsed = time.perf_counter() - started
        assert response.status == 200 and first, response.status
        await response.read()
    return elapsed


async def ratd_once(client: ServiceClient) -> float:
    started = time.perf_counter()
    stream = client.synthesize(TEXT, "gpt-4o-mini-tts", voice="alloy")
    first = await anext(stream)
    elapsed = time.perf_counter() - started
    assert first.audio
    async for _ in stream:
        pass
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


async def measure(upstream: str, address: str, calls: int, warmup: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"direct": [], "ratd": []}
    client = await ServiceClient.connect(address, timeout=30)
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(warmup + calls):
                order = ("direct", "ratd") if i % 2 == 0 else ("ratd", "direct")
                for path in order:
                    if path == "direct":
                        took = await direct_once(session, upstream)
                    else:
                        took = await ratd_once(client)
                    if i >= warmup:
                        times[path].append(took)
    finally:
        await client.close()
    direct, ratd = summary(times["direct"]), summary(times["ratd"])
    return {
        "calls": calls,
        "direct": direct,
        "ratd": ratd,
        "added_p50_ms": ratd["p50_ms"] - direct["p50_ms"],
        "added_p90_ms": ratd["p90_ms"] - direct["p90_ms"],
        "ratio_p50": ratd["p50_ms"] / direct["p50_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    plan = benchlib.core_plan(not args.no_pin)
    machine = benchlib.machine()
    upstream_process, upstream = benchlib.start_upstream(plan.upstream)
    ratd_process = None
    try:
        with benchlib.temporary_directory("ratd-tts-") as workdir:
            config = f'[providers.openai]\nbase_url = "{upstream}"\n[retry]\nmax_attempts = 1\n'
            ratd_process, address = benchlib.start_ratd(config, workdir, plan.gateway)
            if plan.pinned:
                benchlib.pin(os.getpid(), plan.load)
            result = asyncio.run(measure(upstream, address, args.calls, args.warmup))
    finally:
        benchlib.stop(ratd_process)
        benchlib.stop(upstream_process)
    result["pinned"] = plan.pinned
    print(
        f"time to first audio over {result['calls']} calls each: "
        f"direct p50 {result['direct']['p50_ms']:.2f} ms, "
        f"ratd p50 {result['ratd']['p50_ms']:.2f} ms; "
        f"added p50 {result['added_p50_ms']:.2f} ms, p90 {result['added_p90_ms']:.2f} ms "
        f"(ratio {result['ratio_p50']:.2f})"
    )
    benchlib.update_results(benchlib.results_path(), "tts_first_audio", result, machine)


if __name__ == "__main__":
    main()
