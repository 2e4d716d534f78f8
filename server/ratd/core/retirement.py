"""Model retirement: providers publish deprecation and shutdown dates (the registry holds
them, from the seed and the providers' live lists). A call to a model past its shutdown
date fails fast with NOT_FOUND / MODEL_RETIRED, naming the replacement when one is known;
a call to a deprecated model logs one warning per model and goes ahead.

The gateway core calls ``Retirement.check(provider, model)`` for each candidate before
calling it; a retired candidate raises ``ModelRetired`` (``fallback``: the chain may try
another provider of the same name).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ratatoskr.v1 import models_pb2
from ratd import errors
from ratd.registry import Presets, Registry

log = logging.getLogger(__name__)

Today = Callable[[], dt.date]


_EPOCH = dt.date(1970, 1, 1).toordinal()
# The day number (since the epoch) and date utc_today last made.
_TODAY: dict[int, dt.date] = {}


def utc_today() -> dt.date:
    """The UTC date, made once a day (every call to a model asks it)."""
    day = int(time.time() // 86400)
    found = _TODAY.get(day)
    if found is None:
        _TODAY.clear()
        found = _TODAY[day] = dt.date.fromordinal(_EPOCH + day)
    return found


def today_of(fixed: str) -> Today:
    """``[registry] today``: a fixed day (YYYY-MM-DD, checked by the config loader), or
    the UTC date when empty."""
    if not fixed:
        return utc_today
    day = dt.date.fromisoformat(fixed)
    return lambda: day


def parse_date(value: str) -> dt.date | None:
    """A YYYY-MM-DD date (a longer ISO timestamp is cut to its date); None when unreadable."""
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Dates:
    """What the registry says of a model's retirement."""

    deprecation: dt.date | None
    shutdown: dt.date | None
    replacement: str

    @classmethod
    def of(cls, info: models_pb2.ModelInfo) -> Dates:
        return cls(
            parse_date(info.deprecation_date) if info.HasField("deprecation_date") else None,
            parse_date(info.shutdown_date) if info.HasField("shutdown_date") else None,
            info.replacement,
        )

    def retired(self, today: dt.date) -> bool:
        return self.shutdown is not None and today >= self.shutdown

    def deprecated(self, today: dt.date) -> bool:
        """Deprecated: past its deprecation date, or with a shutdown announced."""
        return self.shutdown is not None or (
            self.deprecation is not None and today >= self.deprecation
        )


class Retirement:
    """The fail-fast check and the once-per-model deprecation warning."""

    def __init__(self, registry: Registry, today: Today = utc_today) -> None:
        self.registry = registry
        self.today = today
        self._warned: set[tuple[str, str]] = set()
        self._dates: dict[tuple[str, str], tuple[models_pb2.ModelMetadata, Dates]] = {}
        # Models that passed today, with the registry entry they passed on: the same
        # entry on the same day passes again without a look at its dates.
        self._cleared: dict[tuple[str, str], tuple[models_pb2.ModelMetadata, dt.date]] = {}

    def check(self, provider: str, model: str) -> None:
        """Raise ``ModelRetired`` when ``provider``'s ``model`` is past its shutdown date;
        warn once when it is deprecated. Models the registry does not know pass."""
        found = self.registry.get(provider, model)
        if found is None:
            return
        key = (provider, model)
        today = self.today()
        cleared = self._cleared.get(key)
        if cleared is not None and cleared[0] is found and cleared[1] == today:
            return  # checked today against this very entry, and nothing to say
        cached = self._dates.get(key)
        if cached is None or cached[0] is not found:  # parsed once per registry entry
            cached = self._dates[key] = (found, Dates.of(found.info))
        dates = cached[1]
        if dates.retired(today):
            raise self._retired(provider, model, dates)
        if dates.deprecated(today) and key not in self._warned:
            self._warned.add(key)
            log.warning("%s", self._deprecation_notice(provider, model, dates))
        self._cleared[key] = (found, today)

    @staticmethod
    def _retired(provider: str, model: str, dates: Dates) -> errors.ModelRetired:
        assert dates.shutdown is not None
        instead = f"; use {dates.replacement} instead" if dates.replacement else ""
        metadata = {"shutdown_date": dates.shutdown.isoformat()}
        if dates.replacement:
            metadata["replacement"] = dates.replacement
        return errors.ModelRetired(
            f"{provider}: model {model} was retired on {dates.shutdown.isoformat()}{instead}",
            provider=provider,
            model=model,
            metadata=metadata,
        )

    @staticmethod
    def _deprecation_notice(provider: str, model: str, dates: Dates) -> str:
        parts = [f"{provider}: model {model} is deprecated"]
        if dates.shutdown is not None:
            parts.append(f"and shuts down on {dates.shutdown.isoformat()}")
        if dates.replacement:
            parts.append(f"(replacement: {dates.replacement})")
        return " ".join(parts)


def _entries(registry: Registry, model: str) -> list[models_pb2.ModelMetadata]:
    """The registry entries a preset's model name stands for: ``provider:model`` names
    one provider's entry (when the registry has it), a bare name every provider's."""
    provider, sep, rest = model.partition(":")
    if sep:
        found = registry.get(provider, rest)
        if found is not None:
            return [found]
    return registry.find(model)


def retired_presets(presets: Presets, registry: Registry, today: dt.date) -> list[str]:
    """The presets whose model is past its shutdown date at every provider that lists it
    (one provider still serving it is enough, as in the fallback chain). A preset naming
    a model the registry does not know (a local model) is not retired."""
    found = []
    for name in presets.names():
        tier, _, capability = name.removeprefix("ratatoskr:").partition("/")
        preset = presets.get(tier, capability)
        assert preset is not None
        entries = _entries(registry, preset.model)
        if entries and all(Dates.of(md.info).retired(today) for md in entries):
            found.append(f"{name} -> {preset.model}")
    return found


__all__ = ["Dates", "Retirement", "parse_date", "retired_presets", "today_of", "utc_today"]
