"""Cross-encoder NLI models: one (premise, hypothesis) pair in, softmax over the labels out.

The label order is the model's own: ``id2label`` in its ``config.json``, never assumed
(cross-encoder/nli-* order their logits contradiction, entailment, neutral; other NLI
models order them differently). Two-label models (entailment / not_entailment) serve
too: "not entailment" stands for contradiction and neutral is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ratatoskr.v1 import inference_pb2
from ratd import errors
from ratd.local.catalog import NLI, ModelSpec
from ratd.local.onnx_model import Encoded, OnnxModel
from ratd.local.sessions import SessionSettings
from ratd.local.sources import ModelFiles

ENTAILMENT = "entailment"
CONTRADICTION = "contradiction"
NEUTRAL = "neutral"


def canonical_label(name: str) -> str | None:
    """entailment / contradiction / neutral for the many spellings models use."""
    text = name.strip().lower().replace("-", "_").replace(" ", "_")
    if text.startswith(("not_entail", "non_entail", "no_entail")):
        return CONTRADICTION
    if text.startswith("entail"):
        return ENTAILMENT
    if text.startswith("contradict"):
        return CONTRADICTION
    if text.startswith("neutral"):
        return NEUTRAL
    return None


@dataclass(frozen=True, slots=True)
class LabelIndex:
    """Where each NLI label sits among the model's logits (neutral may be absent)."""

    entailment: int
    contradiction: int
    neutral: int | None

    @classmethod
    def from_config(cls, config: dict[str, object], model: str) -> LabelIndex:
        raw = config.get("id2label")
        if not isinstance(raw, dict) or not raw:
            raise errors.ModelNotAvailable(
                f"{model}: config.json has no id2label, so the order of the NLI labels is unknown",
                model=model,
            )
        found: dict[str, int] = {}
        for key, name in raw.items():
            label = canonical_label(str(name))
            try:
                index = int(key)
            except ValueError:
                continue
            if label is not None and label not in found:
                found[label] = index
        if ENTAILMENT not in found or CONTRADICTION not in found:
            raise errors.ModelNotAvailable(
                f"{model}: id2label {raw} does not name entailment and contradiction labels",
                model=model,
            )
        return cls(found[ENTAILMENT], found[CONTRADICTION], found.get(NEUTRAL))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def nli_label(entailment: float, contradiction: float, neutral: float) -> int:
    """The largest; ties go entailment, then contradiction, then neutral (as upstream)."""
    if entailment >= contradiction and entailment >= neutral:
        return inference_pb2.NLI_LABEL_ENTAILMENT
    if contradiction >= neutral:
        return inference_pb2.NLI_LABEL_CONTRADICTION
    return inference_pb2.NLI_LABEL_NEUTRAL


class NliModel(OnnxModel):
    kind = NLI

    def __init__(self, spec: ModelSpec, files: ModelFiles, settings: SessionSettings) -> None:
        super().__init__(spec, files, settings)
        self.labels = LabelIndex.from_config(self.config, spec.name)
        outputs = self.session.get_outputs()
        self._output = "logits" if "logits" in self.output_names else outputs[0].name

    def run(self, batch: Sequence[Encoded]) -> np.ndarray:
        """Raw logits, one row per pair, in the model's label order."""
        feeds, _ = self.feeds(batch)
        (logits,) = self.session.run([self._output], feeds)
        values = np.asarray(logits, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] <= max(
            self.labels.entailment, self.labels.contradiction
        ):
            raise errors.ModelNotAvailable(
                f"{self.spec.name}: logits of shape {values.shape} do not match id2label",
                model=self.spec.name,
            )
        return values

    def result(self, logits: np.ndarray) -> inference_pb2.NliResult:
        probs = softmax(logits.astype(np.float64))
        entailment = float(probs[self.labels.entailment])
        contradiction = float(probs[self.labels.contradiction])
        neutral = float(probs[self.labels.neutral]) if self.labels.neutral is not None else 0.0
        return inference_pb2.NliResult(
            entailment=entailment,
            contradiction=contradiction,
            neutral=neutral,
            label=nli_label(entailment, contradiction, neutral),  # type: ignore[arg-type]
        )
