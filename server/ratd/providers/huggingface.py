"""The HuggingFace Inference API (``hf-inference``, behind router.huggingface.co):
embeddings, NLI, zero-shot classification and stance. Chat goes through HuggingFace's
OpenAI-compatible router instead, kind ``huggingface_router`` (see specs.py).

Endpoints, below ``base_url`` (default ``https://router.huggingface.co/hf-inference``):

* ``POST /models/{model}/pipeline/feature-extraction`` with ``{"inputs": text | [texts]}``;
* ``POST /models/{model}`` for text-classification (NLI pairs) and zero-shot-classification,
  whichever pipeline the model serves.

A dedicated Inference Endpoint (``dedicated_endpoint = true``, implied for hosts under
``.endpoints.huggingface.cloud``) serves one model at its own URL: every request goes to
``base_url`` itself with the same payloads, whatever model name the caller used.
``use_cache = false`` sends ``X-Use-Cache: false`` (the API otherwise may answer a repeated
input from its cache).

Embeddings and normalisation. A sentence-transformers model answers one vector per input
(a flat list for a string input, a list of lists for a list). A plain transformer answers
one vector per *token* (``[1, tokens, dims]`` per input, unpadded, since each input runs
alone); ratd mean-pools those over the tokens, the special tokens included, as
sentence-transformers' mean pooling does. ratd does not L2-normalise: vectors come out as
the model computes them (sentence-transformers models whose config ends in a Normalize
layer arrive unit-length; others, and mean-pooled token outputs, do not). ratd never sends
``normalize``, so what a model returns does not depend on the API's default for it. Cosine
similarity is the same either way; normalise in the client when a dot product is wanted.

NLI sends ``{"text": premise, "text_pair": hypothesis}`` to a text-classification model
(``cross-encoder/nli-*``, ``*-mnli``) and maps its labels by name, case-insensitively
(``entailment``/``contradiction``/``neutral``, and ``not_entailment`` of two-way models as
neutral). A model whose labels are ``LABEL_0``... names no classes: INVALID_ARGUMENT.
Pairs go one request each (the API takes one pair per request), a few at a time.

Stance is zero-shot classification of the text against three hypotheses about the target
("This text is in favor of {target}.", "... against ...", "... neutral toward ..."),
scored with a softmax across them; the label is the largest, ties resolved
favor > against > neutral as upstream ratatoskr does.

Zero-shot with a sentence-transformers model. Such a model's pipeline is
sentence-similarity: ``{"inputs": {"source_sentence": text, "sentences": [...]}}`` answers
one cosine similarity per sentence, no labels. ratd sends that payload for models under
``sentence-transformers/``, and for any other model that answers the zero-shot payload
with bare numbers (remembered per model, so it is asked once). The sentences are the
labels (through ``hypothesis_template`` when the request sets one; stance always uses its
hypotheses). Scores: with ``multi_label`` each label's cosine clipped to [0, 1]; otherwise
a softmax of 20 x cosine across the labels (20 is the scale sentence-transformers'
contrastive loss trains these models with, so the spread matches the training); the top
label is the most similar either way.

Errors: 503 with ``estimated_time`` is a model still loading -> UNAVAILABLE
(ModelNotAvailable) with that retry delay; ``wait_for_model = true`` in the provider's config
sends ``X-Wait-For-Model: true`` so the API holds the request until the model is up.
404 (sometimes a plain-text "Not Found") -> NOT_FOUND; the legacy host answers a bad token
with 400 "token seems invalid" -> UNAUTHENTICATED like 401/403.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ratatoskr.v1 import inference_pb2, media_pb2
from ratd import errors
from ratd.config import ProviderConfig
from ratd.providers import huggingface_media as hm
from ratd.providers.http import error_for_status, retry_after_from_headers
from ratd.providers.http_provider import ChatDialect, HttpProvider
from ratd.secrets import Secret

log = logging.getLogger(__name__)

T = TypeVar("T")

# Texts per feature-extraction request, and requests in flight at once per call.
EMBED_BATCH = 64
CONCURRENCY = 4

# The longest loading estimate taken as a retry delay (anything longer is not a real one).
_MAX_ESTIMATE_SECS = 86400.0

STANCE_TEMPLATE = "This text is {}."
# Softmax scale for similarity scores (sentence-transformers' MultipleNegativesRankingLoss).
SIMILARITY_SCALE = 20.0
SIMILARITY_PREFIX = "sentence-transformers/"
_STANCE_HYPOTHESES = ("in favor of {}", "against {}", "neutral toward {}")

_NLI_LABELS = {
    "entailment": "entailment",
    "entails": "entailment",
    "contradiction": "contradiction",
    "contradicts": "contradiction",
    "neutral": "neutral",
    "not_entailment": "neutral",
    "non_entailment": "neutral",
    "not-entailment": "neutral",
}
_NLI_ENUM: dict[str, inference_pb2.NliLabel] = {
    "entailment": inference_pb2.NLI_LABEL_ENTAILMENT,
    "contradiction": inference_pb2.NLI_LABEL_CONTRADICTION,
    "neutral": inference_pb2.NLI_LABEL_NEUTRAL,
}
_AUTH_HINTS = (
    "token seems invalid",
    "invalid token",
    "invalid credentials",
    "authorization header",
    "invalid username or password",
    "unauthorized",
)


def _protocol(provider: str, model: str, problem: str) -> errors.UpstreamProtocolError:
    return errors.UpstreamProtocolError(f"{provider}: {problem}", provider=provider, model=model)


def pool_embedding(item: Any, provider: str = "huggingface", model: str = "") -> list[float]:
    """One input's feature-extraction output as one vector: a vector as is, token vectors
    (``[tokens, dims]`` or ``[1, tokens, dims]``) mean-pooled over the tokens."""
    try:
        array = np.asarray(item, dtype=np.float64)
    except (ValueError, TypeError):
        problem = "feature-extraction output is not a numeric array"
        raise _protocol(provider, model, problem) from None
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2 and array.shape[0] > 0:
        array = array.mean(axis=0)
    if array.ndim != 1 or array.size == 0:
        problem = f"feature-extraction output has an unexpected shape {list(array.shape)}"
        raise _protocol(provider, model, problem)
    return [float(v) for v in array.astype(np.float32)]


def parse_feature_extraction(
    data: Any, count: int, *, batched: bool, provider: str = "huggingface", model: str = ""
) -> list[list[float]]:
    """The vectors of a feature-extraction response, one per input.

    ``batched`` says whether ``inputs`` was a list (the response then has one item per
    input) or one string (the response is that input's item)."""
    if not isinstance(data, list):
        raise _protocol(provider, model, "feature-extraction answered something other than a list")
    items = data if batched else [data]
    if len(items) != count:
        raise _protocol(provider, model, f"asked for {count} embeddings, got {len(items)}")
    return [pool_embedding(item, provider, model) for item in items]


def _label_scores(data: Any) -> list[tuple[str, float]]:
    """``[{"label", "score"}]`` from a text-classification answer (``[[...]]`` or ``[...]``)."""
    if isinstance(data, list) and data and isinstance(data[0], list):
        data = data[0]
    if not isinstance(data, list):
        return []
    return [
        (str(item["label"]), float(item["score"]))
        for item in data
        if isinstance(item, dict) and "label" in item and isinstance(item.get("score"), int | float)
    ]


def parse_nli(
    data: Any, *, provider: str = "huggingface", model: str = ""
) -> inference_pb2.NliResult:
    """An NLI result from a text-classification answer, labels mapped by name."""
    pairs = _label_scores(data)
    if not pairs:
        raise _protocol(provider, model, "text-classification answered no labels")
    scores = {"entailment": 0.0, "contradiction": 0.0, "neutral": 0.0}
    known = False
    for label, score in pairs:
        name = _NLI_LABELS.get(label.strip().lower().replace(" ", "_"))
        if name is not None:
            scores[name] = score
            known = True
    if not known:
        labels = ", ".join(label for label, _ in pairs)
        raise errors.UpstreamInvalidRequest(
            f"{provider}: model {model} answers with the labels {labels}, which name no NLI "
            "classes; use an NLI model whose labels are entailment/neutral/contradiction",
            provider=provider,
            model=model,
            field="model",
        )
    label = max(scores, key=lambda k: (scores[k], -list(scores).index(k)))
    return inference_pb2.NliResult(
        entailment=scores["entailment"],
        contradiction=scores["contradiction"],
        neutral=scores["neutral"],
        label=_NLI_ENUM[label],
    )


def parse_zero_shot(
    data: Any, labels: Sequence[str], *, provider: str = "huggingface", model: str = ""
) -> dict[str, float]:
    """Scores by label from a zero-shot-classification answer, in any of its shapes:
    ``{"sequence", "labels", "scores"}`` (legacy), a list holding that object (the router),
    or ``[{"label", "score"}]`` (the current task spec)."""
    if isinstance(data, list) and data and isinstance(data[0], dict) and "labels" in data[0]:
        data = data[0]
    found: dict[str, float] = {}
    if isinstance(data, dict) and isinstance(data.get("labels"), list):
        found = {
            str(label): float(score)
            for label, score in zip(data["labels"], data.get("scores") or (), strict=False)
        }
    elif isinstance(data, list):
        found = dict(_label_scores(data))
    missing = [label for label in labels if label not in found]
    if missing:
        problem = f"zero-shot classification answered no score for {missing[0]!r}"
        raise _protocol(provider, model, problem)
    return {label: found[label] for label in labels}


def is_similarity_answer(data: Any) -> bool:
    """A sentence-similarity answer: a bare list of numbers (no labels)."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in data)
    )


def similarity_scores(
    data: Any,
    labels: Sequence[str],
    *,
    multi_label: bool,
    provider: str = "huggingface",
    model: str = "",
) -> dict[str, float]:
    """Label scores from a sentence-similarity answer (one cosine per label, in order):
    each cosine clipped to [0, 1] with ``multi_label``, else a softmax of
    ``SIMILARITY_SCALE`` x cosine across the labels."""
    if not is_similarity_answer(data) or len(data) != len(labels):
        count = len(data) if isinstance(data, list) else "no list"
        raise _protocol(
            provider, model, f"sentence-similarity answered {count} scores for {len(labels)}"
        )
    cosines = np.asarray(data, dtype=np.float64)
    if multi_label:
        values = np.clip(cosines, 0.0, 1.0)
    else:
        scaled = SIMILARITY_SCALE * (cosines - cosines.max())
        values = np.exp(scaled) / np.exp(scaled).sum()
    return {label: float(v) for label, v in zip(labels, values, strict=True)}


def top_label(scores: Mapping[str, float]) -> tuple[str, float]:
    """The highest-scoring label; on a tie the first in request order."""
    best = next(iter(scores))
    for label, score in scores.items():
        if score > scores[best]:
            best = label
    return best, scores[best]


def stance_label(favor: float, against: float, neutral: float) -> inference_pb2.StanceLabel:
    """The largest of the three; ties go favor > against > neutral (upstream's rule)."""
    if favor >= against and favor >= neutral:
        return inference_pb2.STANCE_LABEL_FAVOR
    if against >= neutral:
        return inference_pb2.STANCE_LABEL_AGAINST
    return inference_pb2.STANCE_LABEL_NEUTRAL


def error_message(body: Any) -> str:
    """The text of an Inference API error body: ``{"error": "..."}``, ``{"error": [...]}``,
    or a plain-text body."""
    if isinstance(body, dict):
        value = body.get("error") or body.get("message") or ""
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = value.get("message") or ""
        return str(value)
    if isinstance(body, str):
        return body[:300]
    return ""


async def gather_bounded(calls: Sequence[Awaitable[T]], limit: int) -> list[T]:
    """Run ``calls`` at most ``limit`` at a time, in order; on the first failure cancel the
    rest (no request keeps running for an answer nobody will read)."""
    gate = asyncio.Semaphore(limit)

    async def run(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    tasks = [asyncio.ensure_future(run(call)) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _path(model: str, pipeline: str | None = None) -> str:
    path = f"/models/{urllib.parse.quote(model, safe='/')}"
    return f"{path}/pipeline/{pipeline}" if pipeline else path


@dataclass(frozen=True, slots=True)
class HuggingFaceDialect:
    """How the Inference API says that something went wrong, as pure functions."""

    provider: str

    def error_from_body(
        self, status: int, body: Any, model: str, headers: Mapping[str, str] | None = None
    ) -> errors.GatewayError:
        """The ratd error an Inference API error status and body mean."""
        message = error_message(body)
        lowered = message.lower()
        common: dict[str, Any] = {
            "provider": self.provider,
            "model": model,
            "metadata": {"upstream_status": str(status)},
        }
        estimated = body.get("estimated_time") if isinstance(body, dict) else None
        if isinstance(estimated, int | float) or "currently loading" in lowered:
            return self._loading(estimated, model, headers, common)
        if status in (400, 401, 403) and any(hint in lowered for hint in _AUTH_HINTS):
            return errors.AuthenticationFailed(f"{self.provider}: {message}", **common)
        if status == 404 or (status == 400 and "does not exist" in lowered):
            detail = message or "not found"
            return errors.ModelNotFound(
                f"{self.provider}: model {model!r} was not found on the Inference API "
                f"(HTTP {status}: {detail})",
                **common,
            )
        return error_for_status(
            status, message, provider=self.provider, model=model, headers=headers
        )

    def _loading(
        self,
        estimated: Any,
        model: str,
        headers: Mapping[str, str] | None,
        common: dict[str, Any],
    ) -> errors.ModelNotAvailable:
        """A model still loading: UNAVAILABLE, retried after the API's estimate."""
        retry = float(estimated) if isinstance(estimated, int | float) else None
        if retry is not None and not 0 <= retry <= _MAX_ESTIMATE_SECS:
            retry = None  # not a usable delay (a gRPC Duration could not even hold it)
        if retry is None:
            retry = retry_after_from_headers(headers or {})
        wait = f"; ready in about {retry:.0f}s" if retry is not None else ""
        return errors.ModelNotAvailable(
            f"{self.provider}: model {model} is loading on the Inference API{wait} "
            "(set wait_for_model = true to have the API wait for it)",
            retry_after=retry,
            **common,
        )

    def error_in_body(self, data: Any, model: str) -> errors.GatewayError | None:
        """Some failures come back as a 200 with an error object."""
        if isinstance(data, dict) and data.get("error"):
            return self.error_from_body(500, data, model)
        return None


class HuggingFaceProvider(HttpProvider):
    """The serverless Inference API: feature-extraction, text- and zero-shot-classification."""

    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        super().__init__(name, config, api_key)
        self.errors = HuggingFaceDialect(name)
        # Models found to serve sentence-similarity rather than zero-shot classification.
        self._similarity_models: set[str] = set()

    def default_headers(self) -> dict[str, str]:
        headers = {"X-Wait-For-Model": "true"} if self.config.wait_for_model else {}
        if not self.config.use_cache:
            headers["X-Use-Cache"] = "false"
        return headers

    @property
    def dedicated(self) -> bool:
        """Whether base_url is a dedicated Inference Endpoint (one model, at its root)."""
        host = urllib.parse.urlsplit(self.config.base_url).hostname or ""
        return self.config.dedicated_endpoint or host.endswith(".endpoints.huggingface.cloud")

    def _path(self, model: str, pipeline: str | None = None) -> str:
        """Where a request for ``model`` goes, below base_url (nothing, for an endpoint)."""
        return "" if self.dedicated else _path(model, pipeline)

    def chat_dialect(self, model: str) -> ChatDialect:
        """None: the Inference API has no chat (routing sends none here, unless asked)."""
        raise self._unsupported("chat", model)

    async def _pipeline(self, path: str, body: Any, model: str) -> Any:
        """Run a pipeline. Its answer is a list or an object, as the pipeline has it."""
        return await self.call_json(
            "POST", path, body, model=model, errors_from=self.errors, object_only=False
        )

    # -- media (huggingface_media) -----------------------------------------------------------

    async def transcribe(
        self, request: media_pb2.TranscribeRequest, model: str
    ) -> media_pb2.TranscribeResponse:
        data = await self._pipeline(self._path(model), hm.asr_body(request), model)
        return hm.transcription(data, self.name, model)

    async def generate_image(
        self, request: media_pb2.GenerateImageRequest, model: str
    ) -> media_pb2.GenerateImageResponse:
        body = hm.image_body(request, self.name, model)
        raw, _ = await self.call_bytes(
            self._path(model), body, model=model, errors_from=self.errors
        )
        return hm.image(raw, self.name, model)

    async def synthesize(
        self, request: media_pb2.SynthesizeRequest, model: str
    ) -> AsyncIterator[media_pb2.SynthesizeResponse]:
        """The task answers the audio whole; it goes on as one chunk."""
        body = hm.speech_body(request, self.name, model)
        raw, kind = await self.call_bytes(
            self._path(model), body, model=model, errors_from=self.errors
        )
        if not raw:
            raise self.protocol_error("text-to-speech answered no audio", model)
        yield media_pb2.SynthesizeResponse(audio=raw, mime_type=hm.speech_mime(raw, kind))
        yield media_pb2.SynthesizeResponse(done=True, model=model, provider=self.name)

    # -- embeddings ---------------------------------------------------------------------------

    async def _embed_chunk(self, texts: Sequence[str], model: str) -> list[list[float]]:
        batched = len(texts) > 1
        inputs: Any = list(texts) if batched else texts[0]
        data = await self._pipeline(
            self._path(model, "feature-extraction"), {"inputs": inputs}, model
        )
        return parse_feature_extraction(
            data, len(texts), batched=batched, provider=self.name, model=model
        )

    async def embed(
        self, texts: Sequence[str], model: str, dimensions: int | None = None
    ) -> list[inference_pb2.Embedding]:
        self.no_dimensions(model, dimensions, "feature extraction has no such setting")
        chunks = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]
        results = await gather_bounded([self._embed_chunk(c, model) for c in chunks], CONCURRENCY)
        return [
            inference_pb2.Embedding(values=vector, model=model, dimensions=len(vector))
            for chunk in results
            for vector in chunk
        ]

    # -- NLI ------------------------------------------------------------------------------

    async def _nli_one(self, pair: inference_pb2.NliPair, model: str) -> inference_pb2.NliResult:
        body = {
            "inputs": {"text": pair.premise, "text_pair": pair.hypothesis},
            # Every class's score, not only the best one.
            "parameters": {"top_k": 3},
        }
        data = await self._pipeline(self._path(model), body, model)
        return parse_nli(data, provider=self.name, model=model)

    async def infer_nli(
        self, pairs: Sequence[inference_pb2.NliPair], model: str
    ) -> list[inference_pb2.NliResult]:
        return await gather_bounded([self._nli_one(p, model) for p in pairs], CONCURRENCY)

    # -- zero-shot and stance ---------------------------------------------------------------

    async def _zero_shot(
        self,
        text: str,
        labels: Sequence[str],
        model: str,
        *,
        multi_label: bool | None = None,
        template: str | None = None,
    ) -> dict[str, float]:
        parameters: dict[str, Any] = {"candidate_labels": list(labels)}
        if multi_label is not None:
            parameters["multi_label"] = multi_label
        if template is not None:
            parameters["hypothesis_template"] = template
        if model.startswith(SIMILARITY_PREFIX) or model in self._similarity_models:
            return await self._similarity(text, labels, model, bool(multi_label), template)
        body = {"inputs": text, "parameters": parameters}
        data = await self._pipeline(self._path(model), body, model)
        if is_similarity_answer(data):
            self._similarity_models.add(model)
            return await self._similarity(text, labels, model, bool(multi_label), template)
        return parse_zero_shot(data, labels, provider=self.name, model=model)

    async def _similarity(
        self,
        text: str,
        labels: Sequence[str],
        model: str,
        multi_label: bool,
        template: str | None,
    ) -> dict[str, float]:
        """Zero-shot by the sentence-similarity pipeline: the text against each label."""
        sentences = [template.replace("{}", label) if template else label for label in labels]
        body = {"inputs": {"source_sentence": text, "sentences": sentences}}
        data = await self._pipeline(self._path(model, "sentence-similarity"), body, model)
        return similarity_scores(
            data, labels, multi_label=multi_label, provider=self.name, model=model
        )

    async def classify_zero_shot(
        self, request: inference_pb2.ClassifyZeroShotRequest, model: str
    ) -> inference_pb2.ClassifyZeroShotResponse:
        labels = list(dict.fromkeys(request.labels))  # the API scores each label once
        scores = await self._zero_shot(
            request.text,
            labels,
            model,
            multi_label=request.multi_label if request.HasField("multi_label") else None,
            template=(
                request.hypothesis_template if request.HasField("hypothesis_template") else None
            ),
        )
        best, confidence = top_label(scores)
        return inference_pb2.ClassifyZeroShotResponse(
            scores=scores, top_label=best, confidence=confidence
        )

    async def classify_stance(
        self, request: inference_pb2.ClassifyStanceRequest, model: str
    ) -> inference_pb2.ClassifyStanceResponse:
        target = request.target.strip()
        hypotheses = [h.format(target) for h in _STANCE_HYPOTHESES]
        scores = await self._zero_shot(
            request.text, hypotheses, model, multi_label=False, template=STANCE_TEMPLATE
        )
        favor, against, neutral = (scores[h] for h in hypotheses)
        return inference_pb2.ClassifyStanceResponse(
            favor=favor,
            against=against,
            neutral=neutral,
            label=stance_label(favor, against, neutral),
            target=request.target,
        )


__all__ = ["HuggingFaceProvider"]
