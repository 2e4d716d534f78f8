"""The audit log (``[audit] path``): one JSON line per call and per admin action, saying
who (tenant, user) did what (RPC, model, provider, status, tokens, cost, an admin
action's arguments), never what was said (no prompt or completion text).

Writing never stalls a call: records go into a bounded queue that one thread drains to
the file. When the disk cannot keep up and the queue is full, a record is dropped,
counted in ``ratatoskr_audit_dropped_lines`` and logged (at most once a minute): an
audit log that stops the gateway when a disk is slow would turn a logging problem into
an outage, and a silent loss would be worse than a counted one. ``reopen()`` (SIGHUP,
SIGUSR1) closes the file and opens the path again, for log rotation.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratd.config import AuditConfig, ConfigError, TracingConfig
from ratd.core.calls import CallInfo
from ratd.metrics import AUDIT_DROPPED, AUDIT_LINES
from ratd.tracing import AuditExport

log = logging.getLogger(__name__)

# RPCs of AdminService that change something: audited as "admin" events.
ADMIN_ACTIONS = frozenset({"LoadModel", "UnloadModel", "DownloadModel", "ReloadConfig"})

_REOPEN = object()
_STOP = object()
# Most records written in one go.
_BATCH = 512
# Seconds between two warnings about dropped records.
_WARN_EVERY = 60.0


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def call_record(info: CallInfo, status: str, elapsed: float) -> dict[str, Any]:
    """What the audit log says of one call (only names, counts and statuses)."""
    record: dict[str, Any] = {
        "time": now_iso(),
        "event": "admin" if info.method in ADMIN_ACTIONS else "call",
        "request_id": info.request_id,
        "tenant": info.tenant.name if info.tenant is not None else "",
        "user": info.user,
        "rpc": info.method,
        "model": info.model,
        "provider": info.provider,
        "status": status,
        "ms": round(elapsed * 1000, 3),
    }
    usage = info.usage
    if usage is not None:
        record["tokens_in"] = usage.prompt_tokens
        record["tokens_out"] = usage.completion_tokens
        if usage.HasField("cost_usd"):
            record["cost_usd"] = usage.cost_usd
    if info.cache:
        record["cache"] = info.cache
    if info.action is not None:
        record["args"] = info.action
    return record


def _check_directory(path: Path) -> None:
    """Refuse a directory anyone may write to: there, another user could replace the
    file (or plant a link) and forge or hide the audit trail."""
    parent = path.parent
    try:
        mode = parent.stat().st_mode
    except OSError as err:
        raise ConfigError(
            f"audit.path: cannot use the directory {parent}: {err.strerror}"
        ) from None
    if mode & stat.S_IWOTH:
        raise ConfigError(
            f"audit.path: the directory {parent} is writable by everyone; "
            "put the audit log in a directory only ratd (and its group) may write"
        )


def _open(path: Path, mode: int) -> Any:
    """The file opened to append (created with ``mode``; an existing one set to it)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


class AuditLog:
    """The audit file and the thread that writes it. ``record`` may be called from the
    event loop at any rate: it only puts the record in the queue."""

    def __init__(self, config: AuditConfig, tracing: TracingConfig | None = None) -> None:
        """``tracing``: where ``config.otlp_logs`` sends the records too."""
        self.path = Path(config.path).expanduser()
        self.mode = int(config.file_mode, 8)
        _check_directory(self.path)
        try:
            self._file = _open(self.path, self.mode)
        except OSError as err:
            raise ConfigError(f"audit.path: cannot open {self.path}: {err.strerror}") from None
        self._export = _export(config, tracing)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=config.queue_lines)
        self._last_warning = -_WARN_EVERY
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="ratd-audit", daemon=True)
        self._thread.start()

    def record(self, record: dict[str, Any]) -> None:
        """Queue one record; drop it (counted, warned) when the queue is full."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            AUDIT_DROPPED.inc()
            moment = time.monotonic()
            if moment - self._last_warning >= _WARN_EVERY:
                self._last_warning = moment
                log.warning(
                    "audit log %s is not keeping up: %d record(s) dropped so far "
                    "(ratatoskr_audit_dropped_lines); is the disk slow or full?",
                    self.path,
                    self.dropped,
                )

    def call(self, info: CallInfo, status: str, elapsed: float) -> None:
        self.record(call_record(info, status, elapsed))

    def reopen(self) -> None:
        """Open the path again once the records before are written (log rotation)."""
        self._queue.put(_REOPEN)

    def close(self) -> None:
        """Write what is queued, close the file (blocks: call it off the event loop)."""
        self._queue.put(_STOP)
        self._thread.join()

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines: list[str] = []
            for item in batch:
                if item is _REOPEN or item is _STOP:
                    self._write(lines)
                    lines = []
                    if item is _STOP:
                        self._file.close()
                        if self._export is not None:
                            self._export.close()
                        return
                    self._reopen()
                else:
                    lines.append(json.dumps(item, separators=(",", ":"), ensure_ascii=False))
                    if self._export is not None:
                        self._export.emit(item)  # type: ignore[arg-type]
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
        except (OSError, ValueError) as err:
            AUDIT_DROPPED.inc(len(lines))
            self.dropped += len(lines)
            log.error("audit log %s: cannot write %d record(s): %s", self.path, len(lines), err)
            return
        AUDIT_LINES.inc(len(lines))

    def _reopen(self) -> None:
        try:
            fresh = _open(self.path, self.mode)
        except OSError as err:  # keep writing to the old file rather than nowhere
            log.error(
                "audit log: cannot reopen %s (%s); still writing the old file", self.path, err
            )
            return
        self._file.close()
        self._file = fresh
        log.info("audit log reopened: %s", self.path)


def _export(config: AuditConfig, tracing: TracingConfig | None) -> AuditExport | None:
    """The OTLP export of the records, when asked for and possible (else a warning)."""
    if not config.otlp_logs or tracing is None or not tracing.otlp_endpoint:
        return None
    try:
        return AuditExport(tracing.otlp_endpoint, tracing.service_name)
    except ImportError:
        log.warning(
            "audit.otlp_logs is set but OpenTelemetry is not installed "
            "(pip install 'ratatoskr[otel]'); audit records go to the file only"
        )
        return None
