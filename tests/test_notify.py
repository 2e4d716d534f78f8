"""The systemd notify protocol: ``ratd.notify`` on its own against real unix datagram
sockets, an in-process Daemon, and spawned ``ratd`` processes that report READY, watchdog
pings and STOPPING through ``$NOTIFY_SOCKET`` (a path and the abstract ``@name`` form)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ratd.notify import Notifier, socket_address, watchdog_interval
from tests.support.daemon import make_config, running_daemon, spawn_ratd

pytestmark = pytest.mark.timeout(120)

# A spawned ratd with nothing to reach at start: one remote provider, no local models,
# no live registry fetches.
CONFIG = """
[providers.ollama]
base_url = "http://127.0.0.1:9"
[registry]
live = false
cache_path = ""
"""

WAIT = 30.0  # upper bound for anything to arrive; never a timing assertion


def parse(datagram: bytes) -> dict[str, str]:
    fields = {}
    for line in datagram.decode().split("\n"):
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


def health_status(address: str) -> int:
    """One standard health check, failing at once (no wait-for-ready) when nothing listens."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status


class Listener:
    """A real unix datagram socket standing in for systemd's notify socket. A thread
    records every datagram in order; ``on_ready`` runs in that thread the moment a
    READY=1 arrives, before anything else is received."""

    def __init__(self, abstract: bool = False) -> None:
        self.messages: list[dict[str, str]] = []
        self.on_ready: Callable[[dict[str, str]], None] | None = None
        self.ready_errors: list[BaseException] = []
        self._cond = threading.Condition()
        self._dir = tempfile.mkdtemp(prefix="ratd-notify-")  # short: sun_path is 108 bytes
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"ratd-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = os.path.join(self._dir, "notify.sock")
            self.sock.bind(path)
            self.env_value = path
        self.sock.settimeout(0.1)
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                datagram = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            message = parse(datagram)
            if message.get("READY") == "1" and self.on_ready is not None:
                try:
                    self.on_ready(message)
                except BaseException as err:
                    self.ready_errors.append(err)
            with self._cond:
                self.messages.append(message)
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[dict[str, str]]], bool]) -> list[dict[str, str]]:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout=WAIT):
                raise AssertionError(f"not received in {WAIT}s; got {self.messages}")
            return list(self.messages)

    def count(self, key: str) -> int:
        with self._cond:
            return sum(1 for m in self.messages if m.get(key) == "1")

    def close(self) -> None:
        self._closed = True
        self._thread.join()
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = Listener()
    yield sock
    sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    sock = Listener(abstract=True)
    yield sock
    sock.close()


def index_of(messages: list[dict[str, str]], key: str) -> int:
    return next(i for i, m in enumerate(messages) if m.get(key) == "1")


# --- ratd.notify on its own -------------------------------------------------------------


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == b"\0abstract/name"
    assert socket_address("@") is None
    assert socket_address("relative/path") is None
    assert socket_address("vsock:2:1234") is None


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "-5"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "200000"}) == pytest.approx(0.1)
    mine = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == pytest.approx(15.0)
    other = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval(other) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}) is None


