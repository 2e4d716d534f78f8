"""Jobs: work that outlives a call, followed through google.longrunning.Operations.

``JobManager`` owns the jobs of one ratd: it creates them (an RPC such as SubmitBatch),
runs each in a task of its own through the ``Runner`` of its kind, keeps every change in
the ``JobStore``, and answers the Operations service: get, list, cancel, wait, delete,
each only over the jobs the caller's tenant owns (a tenant with role ``admin``, or any
caller under auth mode "none", sees all). A job of another tenant is NOT_FOUND, exactly
as one that does not exist.

At start it loads the store: a job still running is resumed when its runner can go on
from what was kept (a provider's job, polled again by its id); otherwise it is marked
failed (ABORTED), since its work was lost with the process that ran it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from google.longrunning import operations_proto_pb2 as operations_pb2
from google.protobuf import any_pb2, message, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from ratatoskr.v1 import jobs_pb2
from ratd import errors
from ratd.config import JobsConfig
from ratd.core.access import Tenant
from ratd.jobs.store import NAME, JobRecord, JobStore
from ratd.secrets import redact
from ratd.service.status import public_message, status_code

log = logging.getLogger(__name__)

# How often a running job's progress is written to the store at most (seconds); its
# start and its end are always written.
PERSIST_EVERY = 1.0
# The longest a WaitOperation waits when the caller sets no timeout (seconds); the
# call's own deadline bounds it too.
WAIT_DEFAULT = 60.0
# How long cancelling a job's provider work may take (seconds).
CANCEL_TIMEOUT = 10.0


class Progress(Protocol):
    """What a runner reports as it goes."""

    def __call__(self, *, completed: int, failed: int) -> None: ...


@dataclass(slots=True)
class RunningJob:
    """A job as its runner sees it: its record, the tenant it runs for, and callbacks
    for progress and the provider's handles (kept for a resume)."""

    record: JobRecord
    tenant: Tenant | None
    progress: Progress
    # Keeps the provider's handles (its job id) with the job, written before it returns.
    remember: Callable[[dict[str, str]], Awaitable[None]]
    # Changes the job's metadata (e.g. the provider's status), kept soon after.
    update: Callable[[Callable[[jobs_pb2.JobMetadata], None]], None]


class Runner(Protocol):
    """Runs the jobs of one kind. ``run`` returns the result message (packed into the
    Operation's response) or raises a GatewayError (its error); ``can_resume``: can
    ``run`` go on with a job whose process died (it reads ``record.upstream``)? ``run``
    is cancelled both when ratd stops and when the caller cancels the job; only the
    latter is followed by ``cancel``, so a stopping ratd leaves provider work running
    for the next start to take up."""

    kind: str

    def can_resume(self, record: JobRecord) -> bool: ...

    async def run(self, job: RunningJob) -> message.Message: ...

    async def cancel(self, record: JobRecord) -> None:
        """Stop the job's work at the provider (after ``run`` was cancelled); a failure
        is only logged: the job is cancelled for its caller either way."""


@dataclass(slots=True)
class _Live:
    record: JobRecord
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last_persist: float = 0.0


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def metadata_of(record: JobRecord) -> jobs_pb2.JobMetadata:
    meta = jobs_pb2.JobMetadata()
    record.operation.metadata.Unpack(meta)
    return meta


def _set_metadata(record: JobRecord, meta: jobs_pb2.JobMetadata) -> None:
    meta.update_time.CopyFrom(_now())
    record.operation.metadata.Pack(meta)
    record.updated = time.time()


def visible(record: JobRecord, tenant: Tenant | None) -> bool:
    """May ``tenant`` see this job? Its owner, an admin, or anyone without auth."""
    return tenant is None or "admin" in tenant.roles or record.tenant == tenant.name


