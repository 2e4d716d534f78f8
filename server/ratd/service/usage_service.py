"""The ``ratatoskr.v1.UsageService``: a tenant's usage (requests, tokens, cost) from the
governance state. A tenant sees its own; the ``admin`` role sees every tenant's. The
auth interceptor lets any authenticated caller in; who may see what is decided here."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from ratatoskr.v1 import usage_pb2, usage_pb2_grpc
from ratd import errors
from ratd.core.access import CALLER, Tenant
from ratd.core.gateway import Gateway
from ratd.service.guard import CallGuard

Context: TypeAlias = grpc.aio.ServicerContext


def visible(caller: Tenant | None, asked: str, configured: list[str]) -> list[str]:
    """The tenants whose usage ``caller`` gets for a request naming ``asked``."""
    if caller is None or "admin" in caller.roles:  # auth "none": the operator's own ratd
        if asked:
            return [asked]
        return configured
    if asked and asked != caller.name:
        raise errors.RoleRequired(
            f"tenant {caller.name} may see only its own usage: another tenant's needs role 'admin'",
            role="admin",
        )
    return [caller.name]


class UsageService(usage_pb2_grpc.UsageServiceServicer):
    def __init__(self, guard: CallGuard) -> None:
        self.guard = guard

    async def GetUsage(
        self, request: usage_pb2.GetUsageRequest, context: Context
    ) -> usage_pb2.GetUsageResponse:
        caller = CALLER.get()

        async def answer(gateway: Gateway) -> usage_pb2.GetUsageResponse:
            tenants = visible(caller, request.tenant, sorted(gateway.config.tenants))
            return await gateway.governor.usage(
                tenants, request.start_unix, request.end_unix, request.group_by
            )

        return await self.guard.unary(context, "GetUsage", answer)