async def test_without_notify_socket_everything_is_a_no_op(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier({"WATCHDOG_USEC": "200000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert not notifier.ready("serving")
    assert not notifier.reloading()
    assert not notifier.stopping()
    assert not notifier.watchdog()
    assert notifier.start_watchdog() is None
    await notifier.stop_watchdog()
    assert not caplog.records


def receive(sock: socket.socket) -> dict[str, str]:
    sock.settimeout(WAIT)
    return parse(sock.recv(4096))


@pytest.fixture
def raw_socket() -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="ratd-notify-")
    path = os.path.join(directory, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


def test_messages_on_a_path_socket(raw_socket: tuple[socket.socket, str]) -> None:
    sock, path = raw_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("serving on 127.0.0.1:9741\nREADY=0")
    # A newline in the status cannot smuggle in an assignment of its own.
    assert receive(sock) == {"READY": "1", "STATUS": "serving on 127.0.0.1:9741 READY=0"}
    # MONOTONIC_USEC is CLOCK_MONOTONIC (what time.monotonic reads on Linux) in microseconds.
    before = time.monotonic_ns() // 1000
    assert notifier.reloading()
    after = time.monotonic_ns() // 1000
    message = receive(sock)
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    assert notifier.ready()
    assert receive(sock) == {"READY": "1"}
    assert notifier.stopping("draining")
    assert receive(sock) == {"STOPPING": "1", "STATUS": "draining"}
    assert notifier.status("hello")
    assert receive(sock) == {"STATUS": "hello"}
    assert notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}


def test_messages_on_an_abstract_socket() -> None:
    name = f"ratd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("up")
        assert receive(sock) == {"READY": "1", "STATUS": "up"}
        assert notifier.stopping()
        assert receive(sock) == {"STOPPING": "1"}


def test_send_failure_never_raises_and_logs_once(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="ratd.notify"):
        assert not notifier.ready("serving")
        assert not notifier.watchdog()
        assert not notifier.stopping()
    warnings = [r for r in caplog.records if r.name == "ratd.notify"]
    assert len(warnings) == 1
    assert "nobody-listens" in warnings[0].getMessage()


def test_unsupported_socket_is_disabled_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ratd.notify"):
        notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:9999", "WATCHDOG_USEC": "200000"})
        assert not notifier.enabled
        assert notifier.watchdog_interval is None
        assert not notifier.ready()
    assert len([r for r in caplog.records if r.name == "ratd.notify"]) == 1


def fill_queue(notifier: Notifier) -> int:
    """Watchdog pings until the receiver's queue is full (a ping never waits for room)."""
    for sent in range(10_000):
        if not notifier.watchdog():
            return sent
    raise AssertionError("the receiver's queue never filled")


def test_a_full_queue_drops_pings_but_state_changes_wait_for_room(
    raw_socket: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = raw_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    with caplog.at_level(logging.WARNING, logger="ratd.notify"):
        queued = fill_queue(notifier)
        assert queued > 0
        # Nobody reads: a state change gives up after its wait, without raising.
        assert not notifier.notify("STATUS=busy", wait=0.05)

        # Somebody reads (a manager catching up): READY=1 waits for room and gets through.
        def drain() -> list[dict[str, str]]:
            return [receive(sock) for _ in range(queued + 1)]

        received: list[dict[str, str]] = []
        reader = threading.Thread(target=lambda: received.extend(drain()))
        reader.start()
        assert notifier.ready("serving")
        reader.join()
    assert received[:queued] == [{"WATCHDOG": "1"}] * queued
    assert received[-1] == {"READY": "1", "STATUS": "serving"}
    assert len([r for r in caplog.records if r.name == "ratd.notify"]) == 1


async def test_watchdog_task_pings_until_stopped(raw_socket: tuple[socket.socket, str]) -> None:
    sock, path = raw_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    task = notifier.start_watchdog()
    assert task is not None
    assert notifier.start_watchdog() is task  # one task, however often it is started
    for _ in range(3):
        datagram = await asyncio.wait_for(loop.sock_recv(sock, 4096), WAIT)
        assert parse(datagram) == {"WATCHDOG": "1"}
    await notifier.stop_watchdog()
    assert task.done()
    await notifier.stop_watchdog()  # idempotent


async def test_watchdog_for_another_pid_does_not_ping(
    raw_socket: tuple[socket.socket, str],
) -> None:
    _, path = raw_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": "1"}
    notifier = Notifier(env)
    assert notifier.enabled
    assert notifier.start_watchdog() is None


# --- an in-process Daemon -----------------------------------------------------------------


async def test_in_process_daemon_notifies(
    raw_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = raw_socket
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    config = make_config('[providers.ollama]\nbase_url = "http://127.0.0.1:9"\n')
    loop = asyncio.get_running_loop()
    async with running_daemon(config) as daemon:
        ready = parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), WAIT))
        assert ready == {"READY": "1", "STATUS": f"serving on {daemon.address}"}
        assert await asyncio.to_thread(health_status, daemon.address) == (
            health_pb2.HealthCheckResponse.SERVING
        )
        with pytest.raises(BlockingIOError):
            sock.recv(4096)  # nothing else yet: no watchdog was asked for
    stopping = parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), WAIT))
    assert stopping["STOPPING"] == "1"


# --- spawned ratd processes ---------------------------------------------------------------


def terminate(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=WAIT)


def test_ready_only_once_the_port_answers_then_stopping_on_sigterm(
    listener: Listener, tmp_path: Path
) -> None:
    probes: list[int] = []

    def probe(message: dict[str, str]) -> None:
        # Runs the moment READY=1 arrives: the port must answer now, on the first try.
        address = message["STATUS"].removeprefix("serving on ")
        probes.append(health_status(address))

    listener.on_ready = probe
    with spawn_ratd(CONFIG, tmp_path, env={"NOTIFY_SOCKET": listener.env_value}) as ratd:
        messages = listener.wait_for(lambda ms: any(m.get("READY") == "1" for m in ms))
        assert not listener.ready_errors, listener.ready_errors
        assert probes == [health_pb2.HealthCheckResponse.SERVING]
        assert messages[0] == {"READY": "1", "STATUS": f"serving on {ratd.address}"}
        assert listener.count("WATCHDOG") == 0  # none asked for
        assert terminate(ratd.process) == 0
    messages = listener.wait_for(lambda ms: any(m.get("STOPPING") == "1" for m in ms))
    assert index_of(messages, "READY") < index_of(messages, "STOPPING")
    assert listener.count("READY") == 1
    assert "systemd notify" not in ratd.log()


