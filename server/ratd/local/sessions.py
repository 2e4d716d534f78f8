"""ONNX Runtime sessions: the options ratd uses, chosen by measurement, and the device.

Measured with ``python benchmarks/embeddings.py --sweep`` (all-MiniLM-L6-v2 fp32, 2-core
VM, ORT 1.31; median of interleaved rounds; sentences/s for batches of 32 short sentences
/ of 8 x 256 tokens):

    threads spin optimisation arena   short/s  256-token/s
          1    0          all     1       138          8.1
          2    0        basic     1       235         13.0
          2    0          all     0       235         10.5
          2    0          all     1       258         14.1   <- ratd's choice
          2    1          all     1       257         14.3

- ``intra_op_num_threads`` = physical cores (here 2): 1.8x one thread. Idle pool threads
  are the only cost, and ratd runs one batch per model at a time. ``inter_op`` = 1 with
  sequential execution: these graphs are chains; parallel branches gain nothing.
- ``ORT_ENABLE_ALL`` graph optimisation (fused attention, GELU, LayerNorm): +10% on short
  batches, +8% on long ones over BASIC.
- CPU memory arena on: +34% on 256-token batches (no fresh allocation of activations per
  run). Its growth to the largest batch shape is part of what the manager measures at
  warm-up, so the RAM budget accounts for it.
- Spinning off (``session.intra_op.allow_spinning = 0``): spinning bought nothing here
  (257 vs 258 sentences/s) and burns the CPU that the event loop and gRPC need between
  batches; with it off an idle ratd uses no CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import psutil

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Physical cores available to this process (never more than its CPU affinity)."""
    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = physical
    return max(1, min(physical, allowed))


@dataclass(frozen=True, slots=True)
class SessionSettings:
    device: str = "cpu"
    threads: int = 0
    spinning: bool = False
    optimization: str = "all"  # basic | extended | all
    arena: bool = True


_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(settings: SessionSettings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = _LEVELS[settings.optimization]
    options.enable_cpu_mem_arena = settings.arena
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if settings.spinning else "0"
    )
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = (
        3  # errors only: ORT's warnings about unused initialisers are noise
    )
    return options


def _cuda_device_id(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index else 0


def create_session(path: Path, settings: SessionSettings) -> tuple[ort.InferenceSession, str]:
    """A session on ``settings.device`` and the device actually used ("cpu", "cuda:0").

    ``cuda`` needs onnxruntime-gpu and a visible GPU; without either the session runs on
    the CPU and a warning says why, once per load.
    """
    options = session_options(settings)
    providers: list[str | tuple[str, dict[str, object]]] = ["CPUExecutionProvider"]
    wanted = settings.device
    if wanted.startswith("cuda"):
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" in available:
            device_id = _cuda_device_id(wanted)
            providers = [
                ("CUDAExecutionProvider", {"device_id": device_id}),
                "CPUExecutionProvider",
            ]
        else:
            log.warning(
                "device %s requested but this onnxruntime has no CUDA execution provider "
                "(available: %s; install ratatoskr[gpu] instead of [cpu]); %s runs on the CPU",
                wanted,
                ", ".join(available),
                path.parent.name,
            )
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    used = session.get_providers()
    if wanted.startswith("cuda") and used and used[0] == "CUDAExecutionProvider":
        return session, f"cuda:{_cuda_device_id(wanted)}"
    if wanted.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        log.warning(
            "device %s requested but the CUDA execution provider could not start (no GPU "
            "visible?); %s runs on the CPU",
            wanted,
            path.parent.name,
        )
    return session, "cpu"
