"""Embedding throughput of ratd against raw ONNX Runtime on the same model file.

    python benchmarks/embeddings.py                 # the three measurements and the ratio
    python benchmarks/embeddings.py --sweep         # session options, raw (how sessions.py chose)

1. raw: onnxruntime in this process, ratd's session options, tokenize + pad + run + pool at
   each batch size; the best batch size is the ceiling.
2. ratd, 64 concurrent clients each sending one sentence per Embed call (a spawned ratd,
   gRPC over loopback; the clients run in this process on the same machine).
3. ratd, sequential single Embed calls (one client, one sentence at a time).

Prints sentences/s, the ratio ratd (64 clients) / raw best, and ratd's RSS before the model
is loaded, after it is loaded, and after the idle timeout unloads it. The model is
../shared/assets/models/all-MiniLM-L6-v2 (fp32) when present, else the packaged int8 one.
Every loop is bounded by a request count; numbers on a shared machine vary run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "server"), str(REPO / "client")]

from ratatoskr import ServiceClient  # noqa: E402
from ratd.local import sources  # noqa: E402
from ratd.local.catalog import BUILTIN  # noqa: E402
from ratd.local.embeddings import normalize_rows, pool  # noqa: E402
from ratd.local.sessions import SessionSettings, default_threads, session_options  # noqa: E402

SHARED_MODEL = REPO.parent / "shared" / "assets" / "models" / "all-MiniLM-L6-v2"
WORDS = [
    "the",
    "a",
    "river",
    "gateway",
    "model",
    "token",
    "batch",
    "memory",
    "server",
    "client",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "network",
    "inference",
    "local",
    "remote",
    "message",
    "tree",
    "eagle",
    "serpent",
    "squirrel",
    "carries",
    "between",
    "world",
    "every",
    "morning",
    "data",
    "vector",
    "sentence",
    "meaning",
    "close",
    "together",
    "far",
    "apart",
]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))) for _ in range(count)]


def model_files() -> tuple[Path, Path, str]:
    """(model.onnx, tokenizer.json, label)."""
    if (SHARED_MODEL / "model.onnx").is_file():
        return SHARED_MODEL / "model.onnx", SHARED_MODEL / "tokenizer.json", f"fp32 {SHARED_MODEL}"
    spec = BUILTIN["all-MiniLM-L6-v2"]
    hub = sources.HubSettings(Path(tempfile.mkdtemp()), None, allow_downloads=False)
    files = sources.resolve(spec, Path(tempfile.mkdtemp()), hub)
    return files.onnx, files.require("tokenizer.json"), f"int8 ({files.source})"


# -- raw onnxruntime ---------------------------------------------------------------------------


class Raw:
    def __init__(self, onnx: Path, tokenizer: Path, settings: SessionSettings) -> None:
        self.session = ort.InferenceSession(
            str(onnx), session_options(settings), providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(256)

    def embed(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        (hidden,) = self.session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        return normalize_rows(pool(hidden, mask, ("mean",)))

    def rate(self, texts: list[str], batch: int, repeats: int = 3) -> float:
        """Median sentences/s over ``repeats`` passes through ``texts``."""
        self.embed(texts[:batch])
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            for i in range(0, len(texts), batch):
                self.embed(texts[i : i + batch])
            rates.append(len(texts) / (time.perf_counter() - started))
        return statistics.median(rates)


def raw_best(onnx: Path, tokenizer: Path, texts: list[str]) -> tuple[float, int, dict[int, float]]:
    raw = Raw(onnx, tokenizer, SessionSettings())
    rates = {batch: raw.rate(texts, batch) for batch in (1, 8, 16, 32, 64, 128)}
    best = max(rates, key=lambda b: rates[b])
    return rates[best], best, rates


def sweep(onnx: Path, tokenizer: Path) -> None:
    texts = sentences(256, seed=1)
    long_texts = [" ".join(sentences(20, seed=i)) for i in range(16)]  # ~256 tokens each
    physical = default_threads()
    combos = list(
        itertools.product(
            sorted({1, physical, os.cpu_count() or 1}),
            (False, True),
            ("basic", "all"),
            (True, False),
        )
    )
    results: dict[tuple[object, ...], list[tuple[float, float]]] = {c: [] for c in combos}
    for round_ in range(2):  # interleaved: drift on a shared machine hits every option alike
        for combo in combos:
            threads, spinning, optimization, arena = combo
            raw = Raw(
                onnx, tokenizer, SessionSettings("cpu", threads, spinning, optimization, arena)
            )
            results[combo].append(
                (raw.rate(texts, 32, repeats=1), raw.rate(long_texts, 8, repeats=1))
            )
        print(f"  sweep round {round_ + 1}/2 done", file=sys.stderr)
    print(
        f"{'threads':>7} {'spin':>4} {'optimisation':>12} {'arena':>5} "
        f"{'short/s (b=32)':>15} {'256-token/s (b=8)':>18}"
    )
    for combo in combos:
        short = statistics.median(r[0] for r in results[combo])
        long = statistics.median(r[1] for r in results[combo])
        threads, spinning, optimization, arena = combo
        print(
            f"{threads:>7} {int(spinning):>4} {optimization:>12} {int(arena):>5} "
            f"{short:>15.0f} {long:>18.1f}"
        )


# -- ratd ---------------------------------------------------------------------------------------


def spawn_ratd(
    workdir: Path, model_dir: Path | None, idle: float
) -> tuple[subprocess.Popen[bytes], str]:
    model_table = (
        f'[providers.local.models.all-MiniLM-L6-v2]\npath = "{model_dir}"\n' if model_dir else ""
    )
    config = workdir / "config.toml"
    config.write_text(
        f"""
