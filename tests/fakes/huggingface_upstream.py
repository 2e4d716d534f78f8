"""A fake HuggingFace Inference API (hf-inference) on loopback, in its real wire format.

Learned from real recordings and HF's task specs; every vector, label and score here is
the project's own, computed deterministically from the inputs. What it reproduces:

* ``POST /models/{model}/pipeline/feature-extraction``: a flat vector for a string input and
  a list of vectors for a list (sentence-transformers models), or, for plain transformers
  (model names containing ``bart-base`` or ``token-level``), one vector per token nested
  ``[1, tokens, dims]`` per input, unpadded;
* ``POST /models/{model}`` as text-classification for ``{"text", "text_pair"}`` inputs:
  ``[[{"label", "score"}, ...]]`` sorted by score, with the model's label names (lowercase
  for ``cross-encoder/*``, ``ENTAILMENT`` for ``*-mnli``, ``LABEL_n`` for ``*label-ids*``,
  ``entailment``/``not_entailment`` for ``*two-way*``);
* ``POST /models/{model}`` as zero-shot-classification (``parameters.candidate_labels``):
  labels re-ordered by descending score, as a list holding one
  ``{"sequence", "labels", "scores"}`` object (the router), a bare object (``*legacy*``) or
  ``[{"label", "score"}]`` (``*task-spec*``);
* ``POST /models/{model}/pipeline/sentence-similarity`` (and ``POST /models/{model}`` for
  ``sentence-transformers/*`` and ``*similarity*`` models, whose pipeline it is) with ``{"inputs":
  {"source_sentence", "sentences"}}``: a bare list of cosine similarities, one per sentence,
  in order; a zero-shot payload sent to such a model gets the same kind of answer for its
  candidate labels (a list of numbers, no labels: what ratd met in issue #14);
* a dedicated Inference Endpoint at ``/dedicated/{model}``: one model answering at the
  endpoint's own URL (no ``/models/...`` path), feature-extraction for ``{"inputs": text |
  [texts]}`` and otherwise what ``POST /models/{model}`` answers;
* errors: 503 ``{"error": "Model X is currently loading", "estimated_time": s}`` (models
  ``loading/*``, unless ``X-Wait-For-Model`` asks to wait; ``conf-overloaded``), a 503
  without a hint (``busy/*``), 404 JSON ``Model X does not exist`` (``conf-missing``) and
  the legacy host's plain-text ``Not Found`` (``gone/*``), 400 "token seems invalid" for a
  wrong token and 401 for none (when ``api_key`` is set, and ``conf-auth``), 429 with
  ``Retry-After`` (``conf-rate-limit``), 500 (``conf-server-error``).

Every request is recorded in ``fake.requests``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes import conformance as conf
from tests.fakes import huggingface_media
from tests.fakes.loopback import LoopbackServer

# The path the real API lives under (router.huggingface.co/hf-inference).
PREFIX = "/hf-inference"
DIMS = 12
LOADING_SECONDS = 20.5
NEGATIONS = frozenset({"not", "no", "never", "nobody", "nothing"})
INVALID_TOKEN = "Authorization header is correct, but the token seems invalid"
NO_TOKEN = "Invalid username or password."
RATE_LIMITED = "Rate limit reached. You reached free usage limit (reset hourly)."
SERVER_ERROR = "Internal Server Error"
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _unit(seed: str) -> list[float]:
    digest = hashlib.sha256(seed.encode()).digest()
    values = [b / 127.5 - 1.0 for b in digest[:DIMS]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def sentence_vector(text: str) -> list[float]:
    """The vector a sentence-transformers model of the fake answers for ``text``."""
    return _unit(f"sentence:{text}")


def token_vectors(text: str) -> list[list[float]]:
    """The per-token vectors a plain transformer of the fake answers: [CLS], words, [SEP]."""
    tokens = ["<s>", *words(text), "</s>"]
    return [[round(3 * v, 6) for v in _unit(f"token:{i}:{tok}")] for i, tok in enumerate(tokens)]


def nli_scores(premise: str, hypothesis: str) -> dict[str, float]:
    """Entailment when the hypothesis's words are all in the premise, contradiction when
    exactly one of them is negated, neutral otherwise."""
    p, h = set(words(premise)), set(words(hypothesis))
    if bool(p & NEGATIONS) != bool(h & NEGATIONS):
        return {"contradiction": 0.88, "neutral": 0.08, "entailment": 0.04}
    if h <= p:
        return {"entailment": 0.91, "neutral": 0.06, "contradiction": 0.03}
    return {"neutral": 0.83, "entailment": 0.1, "contradiction": 0.07}


def zero_shot_raw(text: str, label: str) -> float:
    """A label's raw score: how often its words occur in the text."""
    found = words(text)
    return 1.0 + 2.0 * sum(found.count(w) for w in words(label) if len(w) > 2)


