"""Where a local model's files come from: a directory, an installed Python package, or the
HuggingFace Hub (downloaded once into a cache, pinned by revision, verified by sha256).

Resolution order, first that has the ONNX file and the tokenizer wins:

1. the model's ``path`` (a directory the operator named; missing is an error);
2. ``models_dir/NAME`` (files placed by hand: the air-gapped path);
3. the Hub cache (an earlier download, or a cache copied from another machine);
4. an installed package that carries the weights (plus ratd's companion files);
5. a Hub download, when ``hub_downloads`` allows it.

Everything here blocks (file hashing, HTTP); the manager calls it from a worker thread.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratd import errors
from ratd.local.catalog import EMBEDDING, SPEECH_TO_TEXT, ModelSpec
from ratd.local.revisions import DownloadTooLarge, too_large

log = logging.getLogger(__name__)

# (file, bytes downloaded so far, total bytes or 0, finished)
Progress = Callable[[str, int, int, bool], None]

ONNX_CANDIDATES = ("model.onnx", "onnx/model.onnx")
# Speech to text: optimum's encoder/decoder export; the decoder sits beside the encoder.
SPEECH_CANDIDATES = ("encoder_model.onnx", "onnx/encoder_model.onnx")
SPEECH_FILES = ("generation_config.json", "preprocessor_config.json")
OPTIONAL_FILES = (
    "config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


@dataclass(frozen=True)
class HubSettings:
    cache_dir: Path
    endpoint: str | None = None
    allow_downloads: bool = True
    token: str | None = None
    # Largest download of one model (all its files), in MB; 0: no limit.
    max_download_mb: int = 0


@dataclass(frozen=True)
class ModelFiles:
    """A model's files: looked up by relative path in ``layers``, first layer first."""

    layers: tuple[Path, ...]
    onnx_file: str
    source: str
    # Checksums the files must match (by relative path), verified by ``verify``.
    sha256: Mapping[str, str] = field(default_factory=dict)

    def find(self, relative: str) -> Path | None:
        for layer in self.layers:
            candidate = layer / relative
            if candidate.is_file():
                return candidate
        return None

    def require(self, relative: str) -> Path:
        found = self.find(relative)
        if found is None:
            raise errors.ModelNotAvailable(
                f"{self.source}: {relative} is missing", metadata={"file": relative}
            )
        return found

    @property
    def onnx(self) -> Path:
        return self.require(self.onnx_file)

    def verify(self) -> None:
        for relative, expected in self.sha256.items():
            check_sha256(self.require(relative), expected)


def decoder_file(encoder_file: str) -> str:
    """The decoder beside an encoder (``onnx/encoder_model_int8.onnx`` ->
    ``onnx/decoder_model_int8.onnx``)."""
    folder, _, name = encoder_file.rpartition("/")
    decoder = name.replace("encoder", "decoder", 1)
    return f"{folder}/{decoder}" if folder else decoder


def decoder_with_past_file(encoder_file: str) -> str:
    """The with-past decoder beside an encoder (optional: decoding is faster with it)."""
    folder, _, name = encoder_file.rpartition("/")
    decoder = name.replace("encoder", "decoder_with_past", 1)
    return f"{folder}/{decoder}" if folder else decoder


def model_files(spec: ModelSpec, onnx_file: str) -> tuple[str, ...]:
    """The ONNX files a model runs: one graph, or an encoder and its decoder."""
    if spec.kind == SPEECH_TO_TEXT:
        return (onnx_file, decoder_file(onnx_file))
    return (onnx_file,)


def onnx_candidates(spec: ModelSpec) -> tuple[str, ...]:
    if spec.onnx_file:
        return (spec.onnx_file,)
    return SPEECH_CANDIDATES if spec.kind == SPEECH_TO_TEXT else ONNX_CANDIDATES


# -- checksums -----------------------------------------------------------------------------

