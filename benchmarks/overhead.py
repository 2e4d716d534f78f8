"""Gateway overhead: what ratd adds to a chat call, beside LiteLLM and the direct call.

One zero-latency fake OpenAI upstream (static replies: a precomputed completion, or a
stream of --chunks content chunks written one SSE event per write) serves three paths,
measured in the same run:

  direct     this process -> HTTP -> upstream
  ratd       this process -> gRPC -> ratd -> HTTP -> upstream
  ratd_auth  the same through a second ratd with [auth] mode = "api_key" and one tenant,
             the client sending its key (authorization: Bearer ...)
  ratd_gov   ratd_auth plus governance: the tenant has rate, token and budget limits (set
             high enough never to refuse), [state] backend = "memory"
  ratd_gov_redis  the same on [state] backend = "redis", a redis-server started here
  ratd-http  this process -> HTTP (OpenAI API, ratd's [http] door) -> ratd -> HTTP -> upstream
  litellm    this process -> HTTP -> LiteLLM proxy (one worker) -> HTTP -> upstream
  floor      this process -> gRPC -> floor gateway -> HTTP -> upstream
  ratd_base  the same as ratd, from an older commit (--base REV: a temporary git worktree)

The floor (benchmarks/floor_gateway.py) is the least a gateway on ratd's own stack can do
(grpc.aio under uvloop, one pooled aiohttp session; no routing, validation, metrics,
logs or retries), on the same pinned core as ratd: ratd / floor is what ratd's features
cost, in calls/s and in the gateway's CPU per call. ``--base REV`` adds ratd at revision
REV to the same run: ratd / ratd_base says whether a change made ratd faster or slower,
free of the drift between two runs.

``--paths`` takes path names or a set: ``grpc`` (direct, ratd, litellm: the default),
``http`` (direct, ratd-http, litellm: both gateways take the same OpenAI request), ``gov``
(direct, ratd_auth, ratd_gov, ratd_gov_redis: what governance costs per call, as ratios
to ratd_auth in the same run, and Redis commands per call), ``all``.

This process is the load generator; the upstream, ratd and LiteLLM are processes of their
own. On 2 cores the gateway gets one core to itself and the load generator shares the
other with the upstream (--no-pin to let the kernel place everything). For each mode
(unary Chat, streamed ChatStream) and concurrency, the paths take turns in rounds, in a
rotating order, so that drift in the machine's load hits them alike. Each turn is bounded
by --seconds and --max-requests.

Printed and written to benchmarks/results/<date>.json (section "overhead"): p50/p99
latency, added p50/p99 over direct, time to first token (first content chunk) for
streams, content chunks received per stream, requests/s, the ratios ratd / LiteLLM,
ratd / direct and ratd / floor (calls/s, and gateway CPU per call), ratd's CPU per call
with auth over without (ratd_auth / ratd), each gateway's RSS idle and after the run, and
ratd's idle RSS without local models. --profile attaches py-spy to ratd during an extra
unary run (after the measured ones, so it perturbs none of them) and writes the folded
stacks and a summary.

    python benchmarks/overhead.py                       # everything, ~6 minutes
    python benchmarks/overhead.py --quick               # 1 round, 1 s turns, concurrency 1,64
    python benchmarks/overhead.py --paths direct,ratd --modes unary --concurrency 1,64
    python benchmarks/overhead.py --paths http --quick   # the OpenAI HTTP door vs LiteLLM
    python benchmarks/overhead.py --paths ratd,floor --base HEAD~3 --modes unary --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson

import benchlib

sys.path.insert(0, str(benchlib.REPO / "client"))

from ratatoskr.v1 import chat_pb2, ratatoskr_pb2_grpc

MODEL = "gpt-4o-mini"
PROMPT = "Say hello in one short sentence."
PATHS = (
    "direct",
    "ratd",
    "ratd_auth",
    "ratd_gov",
    "ratd_gov_redis",
    "ratd-http",
    "litellm",
    "floor",
    "ratd_base",
)
PATH_SETS = {
    "grpc": ["direct", "ratd", "litellm"],
    "http": ["direct", "ratd-http", "litellm"],
    "gov": ["direct", "ratd_auth", "ratd_gov", "ratd_gov_redis"],
    "all": [p for p in PATHS if p != "ratd_base"],  # that one needs --base
}
MODES = ("unary", "stream")
GATEWAYS = PATHS[1:]  # all but direct
# Paths whose client sends CALLER_KEY.
KEYED = ("ratd_auth", "ratd_gov", "ratd_gov_redis")
RATDS = ("ratd", "ratd-http")
# The caller key of the ratd_auth path, and the tenant that holds its hash.
CALLER_KEY = "rat_bench-overhead-0123456789abcdef"
AUTH_TOML = (
    '[auth]\nmode = "api_key"\n[tenants.bench]\n'
    f'api_key_sha256 = ["{hashlib.sha256(CALLER_KEY.encode()).hexdigest()}"]\n'
    'roles = ["inference"]\n'
)
# Limits that never refuse a benchmark call, but are all checked and settled on each.
GOV_TOML = (
    "requests_per_minute = 1000000000\ntokens_per_minute = 1000000000000\n"
    "user_requests_per_minute = 1000000000\n"
    "budget_usd_daily = 1000000.0\nbudget_usd_monthly = 10000000.0\n"
)

# A call returns (perf_counter time of the first content chunk, content chunks) for
# streams and (None, 0) for unary calls.
Call = Callable[[], Awaitable[tuple[float | None, int]]]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    wall: float = 0.0
    # CPU seconds each process of the path used during the turns, by role: "client" (this
    # process), "gateway" (ratd or LiteLLM; absent for the direct path), "upstream".
    cpu: dict[str, float] = field(default_factory=dict)
    # Calls/s of each turn, in order: a ratio of two paths taken round by round, between
    # turns moments apart, is free of the machine's drift over the run.
    turns: list[float] = field(default_factory=list)

    def add_error(self, err: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(err).__name__}: {err}"[:300]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu(role: str, pid: int) -> float:
    # This process (the client) is the parent of the upstream and the gateways.
    return benchlib.tree_cpu(pid, children=role != "client")


async def run_load(
    call: Call,
    concurrency: int,
    seconds: float,
    max_requests: int,
    tally: Tally,
    *,
    pids: Mapping[str, int] | None = None,
) -> None:
    """``concurrency`` workers call until ``seconds`` have passed or ``max_requests`` have
    started (each worker starts at least one call, so a slow path still gets a sample).
    The CPU time the processes in ``pids`` (role -> pid) spend meanwhile goes into the tally."""
    started = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal started
        first = True
        while first or (started < max_requests and time.perf_counter() < deadline):
            first = False
            started += 1
            began = time.perf_counter()
            try:
                first_chunk, chunks = await call()
            except (aiohttp.ClientError, grpc.RpcError, AssertionError, TimeoutError) as err:
                tally.add_error(err)
                continue
            tally.latencies.append(time.perf_counter() - began)
            if first_chunk is not None:
                tally.ttfts.append(first_chunk - began)
                tally.chunks.append(chunks)

    pids = pids or {}
    cpu_before = {role: _cpu(role, pid) for role, pid in pids.items()}
    before = len(tally.latencies)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    tally.wall += wall
    tally.turns.append((len(tally.latencies) - before) / wall if wall else 0.0)
    for role, pid in pids.items():
        used = _cpu(role, pid) - cpu_before[role]
        tally.cpu[role] = tally.cpu.get(role, 0.0) + used


# -- the three paths ------------------------------------------------------------------------------


def http_calls(session: aiohttp.ClientSession, url: str, key: str) -> tuple[Call, Call]:
    """Unary and streamed chat completions against an OpenAI-compatible ``url``."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    messages = [{"role": "user", "content": PROMPT}]
    unary_body = orjson.dumps({"model": MODEL, "messages": messages})
    stream_body = orjson.dumps({"model": MODEL, "messages": messages, "stream": True})
    endpoint = f"{url}/chat/completions"

    async def unary() -> tuple[float | None, int]:
        async with session.post(endpoint, data=unary_body, headers=headers) as response:
            body = await response.read()
            assert response.status == 200, f"HTTP {response.status}: {body[:200]!r}"
            assert orjson.loads(body)["choices"][0]["message"]["content"]
        return None, 0

    async def stream() -> tuple[float | None, int]:
        first: float | None = None
        chunks = 0
        async with session.post(endpoint, data=stream_body, headers=headers) as response:
            assert response.status == 200, f"HTTP {response.status}"
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                choices = orjson.loads(line[6:]).get("choices")
                if choices and (choices[0].get("delta") or {}).get("content"):
                    chunks += 1
                    if first is None:
                        first = time.perf_counter()
        assert first is not None, "the stream carried no content"
        return first, chunks

    return unary, stream


