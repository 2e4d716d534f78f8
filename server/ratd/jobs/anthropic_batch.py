"""A batch run at Anthropic's Message Batches API (``SubmitBatchRequest.provider``
naming a provider of kind ``anthropic``); chat items only.

Reference (the API reference's Message Batches pages on platform.claude.com, read
2026-12-04):

1. ``POST /v1/messages/batches`` ``{"requests": [{"custom_id", "params": <a Messages
   request>}]}`` answers a MessageBatch: ``id``, ``type: message_batch``,
   ``processing_status`` (``in_progress``, ``canceling``, ``ended``), ``request_counts``
   {processing, succeeded, errored, canceled, expired}, ``results_url`` (null until it
   ended);
2. ``GET /v1/messages/batches/{id}`` is polled (1 s, doubling to at most 60 s) until
   ``processing_status`` is ``ended``;
3. the results are JSON lines ``{"custom_id", "result": {"type": "succeeded",
   "message"} | {"type": "errored", "error": <an error answer>} | {"type": "canceled"} |
   {"type": "expired"}}``, in no particular order. ratd fetches them from
   ``/v1/messages/batches/{id}/results`` on the provider's own ``base_url``, never from
   the ``results_url`` origin, so that the key goes nowhere else;
4. ``POST /v1/messages/batches/{id}/cancel`` stops it.

Items are the provider's Messages dialect's requests (``MessagesDialect.chat_call``),
their indexes as custom ids; answers are read as an unbatched call's.
"""

from __future__ import annotations

from typing import Any

from ratatoskr.v1 import jobs_pb2
from ratd import errors
from ratd.core.access import Tenant
from ratd.jobs.manager import RunningJob
from ratd.jobs.polling import (
    ProviderBatches,
    check_models,
    json_lines,
    poll_until_done,
    priced,
    report_counts,
    upstream_model,
)
from ratd.jobs.results import failed_result
from ratd.jobs.store import JobRecord
from ratd.providers.anthropic import AnthropicProvider

PATH = "/v1/messages/batches"
# The HTTP status of each of the API's documented error types (an errored item carries
# the error answer without its status).
_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
POLL_FIRST, POLL_MAX = 1.0, 60.0


class AnthropicBatches(ProviderBatches[AnthropicProvider]):
    """Submits, polls, reads and cancels Message Batches."""

    provider_class = AnthropicProvider
    kind = "anthropic"

    def check(self, request: jobs_pb2.SubmitBatchRequest, tenant: Tenant | None) -> None:
        provider = self.provider(request.provider)
        for i, item in enumerate(request.items):
            if not item.HasField("chat"):
                raise errors.InvalidInput(
                    "Anthropic's Message Batches take chat items only", field=f"items[{i}]"
                )
        check_models(request.items, provider.name, tenant)

    async def run(self, job: RunningJob) -> jobs_pb2.BatchResult:
        record = job.record
        request = jobs_pb2.SubmitBatchRequest.FromString(record.request)
        provider = self.provider(record.upstream.get("provider", request.provider))
        batch_id = record.upstream.get("batch_id", "")
        if not batch_id:
            requests = [
                {
                    "custom_id": str(i),
                    "params": provider.dialect.chat_call(
                        item.chat, upstream_model(item), stream=False
                    ).body,
                }
                for i, item in enumerate(request.items)
            ]
            created = await provider.call_json("POST", PATH, {"requests": requests})
            batch_id = str(created.get("id") or "")
            if not batch_id:
                raise provider.protocol_error("a message batch without an id")
            await job.remember({"provider": provider.name, "batch_id": batch_id})

        async def fetch() -> dict[str, Any]:
            batch: dict[str, Any] = await provider.call_json("GET", f"{PATH}/{batch_id}")
            return batch

        await poll_until_done(
            fetch,
            lambda batch: batch.get("processing_status") == "ended",
            lambda batch: _report(batch, job),
            first=POLL_FIRST,
            cap=POLL_MAX,
        )
        found = {
            int(line["custom_id"]): line
            for line in await _results(provider, batch_id)
            if str(line.get("custom_id", "")).isdigit()
        }
        results = [_result(item, i, found.get(i), provider) for i, item in enumerate(request.items)]
        priced(results, request.items, provider.name, self.holder.current.registry)
        return jobs_pb2.BatchResult(results=results)

    async def cancel(self, record: JobRecord) -> None:
        batch_id = record.upstream.get("batch_id")
        if batch_id:
            provider = self.provider(record.upstream.get("provider", ""))
            await provider.call_json("POST", f"{PATH}/{batch_id}/cancel", {})


async def _results(provider: AnthropicProvider, batch_id: str) -> list[dict[str, Any]]:
    return await json_lines(provider, f"{PATH}/{batch_id}/results")


def _report(batch: dict[str, Any], job: RunningJob) -> None:
    counts = batch.get("request_counts") or {}
    report_counts(
        job,
        str(batch.get("processing_status") or ""),
        completed=int(counts.get("succeeded") or 0),
        failed=sum(int(counts.get(k) or 0) for k in ("errored", "canceled", "expired")),
    )


def _result(
    item: jobs_pb2.BatchItem, index: int, line: dict[str, Any] | None, provider: AnthropicProvider
) -> jobs_pb2.BatchItemResult:
    model = upstream_model(item)
    outcome = (line or {}).get("result") or {}
    kind = outcome.get("type")
    try:
        if kind == "succeeded" and isinstance(outcome.get("message"), dict):
            call = provider.dialect.chat_call(item.chat, model, stream=False)
            chat = provider.dialect.parse_chat(outcome["message"], call)
            result = jobs_pb2.BatchItemResult(chat=chat)
        elif kind == "errored":
            error = outcome.get("error") or {}
            status = (
                400 if (error.get("error") or {}).get("type") == "invalid_request_error" else 500
            )
            result = failed_result(provider.dialect.error_from_body(status, error, model))
        elif kind in ("canceled", "expired"):
            result = failed_result(
                errors.ProviderUnavailable(f"the item was {kind} at the provider")
            )
        else:
            result = failed_result(
                errors.ProviderUnavailable("the batch returned nothing for this item")
            )
    except errors.GatewayError as err:
        result = failed_result(err)
    result.custom_id = item.custom_id or str(index)
    return result
