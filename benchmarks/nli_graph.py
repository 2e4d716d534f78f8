"""A randomly initialised sequence-classification encoder with DeBERTa-v3-base's dimensions,
as an ONNX graph, for the local NLI benchmark (no model download needed).

The graph is a BERT-style post-LayerNorm transformer: word + absolute position
embeddings, ``layers`` blocks of multi-head self-attention and a GELU feed-forward, a
pooler on the first token and a 3-way classifier (``logits``). DeBERTa-v3-base has the
same sizes (vocabulary 128,100, hidden 768, 12 layers, 12 heads, feed-forward 3,072,
about 184 M parameters, ~740 MB in fp32), so the graph costs about what the real model
costs in memory and matrix multiplications; DeBERTa's disentangled (relative-position)
attention adds two more score products per layer, so the real model is somewhat slower
than this graph. What the benchmark compares, ratd against raw ONNX Runtime on the same
graph, does not depend on that.

Inputs are ``input_ids`` and ``attention_mask`` (DeBERTa-v3 has no token types), so any
BERT-style tokenizer.json serves; the directory written here has the tokenizer of the
packaged all-MiniLM-L6-v2 and a config.json with NLI labels.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass(frozen=True)
class Dimensions:
    vocab: int = 128_100
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    max_positions: int = 512
    labels: int = 3

    @property
    def parameters(self) -> int:
        h, f = self.hidden, self.intermediate
        per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
        embeddings = (self.vocab + self.max_positions) * h + 2 * h
        head = h * h + h + h * self.labels + self.labels
        return embeddings + self.layers * per_layer + head


DEBERTA_V3_BASE = Dimensions()
# For smoke runs: same structure, a few MB.
SMALL = Dimensions(vocab=30_522, hidden=128, layers=2, heads=2, intermediate=512)
LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}


def build(dims: Dimensions, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    h, nh = dims.hidden, dims.heads
    hd = h // nh
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, *shape: int, scale: float = 0.02) -> str:
        array = rng.standard_normal(shape, dtype=np.float32)
        array *= scale
        inits.append(numpy_helper.from_array(array, name))
        return name

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def ones(name: str, size: int) -> str:
        return const(name, np.ones(size, dtype=np.float32))

    def zeros(name: str, size: int) -> str:
        return const(name, np.zeros(size, dtype=np.float32))

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def linear(x: str, name: str, n_in: int, n_out: int) -> str:
        y = node("MatMul", [x, weight(f"{name}.weight", n_in, n_out)], f"{name}.mm")
        return node("Add", [y, weight(f"{name}.bias", n_out, scale=0.0)], f"{name}.out")

    def layer_norm(x: str, name: str) -> str:
        return node(
            "LayerNormalization",
            [x, ones(f"{name}.gamma", h), zeros(f"{name}.beta", h)],
            f"{name}.out",
            axis=-1,
            epsilon=1e-7,
        )

    def gelu(x: str, name: str) -> str:
        scaled = node(
            "Div", [x, const(f"{name}.sqrt2", np.array(math.sqrt(2), np.float32))], f"{name}.scaled"
        )
        erf = node("Erf", [scaled], f"{name}.erf")
        one_plus = node(
            "Add", [erf, const(f"{name}.one", np.array(1, np.float32))], f"{name}.one_plus"
        )
        half = node("Mul", [x, const(f"{name}.half", np.array(0.5, np.float32))], f"{name}.half_x")
        return node("Mul", [half, one_plus], f"{name}.out")

    # Embeddings: word + absolute position, LayerNorm.
    words = node("Gather", [weight("word_embeddings", dims.vocab, h), "input_ids"], "words")
    shape = node("Shape", ["input_ids"], "ids_shape")
    length = node("Gather", [shape, const("one_index", np.array(1, np.int64))], "seq_len")
    positions = node(
        "Range",
        [const("zero_i64", np.array(0, np.int64)), length, const("one_i64", np.array(1, np.int64))],
        "positions",
    )
    pos = node("Gather", [weight("position_embeddings", dims.max_positions, h), positions], "pos")
    x = layer_norm(node("Add", [words, pos], "embedded"), "embeddings.norm")

    # Additive attention mask, [batch, 1, 1, sequence].
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    mask_4d = node("Unsqueeze", [mask_f, const("mask_axes", np.array([1, 2], np.int64))], "mask_4d")
    inverted = node("Sub", [const("mask_one", np.array(1, np.float32)), mask_4d], "mask_inv")
    bias = node("Mul", [inverted, const("mask_min", np.array(-1e4, np.float32))], "mask_bias")

    heads_shape = const("heads_shape", np.array([0, 0, nh, hd], np.int64))
    merged_shape = const("merged_shape", np.array([0, 0, h], np.int64))
    scale = const("score_scale", np.array(1 / math.sqrt(hd), np.float32))
    for i in range(dims.layers):
        p = f"layer{i}"
        q = node("Reshape", [linear(x, f"{p}.q", h, h), heads_shape], f"{p}.q4")
        k = node("Reshape", [linear(x, f"{p}.k", h, h), heads_shape], f"{p}.k4")
        v = node("Reshape", [linear(x, f"{p}.v", h, h), heads_shape], f"{p}.v4")
        q = node("Transpose", [q], f"{p}.qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [k], f"{p}.kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [v], f"{p}.vt", perm=[0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), scale], f"{p}.scaled")
        probs = node("Softmax", [node("Add", [scores, bias], f"{p}.masked")], f"{p}.probs", axis=-1)
        context = node(
            "Transpose", [node("MatMul", [probs, v], f"{p}.ctx")], f"{p}.ctxt", perm=[0, 2, 1, 3]
        )
        context = node("Reshape", [context, merged_shape], f"{p}.ctx3")
        attended = node("Add", [x, linear(context, f"{p}.o", h, h)], f"{p}.res1")
        x = layer_norm(attended, f"{p}.norm1")
        hidden = gelu(linear(x, f"{p}.ff1", h, dims.intermediate), f"{p}.gelu")
        x = layer_norm(
            node("Add", [x, linear(hidden, f"{p}.ff2", dims.intermediate, h)], f"{p}.res2"),
            f"{p}.norm2",
        )

    first = node("Gather", [x, const("first_token", np.array(0, np.int64))], "cls", axis=1)
    pooled = gelu(linear(first, "pooler", h, h), "pooler.gelu")
    logits_raw = linear(pooled, "classifier", h, dims.labels)
    node("Identity", [logits_raw], "logits")

    graph = helper.make_graph(
        nodes,
        "deberta-v3-base-sized-nli",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", dims.labels])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def ensure_model(directory: Path, dims: Dimensions, tokenizer: Path) -> Path:
    """Write (once; reused while the dimensions match) model.onnx, tokenizer.json and
    config.json into ``directory``; returns it."""
    stamp = directory / "dimensions.json"
    wanted = json.dumps(asdict(dims), sort_keys=True)
    if stamp.is_file() and stamp.read_text() == wanted and (directory / "model.onnx").is_file():
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    model = build(dims)
    onnx.save(model, str(directory / "model.onnx"))
    del model
    shutil.copyfile(tokenizer, directory / "tokenizer.json")
    config = {
        "model_type": "deberta-v2",
        "architectures": ["DebertaV2ForSequenceClassification"],
        "hidden_size": dims.hidden,
        "num_hidden_layers": dims.layers,
        "num_attention_heads": dims.heads,
        "intermediate_size": dims.intermediate,
        "vocab_size": dims.vocab,
        "max_position_embeddings": dims.max_positions,
        "id2label": {str(k): v for k, v in LABELS.items()},
        "label2id": {v: k for k, v in LABELS.items()},
    }
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    stamp.write_text(wanted)
    return directory
