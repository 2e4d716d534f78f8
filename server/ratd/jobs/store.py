"""Where jobs are kept: one small interface (``JobStore``), an in-memory store and a
file-backed one (the default).

The file store writes each job as one JSON file (the Operation and the starting request
as base64 protobuf, the owner, the provider's ids) to a temporary file, fsyncs it and
renames it over the old one, then fsyncs the directory: a crash leaves either the old
record or the new, never half of one. File I/O runs in a worker thread, off the loop.

Both keep every record in a dict too, which ``get`` and ``page`` read. A store shared by
several replicas (``redis_store.RedisJobStore``) implements the same calls plus
``JobLeases``: who follows which running job.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson
from google.longrunning import operations_proto_pb2 as operations_pb2

from ratd.config import Config
from ratd.secrets import REDIS

log = logging.getLogger(__name__)

# Job names ratd makes: "operations/<kind>-<32 hex>". Anything else names no job (and
# never reaches the file system).
NAME = re.compile(r"^operations/([a-z]+)-([0-9a-f]{32})$")
_VERSION = 1
# The least time a shared store's command may take (seconds): a record carries results.
MIN_TIMEOUT = 5.0


@dataclass(slots=True)
class JobRecord:
    """One job as kept: the Operation callers see, and what ratd needs to go on with it."""

    operation: operations_pb2.Operation
    kind: str
    # The owning tenant's name ("" under auth mode "none").
    tenant: str
    # The serialized request that started the job (its runner parses it).
    request: bytes = b""
    # The provider's handles (e.g. {"provider": "google", "id": "v1_..."}), for resuming.
    upstream: dict[str, str] = field(default_factory=dict)
    # Seconds since the epoch.
    created: float = 0.0
    updated: float = 0.0

    @property
    def name(self) -> str:
        return self.operation.name

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": _VERSION,
                "kind": self.kind,
                "tenant": self.tenant,
                "operation": _b64(self.operation.SerializeToString()),
                "request": _b64(self.request),
                "upstream": self.upstream,
                "created": self.created,
                "updated": self.updated,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> JobRecord:
        """Raises ValueError for anything but a record this version wrote."""
        try:
            doc: dict[str, Any] = orjson.loads(data)
            if doc.get("v") != _VERSION:
                raise ValueError(f"unknown record version {doc.get('v')!r}")
            operation = operations_pb2.Operation.FromString(base64.b64decode(doc["operation"]))
            upstream = {str(k): str(v) for k, v in dict(doc.get("upstream") or {}).items()}
            return cls(
                operation=operation,
                kind=str(doc["kind"]),
                tenant=str(doc["tenant"]),
                request=base64.b64decode(doc.get("request") or ""),
                upstream=upstream,
                created=float(doc.get("created") or 0.0),
                updated=float(doc.get("updated") or 0.0),
            )
        except (KeyError, TypeError, orjson.JSONDecodeError) as err:
            raise ValueError(f"not a job record: {err}") from None
        except Exception as err:  # protobuf's DecodeError and binascii.Error
            raise ValueError(f"not a job record: {err}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class JobStore(Protocol):
    """What the job manager needs of a store. ``load`` once at start (the jobs a local
    store kept; a shared store answers none: its running jobs are taken up by lease);
    every change of a job is a ``put`` of its whole record; the Operations service reads
    jobs this replica does not follow with ``get`` and ``page``.

    ``shared``: other replicas write the same store (then it is a ``JobLeases`` too)."""

    shared: bool

    async def load(self) -> list[JobRecord]: ...

    async def get(self, name: str) -> JobRecord | None: ...

    async def page(self, tenant: str | None, done: bool | None, offset: int, size: int) -> Page:
        """Newest first (created, then name), of ``tenant`` (None: every tenant's), only
        done or only running ones when ``done`` says so."""

    async def count(self) -> int: ...

    async def finished(self, before: float | None, limit: int) -> list[str]:
        """Names of finished jobs last updated before ``before`` (None: any), the least
        recently updated first."""

    async def put(self, record: JobRecord) -> None: ...

    async def delete(self, name: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Page:
    records: list[JobRecord]
    # More records follow this page.
    more: bool


class LeaseLost(Exception):
    """A shared store refused a write: another replica follows the job now, or it has
    finished (never two writers of one job)."""


@runtime_checkable
class JobLeases(Protocol):
    """Who follows each running job of a shared store: one replica at a time, holding a
    lease it renews; a replica's jobs are taken over once its leases expire."""

    async def claim_orphans(self, limit: int) -> list[JobRecord]:
        """Take the lease of up to ``limit`` running jobs that no replica holds; their
        records."""

    async def claim(self, name: str) -> bool:
        """Take the lease of the running job ``name`` if it is free."""

    async def renew(self, names: Sequence[str]) -> dict[str, Renewal]:
        """Extend this replica's leases of ``names``."""

    async def release(self, names: Sequence[str]) -> None:
        """Let go of this replica's leases of ``names`` (it stops): others take them up."""

    async def request_cancel(self, name: str) -> None:
        """Ask the job's follower to cancel it (it sees the request when it renews)."""


class Renewal(enum.Enum):
    KEPT = "kept"
    # Another replica holds the lease, or the job ended elsewhere: stop following it.
    LOST = "lost"
    # Kept, and another replica asked for the job to be cancelled.
    CANCEL = "cancel"


class _LocalStore:
    """The records of one process, in a dict (both local stores read from it)."""

    shared = False

    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}

    async def get(self, name: str) -> JobRecord | None:
        return self._records.get(name)

    async def page(self, tenant: str | None, done: bool | None, offset: int, size: int) -> Page:
        records = sorted(
            (
                record
                for record in self._records.values()
                if (tenant is None or record.tenant == tenant)
                and (done is None or record.operation.done == done)
            ),
            key=lambda record: (record.created, record.name),
            reverse=True,
        )
        return Page(records[offset : offset + size], offset + size < len(records))

    async def count(self) -> int:
        return len(self._records)

    async def finished(self, before: float | None, limit: int) -> list[str]:
        done = sorted(
            (
                r
                for r in self._records.values()
                if r.operation.done and (before is None or r.updated < before)
            ),
            key=lambda record: record.updated,
        )
        return [record.name for record in done[:limit]]


