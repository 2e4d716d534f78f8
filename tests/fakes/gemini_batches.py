"""The Gemini API's batch mode beside the fake Gemini API.

Follows the Gemini API reference's Batch API page (``ai.google.dev/api/batch-mode``) and
the Batch API guide (read 2026-12-04), with the JSON names the ``google-genai`` Python
SDK's ``google/genai/batches.py`` converters read and write:

* ``POST /v1beta/models/{model}:batchGenerateContent`` and ``:asyncBatchEmbedContent``
  take ``{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request",
  "metadata"}]}}}}`` (proto JSON: the snake_case names too) and answer an Operation
  (``name`` ``batches/{id}``, ``metadata`` the batch: ``state``, ``batchStats`` with
  int64 counts as strings); each inline GenerateContentRequest is checked as
  ``generateContent`` checks it (``check_request``), so a bad one refuses the batch;
* ``GET /v1beta/batches/{id}``: ``BATCH_STATE_PENDING``, then ``_RUNNING``, then after
  ``polls`` polls ``_SUCCEEDED`` with ``done``, ``response`` and ``metadata.output`` =
  ``{"inlinedResponses": {"inlinedResponses": [{"response" | "error", "metadata"}]}}``
  (embeddings too: the SDK's ``t_recv_batch_job_destination`` renames them, the wire
  does not), or ``{"responsesFile": "files/..."}`` when ``responses_file`` is set,
  served as JSON lines at ``GET /download/v1beta/files/{id}:download?alt=media``;
* ``POST /v1beta/batches/{id}:cancel`` (the batch ends ``BATCH_STATE_CANCELLED``);
* the File API's resumable upload (``POST /upload/v1beta/files`` with
  ``X-Goog-Upload-Protocol: resumable`` and ``-Command: start`` answers with an
  ``X-Goog-Upload-URL``; ``upload, finalize`` at offset 0 there answers ``{"file"}``):
  an uploaded JSON-lines file (``{"key", "request"}`` a line) named by
  ``inputConfig.fileName`` is a batch's input, and such a batch answers with a
  ``responsesFile``.

The project's own choices: a prompt containing ``refuse`` gets a per-item error (a
``google.rpc.Status`` with code 3, INVALID_ARGUMENT), ``missing`` one with code 5
(NOT_FOUND); ``fail_with`` (a google.rpc.Status) makes the next batch end
``BATCH_STATE_FAILED`` with that ``error``, ``expire`` end batches
``BATCH_STATE_EXPIRED``; ``hold`` keeps batches running however
often they are polled; ``upload_origin`` makes the upload URL name another origin.
Ids, texts and numbers are the project's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.gemini_upstream import (
    ErrorReply,
    FakeGeminiUpstream,
    _error_response,
    _invalid,
    check_request,
    fake_embedding,
)

GENERATE, EMBED = "batchGenerateContent", "asyncBatchEmbedContent"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
PROMPT_TOKENS, ANSWER_TOKENS = 9, 5


def answer_to(request: dict[str, Any]) -> str:
    return f"batch answer to: {_text(request)[:40]}"


def _text(request: dict[str, Any]) -> str:
    content = request.get("content") or (request.get("contents") or [{}])[-1]
    return " ".join(str(p.get("text") or "") for p in content.get("parts") or ())


def _either(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """A proto JSON field, by either of its names."""
    return obj.get(camel, obj.get(snake))


@dataclass
class Batch:
    name: str
    model: str
    method: str
    display_name: str
    requests: list[dict[str, Any]]
    state: str = "BATCH_STATE_PENDING"
    polls: int = 0
    error: dict[str, Any] | None = None
    output: dict[str, Any] = field(default_factory=dict)
    lines: list[dict[str, Any]] = field(default_factory=list)
    from_file: bool = False

    def counts(self) -> tuple[int, int]:
        entries = self.lines or (self.output.get("inlinedResponses") or {}).get(
            "inlinedResponses", []
        )
        failed = sum(1 for e in entries if "error" in e)
        return len(entries) - failed, failed

    def operation(self) -> dict[str, Any]:
        succeeded, failed = self.counts()
        total = len(self.requests)
        metadata: dict[str, Any] = {
            "@type": BATCH_TYPE,
            "model": f"models/{self.model}",
            "displayName": self.display_name,
            "createTime": "2026-12-04T10:00:00.000000Z",
            "updateTime": "2026-12-04T10:00:05.000000Z",
            "batchStats": {
                "requestCount": str(total),
                "successfulRequestCount": str(succeeded),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(total - succeeded - failed),
            },
            "state": self.state,
            "name": self.name,
        }
        body: dict[str, Any] = {"name": self.name, "metadata": metadata}
        if self.state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
            return body
        body["done"] = True
        metadata["endTime"] = "2026-12-04T10:00:09.000000Z"
        if self.error is not None:
            body["error"] = self.error
        elif self.output:
            metadata["output"] = {"@type": OUTPUT_TYPE, **self.output}
            body["response"] = {"@type": OUTPUT_TYPE, **self.output}
        return body


class FakeGeminiBatches(FakeGeminiUpstream):
    def __init__(self, *, api_key: str | None = None, polls: int = 1) -> None:
        super().__init__(api_key=api_key)
        self.polls = polls
        self.hold = False
        self.responses_file = False
        self.fail_with: dict[str, Any] | None = None
        self.expire = False  # batches end BATCH_STATE_EXPIRED (without output)
        self.batches: dict[str, Batch] = {}
        self.files: dict[str, list[dict[str, Any]]] = {}
        self.uploads: dict[str, int] = {}  # upload id -> the size announced
        self.upload_origin = ""  # when set, the upload URL names this origin instead
        self.cancelled: list[str] = []
        self.poll_count = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1beta/batches/{id}", self.retrieve)
        app.router.add_post("/v1beta/batches/{target}", self.cancel)
        app.router.add_get("/download/v1beta/files/{target}", self.download)
        app.router.add_post("/upload/v1beta/files", self.upload)
        super().routes(app)

    async def model_method(self, request: web.Request) -> web.StreamResponse:
        _, _, method = request.match_info["target"].partition(":")
        if method in (GENERATE, EMBED):
            return await self.create(request, method)
        return await super().model_method(request)

    async def create(self, request: web.Request, method: str) -> web.StreamResponse:
        record = await self.record(request)
        problem = self._auth(request)
        if problem is not None:
            return _error_response(problem)
        body = record.json if isinstance(record.json, dict) else {}
        batch = body.get("batch") or {}
        display = _either(batch, "displayName", "display_name")
        config = _either(batch, "inputConfig", "input_config") or {}
        requests = (config.get("requests") or {}).get("requests")
        file_name = _either(config, "fileName", "file_name")
        if file_name:
            lines = self.files.get(str(file_name))
            if lines is None:
                return _error_response(_not_found())
            requests = [
                {"request": line.get("request"), "metadata": {"key": line.get("key")}}
                for line in lines
            ]
        if not display:
            return _error_response(_invalid("* batch.display_name: a display name is required"))
        if not isinstance(requests, list) or not requests:
            return _error_response(_invalid("* batch.input_config: requests are required"))
        for i, item in enumerate(requests):
            inner = item.get("request") if isinstance(item, dict) else None
            if not isinstance(inner, dict):
                return _error_response(_invalid(f"* requests[{i}].request is required"))
            if method == GENERATE:
                refused = check_request(inner)
                if refused is not None:
                    return _error_response(refused)
            elif not (inner.get("content") or {}).get("parts"):
                return _error_response(_invalid(f"* requests[{i}].request.content is required"))
        self.counter += 1
        model = request.match_info["target"].partition(":")[0]
        found = Batch(f"batches/rtsk{self.counter:06d}", model, method, display, requests)
        found.from_file = bool(file_name)
        found.error, self.fail_with = self.fail_with, None
        self.batches[found.name] = found
        return web.json_response(found.operation())

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        problem = self._auth(request)
        if problem is not None:
            return _error_response(problem)
        found = self.batches.get(f"batches/{request.match_info['id']}")
        if found is None:
            return _error_response(_not_found())
        self.poll_count += 1
        if found.state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING") and not self.hold:
            found.polls += 1
            found.state = "BATCH_STATE_RUNNING"
            if found.polls > self.polls:
                self._finish(found)
        return web.json_response(found.operation())

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        problem = self._auth(request)
        batch_id, _, action = request.match_info["target"].partition(":")
        found = self.batches.get(f"batches/{batch_id}")
        if problem is not None:
            return _error_response(problem)
        if found is None or action != "cancel":
            return _error_response(_not_found())
        found.state = "BATCH_STATE_CANCELLED"
        self.cancelled.append(found.name)
        return web.json_response({})

    async def download(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        problem = self._auth(request)
        file_id, _, action = request.match_info["target"].partition(":")
        lines = self.files.get(f"files/{file_id}")
        if problem is not None:
            return _error_response(problem)
        if lines is None or action != "download" or request.query.get("alt") != "media":
            return _error_response(_not_found())
        text = b"".join(orjson.dumps(line) + b"\n" for line in reversed(lines))
        return web.Response(body=text, content_type="application/octet-stream")

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """The resumable upload: ``start`` (metadata) then ``upload, finalize`` (bytes)."""
        record = await self.record(request)
        problem = self._auth(request)
        if problem is not None:
            return _error_response(problem)
        command = request.headers.get("X-Goog-Upload-Command", "")
        if command == "start" and request.headers.get("X-Goog-Upload-Protocol") == "resumable":
            size = request.headers.get("X-Goog-Upload-Header-Content-Length", "")
            if not size.isdigit():
                return _error_response(_invalid("X-Goog-Upload-Header-Content-Length"))
            self.counter += 1
            upload_id = f"rtskup{self.counter:06d}"
            self.uploads[upload_id] = int(size)
            origin = self.upload_origin or self.base_url
            url = f"{origin}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
            return web.json_response(
                {}, headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}
            )
        size = self.uploads.pop(request.query.get("upload_id", ""), None)
        if (
            command != "upload, finalize"
            or request.headers.get("X-Goog-Upload-Offset") != "0"
            or size != len(record.raw)
        ):
            return _error_response(_invalid("not an upload this fake started, whole, at offset 0"))
        self.counter += 1
        name = f"files/rtskin{self.counter:06d}"
        self.files[name] = [orjson.loads(line) for line in record.raw.splitlines() if line]
        file = {
            "name": name,
            "mimeType": request.headers.get("Content-Type", ""),
            "sizeBytes": str(size),
            "state": "ACTIVE",
            "uri": f"{self.base_url}/v1beta/{name}",
        }
        return web.json_response({"file": file})

    def _finish(self, found: Batch) -> None:
        if found.error is not None:
            found.state = "BATCH_STATE_FAILED"
            return
        if self.expire:
            found.state = "BATCH_STATE_EXPIRED"
            return
        found.state = "BATCH_STATE_SUCCEEDED"
        entries = [self._entry(found, item) for item in found.requests]
        if self.responses_file or found.from_file:
            self.counter += 1
            name = f"files/rtskout{self.counter:06d}"
            found.lines = [
                {"key": e["metadata"]["key"], **{k: v for k, v in e.items() if k != "metadata"}}
                for e in entries
            ]
            self.files[name] = found.lines
            found.output = {"responsesFile": name}
        else:
            found.output = {"inlinedResponses": {"inlinedResponses": entries}}

    def _entry(self, found: Batch, item: dict[str, Any]) -> dict[str, Any]:
        request, metadata = item["request"], item.get("metadata") or {}
        text = _text(request)
        if "refuse" in text:
            error = {"code": 3, "message": "* the request was refused", "details": []}
            return {"error": error, "metadata": metadata}
        if "missing" in text:
            error = {"code": 5, "message": f"models/{found.model} is not found", "details": []}
            return {"error": error, "metadata": metadata}
        if found.method == EMBED:
            return {
                "response": {"embedding": {"values": fake_embedding(text)}},
                "metadata": metadata,
            }
        self.counter += 1
        response = {
            "candidates": [
                {
                    "content": {"parts": [{"text": answer_to(request)}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": PROMPT_TOKENS,
                "candidatesTokenCount": ANSWER_TOKENS,
                "totalTokenCount": PROMPT_TOKENS + ANSWER_TOKENS,
            },
            "modelVersion": found.model,
            "responseId": f"rtskbatch{self.counter:06d}",
        }
        return {"response": response, "metadata": metadata}


def _not_found() -> ErrorReply:
    return ErrorReply(404, "NOT_FOUND", "Requested entity was not found.")
