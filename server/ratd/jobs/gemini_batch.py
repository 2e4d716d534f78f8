"""A batch run at the Gemini API's batch mode (``SubmitBatchRequest.provider`` naming a
provider of kind ``google``).

Reference (the Gemini API reference's Batch API page, ``ai.google.dev/api/batch-mode``,
and the Batch API guide, read 2026-12-04; JSON names checked against the ``google-genai``
Python SDK's ``google/genai/batches.py`` converters and ``_transformers.t_job_state`` /
``t_recv_batch_job_destination``):

1. ``POST /v1beta/models/{model}:batchGenerateContent`` (chat) or
   ``:asyncBatchEmbedContent`` (embeddings) with ``{"batch": {"displayName",
   "inputConfig": {"requests": {"requests": [{"request": <a GenerateContentRequest or
   EmbedContentRequest>, "metadata": {"key"}}]}}}}`` answers an Operation whose
   ``name`` is the batch's (``batches/{id}``) and whose ``metadata`` is the batch
   (``state``, ``batchStats``). A batch goes to one model;
2. ``GET /v1beta/batches/{id}`` is polled (1 s, doubling to at most 60 s) until the
   Operation is ``done`` or ``metadata.state`` is final: ``BATCH_STATE_SUCCEEDED``,
   ``_FAILED``, ``_CANCELLED`` or ``_EXPIRED`` (before: ``_PENDING``, ``_RUNNING``).
   ``batchStats`` {requestCount, successfulRequestCount, failedRequestCount,
   pendingRequestCount} (int64, so JSON strings) become the job's counts;
3. a succeeded batch's output (``response``, also ``metadata.output``) holds
   ``inlinedResponses.inlinedResponses[]`` (each ``{"response" | "error": <a
   google.rpc.Status>, "metadata": {"key"}}``) or a ``responsesFile`` (``files/{id}``),
   JSON lines read from ``/download/v1beta/{file}:download?alt=media`` on the
   provider's own ``base_url``; a failed batch carries the Operation's ``error``;
4. ``POST /v1beta/batches/{id}:cancel`` stops it.

Requests are written inline up to ``INLINE_LIMIT`` bytes (the guide's 20 MB bound on
an inline batch). A larger batch goes as a JSON-lines input file (``{"key",
"request"}`` a line) uploaded through the File API's resumable protocol (``POST
/upload/v1beta/files`` with ``X-Goog-Upload-Protocol: resumable``, ``-Command: start``
and the size and type in ``X-Goog-Upload-Header-*``, answered with an
``X-Goog-Upload-URL``, which must lie under the provider's ``base_url`` before the key
goes there; then ``upload, finalize`` at offset 0, answered with ``{"file": {"name"}}``)
and named by ``inputConfig.fileName``; such a batch answers with a ``responsesFile``.
A file larger than ``FILE_LIMIT`` (the File API's 2 GB) is refused. Chat items are the
Gemini dialect's ``generateContent`` bodies (``GeminiDialect.chat_call``), embeddings
those of ``embed_calls``; answers are read as an unbatched call's. Keys are the items'
indexes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
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
from ratd.providers.gemini import (
    API_PREFIX,
    GeminiDialect,
    GeminiProvider,
    embed_calls,
    embeddings_from,
    method_path,
)
from ratd.providers.gemini_interactions import rpc_status_error
from ratd.providers.http import parse_body
from ratd.providers.http_provider import ErrorDialect

GENERATE, EMBED = "batchGenerateContent", "asyncBatchEmbedContent"
SUCCEEDED = "BATCH_STATE_SUCCEEDED"
DONE = frozenset({SUCCEEDED, "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"})
# The largest inline batch request (bytes of JSON): the guide's 20 MB; above it the
# requests go as an uploaded file, at most the File API's 2 GB.
INLINE_LIMIT = 20 * 1024 * 1024
FILE_LIMIT = 2 * 1024 * 1024 * 1024
POLL_FIRST, POLL_MAX = 1.0, 60.0
JSONL = "application/jsonl"
# Names the API hands back, checked before they become a path (the key goes with it).
_BATCH = re.compile(r"^batches/[A-Za-z0-9_-]+$")
_FILE = re.compile(r"^files/[A-Za-z0-9_-]+$")


class GeminiBatches(ProviderBatches[GeminiProvider]):
    """Submits, polls, reads and cancels batches at the Gemini API's batch mode."""

    provider_class = GeminiProvider
    kind = "google"

    def check(self, request: jobs_pb2.SubmitBatchRequest, tenant: Tenant | None) -> None:
        """Refuse, before anything is sent, what one Gemini batch cannot run."""
        provider = self.provider(request.provider)
        one_kind(request.items, "a Gemini batch goes to one method: all items chat, or all embed")
        check_models(request.items, provider.name, tenant)
        model = upstream_model(request.items[0])
        for i, item in enumerate(request.items):
            if upstream_model(item) != model:
                raise errors.InvalidInput(
                    f"a Gemini batch goes to one model: items[0] names {model!r}, "
                    f"items[{i}] {upstream_model(item)!r}",
                    field=f"items[{i}].model",
                )
        if request.items[0].HasField("chat") and not isinstance(
            provider.chat_dialect(model), GeminiDialect
        ):
            raise errors.InvalidInput(
                f"{model} is served through the Interactions API, which has no batch mode",
                field="items[0].model",
            )
        # The protobuf is smaller than its JSON: a cheap bound before the exact one.
        if sum(item.ByteSize() for item in request.items) > FILE_LIMIT:
            raise _too_large()

    async def run(self, job: RunningJob) -> jobs_pb2.BatchResult:
        record = job.record
        request = jobs_pb2.SubmitBatchRequest.FromString(record.request)
        provider = self.provider(record.upstream.get("provider", request.provider))
        model = upstream_model(request.items[0])
        name = record.upstream.get("batch_id", "") or await _submit(job, request, provider, model)
        operations = _OperationErrors(provider.dialect)

        async def fetch() -> dict[str, Any]:
            path = f"{API_PREFIX}/{name}"
            found: dict[str, Any] = await provider.call_json("GET", path, errors_from=operations)
            return found

        operation = await poll_until_done(
            fetch,
            lambda op: bool(op.get("done")) or _state(op) in DONE,
            lambda op: _report(op, job),
            first=POLL_FIRST,
            cap=POLL_MAX,
        )
        if _state(operation) != SUCCEEDED:
            raise _batch_error(operation, provider.name, model)
        found = await _responses(operation, provider)
        results = [
            _result(item, i, found.get(i), provider, model) for i, item in enumerate(request.items)
        ]
        priced(results, request.items, provider.name, self.holder.current.registry)
        return jobs_pb2.BatchResult(results=results)

    async def cancel(self, record: JobRecord) -> None:
        name = record.upstream.get("batch_id")
        if name and _BATCH.match(name):
            provider = self.provider(record.upstream.get("provider", ""))
            await provider.call_json("POST", f"{API_PREFIX}/{name}:cancel", {})


