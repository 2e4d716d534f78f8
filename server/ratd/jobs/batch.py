"""The local batch runner: a SubmitBatch job run through ratd's own pipeline.

Each item is one call as if a client had made it (Chat or Embed): admitted by the call
guard (so the concurrency limit, the time limit, metrics and the request log apply, and
the tenant's allow-list, since the item runs as the job's tenant), routed, retried and
fallen back by the gateway. At most ``concurrency`` items run at once. An item that
fails keeps its status in its result; the batch goes on.

This runner serves every batch; a provider's own batch API (OpenAI Batch, Anthropic
Message Batches, Gemini batch mode) would be another runner of kind "batch" behind the
same job, chosen when every item goes to that provider. It cannot resume after a
restart (its items ran in the process that died): such a job ends ABORTED.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import count

from ratatoskr.v1 import jobs_pb2
from ratd import errors
from ratd.config import JobsConfig
from ratd.core.access import Tenant
from ratd.jobs.manager import JobManager, RunningJob, metadata_of
from ratd.jobs.store import JobRecord
from ratd.secrets import redact
from ratd.service.guard import CallGuard
from ratd.service.status import public_message, status_code

log = logging.getLogger(__name__)

KIND = "batch"
PROVIDER = "ratd"
# An item refused because ratd is at max_concurrent_requests waits and tries again:
# the first wait, its cap, and how many tries (seconds).
BUSY_FIRST, BUSY_MAX, BUSY_TRIES = 0.05, 2.0, 30
_METHODS = {"chat": "Chat", "embed": "Embed"}


def check_batch(request: jobs_pb2.SubmitBatchRequest, config: JobsConfig) -> None:
    """Refuse what cannot run, naming the field (before any job is made)."""
    if not request.items:
        raise errors.InvalidInput("a batch needs at least one item", field="items")
    if len(request.items) > config.max_batch_items:
        raise errors.InvalidInput(
            f"{len(request.items)} items: more than jobs.max_batch_items "
            f"({config.max_batch_items})",
            field="items",
        )
    seen: set[str] = set()
    for i, item in enumerate(request.items):
        if item.WhichOneof("request") is None:
            raise errors.InvalidInput(
                "an item needs a request (chat or embed)", field=f"items[{i}].request"
            )
        if item.custom_id:
            if item.custom_id in seen:
                raise errors.InvalidInput(
                    f"custom_id {item.custom_id!r} is used twice", field=f"items[{i}].custom_id"
                )
            seen.add(item.custom_id)


def batch_metadata(request: jobs_pb2.SubmitBatchRequest) -> jobs_pb2.JobMetadata:
    return jobs_pb2.JobMetadata(
        total=len(request.items), provider=PROVIDER, display_name=request.display_name
    )


class LocalBatchRunner:
    """Runs a batch's items through the gateway (see the module docstring)."""

    kind = KIND
    resumable = False

    def __init__(self, guard: CallGuard, config: JobsConfig) -> None:
        self.guard = guard
        self.config = config

    async def run(self, job: RunningJob) -> jobs_pb2.BatchResult:
        request = jobs_pb2.SubmitBatchRequest.FromString(job.record.request)
        cap = self.config.batch_concurrency
        workers = min(request.concurrency or cap, cap, len(request.items))
        results: list[jobs_pb2.BatchItemResult] = [None] * len(request.items)  # type: ignore[list-item]
        next_index = count()
        tally = {"completed": 0, "failed": 0}

        async def worker() -> None:
            while (i := next(next_index)) < len(request.items):
                item = request.items[i]
                result = await self._item(item, job.tenant)
                result.custom_id = item.custom_id or str(i)
                results[i] = result
                tally["failed" if result.HasField("error") else "completed"] += 1
                job.progress(**tally)

        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
        return jobs_pb2.BatchResult(results=results)

    async def cancel(self, record: JobRecord) -> None:
        """Nothing left to stop: cancelling ``run`` cancelled every item in flight."""

    async def _item(
        self, item: jobs_pb2.BatchItem, tenant: Tenant | None
    ) -> jobs_pb2.BatchItemResult:
        which = item.WhichOneof("request") or ""
        method = _METHODS[which]
        wait = BUSY_FIRST
        for _ in range(BUSY_TRIES):
            try:
                return await self._call(method, item, tenant)
            except errors.Overloaded:  # ratd is busy with other calls: wait for room
                await asyncio.sleep(wait)
                wait = min(wait * 2, BUSY_MAX)
            except Exception as exc:
                return _failed(self.guard.failure(method, exc))
        return _failed(errors.Overloaded("ratd stayed at max_concurrent_requests"))

    async def _call(
        self, method: str, item: jobs_pb2.BatchItem, tenant: Tenant | None
    ) -> jobs_pb2.BatchItemResult:
        with self.guard.holder.use() as gateway:
            admission = self.guard.admission(
                method, self.guard.request_timeout, tenant, lambda: None, system="job"
            )
            async with admission:
                if method == "Chat":
                    return jobs_pb2.BatchItemResult(chat=await gateway.chat(item.chat))
                return jobs_pb2.BatchItemResult(embed=await gateway.embed(item.embed))
        raise AssertionError("unreachable: the admission re-raises or the call answers")


def _failed(found: errors.GatewayError | str) -> jobs_pb2.BatchItemResult:
    """An item's error as a call's status would say it (a bug: INTERNAL with the id of
    the logged traceback)."""
    if isinstance(found, errors.GatewayError):
        error = jobs_pb2.BatchItemError(
            code=status_code(found).name, message=redact(public_message(found))
        )
    else:
        error = jobs_pb2.BatchItemError(
            code="INTERNAL", message=f"internal error in ratd (request {found})"
        )
    return jobs_pb2.BatchItemResult(error=error)


async def submit_batch(
    jobs: JobManager, request: jobs_pb2.SubmitBatchRequest, tenant: Tenant | None
) -> jobs_pb2.SubmitBatchResponse:
    """SubmitBatch: check the batch, start its job, answer with the job's name."""
    check_batch(request, jobs.config)
    record = await jobs.create(KIND, tenant, request, batch_metadata(request))
    return jobs_pb2.SubmitBatchResponse(name=record.name, metadata=metadata_of(record))