def zero_shot_scores(text: str, labels: Sequence[str], multi_label: bool) -> dict[str, float]:
    """Softmax across the labels, or each label alone (sigmoid) with ``multi_label``."""
    raw = [zero_shot_raw(text, label) for label in labels]
    if multi_label:
        return {
            label: round(1 / (1 + math.exp(-(r - 2.0))), 6)
            for label, r in zip(labels, raw, strict=True)
        }
    exps = [math.exp(r) for r in raw]
    total = sum(exps)
    return {label: round(e / total, 6) for label, e in zip(labels, exps, strict=True)}


def similarity(source: str, sentence: str) -> float:
    """The cosine similarity a sentence-transformers model of the fake answers."""
    a, b = sentence_vector(source), sentence_vector(sentence)
    return round(sum(x * y for x, y in zip(a, b, strict=True)), 6)


def nli_label_names(model: str) -> dict[str, str]:
    """The label names a model of the fake uses for each class."""
    if "label-ids" in model:
        return {"contradiction": "LABEL_0", "entailment": "LABEL_1", "neutral": "LABEL_2"}
    if "mnli" in model:
        return {"contradiction": "CONTRADICTION", "entailment": "ENTAILMENT", "neutral": "NEUTRAL"}
    return {"contradiction": "contradiction", "entailment": "entailment", "neutral": "neutral"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: CIMultiDict[str]
    raw: bytes
    json: Any

    @property
    def model(self) -> str:
        rest = self.path.removeprefix("/models/")
        return rest.split("/pipeline/", 1)[0]


def _json(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps(obj, separators=(",", ":")).encode(),
        headers=dict(headers or {}),
    )
    response.headers["Content-Type"] = "application/json"
    return response


class FakeHuggingFace(LoopbackServer):
    """A fake Inference API on a free loopback port: ``async with FakeHuggingFace() as fake``."""

    def __init__(self, *, api_key: str | None = None) -> None:
        """``api_key``: when set, requests must carry ``Authorization: Bearer <key>``."""
        super().__init__()
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []  # type: ignore[assignment]

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"{PREFIX}/models/{{model:.+}}/pipeline/{{task}}", self.pipeline)
        app.router.add_post(f"{PREFIX}/models/{{model:.+}}", self.model)
        app.router.add_post("/dedicated/{model:.+}", self.dedicated)
        app.router.add_route("*", "/{tail:.*}", self.unknown)

    @property
    def base_url(self) -> str:
        """Like https://router.huggingface.co/hf-inference: ratd appends /models/..."""
        return f"http://{self.host}:{self.port}{PREFIX}"

    def last(self, suffix: str = "") -> RecordedRequest:  # type: ignore[override]
        found = [r for r in self.requests if r.path.endswith(suffix)]
        if not found:
            raise AssertionError("no request was recorded")
        return found[-1]

    # -- handlers -------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        path = request.path.removeprefix(PREFIX)
        record = RecordedRequest(request.method, path, CIMultiDict(request.headers), raw, parsed)
        self.requests.append(record)
        return record

    def _failure(self, request: web.Request, model: str) -> web.Response | None:
        """The error a request gets before any inference, if any."""
        auth = request.headers.get("Authorization")
        if self.api_key is not None:
            if auth is None:
                return _json(401, {"error": NO_TOKEN})
            if auth != f"Bearer {self.api_key}":
                return _json(400, {"error": INVALID_TOKEN})
        waits = request.headers.get("X-Wait-For-Model", "").lower() in ("1", "true")
        if model == "conf-auth":
            return _json(400, {"error": INVALID_TOKEN})
        if model == "conf-missing":
            return _json(404, {"error": f"Model {model} does not exist"})
        if model.startswith("gone/"):
            return web.Response(status=404, text="Not Found", content_type="text/plain")
        if model == "conf-rate-limit":
            return _json(
                429, {"error": RATE_LIMITED}, {"Retry-After": str(conf.RETRY_AFTER_SECONDS)}
            )
        if model == "conf-server-error":
            return _json(500, {"error": SERVER_ERROR})
        if model == "conf-overloaded":
            body = {
                "error": f"Model {model} is currently loading",
                "estimated_time": float(conf.RETRY_AFTER_SECONDS),
            }
            return _json(503, body)
        if model.startswith("loading/") and not waits:
            return _json(
                503,
                {"error": f"Model {model} is currently loading", "estimated_time": LOADING_SECONDS},
            )
        if model.startswith("busy/"):
            return _json(503, {"error": "Service Unavailable"})
        return None

    async def pipeline(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        model, task = request.match_info["model"], request.match_info["task"]
        failure = self._failure(request, model)
        if failure is not None:
            return failure
        body = record.json if isinstance(record.json, dict) else {}
        inputs = body.get("inputs")
        if task == "sentence-similarity":
            return self._similarity(inputs)
        if task != "feature-extraction":
            return _json(400, {"error": f"Task {task} is not supported by the fake"})
        token_level = "bart-base" in model or "token-level" in model

        def one(text: str) -> Any:
            return [token_vectors(text)] if token_level else sentence_vector(text)

        if isinstance(inputs, str):
            return _json(200, one(inputs))
        if isinstance(inputs, list) and all(isinstance(t, str) for t in inputs):
            return _json(200, [one(t) for t in inputs])
        return _json(400, {"error": ["Input should be a valid string"], "error_type": "validation"})

    def dedicated_url(self, model: str) -> str:
        """The URL of a dedicated Inference Endpoint serving ``model``."""
        return f"http://{self.host}:{self.port}/dedicated/{model}"

    async def dedicated(self, request: web.Request) -> web.StreamResponse:
        """An Inference Endpoint: the model's task at the endpoint's root."""
        record = await self._record(request)
        model = request.match_info["model"]
        failure = self._failure(request, model)
        if failure is not None:
            return failure
        body = record.json if isinstance(record.json, dict) else {}
        inputs = body.get("inputs")
        if isinstance(inputs, str) and "parameters" not in body:
            return _json(200, sentence_vector(inputs))
        if isinstance(inputs, list) and all(isinstance(t, str) for t in inputs):
            return _json(200, [sentence_vector(t) for t in inputs])
        return self._answer(model, body)

    async def model(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        model = request.match_info["model"]
        failure = self._failure(request, model)
        if failure is not None:
            return failure
        body = record.json if isinstance(record.json, dict) else {}
        if huggingface_media.task(model):
            return huggingface_media.answer(model, body)
        return self._answer(model, body)

    def _answer(self, model: str, body: Mapping[str, Any]) -> web.Response:
        """What ``POST /models/{model}`` answers: by the model's pipeline and the payload."""
        parameters = body.get("parameters") or {}
        inputs = body.get("inputs")
        if model.startswith("sentence-transformers/") or "similarity" in model:
            if isinstance(parameters, dict) and "candidate_labels" in parameters:
                labels = parameters["candidate_labels"]
                inputs = {"source_sentence": inputs, "sentences": labels}
            return self._similarity(inputs)
        if isinstance(parameters, dict) and "candidate_labels" in parameters:
            return self._zero_shot(model, inputs, parameters)
        if isinstance(inputs, dict) and "text" in inputs and "text_pair" in inputs:
            return self._pair(model, inputs, parameters)
        return _json(400, {"error": "The fake serves only NLI pairs and zero-shot classification"})

    def _pair(
        self, model: str, inputs: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> web.Response:
        scores = nli_scores(str(inputs["text"]), str(inputs["text_pair"]))
        if "two-way" in model:
            entail = scores["entailment"]
            items: list[dict[str, Any]] = [
                {"label": "entailment", "score": entail},
                {"label": "not_entailment", "score": round(1 - entail, 6)},
            ]
        else:
            names = nli_label_names(model)
            items = [{"label": names[k], "score": v} for k, v in scores.items()]
        items.sort(key=lambda item: -float(item["score"]))
        top_k = parameters.get("top_k") if isinstance(parameters, dict) else None
        if isinstance(top_k, int):
            items = items[:top_k]
        return _json(200, [items])

    def _zero_shot(self, model: str, inputs: Any, parameters: Mapping[str, Any]) -> web.Response:
        labels = parameters.get("candidate_labels")
        if not isinstance(inputs, str) or not isinstance(labels, list) or not labels:
            return _json(
                400, {"error": "zero-shot classification needs a text and candidate_labels"}
            )
        scores = zero_shot_scores(
            inputs, [str(label) for label in labels], bool(parameters.get("multi_label"))
        )
        ranked = sorted(
            scores.items(), key=lambda item: -item[1]
        )  # stable: ties keep request order
        if "task-spec" in model:
            return _json(200, [{"label": label, "score": score} for label, score in ranked])
        obj = {
            "sequence": inputs,
            "labels": [k for k, _ in ranked],
            "scores": [v for _, v in ranked],
        }
        return _json(200, obj if "legacy" in model else [obj])

    def _similarity(self, inputs: Any) -> web.Response:
        source = inputs.get("source_sentence") if isinstance(inputs, dict) else None
        sentences = inputs.get("sentences") if isinstance(inputs, dict) else None
        if not isinstance(source, str) or not isinstance(sentences, list):
            return _json(
                400, {"error": "sentence-similarity needs inputs.source_sentence and sentences"}
            )
        return _json(200, [similarity(source, str(s)) for s in sentences])

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.Response(status=404, text="Not Found", content_type="text/plain")
