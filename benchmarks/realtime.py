"""Realtime overhead: what ratd adds to the first audio chunk of a response.

One fake OpenAI Realtime API (tests/fakes/realtime_upstream.py, its own process, zero
latency: a response is three audio deltas and ``response.done``) serves two paths in the
same run, taking turns in rounds so that drift in the machine's load hits both alike:

  direct  this process -> WebSocket -> fake
  ratd    this process -> gRPC Realtime -> ratd (its own process) -> WebSocket -> fake

Each path keeps one session open and asks for --responses responses per round, one after
another; the figure is the time from sending ``response.create`` (``response_create``) to
the first audio delta, and the whole response, per path. The session's opening (connect
to ``session.created`` / ``session_created``) is measured too, once per round.

    python benchmarks/realtime.py                 # 5 rounds of 200 responses
    python benchmarks/realtime.py --quick         # 2 rounds of 50

Printed and written to benchmarks/results/<date>.json (section "realtime").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

import benchlib

sys.path[:0] = [str(benchlib.REPO / "client")]

from ratatoskr import ServiceClient  # noqa: E402
from ratatoskr.realtime import RealtimeSession  # noqa: E402

KEY = "sk-bench-not-a-real-key"
MODEL = "gpt-realtime"


def start_fake(cores: frozenset[int] | None) -> tuple[Any, str]:
    argv = [sys.executable, "-m", "tests.fakes.realtime_upstream", "--key", KEY]
    process = benchlib.spawn(argv, cores=cores, cwd=benchlib.REPO, stdout_pipe=True)
    assert process.stdout is not None
    words = process.stdout.readline().decode().split()
    if len(words) != 2 or words[0] != "realtime":
        benchlib.stop(process)
        raise RuntimeError(f"the fake realtime upstream did not start: {words}")
    return process, words[1]


class Direct:
    """The fake's own protocol, straight over aiohttp."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url.replace("http://", "ws://") + f"/realtime?model={MODEL}"

    async def open(self) -> float:
        started = time.perf_counter()
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url, headers={"Authorization": f"Bearer {KEY}"})
        update = {"type": "session.update", "session": {"type": "realtime"}}
        await self.ws.send_str(orjson.dumps(update).decode())
        while orjson.loads((await self.ws.receive()).data)["type"] != "session.created":
            pass
        return time.perf_counter() - started

    async def response(self) -> tuple[float, float]:
        started = time.perf_counter()
        await self.ws.send_str('{"type":"response.create"}')
        first = 0.0
        while True:
            event = orjson.loads((await self.ws.receive()).data)
            if event["type"] == "response.output_audio.delta" and not first:
                base64.b64decode(event["delta"])
                first = time.perf_counter() - started
            if event["type"] == "response.done":
                return first, time.perf_counter() - started

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


class ThroughRatd:
    """The same through ratd's Realtime RPC, with the Python client."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def open(self) -> float:
        started = time.perf_counter()
        self.opening = self.client.realtime(MODEL)
        self.session: RealtimeSession = await self.opening.__aenter__()
        return time.perf_counter() - started

    async def response(self) -> tuple[float, float]:
        started = time.perf_counter()
        await self.session.create_response()
        first = 0.0
        while True:
            event = await self.session.receive()
            assert event is not None
            kind = event.WhichOneof("event")
            if kind == "audio_delta" and not first:
                first = time.perf_counter() - started
            if kind == "response_done":
                return first, time.perf_counter() - started

    async def close(self) -> None:
        await self.opening.__aexit__()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(at(0.90), 3),
        "p99_ms": round(at(0.99), 3),
        "n": len(ordered),
    }


async def run_path(path: Direct | ThroughRatd, responses: int, out: dict[str, list[float]]) -> None:
    out["open"].append(await path.open())
    try:
        await path.response()  # warm-up, not counted
        for _ in range(responses):
            first, whole = await path.response()
            out["first_audio"].append(first)
            out["response"].append(whole)
    finally:
        await path.close()


async def measure(base_url: str, address: str, rounds: int, responses: int) -> dict[str, Any]:
    client = await ServiceClient.connect(address, timeout=600)
    samples: dict[str, dict[str, list[float]]] = {
        name: {"open": [], "first_audio": [], "response": []} for name in ("direct", "ratd")
    }
    try:
        for i in range(rounds):
            order = ["direct", "ratd"] if i % 2 == 0 else ["ratd", "direct"]
            for name in order:
                path = Direct(base_url) if name == "direct" else ThroughRatd(client)
                await run_path(path, responses, samples[name])
            benchlib.log(f"round {i + 1}/{rounds} done")
    finally:
        await client.close()
    result: dict[str, Any] = {
        name: {what: summary(values) for what, values in found.items()}
        for name, found in samples.items()
    }
    added = {
        what: round(result["ratd"][what]["p50_ms"] - result["direct"][what]["p50_ms"], 3)
        for what in ("open", "first_audio", "response")
    }
    result["added_p50_ms"] = added
    result["goal_first_audio_added_ms"] = 5.0
    result["rounds"], result["responses_per_round"] = rounds, responses
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--responses", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.responses = 2, 50
    plan = benchlib.core_plan(pin=not args.no_pin)
    machine = benchlib.machine()
    if plan.pinned:
        benchlib.pin(os.getpid(), plan.load)
    fake, base_url = start_fake(plan.upstream)
    ratd = None
    try:
        with benchlib.temporary_directory("ratd-realtime-") as work:
            config = f'[providers.openai]\nbase_url = "{base_url}"\n[registry]\nlive = false\n'
            ratd, address = benchlib.start_ratd(config, Path(work), plan.gateway)
            result = asyncio.run(measure(base_url, address, args.rounds, args.responses))
    finally:
        benchlib.stop(ratd)
        benchlib.stop(fake)
    result["cores"] = plan.as_dict()
    for name in ("direct", "ratd"):
        row = result[name]
        print(
            f"{name:7} open p50 {row['open']['p50_ms']:8.3f} ms   first audio p50 "
            f"{row['first_audio']['p50_ms']:7.3f} p99 {row['first_audio']['p99_ms']:7.3f} ms   "
            f"response p50 {row['response']['p50_ms']:7.3f} ms"
        )
    added = result["added_p50_ms"]
    print(
        f"added by ratd (p50): first audio {added['first_audio']:.3f} ms (goal <= 5 ms), "
        f"whole response {added['response']:.3f} ms, session opening {added['open']:.3f} ms"
    )
    if not args.no_save:
        benchlib.update_results(benchlib.results_path(), "realtime", result, machine)


if __name__ == "__main__":
    main()
