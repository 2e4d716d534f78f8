"""Running ratd for tests: in-process (a real grpc.aio server in the test's loop) or as a
spawned ``ratd`` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from ratatoskr import ServiceClient
from ratd.config import Config, parse_config
from ratd.providers.base import Provider
from ratd.server import Daemon

REPO = Path(__file__).resolve().parents[2]


# The day the seed's retirement dates were last checked (its "updated"): test daemons judge
# retirement against it, not the wall clock, so that a model id used as an example does not
# start failing on its shutdown day. Bump it with the seed.
TODAY = "2026-12-04"


def with_today(body: str) -> str:
    """``[registry] today = TODAY`` unless the config sets a day itself."""
    if "today =" in body:
        return body
    if "[registry]" in body:
        return body.replace("[registry]\n", f'[registry]\ntoday = "{TODAY}"\n', 1)
    return body + f'\n[registry]\ntoday = "{TODAY}"\n'


def make_config(text: str, env: dict[str, str] | None = None) -> Config:
    """A Config from TOML text; keys come only from ``env`` (never the real environment)."""
    body = textwrap.dedent(text)
    if "[server]" not in body:
        body = '[server]\naddress = "127.0.0.1:0"\nmetrics_address = "127.0.0.1:0"\n' + body
    if "[retry]" not in body:  # tests that count requests see one attempt per provider
        body += "\n[retry]\nmax_attempts = 1\n"
    if "[registry]" not in body:  # no background model-list fetches, no cache on disk
        body += '\n[registry]\nlive = false\ncache_path = ""\n'
    if "[jobs]" not in body:  # jobs in memory: nothing written under the real home
        body += '\n[jobs]\ndir = ""\n'
    return parse_config(with_today(body), "<test>", env=env or {})


@asynccontextmanager
async def running_daemon(
    config: Config, providers: Mapping[str, Provider] | None = None
) -> AsyncIterator[Daemon]:
    """An in-process ratd; ``providers`` built by the test replace those of ``config``
    (e.g. a LocalProvider whose memory meter reports known costs)."""
    daemon = Daemon(config, providers=providers)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


@asynccontextmanager
async def daemon_client(config: Config) -> AsyncIterator[ServiceClient]:
    """An in-process ratd and a client connected to it."""
    async with running_daemon(config) as daemon:
        client = await ServiceClient.connect(daemon.address, timeout=30)
        try:
            yield client
        finally:
            await client.close()


class SpawnedRatd:
    def __init__(self, process: subprocess.Popen[str], address: str, log_path: Path) -> None:
        self.process = process
        self.address = address
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def spawn_ratd(
    config_text: str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> Iterator[SpawnedRatd]:
    """A real ``ratd`` process on a free loopback port; SIGTERM and a wait at the end."""
    config_path = tmp_path / "config.toml"
    body = textwrap.dedent(config_text)
    if "[server]" not in body:
        body = '[server]\naddress = "127.0.0.1:0"\nmetrics_address = "127.0.0.1:0"\n' + body
    if "[retry]" not in body:
        body += "\n[retry]\nmax_attempts = 1\n"
    config_path.write_text(with_today(body))
    ready = tmp_path / "ratd.ready"
    log_path = tmp_path / "ratd.log"
    child_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        **(env or {}),
    }
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ratd",
                "--config",
                str(config_path),
                "--ready-file",
                str(ready),
                *extra_args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=child_env,
            text=True,
        )
    deadline = time.monotonic() + timeout
    while not ready.exists() or not ready.read_text().strip():
        if process.poll() is not None:
            raise RuntimeError(f"ratd exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"ratd did not start in {timeout}s:\n{log_path.read_text()}")
        time.sleep(0.02)
    spawned = SpawnedRatd(process, ready.read_text().strip(), log_path)
    try:
        yield spawned
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
