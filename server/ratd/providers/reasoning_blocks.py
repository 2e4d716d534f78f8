"""Reasoning blocks across providers: which API can verify a block, and OpenRouter's
``reasoning_details``.

A signed block (Anthropic's thinking signature, Gemini's thought signature, OpenAI's
encrypted reasoning) must go back with the assistant's turn for some models to continue
after a tool call, and only to an API that can verify it: another provider's signature is
refused. So each adapter tags the blocks it returns with a format, using OpenRouter's
names for them, and sends back only blocks of its own format or untagged ones (built by
hand).

OpenRouter's ``reasoning_details`` carry the reasoning of a turn as typed items.
Items are ``reasoning.text`` (text, signature), ``reasoning.summary`` (summary) and
``reasoning.encrypted`` (data), each with a ``format``, an ``index`` and sometimes an
``id``. A stream sends them in pieces: pieces with the same index make one item (text
appended, signature and data arriving in their own piece). They map onto ReasoningBlock
one to one; types this version does not know are left out rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ratatoskr.v1 import chat_pb2

TEXT, SUMMARY, ENCRYPTED = "reasoning.text", "reasoning.summary", "reasoning.encrypted"
ANTHROPIC_FORMAT = "anthropic-claude-v1"
GEMINI_FORMAT = "google-gemini-v1"


def verifiable_by(
    blocks: Iterable[chat_pb2.ReasoningBlock], fmt: str
) -> list[chat_pb2.ReasoningBlock]:
    """The blocks that an API whose blocks have format ``fmt`` can take back."""
    return [block for block in blocks if block.format in ("", fmt)]


@dataclass(slots=True)
class _Item:
    kind: str = ""
    text: list[str] = field(default_factory=list)
    signature: str = ""
    data: list[str] = field(default_factory=list)
    format: str = ""
    id: str = ""

    def block(self) -> chat_pb2.ReasoningBlock | None:
        if self.kind == ENCRYPTED:
            return chat_pb2.ReasoningBlock(
                redacted_data="".join(self.data).encode(), format=self.format, id=self.id
            )
        if self.kind in (TEXT, SUMMARY):
            return chat_pb2.ReasoningBlock(
                text="".join(self.text),
                signature=self.signature,
                format=self.format,
                id=self.id,
                summary=self.kind == SUMMARY,
            )
        return None


class ReasoningDetails:
    """Collects ``reasoning_details`` items, whole or in stream pieces, into blocks."""

    def __init__(self) -> None:
        self._items: dict[int, _Item] = {}

    def add(self, details: Any) -> None:
        if not isinstance(details, list):
            return
        for detail in details:
            if isinstance(detail, dict):
                self._add(detail)

    def _add(self, detail: dict[str, Any]) -> None:
        index = detail.get("index")
        key = index if isinstance(index, int) else max(self._items, default=-1) + 1
        item = self._items.setdefault(key, _Item())
        item.kind = str(detail.get("type") or item.kind)
        piece = detail.get("summary") if item.kind == SUMMARY else detail.get("text")
        if isinstance(piece, str):
            item.text.append(piece)
        if isinstance(detail.get("data"), str):
            item.data.append(detail["data"])
        item.signature = str(detail.get("signature") or item.signature)
        item.format = str(detail.get("format") or item.format)
        item.id = str(detail.get("id") or item.id)

    def blocks(self) -> list[chat_pb2.ReasoningBlock]:
        found = (self._items[key].block() for key in sorted(self._items))
        return [block for block in found if block is not None]


def details_from_blocks(blocks: Iterable[chat_pb2.ReasoningBlock]) -> list[dict[str, Any]]:
    """Blocks as ``reasoning_details`` for an assistant message. Blocks with nothing to
    verify (no signature, data or format: another provider's plain thinking) stay out."""
    details: list[dict[str, Any]] = []
    for block in blocks:
        if not (block.signature or block.redacted_data or block.format):
            continue
        item: dict[str, Any]
        if block.redacted_data:
            item = {"type": ENCRYPTED, "data": block.redacted_data.decode("utf-8", "replace")}
        elif block.summary:
            item = {"type": SUMMARY, "summary": block.text}
        else:
            item = {"type": TEXT, "text": block.text}
            if block.signature:
                item["signature"] = block.signature
        if block.id:
            item["id"] = block.id
        if block.format:
            item["format"] = block.format
        item["index"] = len(details)
        details.append(item)
    return details
