"""What happens to a parameter the target model does not take, by the policy of
``[validation] parameter_policy``, applied per provider candidate.

The model's parameter surface comes from the provider (what its API cannot take at all)
and the registry (seed and live data, and parameters an upstream refused lately).
``warn`` drops an unsupported parameter and logs once per (provider, model, parameter);
``error`` refuses with UnsupportedParameter so the fallback chain can try the next
provider; ``ignore`` sends it anyway. A value outside the model's range is
INVALID_ARGUMENT under every policy.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, TypeVar

from google.protobuf.message import Message as ProtoMessage

from ratatoskr.v1 import models_pb2
from ratd import errors
from ratd.providers.base import Provider
from ratd.registry import Registry

log = logging.getLogger(__name__)

R = TypeVar("R", bound=ProtoMessage)
_MAX_WARNED = 10_000


def is_set(options: ProtoMessage, name: str) -> bool:
    field = options.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        return False
    if field.is_repeated:
        return bool(getattr(options, name))
    return options.HasField(name)


def _out_of_range(value: Any, bounds: models_pb2.ParameterRange) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    if bounds.HasField("min") and value < bounds.min - 1e-9:
        return True
    return bounds.HasField("max") and value > bounds.max + 1e-9


def _bounds(bounds: models_pb2.ParameterRange) -> str:
    low = f"{bounds.min:g}" if bounds.HasField("min") else "-∞"
    high = f"{bounds.max:g}" if bounds.HasField("max") else "∞"
    return f"{low}..{high}"


class ParameterPolicy:
    def __init__(self, policy: str, registry: Registry) -> None:
        self.policy = policy
        self.registry = registry
        self._warned: set[tuple[str, str, str]] = set()

    def unsupported(self, options: ProtoMessage, provider: Provider, model: str) -> list[str]:
        """The options set on ``options`` that ``model`` at ``provider`` does not take;
        raises InvalidInput for a value outside the model's range."""
        fields = options.ListFields()
        if len(fields) == 1 and fields[0][0].name == "model":  # most requests: nothing set
            return []
        present = {field.name for field, _ in fields}
        present.discard("model")  # what every request sets, and no parameter
        if not present:
            return []
        found = present & provider.unsupported_parameters(model)
        surface = self.registry.parameters(provider.name, model)
        for name in present:
            avail = surface.get(name)
            if avail is None:
                continue
            kind = avail.WhichOneof("kind")
            value = getattr(options, name)
            if kind == "unsupported" or (
                kind == "read_only_json" and not _same(value, avail.read_only_json)
            ):
                found.add(name)
            elif kind == "mutable_range" and _out_of_range(value, avail.mutable_range):
                raise errors.InvalidInput(
                    f"options.{name}: {value:g} is outside the range "
                    f"{_bounds(avail.mutable_range)} of {provider.name} model {model}",
                    field=f"options.{name}",
                    provider=provider.name,
                    model=model,
                    metadata={"parameter": name},
                )
        return sorted(found)

    def apply(self, request: R, provider: Provider, model: str) -> R:
        """``request`` as ``provider`` should receive it for ``model``."""
        options = request.options  # type: ignore[attr-defined]
        present = self.unsupported(options, provider, model)
        if not present or self.policy == "ignore":
            return request
        if self.policy == "error":
            raise self.refusal(present[0], provider, model)
        trimmed = type(request)()
        trimmed.CopyFrom(request)
        for name in present:
            trimmed.options.ClearField(name)  # type: ignore[attr-defined]
            self._warn_once(provider.name, model, name)
        return trimmed

    @staticmethod
    def refusal(name: str, provider: Provider, model: str) -> errors.UnsupportedParameter:
        return errors.UnsupportedParameter(
            f"{provider.name} model {model} does not support the parameter {name}",
            provider=provider.name,
            model=model,
            field=f"options.{name}",
            parameter=name,
            metadata={"parameter": name},
        )

    def learn(
        self, err: errors.GatewayError, request: ProtoMessage, provider: Provider, model: str
    ) -> bool:
        """After an upstream refused a parameter of ``request``: remember it, and say
        whether to send again without it (policy ``warn``). Under ``error`` the refusal
        becomes UnsupportedParameter, so the fallback chain can move on."""
        name = err.metadata.get("parameter", "")
        if not isinstance(err, errors.UpstreamInvalidRequest) or not name:
            return False
        if not is_set(request.options, name):  # type: ignore[attr-defined]
            return False
        self.registry.remember_rejected(provider.name, model, name)
        if self.policy == "error":
            raise self.refusal(name, provider, model) from err
        return self.policy == "warn"

    def _warn_once(self, provider: str, model: str, name: str) -> None:
        key = (provider, model, name)
        if key in self._warned or len(self._warned) >= _MAX_WARNED:
            return
        self._warned.add(key)
        log.warning(
            "%s model %s does not support %s; dropping it (set [validation] parameter_policy "
            '= "error" to refuse such requests instead)',
            provider,
            model,
            name,
        )


def _same(value: Any, read_only_json: str) -> bool:
    try:
        fixed = json.loads(read_only_json)
    except ValueError:
        return False
    if isinstance(value, float) and isinstance(fixed, int | float):
        return math.isclose(value, fixed, rel_tol=1e-6, abs_tol=1e-9)
    return bool(value == fixed)
