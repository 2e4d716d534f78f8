"""``GET /v1/models`` and ``GET /v1/models/{id}``: what ratd can route, as OpenAI's
``model`` objects. An id is what a caller can send back as ``model``: the bare name when
the routing sends that name to the provider that lists it, else ``provider:model``; local
models by their short names; presets as ``ratatoskr:<tier>/<capability>``. A tenant with
an allow-list sees only the models it may use."""

from __future__ import annotations

from typing import Any

import orjson

from ratatoskr.v1 import models_pb2
from ratd import errors
from ratd.core.access import Tenant
from ratd.core.gateway import Gateway

_EMBED = models_pb2.MODEL_CAPABILITY_EMBED


def _routable_id(gateway: Gateway, info: models_pb2.ModelInfo) -> str:
    capability = "embed" if _EMBED in info.capabilities else "chat"
    try:
        first = gateway.router.resolve(info.id, capability)[0]
    except (errors.GatewayError, IndexError):
        first = None
    if first is not None and first.provider == info.provider and first.model == info.id:
        return info.id
    return f"{info.provider}:{info.id}"


def model_ids(gateway: Gateway) -> dict[str, str]:
    """Every id a caller may name, and who serves it (the ``owned_by`` field)."""
    found: dict[str, str] = {}
    for provider in gateway.providers.values():
        for name in provider.model_names():
            found.setdefault(name, provider.name)
    for metadata in gateway.registry.models():
        info = metadata.info
        if info.provider in gateway.providers:
            found.setdefault(_routable_id(gateway, info), info.provider)
    for name in gateway.presets.names():
        found.setdefault(name, "ratatoskr")
    return found


def _visible(tenant: Tenant | None, name: str, owner: str) -> bool:
    if tenant is None or tenant.models is None:
        return True
    return tenant.may_use(name) or tenant.may_use(f"{owner}:{name.partition(':')[2] or name}")


def _model(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


def list_json(gateway: Gateway, tenant: Tenant | None) -> bytes:
    data = [
        _model(name, owner)
        for name, owner in sorted(model_ids(gateway).items())
        if _visible(tenant, name, owner)
    ]
    return orjson.dumps({"object": "list", "data": data})


async def one_json(gateway: Gateway, tenant: Tenant | None, name: str) -> bytes:
    """One model by any name the routing understands; 404 (model_not_found) otherwise."""
    owner = model_ids(gateway).get(name)
    if owner is None:
        try:
            metadata = await gateway.catalog.metadata(name)
        except errors.GatewayError:
            metadata = None
        if metadata is not None:
            owner = metadata.info.provider
    if owner is None or not _visible(tenant, name, owner):
        raise errors.ModelNotFound(f"The model '{name}' does not exist", model=name)
    return orjson.dumps(_model(name, owner))