_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    """The file's sha256, remembered while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        if key in _digests:
            return _digests[key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _digest_lock:
        _digests[key] = value
    return value


def check_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise errors.ModelNotAvailable(
            f"{path}: sha256 mismatch (expected {expected.lower()}, got {actual}); "
            "the file is corrupt or not the pinned version",
            metadata={"file": str(path)},
        )


# -- directories and packages -----------------------------------------------------------------


def _onnx_in(layers: Iterable[Path], spec: ModelSpec) -> str | None:
    layers = tuple(layers)
    for relative in onnx_candidates(spec):
        needed = model_files(spec, relative)
        if all(any((layer / f).is_file() for layer in layers) for f in needed):
            return relative
    return None


def _directory(spec: ModelSpec, directory: Path, label: str) -> ModelFiles | None:
    layers = (directory,)
    onnx = _onnx_in(layers, spec)
    if onnx is None or not (directory / "tokenizer.json").is_file():
        return None
    return ModelFiles(layers, onnx, f"{label} {directory}", dict(spec.sha256))


def package_dir(package: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def _package(spec: ModelSpec) -> ModelFiles | None:
    root = package_dir(spec.package)
    if root is None:
        return None
    base = root / spec.package_subdir if spec.package_subdir else root
    layers = (base, Path(spec.companion)) if spec.companion else (base,)
    onnx = _onnx_in(layers, spec)
    if onnx is None or not any((layer / "tokenizer.json").is_file() for layer in layers):
        return None
    sums = {**spec.package_sha256, **spec.sha256}
    return ModelFiles(layers, onnx, f"package {spec.package}", sums)


# -- the Hub ------------------------------------------------------------------------------------


def _hub_onnx(spec: ModelSpec) -> tuple[str, ...]:
    return tuple(reversed(onnx_candidates(spec)))  # the Hub's exports live under onnx/


def _cached(spec: ModelSpec, hub: HubSettings, revision: str) -> ModelFiles | None:
    from huggingface_hub import try_to_load_from_cache

    def lookup(name: str) -> Path | None:
        found = try_to_load_from_cache(
            spec.hub_repo, name, cache_dir=str(hub.cache_dir), revision=revision or None
        )
        return Path(found) if isinstance(found, str) else None

    tokenizer = lookup("tokenizer.json")
    if tokenizer is None:
        return None
    for onnx in _hub_onnx(spec):
        if all(lookup(f) is not None for f in model_files(spec, onnx)):
            snapshot = tokenizer.parent
            return ModelFiles(
                (snapshot,),
                onnx,
                f"hub {spec.hub_repo}@{snapshot.name[:12]} (cached)",
                dict(spec.sha256),
            )
    return None


class _ProgressBar:
    """Stands in for tqdm inside huggingface_hub's downloader, reporting bytes to ``report``."""

    report: Callable[[int, int], None] = staticmethod(lambda n, total: None)

    def __init__(
        self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any
    ) -> None:
        self.total = total or 0
        self.n = initial

    def update(self, n: int | float | None = 1) -> None:
        self.n += int(n or 0)
        type(self).report(self.n, self.total)

    def close(self) -> None:
        pass

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def refresh(self, *args: Any, **kwargs: Any) -> None:
        pass


def _bar_for(
    name: str, progress: Progress | None, budget: Callable[[int], None]
) -> type[_ProgressBar]:
    """A progress bar class for one file; ``budget`` sees each file's byte count as it
    grows and raises to stop a download that outgrows the size cap."""

    def report(n: int, total: int) -> None:
        budget(n)
        if progress is not None:
            progress(name, n, total, False)

    return type("_Bar", (_ProgressBar,), {"report": staticmethod(report)})


def _size(sibling: Any) -> int:
    lfs = sibling.lfs
    return int(sibling.size or (lfs.size if lfs else 0) or 0)


