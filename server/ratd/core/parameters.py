"""What happens to a parameter the target model does not support: the policy of
``[validation] parameter_policy`` applied per provider candidate.

``warn`` drops the parameter and logs once per (provider, model, parameter); ``error``
refuses with UnsupportedParameter so the fallback chain can try the next provider;
``ignore`` sends it anyway.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from google.protobuf.message import Message as ProtoMessage

from ratd.errors import UnsupportedParameter
from ratd.providers.base import Provider

log = logging.getLogger(__name__)

R = TypeVar("R", bound=ProtoMessage)
_MAX_WARNED = 10_000


def _is_set(options: ProtoMessage, name: str) -> bool:
    field = options.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        return False
    if field.is_repeated:
        return bool(getattr(options, name))
    return options.HasField(name)


class ParameterPolicy:
    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._warned: set[tuple[str, str, str]] = set()

    def apply(self, request: R, provider: Provider, model: str) -> R:
        """``request`` as ``provider`` should receive it for ``model``."""
        unsupported = provider.unsupported_parameters(model)
        if not unsupported or self.policy == "ignore":
            return request
        options = request.options  # type: ignore[attr-defined]
        present = sorted(name for name in unsupported if _is_set(options, name))
        if not present:
            return request
        if self.policy == "error":
            name = present[0]
            raise UnsupportedParameter(
                f"{provider.name} model {model} does not support the parameter {name}",
                provider=provider.name,
                model=model,
                field=f"options.{name}",
                parameter=name,
                metadata={"parameter": name},
            )
        trimmed = type(request)()
        trimmed.CopyFrom(request)
        for name in present:
            trimmed.options.ClearField(name)  # type: ignore[attr-defined]
            self._warn_once(provider.name, model, name)
        return trimmed

    def _warn_once(self, provider: str, model: str, name: str) -> None:
        key = (provider, model, name)
        if key in self._warned or len(self._warned) >= _MAX_WARNED:
            return
        self._warned.add(key)
        log.warning(
            "%s model %s does not support %s; dropping it (set [validation] parameter_policy "
            "= \"error\" to refuse such requests instead)",
            provider,
            model,
            name,
        )
