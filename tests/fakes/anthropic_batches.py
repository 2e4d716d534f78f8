"""Anthropic's Message Batches API beside the fake Messages API.

Follows the API reference's Message Batches pages on platform.claude.com (read
2026-12-04): create (``{"requests": [{custom_id, params}]}``), retrieve
(``processing_status`` in_progress / canceling / ended, ``request_counts``,
``results_url``), cancel, and the results as JSON lines in no particular order. Ids,
texts and numbers are the project's own. Model ``missing-model`` errors with
``not_found_error``; ``hold`` keeps batches in progress however often they are polled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.anthropic_upstream import FakeAnthropicUpstream

MISSING = "missing-model"
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def answer_to(params: dict[str, Any]) -> str:
    content = params["messages"][-1]["content"]
    text = content if isinstance(content, str) else content[0]["text"]
    return f"batch answer to: {text}"


@dataclass
class Batch:
    id: str
    requests: list[dict[str, Any]]
    status: str = "in_progress"
    polls: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)

    def wire(self, base: str) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if self.status == "in_progress":
            counts["processing"] = len(self.requests)
        for result in self.results:
            counts[result["result"]["type"]] += 1
        ended = self.status == "ended"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": counts,
            "ended_at": "2026-12-04T10:00:09Z" if ended else None,
            "created_at": "2026-12-04T10:00:00Z",
            "expires_at": "2026-12-05T10:00:00Z",
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": f"{base}/v1/messages/batches/{self.id}/results" if ended else None,
        }


class FakeAnthropicBatches(FakeAnthropicUpstream):
    def __init__(self, *, api_key: str | None = None, polls: int = 1) -> None:
        super().__init__(api_key=api_key)
        self.polls = polls
        self.hold = False
        self.batches: dict[str, Batch] = {}
        self.cancelled: list[str] = []
        self.poll_count = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages/batches", self.create)
        app.router.add_get("/v1/messages/batches/{id}", self.retrieve)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self.cancel)
        app.router.add_get("/v1/messages/batches/{id}/results", self.results)
        super().routes(app)

    def _refused(self, request: web.Request) -> web.Response | None:
        problem = self._auth(request)
        if problem is None:
            return None
        body = {"type": "error", "error": {"type": problem.type, "message": problem.message}}
        return web.json_response(body, status=problem.status)

    async def create(self, request: web.Request) -> web.Response:
        record = await self.record(request)
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = record.json if isinstance(record.json, dict) else {}
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _invalid("requests: at least one is required")
        seen = set()
        for i, item in enumerate(requests):
            custom_id = item.get("custom_id")
            if (
                not isinstance(custom_id, str)
                or not _CUSTOM_ID.match(custom_id)
                or custom_id in seen
            ):
                return _invalid(
                    f"requests.{i}.custom_id: must be unique and match ^[a-zA-Z0-9_-]{{1,64}}$"
                )
            seen.add(custom_id)
            params = item.get("params")
            if (
                not isinstance(params, dict)
                or not params.get("max_tokens")
                or not params.get("messages")
            ):
                return _invalid(f"requests.{i}.params: a Messages request is required")
            if params.get("stream"):
                return _invalid(f"requests.{i}.params.stream: not supported in batches")
        self.counter += 1
        batch = Batch(f"msgbatch_rtsk{self.counter:06d}", requests)
        self.batches[batch.id] = batch
        return web.json_response(batch.wire(self.base_url))

    async def retrieve(self, request: web.Request) -> web.Response:
        await self.record(request)
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return web.json_response(
                {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}},
                status=404,
            )
        self.poll_count += 1
        if batch.status == "canceling":
            batch.status = "ended"
            batch.results = [self._canceled(r) for r in batch.requests]
        elif batch.status == "in_progress" and not self.hold:
            batch.polls += 1
            if batch.polls > self.polls:
                batch.status = "ended"
                batch.results = [self._result(r) for r in batch.requests]
        return web.json_response(batch.wire(self.base_url))

    async def cancel(self, request: web.Request) -> web.Response:
        await self.record(request)
        batch = self.batches[request.match_info["id"]]
        batch.status = "canceling"
        self.cancelled.append(batch.id)
        return web.json_response(batch.wire(self.base_url))

    async def results(self, request: web.Request) -> web.Response:
        await self.record(request)
        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch.status != "ended":
            return _invalid("the batch has not ended")
        text = b"".join(orjson.dumps(r) + b"\n" for r in reversed(batch.results))
        return web.Response(body=text, content_type="application/binary")

    @staticmethod
    def _canceled(item: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": item["custom_id"], "result": {"type": "canceled"}}

    def _result(self, item: dict[str, Any]) -> dict[str, Any]:
        params = item["params"]
        if params["model"] == MISSING:
            error = {"type": "not_found_error", "message": f"model: {MISSING}"}
            outcome: dict[str, Any] = {
                "type": "errored",
                "error": {"type": "error", "error": error},
            }
        else:
            self.counter += 1
            message = {
                "id": f"msg_rtskbatch{self.counter:06d}",
                "type": "message",
                "role": "assistant",
                "model": params["model"],
                "content": [{"type": "text", "text": answer_to(params)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 7},
            }
            outcome = {"type": "succeeded", "message": message}
        return {"custom_id": item["custom_id"], "result": outcome}


def _invalid(message: str) -> web.Response:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return web.json_response(body, status=400)
