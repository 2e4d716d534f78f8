"""The fake Responses API against the official SDK's type definitions: every event a
stream of the fake sends, and every whole response, validates as the ``openai``
package's ``ResponseStreamEvent`` / ``Response`` (pydantic, required fields and literal
values checked), so the fake's field names are the API's."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tests.fakes.openai_upstream import FERRY_CALL, FakeOpenAIUpstream

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
SCENARIOS = ["text", "reasoning", "reasoning-tools", "structured", "incomplete", "refusal",
             "parallel-tool-calls", "conf-reasoning"]  # fmt: skip
TOOL = {
    "type": "function",
    "name": FERRY_CALL.name,
    "parameters": {"type": "object", "properties": {}},
    "strict": False,
}


def _body(scenario: str, stream: bool) -> dict[str, Any]:
    return {
        "model": f"scenario/{scenario}",
        "input": [{"role": "user", "content": "Ferry?"}],
        "tools": [TOOL],
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low", "summary": "auto"},
        "stream": stream,
    }


async def _post(fake: FakeOpenAIUpstream, body: dict[str, Any]) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url_openai}/responses", json=body) as response,
    ):
        return response.status, await response.read()


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_whole_responses_validate_as_the_sdks_response(
    upstream: FakeOpenAIUpstream, scenario: str
) -> None:
    status, raw = await _post(upstream, _body(scenario, False))
    assert status == 200, raw
    found = Response.model_validate(json.loads(raw))
    assert found.status in ("completed", "incomplete") and found.output


@pytest.mark.parametrize("scenario", [*SCENARIOS, "mid-stream-error", "response-failed"])
async def test_every_stream_event_validates_as_the_sdks_event(
    upstream: FakeOpenAIUpstream, scenario: str
) -> None:
    status, raw = await _post(upstream, _body(scenario, True))
    assert status == 200, raw
    frames = [f for f in raw.decode().split("\n\n") if f.strip()]
    sequence = []
    for frame in frames:
        name, data = frame.split("\n", 1)
        event = EVENTS.validate_python(json.loads(data.removeprefix("data: ")))
        assert name == f"event: {event.type}"
        sequence.append(event.sequence_number)
    assert sequence == list(range(len(frames)))
    assert EVENTS.validate_python(json.loads(frames[0].split("data: ", 1)[1])).type == (
        "response.created"
    )