class _OperationErrors:
    """Errors as the Gemini dialect reads them, except that an Operation's ``error`` in a
    200 is the batch's outcome (read once it is done), not a failed poll."""

    def __init__(self, dialect: ErrorDialect) -> None:
        self.dialect = dialect

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        return self.dialect.error_from_body(status, body, model, headers)

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        return None


async def _submit(
    job: RunningJob, request: jobs_pb2.SubmitBatchRequest, provider: GeminiProvider, model: str
) -> str:
    """Create the batch (inline, or from an uploaded file) and keep its name with the job
    before the first poll, so that a restarted ratd polls it instead of paying twice."""
    display = request.display_name or job.record.name.rpartition("/")[2]
    body, lines = await asyncio.to_thread(_encoded, request, provider, model, display)
    if lines:
        config = {"fileName": await _upload(provider, lines, display)}
        body = orjson.dumps({"batch": {"displayName": display, "inputConfig": config}})
    method = GENERATE if request.items[0].HasField("chat") else EMBED
    created = await provider.call_json("POST", method_path(model, method), body=body, model=model)
    name = _checked(str(created.get("name") or ""), _BATCH, provider, "batch")
    await job.remember({"provider": provider.name, "batch_id": name})
    return name


def _too_large() -> errors.InvalidInput:
    return errors.InvalidInput(
        f"the batch is larger than a Gemini batch input file takes ({FILE_LIMIT // 2**30} GB)",
        field="items",
    )


def _encoded(
    request: jobs_pb2.SubmitBatchRequest, provider: GeminiProvider, model: str, display: str
) -> tuple[bytes, bytes]:
    """(the inline create request's JSON, b"") or, above ``INLINE_LIMIT``, (b"", the
    input file's JSON lines). Run off the event loop: it may be large."""
    requests = []
    for i, item in enumerate(request.items):
        if item.HasField("chat"):
            wire = provider.dialect.chat_call(item.chat, model, stream=False).body
        else:
            dimensions = item.embed.dimensions if item.embed.HasField("dimensions") else None
            [(_, wire)] = embed_calls([item.embed.text], model, dimensions)
        requests.append({"request": wire, "metadata": {"key": str(i)}})
    batch = {"displayName": display, "inputConfig": {"requests": {"requests": requests}}}
    body = orjson.dumps({"batch": batch})
    if len(body) <= INLINE_LIMIT:
        return body, b""
    lines = b"".join(
        orjson.dumps({"key": r["metadata"]["key"], "request": r["request"]}) + b"\n"
        for r in requests
    )
    if len(lines) > FILE_LIMIT:
        raise _too_large()
    return b"", lines


