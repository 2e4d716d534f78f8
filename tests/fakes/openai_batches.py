"""OpenAI's Files and Batch APIs, added to a ``FakeOpenAIUpstream`` before it starts.

Follows the API reference's Files and Batch pages (read 2026-12-04), field names checked
against the ``openai`` 3.60.0 package's ``FileObject``, ``Batch``, ``BatchRequestCounts``
and ``batch_create_params``. No recorded responses were available: ids, texts and
numbers are the project's own. What it serves:

* ``POST /v1/files`` (multipart: ``purpose`` = ``batch``, ``file`` = JSON lines, each
  ``{custom_id, method: POST, url, body}`` with unique custom ids): a File object;
* ``POST /v1/batches`` ``{input_file_id, endpoint, completion_window: "24h"}``: a Batch
  in ``validating``; a line whose ``url`` is not the endpoint fails the batch (status
  ``failed``, ``errors.data``);
* ``GET /v1/batches/{id}``: ``in_progress`` for ``polls`` polls (forever while ``hold``
  is set), then ``completed`` with ``output_file_id`` (200 lines) and ``error_file_id``
  (the lines that failed: model ``missing-model`` answers 404 ``model_not_found``);
* ``POST /v1/batches/{id}/cancel``: ``cancelling``, ``cancelled`` at the next poll;
* ``GET /v1/files/{id}/content``: the file's JSON lines, in reverse order (the API
  promises no order).
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_upstream import FakeOpenAIUpstream, fake_embedding

MISSING = "missing-model"
ENDPOINTS = {"/v1/chat/completions", "/v1/embeddings"}
EMBED_DIMENSIONS = 8


def answer_to(body: dict[str, Any]) -> str:
    """What the fake's chat answers: the last message's text, echoed."""
    return f"batch answer to: {body['messages'][-1]['content']}"


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return web.json_response(body, status=status)


@dataclass
class FakeBatch:
    id: str
    input_file_id: str
    endpoint: str
    status: str = "validating"
    polls: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": 1796380800,
            "request_counts": self.counts,
            "metadata": None,
        }


class FakeOpenAIBatches:
    """Attach with ``FakeOpenAIBatches(fake)`` before ``fake.start()``."""

    def __init__(self, fake: FakeOpenAIUpstream, polls: int = 1) -> None:
        self.polls = polls
        self.hold = False
        self.files: dict[str, list[dict[str, Any]]] = {}
        self.batches: dict[str, FakeBatch] = {}
        self.cancelled: list[str] = []
        self.poll_count = 0
        self._ids = 0
        router = fake.app.router
        router.add_post("/v1/files", self.upload)
        router.add_get("/v1/files/{id}/content", self.content)
        router.add_post("/v1/batches", self.create)
        router.add_get("/v1/batches/{id}", self.get)
        router.add_post("/v1/batches/{id}/cancel", self.cancel)

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_rtsk{self._ids:06d}"

    async def upload(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "You didn't provide an API key.")
        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or not hasattr(upload, "file"):
            return _error(400, "purpose must be 'batch' and a file is required")
        lines, seen = [], set()
        for number, raw in enumerate(upload.file.read().splitlines(), 1):  # type: ignore[union-attr]
            line = orjson.loads(raw)
            if line.get("method") != "POST" or not isinstance(line.get("body"), dict):
                return _error(400, f"line {number}: method POST and a body are required")
            if not line.get("custom_id") or line["custom_id"] in seen:
                return _error(400, f"line {number}: custom_id must be unique")
            seen.add(line["custom_id"])
            lines.append(line)
        file_id = self._id("file")
        self.files[file_id] = lines
        size = sum(len(orjson.dumps(line)) for line in lines)
        return web.json_response(
            {
                "id": file_id,
                "object": "file",
                "bytes": size,
                "created_at": 1796380800,
                "filename": "batch.jsonl",
                "purpose": "batch",
                "status": "processed",
            }
        )

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("completion_window") != "24h" or body.get("endpoint") not in ENDPOINTS:
            return _error(400, "completion_window must be 24h and endpoint a batch endpoint")
        if body.get("input_file_id") not in self.files:
            return _error(404, f"No such File object: {body.get('input_file_id')}")
        batch = FakeBatch(self._id("batch"), body["input_file_id"], body["endpoint"])
        lines = self.files[batch.input_file_id]
        batch.counts["total"] = len(lines)
        for number, line in enumerate(lines, 1):
            if line.get("url") != batch.endpoint:
                batch.status = "failed"
                message = f"The URL provided for this request does not match the batch endpoint {batch.endpoint}."
                batch.errors.append({"code": "invalid_url", "line": number, "message": message})
        self.batches[batch.id] = batch
        return web.json_response(batch.wire())

    async def get(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _error(404, "No batch found")
        self.poll_count += 1
        if batch.status == "cancelling":
            batch.status = "cancelled"
        elif batch.status in ("validating", "in_progress"):
            batch.status = "in_progress"
            if not self.hold:
                batch.polls += 1
                if batch.polls > self.polls:
                    self._finish(batch)
        return web.json_response(batch.wire())

    async def cancel(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _error(404, "No batch found")
        batch.status = "cancelling"
        self.cancelled.append(batch.id)
        return web.json_response(batch.wire())

    async def content(self, request: web.Request) -> web.Response:
        lines = self.files.get(request.match_info["id"])
        if lines is None:
            return _error(404, "No such File object")
        text = b"".join(orjson.dumps(line) + b"\n" for line in reversed(lines))
        return web.Response(body=text, content_type="application/octet-stream")

    def _finish(self, batch: FakeBatch) -> None:
        done, failed = [], []
        for line in self.files[batch.input_file_id]:
            result = self._result(line)
            (done if result["response"]["status_code"] == 200 else failed).append(result)
        batch.status = "completed"
        batch.counts.update(completed=len(done), failed=len(failed))
        if done:
            batch.output_file_id = self._id("file")
            self.files[batch.output_file_id] = done
        if failed:
            batch.error_file_id = self._id("file")
            self.files[batch.error_file_id] = failed

    def _result(self, line: dict[str, Any]) -> dict[str, Any]:
        body, model = line["body"], line["body"].get("model")
        if model == MISSING:
            status = 404
            answer: dict[str, Any] = {
                "error": {
                    "message": f"The model `{model}` does not exist or you do not have access to it.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            }
        elif line["url"] == "/v1/embeddings":
            status = 200
            vector = fake_embedding(body["input"], EMBED_DIMENSIONS)
            packed = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            answer = {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": packed}],
                "model": model,
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        else:
            status = 200
            answer = {
                "id": self._id("chatcmpl"),
                "object": "chat.completion",
                "created": 1796380800,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer_to(body)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
            }
        response = {"status_code": status, "request_id": self._id("req"), "body": answer}
        return {
            "id": self._id("batch_req"),
            "custom_id": line["custom_id"],
            "response": response,
            "error": None,
        }
