"""Where jobs are kept: one small interface (``JobStore``), an in-memory store and a
file-backed one (the default).

The file store writes each job as one JSON file (the Operation and the starting request
as base64 protobuf, the owner, the provider's ids) to a temporary file, fsyncs it and
renames it over the old one, then fsyncs the directory: a crash leaves either the old
record or the new, never half of one. File I/O runs in a worker thread, off the loop.

A store shared by several replicas (the ``[state]`` backend) implements the same four
calls; ``JobManager`` asks nothing else of it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from google.longrunning import operations_proto_pb2 as operations_pb2

log = logging.getLogger(__name__)

# Job names ratd makes: "operations/<kind>-<32 hex>". Anything else names no job (and
# never reaches the file system).
NAME = re.compile(r"^operations/([a-z]+)-([0-9a-f]{32})$")
_VERSION = 1


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
    """What the job manager needs of a store. ``load`` once at start; then every change
    of a job is a ``put`` of its whole record."""

    async def load(self) -> list[JobRecord]: ...

    async def put(self, record: JobRecord) -> None: ...

    async def delete(self, name: str) -> None: ...

    async def close(self) -> None: ...


class MemoryJobStore:
    """Jobs only in memory (``[jobs] dir = ""``): lost when ratd exits."""

    async def load(self) -> list[JobRecord]:
        return []

    async def put(self, record: JobRecord) -> None:
        return None

    async def delete(self, name: str) -> None:
        return None

    async def close(self) -> None:
        return None


class FileJobStore:
    """A directory of ``<kind>-<hex>.json`` files, written atomically."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        # One write at a time per job, in the order they were asked for.
        self._lock = asyncio.Lock()

    def _path(self, name: str) -> Path:
        match = NAME.match(name)
        if match is None:
            raise ValueError(f"not a job name: {name!r}")
        return self.directory / f"{match.group(1)}-{match.group(2)}.json"

    async def load(self) -> list[JobRecord]:
        return await asyncio.to_thread(self._load)

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
        async with self._lock:
            await asyncio.to_thread(_write_atomically, path, data)

    async def delete(self, name: str) -> None:
        path = self._path(name)
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


def open_store(directory: str) -> JobStore:
    """The store ``[jobs] dir`` names ("" : memory only)."""
    return FileJobStore(directory) if directory else MemoryJobStore()
