"""A loaded ONNX model with its tokenizer: what every local model kind shares.

Tokenization pads nothing: each text becomes an ``Encoded`` of its own length, so that the
batcher can group texts of similar length and pad each batch only to its own longest.
``run`` is called from a worker thread; ONNX Runtime releases the GIL while it computes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ratd import errors
from ratd.local.catalog import ModelSpec
from ratd.local.sessions import SessionSettings, create_session
from ratd.local.sources import ModelFiles

log = logging.getLogger(__name__)

# Longest sequence a model takes when its configs say nothing usable.
FALLBACK_MAX_LENGTH = 512
# More characters than any one token covers (WordPiece gives up on words past 100
# characters with one [UNK]; BPE vocabularies hold shorter pieces): a text cut at
# max_length x this many characters still fills the model's window.
CHARS_PER_TOKEN = 32


@dataclass(frozen=True, slots=True)
class Encoded:
    """One tokenized input: ids and segment ids, unpadded."""

    ids: np.ndarray
    type_ids: np.ndarray

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])


def read_json(files: ModelFiles, relative: str) -> dict[str, Any]:
    path = files.find(relative)
    if path is None:
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise errors.ModelNotAvailable(f"{path}: not valid JSON ({err})") from None
    return value if isinstance(value, dict) else {}


def _positive(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1_000_000:
        return value
    return None


class LocalModel:
    """What the manager and the batcher need of any loaded model: its spec, the device it
    runs on, a batch entry point (called in a worker thread), a warm-up at the largest
    batch, and a way to drop its sessions. Text models are ``OnnxModel``; speech to text
    (two sessions, audio in) is ``ratd.local.speech.SpeechModel``."""

    kind = ""
    spec: ModelSpec
    device: str

    def run(self, batch: Sequence[Any]) -> Any:
        """One result per input, in order (an array's rows, or a list): subclasses define
        what an input and a result are."""
        raise NotImplementedError

    def warm_up(self, max_batch_tokens: int, max_batch_size: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class OnnxModel(LocalModel):
    """Session, tokenizer and input layout of one model. Subclasses turn outputs into results."""

    def __init__(self, spec: ModelSpec, files: ModelFiles, settings: SessionSettings) -> None:
        self.spec = spec
        self.files = files
        self.config = read_json(files, "config.json")
        self.max_length = self._max_length()
        self.tokenizer = self._tokenizer(files.require("tokenizer.json"))
        self.session, self.device = self._session(files.onnx, settings)
        self.inputs = {
            i.name: (np.int32 if i.type == "tensor(int32)" else np.int64)
            for i in self.session.get_inputs()
        }
        if "input_ids" not in self.inputs:
            raise errors.ModelNotAvailable(
                f"{spec.name}: the ONNX graph has no input_ids input "
                f"(inputs: {', '.join(self.inputs)})",
                model=spec.name,
            )
        self.output_names = [o.name for o in self.session.get_outputs()]

    # -- loading -------------------------------------------------------------------------------

    def _config_max_length(self) -> int | None:
        return None

    def _max_length(self) -> int:
        positions = _positive(self.config.get("max_position_embeddings"))
        tokenizer_config = read_json(self.files, "tokenizer_config.json")
        length = (
            _positive(self.spec.max_seq_length)
            or self._config_max_length()
            or _positive(tokenizer_config.get("model_max_length"))
            or positions
            or FALLBACK_MAX_LENGTH
        )
        return min(length, positions) if positions else length

    def _tokenizer(self, path: Path) -> Tokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises plain Exception on bad files
            raise errors.ModelNotAvailable(
                f"{path}: cannot load the tokenizer: {err}", model=self.spec.name
            ) from None
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        return tokenizer

    def _session(self, path: Path, settings: SessionSettings) -> tuple[ort.InferenceSession, str]:
        try:
            return create_session(path, settings)
        except Exception as err:  # onnxruntime raises its own exception types
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise errors.ModelNotAvailable(
                f"{self.spec.name}: cannot load {path} ({self.files.source}): {message}",
                model=self.spec.name,
                metadata={"file": str(path)},
            ) from None

    # -- tokenization --------------------------------------------------------------------------

    def clip(self, text: str) -> tuple[str, int]:
        """``text`` cut to what the model's window holds, and its tokens (specials included).

        A caller's text may be megabytes, and a pair is tokenized whole before truncation:
        cut it first, coarsely by characters, then exactly at the end of the last token
        that fits, so that pairs made with it tokenize as the full text would."""
        window = text[: self.max_length * CHARS_PER_TOKEN]
        (encoding,) = self.tokenizer.encode_batch([window])
        end = max((stop for _, stop in encoding.offsets), default=0)
        return (window[:end] if end else window), len(encoding.ids)

    def encode_texts(self, texts: Sequence[str]) -> list[Encoded]:
        encodings = self.tokenizer.encode_batch(list(texts))
        return [
            Encoded(np.asarray(e.ids, dtype=np.int64), np.asarray(e.type_ids, dtype=np.int64))
            for e in encodings
        ]

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[Encoded]:
        encodings = self.tokenizer.encode_batch(list(pairs))
        return [
            Encoded(np.asarray(e.ids, dtype=np.int64), np.asarray(e.type_ids, dtype=np.int64))
            for e in encodings
        ]

    # -- inference -----------------------------------------------------------------------------

    def feeds(self, batch: Sequence[Encoded]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Right-padded inputs of one batch, and its attention mask."""
        width = max(item.length for item in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, item in enumerate(batch):
            ids[row, : item.length] = item.ids
            types[row, : item.length] = item.type_ids
            mask[row, : item.length] = 1
        available = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {}
        for name, dtype in self.inputs.items():
            if name not in available:
                raise errors.ModelNotAvailable(
                    f"{self.spec.name}: the ONNX graph wants an input ratd cannot provide: {name}",
                    model=self.spec.name,
                )
            feeds[name] = available[name].astype(dtype, copy=False)
        return feeds, mask

    def warm_up(self, max_batch_tokens: int, max_batch_size: int) -> None:
        """Run the largest batch the batcher can form, so that the arena reaches its peak
        now (measured by the manager) rather than under the first heavy load."""
        length = max(2, min(self.max_length, max_batch_tokens))
        rows = max(1, min(max_batch_size, max_batch_tokens // length))
        item = Encoded(np.ones(length, dtype=np.int64), np.zeros(length, dtype=np.int64))
        self.run([item] * rows)
        self.run([Encoded(item.ids[:2], item.type_ids[:2])])

    def close(self) -> None:
        """Drop the session and the tokenizer (the memory goes when the last reference does)."""
        self.__dict__.pop("session", None)
        self.__dict__.pop("tokenizer", None)
