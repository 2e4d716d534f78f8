"""A batch run at OpenAI's Batch API (``SubmitBatchRequest.provider`` naming a provider
of kind ``openai``).

Reference (the API reference's Files and Batch pages, read 2026-12-04, field names
checked against the ``openai`` 3.60.0 package's ``Batch``, ``BatchRequestCounts``,
``FileObject`` and ``batch_create_params``):

1. ``POST /v1/files`` (multipart: ``purpose=batch``, ``file`` = JSON lines, one request
   a line: ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``)
   answers a File object (``id``);
2. ``POST /v1/batches`` ``{"input_file_id", "endpoint", "completion_window": "24h"}``
   answers a Batch (``id``, ``status`` validating ... in_progress, finalizing,
   completed, or failed, expired, cancelling, cancelled; ``request_counts`` {total,
   completed, failed}); every request of a batch goes to that one endpoint;
3. ``GET /v1/batches/{id}`` is polled (1 s, doubling to at most 60 s; a passing failure
   tried again up to three times in a row) until the status is final;
4. ``GET /v1/files/{output_file_id}/content`` and ``.../{error_file_id}/content`` are JSON
   lines ``{"id", "custom_id", "response": {"status_code", "request_id", "body"},
   "error"}``, in no particular order;
5. ``POST /v1/batches/{id}/cancel`` stops it.

Items are sent as the provider's own dialect writes them (``ChatCompletions.chat_call``),
with the model as the item names it (its ``provider:`` prefix taken off); presets,
aliases, fallback and the parameter policy do not apply at the provider. The custom ids
sent are the items' indexes (the caller's ids come back in the results). The batch's id
is kept with the job before the first poll, so a restarted ratd polls the same batch.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from ratatoskr.v1 import inference_pb2, jobs_pb2
from ratd import errors
from ratd.core.access import Tenant
from ratd.jobs.manager import RunningJob
from ratd.jobs.polling import (
    ProviderBatches,
    check_models,
    json_lines,
    one_kind,
    poll_until_done,
    priced,
    report_counts,
    upstream_model,
)
from ratd.jobs.results import failed_result
from ratd.jobs.store import JobRecord
from ratd.providers.http import parse_body
from ratd.providers.openai_compat import OpenAIProvider, embeddings_from_wire

CHAT, EMBED = "/v1/chat/completions", "/v1/embeddings"
DONE = frozenset({"completed", "failed", "expired", "cancelled"})
POLL_FIRST, POLL_MAX = 1.0, 60.0


class OpenAIBatches(ProviderBatches[OpenAIProvider]):
    """Submits, polls, reads and cancels batches at OpenAI's Batch API."""

    provider_class = OpenAIProvider
    kind = "openai"

    def check(self, request: jobs_pb2.SubmitBatchRequest, tenant: Tenant | None) -> None:
        """Refuse, before any upload, what the provider's batch cannot run."""
        provider = self.provider(request.provider)
        one_kind(
            request.items, "a provider batch goes to one endpoint: all items chat, or all embed"
        )
        check_models(request.items, provider.name, tenant)

    async def run(self, job: RunningJob) -> jobs_pb2.BatchResult:
        record = job.record
        request = jobs_pb2.SubmitBatchRequest.FromString(record.request)
        provider = self.provider(record.upstream.get("provider", request.provider))
        batch_id = record.upstream.get("batch_id", "")
        if not batch_id:
            endpoint, lines = _lines(request, provider)
            uploaded = await _upload(provider, lines)
            body = {"input_file_id": uploaded, "endpoint": endpoint, "completion_window": "24h"}
            created = await provider.call_json("POST", "/batches", body)
            batch_id = str(created.get("id") or "")
            if not batch_id:
                raise provider.protocol_error("a batch without an id")
            await job.remember({"provider": provider.name, "batch_id": batch_id})
        batch = await self._until_done(provider, batch_id, job)
        status = str(batch.get("status"))
        if status != "completed":
            raise _batch_error(batch, provider.name)
        found: dict[int, dict[str, Any]] = {}
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                for line in await _download(provider, str(batch[key])):
                    if str(line.get("custom_id", "")).isdigit():
                        found[int(line["custom_id"])] = line
        result = _results(request, found, provider)
        priced(result.results, request.items, provider.name, self.holder.current.registry)
        return result

    async def _until_done(
        self, provider: OpenAIProvider, batch_id: str, job: RunningJob
    ) -> dict[str, Any]:
        async def fetch() -> dict[str, Any]:
            batch: dict[str, Any] = await provider.call_json("GET", f"/batches/{batch_id}")
            return batch

        return await poll_until_done(
            fetch,
            lambda batch: batch.get("status") in DONE,
            lambda batch: _report(batch, job),
            first=POLL_FIRST,
            cap=POLL_MAX,
        )

    async def cancel(self, record: JobRecord) -> None:
        batch_id = record.upstream.get("batch_id")
        if batch_id:
            provider = self.provider(record.upstream.get("provider", ""))
            await provider.call_json("POST", f"/batches/{batch_id}/cancel", {})


