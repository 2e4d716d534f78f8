"""Dynamic batching: concurrent requests for one model share ONNX Runtime calls.

Every text (or NLI pair) is one item in the model's queue. The batch loop takes the oldest
waiting item, adds the items closest to it in length while the padded batch stays within
the token budget (rows x longest <= ``max_batch_tokens``) and ``max_batch_size``, and runs
the batch in a worker thread (ONNX Runtime releases the GIL, the event loop keeps serving).
Grouping by length limits padding; starting from the oldest item keeps it first-come,
first-served, so a long text is never starved by a stream of short ones.

When the worker is idle and fewer items wait than a full batch, the loop waits up to
``max_wait`` for company. While a batch runs, new items gather for the next one, so under
load batches fill by themselves and the wait never applies.

The queue is bounded (``max_queue`` items): beyond it, submit fails at once with
RESOURCE_EXHAUSTED rather than letting latency grow without bound.

Telemetry per model (``ratd.metrics``): the queue depth, each batch's size and padded
tokens, and failed inputs by kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ratd import errors
from ratd.metrics import BATCH_FAILURES, BATCH_QUEUE, BATCH_SIZE, BATCH_TOKENS, child

log = logging.getLogger(__name__)


class Input(Protocol):
    """A batch item: a tokenized text (``Encoded``) or a window of audio
    (``speech.Window``), with the tokens it counts for against ``max_batch_tokens``."""

    @property
    def length(self) -> int: ...


# One result per input, in order (rows of an array, or decoded windows).
RunBatch = Callable[[list[Any]], Sequence[Any]]


@dataclass(slots=True)
class _Item:
    encoded: Input
    future: asyncio.Future[Any]
    order: int = field(default=0)


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_batch_tokens: int = 2048
    max_batch_size: int = 64
    max_wait: float = 0.002
    max_queue: int = 4096


def cut_batch(pending: list[_Item], limits: BatchLimits) -> tuple[list[_Item], list[_Item]]:
    """(the next batch, what stays queued): the oldest item and those nearest its length."""
    anchor = pending[0]
    rest = sorted(
        pending[1:], key=lambda item: (abs(item.encoded.length - anchor.encoded.length), item.order)
    )
    batch = [anchor]
    longest = anchor.encoded.length
    leftover: list[_Item] = []
    for item in rest:
        width = max(longest, item.encoded.length)
        if (
            len(batch) < limits.max_batch_size
            and (len(batch) + 1) * width <= limits.max_batch_tokens
        ):
            batch.append(item)
            longest = width
        else:
            leftover.append(item)
    leftover.sort(key=lambda item: item.order)
    return batch, leftover


class Batcher:
    """The queue and batch loop of one loaded model."""

    def __init__(self, name: str, run: RunBatch, executor: Executor, limits: BatchLimits) -> None:
        self.name = name
        self.run = run
        self.executor = executor
        self.limits = limits
        self._pending: list[_Item] = []
        self._arrived = asyncio.Event()
        self._order = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Counters for tests and benchmarks: how the load was batched.
        self.batches = 0
        self.items = 0

    @property
    def queued(self) -> int:
        return len(self._pending)

    def _set_pending(self, pending: list[_Item]) -> None:
        self._pending = pending
        child(BATCH_QUEUE, self.name).set(len(pending))

    def _count_failures(self, kind: str, inputs: int) -> None:
        child(BATCH_FAILURES, self.name, kind).inc(inputs)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"batcher:{self.name}"
        )

    async def submit(self, encoded: Sequence[Input]) -> list[Any]:
        """One result row per input, in order, once the batches holding them have run."""
        if self._closed:
            raise errors.ModelNotAvailable(f"{self.name} is unloading; retry", model=self.name)
        if len(encoded) > self.limits.max_queue:
            self._count_failures("too_large", len(encoded))
            # Retrying cannot help: the request is larger than the whole queue.
            raise errors.InvalidInput(
                f"the request holds {len(encoded)} inputs for {self.name}, more than its queue "
                f"takes (providers.local.max_queue = {self.limits.max_queue}); split it",
                model=self.name,
            )
        if len(self._pending) + len(encoded) > self.limits.max_queue:
            self._count_failures("overloaded", len(encoded))
            raise errors.Overloaded(
                f"{self.name}: {len(self._pending)} inputs are already queued (limit "
                f"{self.limits.max_queue}, providers.local.max_queue); retry shortly",
                model=self.name,
            )
        loop = asyncio.get_running_loop()
        items = [_Item(e, loop.create_future(), next(self._order)) for e in encoded]
        self._set_pending(self._pending + items)
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        except BaseException:
            # The caller is gone (cancelled, deadline) or one input failed: its inputs
            # still queued leave the queue now, so they neither run nor count against
            # max_queue; one already in a running batch finishes unseen.
            for item in items:
                item.future.cancel()
            self._set_pending([item for item in self._pending if not item.future.done()])
            raise

    async def _gather_company(self) -> None:
        """Wait up to max_wait for a full batch when the worker is idle."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.max_wait
        while len(self._pending) < self.limits.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._pending:
                if self.limits.max_wait > 0:
                    await self._gather_company()
                self._set_pending([item for item in self._pending if not item.future.done()])
                if not self._pending:
                    break
                batch, pending = cut_batch(self._pending, self.limits)
                self._set_pending(pending)
                child(BATCH_SIZE, self.name).observe(len(batch))
                longest = max(item.encoded.length for item in batch)
                child(BATCH_TOKENS, self.name).observe(len(batch) * longest)
                try:
                    rows = await loop.run_in_executor(
                        self.executor, self.run, [i.encoded for i in batch]
                    )
                except asyncio.CancelledError:
                    self._fail(
                        batch,
                        errors.ModelNotAvailable(f"{self.name} was unloaded", model=self.name),
                        "unloaded",
                    )
                    raise
                except errors.GatewayError as err:
                    self._fail(batch, err, "inference")
                    continue
                except Exception as err:
                    log.exception("%s: inference failed on a batch of %d", self.name, len(batch))
                    self._fail(
                        batch,
                        errors.ModelNotAvailable(
                            f"{self.name}: inference failed: {err}", model=self.name
                        ),
                        "inference",
                    )
                    continue
                self.batches += 1
                self.items += len(batch)
                for item, row in zip(batch, rows, strict=True):
                    if not item.future.done():
                        item.future.set_result(row)

    def _fail(self, batch: list[_Item], err: BaseException, kind: str) -> None:
        """Fail the inputs still waiting for an answer (counted under ``kind``)."""
        failed = 0
        for item in batch:
            if not item.future.done():
                item.future.set_exception(err)
                failed += 1
        if failed:
            self._count_failures(kind, failed)

    async def close(self) -> None:
        """Stop the loop; whatever still waits fails with UNAVAILABLE (fallback may retry)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail(
            self._pending,
            errors.ModelNotAvailable(f"{self.name} was unloaded", model=self.name),
            "unloaded",
        )
        self._set_pending([])
