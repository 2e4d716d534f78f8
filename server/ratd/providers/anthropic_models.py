"""Anthropic's model list (``GET /v1/models``) as ratatoskr.v1 messages: pure functions
from the upstream's JSON, so that the provider only fetches the pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ratatoskr.v1 import models_pb2

MODELS_PATH = "/v1/models"
PAGE_LIMIT = 1000
# A bound on the pages followed, in case a proxy keeps answering has_more.
MAX_PAGES = 100

# The list says nothing of capabilities; every Claude model it names has these.
CHAT_CAPABILITIES = (
    models_pb2.MODEL_CAPABILITY_CHAT,
    models_pb2.MODEL_CAPABILITY_CHAT_STREAMING,
    models_pb2.MODEL_CAPABILITY_GENERATE,
    models_pb2.MODEL_CAPABILITY_TOOL_USE,
    models_pb2.MODEL_CAPABILITY_VISION,
    models_pb2.MODEL_CAPABILITY_STRUCTURED_OUTPUT,
)


def page_path(after: str | None) -> str:
    """The path of the page that follows the model ``after`` (the first page for None)."""
    path = f"{MODELS_PATH}?limit={PAGE_LIMIT}"
    return f"{path}&after_id={after}" if after else path


def model_infos(page: Mapping[str, Any], provider: str) -> list[models_pb2.ModelInfo]:
    """The models one page lists; entries without an id are skipped."""
    return [
        models_pb2.ModelInfo(id=str(item["id"]), provider=provider, capabilities=CHAT_CAPABILITIES)
        for item in page.get("data") or ()
        if isinstance(item, dict) and item.get("id")
    ]


def next_page(page: Mapping[str, Any]) -> str | None:
    """The cursor of the next page, or None when this page is the last."""
    after = page.get("last_id")
    return str(after) if page.get("has_more") and after else None
