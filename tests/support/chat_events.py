"""Chat stream events as plain tuples, for comparing streams across providers.

``normalise`` keeps the order of events and merges only what providers legitimately cut
differently: consecutive argument pieces of one tool call (OpenAI and Anthropic stream
them in pieces, Gemini sends them whole).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from ratatoskr import chat_pb2


async def collect(
    stream: AsyncIterator[chat_pb2.ChatStreamResponse],
) -> list[chat_pb2.ChatStreamResponse]:
    return [event async for event in stream]


def usage_dict(usage: chat_pb2.Usage) -> dict[str, int]:
    """The fields of a Usage that are set (optional ones only when present)."""
    found = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    for name in ("reasoning_tokens", "cached_prompt_tokens", "cache_creation_tokens"):
        if usage.HasField(name):
            found[name] = getattr(usage, name)
    return found


def event_tuple(event: chat_pb2.ChatStreamResponse) -> tuple[Any, ...]:
    kind = event.WhichOneof("event")
    if kind == "content":
        return ("content", event.content)
    if kind == "reasoning":
        return ("reasoning", event.reasoning)
    if kind == "reasoning_signature":
        return ("signature", event.reasoning_signature)
    if kind == "reasoning_block":
        block = event.reasoning_block
        return ("block", block.text, block.signature, block.redacted_data)
    if kind == "tool_call_start":
        start = event.tool_call_start
        return ("tool_start", start.index, start.id, start.name)
    if kind == "tool_call_delta":
        return ("tool_delta", event.tool_call_delta.index, event.tool_call_delta.arguments)
    if kind == "tool_call_end":
        return ("tool_end", event.tool_call_end.index)
    if kind == "usage":
        return ("usage", usage_dict(event.usage))
    if kind == "done":
        return (
            "done",
            chat_pb2.FinishReason.Name(event.finish_reason),
            event.model,
            event.provider,
        )
    raise AssertionError(f"unexpected event {event}")


def normalise(events: Iterable[chat_pb2.ChatStreamResponse]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for event in events:
        item = event_tuple(event)
        if item[0] == "tool_delta" and out and out[-1][0] == "tool_delta" and out[-1][1] == item[1]:
            out[-1] = ("tool_delta", item[1], out[-1][2] + item[2])
        else:
            out.append(item)
    return out


def joined(events: Iterable[chat_pb2.ChatStreamResponse], kind: str) -> str:
    """All text of one event kind (content, reasoning), concatenated."""
    return "".join(getattr(e, kind) for e in events if e.WhichOneof("event") == kind)


def conformance_events(
    scenario: str, *, provider: str, model: str, usage: dict[str, int]
) -> list[tuple[Any, ...]]:
    """The normalised stream every provider must produce for a successful conformance
    scenario (tests/fakes/conformance.py). ``usage`` is what the provider can report
    (not every API counts reasoning tokens apart)."""
    from tests.fakes import conformance as conf

    text = [("content", piece) for piece in conf.TEXT_PIECES]
    done_stop = ("done", "FINISH_REASON_STOP", model, provider)
    done_tools = ("done", "FINISH_REASON_TOOL_CALLS", model, provider)
    if scenario == "conf-text":
        return [*text, ("usage", usage), done_stop]
    if scenario == "conf-reasoning":
        reasoning = [("reasoning", piece) for piece in conf.REASONING_PIECES]
        signature = ("signature", conf.REASONING_SIGNATURE)
        block = ("block", conf.REASONING, conf.REASONING_SIGNATURE, b"")
        return [*reasoning, signature, block, *text, ("usage", usage), done_stop]
    calls = conf.TOOL_CALLS[:1] if scenario == "conf-tool" else conf.TOOL_CALLS
    if scenario not in ("conf-tool", "conf-parallel"):
        raise KeyError(scenario)
    out: list[tuple[Any, ...]] = []
    for index, (name, arguments) in enumerate(calls):
        out += [("tool_start", index, name), ("tool_delta", index, arguments), ("tool_end", index)]
    return [*out, ("usage", usage), done_tools]


def without_ids(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Tool call ids differ by provider (and Gemini's are synthetic): drop them
    (``conformance_events`` has none already)."""
    return [(e[0], e[1], e[3]) if e[0] == "tool_start" and len(e) == 4 else e for e in events]