class MemoryJobStore(_LocalStore):
    """Jobs only in memory (``[jobs] dir = ""``): lost when ratd exits."""

    async def load(self) -> list[JobRecord]:
        return list(self._records.values())

    async def put(self, record: JobRecord) -> None:
        self._records[record.name] = record

    async def delete(self, name: str) -> None:
        self._records.pop(name, None)

    async def close(self) -> None:
        return None


class FileJobStore(_LocalStore):
    """A directory of ``<kind>-<hex>.json`` files, written atomically."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__()
        self.directory = Path(directory).expanduser()
        # One write at a time per job, in the order they were asked for.
        self._lock = asyncio.Lock()

    def _path(self, name: str) -> Path:
        match = NAME.match(name)
        if match is None:
            raise ValueError(f"not a job name: {name!r}")
        return self.directory / f"{match.group(1)}-{match.group(2)}.json"

    async def load(self) -> list[JobRecord]:
        records = await asyncio.to_thread(self._load)
        self._records = {record.name: record for record in records}
        return records

    def _load(self) -> list[JobRecord]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        records = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                record = JobRecord.from_bytes(path.read_bytes())
                if self._path(record.name) != path:
                    raise ValueError("its name does not match its file")
            except (OSError, ValueError) as err:
                log.warning("jobs: skipping %s: %s", path, err)
                continue
            records.append(record)
        for stale in self.directory.glob(".*.tmp"):  # writes a crash interrupted
            stale.unlink(missing_ok=True)
        return records

    async def put(self, record: JobRecord) -> None:
        path, data = self._path(record.name), record.to_bytes()
        self._records[record.name] = record
        async with self._lock:
            await asyncio.to_thread(_write_atomically, path, data)

    async def delete(self, name: str) -> None:
        path = self._path(name)
        self._records.pop(name, None)
        async with self._lock:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def close(self) -> None:
        async with self._lock:  # the last write finishes first
            return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename over, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_store(config: Config) -> JobStore:
    """The store ``[jobs] store`` names: "redis" (or "auto" with ``[state] backend =
    "redis"``): shared by every replica on ``[state] redis_url``; else the directory
    ``[jobs] dir`` ("": memory only)."""
    jobs, state = config.jobs, config.state
    if jobs.store == "redis" or (jobs.store == "auto" and state.backend == "redis"):
        from ratd.jobs.redis_store import RedisJobStore  # redis is imported only when used

        password = config.keys.get(REDIS)
        return RedisJobStore(
            state.redis_url,
            password=password.reveal() if password is not None else None,
            timeout=max(state.timeout_ms / 1000, MIN_TIMEOUT),
            lease=jobs.lease_secs,
        )
    return FileJobStore(jobs.dir) if jobs.dir else MemoryJobStore()
