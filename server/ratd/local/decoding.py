"""The decoder steps of an encoder/decoder speech model, with a key/value cache when the
export has one.

optimum exports two decoders beside the encoder:

    decoder_model.onnx            input_ids [batch, tokens], encoder_hidden_states
                                  -> logits, present.{i}.decoder.key/value,
                                     present.{i}.encoder.key/value
    decoder_with_past_model.onnx  input_ids [batch, 1], past_key_values.{i}.decoder.key/value,
                                  past_key_values.{i}.encoder.key/value
                                  (and encoder_hidden_states in some exports)
                                  -> logits, present.{i}.decoder.key/value

With both, the first step runs ``decoder_model`` on the whole prefix and keeps its
``present.*`` outputs as the cache; every later step feeds one token and the cache to
``decoder_with_past_model`` and replaces what it returns: the cross-attention keys and
values over the encoder's 1500 frames are computed once per window, not once per token.
Without a usable with-past graph every step runs ``decoder_model`` on the whole sequence.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort

from ratd import errors

log = logging.getLogger(__name__)

PAST = "past_key_values."
PRESENT = "present."
# By input name: the arrays the next with-past step takes.
Cache = dict[str, np.ndarray]


def _ids_type(session: ort.InferenceSession) -> type[np.int32] | type[np.int64]:
    for item in session.get_inputs():
        if item.name == "input_ids" and item.type == "tensor(int32)":
            return np.int32
    return np.int64


class Decoder:
    def __init__(
        self,
        name: str,
        decoder: ort.InferenceSession,
        with_past: ort.InferenceSession | None,
    ) -> None:
        self.name = name
        self.decoder = decoder
        self._check()
        self.ids_type = _ids_type(decoder)
        self.outputs = [o.name for o in decoder.get_outputs()]
        self.with_past = with_past if with_past is not None and self._usable(with_past) else None
        if self.with_past is not None:
            self.past_inputs = [i.name for i in self.with_past.get_inputs()]
            self.past_outputs = [o.name for o in self.with_past.get_outputs()]

    @property
    def cached(self) -> bool:
        return self.with_past is not None

    def _check(self) -> None:
        inputs = {i.name for i in self.decoder.get_inputs()}
        outputs = {o.name for o in self.decoder.get_outputs()}
        wanted = {"input_ids", "encoder_hidden_states"}
        if inputs != wanted or "logits" not in outputs:
            raise errors.ModelNotAvailable(
                f"{self.name}: the decoder must take input_ids and encoder_hidden_states and "
                "give logits (optimum's decoder_model.onnx, not the merged one); it takes "
                f"{', '.join(sorted(inputs))}",
                model=self.name,
            )

    def _usable(self, with_past: ort.InferenceSession) -> bool:
        """Whether every cache input of the with-past graph is an output of the first
        step's graph, and it wants nothing else ratd lacks."""
        presents = {
            o for o in (x.name for x in self.decoder.get_outputs()) if o.startswith(PRESENT)
        }
        for item in with_past.get_inputs():
            if item.name in ("input_ids", "encoder_hidden_states"):
                continue
            source = PRESENT + item.name.removeprefix(PAST)
            if not item.name.startswith(PAST) or source not in presents:
                log.warning(
                    "%s: not using decoder_with_past (it wants %s, which decoder_model does "
                    "not give); decoding recomputes the prefix at each step",
                    self.name,
                    item.name,
                )
                return False
        return "logits" in {o.name for o in with_past.get_outputs()}

    def step(
        self, ids: np.ndarray, hidden: np.ndarray, cache: Cache | None
    ) -> tuple[np.ndarray, Cache | None]:
        """The next token's logits of each row ([rows, vocab]) and the cache for the step
        after (None without a with-past graph)."""
        if self.with_past is None:
            (logits,) = self.decoder.run(
                ["logits"],
                {"input_ids": ids.astype(self.ids_type), "encoder_hidden_states": hidden},
            )
            return np.asarray(logits[:, -1, :], dtype=np.float32), None
        if cache is None:
            values = self.decoder.run(
                self.outputs,
                {"input_ids": ids.astype(self.ids_type), "encoder_hidden_states": hidden},
            )
            found = dict(zip(self.outputs, values, strict=True))
        else:
            feeds: dict[str, np.ndarray] = {"input_ids": ids[:, -1:].astype(self.ids_type)}
            for name in self.past_inputs:
                if name == "encoder_hidden_states":
                    feeds[name] = hidden
                elif name != "input_ids":
                    feeds[name] = cache[name]
            found = dict(
                zip(self.past_outputs, self.with_past.run(self.past_outputs, feeds), strict=True)
            )
        updated = dict(cache or {})
        for output, value in found.items():
            if output.startswith(PRESENT):
                updated[PAST + output.removeprefix(PRESENT)] = value
        return np.asarray(found["logits"][:, -1, :], dtype=np.float32), updated


def select(cache: Cache | None, rows: list[int]) -> Cache | None:
    """The cache of the rows still decoding (batch is the first axis of every array)."""
    if cache is None:
        return None
    return {name: value[rows] for name, value in cache.items()}
