"""Small, randomly initialised ONNX models and tokenizers that the local-inference tests
run on real ONNX Runtime sessions (and that the fake Hub serves).

Every graph maps token ids through an embedding table ``E``:

- ``embedding``: output ``last_hidden_state`` = E[input_ids] (ratd pools and normalises);
- ``nli``: logits = masked mean of E[input_ids] @ W + b, a sequence classifier whose
  logits the tests recompute in numpy (``expected_logits``).

``ballast_rows`` adds rows to E that no token reaches, to give a model a known weight in
memory for the lifecycle tests. The tokenizer is a word-level one with BERT's template
([CLS] a [SEP] b [SEP]). This module does not import pytest or ratd.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

WORDS = [
    "the",
    "a",
    "an",
    "is",
    "are",
    "was",
    "not",
    "no",
    "yes",
    "this",
    "that",
    "it",
    "of",
    "to",
    "in",
    "on",
    "for",
    "with",
    "and",
    "or",
    "but",
    "cats",
    "dogs",
    "birds",
    "fish",
    "love",
    "hate",
    "like",
    "dislike",
    "sun",
    "rain",
    "snow",
    "weather",
    "sport",
    "politics",
    "good",
    "bad",
    "great",
    "terrible",
    "example",
    "text",
    "about",
    "author",
    "favor",
    "against",
    "neutral",
    "climate",
    "policy",
    "tax",
    "taxes",
    "i",
    "we",
    "they",
    "he",
    "she",
    "very",
    "really",
    "support",
    "oppose",
    "entails",
    "contradicts",
    "hello",
    "world",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
]
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def vocabulary() -> dict[str, int]:
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    return vocab


def make_tokenizer() -> Tokenizer:
    vocab = vocabulary()
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


@dataclass
class TinyModel:
    """The weights of a generated model, to recompute its outputs in numpy."""

    embeddings: np.ndarray
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None

    def expected_logits(self, tokenizer: Tokenizer, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        assert self.weights is not None and self.bias is not None
        rows = []
        for premise, hypothesis in pairs:
            ids = tokenizer.encode(premise, hypothesis).ids
            rows.append(self.embeddings[ids].mean(axis=0) @ self.weights + self.bias)
        return np.asarray(rows)

    def expected_embedding(self, tokenizer: Tokenizer, text: str) -> np.ndarray:
        ids = tokenizer.encode(text).ids
        pooled = self.embeddings[ids].mean(axis=0)
        return pooled / np.linalg.norm(pooled)


def _graph_inputs(token_types: bool) -> list[onnx.ValueInfoProto]:
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if token_types else [])]
    return [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names
    ]


def build_graph(
    kind: str,
    *,
    dim: int = 16,
    labels: int = 3,
    ballast_rows: int = 0,
    seed: int = 0,
    token_types: bool = True,
) -> tuple[onnx.ModelProto, TinyModel]:
    rng = np.random.default_rng(seed)
    vocab = len(vocabulary())
    table = rng.normal(0, 1, (vocab + ballast_rows, dim)).astype(np.float32)
    initializers = [numpy_helper.from_array(table, "E")]
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["hidden"], axis=0)]
    if kind == "embedding":
        nodes.append(helper.make_node("Identity", ["hidden"], ["last_hidden_state"]))
        outputs = [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", dim]
            )
        ]
        tiny = TinyModel(table)
    else:
        weights = rng.normal(0, 2, (dim, labels)).astype(np.float32)
        bias = rng.normal(0, 0.5, (labels,)).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "last_axis"),
        ]
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),
            helper.make_node("Mul", ["hidden", "mask_3d"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis_1"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask_3d", "axis_1"], ["count"], keepdims=0),
            helper.make_node("Div", ["summed", "count"], ["pooled"]),
            helper.make_node("MatMul", ["pooled", "W"], ["projected"]),
            helper.make_node("Add", ["projected", "b"], ["logits"]),
        ]
        initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels])]
        tiny = TinyModel(table, weights, bias)
    if token_types:
        # Consume token_type_ids so the graph declares it (as BERT-style exports do).
        nodes.append(helper.make_node("Identity", ["token_type_ids"], ["unused_types"]))
        outputs.append(
            helper.make_tensor_value_info("unused_types", TensorProto.INT64, ["batch", "sequence"])
        )
    graph = helper.make_graph(
        nodes, f"tiny-{kind}", _graph_inputs(token_types), outputs, initializers
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, tiny


def write_model(
    directory: Path,
    kind: str,
    *,
    id2label: dict[int, str] | None = None,
    onnx_name: str = "model.onnx",
    sentence_transformers: bool = True,
    **graph_options: object,
) -> TinyModel:
    """A model directory as the Hub has them: ONNX graph, tokenizer.json, config.json and,
    for embeddings, the sentence-transformers files (mean pooling, normalised)."""
    labels = id2label or {0: "contradiction", 1: "entailment", 2: "neutral"}
    graph, tiny = build_graph(kind, labels=len(labels), **graph_options)  # type: ignore[arg-type]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / onnx_name).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(directory / onnx_name))
    make_tokenizer().save(str(directory / "tokenizer.json"))
    config: dict[str, object] = {"model_type": "tiny", "max_position_embeddings": 64}
    if kind == "nli":
        config["id2label"] = {str(k): v for k, v in labels.items()}
        config["label2id"] = {v: k for k, v in labels.items()}
    (directory / "config.json").write_text(json.dumps(config))
    if kind == "embedding" and sentence_transformers:
        (directory / "modules.json").write_text(
            json.dumps(
                [
                    {
                        "idx": 0,
                        "name": "0",
                        "path": "",
                        "type": "sentence_transformers.models.Transformer",
                    },
                    {
                        "idx": 1,
                        "name": "1",
                        "path": "1_Pooling",
                        "type": "sentence_transformers.models.Pooling",
                    },
                    {
                        "idx": 2,
                        "name": "2",
                        "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize",
                    },
                ]
            )
        )
        (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
        (directory / "1_Pooling").mkdir(exist_ok=True)
        (directory / "1_Pooling" / "config.json").write_text(
            json.dumps({"word_embedding_dimension": 16, "pooling_mode_mean_tokens": True})
        )
    return tiny
