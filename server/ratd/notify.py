"""The systemd notify protocol (``sd_notify(3)``), our own few lines instead of a dependency.

Under ``Type=notify`` (or ``Type=notify-reload``) systemd passes ``$NOTIFY_SOCKET``: a unix
datagram socket, as a path or as an abstract name starting with ``@``. Each datagram is
newline-separated ``KEY=VALUE`` assignments:

- ``READY=1`` (with ``STATUS=...``) once ratd serves, and again after a reload;
- ``RELOADING=1`` with ``MONOTONIC_USEC=`` (``CLOCK_MONOTONIC`` in microseconds, which
  systemd >= 253 wants with ``Type=notify-reload``) when a reload starts;
- ``STOPPING=1`` when shutdown begins;
- ``WATCHDOG=1`` every half of ``$WATCHDOG_USEC`` (when ``$WATCHDOG_PID`` is unset or names
  this process), from a task on the event loop, so that a blocked loop stops the pings and
  systemd restarts the service.

Without ``$NOTIFY_SOCKET`` every call is a no-op. Nothing here ever raises into the daemon:
a failure to send is logged once (as a warning) and the message is dropped. A watchdog ping
never blocks (``MSG_DONTWAIT``; a dropped ping is replaced by the next). A state change
(READY, RELOADING, STOPPING) must not be lost, or systemd would time the service out: when
the manager's receive queue is full it waits for room, up to ``STATE_SEND_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Longest wait for room in the manager's queue when sending a state change (seconds).
STATE_SEND_TIMEOUT = 2.0


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds: the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def socket_address(value: str) -> str | bytes | None:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value, or None when unusable.

    An absolute path is a filesystem socket; ``@name`` is the abstract socket ``\\0name``.
    Anything else (relative paths, ``vsock:`` addresses) is not supported here.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when systemd
    asks for none, or asks another process (``$WATCHDOG_PID``)."""
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


def _clean(text: str) -> str:
    """One line: a newline in a value would start a new assignment."""
    return " ".join(text.split())


class Notifier:
    """Sends notifications to the service manager; a no-op without ``$NOTIFY_SOCKET``.

    ``env`` defaults to ``os.environ`` at construction time.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.socket_name = env.get("NOTIFY_SOCKET", "")
        self.address = socket_address(self.socket_name) if self.socket_name else None
        self.watchdog_interval = watchdog_interval(env) if self.address is not None else None
        self._warned = False
        self._watchdog_task: asyncio.Task[None] | None = None
        if self.socket_name and self.address is None:
            self._warn(f"unsupported NOTIFY_SOCKET {self.socket_name!r}; not notifying")

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("systemd notify: %s", message)

    def notify(self, *assignments: str, wait: float = STATE_SEND_TIMEOUT) -> bool:
        """Send one datagram of ``KEY=VALUE`` assignments; True when it was sent. While the
        receiver's queue is full, wait up to ``wait`` seconds for room (0: not at all)."""
        if self.address is None:
            return False
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                if wait > 0:
                    # The kernel's own send timeout: a blocking sendto that gives up with
                    # EAGAIN after ``wait``. (A Python-level timeout would poll the unconnected
                    # socket, which is always writable, and spin.)
                    seconds = int(wait)
                    timeval = struct.pack("ll", seconds, int((wait - seconds) * 1_000_000))
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
                    sock.sendto(payload, self.address)
                else:
                    sock.sendto(payload, socket.MSG_DONTWAIT, self.address)
        except OSError as err:
            self._warn(f"cannot send to {self.socket_name}: {err}")
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """``READY=1``: start-up (or a reload) is complete and ratd serves."""
        fields = ["READY=1"]
        if status:
            fields.append(f"STATUS={_clean(status)}")
        return self.notify(*fields)

    def reloading(self, status: str = "") -> bool:
        """``RELOADING=1``: a reload began; send ``ready()`` when it is done (or failed)."""
        fields = ["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}"]
        if status:
            fields.append(f"STATUS={_clean(status)}")
        return self.notify(*fields)

    def stopping(self, status: str = "") -> bool:
        """``STOPPING=1``: shutdown began."""
        fields = ["STOPPING=1"]
        if status:
            fields.append(f"STATUS={_clean(status)}")
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        """``STATUS=``: a line that ``systemctl status`` shows."""
        return self.notify(f"STATUS={_clean(text)}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: one keep-alive ping."""
        return self.notify("WATCHDOG=1", wait=0)

    def start_watchdog(self) -> asyncio.Task[None] | None:
        """Start pinging from the running event loop (when systemd asked for a watchdog)."""
        if self.watchdog_interval is None or self._watchdog_task is not None:
            return self._watchdog_task
        self._watchdog_task = asyncio.get_running_loop().create_task(
            self._ping(self.watchdog_interval), name="ratd-systemd-watchdog"
        )
        return self._watchdog_task

    async def stop_watchdog(self) -> None:
        task, self._watchdog_task = self._watchdog_task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _ping(self, interval: float) -> None:
        while True:
            self.watchdog()
            await asyncio.sleep(interval)