[server]
address = "127.0.0.1:0"
log_level = "warning"
max_concurrent_requests = 1024
[providers.local]
models_dir = "{workdir / "models"}"
hub_downloads = false
idle_timeout_secs = {idle}
{model_table}
"""
    )
    ready = workdir / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "ratd", "--config", str(config), "--ready-file", str(ready)],
        env={**os.environ, "PYTHONPATH": f"{REPO / 'server'}:{REPO / 'client'}"},
        stdout=(workdir / "ratd.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"ratd did not start:\n{(workdir / 'ratd.log').read_text()}")
        time.sleep(0.05)
    return process, ready.read_text().strip()


async def concurrent_rate(address: str, texts: list[str], clients: int, total: int) -> float:
    channels = [await ServiceClient.connect(address, timeout=60) for _ in range(8)]
    counter = itertools.count()

    async def worker(index: int, calls: int) -> None:
        client = channels[index % len(channels)]
        while (n := next(counter)) < calls:
            await client.embed(texts[n % len(texts)], "all-MiniLM-L6-v2")

    await asyncio.gather(*(worker(i, min(total, 500)) for i in range(clients)))  # warm-up
    counter = itertools.count()
    started = time.perf_counter()
    await asyncio.gather(*(worker(i, total) for i in range(clients)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return total / elapsed


async def sequential_rate(address: str, texts: list[str], total: int) -> float:
    async with await ServiceClient.connect(address, timeout=60) as client:
        for text in texts[:20]:
            await client.embed(text, "all-MiniLM-L6-v2")
        started = time.perf_counter()
        for i in range(total):
            await client.embed(texts[i % len(texts)], "all-MiniLM-L6-v2")
        return total / (time.perf_counter() - started)


async def ratd_figures(  # noqa: PLR0917
    model_dir: Path | None, texts: list[str], clients: int, total: int, sequential: int, idle: float
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        process, address = spawn_ratd(Path(tmp), model_dir, idle)
        ps = psutil.Process(process.pid)
        try:
            figures = {"rss_before": ps.memory_info().rss}
            async with await ServiceClient.connect(address, timeout=120) as client:
                loaded = await client.load_model("all-MiniLM-L6-v2")
                figures["rss_loaded"] = ps.memory_info().rss
                figures["measured"] = loaded.bytes
            figures["concurrent"] = await concurrent_rate(address, texts, clients, total)
            figures["sequential"] = await sequential_rate(address, texts, sequential)
            figures["rss_after_work"] = ps.memory_info().rss
            async with await ServiceClient.connect(address, timeout=60) as client:
                deadline = time.monotonic() + idle + 60
                while await client.list_loaded():
                    if time.monotonic() > deadline:
                        raise SystemExit("the model was not unloaded after the idle timeout")
                    await asyncio.sleep(0.1)
            figures["rss_unloaded"] = ps.memory_info().rss
            return figures
        finally:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--requests", type=int, default=3000, help="Embed calls of the concurrent run"
    )
    parser.add_argument(
        "--sequential", type=int, default=300, help="Embed calls of the sequential run"
    )
    parser.add_argument("--idle", type=float, default=3.0, help="ratd's idle_timeout_secs")
    parser.add_argument(
        "--sweep", action="store_true", help="compare session options (raw) and exit"
    )
    args = parser.parse_args()
    onnx, tokenizer, label = model_files()
    print(f"model: all-MiniLM-L6-v2, {label}; {os.cpu_count()} CPUs, ORT {ort.__version__}")
    if args.sweep:
        sweep(onnx, tokenizer)
        return
    texts = sentences(1024)
    raw_rate, best_batch, rates = raw_best(onnx, tokenizer, texts)
    model_dir = SHARED_MODEL if label.startswith("fp32") else None
    figures = asyncio.run(
        ratd_figures(model_dir, texts, args.clients, args.requests, args.sequential, args.idle)
    )
    mb = 1024 * 1024
    print(
        "raw onnxruntime, sentences/s by batch size: "
        + ", ".join(f"{b}: {r:.0f}" for b, r in rates.items())
    )
    print(
        f"{'raw onnxruntime, best batch (' + str(best_batch) + ')':<44} {raw_rate:8.0f} sentences/s"
    )
    print(
        f"{'ratd, ' + str(args.clients) + ' concurrent clients, 1 sentence/call':<44} "
        f"{figures['concurrent']:8.0f} sentences/s"
    )
    print(f"{'ratd, sequential single calls':<44} {figures['sequential']:8.0f} sentences/s")
    print(
        f"ratio ratd (concurrent) / raw best: {figures['concurrent'] / raw_rate:.2f}"
        "   (goal >= 0.8)"
    )
    print(f"ratio ratd (sequential) / raw best: {figures['sequential'] / raw_rate:.2f}")
    print(
        f"ratd RSS: before load {figures['rss_before'] / mb:.0f} MB, after load "
        f"{figures['rss_loaded'] / mb:.0f} MB "
        f"(manager measured {figures['measured'] / mb:.0f} MB), "
        f"after the load test {figures['rss_after_work'] / mb:.0f} MB, "
        f"after idle unload {figures['rss_unloaded'] / mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