async def _upload(provider: GeminiProvider, lines: bytes, display: str) -> str:
    """The File API's resumable upload of the input file; the file's name."""
    start = {
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": str(len(lines)),
        "X-Goog-Upload-Header-Content-Type": JSONL,
    }
    body = orjson.dumps({"file": {"displayName": display}})
    async with provider.http.request(
        "POST", f"/upload{API_PREFIX}/files", body=body, headers=start
    ) as response:
        raw = await provider.http.read(response)
        if response.status != 200:
            raise provider.dialect.error_from_body(response.status, parse_body(raw), "")
        url = response.headers.get("X-Goog-Upload-URL", "")
    base = provider.http.base_url.rstrip("/")
    if not url.startswith(f"{base}/"):  # the key goes nowhere but the configured origin
        raise provider.protocol_error("an upload URL outside the provider's base_url")
    finish = {
        "X-Goog-Upload-Command": "upload, finalize",
        "X-Goog-Upload-Offset": "0",
        "Content-Type": JSONL,
    }
    data = await provider.call_json("POST", url[len(base) :], body=lines, headers=finish)
    return _checked(str((data.get("file") or {}).get("name") or ""), _FILE, provider, "file")


def _checked(name: str, pattern: re.Pattern[str], provider: GeminiProvider, what: str) -> str:
    if not pattern.match(name):
        raise provider.protocol_error(f"a {what} name that is not {pattern.pattern}: {name!r}")
    return name


def _state(operation: dict[str, Any]) -> str:
    return str((operation.get("metadata") or {}).get("state") or "")


def _report(operation: dict[str, Any], job: RunningJob) -> None:
    stats = (operation.get("metadata") or {}).get("batchStats") or {}
    report_counts(
        job,
        _state(operation),
        completed=int(stats.get("successfulRequestCount") or 0),
        failed=int(stats.get("failedRequestCount") or 0),
    )


def _batch_error(operation: dict[str, Any], provider: str, model: str) -> errors.GatewayError:
    state = _state(operation) or "without a state"
    if state == "BATCH_STATE_FAILED" or operation.get("error"):
        return rpc_status_error(operation.get("error"), provider, model)
    return errors.ProviderUnavailable(f"the batch ended {state}", provider=provider, model=model)


async def _responses(
    operation: dict[str, Any], provider: GeminiProvider
) -> dict[int, dict[str, Any]]:
    """Each item's response or error by its index: inline, or from the responses file."""
    output = operation.get("response") or (operation.get("metadata") or {}).get("output") or {}
    entries: list[Any] = []
    for key in ("inlinedResponses", "inlinedEmbedContentResponses"):
        entries.extend((output.get(key) or {}).get("inlinedResponses") or ())
    if output.get("responsesFile"):
        file = _checked(str(output["responsesFile"]), _FILE, provider, "file")
        path = f"/download{API_PREFIX}/{file}:download?alt=media"
        entries.extend(await json_lines(provider, path))
    found: dict[int, dict[str, Any]] = {}
    for entry in entries:
        if isinstance(entry, dict):
            key = str((entry.get("metadata") or {}).get("key") or entry.get("key") or "")
            if key.isdigit():
                found[int(key)] = entry
    return found


def _result(
    item: jobs_pb2.BatchItem,
    index: int,
    entry: dict[str, Any] | None,
    provider: GeminiProvider,
    model: str,
) -> jobs_pb2.BatchItemResult:
    entry = entry or {}
    try:
        if isinstance(entry.get("response"), dict):
            result = _answer(item, entry["response"], provider, model)
        elif entry.get("error"):
            result = failed_result(rpc_status_error(entry["error"], provider.name, model))
        else:
            result = failed_result(
                errors.ProviderUnavailable("the batch returned nothing for this item")
            )
    except errors.GatewayError as err:
        result = failed_result(err)
    result.custom_id = item.custom_id or str(index)
    return result


def _answer(
    item: jobs_pb2.BatchItem, response: dict[str, Any], provider: GeminiProvider, model: str
) -> jobs_pb2.BatchItemResult:
    """One item's response read as the unbatched call reads it."""
    if item.HasField("chat"):
        call = provider.dialect.chat_call(item.chat, model, stream=False)
        return jobs_pb2.BatchItemResult(chat=provider.dialect.parse_chat(response, call))
    [vector] = embeddings_from([response], 1, provider.name, model)
    embed = inference_pb2.EmbedResponse(
        values=vector.values, model=vector.model, dimensions=vector.dimensions
    )
    return jobs_pb2.BatchItemResult(embed=embed)
