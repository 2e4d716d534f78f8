"""``POST /v1/embeddings`` as EmbedBatch: a string or an array of strings in, OpenAI's
``list`` of ``embedding`` objects out, as floats or as base64 of little-endian float32
(what the official Python SDK asks for by default)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from ratatoskr.v1 import inference_pb2
from ratd.openai_http import fields
from ratd.openai_http.fields import Body, bad

_KNOWN = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


def embed_request(body: Body) -> tuple[inference_pb2.EmbedBatchRequest, bool]:
    """The request, and whether to answer in base64."""
    fields.check_keys(body, _KNOWN)
    model = fields.required_string(body, "model")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad("input", "must be a string or a non-empty array of strings (not token ids)")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad("encoding_format", "must be float or base64")
    if body.get("dimensions") is not None:
        raise bad(
            "dimensions",
            "ratd's embeddings have each model's own size; shortened embeddings are not "
            "supported (leave dimensions out)",
        )
    return inference_pb2.EmbedBatchRequest(texts=texts, model=model), encoding == "base64"


def _vector(embedding: inference_pb2.Embedding, as_base64: bool) -> Any:
    if as_base64:
        return base64.b64encode(np.asarray(embedding.values, dtype="<f4").tobytes()).decode()
    return list(embedding.values)


def embeddings_json(answer: inference_pb2.EmbedBatchResponse, model: str, as_base64: bool) -> bytes:
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(e, as_base64)}
        for i, e in enumerate(answer.embeddings)
    ]
    found = answer.embeddings[0].model if answer.embeddings and answer.embeddings[0].model else ""
    body = {
        "object": "list",
        "data": data,
        "model": found or model,
        # The contract carries no token counts for embeddings.
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    return orjson.dumps(body)
