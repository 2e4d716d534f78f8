"""sentence-transformers embedding models on ONNX Runtime.

Pooling and normalisation come from the model's own files, as sentence-transformers reads
them: ``modules.json`` lists the modules (a ``Normalize`` module means L2-normalised
output), the Pooling module's ``config.json`` names the pooling modes (concatenated in
sentence-transformers' order when several are on), and ``sentence_bert_config.json``
gives ``max_seq_length``, where inputs are truncated. The model config can override each.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ratd import errors
from ratd.local.catalog import EMBEDDING, ModelSpec
from ratd.local.onnx_model import Encoded, OnnxModel, _positive, read_json
from ratd.local.sessions import SessionSettings
from ratd.local.sources import ModelFiles

log = logging.getLogger(__name__)

# sentence-transformers' Pooling config keys, in the order it concatenates them.
_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
_POOLING_TYPE = "sentence_transformers.models.Pooling"
_NORMALIZE_TYPE = "sentence_transformers.models.Normalize"


def pooling_setup(files: ModelFiles, spec: ModelSpec) -> tuple[tuple[str, ...], bool]:
    """(pooling modes, normalise) as the model's sentence-transformers files say."""
    modules_path = files.find("modules.json")
    modules: list[dict[str, object]] = []
    if modules_path is not None:
        import json

        try:
            loaded = json.loads(modules_path.read_text())
        except (OSError, ValueError) as err:
            raise errors.ModelNotAvailable(
                f"{modules_path}: not valid JSON ({err})", model=spec.name
            ) from None
        modules = [m for m in loaded if isinstance(m, dict)] if isinstance(loaded, list) else []
    types = [str(m.get("type", "")) for m in modules]
    normalize = _NORMALIZE_TYPE in types
    pooling_dir = next(
        (str(m.get("path", "")) for m in modules if m.get("type") == _POOLING_TYPE), "1_Pooling"
    )
    pooling_config = read_json(
        files, f"{pooling_dir}/config.json" if pooling_dir else "config.json"
    )
    modes = tuple(mode for key, mode in _POOLING_KEYS if pooling_config.get(key))
    if not modes:
        if modules_path is None:
            log.warning(
                "%s has no sentence-transformers modules.json: assuming mean pooling", spec.name
            )
        modes = ("mean",)
    if spec.pooling:
        modes = (spec.pooling,)
    if spec.normalize is not None:
        normalize = spec.normalize
    return modes, normalize


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Token embeddings [batch, seq, dim] to sentence embeddings, over the attention mask."""
    weights = mask[:, :, None].astype(hidden.dtype)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(np.where(weights > 0, hidden, np.finfo(hidden.dtype).min).max(axis=1))
        elif mode == "mean":
            parts.append((hidden * weights).sum(axis=1) / counts)
        elif mode == "mean_sqrt_len":
            parts.append((hidden * weights).sum(axis=1) / np.sqrt(counts))
        elif mode == "lasttoken":
            last = mask.sum(axis=1).astype(np.int64) - 1
            parts.append(hidden[np.arange(hidden.shape[0]), np.clip(last, 0, None)])
        else:
            raise ValueError(f"unknown pooling mode {mode}")
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def normalize_rows(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.clip(norms, 1e-12, None)


class EmbeddingModel(OnnxModel):
    kind = EMBEDDING

    def __init__(self, spec: ModelSpec, files: ModelFiles, settings: SessionSettings) -> None:
        super().__init__(spec, files, settings)
        self.pooling, self.normalize = pooling_setup(files, spec)
        names = self.output_names
        if "sentence_embedding" in names:
            self._output, self._pooled = "sentence_embedding", True
        else:
            token_level = [o.name for o in self.session.get_outputs() if len(o.shape) == 3]
            preferred = [n for n in ("last_hidden_state", "token_embeddings") if n in names]
            if not (preferred or token_level):
                raise errors.ModelNotAvailable(
                    f"{spec.name}: no token embeddings among the graph's outputs "
                    f"({', '.join(names)})",
                    model=spec.name,
                )
            self._output, self._pooled = (preferred or token_level)[0], False
        self.dimensions = 0

    def _config_max_length(self) -> int | None:
        return _positive(read_json(self.files, "sentence_bert_config.json").get("max_seq_length"))

    def run(self, batch: Sequence[Encoded]) -> np.ndarray:
        feeds, mask = self.feeds(batch)
        (output,) = self.session.run([self._output], feeds)
        values = np.asarray(output, dtype=np.float32)
        if not self._pooled:
            values = pool(values, mask, self.pooling)
        if self.normalize:
            values = normalize_rows(values)
        self.dimensions = int(values.shape[1])
        return values.astype(np.float32, copy=False)