class JobManager:
    """The jobs of one ratd (see the module docstring)."""

    def __init__(
        self,
        config: JobsConfig,
        store: JobStore,
        runners: dict[str, Runner],
        tenant_named: Callable[[str], Tenant | None],
    ) -> None:
        self.config = config
        self.store = store
        self.runners = runners
        # Resolves a stored owner's name to its tenant (roles, allow-list) on resume.
        self.tenant_named = tenant_named
        self._jobs: dict[str, _Live] = {}
        # Progress writes under way (referenced until done).
        self._writes: set[asyncio.Task[None]] = set()

    # -- life --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the kept jobs; resume or abandon those that were running."""
        for record in await self.store.load():
            live = _Live(record)
            self._jobs[record.name] = live
            if record.operation.done:
                live.done.set()
                continue
            runner = self.runners.get(record.kind)
            if runner is not None and runner.can_resume(record):
                log.info("jobs: resuming %s", record.name)
                self._spawn(live, self.tenant_named(record.tenant) if record.tenant else None)
            else:
                await self._finish(
                    live,
                    error=(code_pb2.ABORTED, "ratd restarted while the job ran; run it again"),
                )
        await self._expire()

    async def stop(self) -> None:
        """Stop the running tasks without finishing their jobs: a resumable job stays
        running in the store, for the next start to take up."""
        tasks = [live.task for live in self._jobs.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.store.close()

    # -- creating and running ----------------------------------------------------------

    async def create(
        self,
        kind: str,
        tenant: Tenant | None,
        request: message.Message,
        meta: jobs_pb2.JobMetadata,
    ) -> JobRecord:
        """A new job of ``kind`` for ``tenant``, started at once."""
        await self._make_room()
        name = f"operations/{kind}-{uuid.uuid4().hex}"
        meta.kind = kind
        meta.tenant = tenant.name if tenant is not None else ""
        meta.state = jobs_pb2.JOB_STATE_RUNNING
        meta.create_time.CopyFrom(_now())
        record = JobRecord(
            operations_pb2.Operation(name=name),
            kind,
            meta.tenant,
            request.SerializeToString(),
            created=time.time(),
        )
        _set_metadata(record, meta)
        await self.store.put(record)
        live = _Live(record)
        self._jobs[name] = live
        self._spawn(live, tenant)
        return record

    def _spawn(self, live: _Live, tenant: Tenant | None) -> None:
        runner = self.runners[live.record.kind]

        def progress(*, completed: int, failed: int) -> None:
            meta = metadata_of(live.record)
            meta.completed, meta.failed = completed, failed
            if meta.total:
                meta.progress = min(1.0, (completed + failed) / meta.total)
            _set_metadata(live.record, meta)
            if time.monotonic() - live.last_persist >= PERSIST_EVERY:
                live.last_persist = time.monotonic()
                self._persist_soon(live.record)

        async def remember(handles: dict[str, str]) -> None:
            live.record.upstream.update(handles)
            await self._put(live.record)

        def update(change: Callable[[jobs_pb2.JobMetadata], None]) -> None:
            meta = metadata_of(live.record)
            change(meta)
            _set_metadata(live.record, meta)
            self._persist_soon(live.record)

        job = RunningJob(live.record, tenant, progress, remember, update)
        live.task = asyncio.get_running_loop().create_task(self._run(live, runner, job))

    async def _run(self, live: _Live, runner: Runner, job: RunningJob) -> None:
        try:
            result = await runner.run(job)
        except asyncio.CancelledError:
            if not live.done.is_set() and self._jobs.get(live.record.name) is live:
                raise  # ratd stops: the job stays as it was kept
            return
        except errors.GatewayError as err:  # the status a call would have had
            text = redact(public_message(err))
            await self._finish(live, error=(status_code(err).value[0], text))
            return
        except Exception:
            log.exception("jobs: %s failed", live.record.name)
            await self._finish(live, error=(code_pb2.INTERNAL, "the job failed: a bug in ratd"))
            return
        await self._finish(live, result=result)

    def _persist_soon(self, record: JobRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._put(record))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, record: JobRecord) -> None:
        try:
            await self.store.put(record)
        except (OSError, ValueError) as err:
            log.error("jobs: cannot keep %s: %s", record.name, err)

    async def _finish(
        self,
        live: _Live,
        *,
        result: message.Message | None = None,
        error: tuple[int, str] | None = None,
    ) -> None:
        """The job's end: its response or its error, its final state, written."""
        if live.done.is_set():
            return
        record = live.record
        meta = metadata_of(record)
        if result is not None:
            packed = any_pb2.Any()
            packed.Pack(result)
            limit = int(self.config.max_result_mb * 1024 * 1024)
            if packed.ByteSize() > limit:
                size = packed.ByteSize() / 1024 / 1024
                error = (
                    code_pb2.RESOURCE_EXHAUSTED,
                    f"the result ({size:.1f} MB) is larger than jobs.max_result_mb",
                )
            else:
                record.operation.response.CopyFrom(packed)
                meta.state = jobs_pb2.JOB_STATE_SUCCEEDED
                meta.progress = 1.0
        if error is not None:
            code, text = error
            record.operation.error.CopyFrom(status_pb2.Status(code=code, message=text))
            cancelled = code == code_pb2.CANCELLED
            meta.state = jobs_pb2.JOB_STATE_CANCELLED if cancelled else jobs_pb2.JOB_STATE_FAILED
        record.operation.done = True
        _set_metadata(record, meta)
        live.done.set()
        await self._put(record)

    async def _make_room(self) -> None:
        """Below ``max_jobs``: drop expired and then the oldest finished jobs."""
        await self._expire()
        if len(self._jobs) < self.config.max_jobs:
            return
        finished = sorted(
            (live.record for live in self._jobs.values() if live.done.is_set()),
            key=lambda record: record.updated,
        )
        if not finished:
            raise errors.Overloaded(
                f"ratd runs its limit of {self.config.max_jobs} jobs (jobs.max_jobs); "
                "retry when one has finished"
            )
        for record in finished[: len(self._jobs) - self.config.max_jobs + 1]:
            await self._forget(record.name)

    async def _expire(self) -> None:
        cutoff = time.time() - self.config.keep_finished_secs
        for name, live in list(self._jobs.items()):
            if live.done.is_set() and live.record.updated < cutoff:
                await self._forget(name)

    async def _forget(self, name: str) -> None:
        self._jobs.pop(name, None)
        await self.store.delete(name)

    # -- the Operations service --------------------------------------------------------

    def _find(self, name: str, tenant: Tenant | None) -> _Live:
        live = self._jobs.get(name) if NAME.match(name) else None
        if live is None or not visible(live.record, tenant):
            raise errors.JobNotFound(f"no job named {name!r}")
        return live

    def get(self, name: str, tenant: Tenant | None) -> operations_pb2.Operation:
        return self._find(name, tenant).record.operation

    def list(
        self, tenant: Tenant | None, filter_text: str, page_size: int, page_token: str
    ) -> operations_pb2.ListOperationsResponse:
        """Newest first. ``filter``: "", "done=true" or "done=false" (spaces allowed);
        the page token is the offset that the previous page ended at."""
        wanted = _parse_filter(filter_text)
        try:
            start = int(page_token) if page_token else 0
        except ValueError:
            raise errors.InvalidInput(
                "page_token is not one this ratd gave", field="page_token"
            ) from None
        if page_size < 0 or start < 0:
            raise errors.InvalidInput("page_size and page_token must not be negative")
        size = min(page_size or 100, 1000)
        records = sorted(
            (
                live.record
                for live in self._jobs.values()
                if visible(live.record, tenant)
                and (wanted is None or live.record.operation.done == wanted)
            ),
            key=lambda record: (record.created, record.name),
            reverse=True,
        )
        page = records[start : start + size]
        answer = operations_pb2.ListOperationsResponse(
            operations=[record.operation for record in page]
        )
        if start + size < len(records):
            answer.next_page_token = str(start + size)
        return answer

    async def cancel(self, name: str, tenant: Tenant | None) -> None:
        """Stop a running job (its runner cancels upstream work); a finished job is
        left as it is."""
        live = self._find(name, tenant)
        if live.done.is_set():
            return
        if live.task is not None:
            task = live.task
            await self._finish(live, error=(code_pb2.CANCELLED, "cancelled by the caller"))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                async with asyncio.timeout(CANCEL_TIMEOUT):
                    await self.runners[live.record.kind].cancel(live.record)
            except (errors.GatewayError, TimeoutError) as err:
                log.warning("jobs: could not cancel %s upstream: %s", name, err)

    async def wait(
        self, name: str, tenant: Tenant | None, timeout: float | None
    ) -> operations_pb2.Operation:
        """The operation once done, or as it is when ``timeout`` passes."""
        live = self._find(name, tenant)
        try:
            async with asyncio.timeout(timeout if timeout is not None else WAIT_DEFAULT):
                await live.done.wait()
        except TimeoutError:
            pass
        return live.record.operation

    async def delete(self, name: str, tenant: Tenant | None) -> None:
        live = self._find(name, tenant)
        if not live.done.is_set():
            raise errors.JobNotFinished(f"job {name} is still running: cancel it first")
        await self._forget(name)


def _parse_filter(text: str) -> bool | None:
    compact = text.replace(" ", "").lower()
    if not compact:
        return None
    if compact in ("done=true", "done=false"):
        return compact == "done=true"
    raise errors.InvalidInput(
        f"filter {text!r} is not supported: use done=true or done=false", field="filter"
    )
