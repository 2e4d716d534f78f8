"""Zero-shot classification and stance on an NLI model.

Each label becomes a hypothesis (``"This example is {}."``) paired with the text. With one
label expected (single-label), the labels' entailment logits go through one softmax, so the
scores sum to 1 (as the transformers zero-shot pipeline does). With several possible
(multi-label), each label is judged on its own: softmax of its entailment against its
contradiction logit.

Stance is single-label zero-shot over three hypotheses about the target. Its label is the
highest score, ties going favor, then against, then neutral (upstream's rule).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ratatoskr.v1 import inference_pb2
from ratd import errors
from ratd.local.nli import LabelIndex, softmax
from ratd.local.onnx_model import Encoded, OnnxModel

DEFAULT_TEMPLATE = "This example is {}."
STANCE_HYPOTHESES = {
    "favor": "The author of this text is in favor of {}.",
    "against": "The author of this text is against {}.",
    "neutral": "The author of this text is neutral about {}.",
}


def hypotheses(labels: Sequence[str], template: str) -> list[str]:
    if "{}" not in template:
        raise errors.InvalidInput(
            "hypothesis_template: must contain {} where the label goes", field="hypothesis_template"
        )
    return [template.replace("{}", label, 1) for label in labels]


def check_labels(labels: Sequence[str]) -> None:
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if label in seen:
            raise errors.InvalidInput(
                f"labels[{i}]: duplicate label {label!r}", field=f"labels[{i}]"
            )
        seen.add(label)


# Claims encoded at a time; between two chunks the work stops if the caller has gone.
CLAIM_CHUNK = 16


def _over_budget(tokens: int, claims: int, budget: int) -> errors.InvalidInput:
    return errors.InvalidInput(
        f"labels: {claims} labels x the text would run {tokens} tokens through the model, "
        f"more than one request may (providers.local.max_classify_tokens = {budget}); "
        "send fewer labels or a shorter text",
        field="labels",
    )


def encode_claims(
    model: OnnxModel,
    text: str,
    claims: Sequence[str],
    budget: int,
    cancelled: threading.Event,
) -> list[Encoded]:
    """(text, claim) pairs encoded for the model (blocking: call it from a worker thread).

    The cost is claims x text length, so the text is cut to the model's window before the
    pairs are tokenized, the cost is checked against ``budget`` (tokens over all pairs)
    before and after, and ``cancelled`` (the caller went away) stops the work between
    chunks of claims."""
    premise, premise_tokens = model.clip(text)
    if len(claims) * premise_tokens > budget:
        raise _over_budget(len(claims) * premise_tokens, len(claims), budget)
    encoded: list[Encoded] = []
    total = 0
    for start in range(0, len(claims), CLAIM_CHUNK):
        if cancelled.is_set():
            raise errors.Timeout("the caller is gone; zero-shot work stopped")
        chunk = claims[start : start + CLAIM_CHUNK]
        encoded.extend(model.encode_pairs([(premise, claim) for claim in chunk]))
        total = sum(e.length for e in encoded)
        if total > budget:
            raise _over_budget(total, len(claims), budget)
    return encoded


def label_scores(logits: np.ndarray, index: LabelIndex, multi_label: bool) -> np.ndarray:
    """One score per label from the [labels, classes] logits of its (text, hypothesis) pair."""
    logits = logits.astype(np.float64)
    if multi_label:
        pair = logits[:, [index.contradiction, index.entailment]]
        return softmax(pair, axis=1)[:, 1]
    return softmax(logits[:, index.entailment], axis=0)


def classify_response(
    labels: Sequence[str], scores: np.ndarray
) -> inference_pb2.ClassifyZeroShotResponse:
    best = int(np.argmax(scores))  # first of equal scores: the caller's label order decides
    return inference_pb2.ClassifyZeroShotResponse(
        scores={label: float(s) for label, s in zip(labels, scores, strict=True)},
        top_label=labels[best],
        confidence=float(scores[best]),
    )


def stance_label(favor: float, against: float, neutral: float) -> int:
    if favor >= against and favor >= neutral:
        return inference_pb2.STANCE_LABEL_FAVOR
    if against >= neutral:
        return inference_pb2.STANCE_LABEL_AGAINST
    return inference_pb2.STANCE_LABEL_NEUTRAL


def stance_response(target: str, scores: np.ndarray) -> inference_pb2.ClassifyStanceResponse:
    favor, against, neutral = (float(s) for s in scores)
    return inference_pb2.ClassifyStanceResponse(
        favor=favor,
        against=against,
        neutral=neutral,
        label=stance_label(favor, against, neutral),  # type: ignore[arg-type]
        target=target,
    )
