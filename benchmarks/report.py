"""Turn a results file (benchmarks/results/<date>.json) into a markdown report and plots.

    python benchmarks/report.py                          # the newest results file
    python benchmarks/report.py benchmarks/results/2026-11-22.json

Writes <date>.md (the headline table, issue 7's goals with measured values, every table)
and <date>-overhead.png, <date>-memory.png, <date>-local.png beside the results file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib

PATH_LABELS = {
    "direct": "direct HTTP",
    "ratd": "ratd (gRPC)",
    "litellm": "LiteLLM proxy",
    "floor": "floor gateway (gRPC)",
}
COLOURS = {
    "direct": "#7f7f7f",
    "ratd": "#1f77b4",
    "litellm": "#d62728",
    "st": "#2ca02c",
    "floor": "#9467bd",
}


def row_for(results: list[dict[str, Any]], mode: str, concurrency: int) -> dict[str, Any] | None:
    return next((r for r in results if r["mode"] == mode and r["concurrency"] == concurrency), None)


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def dig(data: Any, *keys: Any) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


# -- goals ----------------------------------------------------------------------------------------


@dataclass
class Goal:
    name: str
    target: str
    measured: str
    holds: bool | None  # None: not measured


def goals(doc: dict[str, Any]) -> list[Goal]:
    over = doc.get("overhead", {})
    results = over.get("results", [])
    out: list[Goal] = []

    unary1 = row_for(results, "unary", 1)
    p50 = dig(unary1, "added", "ratd", "p50_ms")
    p99 = dig(unary1, "added", "ratd", "p99_ms")
    out.append(
        Goal(
            "Unary Chat, concurrency 1: added latency over direct",
            "p50 ≤ 1 ms, p99 ≤ 3 ms",
            f"p50 {fmt(p50, 2)} ms, p99 {fmt(p99, 2)} ms",
            None if p50 is None else p50 <= 1 and p99 <= 3,
        )
    )
    unary64 = row_for(results, "unary", 64)
    vs_litellm = dig(unary64, "ratios", "ratd_over_litellm_rps")
    vs_direct = dig(unary64, "ratios", "ratd_over_direct_rps")
    out.append(
        Goal(
            "Throughput, unary, concurrency 64, gateway on one core: vs LiteLLM",
            "≥ 20×",
            f"{fmt(vs_litellm, 1)}×",
            None if vs_litellm is None else vs_litellm >= 20,
        )
    )
    out.append(
        Goal(
            "Throughput, unary, concurrency 64, gateway on one core: vs direct",
            "≥ 0.5×",
            f"{fmt(vs_direct, 2)}×",
            None if vs_direct is None else vs_direct >= 0.5,
        )
    )
    stream1 = row_for(results, "stream", 1)
    ttft = dig(stream1, "added", "ratd", "ttft_p50_ms")
    out.append(
        Goal(
            "Streaming, concurrency 1: added time to first token (p50)",
            "≤ 2 ms",
            f"{fmt(ttft, 2)} ms",
            None if ttft is None else ttft <= 2,
        )
    )
    expected = dig(over, "settings", "chunks")
    streams = [r for r in results if r["mode"] == "stream" and "ratd" in r["paths"]]
    delivered = [dig(r, "paths", "ratd", "chunks_min") for r in streams]
    delivered = [d for d in delivered if d is not None]
    out.append(
        Goal(
            "Streaming: every upstream chunk forwarded as its own event",
            f"{expected} content events per stream",
            f"min {min(delivered)} at every concurrency" if delivered else "–",
            None if not delivered or expected is None else min(delivered) >= expected,
        )
    )
    idle = dig(over, "idle_rss_mb", "ratd")
    out.append(
        Goal(
            "Idle RSS without local models",
            "≤ 120 MB",
            f"{fmt(idle, 1)} MB",
            None if idle is None else idle <= 120,
        )
    )
    local = doc.get("local", {})
    ratio = None
    ratio = dig(local, "embeddings", "ratd", "ratio_to_raw_best", "64")
    rate64 = dig(local, "embeddings", "ratd", "rates", "64")
    best = dig(local, "embeddings", "raw", "best")
    if ratio is None and rate64 is not None and best:
        ratio = rate64 / best
    out.append(
        Goal(
            "Embeddings, 64 concurrent single-sentence clients vs raw ONNX Runtime best batch",
            "≥ 0.8",
            fmt(ratio, 2),
            None if ratio is None else ratio >= 0.8,
        )
    )
    return out


# -- markdown -------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "|".join("---:" for _ in header[1:]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def headline(doc: dict[str, Any]) -> list[str]:
    """The short table for the README."""
    over = doc.get("overhead", {})
    results = over.get("results", [])
    u1, u64 = row_for(results, "unary", 1), row_for(results, "unary", 64)
    s1, s64 = row_for(results, "stream", 1), row_for(results, "stream", 64)
    rows = []
    for path in ("direct", "ratd", "litellm"):
        if not u1 or path not in u1["paths"]:
            continue
        added = dig(u1, "added", path, "p50_ms")
        added99 = dig(u1, "added", path, "p99_ms")
        ttft = dig(s1, "added", path, "ttft_p50_ms")
        rss = dig(over, "rss_after_mb", path)
        rows.append(
            [
                PATH_LABELS[path],
                "–" if path == "direct" else f"{fmt(added, 2)} / {fmt(added99, 2)} ms",
                "–" if path == "direct" else f"{fmt(ttft, 2)} ms",
                fmt(dig(u64, "paths", path, "rps"), 0),
                fmt(dig(s64, "paths", path, "rps"), 0),
                "–" if rss is None else f"{rss:.0f} MB",
            ]
        )
    return table(
        [
            "path",
            "added latency p50 / p99 (unary, c=1)",
            "added TTFT p50 (c=1)",
            "unary req/s (c=64)",
            "streams/s (c=64)",
            "RSS after the run",
        ],
        rows,
    )


def cpu_cell(cpu: dict[str, float] | None) -> str:
    """CPU per call of each process on the path ("–" for a gateway the path lacks)."""
    if not cpu:
        return "–"
    return " / ".join(fmt(cpu.get(role), 0) for role in ("client", "gateway", "upstream"))


def overhead_tables(over: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for mode in ("unary", "stream"):
        rows = []
        for result in over.get("results", []):
            if result["mode"] != mode:
                continue
            for path, values in result["paths"].items():
                if "p50_ms" not in values:
                    rows.append([str(result["concurrency"]), PATH_LABELS[path], "failed"])
                    continue
                added = result["added"].get(path, {})
                row = [
                    str(result["concurrency"]),
                    PATH_LABELS[path],
                    fmt(values["p50_ms"], 2),
                    fmt(values["p99_ms"], 2),
                    fmt(added.get("p50_ms"), 2) if path != "direct" else "–",
                    fmt(added.get("p99_ms"), 2) if path != "direct" else "–",
                ]
                if mode == "stream":
                    row += [
                        fmt(values.get("ttft_p50_ms"), 2),
                        fmt(added.get("ttft_p50_ms"), 2) if path != "direct" else "–",
                        fmt(values.get("chunks_mean"), 1),
                    ]
                row += [
                    fmt(values["rps"], 0),
                    cpu_cell(values.get("cpu_us_per_call")),
                    str(values["requests"]),
                    str(values["errors"]),
                ]
                rows.append(row)
        header = ["c", "path", "p50 ms", "p99 ms", "added p50", "added p99"]
        if mode == "stream":
            header += ["TTFT p50 ms", "added TTFT p50", "chunks/stream"]
        header += ["req/s", "CPU µs/call: client / gateway / upstream", "requests", "errors"]
        title = "Unary Chat" if mode == "unary" else "Streaming ChatStream"
        lines += ["", f"### {title}", "", *table(header, rows)]
    ratio_rows = []
    for result in over.get("results", []):
        ratios = result.get("ratios", {})
        ratio_rows.append(
            [
                f"{result['mode']}, c={result['concurrency']}",
                fmt(ratios.get("ratd_over_litellm_rps"), 1) + "×",
                fmt(ratios.get("ratd_over_direct_rps"), 2) + "×",
                fmt(ratios.get("litellm_over_direct_rps"), 3) + "×",
            ]
        )
    lines += [
        "",
        "### Throughput ratios",
        "",
        *table(["run", "ratd ÷ LiteLLM", "ratd ÷ direct", "LiteLLM ÷ direct"], ratio_rows),
    ]
    return lines


def local_tables(local: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for part, unit in (("embeddings", "sentences/s"), ("nli", "pairs/s")):
        section = local.get(part)
        if not section:
            continue
        raw = section["raw"]
        best = raw["best"]
        rows = [
            [f"raw ONNX Runtime, batch {b}", fmt(r, 1), fmt(r / best, 2)]
            for b, r in raw["rates"].items()
        ]
        st = section.get("sentence_transformers")
        if st and "rates" in st:
            rows += [
                [f"sentence-transformers (PyTorch CPU), batch {b}", fmt(r, 1), fmt(r / best, 2)]
                for b, r in st["rates"].items()
            ]
        same_round = section["ratd"].get("ratio_to_raw_best", {})
        rows += [
            [
                f"ratd, {c} concurrent clients, one item per call",
                fmt(r, 1),
                fmt(same_round.get(c, r / best), 2) + (" ¹" if c in same_round else ""),
            ]
            for c, r in section["ratd"]["rates"].items()
        ]
        title = "Embeddings" if part == "embeddings" else "NLI"
        lines += [
            "",
            f"### {title}: {section['model']}",
            "",
            *table(["", unit, "÷ raw best batch"], rows),
        ]
        if same_round:
            raws = ", ".join(f"{x:.1f}" for x in section["ratd"]["raw_best_by_round"])
            lines += [
                "",
                "¹ ratd's rate is the median over rounds; its ratio is the median of the ratios "
                "to raw ONNX Runtime at the best batch size measured at the start of the same "
                f"round ({raws} {unit}), so that drift in the machine's load cancels out.",
            ]
        if st and "skipped" in st:
            lines += ["", f"sentence-transformers: skipped ({st['skipped']})."]
        elif st:
            lines += [
                "",
                f"sentence-transformers {st['sentence_transformers']}, torch {st['torch']}, "
                f"{st['threads']} threads; cosine similarity of its embeddings to the ONNX "
                f"model's ≥ {fmt(st.get('cosine_to_onnx_min'), 4)} (same model).",
            ]
        ratd = section["ratd"]
        lines += [
            "",
            f"ratd memory ({title}): before load {ratd['rss_mb_before_load']:.0f} MB, "
            f"after load {ratd['rss_mb_after_load']:.0f} MB (load took "
            f"{ratd['load_seconds']:.1f} s; the model manager measured "
            f"{ratd['manager_measured_mb']:.0f} MB), after the load test "
            f"{ratd['rss_mb_after_work']:.0f} MB, after the idle unload "
            f"{ratd['rss_mb_after_unload']:.0f} MB.",
        ]
    return lines


def markdown(doc: dict[str, Any], images: list[str]) -> str:
    over = doc.get("overhead", {})
    machine = doc.get("machine", {})
    lines = [
        f"# Benchmark results, {doc.get('date', '?')}",
        "",
        f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model', '?')}), "
        f"{machine.get('memory_gb')} GB, Python {machine.get('python')}, "
        f"load average at start {machine.get('load_average_at_start')}; "
        f"ratd at commit {machine.get('commit') or '?'}. "
        f"Cores: {dig(over, 'cores', 'description') or '–'}. "
        f"LiteLLM {over.get('litellm_version', 'not run')}"
        + (f" (skipped: {over['litellm_skipped']})" if "litellm_skipped" in over else "")
        + ".",
        "",
        "## Headline",
        "",
        *headline(doc),
        "",
        "## Issue 7 goals",
        "",
        *table(
            ["goal", "target", "measured", "holds"],
            [
                [
                    g.name,
                    g.target,
                    g.measured,
                    "–" if g.holds is None else "yes" if g.holds else "**no**",
                ]
                for g in goals(doc)
            ],
        ),
    ]
    if images:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in images]
    if over:
        settings = over.get("settings", {})
        lines += [
            "",
            "## Gateway overhead",
            "",
            f"Zero-latency fake OpenAI upstream, {settings.get('chunks')} content chunks per "
            f"stream; {settings.get('rounds')} round(s) of {settings.get('seconds')} s per path, "
            "paths alternating; latency in ms; added = path minus direct at the same "
            "percentile; TTFT = time to the first content chunk.",
            *overhead_tables(over),
            "",
            "### Memory (RSS)",
            "",
            *table(
                ["gateway", "idle", "after the run"],
                [
                    [PATH_LABELS[g], fmt(v, 1, " MB"), fmt(dig(over, "rss_after_mb", g), 1, " MB")]
                    for g, v in over.get("idle_rss_mb", {}).items()
                ],
            ),
        ]
        profile = over.get("profile")
        if profile and "summary" in profile:
            summary, folded = Path(profile["summary"]).name, Path(profile["folded"]).name
            lines += [
                "",
                f"py-spy profile of ratd during {profile['seconds']:.0f} s of unary calls at "
                f"concurrency {profile['concurrency']}, after the measured runs: "
                f"[{summary}]({summary}) (folded stacks: [{folded}]({folded})).",
            ]
    local = doc.get("local")
    if local:
        lines += ["", "## Local inference", *local_tables(local)]
    return "\n".join(lines) + "\n"


# -- plots ----------------------------------------------------------------------------------------


def plots(doc: dict[str, Any], out: Path) -> list[str]:
    """The PNGs; [] with a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        benchlib.log("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    date = doc.get("date", "results")
    written = []
    over = doc.get("overhead", {})
    results = over.get("results", [])
    if results:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
        paths = [p for p in ("direct", "ratd", "litellm") if p in results[0]["paths"]]
        for mode, style in (("unary", "-"), ("stream", "--")):
            rows = [r for r in results if r["mode"] == mode]
            conc = [r["concurrency"] for r in rows]
            for path in paths:
                rps = [dig(r, "paths", path, "rps") for r in rows]
                axes[0].plot(
                    conc,
                    rps,
                    style,
                    marker="o",
                    color=COLOURS[path],
                    label=f"{PATH_LABELS[path]}, {mode}",
                )
            for path in paths:
                if path == "direct":
                    continue
                key = "p50_ms" if mode == "unary" else "ttft_p50_ms"
                added = [max(dig(r, "added", path, key) or 0, 0.01) for r in rows]
                axes[1 if mode == "unary" else 2].plot(
                    conc, added, "-", marker="o", color=COLOURS[path], label=PATH_LABELS[path]
                )
        axes[0].set_title("Requests/s (higher is better)")
        axes[1].set_title("Added p50 latency over direct, unary (ms)")
        axes[2].set_title("Added p50 time to first token, streams (ms)")
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("concurrent clients")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"Gateway overhead, zero-latency upstream, gateway on one core ({date})")
        fig.tight_layout()
        name = f"{date}-overhead.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

        bars: list[tuple[str, float, str]] = []
        for gateway, value in over.get("idle_rss_mb", {}).items():
            bars.append((f"{gateway}\nidle", value, COLOURS[gateway]))
            after = dig(over, "rss_after_mb", gateway)
            if after is not None:
                bars.append((f"{gateway}\nafter the run", after, COLOURS[gateway]))
        local = doc.get("local", {})
        for part, label in (("embeddings", "MiniLM"), ("nli", "NLI")):
            ratd = dig(local, part, "ratd")
            if ratd:
                bars += [
                    (f"ratd + {label}\nbefore load", ratd["rss_mb_before_load"], COLOURS["st"]),
                    (f"ratd + {label}\nloaded", ratd["rss_mb_after_load"], COLOURS["st"]),
                    (f"ratd + {label}\nunloaded", ratd["rss_mb_after_unload"], COLOURS["st"]),
                ]
        if bars:
            fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(bars)), 4))
            ax.bar([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
            ax.axhline(120, color="black", linestyle=":", linewidth=1)
            ax.text(-0.4, 125, "120 MB: goal for idle ratd without local models", fontsize=8)
            for i, bar in enumerate(bars):
                ax.text(i, bar[1], f"{bar[1]:.0f}", ha="center", va="bottom", fontsize=8)
            ax.set_ylabel("RSS (MB)")
            ax.set_title(f"Memory ({date})")
            ax.tick_params(axis="x", labelsize=8)
            fig.tight_layout()
            name = f"{date}-memory.png"
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            written.append(name)

    local = doc.get("local", {})
    parts = [p for p in ("embeddings", "nli") if p in local]
    if parts:
        fig, axes = plt.subplots(1, len(parts), figsize=(7 * len(parts), 4.4), squeeze=False)
        for ax, part in zip(axes[0], parts, strict=True):
            section = local[part]
            labels, values, colours = [], [], []
            for batch, rate in section["raw"]["rates"].items():
                labels.append(f"raw\nb={batch}")
                values.append(rate)
                colours.append(COLOURS["direct"])
            st = section.get("sentence_transformers") or {}
            for batch, rate in (st.get("rates") or {}).items():
                labels.append(f"ST\nb={batch}")
                values.append(rate)
                colours.append(COLOURS["st"])
            for conc, rate in section["ratd"]["rates"].items():
                labels.append(f"ratd\nc={conc}")
                values.append(rate)
                colours.append(COLOURS["ratd"])
            ax.bar(labels, values, color=colours)
            best = section["raw"]["best"]
            ax.axhline(best, color="black", linestyle=":", linewidth=1)
            if part == "embeddings":
                ax.axhline(0.8 * best, color=COLOURS["litellm"], linestyle=":", linewidth=1)
            ax.set_title(
                "Embeddings (all-MiniLM-L6-v2), sentences/s\nraw ONNX Runtime (b = batch), "
                "sentence-transformers (ST), ratd (c = concurrent clients)"
                if part == "embeddings"
                else "NLI (DeBERTa-v3-base-sized graph), pairs/s\nraw ONNX Runtime (b = batch), "
                "ratd (c = concurrent clients)",
                fontsize=9,
            )
            ax.tick_params(axis="x", labelsize=7)
        fig.suptitle(f"Local inference ({date}); dotted: raw best batch, and 0.8 of it")
        fig.tight_layout()
        name = f"{date}-local.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)
    return written


def newest() -> Path:
    found = sorted(benchlib.RESULTS.glob("????-??-??.json"))
    if not found:
        raise SystemExit(f"no results in {benchlib.RESULTS}")
    return found[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, default=None)
    args = parser.parse_args(argv)
    path: Path = args.results or newest()
    doc = json.loads(path.read_text())
    doc.setdefault("date", path.stem)
    images = plots(doc, path.parent)
    text = markdown(doc, images)
    target = path.with_suffix(".md")
    target.write_text(text)
    print(text)
    print(f"written: {target}" + "".join(f", {path.parent / i}" for i in images), file=sys.stderr)


if __name__ == "__main__":
    main()
