"""The whole benchmark suite, as `make bench` runs it: gateway overhead (direct, ratd,
LiteLLM; unary and streaming; with a py-spy profile of ratd), local inference (ratd,
raw ONNX Runtime, sentence-transformers), then the report and plots.

    python benchmarks/suite.py                 # everything (~13 minutes; first run installs
                                               # LiteLLM and PyTorch into their own venvs)
    python benchmarks/suite.py --quick         # a short pass over every part
    python benchmarks/suite.py --only overhead --overhead-args "--paths direct,ratd"

Everything lands in benchmarks/results/<date>.json, <date>.md and <date>-*.png; the
profile in <date>-ratd-profile.txt (summary) and .folded.gz (stacks). Each part runs in
a process of its own, so that the pinning of one does not follow the next.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time

import benchlib


def run(script: str, args: list[str]) -> int:
    command = [sys.executable, str(benchlib.BENCH / script), *args]
    benchlib.log(f"\n$ {shlex.join(command)}")
    started = time.monotonic()
    code = subprocess.run(command, check=False).returncode
    benchlib.log(f"({script}: exit {code} after {time.monotonic() - started:.0f} s)")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs of every part")
    parser.add_argument("--only", default="overhead,local,report", help="parts to run")
    parser.add_argument("--overhead-args", default="", help="more arguments for overhead.py")
    parser.add_argument("--local-args", default="", help="more arguments for embeddings.py")
    parser.add_argument("--date", default=None, help="results file name (default: today)")
    args = parser.parse_args(argv)
    parts = args.only.split(",")
    path = benchlib.results_path(args.date)
    quick = ["--quick"] if args.quick else []
    failures = []
    if "overhead" in parts:
        code = run(
            "overhead.py",
            ["--profile", "--results", str(path), *quick, *shlex.split(args.overhead_args)],
        )
        failures += ["overhead"] if code else []
    if "local" in parts:
        code = run("embeddings.py", ["--results", str(path), *quick, *shlex.split(args.local_args)])
        failures += ["local"] if code else []
    if "report" in parts and path.is_file():
        failures += ["report"] if run("report.py", [str(path)]) else []
    if failures:
        benchlib.log(f"failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
