"""The registry's memory: seed data under live data, per configured provider, with the
parameters upstreams have refused remembered for a while.

Lookups never touch the network. A background task refreshes the live layer from the
providers' model lists at start and then periodically; a provider that cannot be
reached keeps its previous data (and is reported once, not on every refresh), and the
live layer is cached on disk with an atomic write so that a restart without network
still knows what the last good refresh knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from ratatoskr.v1 import chat_pb2, models_pb2
from ratd.providers.base import Provider
from ratd.registry.seed import Seed, load_seed

log = logging.getLogger(__name__)

CACHE_VERSION = 1
Key = tuple[str, str]  # (configured provider name, model id)


def merge(
    base: models_pb2.ModelMetadata, live: models_pb2.ModelMetadata
) -> models_pb2.ModelMetadata:
    """``base`` with every value ``live`` knows replacing it, key by key."""
    merged = models_pb2.ModelMetadata()
    merged.CopyFrom(base)
    info, new = merged.info, live.info
    if new.capabilities:
        del info.capabilities[:]
        info.capabilities.extend(new.capabilities)
    for name in (
        "context_window",
        "dimensions",
        "max_output_tokens",
        "deprecation_date",
        "shutdown_date",
        "replacement",
    ):
        if new.HasField(name):
            setattr(info, name, getattr(new, name))
    if live.HasField("max_output_tokens"):
        merged.max_output_tokens = live.max_output_tokens
    for target in (merged.pricing, info.pricing):
        for name in ("prompt_cost_per_mtok", "completion_cost_per_mtok"):
            for source in (live.pricing, new.pricing):
                if source.HasField(name):
                    setattr(target, name, getattr(source, name))
    if live.HasField("pricing") or new.HasField("pricing"):
        info.pricing.CopyFrom(merged.pricing)
    by_name = {entry.name: entry for entry in merged.parameters}
    for entry in live.parameters:
        if entry.name in by_name:
            by_name[entry.name].availability.CopyFrom(entry.availability)
        else:
            merged.parameters.add().CopyFrom(entry)
    return merged


def _describe(err: BaseException) -> str:
    """A failure as one line: ratd errors by their message, others by type and text."""
    message = getattr(err, "message", None)
    if isinstance(message, str) and message:
        return message
    if isinstance(err, TimeoutError):
        return "no answer in time"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class _Rejections:
    """Parameters an upstream refused, per (provider, model): bounded, with a TTL."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self._entries: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def add(self, provider: str, model: str, parameter: str) -> None:
        key = (provider, model, parameter)
        self._entries[key] = time.monotonic() + self.ttl
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def of(self, provider: str, model: str) -> set[str]:
        now = time.monotonic()
        found = set()
        for (p, m, parameter), expires in list(self._entries.items()):
            if expires <= now:
                del self._entries[(p, m, parameter)]
            elif p == provider and m == model:
                found.add(parameter)
        return found


_UNSUPPORTED = models_pb2.ParameterAvailability(unsupported=True)


