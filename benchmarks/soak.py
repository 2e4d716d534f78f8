"""Soak: many requests through ratd against the zero-latency fake upstream, unary and
streaming mixed, to show that nothing leaks — no errors, and memory that levels off.

Prints the errors, ratd's RSS after the warm-up (start), halfway and at the end, and the
growth from start to end in percent. Goal: 0 errors, growth <= 5 %.

    python benchmarks/soak.py [--requests 100000] [--concurrency 32] [--stream-every 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, start_ratd, start_upstream, stop, temporary_directory

sys.path.insert(0, str(REPO / "client"))
from ratatoskr.v1 import chat_pb2, ratatoskr_pb2_grpc

MB = 1024 * 1024


def request() -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content="Tell me about Yggdrasil.")],
        options=chat_pb2.ChatOptions(model="gpt-4o-mini"),
    )


async def soak(address: str, ratd_pid: int, args: argparse.Namespace) -> dict[str, object]:
    process = psutil.Process(ratd_pid)
    unary = request()
    streamed = chat_pb2.ChatStreamRequest(messages=unary.messages, options=unary.options)
    errors: dict[str, int] = {}
    done = 0
    samples: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)

        async def one(i: int) -> None:
            try:
                if i % args.stream_every == 0:
                    events = [e async for e in stub.ChatStream(streamed)]
                    assert events[-1].done
                else:
                    assert (await stub.Chat(unary)).content
            except grpc.aio.AioRpcError as err:
                errors[err.code().name] = errors.get(err.code().name, 0) + 1
            except AssertionError:
                errors["BAD_ANSWER"] = errors.get("BAD_ANSWER", 0) + 1

        async def worker(n: int) -> None:
            nonlocal done
            for i in range(n):
                await one(i)
                done += 1
                if done == args.requests // 2:
                    samples["middle"] = process.memory_info().rss

        warmup = max(1000, args.requests // 50)
        await asyncio.gather(*(worker(warmup // args.concurrency) for _ in range(args.concurrency)))
        done = 0
        samples["start"] = process.memory_info().rss
        started = time.perf_counter()
        per_worker = args.requests // args.concurrency
        await asyncio.gather(*(worker(per_worker) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        samples["end"] = process.memory_info().rss
    growth = 100 * (samples["end"] - samples["start"]) / samples["start"]
    return {
        "requests": per_worker * args.concurrency,
        "concurrency": args.concurrency,
        "streamed_share": 1 / args.stream_every,
        "seconds": round(elapsed, 1),
        "rps": round(per_worker * args.concurrency / elapsed, 1),
        "errors": errors,
        "rss_mb": {k: round(v / MB, 1) for k, v in samples.items()},
        "growth_percent": round(growth, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--stream-every", type=int, default=4, help="every Nth request streams")
    args = parser.parse_args()
    upstream, base_url = start_upstream(None, chunks=8)
    try:
        with temporary_directory("soak") as work:
            config = f'[providers.openai]\nbase_url = "{base_url}"\n[cache]\nenabled = false\n'
            ratd, address = start_ratd(config, work, None)
            try:
                result = asyncio.run(soak(address, ratd.pid, args))
            finally:
                stop(ratd)
    finally:
        stop(upstream)
    errors = sum(result["errors"].values())  # type: ignore[attr-defined]
    rss = result["rss_mb"]
    print(
        f"{result['requests']} requests ({result['streamed_share']:.0%} streamed) at "
        f"concurrency {result['concurrency']} in {result['seconds']} s ({result['rps']} req/s)"
    )
    print(f"errors: {errors} {result['errors'] or ''}")
    print(
        f"ratd RSS: start {rss['start']} MB, middle {rss['middle']} MB, end {rss['end']} MB; "  # type: ignore[index]
        f"growth {result['growth_percent']} %"
    )
    print(json.dumps(result))
    if errors or float(result["growth_percent"]) > 5:  # type: ignore[arg-type]
        sys.exit(1)


if __name__ == "__main__":
    main()
