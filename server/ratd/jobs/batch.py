"""The local batch runner: a SubmitBatch job run through ratd's own pipeline.

Each item is one call as if a client had made it (Chat or Embed): admitted by the call
guard (so the concurrency limit, the time limit, metrics and the request log apply, and
the tenant's allow-list, since the item runs as the job's tenant), routed, retried and
fallen back by the gateway. At most ``concurrency`` items run at once. An item that
fails keeps its status in its result; the batch goes on.

A batch that names a provider runs at that provider's batch API instead, by its kind:
``openai_batch.py`` OpenAI's Batch API, ``anthropic_batch.py`` Anthropic's Message
Batches, ``gemini_batch.py`` the Gemini API's batch mode. The local runner cannot resume
after a restart (its items ran in the process that died): such a job ends ABORTED; a
provider's batch is polled again.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import count

from ratatoskr.v1 import jobs_pb2
from ratd import errors
from ratd.config import JobsConfig
from ratd.core.access import Tenant
from ratd.jobs.anthropic_batch import AnthropicBatches
from ratd.jobs.gemini_batch import GeminiBatches
from ratd.jobs.manager import JobManager, RunningJob, metadata_of
from ratd.jobs.openai_batch import OpenAIBatches
from ratd.jobs.results import failed_result
from ratd.jobs.store import JobRecord
from ratd.service.guard import CallGuard

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
        total=len(request.items),
        provider=request.provider or PROVIDER,
        display_name=request.display_name,
    )


class BatchRunner:
    """Kind "batch": at the provider's batch API when the request names a provider,
    else through ratd's own pipeline (``LocalBatchRunner``)."""

    kind = KIND

    def __init__(
        self,
        local: LocalBatchRunner,
        openai: OpenAIBatches,
        anthropic: AnthropicBatches,
        gemini: GeminiBatches,
    ) -> None:
        self.local = local
        self.openai = openai
        self.anthropic = anthropic
        self.gemini = gemini

    def at(self, provider: str) -> OpenAIBatches | AnthropicBatches | GeminiBatches:
        """The batch API of the provider of that name (by its kind)."""
        found = self.openai.holder.current.providers.get(provider)
        kind = found.kind if found is not None else ""
        if kind == "anthropic":
            return self.anthropic
        if kind == "google":
            return self.gemini
        return self.openai  # which refuses every other kind, naming the field

    def can_resume(self, record: JobRecord) -> bool:
        """A provider's batch is polled again (or submitted, if it never was); the local
        runner's items ran in the process that stopped."""
        return bool(jobs_pb2.SubmitBatchRequest.FromString(record.request).provider)

    async def run(self, job: RunningJob) -> jobs_pb2.BatchResult:
        request = jobs_pb2.SubmitBatchRequest.FromString(job.record.request)
        if request.provider:
            return await self.at(job.record.upstream.get("provider", request.provider)).run(job)
        return await self.local.run(job)

    async def cancel(self, record: JobRecord) -> None:
        """The provider's batch (nothing for the local runner: its items stopped)."""
        provider = record.upstream.get("provider")
        if provider:
            await self.at(provider).cancel(record)


class LocalBatchRunner:
    """Runs a batch's items through the gateway (see the module docstring)."""

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
                return failed_result(self.guard.failure(method, exc))
        return failed_result(errors.Overloaded("ratd stayed at max_concurrent_requests"))

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


async def submit_batch(
    jobs: JobManager,
    runner: BatchRunner,
    request: jobs_pb2.SubmitBatchRequest,
    tenant: Tenant | None,
) -> jobs_pb2.SubmitBatchResponse:
    """SubmitBatch: check the batch, start its job, answer with the job's name."""
    check_batch(request, jobs.config)
    if request.provider:
        runner.at(request.provider).check(request, tenant)
    record = await jobs.create(KIND, tenant, request, batch_metadata(request))
    return jobs_pb2.SubmitBatchResponse(name=record.name, metadata=metadata_of(record))
