"""Local inference on ONNX Runtime: embeddings, NLI, zero-shot classification, stance,
token counting and speech to text, with a model manager that keeps memory within a measured budget.

    provider.py     LocalProvider, what the gateway calls
    manager.py      model lifecycle, RAM budget, idle unload, LRU eviction
    batcher.py      dynamic batching per model
    sessions.py     ONNX Runtime session options and device selection
    onnx_model.py   a loaded model and its tokenizer; embeddings.py, nli.py, zero_shot.py
    speech.py       Whisper-class speech to text (encoder + greedy decoder; decoding.py
                    the decoder steps and key/value cache; audio.py WAV decoding,
                    resampling and log-mel features in numpy)
    sources.py      model files from a directory, a package or the Hub
    catalog.py      built-in and configured models
    tokenizers.py   the tokenizer registry (tiktoken_convert.py for OpenAI encodings)
    memory.py       RSS and malloc_trim
"""

from __future__ import annotations

from ratd.config import Config
from ratd.local.provider import LocalProvider


def build_local_provider(config: Config) -> LocalProvider:
    """The local provider for ``config.local`` (which must be set)."""
    return LocalProvider(config)


__all__ = ["LocalProvider", "build_local_provider"]
