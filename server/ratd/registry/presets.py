"""Presets: ``ratatoskr:<tier>/<capability>`` model names (``ratatoskr:budget/coding``)
that stand for a model and default parameters, defined in the seed and overridable in
the config. Preset parameters fill only the options a caller left unset."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ratatoskr.v1 import models_pb2
from ratd import errors

PREFIX = "ratatoskr:"
_FLOATS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
_INTS = ("top_k", "max_tokens", "seed")
PARAMETER_NAMES = (*_FLOATS, *_INTS, "stop")


@dataclass(frozen=True)
class Preset:
    tier: str
    capability: str
    model: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_proto(self) -> models_pb2.PresetParameters:
        return models_pb2.PresetParameters(**self.parameters)

    def fill(self, options: Any) -> None:
        """Set each preset parameter the caller left unset on ``options`` (Chat- or
        GenerateOptions), in place."""
        fields = options.DESCRIPTOR.fields_by_name
        for name, value in self.parameters.items():
            target = "stop_sequences" if name == "stop" and "stop" not in fields else name
            if target not in fields:
                continue
            if fields[target].is_repeated:
                if not getattr(options, target):
                    getattr(options, target).extend(value)
            elif not options.HasField(target):
                setattr(options, target, value)


def parse_preset(model: str) -> tuple[str, str] | None:
    """(tier, capability) of a preset model name; None when it is not one. A malformed
    preset name is INVALID_ARGUMENT."""
    if not model.startswith(PREFIX):
        return None
    tier, sep, capability = model[len(PREFIX) :].partition("/")
    if not sep or not tier or not capability or "/" in capability:
        raise errors.InvalidInput(
            f"model: {model!r} is not a preset name of the form ratatoskr:<tier>/<capability>",
            field="model",
            model=model,
        )
    return tier, capability


def _check_parameters(where: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for name, value in parameters.items():
        if name in _FLOATS and isinstance(value, int | float) and not isinstance(value, bool):
            checked[name] = float(value)
        elif name in _INTS and isinstance(value, int) and not isinstance(value, bool):
            checked[name] = value
        elif name == "stop" and isinstance(value, list) and all(isinstance(s, str) for s in value):
            checked[name] = list(value)
        else:
            raise ValueError(f"{where}: bad preset parameter {name} = {value!r}")
    return checked


class Presets:
    def __init__(self, table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        self._presets: dict[tuple[str, str], Preset] = {}
        for tier, capabilities in table.items():
            for capability, spec in capabilities.items():
                where = f"presets.{tier}.{capability}"
                params = _check_parameters(where, spec.get("parameters", {}))
                self._presets[(tier, capability)] = Preset(tier, capability, spec["model"], params)

    def get(self, tier: str, capability: str) -> Preset | None:
        return self._presets.get((tier, capability))

    def resolve(self, model: str) -> Preset | None:
        """The preset a model name names; None for ordinary names; NOT_FOUND for an
        unknown preset."""
        parsed = parse_preset(model)
        if parsed is None:
            return None
        preset = self.get(*parsed)
        if preset is None:
            raise errors.PresetNotFound(
                f"no preset {model} (known: {', '.join(self.names()) or 'none'})", model=model
            )
        return preset

    def names(self) -> list[str]:
        return [f"{PREFIX}{tier}/{cap}" for tier, cap in sorted(self._presets)]

    def tiers(self) -> list[models_pb2.PresetTierEntry]:
        by_tier: dict[str, list[str]] = {}
        for tier, capability in sorted(self._presets):
            by_tier.setdefault(tier, []).append(capability)
        order = {"free": 0, "budget": 1, "mid": 2, "premium": 3}
        return [
            models_pb2.PresetTierEntry(tier=tier, capabilities=caps)
            for tier, caps in sorted(
                by_tier.items(), key=lambda item: (order.get(item[0], 9), item[0])
            )
        ]