def _lines(request: jobs_pb2.SubmitBatchRequest, provider: OpenAIProvider) -> tuple[str, bytes]:
    """(endpoint, the JSON lines file): one request per item, its index as custom id."""
    endpoint = CHAT if request.items[0].HasField("chat") else EMBED
    out = []
    for i, item in enumerate(request.items):
        model = upstream_model(item)
        if item.HasField("chat"):
            body = provider.dialect.chat_call(item.chat, model, stream=False).body
        else:
            body = {"model": model, "input": item.embed.text, "encoding_format": "base64"}
            if item.embed.HasField("dimensions"):
                body["dimensions"] = item.embed.dimensions
        line = {"custom_id": str(i), "method": "POST", "url": endpoint, "body": body}
        out.append(orjson.dumps(line))
    return endpoint, b"\n".join(out) + b"\n"


async def _upload(provider: OpenAIProvider, lines: bytes) -> str:
    """``POST /v1/files`` as multipart/form-data; the file's id."""
    boundary = f"ratatoskr-{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="batch.jsonl"'
        "\r\nContent-Type: application/jsonl\r\n\r\n"
    ).encode()
    body = head + lines + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with provider.http.send("POST", "/files", body, headers=headers) as response:
        raw = await provider.http.read(response)
        if response.status != 200:
            raise provider.dialect.error_from_body(
                response.status, parse_body(raw), "", response.headers
            )
    data = parse_body(raw)
    if not isinstance(data, dict) or not data.get("id"):
        raise provider.protocol_error("an uploaded file without an id")
    return str(data["id"])


async def _download(provider: OpenAIProvider, file_id: str) -> list[dict[str, Any]]:
    """A result file's JSON lines (``GET /v1/files/{id}/content``)."""
    return await json_lines(provider, f"/files/{file_id}/content")


def _report(batch: dict[str, Any], job: RunningJob) -> None:
    counts = batch.get("request_counts") or {}
    report_counts(
        job,
        str(batch.get("status") or ""),
        completed=int(counts.get("completed") or 0),
        failed=int(counts.get("failed") or 0),
    )


def _batch_error(batch: dict[str, Any], provider: str) -> errors.GatewayError:
    status = str(batch.get("status"))
    found = ((batch.get("errors") or {}).get("data") or [{}])[0]
    message = str(found.get("message") or f"the batch ended {status}")
    if status == "failed":
        return errors.UpstreamInvalidRequest(message, provider=provider, field="items")
    return errors.ProviderUnavailable(f"the batch ended {status}: {message}", provider=provider)


def _results(
    request: jobs_pb2.SubmitBatchRequest, found: dict[int, dict[str, Any]], provider: OpenAIProvider
) -> jobs_pb2.BatchResult:
    results = []
    for i, item in enumerate(request.items):
        model, line = upstream_model(item), found.get(i)
        response = (line or {}).get("response") or {}
        status, body = int(response.get("status_code") or 0), response.get("body")
        if line is None:
            result = failed_result(
                errors.ProviderUnavailable("the batch returned nothing for this item")
            )
        elif status != 200 or not isinstance(body, dict):
            error = body if isinstance(body, dict) and body else {"error": line.get("error")}
            result = failed_result(provider.dialect.error_from_body(status or 502, error, model))
        else:
            try:
                result = _answer(item, body, model, provider)
            except errors.GatewayError as err:
                result = failed_result(err)
        result.custom_id = item.custom_id or str(i)
        results.append(result)
    return jobs_pb2.BatchResult(results=results)


def _answer(
    item: jobs_pb2.BatchItem, body: dict[str, Any], model: str, provider: OpenAIProvider
) -> jobs_pb2.BatchItemResult:
    """One 200 line's body as the item's answer (read as the unbatched call reads it)."""
    if item.HasField("chat"):
        call = provider.dialect.chat_call(item.chat, model, stream=False)
        return jobs_pb2.BatchItemResult(chat=provider.dialect.parse_chat(body, call))
    [vector] = embeddings_from_wire(body, 1, provider.name, model)
    embed = inference_pb2.EmbedResponse(
        values=vector.values, model=vector.model, dimensions=vector.dimensions
    )
    return jobs_pb2.BatchItemResult(embed=embed)
