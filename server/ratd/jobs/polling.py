"""Polling a provider's job until it is done, shared by the provider batch runners."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson

from ratatoskr.v1 import jobs_pb2
from ratd import errors
from ratd.core.access import Tenant
from ratd.jobs.manager import RunningJob
from ratd.providers.http import parse_body
from ratd.providers.http_provider import HttpProvider
from ratd.registry import Registry
from ratd.service.holder import GatewayHolder

# Polls in a row that may fail for a passing reason before the job is given up.
POLL_FAILURES = 3
# What a provider's batch API bills of the model's price: half, for OpenAI's Batch API,
# Anthropic's Message Batches and the Gemini API's batch mode alike (their pricing
# pages and the Gemini Batch API guide, read 2026-12-04).
BATCH_PRICE = 0.5

P = TypeVar("P", bound=HttpProvider)


class ProviderBatches(Generic[P]):
    """What the runners of the providers' batch APIs share: the gateway in service, and
    the configured provider a batch names, if it is of the class (and ``kind``) whose
    batch API the runner speaks."""

    provider_class: type[P]
    kind: str

    def __init__(self, holder: GatewayHolder) -> None:
        self.holder = holder

    def provider(self, name: str) -> P:
        """Provider ``name``; else INVALID_ARGUMENT naming the kinds that have a batch API."""
        found = self.holder.current.providers.get(name)
        if not isinstance(found, self.provider_class) or found.kind != self.kind:
            raise errors.InvalidInput(
                f"provider {name!r} is not a configured provider of kind {self.kind} "
                "(batch APIs: kinds openai, anthropic and google)",
                field="provider",
            )
        return found


async def poll_until_done(
    fetch: Callable[[], Awaitable[dict[str, Any]]],
    is_done: Callable[[dict[str, Any]], bool],
    report: Callable[[dict[str, Any]], None],
    *,
    first: float,
    cap: float,
) -> dict[str, Any]:
    """``fetch()`` now, then after ``first`` seconds, doubling to ``cap``, until
    ``is_done``; each answer ``report``ed. A poll failing for a passing reason (5xx,
    429 but quota, the transport) is tried again at the next wait, up to
    ``POLL_FAILURES`` in a row."""
    wait, failures = first, 0
    while True:
        try:
            found = await fetch()
            failures = 0
            report(found)
            if is_done(found):
                return found
        except (errors.ProviderUnavailable, errors.RateLimited) as err:
            failures += 1
            if isinstance(err, errors.QuotaExceeded) or failures >= POLL_FAILURES:
                raise
        await asyncio.sleep(wait)
        wait = min(wait * 2, cap)


async def json_lines(provider: HttpProvider, path: str) -> list[dict[str, Any]]:
    """A provider's JSON-lines result (``GET path``): its objects, in order; an error
    status as the provider's error, a line that is not JSON as a protocol error."""
    async with provider.http.request("GET", path) as response:
        raw = await provider.http.read(response)
        if response.status != 200:
            raise provider.dialect.error_from_body(
                response.status, parse_body(raw), "", response.headers
            )
    lines = []
    for text in raw.splitlines():
        if text.strip():
            try:
                line = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise provider.protocol_error("a result line that is not JSON") from None
            if isinstance(line, dict):
                lines.append(line)
    return lines


def report_counts(job: RunningJob, status: str, *, completed: int, failed: int) -> None:
    """A provider batch's status and counts as the job's metadata (``upstream_status``,
    completed, failed, progress), as each poll reads them."""

    def change(meta: jobs_pb2.JobMetadata) -> None:
        meta.upstream_status = status
        meta.completed, meta.failed = completed, failed
        if meta.total:
            meta.progress = min(1.0, (completed + failed) / meta.total)

    job.update(change)


def priced(
    results: Sequence[jobs_pb2.BatchItemResult],
    items: Sequence[jobs_pb2.BatchItem],
    provider: str,
    registry: Registry,
) -> None:
    """Each chat answer's ``cost_usd`` at the batch price, as a call's is filled in
    (unless the provider reported it; nothing when the model's prices are unknown)."""
    for item, result in zip(items, results, strict=True):
        usage = result.chat.usage
        if result.HasField("chat") and not usage.HasField("cost_usd"):
            cost = registry.cost(provider, upstream_model(item), usage)
            if cost is not None:
                usage.cost_usd = cost * BATCH_PRICE


def upstream_model(item: jobs_pb2.BatchItem) -> str:
    """The model an item names, without a ``provider:`` prefix (the batch goes to one)."""
    name = item.chat.options.model if item.HasField("chat") else item.embed.model
    return name.partition(":")[2] if ":" in name else name


def one_kind(items: Sequence[jobs_pb2.BatchItem], refusal: str) -> None:
    """All ``items`` chat, or all embed (a provider batch goes to one endpoint); else
    INVALID_ARGUMENT saying ``refusal``."""
    if len({item.WhichOneof("request") for item in items}) > 1:
        raise errors.InvalidInput(refusal, field="items")


def check_models(items: Sequence[jobs_pb2.BatchItem], provider: str, tenant: Tenant | None) -> None:
    """Every item names a model the caller's tenant may use at ``provider``."""
    for i, item in enumerate(items):
        model = upstream_model(item)
        if not model:
            raise errors.InvalidInput("an item needs a model", field=f"items[{i}].model")
        if tenant is not None and not tenant.may_use(f"{provider}:{model}"):
            raise errors.ModelNotAllowed(
                f"tenant {tenant.name} may not use {provider}:{model}", model=model
            )