def test_watchdog_pings_on_an_abstract_socket(abstract_listener: Listener, tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": abstract_listener.env_value, "WATCHDOG_USEC": "200000"}
    with spawn_ratd(CONFIG, tmp_path, env=env) as ratd:
        abstract_listener.wait_for(lambda ms: sum(m.get("WATCHDOG") == "1" for m in ms) >= 3)
        messages = abstract_listener.wait_for(lambda ms: any(m.get("READY") == "1" for m in ms))
        assert messages[index_of(messages, "READY")]["STATUS"] == f"serving on {ratd.address}"
        assert health_status(ratd.address) == health_pb2.HealthCheckResponse.SERVING
        assert terminate(ratd.process) == 0
    messages = abstract_listener.wait_for(lambda ms: any(m.get("STOPPING") == "1" for m in ms))
    assert index_of(messages, "READY") < index_of(messages, "STOPPING")


def test_watchdog_for_another_pid_is_not_pinged(
    listener: Listener, abstract_listener: Listener, tmp_path: Path
) -> None:
    """A ratd whose $WATCHDOG_PID names another process (this test's) sends no WATCHDOG=1,
    although it ran long enough to have sent several: a positive control, a second ratd
    with the same $WATCHDOG_USEC and no $WATCHDOG_PID, started only once the first serves,
    pings three times (two intervals apart) while the first still runs."""
    usec = "200000"
    other = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": usec}
    other["WATCHDOG_PID"] = str(os.getpid())
    control = {"NOTIFY_SOCKET": abstract_listener.env_value, "WATCHDOG_USEC": usec}
    (tmp_path / "other").mkdir()
    (tmp_path / "control").mkdir()
    with spawn_ratd(CONFIG, tmp_path / "other", env=other) as ratd:
        listener.wait_for(lambda ms: any(m.get("READY") == "1" for m in ms))
        with spawn_ratd(CONFIG, tmp_path / "control", env=control) as pinging:
            abstract_listener.wait_for(lambda ms: sum(m.get("WATCHDOG") == "1" for m in ms) >= 3)
            assert terminate(pinging.process) == 0
        assert health_status(ratd.address) == health_pb2.HealthCheckResponse.SERVING
        assert terminate(ratd.process) == 0
    messages = listener.wait_for(lambda ms: any(m.get("STOPPING") == "1" for m in ms))
    # Datagrams from one sender arrive in order: nothing came between READY and STOPPING.
    assert events(messages) == ["READY", "STOPPING"]
    assert listener.count("WATCHDOG") == 0, messages


def test_nothing_breaks_without_notify_socket(tmp_path: Path) -> None:
    # WATCHDOG_USEC without NOTIFY_SOCKET: nowhere to ping, nothing to complain about.
    with spawn_ratd(CONFIG, tmp_path, env={"WATCHDOG_USEC": "200000"}) as ratd:
        assert health_status(ratd.address) == health_pb2.HealthCheckResponse.SERVING
        assert terminate(ratd.process) == 0
    assert "systemd notify" not in ratd.log()


def test_unreachable_notify_socket_logs_once_and_serves(tmp_path: Path) -> None:
    gone = os.path.join(tempfile.gettempdir(), f"ratd-no-such-{uuid.uuid4().hex}.sock")
    env = {"NOTIFY_SOCKET": gone, "WATCHDOG_USEC": "200000"}
    with spawn_ratd(CONFIG, tmp_path, env=env) as ratd:
        assert health_status(ratd.address) == health_pb2.HealthCheckResponse.SERVING
        assert terminate(ratd.process) == 0
    log = ratd.log()
    # READY, STOPPING and the pings all failed to send: one warning for all of them.
    assert log.count("systemd notify: cannot send to") == 1, log
    assert "ratd stopped" in log


def events(messages: list[dict[str, str]]) -> list[str]:
    """The state changes in order (READY, RELOADING, STOPPING), without watchdog pings."""
    return [key for m in messages for key in ("READY", "RELOADING", "STOPPING") if m.get(key)]


def test_reload_reports_reloading_then_ready(listener: Listener, tmp_path: Path) -> None:
    """SIGHUP (what ExecReload sends): RELOADING=1 with MONOTONIC_USEC, then READY=1 again,
    also when the new config is refused (systemd waits for READY=1 either way)."""
    with spawn_ratd(CONFIG, tmp_path, env={"NOTIFY_SOCKET": listener.env_value}) as ratd:
        listener.wait_for(lambda ms: events(ms) == ["READY"])
        before = time.monotonic_ns() // 1000
        ratd.process.send_signal(signal.SIGHUP)
        messages = listener.wait_for(lambda ms: events(ms) == ["READY", "RELOADING", "READY"])
        reloading = messages[index_of(messages, "RELOADING")]
        assert before <= int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000

        config = tmp_path / "config.toml"
        config.write_text(config.read_text() + '\n[validation]\nparameter_policy = "maybe"\n')
        ratd.process.send_signal(signal.SIGHUP)
        expected = ["READY", "RELOADING", "READY", "RELOADING", "READY"]
        listener.wait_for(lambda ms: events(ms) == expected)
        assert health_status(ratd.address) == health_pb2.HealthCheckResponse.SERVING
        assert terminate(ratd.process) == 0
    listener.wait_for(lambda ms: events(ms) == [*expected, "STOPPING"])
    assert "reload rejected" in ratd.log()