class Registry:
    def __init__(
        self,
        kinds: Mapping[str, str],
        *,
        seed: Seed | None = None,
        cache_path: Path | None = None,
        refresh_secs: float = 3600.0,
        fetch_timeout_secs: float = 20.0,
        rejection_ttl_secs: float = 3600.0,
    ) -> None:
        """``kinds`` maps each configured provider name to its kind (the seed's key)."""
        self.seed = seed or load_seed()
        self.kinds = dict(kinds)
        self.cache_path = cache_path
        self.refresh_secs = refresh_secs
        self.fetch_timeout_secs = fetch_timeout_secs
        self._base: dict[Key, models_pb2.ModelMetadata] = {}
        for name, kind in self.kinds.items():
            for entry in self.seed.models.get(kind, ()):
                copy = models_pb2.ModelMetadata()
                copy.CopyFrom(entry)
                copy.info.provider = name
                self._base[(name, entry.info.id)] = copy
        self._live: dict[str, dict[str, models_pb2.ModelMetadata]] = {}
        self._fetched_at: dict[str, float] = {}
        self._merged: dict[Key, models_pb2.ModelMetadata] = dict(self._base)
        # parameters() by (provider, model), rebuilt when live data changes.
        self._surfaces: dict[Key, dict[str, models_pb2.ParameterAvailability]] = {}
        # priced() by (provider, model), for models the registry knows; rebuilt likewise.
        self._priced: dict[Key, tuple[bool, Rates | None]] = {}
        # Providers whose last live refresh failed, with that failure's message.
        self._failing: dict[str, str] = {}
        # Ids of models with a retirement date, rebuilt lazily when live data changes.
        self._rejections = _Rejections(rejection_ttl_secs)
        self._task: asyncio.Task[None] | None = None

    # -- lookups (memory only) -------------------------------------------------------------

    def get(self, provider: str, model: str) -> models_pb2.ModelMetadata | None:
        return self._merged.get((provider, model))

    def find(self, model: str) -> list[models_pb2.ModelMetadata]:
        return [md for (_, model_id), md in self._merged.items() if model_id == model]

    def models(self, provider: str = "") -> list[models_pb2.ModelMetadata]:
        return [
            md
            for (name, model_id), md in sorted(self._merged.items())
            if not provider or name == provider
        ]

    def parameters(
        self, provider: str, model: str
    ) -> Mapping[str, models_pb2.ParameterAvailability]:
        """The model's parameter surface, with the parameters upstreams refused lately
        marked unsupported. Do not modify the mapping returned."""
        key = (provider, model)
        surface = self._surfaces.get(key)
        if surface is None:
            found = self.get(provider, model)
            surface = {e.name: e.availability for e in found.parameters} if found else {}
            self._surfaces[key] = surface
        if self._rejections:
            refused = self._rejections.of(provider, model)
            if refused:
                surface = {**surface, **dict.fromkeys(refused, _UNSUPPORTED)}
        return surface

    def refresh_failure(self, provider: str) -> str | None:
        """Why ``provider``'s last live refresh failed; None when it succeeded (or none ran)."""
        return self._failing.get(provider)

    def remember_rejected(self, provider: str, model: str, parameter: str) -> None:
        """An upstream refused ``parameter`` for ``model``: validate accordingly for a while."""
        self._rejections.add(provider, model, parameter)

    def cost(self, provider: str, model: str, usage: chat_pb2.Usage) -> float | None:
        """US dollars for ``usage`` at the model's prices; None when they are unknown."""
        rates = self.priced(provider, model)[1]
        if rates is None:
            return None
        return cost_at(rates, usage.prompt_tokens, usage.completion_tokens)

    def priced(self, provider: str, model: str) -> tuple[bool, Rates | None]:
        """Whether the registry knows the model, and its prices in US dollars per million
        prompt and completion tokens, if it lists them (read once per entry: every
        answer is priced)."""
        found = self._priced.get((provider, model))
        if found is None:
            entry = self.get(provider, model)
            if entry is None:
                return _UNKNOWN  # not remembered: the names are the callers'
            found = self._priced[provider, model] = (True, rates_of(entry))
        return found

    def price(self, provider: str, model: str) -> float | None:
        """Input plus output price per million tokens, for ordering by cost."""
        rates = self.priced(provider, model)[1]
        return None if rates is None else rates[0] + rates[1]

    # -- the live layer ----------------------------------------------------------------------

    def set_live(self, provider: str, models: Iterable[models_pb2.ModelMetadata]) -> None:
        """Replace ``provider``'s live data (an empty list leaves the old data in place)."""
        fresh = {md.info.id: md for md in models if md.info.id}
        if not fresh:
            return
        for md in fresh.values():
            md.info.provider = provider
        self._live[provider] = fresh
        self._fetched_at[provider] = time.time()
        self._rebuild(provider)

    def _rebuild(self, provider: str) -> None:
        self._surfaces.clear()
        self._priced.clear()
        for key in [k for k in self._merged if k[0] == provider]:
            del self._merged[key]
        for key, md in self._base.items():
            if key[0] == provider:
                self._merged[key] = md
        for model_id, live in self._live.get(provider, {}).items():
            base = self._base.get((provider, model_id))
            self._merged[(provider, model_id)] = merge(base, live) if base else live

    async def refresh_provider(self, name: str, provider: Provider) -> bool:
        """Ask one provider for its models; keep the old data when it fails."""
        try:
            models = await asyncio.wait_for(provider.describe_models(), self.fetch_timeout_secs)
            self.set_live(name, models)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a provider's failure must never break the registry
            message = _describe(err)
            if name not in self._failing:
                log.warning(
                    "registry: cannot refresh %s, keeping its previous data: %s", name, message
                )
            else:
                log.debug("registry: %s still failing: %s", name, message)
            self._failing[name] = message
            return False
        if self._failing.pop(name, None) is not None:
            log.info("registry: %s answers again", name)
        return True

    async def refresh(self, providers: Mapping[str, Provider]) -> None:
        names = [n for n in providers if n in self.kinds or n == "local"]
        results = await asyncio.gather(*(self.refresh_provider(n, providers[n]) for n in names))
        if any(results):
            self.save_cache()

    def start(self, providers: Mapping[str, Provider]) -> None:
        """Refresh in the background now and every ``refresh_secs``; never blocks."""
        self.load_cache()

        async def loop() -> None:
            while True:
                await self.refresh(providers)
                if self.refresh_secs <= 0:
                    return
                await asyncio.sleep(self.refresh_secs)

        self._task = asyncio.get_running_loop().create_task(loop(), name="registry-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- the disk cache ------------------------------------------------------------------------

    def save_cache(self) -> None:
        if self.cache_path is None:
            return
        document = {
            "version": CACHE_VERSION,
            "seed_version": self.seed.version,
            "providers": {
                name: {
                    "fetched_at": self._fetched_at.get(name, 0.0),
                    "models": [json_format.MessageToDict(md) for md in models.values()],
                }
                for name, models in self._live.items()
            },
        }
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_path.parent, prefix=".registry-")
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.cache_path)
        except OSError as err:
            log.warning("registry: cannot write the cache %s: %s", self.cache_path, err)

    def load_cache(self) -> None:
        if self.cache_path is None or not self.cache_path.exists():
            return
        try:
            document: dict[str, Any] = json.loads(self.cache_path.read_text())
            if document.get("version") != CACHE_VERSION:
                return
            for name, entry in document.get("providers", {}).items():
                if name not in self.kinds and name != "local":
                    continue
                models = [
                    json_format.ParseDict(
                        item, models_pb2.ModelMetadata(), ignore_unknown_fields=True
                    )
                    for item in entry.get("models", [])
                ]
                self.set_live(name, models)
                self._fetched_at[name] = float(entry.get("fetched_at", 0.0))
        except (OSError, ValueError, json_format.ParseError) as err:
            log.warning("registry: ignoring the unreadable cache %s: %s", self.cache_path, err)


# US dollars per million prompt and completion tokens.
Rates = tuple[float, float]
_UNKNOWN: tuple[bool, Rates | None] = (False, None)


def rates_of(found: models_pb2.ModelMetadata) -> Rates | None:
    """The prices registry entry ``found`` lists; None when it lists neither."""
    if not found.HasField("pricing"):
        return None
    pricing = found.pricing
    if not pricing.HasField("prompt_cost_per_mtok") and not pricing.HasField(
        "completion_cost_per_mtok"
    ):
        return None
    return pricing.prompt_cost_per_mtok, pricing.completion_cost_per_mtok


def cost_at(rates: Rates, prompt_tokens: int, completion_tokens: int) -> float:
    """US dollars for these tokens at ``rates``."""
    return (prompt_tokens * rates[0] + completion_tokens * rates[1]) / 1_000_000
