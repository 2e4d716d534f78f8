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

With a store shared by several replicas (Redis), each running job is followed by the
one replica holding its lease; the others read it from the store (get, list, wait by
polling), ask its follower to cancel it, and take it over (through the same resume)
once its follower stops renewing the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.longrunning import operations_proto_pb2 as operations_pb2
from google.protobuf import any_pb2, message, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from ratatoskr.v1 import jobs_pb2
from ratd import errors
from ratd.config import JobsConfig
from ratd.core.access import Tenant
from ratd.jobs.store import NAME, JobLeases, JobRecord, JobStore, LeaseLost, Renewal
from ratd.secrets import redact
from ratd.service.status import public_message, status_code

log = logging.getLogger(__name__)

# How often a running job's progress is written to the store at most (seconds); its
# start and its end are always written.
PERSIST_EVERY = 1.0
# The longest a WaitOperation waits when the caller sets no timeout (seconds); the
# call's own deadline bounds it too.
WAIT_DEFAULT = 60.0
# How long cancelling a job's provider work may take (seconds); also how long a cancel
# of another replica's job waits for that replica to end it.
CANCEL_TIMEOUT = 10.0
# Reading another replica's job until it is done: the first pause and its cap (seconds).
POLL_FIRST, POLL_MAX = 0.05, 1.0
# Jobs whose follower died taken up per keeper round, and expired jobs deleted per call.
ORPHANS_PER_ROUND = 8
EXPIRE_PER_ROUND = 1000


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
    # A shared store could not be reached for its last write: the keeper writes it.
    unsaved: bool = False


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
        # A shared store: who follows which running job (None: this replica follows all).
        self.leases: JobLeases | None = store if isinstance(store, JobLeases) else None
        self.runners = runners
        # Resolves a stored owner's name to its tenant (roles, allow-list) on resume.
        self.tenant_named = tenant_named
        # The jobs this replica follows: running ones (and, with a shared store, ended
        # ones whose last write waits for Redis). Every other job is read from the store.
        self._jobs: dict[str, _Live] = {}
        # Progress writes and cancels under way (referenced until done).
        self._writes: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the kept jobs; resume or abandon those that were running. With a shared
        store, take up the running jobs no replica follows, and keep doing so."""
        for record in await self.store.load():
            if not record.operation.done:
                await self._adopt(record)
        if self.leases is not None:
            with contextlib.suppress(errors.StateUnavailable):  # the keeper tries again
                await self._take_orphans(self.leases)
            self._keeper = asyncio.get_running_loop().create_task(self._keep(self.leases))
        with contextlib.suppress(errors.StateUnavailable):
            await self._expire()

    async def _adopt(self, record: JobRecord) -> None:
        """Follow a running job whose process died: resume it, or end it ABORTED."""
        live = _Live(record)
        self._jobs[record.name] = live
        runner = self.runners.get(record.kind)
        if runner is not None and runner.can_resume(record):
            log.info("jobs: resuming %s", record.name)
            self._spawn(live, self.tenant_named(record.tenant) if record.tenant else None)
        else:
            await self._finish(
                live,
                error=(code_pb2.ABORTED, "the ratd running the job stopped; run it again"),
            )

    async def stop(self) -> None:
        """Stop the running tasks without finishing their jobs: a resumable job stays
        running in the store, for the next start (or another replica) to take up."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        tasks = [live.task for live in self._jobs.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.leases is not None:  # another replica takes the running jobs up at once
            running = [name for name, live in self._jobs.items() if not live.done.is_set()]
            with contextlib.suppress(errors.StateUnavailable):
                await self.leases.release(running)
        await self.store.close()

    # -- leases (a shared store) -------------------------------------------------------

    async def _keep(self, leases: JobLeases) -> None:
        """Every third of a lease: write what Redis missed, renew this replica's leases
        (acting on cancel requests, letting go of jobs another replica took), and take
        up jobs whose follower died."""
        while True:
            await asyncio.sleep(self.config.lease_secs / 3)
            try:
                await self._keep_once(leases)
            except errors.StateUnavailable:
                continue  # logged by the store; the leases are renewed when it is back
            except Exception:
                log.exception("jobs: keeping the leases failed")

    async def _keep_once(self, leases: JobLeases) -> None:
        for unsaved in [live for live in self._jobs.values() if live.unsaved]:
            await self._put(unsaved)
        running = [name for name, live in self._jobs.items() if not live.done.is_set()]
        for name, renewal in (await leases.renew(running)).items():
            live = self._jobs.get(name)
            if live is None or live.done.is_set():
                continue
            if renewal is Renewal.LOST:
                self._let_go(live)
            elif renewal is Renewal.CANCEL:  # not awaited: renewals must not wait on it
                self._background(self._cancel_followed(live))
        await self._take_orphans(leases)

    async def _take_orphans(self, leases: JobLeases) -> None:
        for record in await leases.claim_orphans(ORPHANS_PER_ROUND):
            if record.name not in self._jobs:
                log.info("jobs: taking over %s", record.name)
                await self._adopt(record)

    def _let_go(self, live: _Live) -> None:
        """Another replica follows the job now (or it ended): stop following it, without
        ending it."""
        if not live.done.is_set():
            log.warning("jobs: %s is followed by another replica now", live.record.name)
        if self._jobs.get(live.record.name) is live:
            del self._jobs[live.record.name]
        if live.task is not None:
            live.task.cancel()

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
        await self.store.put(record)  # a shared store: this replica's lease taken with it
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
                self._persist_soon(live)

        async def remember(handles: dict[str, str]) -> None:
            live.record.upstream.update(handles)
            await self._put(live)

        def update(change: Callable[[jobs_pb2.JobMetadata], None]) -> None:
            meta = metadata_of(live.record)
            change(meta)
            _set_metadata(live.record, meta)
            self._persist_soon(live)

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

    def _persist_soon(self, live: _Live) -> None:
        self._background(self._put(live))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task of its own, referenced until done (``stop`` waits)."""
        task = asyncio.get_running_loop().create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, live: _Live) -> None:
        """Keep the job's record. A shared store that refuses it (another replica took
        the job) ends this replica's following; one that cannot be reached is written
        again by the keeper. (A local store holds the record in memory either way.)"""
        record = live.record
        try:
            await self.store.put(record)
        except LeaseLost:
            self._let_go(live)
            return
        except (OSError, ValueError, errors.StateUnavailable) as err:
            log.error("jobs: cannot keep %s: %s", record.name, err)
            if self.leases is not None:
                live.unsaved = True
                return
        else:
            live.unsaved = False
        if live.done.is_set() and self._jobs.get(record.name) is live:
            del self._jobs[record.name]  # ended and kept: read from the store from now on

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
        await self._put(live)

    async def _make_room(self) -> None:
        """Below ``max_jobs`` (all replicas' jobs, with a shared store): drop expired and
        then the least recently finished jobs."""
        await self._expire()
        count = await self.store.count()
        if count < self.config.max_jobs:
            return
        finished = await self.store.finished(None, count - self.config.max_jobs + 1)
        if not finished:
            raise errors.Overloaded(
                f"ratd runs its limit of {self.config.max_jobs} jobs (jobs.max_jobs); "
                "retry when one has finished"
            )
        for name in finished:
            await self.store.delete(name)

    async def _expire(self) -> None:
        cutoff = time.time() - self.config.keep_finished_secs
        for name in await self.store.finished(cutoff, EXPIRE_PER_ROUND):
            await self.store.delete(name)

    # -- the Operations service --------------------------------------------------------

    async def _find(self, name: str, tenant: Tenant | None) -> JobRecord:
        """The job as this replica follows it, else as the store keeps it."""
        live = self._jobs.get(name) if NAME.match(name) else None
        record = live.record if live is not None else None
        if record is None and NAME.match(name):
            record = await self.store.get(name)
        if record is None or not visible(record, tenant):
            raise errors.JobNotFound(f"no job named {name!r}")
        return record

    async def get(self, name: str, tenant: Tenant | None) -> operations_pb2.Operation:
        return (await self._find(name, tenant)).operation

    async def list(
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
        everyone = tenant is None or "admin" in tenant.roles
        page = await self.store.page(
            None if everyone or tenant is None else tenant.name, wanted, start, size
        )
        operations = []
        for record in page.records:
            live = self._jobs.get(record.name)  # fresher than the store's copy
            operations.append((live.record if live is not None else record).operation)
        answer = operations_pb2.ListOperationsResponse(operations=operations)
        if page.more:
            answer.next_page_token = str(start + size)
        return answer

    async def cancel(self, name: str, tenant: Tenant | None) -> None:
        """Stop a running job (its runner cancels upstream work); a finished job is
        left as it is. Another replica's job: taken over and cancelled here when its
        follower is gone, else its follower is asked to (and waited for, briefly)."""
        record = await self._find(name, tenant)
        live = self._jobs.get(name)
        if live is not None:
            await self._cancel_followed(live)
            return
        if record.operation.done or self.leases is None:
            return
        if await self.leases.claim(name):
            kept = await self.store.get(name)  # as its last follower left it
            if kept is None or kept.operation.done:
                return
            live = _Live(kept)
            self._jobs[name] = live
            await self._finish(live, error=(code_pb2.CANCELLED, "cancelled by the caller"))
            await self._cancel_upstream(kept)
            return
        await self.leases.request_cancel(name)
        await self._poll_done(name, CANCEL_TIMEOUT)

    async def _cancel_followed(self, live: _Live) -> None:
        if live.done.is_set() or live.task is None:
            return
        task = live.task
        await self._finish(live, error=(code_pb2.CANCELLED, "cancelled by the caller"))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self._cancel_upstream(live.record)

    async def _cancel_upstream(self, record: JobRecord) -> None:
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                await self.runners[record.kind].cancel(record)
        except (errors.GatewayError, TimeoutError) as err:
            log.warning("jobs: could not cancel %s upstream: %s", record.name, err)

    async def wait(
        self, name: str, tenant: Tenant | None, timeout: float | None
    ) -> operations_pb2.Operation:
        """The operation once done, or as it is when ``timeout`` passes. A job another
        replica follows is read from the store again and again (backing off)."""
        record = await self._find(name, tenant)
        if record.operation.done:
            return record.operation
        return await self._poll_done(name, timeout if timeout is not None else WAIT_DEFAULT)

    async def _poll_done(self, name: str, timeout: float) -> operations_pb2.Operation:
        """The job's operation once done, or as it is after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + timeout, POLL_FIRST
        while True:
            live = self._jobs.get(name)
            left = deadline - loop.time()
            if live is not None:  # woken at least once a lease, in case it is let go
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, min(left, self.config.lease_secs))):
                        await live.done.wait()
                if live.done.is_set() or loop.time() >= deadline:
                    return live.record.operation
                continue
            record = await self.store.get(name)
            if record is None:
                raise errors.JobNotFound(f"no job named {name!r}")
            if record.operation.done or left <= 0:
                return record.operation
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    async def delete(self, name: str, tenant: Tenant | None) -> None:
        record = await self._find(name, tenant)
        if not record.operation.done or name in self._jobs:
            raise errors.JobNotFinished(f"job {name} is still running: cancel it first")
        await self.store.delete(name)


def _parse_filter(text: str) -> bool | None:
    compact = text.replace(" ", "").lower()
    if not compact:
        return None
    if compact in ("done=true", "done=false"):
        return compact == "done=true"
    raise errors.InvalidInput(
        f"filter {text!r} is not supported: use done=true or done=false", field="filter"
    )