def _hub_info(spec: ModelSpec, hub: HubSettings, revision: str) -> Any:
    """The Hub's model info (with each file's size and LFS sha256), its errors as ratd's."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    try:
        return api.model_info(spec.hub_repo, revision=revision, files_metadata=True)
    except GatedRepoError:  # before its base class, RepositoryNotFoundError
        raise errors.ModelNotAvailable(
            f"{spec.hub_repo} is gated: accept its terms and set HF_TOKEN", model=spec.name
        ) from None
    except RepositoryNotFoundError:
        raise errors.ModelNotFound(
            f"the Hub has no repository {spec.hub_repo} (or it is private)", model=spec.name
        ) from None
    except RevisionNotFoundError:
        raise errors.ModelNotFound(
            f"the Hub repository {spec.hub_repo} has no revision {revision}", model=spec.name
        ) from None
    except Exception as err:  # HTTP and connection errors of huggingface_hub's client
        endpoint = hub.endpoint or "https://huggingface.co"
        raise errors.ModelNotAvailable(
            f"cannot reach the Hub ({endpoint}) for {spec.hub_repo}@{revision}: "
            f"{type(err).__name__}: {err}",
            model=spec.name,
        ) from None


def _wanted(spec: ModelSpec, siblings: Mapping[str, Any], where: str) -> tuple[str, list[str]]:
    """The ONNX file to run, and every file of the repository ratd needs beside it."""
    onnx = next(
        (name for name in _hub_onnx(spec) if all(f in siblings for f in model_files(spec, name))),
        None,
    )
    if onnx is None or "tokenizer.json" not in siblings:
        raise errors.ModelNotAvailable(
            f"{where} has no {' or '.join(_hub_onnx(spec))} and tokenizer.json: "
            "not an ONNX model ratd can run",
            model=spec.name,
        )
    graphs = [
        name
        for graph in model_files(spec, onnx)
        for name in (graph, f"{graph}_data", f"{graph}.data")
    ]
    wanted = [*graphs, "tokenizer.json", *OPTIONAL_FILES]
    if spec.kind == SPEECH_TO_TEXT:
        past = decoder_with_past_file(onnx)
        wanted += [past, f"{past}_data", f"{past}.data", *SPEECH_FILES]
    if spec.kind != EMBEDDING:
        embedding_only = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json")
        wanted = [w for w in wanted if w not in embedding_only]
    return onnx, [name for name in wanted if name in siblings]


class _Budget:
    """The bytes a download may take (``max_download_mb``), checked as they arrive."""

    def __init__(self, where: str, limit_mb: int) -> None:
        self.where, self.limit_mb = where, limit_mb
        self.limit = limit_mb * 1024 * 1024
        self.received: dict[str, int] = {}

    def check_listed(self, total: int) -> None:
        if self.limit and total > self.limit:
            raise too_large(self.where, total, self.limit_mb, received=False)

    def for_file(self, name: str) -> Callable[[int], None]:
        def check(n: int) -> None:
            self.received[name] = n
            total = sum(self.received.values())
            if self.limit and total > self.limit:
                raise too_large(self.where, total, self.limit_mb, received=True)

        return check


def download(
    spec: ModelSpec, hub: HubSettings, revision: str = "", progress: Progress | None = None
) -> ModelFiles:
    """Fetch the model's files from the Hub into the cache (skipping what is there), check
    each file's sha256 against the Hub's LFS metadata and the config, and return them."""
    if not spec.hub_repo:
        raise errors.ModelNotAvailable(
            f"{spec.name} has no Hub repository to download from", model=spec.name
        )
    revision = revision or spec.revision or "main"
    where = f"{spec.hub_repo}@{revision}"
    info = _hub_info(spec, hub, revision)
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    onnx, wanted = _wanted(spec, siblings, where)
    budget = _Budget(where, hub.max_download_mb)
    budget.check_listed(sum(_size(siblings[name]) for name in wanted))
    snapshot: Path | None = None
    for name in wanted:
        local = _fetch(spec, hub, revision, name, siblings[name], progress=progress, budget=budget)
        snapshot = local.parents[len(Path(name).parts) - 1]
    assert snapshot is not None
    label = f"hub {spec.hub_repo}@{(info.sha or revision)[:12]}"
    return ModelFiles((snapshot,), onnx, label, dict(spec.sha256))


def _fetch(
    spec: ModelSpec,
    hub: HubSettings,
    revision: str,
    name: str,
    sibling: Any,
    *,
    progress: Progress | None,
    budget: _Budget,
) -> Path:
    """One file of the repository, downloaded (or found in the cache) and checked."""
    from huggingface_hub import hf_hub_download

    total = _size(sibling)
    if progress is not None:
        progress(name, 0, total, False)
    try:
        local = Path(
            hf_hub_download(
                spec.hub_repo,
                name,
                revision=revision,
                cache_dir=str(hub.cache_dir),
                endpoint=hub.endpoint,
                token=hub.token,
                tqdm_class=_bar_for(name, progress, budget.for_file(name)),
            )
        )
    except DownloadTooLarge:
        raise
    except Exception as err:  # HTTP, connection and disk errors alike
        raise errors.ModelNotAvailable(
            f"downloading {name} of {spec.hub_repo}@{revision} failed: {type(err).__name__}: {err}",
            model=spec.name,
        ) from None
    lfs = sibling.lfs
    expected = spec.sha256.get(name) or (lfs.sha256 if lfs else None)
    if expected:
        check_sha256(local, expected)
    if progress is not None:
        size = total or local.stat().st_size
        progress(name, size, size, True)
    return local


# -- resolution ---------------------------------------------------------------------------------


def resolve(spec: ModelSpec, models_dir: Path, hub: HubSettings) -> ModelFiles:
    """The model's files by the order in the module docstring; raises when none has them."""
    if spec.path:
        directory = Path(spec.path).expanduser()
        found = _directory(spec, directory, "directory")
        if found is None:
            raise errors.ModelNotAvailable(
                f"{spec.name}: {directory} does not hold an ONNX model "
                f"({' or '.join(' + '.join(model_files(spec, c)) for c in onnx_candidates(spec))}) "
                "and tokenizer.json",
                model=spec.name,
            )
        return found
    tried: list[str] = []
    local_dir = models_dir / spec.name
    found = _directory(spec, local_dir, "directory")
    if found is not None:
        return found
    tried.append(str(local_dir))
    if spec.hub_repo:
        found = _cached(spec, hub, spec.revision)
        if found is not None:
            return found
        tried.append(f"the Hub cache in {hub.cache_dir}")
    if spec.package:
        found = _package(spec)
        if found is not None:
            return found
        tried.append(
            f"the Python package {spec.package} (pip install {spec.package.replace('_', '-')})"
        )
    if spec.hub_repo and hub.allow_downloads:
        return download(spec, hub)
    if spec.hub_repo:
        tried.append(
            f"the Hub ({spec.hub_repo}: downloads are off, run `rat download {spec.name}`)"
        )
    raise errors.ModelNotAvailable(
        f"{spec.name}: no model files found (looked in {'; '.join(tried)})", model=spec.name
    )