def grpc_calls(
    stub: ratatoskr_pb2_grpc.RatatoskrStub, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[Call, Call]:
    messages = [chat_pb2.Message(role=chat_pb2.ROLE_USER, content=PROMPT)]
    options = chat_pb2.ChatOptions(model=MODEL)
    unary_request = chat_pb2.ChatRequest(messages=messages, options=options)
    stream_request = chat_pb2.ChatStreamRequest(messages=messages, options=options)

    async def unary() -> tuple[float | None, int]:
        reply = await stub.Chat(unary_request, metadata=metadata)
        assert reply.content
        return None, 0

    async def stream() -> tuple[float | None, int]:
        first: float | None = None
        chunks = 0
        async for event in stub.ChatStream(stream_request, metadata=metadata):
            if event.WhichOneof("event") == "content" and event.content:
                chunks += 1
                if first is None:
                    first = time.perf_counter()
        assert first is not None, "the stream carried no content"
        return first, chunks

    return unary, stream


# -- measuring ------------------------------------------------------------------------------------


def summarise(tally: Tally) -> dict[str, Any]:
    row: dict[str, Any] = {"requests": len(tally.latencies), "errors": tally.errors}
    if tally.first_error:
        row["first_error"] = tally.first_error
    if tally.latencies:
        row |= {
            "p50_ms": 1000 * statistics.median(tally.latencies),
            "p99_ms": 1000 * percentile(tally.latencies, 0.99),
            "mean_ms": 1000 * statistics.fmean(tally.latencies),
            "rps": len(tally.latencies) / tally.wall if tally.wall else 0.0,
            "rps_turns": tally.turns,
        }
        if tally.cpu:
            calls = len(tally.latencies) + tally.errors
            row["cpu_us_per_call"] = {role: 1e6 * t / calls for role, t in tally.cpu.items()}
    if tally.ttfts:
        row |= {
            "ttft_p50_ms": 1000 * statistics.median(tally.ttfts),
            "ttft_p99_ms": 1000 * percentile(tally.ttfts, 0.99),
            "chunks_mean": statistics.fmean(tally.chunks),
            "chunks_min": min(tally.chunks),
        }
    return row


def compare(mode: str, concurrency: int, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": mode, "concurrency": concurrency, "paths": rows}
    direct = rows.get("direct", {})
    added: dict[str, dict[str, float]] = {}
    for gateway in GATEWAYS:
        row = rows.get(gateway, {})
        if "p50_ms" not in row or "p50_ms" not in direct:
            continue
        added[gateway] = {
            "p50_ms": row["p50_ms"] - direct["p50_ms"],
            "p99_ms": row["p99_ms"] - direct["p99_ms"],
        }
        if "ttft_p50_ms" in row and "ttft_p50_ms" in direct:
            added[gateway]["ttft_p50_ms"] = row["ttft_p50_ms"] - direct["ttft_p50_ms"]
            added[gateway]["ttft_p99_ms"] = row["ttft_p99_ms"] - direct["ttft_p99_ms"]
    result["added"] = added
    ratios: dict[str, float] = {}

    def rps(path: str) -> float:
        return float(rows.get(path, {}).get("rps", 0.0))

    for ratd in RATDS:
        name = ratd.replace("-", "_")
        if rps(ratd) and rps("litellm"):
            ratios[f"{name}_over_litellm_rps"] = rps(ratd) / rps("litellm")
        if rps(ratd) and rps("direct"):
            ratios[f"{name}_over_direct_rps"] = rps(ratd) / rps("direct")
    if rps("litellm") and rps("direct"):
        ratios["litellm_over_direct_rps"] = rps("litellm") / rps("direct")
    if rps("ratd") and rps("floor"):
        ratios["ratd_over_floor_rps"] = rps("ratd") / rps("floor")
        ratios["ratd_over_floor_rps_by_round"] = by_round(rows, "ratd", "floor")

    def cpu(path: str) -> float:
        return float(rows.get(path, {}).get("cpu_us_per_call", {}).get("gateway", 0.0))

    if cpu("ratd") and cpu("floor"):
        ratios["ratd_over_floor_cpu_per_call"] = cpu("ratd") / cpu("floor")
    if rps("ratd") and rps("ratd_base"):  # this checkout against --base, in one run
        ratios["ratd_over_ratd_base_rps"] = rps("ratd") / rps("ratd_base")
        ratios["ratd_over_ratd_base_rps_by_round"] = by_round(rows, "ratd", "ratd_base")
    if cpu("ratd") and cpu("ratd_base"):
        ratios["ratd_over_ratd_base_cpu_per_call"] = cpu("ratd") / cpu("ratd_base")
    if cpu("ratd") and cpu("ratd_auth"):
        ratios["ratd_auth_over_ratd_cpu"] = cpu("ratd_auth") / cpu("ratd")
        result["auth_cpu_us_per_call"] = cpu("ratd_auth") - cpu("ratd")
    for gov in ("ratd_gov", "ratd_gov_redis"):  # governance over the same auth, no limits
        if cpu(gov) and cpu("ratd_auth"):
            ratios[f"{gov}_over_ratd_auth_cpu"] = cpu(gov) / cpu("ratd_auth")
            result[f"{gov}_cpu_us_per_call"] = cpu(gov) - cpu("ratd_auth")
    result["ratios"] = ratios
    return result


def by_round(rows: dict[str, dict[str, Any]], path: str, other: str) -> float:
    """The median over rounds of ``path``'s calls/s over ``other``'s in the same round."""
    pairs = zip(rows[path]["rps_turns"], rows[other]["rps_turns"], strict=True)
    return statistics.median(a / b for a, b in pairs if b)


def path_pids(path: str, pids: Mapping[str, int]) -> dict[str, int]:
    """The processes a call on ``path`` runs through, by role."""
    roles = {"client": os.getpid(), "upstream": pids["upstream"]}
    if path in pids:
        roles["gateway"] = pids[path]
    return roles


async def redis_counts(url: str) -> tuple[int, int]:
    """(script calls, socket reads) of the Redis at ``url`` so far: EVALSHA/EVAL calls, and
    total_reads_processed, which counts round trips (a pipeline arrives in one read)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        commands = await client.info("commandstats")
        stats = await client.info("stats")
    finally:
        await client.aclose()
    scripts = sum(
        int(commands.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )
    return scripts, int(stats["total_reads_processed"])


async def measure(
    calls: dict[str, dict[str, Call]],
    args: argparse.Namespace,
    pids: dict[str, int],
    redis_url: str = "",
) -> list[dict[str, Any]]:
    """``pids``: the gateways' and the upstream's processes, by name ("upstream", "ratd",
    "litellm"), whose CPU time is measured with each path's turns. ``redis_url``: the
    Redis of ratd_gov_redis, whose script calls are counted during its turns."""
    results = []
    paths = list(calls)
    for mode in args.modes:
        for concurrency in args.concurrency:
            tallies = {path: Tally() for path in paths}
            scripts = reads = 0
            for path in paths:  # warm-up: connections, caches, lazy imports
                await run_load(calls[path][mode], concurrency, args.warmup, 10**9, Tally())
            for round_ in range(args.rounds):
                shift = round_ % len(paths)
                for path in paths[shift:] + paths[:shift]:
                    counted = redis_url and path == "ratd_gov_redis"
                    before = await redis_counts(redis_url) if counted else (0, 0)
                    await run_load(
                        calls[path][mode],
                        concurrency,
                        args.seconds,
                        args.max_requests,
                        tallies[path],
                        pids=path_pids(path, pids),
                    )
                    if counted:
                        await asyncio.sleep(0.2)  # settlements run just after each answer
                        after = await redis_counts(redis_url)
                        scripts += after[0] - before[0]
                        # Less this function's own reads (a connection, two INFO).
                        reads += after[1] - before[1] - 3
            row = compare(mode, concurrency, {path: summarise(tallies[path]) for path in paths})
            gov = tallies.get("ratd_gov_redis")
            if gov is not None and scripts:
                count = len(gov.latencies) + gov.errors
                row["redis_scripts_per_call"] = scripts / count
                row["redis_round_trips_per_call"] = reads / count
            results.append(row)
            print_row(row, args.expected_chunks)
    return results


async def profile_ratd(
    call: Call,
    *,
    pid: int,
    concurrency: int,
    seconds: float,
    prefix: Path,
    cores: frozenset[int] | None,
    native: bool,
) -> dict[str, Any]:
    """py-spy on ratd during ``seconds`` of unary calls at ``concurrency``."""
    pyspy = benchlib.which("py-spy")
    if pyspy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    folded = prefix.with_name(prefix.name + ".folded")
    log_path = prefix.with_name(prefix.name + ".py-spy.log")
    process = benchlib.spawn(
        [
            pyspy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--output",
            str(folded),
            *(["--native"] if native else []),
            "--threads",
        ],
        cores=cores,
        log_path=log_path,
    )
    await asyncio.sleep(1.0)  # attach
    tally = Tally()
    await run_load(call, concurrency, seconds + 1, 10**9, tally)
    code = await asyncio.to_thread(process.wait)
    if code != 0 or not folded.is_file():
        return {"skipped": f"py-spy failed ({code}): {benchlib.tail(log_path, 5)}"}
    log_path.unlink(missing_ok=True)
    compressed = folded.with_name(folded.name + ".gz")  # ~10x smaller, for the repository
    with folded.open("rb") as source, gzip.open(compressed, "wb") as target:
        shutil.copyfileobj(source, target)
    folded.unlink()
    folded = compressed
    text = benchlib.summarise_profile(folded, f"ratd, unary Chat, concurrency {concurrency}")
    summary = prefix.with_name(prefix.name + ".txt")
    summary.write_text(text)
    return {
        "folded": str(folded.relative_to(benchlib.REPO)),
        "summary": str(summary.relative_to(benchlib.REPO)),
        "concurrency": concurrency,
        "seconds": seconds,
        "requests_during_profile": len(tally.latencies),
    }


# -- report ---------------------------------------------------------------------------------------


def _ratio_label(key: str) -> str:
    """``ratd_over_floor_rps`` -> ``ratd/floor calls/s``."""
    label = key.replace("_over_", "/")
    label = label.replace("_cpu_per_call", " CPU us/call")
    label = label.replace("_rps_by_round", " calls/s by round (median)")
    return label.replace("_rps", " calls/s")


def print_row(row: dict[str, Any], expected_chunks: int) -> None:
    stream = row["mode"] == "stream"
    header = f"{row['mode']} c={row['concurrency']}"
    print(f"\n{header}")
    columns = f"  {'path':<9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}"
    columns += f" {'CPU us/call: client':>19} {'gateway':>7} {'upstream':>8}"
    if stream:
        columns += f" {'TTFT50':>8} {'TTFT99':>8} {'chunks':>7}"
    print(columns)
    for path, values in row["paths"].items():
        if "p50_ms" not in values:
            print(f"  {path:<9} no successful request ({values.get('first_error', '')})")
            continue
        line = (
            f"  {path:<9} {values['p50_ms']:>8.2f} {values['p99_ms']:>8.2f} "
            f"{values['rps']:>8.0f} {values['errors']:>6}"
        )
        cpu = values.get("cpu_us_per_call", {})
        line += f" {cpu.get('client', 0):>19.0f} {cpu.get('gateway', 0):>7.0f}"
        line += f" {cpu.get('upstream', 0):>8.0f}"
        if stream and "ttft_p50_ms" in values:
            line += (
                f" {values['ttft_p50_ms']:>8.2f} {values['ttft_p99_ms']:>8.2f} "
                f"{values['chunks_mean']:>7.1f}"
            )
        print(line)
    for gateway, added in row["added"].items():
        text = f"  {gateway} adds p50 {added['p50_ms']:.2f} ms, p99 {added['p99_ms']:.2f} ms"
        if "ttft_p50_ms" in added:
            text += f", TTFT p50 {added['ttft_p50_ms']:.2f} ms"
        print(text)
    ratios = row["ratios"]
    if ratios:
        print("  " + ", ".join(f"{_ratio_label(k)} {v:.2f}" for k, v in ratios.items()))
    if "auth_cpu_us_per_call" in row:
        print(
            f"  auth: ratd CPU {row['ratios']['ratd_auth_over_ratd_cpu']:.3f}x per call, "
            f"{row['auth_cpu_us_per_call']:+.1f} us/call (ratd_auth - ratd)"
        )
    for gov in ("ratd_gov", "ratd_gov_redis"):
        if f"{gov}_cpu_us_per_call" in row:
            print(
                f"  governance: {gov} CPU {row['ratios'][f'{gov}_over_ratd_auth_cpu']:.3f}x "
                f"per call, {row[f'{gov}_cpu_us_per_call']:+.1f} us/call ({gov} - ratd_auth)"
            )
    if "redis_scripts_per_call" in row:
        print(
            f"  redis: {row['redis_round_trips_per_call']:.2f} round trips and "
            f"{row['redis_scripts_per_call']:.2f} scripts per call (ratd_gov_redis: the "
            "reservation on the call's path, settlements riding along with later ones)"
        )
    if stream:
        for path, values in row["paths"].items():
            if values.get("chunks_min", expected_chunks) < expected_chunks:
                got = values["chunks_min"]
                print(f"  WARNING: {path} delivered {got} of {expected_chunks} chunks")


# -- main -----------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def name_list(
    choices: tuple[str, ...], sets: Mapping[str, list[str]] | None = None
) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names: list[str] = []
        for x in text.split(","):
            for name in (sets or {}).get(x, [x] if x else []):
                if name not in names:
                    names.append(name)
        unknown = set(names) - set(choices)
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(sorted(unknown))}")
        return names

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--paths", type=name_list(PATHS, PATH_SETS), default=list(PATH_SETS["grpc"])
    )
    parser.add_argument("--modes", type=name_list(MODES), default=list(MODES))
    parser.add_argument("--concurrency", type=int_list, default=[1, 16, 64, 256])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one turn")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per path, seconds")
    parser.add_argument("--max-requests", type=int, default=20000, help="cap of one turn")
    parser.add_argument("--chunks", type=int, default=16, help="content chunks per stream")
    parser.add_argument(
        "--chunk-interval-ms", type=float, default=0.0, help="upstream pause between chunks"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy ratd during an extra unary run"
    )
    parser.add_argument("--profile-concurrency", type=int, default=64)
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument(
        "--profile-python-only",
        action="store_true",
        help="py-spy without --native (C frames then count toward their Python caller)",
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s turns, c=1,64")
    parser.add_argument(
        "--results", type=Path, default=None, help="results file (default results/<date>.json)"
    )
    parser.add_argument("--no-results", action="store_true", help="print only")
    parser.add_argument(
        "--base",
        metavar="REV",
        help="also run ratd at git revision REV (a temporary worktree) as the path ratd_base",
    )
    args = parser.parse_args(argv)
    if args.base and "ratd_base" not in args.paths:
        args.paths.append("ratd_base")
    if "ratd_base" in args.paths and not args.base:
        parser.error("the path ratd_base needs --base REV")
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 1.0, 0.3
        if args.concurrency == [1, 16, 64, 256]:
            args.concurrency = [1, 64]
        args.profile_seconds = min(args.profile_seconds, 5.0)
    args.expected_chunks = args.chunks
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = benchlib.core_plan(not args.no_pin)
    if plan.pinned:
        benchlib.pin(os.getpid(), plan.load)
    benchlib.log(f"cores: {plan.describe()}")
    processes: list[subprocess.Popen[bytes]] = []
    output: dict[str, Any] = {
        "cores": plan.as_dict(),
        "settings": {
            k: getattr(args, k)
            for k in (
                "paths",
                "modes",
                "concurrency",
                "rounds",
                "seconds",
                "warmup",
                "max_requests",
                "chunks",
                "chunk_interval_ms",
            )
        },
        "model": MODEL,
    }
    with (
        benchlib.temporary_directory("ratatoskr-overhead-") as tmp,
        contextlib.ExitStack() as checkouts,
    ):
        try:
            upstream, upstream_url = benchlib.start_upstream(
                plan.upstream if plan.pinned else None, args.chunks, args.chunk_interval_ms
            )
            processes.append(upstream)
            gateway_cores = plan.gateway if plan.pinned else None
            gateways: dict[str, int] = {}
            addresses: dict[str, str] = {}
            floor_address = litellm = None
            ratd_http = ""
            redis_url = ""
            if "ratd_gov_redis" in args.paths:
                redis, redis_url = start_redis(
                    tmp / "redis", plan.upstream if plan.pinned else None
                )
                processes.append(redis)
            state_redis = f'[state]\nbackend = "redis"\nredis_url = "{redis_url}"\n'
            repos: dict[str, Path] = {}
            if args.base:  # the older ratd, from a worktree removed after the run
                repos["ratd_base"] = checkouts.enter_context(
                    benchlib.checkout(args.base, tmp / "base")
                )
            for path, auth in (
                ("ratd_base", ""),
                ("ratd", ""),
                ("ratd_auth", AUTH_TOML),
                ("ratd_gov", AUTH_TOML + GOV_TOML),
                ("ratd_gov_redis", AUTH_TOML + GOV_TOML + state_redis),
            ):
                serves_http = path == "ratd" and "ratd-http" in args.paths
                if path not in args.paths and not serves_http:
                    continue
                door = ""
                if serves_http:  # one process serves both doors
                    ratd_http = f"127.0.0.1:{benchlib.free_port()}"
                    door = f'[http]\naddress = "{ratd_http}"\n'
                # No [providers.local]: the idle RSS goal is for ratd without local models.
                ratd, addresses[path] = benchlib.start_ratd(
                    f'[providers.openai]\nbase_url = "{upstream_url}"\n'
                    f'[registry]\ncache_path = "{tmp / path / "registry.json"}"\n' + auth + door,
                    tmp / path,
                    gateway_cores,
                    repo=repos.get(path),
                )
                processes.append(ratd)
                for name in (path, "ratd-http" if serves_http else ""):
                    if name in args.paths:
                        gateways[name] = ratd.pid
            if "floor" in args.paths:
                floor, floor_address = benchlib.start_floor(upstream_url, gateway_cores)
                processes.append(floor)
                gateways["floor"] = floor.pid
            if "litellm" in args.paths:
                try:
                    litellm = benchlib.start_litellm(
                        upstream_url, MODEL, tmp / "litellm", gateway_cores
                    )
                except (benchlib.InstallError, RuntimeError) as err:
                    benchlib.log(f"LiteLLM skipped: {err}")
                    output["litellm_skipped"] = str(err)
                    args.paths = [p for p in args.paths if p != "litellm"]
                else:
                    processes.append(litellm.process)
                    gateways["litellm"] = litellm.process.pid
                    output["litellm_version"] = benchlib.LITELLM_VERSION
            await asyncio.sleep(2.0)  # let start-up work settle before the idle reading
            output["idle_rss_mb"] = {
                name: benchlib.tree_rss(pid) / benchlib.MB for name, pid in gateways.items()
            }
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=600)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                grpc.aio.insecure_channel(addresses.get("ratd", "127.0.0.1:1")) as channel,
                grpc.aio.insecure_channel(floor_address or "127.0.0.1:1") as floor_channel,
                contextlib.AsyncExitStack() as stack,
            ):
                keyed = {
                    path: await stack.enter_async_context(
                        grpc.aio.insecure_channel(addresses[path])
                    )
                    for path in (*KEYED, "ratd_base")
                    if path in addresses
                }
                calls: dict[str, dict[str, Call]] = {}
                for path in args.paths:
                    if path == "direct":
                        unary, stream = http_calls(session, upstream_url, "sk-bench")
                    elif path == "ratd":
                        unary, stream = grpc_calls(ratatoskr_pb2_grpc.RatatoskrStub(channel))
                    elif path == "floor":
                        stub = ratatoskr_pb2_grpc.RatatoskrStub(floor_channel)
                        unary, stream = grpc_calls(stub)
                    elif path == "ratd-http":
                        unary, stream = http_calls(session, f"http://{ratd_http}/v1", "unused")
                    elif path == "ratd_base":
                        unary, stream = grpc_calls(ratatoskr_pb2_grpc.RatatoskrStub(keyed[path]))
                    elif path in KEYED:
                        unary, stream = grpc_calls(
                            ratatoskr_pb2_grpc.RatatoskrStub(keyed[path]),
                            (
                                ("authorization", f"Bearer {CALLER_KEY}"),
                                ("x-ratatoskr-user", "bench-user"),
                            ),
                        )
                    else:
                        assert litellm is not None
                        unary, stream = http_calls(session, litellm.url + "/v1", litellm.master_key)
                    calls[path] = {"unary": unary, "stream": stream}
                for path, pair in calls.items():  # one checked call each before timing
                    await pair["unary"]()
                    _, chunks = await pair["stream"]()
                    benchlib.log(f"{path}: ok, {chunks} content chunks per stream")
                pids = {**gateways, "upstream": upstream.pid}
                output["results"] = await measure(calls, args, pids, redis_url)
                output["rss_after_mb"] = {
                    name: benchlib.tree_rss(pid) / benchlib.MB for name, pid in gateways.items()
                }
                if args.profile and "ratd" in calls:
                    prefix = benchlib.RESULTS / f"{args.date}-ratd-profile"
                    prefix.parent.mkdir(parents=True, exist_ok=True)
                    benchlib.log("profiling ratd with py-spy ...")
                    output["profile"] = await profile_ratd(
                        calls["ratd"]["unary"],
                        pid=gateways["ratd"],
                        concurrency=args.profile_concurrency,
                        seconds=args.profile_seconds,
                        prefix=prefix,
                        cores=plan.load if plan.pinned else None,
                        native=not args.profile_python_only,
                    )
        finally:
            for process in reversed(processes):
                benchlib.stop(process)
    return output


def start_redis(workdir: Path, cores: frozenset[int] | None) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server (no persistence) on a free loopback port, for ratd_gov_redis."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("ratd_gov_redis needs redis-server (apt-get install redis-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = benchlib.free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    benchlib.wait_for(ready, process, "redis-server", 20)
    if cores is not None:
        benchlib.pin(process.pid, cores)
    return process, f"redis://127.0.0.1:{port}/0"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started_on = benchlib.machine()  # before the run: the load average and commit it met
    args.date = (args.results.stem if args.results else None) or benchlib.today()
    try:
        import uvloop
    except ImportError:
        output = asyncio.run(run(args))
    else:
        output = uvloop.run(run(args))
    print()
    for name, value in output["idle_rss_mb"].items():
        after = output["rss_after_mb"][name]
        print(f"{name} RSS idle {value:.1f} MB, after the run {after:.1f} MB")
    if "profile" in output:
        print(f"profile: {output['profile']}")
    if not args.no_results:
        path = args.results or benchlib.results_path(args.date)
        benchlib.update_results(path, "overhead", output, started_on)
        print(f"written: {path} (section overhead)")


if __name__ == "__main__":
    main()
