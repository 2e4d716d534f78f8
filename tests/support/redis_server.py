"""A real ``redis-server`` (Debian package) for tests: on a free loopback port, with a
password and an append-only file, so a stop and a start keep its data (Redis "restarts").
Tests that need it skip when it is not installed (`make test` installs it as root)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")
PASSWORD = "redis-test-password-7c1e"
SKIP_REASON = (
    "redis-server is not installed (Debian package redis-server; `make test` installs it as root)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server with an append-only file: a restart keeps its data."""

    port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.home), "--save", "", "--appendonly", "yes"]
        args += ["--appendfsync", "always", "--requirepass", PASSWORD, "--protected-mode", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(f"AUTH {PASSWORD}\r\nPING\r\n".encode())
                    answer = b""
                    while b"PONG" not in answer and b"ERR" not in answer:
                        answer += sock.recv(64)
                    if b"PONG" in answer:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def started(tmp_path: Path) -> RedisServer:
    """A redis-server started with its files under ``tmp_path``."""
    home = tmp_path / "redis"
    home.mkdir()
    server = RedisServer(free_port(), home)
    server.start()
    return server
